"""The workflow scripts in a rule env that lacks the package (``--use-conda`` with envs/pfs.yaml, which installs
pfs's dependencies but not pfs): they find the checkout's src/ (workflow_scripts/_common.py), and so does every
module they import lazily, in every subpackage; the torchrun launcher hands the same src/ to its ranks."""

from __future__ import annotations

import subprocess
import sys

from pfs_testkit import REPO

# runs in a child interpreter: hide every installed pfs (an editable install is a path entry holding pfs/), then
# load each workflow script as Snakemake would (its folder on sys.path, no `snakemake` global: imports only)
CHILD = r"""
import importlib, os, pkgutil, runpy, sys
from pathlib import Path

sys.path[:] = [p for p in sys.path if not (Path(p or ".") / "pfs" / "__init__.py").is_file()]
try:
    import pfs
except ImportError:
    pass
else:
    raise SystemExit(f"pfs is still importable from {pfs.__file__}")
scripts = Path(sys.argv[1])
sys.path.insert(0, str(scripts))
for script in sorted(scripts.glob("*.py")):
    runpy.run_path(str(script), run_name="workflow_script")
import pfs
src = Path(pfs.__file__).resolve().parents[1]
assert src == scripts.resolve().parent / "src", (src, scripts)
modules = [m.name for m in pkgutil.walk_packages(pfs.__path__, "pfs.") if m.name != "pfs.__main__"]  # runs the CLI
for name in modules:
    importlib.import_module(name)
from pfs.stages import launch
assert Path(launch.__file__).resolve().parents[2] == src  # the PYTHONPATH torchrun's ranks get
print(len(modules), "modules from", src)
"""


def test_every_script_and_module_imports_from_the_checkout_without_the_package_installed():
    child = subprocess.run([sys.executable, "-c", CHILD, str(REPO / "workflow_scripts")], capture_output=True,
                           text=True, timeout=300, cwd=REPO / "workflow_scripts")
    assert child.returncode == 0, child.stderr[-3000:]
    count = int(child.stdout.split()[0])
    assert count >= 40 and f"from {REPO / 'src'}" in child.stdout  # every subpackage's modules, not a few
