"""The uniform-width baseline in a real run: prune_uniform shrinks every group of the standard network by one
factor to the grid's ratio, train_uniform trains it with the same schedules, and the tables put it beside PFS."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml
from smk_run import SUMMARY_JOBS, copy_workflow, job_counts, planned_jobs, snakemake, tail

pytestmark = pytest.mark.slow

UNIFORM = "results/digits/resnet20/uniform/p0.5"


@pytest.fixture(scope="module")
def uniform_run(tmp_path_factory):
    workdir = copy_workflow(tmp_path_factory.mktemp("uniform"), {"grid": {"uniform_baseline": True}})
    result = snakemake(workdir, "--cores", "2", "--configfile", "tiny.yaml")
    if result.returncode != 0:
        pytest.fail(f"the tiny run with the uniform baseline failed:\n{tail(result.stdout)}")
    assert job_counts(result.stdout) == {"learn_gates": 1, "prune": 1, "prune_uniform": 1, "train_pruned": 2,
                                         "train_uniform": 2, "train_full": 1, **SUMMARY_JOBS}
    return workdir


def test_uniform_channels_shrink_every_group_by_one_factor_to_the_ratio(uniform_run):
    doc = yaml.safe_load((uniform_run / UNIFORM / "channels.yaml").read_text())
    assert doc["method"] == "uniform" and doc["expansion"] == 16  # the standard network, shrunk
    assert abs(doc["achieved_ratio"] - 0.5) <= 0.5 * doc["tolerance"]
    factor = doc["width_factor"]
    for width, full in zip(doc["widths"], doc["full_widths"], strict=True):
        assert abs(width - full * factor) <= 1 + 1e-9  # one factor for all (a step of fine-tuning at most)


def test_uniform_runs_are_trained_and_tabled_beside_pfs(uniform_run):
    for schedule, epochs in (("scratch_e", 1), ("scratch_b", 2)):
        metrics = json.loads((uniform_run / UNIFORM / "seed0" / schedule / "metrics.json").read_text())
        assert metrics["method"] == "uniform" and metrics["epochs"] == epochs and "sparsity" not in metrics
    table = pd.read_csv(uniform_run / "results" / "table.csv")
    assert table["method"].tolist() == ["full", "pfs", "pfs", "uniform", "uniform"]
    uniform = table[table["method"] == "uniform"]
    full_top1 = table.loc[table["method"] == "full", "top1_mean"].item()
    assert uniform["top1_drop"].tolist() == pytest.approx((full_top1 - uniform["top1_mean"]).tolist())
    assert "| resnet20 | uniform | 16 |" in (uniform_run / "results" / "table.md").read_text()


def test_turning_the_uniform_baseline_off_only_resummarizes(uniform_run):
    planned, output = planned_jobs(uniform_run, {"grid": {"uniform_baseline": False}})
    assert planned == dict(SUMMARY_JOBS), output
