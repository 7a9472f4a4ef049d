"""A real run of a tiny grid with 2 seeds and 3 pruning methods (PFS, the uniform-width baseline and the
random-gates ablation) beside the unpruned network (the seed_grid fixture, conftest.py): summary.csv has one row per
run, table.csv one per method with the seed mean, std and n, and comparison.csv puts synthetic reference figures
beside them with the difference."""

from __future__ import annotations

import json
import os
import struct

import pandas as pd
import pytest
import yaml
from smk_run import SUMMARY_JOBS, planned_jobs

pytestmark = pytest.mark.slow

RANDOM = "results/digits/resnet20/random/e20_m1"


def test_random_gates_are_pruned_to_the_ratio_and_trained_as_method_random(seed_grid):
    widths = []
    for seed in (0, 1):
        doc = yaml.safe_load((seed_grid / RANDOM / f"seed{seed}" / "p0.5" / "channels.yaml").read_text())
        assert doc["method"] == "random" and abs(doc["achieved_ratio"] - 0.5) <= 0.5 * doc["tolerance"]
        metrics = json.loads((seed_grid / RANDOM / f"seed{seed}" / "p0.5" / "scratch_e" / "metrics.json").read_text())
        assert metrics["method"] == "random" and metrics["seed"] == seed and "sparsity" not in metrics
        widths.append(doc["widths"])
    assert widths[0] != widths[1]  # another seed, another random draw


def test_summary_has_one_row_per_run_and_the_table_one_per_method_with_seed_statistics(seed_grid):
    summary = pd.read_csv(seed_grid / "results" / "summary.csv")
    assert len(summary) == 8
    assert sorted(zip(summary["method"], summary["seed"], strict=True)) == [
        (m, s) for m in ("full", "pfs", "random", "uniform") for s in (0, 1)]
    table = pd.read_csv(seed_grid / "results" / "table.csv")
    assert table["method"].tolist() == ["full", "pfs", "uniform", "random"] and table["n"].tolist() == [2, 2, 2, 2]
    for row in table.itertuples():
        runs = summary[summary["method"] == row.method]
        assert row.top1_mean == pytest.approx(runs["top1"].mean())
        assert row.top1_std == pytest.approx(runs["top1"].std(ddof=1))
        assert row.macs_reduction == pytest.approx(runs["achieved_ratio"].mean())
    full = table.iloc[0]["top1_mean"]
    assert table["top1_drop"].tolist() == pytest.approx((full - table["top1_mean"]).tolist())
    markdown = (seed_grid / "results" / "table.md").read_text()
    assert "(n=2)" in markdown and "| resnet20 | random | 20 |" in markdown


def test_references_are_tabled_beside_our_runs_with_the_difference(seed_grid):
    table = pd.read_csv(seed_grid / "results" / "table.csv").set_index("method")
    comparison = pd.read_csv(seed_grid / "results" / "comparison.csv")
    pairs = sorted(zip(comparison["ref_method"], comparison["method"].fillna("-"), strict=True))
    assert pairs == [("Test PFS", "pfs"), ("Test empty", "pfs"), ("Test empty", "random"), ("Test empty", "uniform"),
                     ("Test far", "-"), ("Test full", "full")]  # no row for the cifar10 reference
    rows = comparison.set_index(["ref_method", comparison["method"].fillna("-")])
    assert rows.loc[("Test full", "full"), "top1_diff"] == pytest.approx(100 * table.loc["full", "top1_mean"] - 50)
    pfs = rows.loc[("Test PFS", "pfs")]
    assert pfs["top1_diff"] == pytest.approx(100 * table.loc["pfs", "top1_mean"] - 40)
    assert pfs["drop_diff"] == pytest.approx(100 * table.loc["pfs", "top1_drop"] - 10)
    assert pd.isna(rows.loc[("Test empty", "random"), "top1_diff"])
    markdown = (seed_grid / "results" / "table.md").read_text()
    assert "# Against published figures" in markdown and "| Test far | 80.0 | 30.00 |" in markdown


def test_plots_are_non_empty_pngs(seed_grid):
    for name in ("accuracy", "accuracy_cost", "widths", "gate_histograms", "gate_learning"):
        data = (seed_grid / "results" / "plots" / f"{name}.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
        width, height = struct.unpack(">II", data[16:24])
        assert width >= 400 and height >= 300


def test_editing_the_references_file_only_resummarizes(seed_grid):
    refs = seed_grid / "refs.yaml"
    original, stat = refs.read_text(), refs.stat()
    try:
        refs.write_text(original.replace("top1: 40.0", "top1: 41.0"))
        planned, output = planned_jobs(seed_grid, {})
        assert planned == dict(SUMMARY_JOBS), output
    finally:  # as it was, times included: the session's other tests plan against this run
        refs.write_text(original)
        os.utime(refs, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert planned_jobs(seed_grid, {})[0] == {}


def test_turning_the_ablation_off_only_resummarizes(seed_grid):
    planned, output = planned_jobs(seed_grid, {"grid": {"random_gates": False}})
    assert planned == dict(SUMMARY_JOBS), output
