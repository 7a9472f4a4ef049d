"""Helpers for the real Snakemake runs of tests/workflow: copy the workflow, write a tiny config, run snakemake,
read the planned jobs of a dry run. (A module of its own, not conftest.py: tests import from it.)"""

from __future__ import annotations

import copy
import dataclasses
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SNAKEMAKE = BIN / "snakemake"
WORKFLOW_FILES = ("Snakefile", "config.yaml", "configs", "rules", "workflow_scripts", "schemas", "envs", "report")

# One gate-learning network, one pruned network trained twice (Scratch-E, Scratch-B), one full baseline.
TINY_CONFIG = {
    "dataset": {"name": "digits"},
    "grid": {
        "archs": ["resnet20"],
        "expansions": {"resnet20": [20]},
        "sparsities": [0.5],
        "ratios": [0.5],
        "seeds": [0],
        "schedules": ["scratch_e", "scratch_b"],
        "full_baseline": True,
        "uniform_baseline": False,  # its own test: tests/workflow/test_uniform_baseline.py
        "random_gates": False,  # its own test: tests/workflow/test_seed_grid.py
        "pretrained_baseline": False,  # its own test: tests/workflow/test_classic_baseline.py
        "slimming_baseline": False,  # its own test: tests/workflow/test_slimming_baseline.py
        "export": False,  # its own test: tests/workflow/test_snakemake_run.py (over a copy of the finished run)
    },
    "gates": {"epochs": 1, "batch_size": 128},
    "train": {"epochs": 1, "batch_size": 128},
    "prune": {"tolerance": 0.01},
    "resources": {"threads": 1},
    "checkpoint_dir": "checkpoints",  # relative: inside the (temporary) working directory
}
EXP = "results/digits/resnet20/e20_m1/s0.5/seed0"
PRUNED = f"{EXP}/p0.5"
FULL = "results/digits/resnet20/full/seed0/scratch_e"
RUN_DIRS = {"scratch_e": f"{PRUNED}/scratch_e", "scratch_b": f"{PRUNED}/scratch_b", "full": FULL}
SUMMARY_JOBS = {"summarize": 1, "plot_results": 1, "all": 1}  # what follows any finished training run


def approx_fraction(value: float):
    """``value`` as summary.csv rounds a fraction (pfs.results.summary.rounded: 4 decimals)."""
    return pytest.approx(value, abs=0.5e-4 + 1e-9)


def approx_seconds(value: float):
    """``value`` as summary.csv rounds seconds (pfs.results.summary.rounded: 1 decimal)."""
    return pytest.approx(value, abs=0.05 + 1e-9)
ALL_JOBS = {"learn_gates": 1, "prune": 1, "train_pruned": 2, "train_full": 1, **SUMMARY_JOBS}


def deep_merge(base: dict, override: dict) -> dict:
    """Snakemake's --configfile semantics: dicts merge key by key, anything else (lists too) replaces."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def write_yaml(path: Path, doc: dict) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def copy_workflow(dest: Path, config: dict | None = None) -> Path:
    """Copy the workflow (no results) into ``dest`` and write ``tiny.yaml`` (the tiny config, deep-merged with
    ``config``) there."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest / name)
    write_yaml(dest / "tiny.yaml", deep_merge(TINY_CONFIG, config or {}))
    return dest


def write_jpeg_tree(root: Path, classes: tuple[str, ...] = ("n02", "n01", "n03"), train: int = 6, val: int = 2) -> Path:
    """A tiny ImageNet-style tree ``root/{train,val}/<class>/img<i>.JPEG`` of small random-noise JPEGs."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", train), ("val", val)):
        for name in classes:
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (36 + 4 * i, 48, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"img{i}.JPEG", quality=80)
    return root


def snakemake(workdir: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run the snakemake next to this interpreter in ``workdir``; stdout and stderr come back merged."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SNAKEMAKE")}  # no user profile
    return subprocess.run([str(SNAKEMAKE), *args], cwd=workdir, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)


# Snakemake's own notices, printed before the Snakefile is read: not part of an error message
SNAKEMAKE_NOTICES = (
    re.compile(r"Using (workflow specific )?profile \S+ for setting default command line arguments\."),
    re.compile(r"Config file \S+ is extended by additional config specified via the command line\."),
)


def error_lines(output: str) -> list[str]:
    """What a run stopped while the Snakefile was read printed, less Snakemake's own notices and blank lines. A
    one-line error is one line starting with 'error: ': no 'ConfigError in file ...' header, no traceback lines."""
    return [line for line in output.splitlines()
            if line.strip() and not any(notice.fullmatch(line.strip()) for notice in SNAKEMAKE_NOTICES)]


def tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.splitlines()[-lines:])


def job_counts(output: str) -> dict[str, int]:
    """Rule -> job count from the first 'Job stats:' table of a (dry) run; {} when there is nothing to do."""
    lines = output.splitlines()
    if "Job stats:" not in lines:
        return {}
    counts = {}
    for line in lines[lines.index("Job stats:") + 1:]:
        match = re.fullmatch(r"(\w+)\s+(\d+)", line.strip())
        if line.strip().startswith("total"):
            break
        if match:
            counts[match[1]] = int(match[2])
    return counts


def planned_jobs(workdir: Path, change: dict, name: str = "change.yaml") -> tuple[dict[str, int], str]:
    """Dry-run the tiny config with ``change`` layered on top (a second --configfile, written to ``name``: dry
    runs with distinct names may run side by side in one workdir); return the planned jobs."""
    write_yaml(workdir / name, change)
    result = snakemake(workdir, "-n", "--configfile", "tiny.yaml", name)
    assert result.returncode == 0, tail(result.stdout)
    return job_counts(result.stdout), result.stdout


@dataclasses.dataclass(frozen=True)
class FinishedRun:
    """A workflow copy where the tiny grid ran to completion; ``output`` is what snakemake printed."""

    workdir: Path
    output: str
    seconds: float


def run_tiny_grid(tmp_path_factory, name: str, config: dict, what: str) -> tuple[Path, dict[str, int]]:
    """A fresh copy of the workflow (tiny config overlaid with ``config``) run to the end in a temporary folder
    called ``name``: (its folder, the jobs it ran by rule). Fails the test naming ``what`` if the run fails."""
    import pytest

    workdir = copy_workflow(tmp_path_factory.mktemp(name), config)
    result = snakemake(workdir, "--cores", "2", "--configfile", "tiny.yaml")
    if result.returncode != 0:
        pytest.fail(f"the tiny {what} run failed:\n{tail(result.stdout)}")
    return workdir, job_counts(result.stdout)


def config_error(config: dict) -> str:
    """The one-line ConfigError the DAG-time checks (schema, then the cross-field checks) raise for ``config``."""
    import pytest

    from pfs.workflow.config import ConfigError, check_config, check_schema

    with pytest.raises(ConfigError) as info:
        check_schema(config, REPO / "schemas" / "config.schema.yaml")
        check_config(config)
    assert "\n" not in str(info.value)
    return str(info.value)
