"""Network slimming (pfs.method.slim, its stage stage_prune_slim, the BN sparsity penalty of pfs.training.loop):
BN-scale scores
on hand-made weights (global, tied BNs averaged), the BN weights of every arch's groups, the penalty's exact effect on
one SGD step, surgery that keeps the kept channels' function, and the files the stage writes or refuses."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from pfs_pruning_kit import PRUNE_HP, assert_cut_keeps_logits, small_sizes, write_standard_model
from pfs_testkit import REPO, restored_globals
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from pfs.core import io
from pfs.core.errors import PfsError
from pfs.method.l1 import channel_map, kept_channels
from pfs.method.slim import RANKING, bn_scale_scores, group_batchnorms
from pfs.models import build_model, default_widths, list_models
from pfs.stages.classic import stage_prune_slim
from pfs.stages.experiment import Experiment
from pfs.stages.train import TrainJob
from pfs.training.loop import TrainConfig, train_from_scratch
from pfs.workflow.config import sparse_settings, train_settings

SPARSE = {"method": "slim", "schedule": "sparse"}  # the identity of train_sparse's model.pt

# ---------------------------------------------------------------- scores on hand-made BN weights


def test_scores_are_global_so_a_layer_of_small_scales_loses_its_channels_first():
    state = {"a.weight": torch.tensor([0.02, -0.04]), "b.weight": torch.tensor([0.5, 2.0, -1.0, 0.25])}
    scores = bn_scale_scores(state, [["a.weight"], ["b.weight"]])
    # divided by the network's largest |gamma| (2.0), not each layer's: layer a keeps its small scores
    assert scores[0].tolist() == pytest.approx([0.01, 0.02])
    assert scores[1].tolist() == pytest.approx([0.25, 1.0, 0.5, 0.125])
    assert float(scores[0].max()) < float(scores[1].min())  # a global threshold drops all of a before any of b


def test_the_batchnorms_of_one_group_are_averaged_onto_the_scale_of_a_single_bn():
    state = {"expand.weight": torch.tensor([1.0, -2.0]), "dw.weight": torch.tensor([0.5, 0.5]),
             "other.weight": torch.tensor([4.0])}
    scores = bn_scale_scores(state, [["expand.weight", "dw.weight"], ["other.weight"]])
    assert scores[0].tolist() == pytest.approx([0.75 / 4, 1.25 / 4]) and scores[1].tolist() == [1.0]


def test_all_zero_scales_score_zero_not_nan():
    scores = bn_scale_scores({"a.weight": torch.zeros(3)}, [["a.weight"]])
    assert scores[0].tolist() == [0.0, 0.0, 0.0]


def test_stage_prunes_the_layer_whose_scales_sparsity_training_shrank(tmp_path):
    """resnet20 with every BN scale in [0.5, 1.5] but block 0's bn1 at 0.001: per-layer normalisation (L1's) would
    rank that layer like any other; slimming's global ranking empties it to prune.min_width first."""
    exp = Experiment("digits", "resnet20", 0)
    state = write_standard_model(tmp_path / "model.pt", exp, **SPARSE)
    state["blocks.0.bn1.weight"].fill_(0.001)
    io.save_artifact(tmp_path / "model.pt", "pfs.model", {**io.load_artifact(tmp_path / "model.pt", "pfs.model"),
                                                          "state_dict": state})
    doc = stage_prune_slim(exp, str(tmp_path / "model.pt"), 0.5, PRUNE_HP, str(tmp_path / "channels.yaml"),
                           str(tmp_path / "pruned.pt"))
    assert doc["widths"][0] == PRUNE_HP["min_width"] and min(doc["widths"][1:]) > 1
    capped = stage_prune_slim(exp, str(tmp_path / "model.pt"), 0.5, {**PRUNE_HP, "max_layer_ratio": 0.75},
                              str(tmp_path / "capped.yaml"), str(tmp_path / "capped.pt"))
    assert capped["widths"][0] == 4 and capped["max_layer_ratio"] == 0.75  # ceil(0.25 x 16): the cap keeps the layer
    assert abs(capped["achieved_ratio"] - 0.5) <= 0.5 * PRUNE_HP["tolerance"]  # the other layers gave the MACs
    assert doc["max_layer_ratio"] == 1.0  # no cap unless asked (the paper's ranking)


# ---------------------------------------------------------------- the BN weights of every arch's groups


@pytest.mark.parametrize("arch", list_models())
def test_every_group_of_every_arch_indexes_a_batchnorm(arch):
    expansion, multiplier, _ = small_sizes(arch)
    model = build_model(arch, expansion=expansion, num_classes=10, multiplier=multiplier)
    found = group_batchnorms(model, channel_map(arch, model.widths, expansion, 10, multiplier), len(model.widths))
    assert len(found) == len(model.widths) and all(found)
    state = model.state_dict()
    assert all(state[k].shape == (w,) for keys, w in zip(found, model.widths, strict=True) for k in keys)
    if arch == "mobilenet_v2":  # a block's expansion BN and its depthwise BN follow one group
        assert found[1] == ["blocks.1.expand.1.weight", "blocks.1.dw.1.weight"]


def test_a_group_without_batchnorm_is_refused_in_one_line():
    model = build_model("resnet20", expansion=2)
    cmap = channel_map("resnet20", model.widths, 2, 10)
    del cmap["blocks.3.bn1.weight"]
    with pytest.raises(PfsError, match=r"prunable groups \[3\] of resnet20 index no BatchNorm2d weight") as err:
        group_batchnorms(model, cmap, len(model.widths))
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------- the sparsity penalty


def _one_step(tmp_path: Path, bn_sparsity: float, gamma: torch.Tensor) -> nn.Module:
    """One SGD step (one batch, one epoch, no momentum or weight decay) of a tiny conv-BN net from a fixed init."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    with torch.no_grad():
        model[1].weight.copy_(gamma)
    g = torch.Generator().manual_seed(1)
    data = TensorDataset(torch.randn(8, 3, 8, 8, generator=g), torch.randint(0, 3, (8,), generator=g))
    cfg = TrainConfig(epochs=1, batch_size=8, lr=0.1, momentum=0.0, weight_decay=0.0, bn_sparsity=bn_sparsity,
                      channels_last=False)
    loader = DataLoader(data, batch_size=8)
    train_from_scratch(model, loader, loader, cfg, 1, 0, torch.device("cpu"), tmp_path / f"{bn_sparsity}.pt", "k")
    return model


def test_the_penalty_moves_every_bn_scale_toward_zero_by_lr_s_sign(tmp_path):
    gamma = torch.tensor([0.5, -0.3, 0.2, -0.1])
    plain, sparse = _one_step(tmp_path, 0.0, gamma), _one_step(tmp_path, 0.01, gamma)
    shift = sparse[1].weight.detach() - plain[1].weight.detach()
    assert torch.allclose(shift, -0.1 * 0.01 * torch.sign(gamma), atol=1e-7)
    for name, p in plain.named_parameters():  # nothing else changes: the data's gradient is the same
        if name != "1.weight":
            assert torch.equal(p, dict(sparse.named_parameters())[name]), name


def test_only_the_sparse_job_gets_the_penalty():
    config = {"train": {"epochs": 3, "lr": 0.1}, "train_by_arch": {}, "slimming": {"s": 1e-5}}
    assert sparse_settings(config, "resnet20") == {**train_settings(config, "resnet20"), "bn_sparsity": 1e-5}
    assert "bn_sparsity" not in train_settings(config, "resnet20")
    base = {"dataset": "digits", "arch": "resnet20", "seed": 0, "outputs": {"model": "m", "metrics": "j",
                                                                             "history": "h"}}
    job = TrainJob(**base, method="slim", schedule="sparse", train={"bn_sparsity": 1e-5})
    assert TrainJob.from_json(job.to_json()) == job and job.channels is None
    for change, message in [
        ({"method": "slim", "schedule": "sparse"}, "exactly in a job of schedule sparse; got schedule sparse with "
                                                   "bn_sparsity 0"),
        ({"train": {"bn_sparsity": 1e-4}}, "got schedule scratch_e with bn_sparsity 0.0001"),
        ({"method": "l1", "schedule": "sparse", "train": {"bn_sparsity": 1e-4}}, "is method slim's, not l1's"),
        ({"method": "slim", "schedule": "sparse", "channels": "c.yaml", "train": {"bn_sparsity": 1e-4}},
         "method slim and schedule sparse needs no channels file"),
    ]:
        with pytest.raises(PfsError, match=message):
            TrainJob(**{**base, **change})


# ---------------------------------------------------------------- surgery


@pytest.mark.parametrize("arch", ["resnet20", "vgg11_bn", "mobilenet_v1", "mobilenet_v2", "resnet50"])
def test_pruning_the_channels_of_zero_scale_keeps_the_logits(arch):
    """Scales (and shifts) of half of every group's channels at 0, as a strong sparsity training leaves them: the
    BN-scale ranking drops exactly those, and the network cut to the rest gives the same logits."""
    expansion, multiplier, size = small_sizes(arch)
    torch.manual_seed(0)
    model = build_model(arch, expansion=expansion, num_classes=10, multiplier=multiplier)
    cmap = channel_map(arch, model.widths, expansion, 10, multiplier)
    groups = group_batchnorms(model, cmap, len(model.widths))
    g = torch.Generator().manual_seed(1)
    wanted = [torch.randperm(w, generator=g)[: max(1, w // 2)].sort().values for w in model.widths]
    state = model.state_dict()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.running_var.uniform_(0.5, 2.0, generator=g)
        for keys, keep in zip(groups, wanted, strict=True):
            for key in keys:
                dropped = torch.ones(state[key].numel(), dtype=torch.bool)
                dropped[keep] = False
                state[key][dropped] = 0
                state[key.removesuffix("weight") + "bias"][dropped] = 0
    kept = kept_channels(bn_scale_scores(state, groups), [len(k) for k in wanted])
    assert [k.tolist() for k in kept] == [k.tolist() for k in wanted]
    assert_cut_keeps_logits(model, state, cmap, kept, arch, expansion, multiplier, size, g)


# ---------------------------------------------------------------- the stage and its script


EXP = Experiment("digits", "resnet20", 3)


def test_stage_prune_slim_writes_channels_and_the_pruned_weights_of_the_kept_channels(tmp_path):
    model_pt = tmp_path / "model.pt"
    state = write_standard_model(model_pt, EXP, **SPARSE)
    channels, pruned_pt = tmp_path / "p0.5" / "channels.yaml", tmp_path / "p0.5" / "pruned.pt"
    doc = stage_prune_slim(EXP, str(model_pt), 0.5, PRUNE_HP, str(channels), str(pruned_pt))

    assert yaml.safe_load(channels.read_text()) == doc
    assert (doc["method"], doc["ranking"], doc["expansion"]) == ("slim", RANKING, 16)
    assert doc["model_sha256"] == io.sha256_file(model_pt)
    assert abs(doc["achieved_ratio"] - 0.5) <= 0.5 * PRUNE_HP["tolerance"]
    pruned = io.load_artifact(pruned_pt, "pfs.pruned")
    full = default_widths("resnet20", 16)
    cmap = channel_map("resnet20", full, 16, 10)
    groups = group_batchnorms(build_model("resnet20"), cmap, len(full))
    kept = kept_channels(bn_scale_scores(state, groups), doc["widths"])
    assert [k.tolist() for k in pruned["kept"]] == [k.tolist() for k in kept] and pruned["ranking"] == RANKING
    build_model("resnet20", widths=doc["widths"]).load_state_dict(pruned["state_dict"], strict=True)


@pytest.mark.parametrize(("identity", "message"), [
    ({"method": "full", "schedule": "scratch_e"}, r"was made for method='full', but this job needs method='slim'"),
    ({**SPARSE, "schedule": "scratch_e"}, r"was made for schedule='scratch_e', but this job needs schedule='sparse'"),
    ({**SPARSE, "seed": 4}, r"was made for seed=4, but this job needs seed=3"),
])
def test_stage_prune_slim_refuses_a_model_that_is_not_the_sparse_run_in_one_line(tmp_path, identity, message):
    write_standard_model(tmp_path / "model.pt", EXP, **identity)
    out = tmp_path / "out"
    with pytest.raises(PfsError, match=message) as err:
        stage_prune_slim(EXP, str(tmp_path / "model.pt"), 0.5, PRUNE_HP, str(out / "channels.yaml"),
                         str(out / "pruned.pt"))
    assert "\n" not in str(err.value) and "rerun train_sparse" in str(err.value) and not out.exists()


def test_the_prune_slim_script_writes_both_outputs(tmp_path):
    import importlib
    import sys

    write_standard_model(tmp_path / "model.pt", EXP, **SPARSE)
    outputs = {"channels": str(tmp_path / "channels.yaml"), "pruned": str(tmp_path / "pruned.pt")}
    wildcards = {"dataset": "digits", "arch": "resnet20", "seed": "3", "ratio": "0.5"}
    sys.path.insert(0, str(REPO / "workflow_scripts"))
    try:
        with restored_globals():
            importlib.import_module("prune_slim").main({"model": str(tmp_path / "model.pt")}, outputs,
                                                       {"hp": PRUNE_HP}, wildcards, {},
                                                       str(tmp_path / "prune_slim.log"))
    finally:
        sys.path.remove(str(REPO / "workflow_scripts"))
    assert yaml.safe_load(Path(outputs["channels"]).read_text())["method"] == "slim"
    assert io.load_artifact(outputs["pruned"], "pfs.pruned")["ranking"] == RANKING


def test_the_figures_draw_slim_in_its_own_style_with_the_fine_tuned_marker():
    from pfs.results.plots import _STYLE, _style

    assert _STYLE["slim"] not in [style for method, style in _STYLE.items() if method != "slim"]
    assert _style("slim", "finetune") == (_STYLE["slim"][0], "P", _STYLE["slim"][0])  # plus, as l1's fine-tuning
    assert _style("slim", "scratch_b")[1:] == (_STYLE["slim"][1], "none")  # hollow Scratch-B
