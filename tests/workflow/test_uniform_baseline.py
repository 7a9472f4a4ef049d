"""The uniform-width baseline in a real run (the seed_grid fixture, conftest.py): prune_uniform shrinks every group
of the standard network by one factor to the grid's ratio, train_uniform trains it with the same schedules and
seeds, and the tables put it beside PFS."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml
from smk_run import SUMMARY_JOBS, planned_jobs

pytestmark = pytest.mark.slow

UNIFORM = "results/digits/resnet20/uniform/p0.5"


def test_uniform_channels_shrink_every_group_by_one_factor_to_the_ratio(seed_grid):
    doc = yaml.safe_load((seed_grid / UNIFORM / "channels.yaml").read_text())
    assert doc["method"] == "uniform" and doc["expansion"] == 16  # the standard network, shrunk
    assert abs(doc["achieved_ratio"] - 0.5) <= 0.5 * doc["tolerance"]
    factor = doc["width_factor"]
    for width, full in zip(doc["widths"], doc["full_widths"], strict=True):
        assert abs(width - full * factor) <= 1 + 1e-9  # one factor for all (a step of fine-tuning at most)


def test_uniform_runs_are_trained_per_seed_and_tabled_beside_pfs(seed_grid):
    for seed in (0, 1):
        metrics = json.loads((seed_grid / UNIFORM / f"seed{seed}" / "scratch_e" / "metrics.json").read_text())
        assert metrics["method"] == "uniform" and metrics["seed"] == seed and "sparsity" not in metrics
        assert metrics["epochs"] == 1
    table = pd.read_csv(seed_grid / "results" / "table.csv")
    uniform = table[table["method"] == "uniform"]
    assert len(uniform) == 1 and uniform["n"].item() == 2
    full_top1 = table.loc[table["method"] == "full", "top1_mean"].item()
    assert uniform["top1_drop"].tolist() == pytest.approx((full_top1 - uniform["top1_mean"]).tolist())
    assert "| resnet20 | uniform | 16 |" in (seed_grid / "results" / "table.md").read_text()


def test_turning_the_uniform_baseline_off_only_resummarizes(seed_grid):
    planned, output = planned_jobs(seed_grid, {"grid": {"uniform_baseline": False}})
    assert planned == dict(SUMMARY_JOBS), output
