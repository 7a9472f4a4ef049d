"""Model registry and gated architectures: shapes, gate placement, widths, expansion and argument checks."""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from pfs.models import Gate, build_model, default_widths, get_spec, list_models
from pfs.models.mobilenet import V2_OUTPUTS, DepthwiseSeparable, InvertedResidual
from pfs.models.resnet_cifar import BasicBlock
from pfs.models.resnet_imagenet import Bottleneck

ARCHS = list_models()
CIFAR_ARCHS = list_models("cifar")
IMAGENET_ARCHS = list_models("imagenet")
VGGS = [a for a in CIFAR_ARCHS if a.startswith("vgg")]
RESNETS = [a for a in CIFAR_ARCHS if a.startswith("resnet")]
IMAGENET_FAMILIES = ["mobilenet_v1", "mobilenet_v2", "resnet50"]  # one placement test each, below


def build_meta(arch: str, widths: list[int] | None = None, expansion: int | None = None,
               multiplier: float = 1.0) -> nn.Module:
    """Build on the meta device: structure and shapes without memory (cached: tests only read these models)."""
    return _build_meta(arch, None if widths is None else tuple(widths), expansion, multiplier)


@functools.cache
def _build_meta(arch: str, widths: tuple[int, ...] | None, expansion: int | None, multiplier: float) -> nn.Module:
    with torch.device("meta"):
        return build_model(arch, widths=widths, expansion=expansion, multiplier=multiplier)


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


def test_registry_lists_the_imagenet_families_under_their_domain():
    assert IMAGENET_ARCHS == ["mobilenet_v1", "mobilenet_v2", "resnet50"]
    assert sorted(CIFAR_ARCHS + IMAGENET_ARCHS) == ARCHS
    assert {get_spec(a).base_expansion for a in ("mobilenet_v1", "mobilenet_v2")} == {32}
    assert get_spec("resnet50").base_expansion == 64


def test_every_registered_arch_has_a_gate_placement_test():
    # the placement tests below are written per family; a new family needs its own
    assert sorted(VGGS + RESNETS + IMAGENET_FAMILIES) == ARCHS


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


@pytest.mark.parametrize("arch", CIFAR_ARCHS)
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


# --- ImageNet families ------------------------------------------------------------------------------------------------

MBV1_WIDTHS = [5, 9, 17, 13, 33, 29, 61, 57, 53, 49, 45, 41, 101, 97]  # distinct, so every tie is visible
# blocks 1 and 2 get hidden width == input width (16, 24): they must keep their expansion conv all the same
MBV2_WIDTHS = [7, 16, 24, 50, 60, 70, 80, 100, 110, 120, 130, 150, 160, 170, 200, 210, 220, 300]
RESNET50_WIDTHS = [3 * i + 5 for i in range(32)]


def conv_output_size(model: nn.Module, size: int) -> dict[nn.Conv2d, int]:
    """Spatial size of every conv's output for one ``size x size`` image."""
    sizes: dict[nn.Conv2d, int] = {}
    hooks = [m.register_forward_hook(lambda mod, _i, out: sizes.__setitem__(mod, out.shape[-1]))
             for m in model.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, size, size, device=next(model.parameters()).device))
    finally:
        for h in hooks:
            h.remove()
    return sizes


def assert_gated_unit(calls: list[nn.Module], gate: Gate, act: type[nn.Module]) -> nn.Conv2d:
    """``gate`` is called right after conv -> BN of its width and right before an activation of type ``act``."""
    i = calls.index(gate)
    conv, bn, after = calls[i - 2], calls[i - 1], calls[i + 1]
    assert isinstance(conv, nn.Conv2d) and conv.groups == 1
    assert isinstance(bn, nn.BatchNorm2d)
    assert type(after) is act
    assert conv.out_channels == bn.num_features == gate.channels
    return conv


def test_mobilenet_v1_gates_the_stem_and_every_pointwise_conv_and_depthwise_follows_the_gate():
    model = build_meta("mobilenet_v1", widths=MBV1_WIDTHS)
    calls = leaf_call_order(model, 224)
    out_size = conv_output_size(model, 224)
    gates = [m for m in calls if isinstance(m, Gate)]
    assert len(gates) == 14 and [g.channels for g in gates] == MBV1_WIDTHS == model.widths
    gated_convs = [assert_gated_unit(calls, g, nn.ReLU) for g in gates]
    stem = gated_convs[0]
    assert (stem.in_channels, stem.kernel_size, stem.stride) == (3, (3, 3), (2, 2)) and out_size[stem] == 112

    blocks = [m for m in model.modules() if isinstance(m, DepthwiseSeparable)]
    assert len(blocks) == 13
    depthwise = [m for m in calls if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert depthwise == [b.dw[0] for b in blocks]
    for i, (block, dw) in enumerate(zip(blocks, depthwise, strict=True)):
        # the depthwise conv runs on the previous gate's channels and carries no gate of its own
        assert dw.in_channels == dw.out_channels == dw.groups == MBV1_WIDTHS[i]
        assert dw.kernel_size == (3, 3) and dw.stride == ((2, 2) if i in (1, 3, 5, 11) else (1, 1))
        j = calls.index(dw)
        assert isinstance(calls[j + 1], nn.BatchNorm2d) and type(calls[j + 2]) is nn.ReLU
        assert calls[j + 3] is gated_convs[i + 1]  # then the pointwise conv of this block
        pw = block.pw[0]
        assert pw is gated_convs[i + 1] and pw.kernel_size == (1, 1)
        assert (pw.in_channels, pw.out_channels) == (MBV1_WIDTHS[i], MBV1_WIDTHS[i + 1])
    assert [out_size[dw] for dw in depthwise] == [112, 56, 56, 28, 28, 14, 14, 14, 14, 14, 14, 7, 7]
    assert isinstance(calls[-1], nn.Linear) and calls[-1] is model.classifier
    assert (model.classifier.in_features, model.classifier.out_features) == (97, 1000)
    assert sum(isinstance(m, nn.Conv2d) for m in calls) == 27  # stem + 13 x (depthwise, pointwise)


def test_mobilenet_v2_gates_stem_hidden_widths_and_last_conv_never_block_outputs():
    model = build_meta("mobilenet_v2", widths=MBV2_WIDTHS)
    calls = leaf_call_order(model, 224)
    out_size = conv_output_size(model, 224)
    gates = [m for m in calls if isinstance(m, Gate)]
    assert len(gates) == 18 and [g.channels for g in gates] == MBV2_WIDTHS == model.widths
    acts = [nn.ReLU] + [nn.ReLU6] * 16 + [nn.ReLU]  # stem and last conv use ReLU, the blocks ReLU6
    gated_convs = [assert_gated_unit(calls, g, act) for g, act in zip(gates, acts, strict=True)]
    stem, last = gated_convs[0], gated_convs[-1]
    assert (stem.in_channels, stem.kernel_size, stem.stride) == (3, (3, 3), (2, 2))
    assert (last.in_channels, last.kernel_size) == (320, (1, 1)) and out_size[last] == 7
    assert (model.classifier.in_features, model.classifier.out_features) == (300, 1000)

    blocks = [m for m in model.modules() if isinstance(m, InvertedResidual)]
    assert len(blocks) == 17
    # block 0: no expansion conv and no gate; its depthwise conv runs on the stem's (gated) channels
    convs0 = [m for m in blocks[0].modules() if isinstance(m, nn.Conv2d)]
    assert not [m for m in blocks[0].modules() if isinstance(m, Gate)]
    assert len(convs0) == 2 and convs0[0].groups == convs0[0].in_channels == convs0[0].out_channels == 7
    assert (convs0[1].in_channels, convs0[1].out_channels) == (7, 16)

    cin = 16
    for j, block in enumerate(blocks[1:], start=1):
        expand, dw, project = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
        hidden = MBV2_WIDTHS[j]
        assert expand is gated_convs[j] and expand.kernel_size == (1, 1)
        assert (expand.in_channels, expand.out_channels) == (cin, hidden)  # kept even where hidden == cin
        assert dw.groups == dw.in_channels == dw.out_channels == hidden  # follows the hidden gate, ungated
        assert dw.stride == ((2, 2) if j in (1, 3, 6, 13) else (1, 1))
        k = calls.index(dw)
        assert isinstance(calls[k + 1], nn.BatchNorm2d) and type(calls[k + 2]) is nn.ReLU6
        # the block output (projection) is linear: conv -> BN, no gate, no activation
        assert (project.in_channels, project.out_channels) == (hidden, V2_OUTPUTS[j])
        k = calls.index(project)
        assert isinstance(calls[k + 1], nn.BatchNorm2d) and isinstance(calls[k + 2], nn.Conv2d)
        cin = V2_OUTPUTS[j]
    assert [j for j, b in enumerate(blocks) if b.residual] == [2, 4, 5, 7, 8, 9, 11, 12, 14, 15]
    assert [b.project[0].out_channels for b in blocks] == V2_OUTPUTS
    assert [out_size[b.project[0]] for b in blocks] == [112, 56, 56, 28, 28, 28, 14, 14, 14, 14, 14, 14, 14,
                                                        7, 7, 7, 7]


def test_mobilenet_v2_keeps_the_expansion_conv_when_the_standard_hidden_equals_the_input():
    # the official code drops block j's expansion conv whenever its hidden width equals its input width
    widths = default_widths("mobilenet_v2")
    widths[3] = 24  # block 3's input is 24 (block 2's output)
    model = build_meta("mobilenet_v2", widths=widths)
    block = [m for m in model.modules() if isinstance(m, InvertedResidual)][3]
    convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 3 and (convs[0].in_channels, convs[0].out_channels, convs[0].groups) == (24, 24, 1)


def test_resnet50_gates_conv1_and_conv2_of_every_bottleneck_and_never_the_residual_stream():
    model = build_meta("resnet50", widths=RESNET50_WIDTHS)
    calls = leaf_call_order(model, 224)
    out_size = conv_output_size(model, 224)
    gates = [m for m in calls if isinstance(m, Gate)]
    assert len(gates) == 32 and [g.channels for g in gates] == RESNET50_WIDTHS == model.widths
    for g in gates:
        assert_gated_unit(calls, g, nn.ReLU)

    stem_conv, stem_bn, stem_relu, stem_pool = calls[:4]
    assert (stem_conv.kernel_size, stem_conv.stride, stem_conv.out_channels) == ((7, 7), (2, 2), 64)
    assert isinstance(stem_bn, nn.BatchNorm2d) and type(stem_relu) is nn.ReLU
    assert isinstance(stem_pool, nn.MaxPool2d)

    blocks = [m for m in model.modules() if isinstance(m, Bottleneck)]
    assert len(blocks) == 16
    outputs = [256] * 3 + [512] * 4 + [1024] * 6 + [2048] * 3
    cin, projected = 64, []
    for b, (block, cout) in enumerate(zip(blocks, outputs, strict=True)):
        mid1, mid2 = RESNET50_WIDTHS[2 * b], RESNET50_WIDTHS[2 * b + 1]
        assert [m for m in block.modules() if isinstance(m, Gate)] == [block.gate1, block.gate2]
        assert (block.conv1.in_channels, block.conv1.out_channels, block.conv1.kernel_size) == (cin, mid1, (1, 1))
        assert (block.conv2.in_channels, block.conv2.out_channels, block.conv2.kernel_size) == (mid1, mid2, (3, 3))
        assert (block.conv3.in_channels, block.conv3.out_channels) == (mid2, cout)
        assert block.bn3.num_features == cout
        stride = 2 if b in (3, 7, 13) else 1  # on the 3x3 conv, as in torchvision (v1.5) and the official code
        assert block.conv1.stride == (1, 1) and block.conv2.stride == (stride, stride)
        projections = [m for m in block.shortcut.modules() if isinstance(m, nn.Conv2d)]
        if projections:
            (proj,) = projections
            assert (proj.in_channels, proj.out_channels, proj.kernel_size, proj.stride) == (cin, cout, (1, 1),
                                                                                           (stride, stride))
            projected.append(b)
        i = calls.index(block.conv3)
        assert isinstance(calls[i + 1], nn.BatchNorm2d) and not isinstance(calls[i + 2], Gate)
        cin = cout
    assert projected == [0, 3, 7, 13]
    assert [out_size[b.conv3] for b in blocks] == [56] * 3 + [28] * 4 + [14] * 6 + [7] * 3
    assert (model.fc.in_features, model.fc.out_features) == (2048, 1000)


def test_imagenet_expansion_scales_the_prunable_widths():
    assert default_widths("mobilenet_v1") == [32, 64, 128, 128, 256, 256] + [512] * 6 + [1024] * 2
    assert default_widths("mobilenet_v1", 40) == [40, 80, 160, 160, 320, 320] + [640] * 6 + [1280] * 2
    assert default_widths("mobilenet_v2") == [32, 96, 144, 144, 192, 192, 192, 384, 384, 384, 384, 576, 576, 576,
                                              960, 960, 960, 1280]
    assert default_widths("mobilenet_v2", 40) == [40, 120, 180, 180, 240, 240, 240, 480, 480, 480, 480, 720, 720,
                                                  720, 1200, 1200, 1200, 1600]
    assert default_widths("mobilenet_v2", 20) == [20, 60, 90, 90, 120, 120, 120, 240, 240, 240, 240, 360, 360,
                                                  360, 600, 600, 600, 800]
    assert default_widths("resnet50") == [64] * 6 + [128] * 8 + [256] * 12 + [512] * 6
    assert default_widths("resnet50", 80) == [80] * 6 + [160] * 8 + [320] * 12 + [640] * 6
    # expansion does not touch the backbone: MBV2 block outputs and the ResNet-50 residual stream stay put
    mbv2 = build_meta("mobilenet_v2", expansion=40)
    assert [b.project[0].out_channels for b in mbv2.modules() if isinstance(b, InvertedResidual)] == V2_OUTPUTS
    r50 = build_meta("resnet50", expansion=80)
    assert r50.stem[0].out_channels == 64 and r50.fc.in_features == 2048


@pytest.mark.parametrize("multiplier", [0.75, 1.25])
def test_multiplier_scales_the_mobilenet_v2_block_outputs_only(multiplier):
    model = build_meta("mobilenet_v2", multiplier=multiplier)
    assert model.multiplier == multiplier
    assert model.widths == default_widths("mobilenet_v2")  # stem, hidden and last widths are the expansion's
    blocks = [m for m in model.modules() if isinstance(m, InvertedResidual)]
    want = {0.75: [12, 18, 18, 24, 24, 24, 48, 48, 48, 48, 72, 72, 72, 120, 120, 120, 240],
            1.25: [20, 30, 30, 40, 40, 40, 80, 80, 80, 80, 120, 120, 120, 200, 200, 200, 400]}[multiplier]
    assert [b.project[0].out_channels for b in blocks] == want
    assert [b.expand[0].in_channels for b in blocks[1:]] == want[:-1]
    assert model.stem[0].out_channels == 32 and model.last[0].in_channels == want[-1]
    assert model.last[0].out_channels == model.classifier.in_features == 1280
    assert [j for j, b in enumerate(blocks) if b.residual] == [2, 4, 5, 7, 8, 9, 11, 12, 14, 15]


@pytest.mark.parametrize(("multiplier", "stem", "outputs"), [
    (0.75, 48, [192, 384, 768, 1536]),
    (1.25, 80, [320, 640, 1280, 2560]),
])
def test_multiplier_scales_the_resnet50_stem_and_residual_stream_only(multiplier, stem, outputs):
    model = build_meta("resnet50", multiplier=multiplier)
    assert model.widths == default_widths("resnet50")
    assert model.stem[0].out_channels == stem
    blocks = [m for m in model.modules() if isinstance(m, Bottleneck)]
    a, b, c, d = outputs
    assert [blk.conv3.out_channels for blk in blocks] == [a] * 3 + [b] * 4 + [c] * 6 + [d] * 3
    assert [b.conv1.in_channels for b in blocks[:4]] == [stem, outputs[0], outputs[0], outputs[0]]
    assert [b.conv1.out_channels for b in blocks] == default_widths("resnet50")[0::2]
    assert model.fc.in_features == outputs[-1]


@pytest.mark.parametrize("arch", ["mobilenet_v1", "resnet20", "vgg16_bn"])
@pytest.mark.parametrize("multiplier", [0.75, 2])
def test_archs_without_a_backbone_refuse_a_multiplier(arch, multiplier):
    with pytest.raises(ValueError, match=f"{arch} has no backbone multiplier.*got {float(multiplier)}"):
        build_model(arch, multiplier=multiplier)
    assert build_meta(arch, multiplier=1.0).widths == default_widths(arch)


@pytest.mark.parametrize("arch", ["mobilenet_v2", "resnet50"])
def test_a_multiplier_that_leaves_no_channel_is_refused(arch):
    with pytest.raises(ValueError, match="multiplier must be > 0, got 0.0"):
        build_model(arch, multiplier=0)
    with pytest.raises(ValueError, match=f"{arch}: multiplier 0.01 gives a .*width"):
        build_model(arch, multiplier=0.01)


def test_every_model_reports_its_multiplier():
    assert build_meta("resnet20").multiplier == build_meta("mobilenet_v1").multiplier == 1.0
    assert build_meta("resnet50", multiplier=0.75).multiplier == 0.75


def test_num_classes_defaults_to_the_domain():
    assert build_meta("mobilenet_v1").classifier.out_features == 1000
    assert build_meta("resnet50").fc.out_features == 1000
    assert build_meta("resnet20").fc.out_features == 10
    assert build_meta("vgg11_bn").classifier.out_features == 10


@pytest.mark.parametrize("arch", IMAGENET_ARCHS)
def test_imagenet_custom_widths_build_and_run_forward(arch):
    torch.manual_seed(0)
    full = default_widths(arch)
    widths = [max(1, w // (3 + i % 4)) for i, w in enumerate(full)]
    model = build_model(arch, widths=widths, num_classes=5)
    assert model.widths == widths and [g.channels for g in model.gates()] == widths
    with torch.no_grad():
        out = model.eval()(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 5) and torch.isfinite(out).all()


@pytest.mark.parametrize("arch", IMAGENET_ARCHS)
def test_imagenet_init_is_the_official_one(arch):
    torch.manual_seed(0)
    model = build_model(arch)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(torch.equal(b.weight, torch.ones_like(b.weight)) and not b.bias.any() for b in bns)
    # conv weights N(0, sqrt(2 / (k * k * C_out))): check the std of the largest conv
    conv = max((m for m in model.modules() if isinstance(m, nn.Conv2d)), key=lambda m: m.weight.numel())
    fan_out = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]
    assert conv.weight.std().item() == pytest.approx((2 / fan_out) ** 0.5, rel=0.01)
    linear = model.fc if arch == "resnet50" else model.classifier
    if arch == "resnet50":  # PyTorch's default Linear init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
        assert linear.weight.abs().max().item() <= 2048 ** -0.5
        assert linear.weight.std().item() == pytest.approx((3 * 2048) ** -0.5, rel=0.01)
    else:  # MobileNets: N(0, 0.01), zero bias
        assert linear.weight.std().item() == pytest.approx(0.01, rel=0.01) and not linear.bias.any()
