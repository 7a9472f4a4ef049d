"""MACs and parameter counting: published reference values, fvcore cross-check, meta vs real device."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from pfs.method.macs import count_macs, count_params, network_cost
from pfs.models import Gate, build_model, default_widths

with warnings.catch_warnings():  # fvcore scripts a helper at import time, which newer torch deprecates
    warnings.simplefilter("ignore", FutureWarning)
    from fvcore.nn import FlopCountAnalysis


def fvcore_conv_linear_macs(model: nn.Module, image_size: int) -> int:
    """fvcore's count (one multiply-add = one "flop") restricted to conv and linear operators."""
    model.eval()
    analysis = FlopCountAnalysis(model, torch.zeros(1, 3, image_size, image_size))
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    by_op = analysis.by_operator()
    assert by_op["conv"] > 0
    return int(by_op["conv"] + by_op.get("linear", 0) + by_op.get("addmm", 0) + by_op.get("matmul", 0))


def test_resnet56_macs_match_the_published_125_5M():
    model = build_model("resnet56")
    macs = count_macs(model, 32)
    # our convention counts the two 1x1 projection shortcuts (16->32, 32->64) on top of the 3x3 convs and the fc
    assert macs == 125_747_840
    assert abs(macs - 125.5e6) / 125.5e6 < 0.005
    projections = 16 * 32 * 16 * 16 + 32 * 64 * 8 * 8
    assert macs - projections == 125_485_696  # the figure usually quoted (about 125.5M) without them


def test_vgg16_bn_macs_match_the_published_313M():
    macs = count_macs(build_model("vgg16_bn"), 32)
    assert macs == 313_201_664
    assert abs(macs - 313.2e6) / 313.2e6 < 0.001


def test_count_macs_of_hand_computed_layers():
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, bias=True),  # 3*3*3*4 * 8*8 = 6912
        nn.Conv2d(4, 4, 3, stride=2, padding=1, groups=4, bias=False),  # depthwise: 3*3*1*4 * 4*4 = 576
        nn.Conv2d(4, 6, 1),  # 4*6 * 4*4 = 384
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, 5),  # 30
    )
    assert count_macs(model, 8) == 6912 + 576 + 384 + 30


def test_count_macs_leaves_mode_and_hooks_as_they_were():
    model = build_model("resnet20", expansion=4)
    model.train()
    count_macs(model, 32)
    assert model.training
    assert all(not m._forward_hooks for m in model.modules())
    model.eval()
    count_macs(model, 32)
    assert not model.training


PRUNED_RESNET20 = [3, 20, 1] + [40, 17, 2] + [80, 1, 47]
PRUNED_MBV1 = [23, 80, 101, 7, 320, 150, 640, 311, 12, 499, 640, 1, 1280, 777]  # expansion 40
PRUNED_MBV2 = [17, 16, 180, 33, 240, 1, 200, 480, 64, 333, 480, 720, 96, 500, 1200, 7, 960, 1111]  # expansion 40
PRUNED_RESNET50 = [80, 33, 1, 80, 57, 64, 160, 99, 12, 160, 160, 1, 130, 77, 320, 5, 250, 320, 111, 200, 320,
                   320, 17, 299, 64, 320, 640, 300, 2, 640, 480, 611]  # expansion 80
FVCORE_CASES = [
    ("resnet20", None, None, 32, 1.0),
    ("resnet20", 20, PRUNED_RESNET20, 32, 1.0),
    ("resnet20", 20, PRUNED_RESNET20, 16, 1.0),
    ("resnet32", None, None, 32, 1.0),
    ("vgg11_bn", None, None, 32, 1.0),
    ("vgg16_bn", 80, [9, 80, 31, 160, 1, 200, 320, 17, 640, 3, 100, 640, 77], 32, 1.0),
    ("vgg13_bn", None, None, 16, 1.0),
    ("mobilenet_v1", None, None, 224, 1.0),
    ("mobilenet_v1", 40, PRUNED_MBV1, 224, 1.0),
    ("mobilenet_v2", None, None, 224, 1.0),
    ("mobilenet_v2", 40, PRUNED_MBV2, 224, 0.75),
    ("resnet50", None, None, 224, 1.0),
    ("resnet50", 80, PRUNED_RESNET50, 224, 1.25),
]


@pytest.mark.parametrize(("arch", "expansion", "widths", "size", "multiplier"), FVCORE_CASES)
def test_count_macs_agrees_exactly_with_fvcore_conv_and_linear(arch, expansion, widths, size, multiplier):
    model = build_model(arch, widths=widths, expansion=expansion, multiplier=multiplier)
    if widths is not None:
        assert model.widths == widths
    assert count_macs(model, size) == fvcore_conv_linear_macs(model, size)


@pytest.mark.parametrize(("arch", "expansion"), [("resnet56", None), ("resnet20", 20), ("vgg16_bn", 80)])
def test_count_params_excludes_exactly_the_gates(arch, expansion):
    model = build_model(arch, expansion=expansion)
    total = sum(p.numel() for p in model.parameters())
    gates = sum(m.weight.numel() for m in model.modules() if isinstance(m, Gate))
    assert gates == sum(default_widths(arch, expansion))
    assert count_params(model) == total - gates


def test_count_params_reference_values():
    assert count_params(build_model("resnet56")) == 855_770
    assert count_params(build_model("vgg16_bn")) == 14_724_042


@pytest.mark.parametrize(("arch", "expansion", "widths", "size", "classes", "multiplier"), [
    ("resnet20", None, None, 32, 10, 1.0),
    ("resnet20", 20, [20, 1, 7, 40, 3, 40, 80, 9, 61], 32, 100, 1.0),
    ("vgg11_bn", 80, [1, 160, 320, 5, 640, 64, 33, 640], 16, 10, 1.0),
    ("vgg19_bn", None, None, 32, 100, 1.0),
    ("mobilenet_v1", 40, PRUNED_MBV1, 224, 1000, 1.0),
    ("mobilenet_v2", 40, PRUNED_MBV2, 224, 100, 1.25),
    ("resnet50", None, None, 224, 1000, 0.75),
])
def test_network_cost_on_meta_equals_counts_of_a_real_model(arch, expansion, widths, size, classes, multiplier):
    cost = network_cost(arch, size, classes, widths=widths, expansion=expansion, multiplier=multiplier)
    model = build_model(arch, widths=widths, expansion=expansion, num_classes=classes, multiplier=multiplier)
    assert next(model.parameters()).device.type == "cpu"
    assert cost == {"macs": count_macs(model, size), "params": count_params(model)}


def test_network_cost_shrinks_with_widths_and_grows_with_classes():
    full = network_cost("resnet20", 32, 10)
    pruned = network_cost("resnet20", 32, 10, widths=[8] * 3 + [16] * 3 + [32] * 3)
    assert pruned["macs"] < full["macs"] and pruned["params"] < full["params"]
    hundred = network_cost("resnet20", 32, 100)
    assert hundred["macs"] - full["macs"] == 64 * 90  # only the fc changes
    assert hundred["params"] - full["params"] == 65 * 90  # fc weights and biases


# --- ImageNet networks (224x224, 1000 classes) --------------------------------------------------------------------

@pytest.mark.parametrize(("arch", "macs", "params", "published", "analytic", "pool"), [
    # published: MobileNetV1 569M / 4.2M, MobileNetV2 300M / 3.50M, ResNet-50 4.1G / 25.56M;
    # analytic: the reference notes' recount of the official counter, which also counts the global average pool
    ("mobilenet_v1", 568_740_352, 4_231_976, (569e6, 4.2e6), 568.8e6, 1024 * 7 * 7),
    ("mobilenet_v2", 300_774_272, 3_504_872, (300e6, 3.50e6), 300.8e6, 1280 * 7 * 7),
    ("resnet50", 4_089_184_256, 25_557_032, (4.1e9, 25.56e6), 4089.3e6, 2048 * 7 * 7),
])
def test_imagenet_standard_networks_match_published_figures(arch, macs, params, published, analytic, pool):
    assert network_cost(arch, 224, 1000) == {"macs": macs, "params": params}
    assert abs(macs - published[0]) / published[0] < 0.003
    assert abs(params - published[1]) / published[1] < 0.008
    assert abs(macs + pool - analytic) <= 0.05e6  # equal to the notes' 0.1M rounding once the pool is added
    assert 0 < (analytic - macs) / analytic < 2e-4  # we count conv + linear only, so slightly less


def conv_linear_signature(model: nn.Module) -> list[tuple]:
    """(in, out, kernel, stride, groups) of every conv and (in, out) of every linear, in forward order."""
    shapes: list[tuple] = []

    def hook(m, _inp, _out):
        if isinstance(m, nn.Conv2d):
            shapes.append((m.in_channels, m.out_channels, m.kernel_size, m.stride, m.groups))
        else:
            shapes.append((m.in_features, m.out_features))

    hooks = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, 224, 224, device="meta"))
    for h in hooks:
        h.remove()
    return shapes


@pytest.mark.parametrize(("arch", "convs"), [("mobilenet_v2", 52), ("resnet50", 53)])
def test_imagenet_networks_have_torchvisions_layers_params_and_macs(arch, convs):
    import torchvision

    with torch.device("meta"):
        ours = build_model(arch)
        reference = getattr(torchvision.models, arch)(weights=None)
    assert conv_linear_signature(ours) == conv_linear_signature(reference)
    assert len(conv_linear_signature(ours)) == convs + 1
    assert count_params(ours) == count_params(reference) == {"mobilenet_v2": 3_504_872, "resnet50": 25_557_032}[arch]
    assert count_macs(ours, 224) == count_macs(reference, 224)


@pytest.mark.parametrize(("arch", "multiplier", "macs", "params"), [
    ("mobilenet_v2", 0.75, 233_789_312, 2_972_952),
    ("mobilenet_v2", 1.25, 367_759_232, 4_036_792),
    ("resnet50", 0.75, 3_461_873_664, 21_481_944),
    ("resnet50", 1.25, 4_761_452_544, 29_978_232),
])
def test_multiplier_scales_the_backbone_cost(arch, multiplier, macs, params):
    base = network_cost(arch, 224, 1000)
    cost = network_cost(arch, 224, 1000, multiplier=multiplier)
    assert cost == {"macs": macs, "params": params}
    assert (cost["macs"] > base["macs"]) == (multiplier > 1)
    # the prunable widths do not move: the same widths list builds at every multiplier
    pruned = network_cost(arch, 224, 1000, widths=[8] * len(default_widths(arch)), multiplier=multiplier)
    assert pruned["macs"] < cost["macs"]


def test_network_cost_refuses_a_multiplier_for_archs_without_a_backbone():
    with pytest.raises(ValueError, match="mobilenet_v1 has no backbone multiplier"):
        network_cost("mobilenet_v1", 224, 1000, multiplier=0.75)
    with pytest.raises(ValueError, match="resnet56 has no backbone multiplier"):
        network_cost("resnet56", 32, 10, multiplier=1.25)
    assert network_cost("mobilenet_v1", 224, 1000, multiplier=1)["macs"] == 568_740_352
