"""Fixtures of the real Snakemake runs: one shared finished run of the tiny grid and fresh workflow copies.

Every job pays a torch import (a few seconds), so the suite makes one real run of the whole tiny grid (session
scope, 7 jobs) and answers most questions with dry runs (``-n``) against it or against a fresh copy.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from smk_run import SUMMARY_JOBS, FinishedRun, copy_workflow, job_counts, snakemake, tail


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> FinishedRun:
    """One real run of the whole tiny grid (shared: dry runs against it must leave it untouched)."""
    workdir = copy_workflow(tmp_path_factory.mktemp("finished_run"))
    start = time.perf_counter()
    result = snakemake(workdir, "--cores", "2", "--configfile", "tiny.yaml")
    if result.returncode != 0:
        pytest.fail(f"the tiny workflow run failed (exit {result.returncode}):\n{tail(result.stdout)}")
    return FinishedRun(workdir, result.stdout, time.perf_counter() - start)


@pytest.fixture
def workflow_copy(tmp_path: Path) -> Path:
    """A fresh copy of the workflow with the tiny config and nothing run yet."""
    return copy_workflow(tmp_path / "wf")


# synthetic reference figures (not anyone's published numbers): one unpruned, one PFS-only at our ratio, one at a
# ratio we do not run, one whose figure is not filled in
REFERENCES = {"format_version": 1, "match_tolerance": 0.02, "references": [
    {"dataset": "digits", "arch": "resnet20", "method": "Test full", "ratio": 0, "top1": 50.0,
     "source": "synthetic, for the test"},
    {"dataset": "digits", "arch": "resnet20", "method": "Test PFS", "ratio": 0.5, "schedule": "scratch_e",
     "our_methods": ["pfs"], "top1": 40.0, "baseline_top1": 50.0, "source": "synthetic, for the test"},
    {"dataset": "digits", "arch": "resnet20", "method": "Test far", "ratio": 0.8, "top1": 30.0,
     "source": "synthetic, for the test"},
    {"dataset": "digits", "arch": "resnet20", "method": "Test empty", "ratio": 0.5, "top1": None,
     "source": "synthetic, for the test"},
    {"dataset": "cifar10", "arch": "resnet56", "method": "Other grid", "ratio": 0.5, "top1": 93.0,
     "source": "synthetic, for the test"},
]}


@pytest.fixture(scope="session")
def seed_grid(tmp_path_factory):
    """A real run of the tiny grid over seeds 0 and 1, Scratch-E only, with every method: PFS, the full, uniform
    and random-gates baselines, and a synthetic references file (tests/workflow/test_seed_grid.py,
    test_uniform_baseline.py)."""
    workdir = copy_workflow(tmp_path_factory.mktemp("seeds"), {
        "grid": {"seeds": [0, 1], "schedules": ["scratch_e"], "random_gates": True, "uniform_baseline": True},
        "references": "refs.yaml",
    })
    (workdir / "refs.yaml").write_text(yaml.safe_dump(REFERENCES, sort_keys=False))
    result = snakemake(workdir, "--cores", "2", "--configfile", "tiny.yaml")
    if result.returncode != 0:
        pytest.fail(f"the tiny 2-seed grid failed:\n{tail(result.stdout)}")
    assert job_counts(result.stdout) == {"learn_gates": 2, "prune": 2, "train_pruned": 2, "random_gates": 2,
                                         "prune_random": 2, "train_random": 2, "prune_uniform": 1, "train_uniform": 2,
                                         "train_full": 2, **SUMMARY_JOBS}
    return workdir
