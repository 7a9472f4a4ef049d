"""Model registry and gated architectures: shapes, gate placement, widths, expansion and argument checks."""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from pfs.models import Gate, build_model, default_widths, get_spec, list_models
from pfs.models.resnet_cifar import BasicBlock

ARCHS = list_models()
VGGS = [a for a in ARCHS if a.startswith("vgg")]
RESNETS = [a for a in ARCHS if a.startswith("resnet")]


def build_meta(arch: str, widths: list[int] | None = None, expansion: int | None = None) -> nn.Module:
    """Build on the meta device: structure and shapes without memory (cached: tests only read these models)."""
    return _build_meta(arch, None if widths is None else tuple(widths), expansion)


@functools.cache
def _build_meta(arch: str, widths: tuple[int, ...] | None, expansion: int | None) -> nn.Module:
    with torch.device("meta"):
        return build_model(arch, widths=widths, expansion=expansion)


def leaf_call_order(model: nn.Module, size: int = 32) -> list[nn.Module]:
    """The leaf modules in the order the forward pass calls them."""
    x = torch.zeros(1, 3, size, size, device=next(model.parameters()).device)
    calls: list[nn.Module] = []
    hooks = [m.register_forward_hook(lambda mod, _i, _o: calls.append(mod))
             for m in model.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            model.eval()(x)
    finally:
        for h in hooks:
            h.remove()
    return calls


def test_registry_lists_the_cifar_families():
    assert ARCHS == sorted(ARCHS)
    assert set(ARCHS) >= {"resnet20", "resnet32", "resnet44", "resnet56", "resnet110",
                          "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn"}


def test_every_registered_arch_has_a_gate_placement_test():
    # the placement tests below are written per family; a new family needs its own
    assert sorted(VGGS + RESNETS) == ARCHS


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("size", [32, 16])
def test_forward_gives_one_logit_row_per_image(arch, size):
    torch.manual_seed(0)
    model = build_model(arch, num_classes=7)
    with torch.no_grad():
        out = model.eval()(torch.randn(2, 3, size, size))
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("arch", ARCHS)
def test_gates_match_widths_and_default_widths(arch):
    spec = get_spec(arch)
    for expansion in (None, spec.base_expansion + 4):
        model = build_meta(arch, expansion=expansion)
        want = default_widths(arch, expansion)
        assert model.widths == want
        assert [g.channels for g in model.gates()] == want
        assert len(model.gates()) == len(want)
        assert model.expansion == (spec.base_expansion if expansion is None else expansion)
        assert model.arch == arch


@pytest.mark.parametrize("arch", ARCHS)
def test_gates_initialise_to_one(arch):
    model = build_model(arch)
    for gate in model.gates():
        assert torch.equal(gate.weight.detach(), torch.ones(gate.channels))
        assert gate.weight.requires_grad


@pytest.mark.parametrize("arch", ARCHS)
def test_weight_parameters_are_every_parameter_but_the_gates(arch):
    model = build_meta(arch)
    gate_ids = {id(p) for p in model.gate_parameters()}
    weight_ids = {id(p) for p in model.weight_parameters()}
    assert not gate_ids & weight_ids
    assert gate_ids | weight_ids == {id(p) for p in model.parameters()}
    assert len(gate_ids) == len(model.widths)


@pytest.mark.parametrize("arch", VGGS)
def test_vgg_every_conv_is_followed_by_bn_gate_relu(arch):
    model = build_meta(arch, expansion=8)  # narrow: placement does not depend on width
    calls = leaf_call_order(model)
    convs = [i for i, m in enumerate(calls) if isinstance(m, nn.Conv2d)]
    gates = [m for m in calls if isinstance(m, Gate)]
    assert len(convs) == len(gates) == len(model.widths)
    for i in convs:
        conv, bn, gate, relu = calls[i:i + 4]
        assert isinstance(bn, nn.BatchNorm2d) and isinstance(gate, Gate) and isinstance(relu, nn.ReLU)
        assert conv.out_channels == bn.num_features == gate.channels
    assert [calls[i].out_channels for i in convs] == model.widths
    assert isinstance(calls[-1], nn.Linear) and calls[-1].in_features == model.widths[-1]


@pytest.mark.parametrize("arch", RESNETS)
def test_resnet_one_gate_per_block_after_bn1_and_residual_stream_ungated(arch):
    e = 6
    model = build_meta(arch, expansion=e)
    n = (int(arch.removeprefix("resnet")) - 2) // 6
    blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
    assert len(blocks) == 3 * n == len(model.widths)
    calls = leaf_call_order(model)
    assert sum(isinstance(m, Gate) for m in calls) == len(blocks)

    # the stem: conv-BN-ReLU at width e, no gate
    stem_conv, stem_bn, stem_relu = calls[:3]
    assert isinstance(stem_conv, nn.Conv2d) and stem_conv.out_channels == e
    assert isinstance(stem_bn, nn.BatchNorm2d) and isinstance(stem_relu, nn.ReLU)

    cin = e
    for b, (block, width) in enumerate(zip(blocks, model.widths, strict=True)):
        planes = e * 2 ** (b // n)
        gates = [m for m in block.modules() if isinstance(m, Gate)]
        assert gates == [block.gate]
        i = calls.index(block.gate)
        assert calls[i - 2] is block.conv1 and calls[i - 1] is block.bn1 and isinstance(calls[i + 1], nn.ReLU)
        assert block.conv1.in_channels == cin
        assert block.conv1.out_channels == block.bn1.num_features == block.gate.channels == width
        assert block.conv2.in_channels == width and block.conv2.out_channels == planes
        assert block.bn2.num_features == planes
        projections = [m for m in block.shortcut.modules() if isinstance(m, nn.Conv2d)]
        if cin != planes:
            assert len(projections) == 1
            assert projections[0].kernel_size == (1, 1)
            assert (projections[0].in_channels, projections[0].out_channels) == (cin, planes)
        else:
            assert projections == []
        cin = planes
    assert model.fc.in_features == 4 * e


@pytest.mark.parametrize("arch", ARCHS)
def test_custom_widths_set_the_conv_widths(arch):
    full = default_widths(arch)
    half = [max(1, w // 2) for w in full]
    model = build_meta(arch, widths=half)
    assert model.widths == half
    assert [g.channels for g in model.gates()] == half
    if arch.startswith("vgg"):
        convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
        assert [c.out_channels for c in convs] == half
        assert [c.in_channels for c in convs] == [3, *half[:-1]]
        assert model.classifier.in_features == half[-1]
    else:
        blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
        assert [b.conv1.out_channels for b in blocks] == half
        assert [b.conv2.in_channels for b in blocks] == half
        # the residual stream keeps the full (expansion-given) widths
        assert [b.conv2.out_channels for b in blocks] == full
        assert model.fc.in_features == full[-1]
    out = model.eval()(torch.zeros(2, 3, 32, 32, device="meta"))
    assert out.shape == (2, 10)


def test_vgg_expansion_scales_every_width():
    assert default_widths("vgg16_bn") == [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    assert default_widths("vgg16_bn", 80) == [80, 80, 160, 160, 320, 320, 320, 640, 640, 640, 640, 640, 640]
    model = build_meta("vgg16_bn", expansion=80)
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first.out_channels == 80
    assert model.classifier.in_features == 640
    assert default_widths("vgg11_bn", 80) == [80, 160, 320, 320, 640, 640, 640, 640]


def test_resnet_expansion_scales_inner_and_residual_widths():
    assert default_widths("resnet56") == [16] * 9 + [32] * 9 + [64] * 9
    assert default_widths("resnet56", 20) == [20] * 9 + [40] * 9 + [80] * 9
    assert default_widths("resnet20", 20) == [20] * 3 + [40] * 3 + [80] * 3
    model = build_meta("resnet20", expansion=20)
    assert model.stem[0].out_channels == 20
    blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
    assert [b.conv2.out_channels for b in blocks] == [20] * 3 + [40] * 3 + [80] * 3
    assert model.fc.in_features == 80


def test_unknown_arch_is_refused_naming_it_and_the_known_ones():
    with pytest.raises(ValueError, match="unknown arch 'resnet57'") as info:
        build_model("resnet57")
    for name in ARCHS:
        assert name in str(info.value)
    with pytest.raises(ValueError, match="unknown arch 'mobilenet'"):
        default_widths("mobilenet")


@pytest.mark.parametrize("arch", ["resnet20", "vgg11_bn"])
def test_wrong_number_of_widths_is_refused(arch):
    full = default_widths(arch)
    with pytest.raises(ValueError, match=f"{len(full)} prunable groups, got {len(full) - 1} widths"):
        build_model(arch, widths=full[:-1])
    with pytest.raises(ValueError, match=f"got {len(full) + 1} widths"):
        build_model(arch, widths=[*full, 4])


@pytest.mark.parametrize("arch", ["resnet20", "vgg11_bn"])
@pytest.mark.parametrize("bad", [0, -3])
def test_a_width_below_one_is_refused(arch, bad):
    widths = default_widths(arch)
    widths[2] = bad
    with pytest.raises(ValueError, match="every width must be >= 1"):
        build_model(arch, widths=widths)


def test_expansion_below_one_is_refused():
    with pytest.raises(ValueError, match="expansion must be a positive integer, got 0"):
        build_model("resnet20", expansion=0)
