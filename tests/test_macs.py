"""MACs and parameter counting: published reference values, fvcore cross-check, meta vs real device."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from pfs.macs import count_macs, count_params, network_cost
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
FVCORE_CASES = [
    ("resnet20", None, None, 32),
    ("resnet20", 20, PRUNED_RESNET20, 32),
    ("resnet20", 20, PRUNED_RESNET20, 16),
    ("resnet32", None, None, 32),
    ("vgg11_bn", None, None, 32),
    ("vgg16_bn", 80, [9, 80, 31, 160, 1, 200, 320, 17, 640, 3, 100, 640, 77], 32),
    ("vgg13_bn", None, None, 16),
]


@pytest.mark.parametrize(("arch", "expansion", "widths", "size"), FVCORE_CASES)
def test_count_macs_agrees_exactly_with_fvcore_conv_and_linear(arch, expansion, widths, size):
    model = build_model(arch, widths=widths, expansion=expansion)
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


@pytest.mark.parametrize(("arch", "expansion", "widths", "size", "classes"), [
    ("resnet20", None, None, 32, 10),
    ("resnet20", 20, [20, 1, 7, 40, 3, 40, 80, 9, 61], 32, 100),
    ("vgg11_bn", 80, [1, 160, 320, 5, 640, 64, 33, 640], 16, 10),
    ("vgg19_bn", None, None, 32, 100),
])
def test_network_cost_on_meta_equals_counts_of_a_real_model(arch, expansion, widths, size, classes):
    cost = network_cost(arch, size, classes, widths=widths, expansion=expansion)
    model = build_model(arch, widths=widths, expansion=expansion, num_classes=classes)
    assert next(model.parameters()).device.type == "cpu"
    assert cost == {"macs": count_macs(model, size), "params": count_params(model)}


def test_network_cost_shrinks_with_widths_and_grows_with_classes():
    full = network_cost("resnet20", 32, 10)
    pruned = network_cost("resnet20", 32, 10, widths=[8] * 3 + [16] * 3 + [32] * 3)
    assert pruned["macs"] < full["macs"] and pruned["params"] < full["params"]
    hundred = network_cost("resnet20", 32, 100)
    assert hundred["macs"] - full["macs"] == 64 * 90  # only the fc changes
    assert hundred["params"] - full["params"] == 65 * 90  # fc weights and biases
