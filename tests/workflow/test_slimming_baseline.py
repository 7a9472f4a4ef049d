"""Network slimming (grid.slimming_baseline) in a real Snakemake run of the tiny grid: the standard network trained
with the BN sparsity penalty (a pretraining, not a table row), pruned by BN scale, fine-tuned, and its architecture
trained from scratch; the tables carry the new rows and each row's cost is its chain's."""

from __future__ import annotations

import hashlib
import json

import pandas as pd
import pytest
import torch
import yaml
from smk_run import FULL, SUMMARY_JOBS, approx_seconds, planned_jobs, run_tiny_grid

from pfs.core import io
from pfs.results.cost import read_benchmark

pytestmark = pytest.mark.slow

SPARSE = "digits/resnet20/slim/seed0/sparse"
SLIM = "digits/resnet20/slim/seed0/p0.5"
# s 100x the VGG default: one epoch of ~12 steps at lr 0.1 moves every BN scale by ~0.01 toward zero, well above
# the drift between two runs that differ in the penalty alone (same init, same batches)
SLIMMING = {"grid": {"slimming_baseline": True, "schedules": ["scratch_e"]}, "finetune": {"epochs": 1},
            "slimming": {"s": 0.01}}


@pytest.fixture(scope="module")
def slim_run(tmp_path_factory):
    return run_tiny_grid(tmp_path_factory, "slimming", SLIMMING, "network-slimming")


def _bn_scales(path) -> torch.Tensor:
    state = io.load_artifact(path, "pfs.model")["state_dict"]
    return torch.cat([v.abs().flatten() for k, v in state.items() if k.endswith("weight") and f"{k[:-6]}running_var"
                      in state])


def test_the_sparse_network_is_trained_once_pruned_fine_tuned_and_retrained(slim_run):
    workdir, counts = slim_run
    assert counts == {"learn_gates": 1, "prune": 1, "train_pruned": 1, "train_full": 1, "train_sparse": 1,
                      "prune_slim": 1, "finetune_slim": 1, "train_slim": 1, **SUMMARY_JOBS}
    channels = yaml.safe_load((workdir / "results" / SLIM / "channels.yaml").read_text())
    model = workdir / "results" / SPARSE / "model.pt"
    assert channels["method"] == "slim" and channels["ranking"] == "bn_scale_global"
    assert channels["model_sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()
    finetune = json.loads((workdir / "results" / SLIM / "finetune" / "metrics.json").read_text())
    scratch = json.loads((workdir / "results" / SLIM / "scratch_e" / "metrics.json").read_text())
    assert (finetune["schedule"], scratch["schedule"], finetune["method"], scratch["method"]) == (
        "finetune", "scratch_e", "slim", "slim")
    assert finetune["widths"] == scratch["widths"] == channels["widths"]
    assert finetune["settings"]["bn_sparsity"] == scratch["settings"]["bn_sparsity"] == 0  # the penalty: sparse only


def test_the_penalty_shrinks_the_bn_scales_of_the_sparse_run_only(slim_run):
    workdir, _ = slim_run
    sparse = json.loads((workdir / "results" / SPARSE / "metrics.json").read_text())
    full = json.loads((workdir / FULL / "metrics.json").read_text())
    assert (sparse["method"], sparse["schedule"], sparse["settings"]["bn_sparsity"]) == ("slim", "sparse", 0.01)
    assert full["settings"]["bn_sparsity"] == 0 and sparse["epochs"] == full["epochs"]  # train's Scratch-E recipe
    sparse_scales = _bn_scales(workdir / "results" / SPARSE / "model.pt")
    full_scales = _bn_scales(workdir / FULL / "model.pt")
    assert float(sparse_scales.mean()) < float(full_scales.mean()) - 0.005


def test_tables_carry_the_slim_rows_and_each_cost_is_its_chain(slim_run):
    workdir, _ = slim_run
    table = pd.read_csv(workdir / "results" / "table.csv")
    assert list(zip(table["method"], table["schedule"], strict=True)) == [
        ("full", "scratch_e"), ("pfs", "scratch_e"), ("slim", "scratch_e"), ("slim", "finetune")]  # no sparse row
    summary = pd.read_csv(workdir / "results" / "summary.csv").set_index(["method", "schedule"])
    seconds = {name: read_benchmark(workdir / "benchmarks" / f"{path}.tsv")["s"] for name, path in {
        "sparse": f"{SPARSE}/train_sparse", "prune": f"{SLIM}/prune_slim", "finetune": f"{SLIM}/finetune/finetune_slim",
        "scratch": f"{SLIM}/scratch_e/train_slim"}.items()}
    finetune, scratch = summary.loc[("slim", "finetune")], summary.loc[("slim", "scratch_e")]
    assert finetune["cost_s"] == approx_seconds(seconds["sparse"] + seconds["prune"] + seconds["finetune"])
    assert scratch["cost_s"] == approx_seconds(seconds["sparse"] + seconds["prune"] + seconds["scratch"])
    assert finetune["shared_s"] == approx_seconds(seconds["sparse"] + seconds["prune"])


@pytest.mark.parametrize("change, expected", [
    ({"slimming": {"s": 0.02}}, {"train_sparse": 1, "prune_slim": 1, "finetune_slim": 1, "train_slim": 1,
                                 **SUMMARY_JOBS}),
    ({"train": {"lr": 0.05}}, {"train_pruned": 1, "train_full": 1, "train_sparse": 1, "prune_slim": 1,
                               "finetune_slim": 1, "train_slim": 1, **SUMMARY_JOBS}),
    ({"grid": {"slimming_baseline": False}}, dict(SUMMARY_JOBS)),
], ids=["slimming.s", "train.lr (sparsity training too)", "baseline off"])
def test_a_change_reruns_exactly_what_it_reaches(slim_run, change, expected):
    planned, output = planned_jobs(slim_run[0], change, f"change-{len(str(change))}.yaml")
    assert planned == expected, output
