"""Fixtures of the real Snakemake runs: one shared finished run of the tiny grid and fresh workflow copies.

Every job pays a torch import (a few seconds), so the suite makes one real run of the whole tiny grid (session
scope, 7 jobs) and answers most questions with dry runs (``-n``) against it or against a fresh copy.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from smk_run import FinishedRun, copy_workflow, snakemake, tail


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
