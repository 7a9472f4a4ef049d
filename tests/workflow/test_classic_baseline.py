"""The classic baseline (grid.pretrained_baseline) in a real Snakemake run of the tiny grid: train_full's model is
pruned by filter L1 norm to the ratio, fine-tuned, and the L1-chosen architecture is also trained from scratch;
the standard network is trained once, the tables carry the new rows and each row's cost is its chain's."""

from __future__ import annotations

import hashlib
import json

import pandas as pd
import pytest
import yaml
from smk_run import FULL, SUMMARY_JOBS, approx_seconds, planned_jobs, run_tiny_grid

from pfs.results.cost import read_benchmark

pytestmark = pytest.mark.slow

L1 = "digits/resnet20/l1/seed0/p0.5"
CLASSIC = {"grid": {"pretrained_baseline": True, "schedules": ["scratch_e"]}, "finetune": {"epochs": 1}}


@pytest.fixture(scope="module")
def classic_run(tmp_path_factory):
    return run_tiny_grid(tmp_path_factory, "classic", CLASSIC, "classic-baseline")


def test_the_standard_network_is_trained_once_and_serves_as_the_pretrained_model(classic_run):
    workdir, counts = classic_run
    assert counts == {"learn_gates": 1, "prune": 1, "train_pruned": 1, "train_full": 1, "prune_l1": 1,
                      "finetune_l1": 1, "train_l1": 1, **SUMMARY_JOBS}
    channels = yaml.safe_load((workdir / "results" / L1 / "channels.yaml").read_text())
    model = workdir / FULL / "model.pt"
    assert channels["method"] == "l1" and channels["model_sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()
    assert abs(channels["achieved_ratio"] - 0.5) <= 0.5 * channels["tolerance"]
    finetune = json.loads((workdir / "results" / L1 / "finetune" / "metrics.json").read_text())
    scratch = json.loads((workdir / "results" / L1 / "scratch_e" / "metrics.json").read_text())
    assert (finetune["method"], finetune["schedule"], scratch["method"], scratch["schedule"]) == (
        "l1", "finetune", "l1", "scratch_e")
    assert finetune["widths"] == scratch["widths"] == channels["widths"]  # one architecture, two trainings


def test_tables_separate_the_inherited_weights_from_the_architecture(classic_run):
    workdir, _ = classic_run
    table = pd.read_csv(workdir / "results" / "table.csv")
    assert list(zip(table["method"], table["schedule"], strict=True)) == [
        ("full", "scratch_e"), ("pfs", "scratch_e"), ("l1", "scratch_e"), ("l1", "finetune")]
    markdown = (workdir / "results" / "table.md").read_text()
    assert "| l1 |" in markdown and "finetune" in markdown


def test_each_rows_cost_is_its_chain_with_the_pretraining_shared(classic_run):
    workdir, _ = classic_run
    summary = pd.read_csv(workdir / "results" / "summary.csv").set_index(["method", "schedule"])
    seconds = {name: read_benchmark(workdir / "benchmarks" / f"{path}.tsv")["s"] for name, path in {
        "full": f"{FULL.removeprefix('results/')}/train_full", "prune_l1": f"{L1}/prune_l1",
        "finetune": f"{L1}/finetune/finetune_l1", "scratch": f"{L1}/scratch_e/train_l1"}.items()}
    finetune, scratch = summary.loc[("l1", "finetune")], summary.loc[("l1", "scratch_e")]
    assert finetune["cost_s"] == approx_seconds(seconds["full"] + seconds["prune_l1"] + seconds["finetune"])
    assert scratch["cost_s"] == approx_seconds(seconds["full"] + seconds["prune_l1"] + seconds["scratch"])
    # the pretraining serves the full row and both L1 rows, the L1 pruning both L1 rows: shared
    assert finetune["shared_s"] == approx_seconds(seconds["full"] + seconds["prune_l1"])
    assert summary.loc[("full", "scratch_e")]["cost_s"] == approx_seconds(seconds["full"])


@pytest.mark.parametrize("change, expected", [
    ({"finetune": {"lr": 0.002}}, {"finetune_l1": 1, **SUMMARY_JOBS}),
    ({"prune": {"tolerance": 0.02}}, {"prune": 1, "train_pruned": 1, "prune_l1": 1, "finetune_l1": 1,
                                       "train_l1": 1, **SUMMARY_JOBS}),
    ({"train": {"lr": 0.05}}, {"train_pruned": 1, "train_full": 1, "prune_l1": 1, "finetune_l1": 1, "train_l1": 1,
                               **SUMMARY_JOBS}),
    ({"grid": {"pretrained_baseline": False}}, dict(SUMMARY_JOBS)),
], ids=["finetune.lr", "prune.tolerance", "train.lr (pretraining too)", "baseline off"])
def test_a_change_reruns_exactly_what_it_reaches(classic_run, change, expected):
    planned, output = planned_jobs(classic_run[0], change, f"change-{len(str(change))}.yaml")
    assert planned == expected, output
