"""The random-gates ablation: seeded uniform gates in the layout of learned gates, pruned by the same stage."""

from __future__ import annotations

import pytest
import torch
import yaml

from pfs.core import io
from pfs.method.gates import random_gates
from pfs.models import default_widths
from pfs.stages.artifacts import load_channels
from pfs.stages.experiment import Experiment
from pfs.stages.learn_gates import stage_random_gates
from pfs.stages.prune import stage_prune

PRUNE = {"min_width": 1, "tolerance": 0.01, "max_fill": 64, "round_to": 1}


def test_random_gates_are_seeded_uniform_values_one_per_channel():
    widths = default_widths("resnet56", 20)
    gates = random_gates(widths, seed=3)
    assert [g.numel() for g in gates] == widths
    values = torch.cat(gates)
    assert values.min() >= 0 and values.max() < 1
    assert abs(values.mean().item() - 0.5) < 0.05  # 1680 uniform draws: sd of the mean ~0.007
    assert all(torch.equal(a, b) for a, b in zip(gates, random_gates(widths, seed=3), strict=True))
    assert not torch.equal(values, torch.cat(random_gates(widths, seed=4)))


def test_random_gates_prune_like_learned_ones_and_say_so_in_channels_yaml(tmp_path):
    exp = Experiment("cifar10", "resnet56", seed=1, expansion=20)
    gates_path, channels_path = tmp_path / "gates.pt", tmp_path / "channels.yaml"
    stage_random_gates(exp, 10, str(gates_path))
    saved = io.load_artifact(gates_path, "pfs.gates")
    assert saved["method"] == "random" and saved["sparsity"] is None and saved["num_classes"] == 10
    doc = stage_prune(exp, str(gates_path), 0.5, PRUNE, str(channels_path))
    assert doc["method"] == "random" and abs(doc["achieved_ratio"] - 0.5) <= 0.005
    assert load_channels(str(channels_path), exp, 10)["widths"] == doc["widths"]
    full = default_widths("resnet56", 20)
    fractions = [w / f for w, f in zip(doc["widths"], full, strict=True)]
    assert max(fractions) < 1 and min(fractions) > 0  # a random subset of every group, no group emptied
    other = tmp_path / "other.pt"
    stage_random_gates(Experiment("cifar10", "resnet56", seed=2, expansion=20), 10, str(other))
    assert stage_prune(exp, str(other), 0.5, PRUNE, str(tmp_path / "c2.yaml"))["widths"] != doc["widths"]


def test_learned_gates_prune_to_method_pfs(tmp_path):
    exp = Experiment("cifar10", "resnet20", seed=0, expansion=16)
    widths = default_widths("resnet20", 16)
    io.save_artifact(tmp_path / "gates.pt", "pfs.gates", {
        "arch": "resnet20", "dataset": "cifar10", "expansion": 16, "multiplier": 1.0, "widths": widths,
        "gates": random_gates(widths, 0), "num_classes": 10})
    stage_prune(exp, str(tmp_path / "gates.pt"), 0.3, PRUNE, str(tmp_path / "channels.yaml"))
    assert yaml.safe_load((tmp_path / "channels.yaml").read_text())["method"] == "pfs"


@pytest.mark.parametrize(("val_top1", "near"), [(0.1367, True), (0.60, False)])
def test_channels_yaml_says_whether_the_learned_gates_it_was_pruned_from_are_near_chance(tmp_path, val_top1, near):
    exp = Experiment("cifar10", "resnet20", seed=1, expansion=16)
    widths = default_widths("resnet20", 16)
    io.save_artifact(tmp_path / "gates.pt", "pfs.gates", {
        "arch": "resnet20", "dataset": "cifar10", "expansion": 16, "multiplier": 1.0, "widths": widths,
        "gates": random_gates(widths, 0), "num_classes": 10, "target_met": True, "nonzero_fraction": 0.5,
        "val_top1": val_top1, "val_indices": torch.arange(300)})  # 300 held-out images: chance line 15.2%
    stage_prune(exp, str(tmp_path / "gates.pt"), 0.3, PRUNE, str(tmp_path / "channels.yaml"))
    doc = yaml.safe_load((tmp_path / "channels.yaml").read_text())
    assert (doc["target_met"], doc["gates_val_top1"], doc["gates_near_chance"]) == (True, val_top1, near)
    stage_random_gates(exp, 10, str(tmp_path / "random.pt"))  # no held-out evaluation: nothing recorded
    stage_prune(exp, str(tmp_path / "random.pt"), 0.3, PRUNE, str(tmp_path / "random.yaml"))
    assert "gates_near_chance" not in yaml.safe_load((tmp_path / "random.yaml").read_text())


@pytest.mark.parametrize("seed", [0, 1])
def test_random_gates_files_are_byte_identical_for_a_seed(tmp_path, seed):
    exp = Experiment("cifar10", "vgg16_bn", seed=seed, expansion=64)
    stage_random_gates(exp, 10, str(tmp_path / "a.pt"))
    stage_random_gates(exp, 10, str(tmp_path / "b.pt"))
    assert io.sha256_file(tmp_path / "a.pt") == io.sha256_file(tmp_path / "b.pt")
