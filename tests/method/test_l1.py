"""L1-norm filter pruning (pfs.method.l1) and its stage (stage_prune_l1): the channel map of every arch, scores on
hand-made weights, surgery that keeps the kept channels' function, and the files the stage writes or refuses."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from pfs_pruning_kit import PRUNE_HP, assert_cut_keeps_logits, randomise_bn, small_sizes, write_standard_model
from pfs_testkit import REPO, restored_globals

from pfs.core import io
from pfs.core.errors import PfsError
from pfs.method.l1 import RANKING, channel_map, kept_channels, l1_scores, prune_state
from pfs.models import build_model, default_widths, list_models
from pfs.stages.classic import stage_prune_l1
from pfs.stages.experiment import Experiment

# ---------------------------------------------------------------- scores on hand-made weights


def _resnet20_with_strong_channels(strong: dict[int, list[int]]) -> tuple[dict, list[int]]:
    """resnet20 at expansion 4: every prunable conv's filters at 0.01, but those of channels ``strong[g]`` of group
    ``g`` at 1 (a layer-dependent scale: group g's weights are multiplied by 10**g)."""
    model = build_model("resnet20", expansion=4)
    state = model.state_dict()
    for group in range(len(model.widths)):
        weight = state[f"blocks.{group}.conv1.weight"]
        weight.fill_(0.01 * 10**group)
        weight[strong.get(group, [])] = 10**group
    return state, model.widths


def test_l1_keeps_the_channels_whose_filters_have_the_largest_norms():
    strong = {0: [2], 3: [1, 6], 8: [0, 5, 15]}
    state, widths = _resnet20_with_strong_channels(strong)
    scores = l1_scores(state, channel_map("resnet20", widths, 4, 10), widths)
    kept = kept_channels(scores, [1, 4, 4, 2, 8, 8, 16, 16, 3])
    assert kept[0].tolist() == [2] and kept[3].tolist() == [1, 6] and kept[8].tolist() == [0, 5, 15]
    assert kept[1].tolist() == [0, 1, 2, 3]  # a group kept whole
    assert kept[4].tolist() == list(range(8))


def test_l1_scores_are_normalised_per_group_so_layer_scale_does_not_matter():
    state, widths = _resnet20_with_strong_channels({0: [2], 5: [3]})
    scores = l1_scores(state, channel_map("resnet20", widths, 4, 10), widths)
    # every group's largest score is 1, whatever the layer's weight scale (group g's weights are 10**g larger)
    assert [float(s.max()) for s in scores] == [1.0] * 9
    assert scores[0].tolist() == pytest.approx([0.01, 0.01, 1.0, 0.01])
    assert scores[5].tolist() == pytest.approx([0.01] * 3 + [1.0] + [0.01] * 4)
    assert scores[1].tolist() == pytest.approx([1.0] * 4)  # equal filters: equal scores
    assert all(float(s.min()) >= 0 for s in scores)


def test_l1_score_sums_every_filter_a_group_outputs_pointwise_and_depthwise():
    # mobilenet_v1's stem group feeds block 0's depthwise conv, whose filters are indexed by the same channels
    widths = default_widths("mobilenet_v1", 2)
    state = build_model("mobilenet_v1", expansion=2, num_classes=10).state_dict()
    stem, dw = state["stem.0.weight"], state["blocks.0.dw.0.weight"]  # (2, 3, 3, 3) and (2, 1, 3, 3)
    stem.zero_()
    dw.zero_()
    stem[0] = 1.0  # L1 27
    dw[0], dw[1] = 1.0, 4.0  # L1 9 and 36
    scores = l1_scores(state, channel_map("mobilenet_v1", widths, 2, 10), widths)
    assert scores[0].tolist() == pytest.approx([1.0, 1.0])  # 27 + 9 = 36 = 0 + 36


def test_a_group_of_zero_filters_scores_zero_not_nan():
    state, widths = _resnet20_with_strong_channels({})
    state["blocks.4.conv1.weight"].zero_()
    scores = l1_scores(state, channel_map("resnet20", widths, 4, 10), widths)
    assert scores[4].tolist() == [0.0] * 8


def test_kept_channels_break_ties_by_the_lower_index_and_refuse_a_width_out_of_range():
    scores = [torch.tensor([0.5, 1.0, 0.5, 0.5, 0.2])]
    assert kept_channels(scores, [3])[0].tolist() == [0, 1, 2]
    with pytest.raises(PfsError, match=r"width 6 of group 0 is outside 1..5"):
        kept_channels(scores, [6])


# ---------------------------------------------------------------- channel map and surgery, every arch



@pytest.mark.parametrize("arch", list_models())
def test_surgery_on_a_network_whose_dropped_channels_are_silent_keeps_its_logits(arch):
    """Silence the dropped channels (BN scale and shift 0, gate 0: they output exactly 0), then cut them away:
    the smaller network, built from its widths and loaded strictly, gives the same logits."""
    expansion, multiplier, size = small_sizes(arch)
    torch.manual_seed(0)
    model = build_model(arch, expansion=expansion, num_classes=10, multiplier=multiplier)
    randomise_bn(model)
    widths = model.widths
    cmap = channel_map(arch, widths, expansion, 10, multiplier)
    g = torch.Generator().manual_seed(1)
    kept = [torch.randperm(w, generator=g)[: max(1, w // 2)].sort().values for w in widths]
    state = model.state_dict()
    with torch.no_grad():
        for key, dims in cmap.items():
            if state[key].ndim == 1 and key.endswith(("weight", "bias")):  # BN affine and gate values
                dropped = torch.ones(widths[dims[0]], dtype=torch.bool)
                dropped[kept[dims[0]]] = False
                state[key][dropped] = 0
    assert_cut_keeps_logits(model, state, cmap, kept, arch, expansion, multiplier, size, g)



def test_prune_state_keeping_every_channel_is_the_identity_and_copies():
    model = build_model("vgg11_bn", expansion=4)
    state = model.state_dict()
    cmap = channel_map("vgg11_bn", model.widths, 4, 10)
    pruned = prune_state(state, cmap, [torch.arange(w) for w in model.widths])
    assert pruned.keys() == state.keys() and all(torch.equal(pruned[k], state[k]) for k in state)
    assert all(pruned[k].data_ptr() != state[k].data_ptr() for k in state)  # no tensor shared with the model


def test_channel_map_leaves_out_what_no_group_indexes_and_maps_both_dims_of_a_conv():
    widths = default_widths("resnet20", 2)
    cmap = channel_map("resnet20", widths, 2, 10)
    assert "stem.0.weight" not in cmap and "fc.weight" not in cmap  # residual stream: never pruned
    assert cmap["blocks.0.conv1.weight"] == {0: 0} and cmap["blocks.0.conv2.weight"] == {1: 0}
    assert cmap["blocks.8.bn1.running_var"] == {0: 8} and cmap["blocks.8.gate.weight"] == {0: 8}
    vgg = channel_map("vgg11_bn", default_widths("vgg11_bn", 4), 4, 10)
    assert vgg["features.2.0.weight"] == {0: 1, 1: 0} and vgg["classifier.weight"] == {1: 7}


def test_channel_map_refuses_a_dim_that_follows_two_groups(monkeypatch):
    import pfs.method.l1

    def concatenated(arch, widths, *rest):  # a layer on the concatenation of groups 0 and 1
        return {"a": (widths[0],), "b": (widths[1],), "cat": (widths[0] + widths[1], 3)}

    monkeypatch.setattr(pfs.method.l1, "_shapes", concatenated)
    with pytest.raises(RuntimeError, match="cat dim 0 does not follow one prunable group"):
        channel_map("fake", [2, 3], 1, 10)


# ---------------------------------------------------------------- the stage


EXP = Experiment("digits", "resnet20", 3)  # the standard width (16): ratios are measured against it


def test_stage_prune_l1_writes_channels_and_the_pruned_weights_of_the_kept_channels(tmp_path):
    model_pt = tmp_path / "model.pt"
    state = write_standard_model(model_pt, EXP)
    channels, pruned_pt = tmp_path / "p0.5" / "channels.yaml", tmp_path / "p0.5" / "pruned.pt"
    doc = stage_prune_l1(EXP, str(model_pt), 0.5, PRUNE_HP, str(channels), str(pruned_pt))

    assert yaml.safe_load(channels.read_text()) == doc
    assert (doc["method"], doc["ranking"], doc["arch"], doc["expansion"]) == ("l1", RANKING, "resnet20", 16)
    assert doc["model_sha256"] == io.sha256_file(model_pt) and doc["model_file"] == str(model_pt)
    assert abs(doc["achieved_ratio"] - 0.5) <= 0.5 * PRUNE_HP["tolerance"]
    pruned = io.load_artifact(pruned_pt, "pfs.pruned")
    assert pruned["widths"] == doc["widths"] and pruned["seed"] == 3 and pruned["model_sha256"] == doc["model_sha256"]

    full = default_widths("resnet20", 16)
    cmap = channel_map("resnet20", full, 16, 10)
    kept = kept_channels(l1_scores(state, cmap, full), doc["widths"])
    assert [k.tolist() for k in pruned["kept"]] == [k.tolist() for k in kept]
    expected = prune_state(state, cmap, kept)
    assert all(torch.equal(pruned["state_dict"][k], expected[k]) for k in expected)
    build_model("resnet20", widths=doc["widths"]).load_state_dict(pruned["state_dict"], strict=True)


def test_stage_prune_l1_keeps_a_layer_the_normalised_ranking_would_cut_to_one_channel_at_its_cap(tmp_path):
    """Block 0's filters all at 0.01 but one at 1: normalised per layer, its other 15 channels score 0.01 and the
    global ranking cuts the layer to one channel; prune.max_layer_ratio 0.75 keeps ceil(0.25 x 16) = 4 of them."""
    model_pt = tmp_path / "model.pt"
    state = write_standard_model(model_pt, EXP)
    state["blocks.0.conv1.weight"].fill_(0.01)
    state["blocks.0.conv1.weight"][5] = 1.0
    io.save_artifact(model_pt, "pfs.model", {**io.load_artifact(model_pt, "pfs.model"), "state_dict": state})
    out = tmp_path / "out"
    uncapped = stage_prune_l1(EXP, str(model_pt), 0.5, PRUNE_HP, str(out / "a.yaml"), str(out / "a.pt"))
    assert uncapped["widths"][0] == 1
    capped = stage_prune_l1(EXP, str(model_pt), 0.5, {**PRUNE_HP, "max_layer_ratio": 0.75}, str(out / "b.yaml"),
                            str(out / "b.pt"))
    assert capped["widths"][0] == 4 and abs(capped["achieved_ratio"] - 0.5) <= 0.5 * PRUNE_HP["tolerance"]
    kept = io.load_artifact(out / "b.pt", "pfs.pruned")["kept"][0].tolist()
    assert 5 in kept and len(kept) == 4  # the strong filter and three of the tied weak ones


@pytest.mark.parametrize(("identity", "message"), [
    ({"seed": 4}, r"was made for seed=4, but this job needs seed=3"),
    ({"arch": "resnet32"}, r"was made for arch='resnet32'"),
    ({"expansion": 5}, r"was made for expansion=5"),
    ({"dataset": "cifar10"}, r"was made for dataset='cifar10'"),
    ({"method": "pfs"}, r"was made for method='pfs', but this job needs method='full'"),
    ({"widths": [2] * 9}, r"has widths \[2, 2, .*\], not the standard resnet20's"),
])
def test_stage_prune_l1_refuses_a_model_of_another_run_in_one_line_and_writes_nothing(tmp_path, identity, message):
    model_pt = tmp_path / "model.pt"
    write_standard_model(model_pt, EXP, **identity)
    out = tmp_path / "out"
    with pytest.raises(PfsError, match=message) as err:
        stage_prune_l1(EXP, str(model_pt), 0.5, PRUNE_HP, str(out / "channels.yaml"), str(out / "pruned.pt"))
    assert "\n" not in str(err.value) and not out.exists()


def test_stage_prune_l1_refuses_a_file_that_is_not_a_model(tmp_path):
    io.save_artifact(tmp_path / "gates.pt", "pfs.gates", {"arch": "resnet20"})
    with pytest.raises(PfsError, match=r"is not a pfs.model file \(found 'pfs.gates'\)"):
        stage_prune_l1(EXP, str(tmp_path / "gates.pt"), 0.5, PRUNE_HP, str(tmp_path / "c.yaml"),
                       str(tmp_path / "p.pt"))


def test_the_prune_l1_script_writes_both_outputs(tmp_path):
    import importlib
    import sys


    model_pt = tmp_path / "model.pt"
    write_standard_model(model_pt, EXP)
    outputs = {"channels": str(tmp_path / "channels.yaml"), "pruned": str(tmp_path / "pruned.pt")}
    wildcards = {"dataset": "digits", "arch": "resnet20", "seed": "3", "ratio": "0.5"}
    sys.path.insert(0, str(REPO / "workflow_scripts"))
    try:
        with restored_globals():
            importlib.import_module("prune_l1").main({"model": str(model_pt)}, outputs, {"hp": PRUNE_HP}, wildcards,
                                                     {}, str(tmp_path / "prune_l1.log"))
    finally:
        sys.path.remove(str(REPO / "workflow_scripts"))
    assert yaml.safe_load(Path(outputs["channels"]).read_text())["method"] == "l1"
    assert io.load_artifact(outputs["pruned"], "pfs.pruned")["ranking"] == RANKING
