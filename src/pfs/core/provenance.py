"""What produced a result: the versions and git commit recorded in every metrics file."""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import platform
import subprocess
from pathlib import Path

import torch

import pfs


def _version_of(package: str) -> str:
    """``package.__version__`` without importing the package (torchvision alone costs a job ~2 s of start-up): the
    literal of its version.py where it has one (torchvision's carries the build tag, e.g. +cu130, that its wheel's
    metadata lacks), else the installed distribution's version."""
    spec = importlib.util.find_spec(package)  # locates the package without importing it
    for folder in (spec.submodule_search_locations or []) if spec else []:
        try:
            tree = ast.parse((Path(folder) / "version.py").read_text())
        except (OSError, SyntaxError, ValueError):  # none (snakemake has none) or unreadable: ask the metadata
            continue
        for node in tree.body:
            if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
                    and [getattr(t, "id", None) for t in node.targets] == ["__version__"]):
                return str(node.value.value)
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def provenance() -> dict[str, str]:
    """Versions and git commit, recorded in every metrics file."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                                cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return {"pfs": pfs.__version__, "torch": torch.__version__, "torchvision": _version_of("torchvision"),
            "snakemake": _version_of("snakemake"), "python": platform.python_version(), "git_commit": commit}
