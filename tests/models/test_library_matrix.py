"""Library networks (torchvision:<name>, timm:<name>) of every kind, CPU-only and at random init: their channel
groups are found, gates are inserted and learn, pruning to a 50% MACs reduction lands within tolerance, the pruned
network computes what the masked network computes, MACs agree with a built network and with fvcore, and pruned
networks export to ONNX that onnxruntime runs."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn

from pfs.method.gates import GateConfig, freeze_weights, gate_step
from pfs.method.l1 import channel_map, kept_channels, prune_state
from pfs.method.macs import count_macs, count_params, network_cost
from pfs.method.prune import PruneConfig, in_units, prune_to_macs
from pfs.models import build_model, default_widths, get_spec
from pfs.models.structure import discover

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    from fvcore.nn import FlopCountAnalysis

SIZE, CLASSES = 32, 10
# kind -> arch: plain, residual, bottleneck, depthwise, squeeze-excite, grouped conv, concatenation (with and
# without norms after it), LayerNorm + Linear blocks; torchvision and timm (timm's norm+act layers, zero-init)
MATRIX = {
    "torchvision:vgg11_bn": "plain",
    "torchvision:resnet18": "residual",
    "torchvision:resnet18+all": "residual, streams pruned too",
    "torchvision:mobilenet_v2": "depthwise, inverted residual",
    "torchvision:mobilenet_v3_small": "depthwise, squeeze-excite, hardswish",
    "torchvision:efficientnet_b0": "depthwise, squeeze-excite, stochastic depth",
    "torchvision:mnasnet0_5": "depthwise, versioned state_dict",
    "torchvision:resnext50_32x4d": "grouped conv, bottleneck",
    "torchvision:regnet_y_400mf": "grouped conv, squeeze-excite",
    "torchvision:squeezenet1_1": "concatenation, conv classifier",
    "torchvision:googlenet": "concatenation of branches",
    "torchvision:densenet121": "concatenation read by later norms",
    "torchvision:convnext_tiny": "depthwise, LayerNorm, Linear blocks",
    "timm:resnet18": "residual, zero-init last BN",
    "timm:mobilenetv3_small_050": "BatchNormAct2d, squeeze-excite",
    "timm:regnetx_002": "grouped conv",
    "timm:convnext_atto": "LayerNorm, Linear blocks",
}


def _randomise(model: nn.Module) -> nn.Module:
    """Make every path count: BN statistics and affine maps random, and constant parameters (zero-init last BNs,
    ConvNeXt's 1e-6 layer scales) drawn again, so a masked channel that leaks shows in the output."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.num_features, generator=generator) - 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
        for name, p in model.named_parameters():
            if "gate" not in name and p.numel() > 1 and bool((p == p.flatten()[0]).all()):
                p.copy_(torch.rand(p.shape, generator=generator) * 0.5 + 0.5)
    return model


def _fvcore(model: nn.Module) -> int:
    analysis = FlopCountAnalysis(model.eval(), torch.zeros(1, 3, SIZE, SIZE))
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    by_op = analysis.by_operator()
    return int(sum(by_op.get(k, 0) for k in ("conv", "linear", "addmm", "matmul")))


def _prune_half(arch: str, scores: list[torch.Tensor]):
    base = network_cost(arch, SIZE, CLASSES)["macs"]
    return in_units(prune_to_macs, scores, list(get_spec(arch).units),
                    lambda w: network_cost(arch, SIZE, CLASSES, w)["macs"], PruneConfig(tolerance=0.01), 0.5, base,
                    seed=0)


@pytest.mark.parametrize("arch", list(MATRIX))
def test_library_network_through_the_method(arch):
    groups = discover(arch).prunable
    assert groups and all(g.sites for g in groups)
    torch.manual_seed(0)
    model = build_model(arch, num_classes=CLASSES)
    full = default_widths(arch)
    assert [g.channels for g in model.gates()] == full == [g.width for g in groups]

    # a gate-learning step: the gates move (clamped to [0, 1]), the random weights do not
    freeze_weights(model)
    weights = [p.detach().clone() for p in model.weight_parameters()]
    optimizer = torch.optim.Adam(model.gate_parameters(), lr=0.1)
    x, y = torch.randn(4, 3, SIZE, SIZE), torch.randint(0, CLASSES, (4,))
    gate_step(model.train(), model.gate_parameters(), optimizer, nn.CrossEntropyLoss(), x, y, GateConfig(0.5))
    moved = torch.cat([g.detach() for g in model.gate_parameters()])
    assert (moved != 1).any() and moved.min() >= 0 and moved.max() <= 1
    assert all(torch.equal(a, b) for a, b in zip(weights, model.weight_parameters(), strict=True))

    # pruning to a 50% MACs reduction (in whole conv-groups where a grouped conv needs them)
    scores = [torch.rand(w, generator=torch.Generator().manual_seed(i)) for i, w in enumerate(full)]
    result = _prune_half(arch, scores)
    assert abs(result.achieved_ratio - 0.5) <= 0.005
    units = list(get_spec(arch).units)
    assert all(w % u == 0 and 1 <= w <= f for w, u, f in zip(result.widths, units, full, strict=True))

    # the pruned network (the masked network's kept channels) computes what the masked network computes
    _randomise(model.eval())
    kept = kept_channels(scores, result.widths, units)
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        unmasked = model(x)
        for gate, k in zip(model.gates(), kept, strict=True):
            gate.weight.zero_()
            gate.weight[k] = 1
        masked = model(x)
    state = prune_state(model.state_dict(), channel_map(arch, full, 100, CLASSES), kept)
    pruned = build_model(arch, widths=result.widths, num_classes=CLASSES).eval()
    pruned.load_state_dict(state, strict=True)
    with torch.no_grad():
        out = pruned(x)
    scale = float(masked.abs().max())
    assert float((unmasked - masked).abs().max()) > 1e-3 * scale  # the mask matters, so the check below can fail
    assert float((out - masked).abs().max()) <= 1e-5 * scale

    # MACs and params from the layer sizes = counted on the built network = fvcore's conv + linear
    cost = network_cost(arch, SIZE, CLASSES, result.widths)
    assert cost == {"macs": count_macs(pruned, SIZE), "params": count_params(pruned)} == {
        "macs": result.macs, "params": cost["params"]}
    assert cost["macs"] == _fvcore(pruned)


def test_pruned_network_gets_the_arch_s_own_init_at_its_widths_not_a_slice():
    """torchvision's ResNet draws convs from Kaiming's normal, fan-out: std sqrt(2 / (9 * C_out)). A slice of the
    full network's conv keeps the full width's std; the rebuilt network has its own width's."""
    arch = "torchvision:resnet50"
    full = default_widths(arch)
    widths = [w // 4 for w in full]
    torch.manual_seed(0)
    pruned = build_model(arch, widths=widths, num_classes=CLASSES)
    conv = pruned.net.layer4[0].conv2  # 3x3, outputs in its group: 512 -> 128
    assert conv.out_channels == 128
    want, sliced = math.sqrt(2 / (9 * 128)), math.sqrt(2 / (9 * 512))
    got = float(conv.weight.detach().std())
    assert abs(got - want) / want < 0.02
    assert abs(got - sliced) / sliced > 0.9  # a slice would be half as wide a distribution
    torch.manual_seed(0)
    again = build_model(arch, widths=widths, num_classes=CLASSES)
    assert all(torch.equal(a, b) for a, b in zip(pruned.state_dict().values(), again.state_dict().values(),
                                                     strict=True))


def test_default_rule_keeps_residual_streams_and_interfaces_and_plus_all_prunes_them():
    kinds = {g.kind for g in discover("torchvision:mobilenet_v2").groups}
    assert {"inner", "residual", "interface"} <= kinds
    default, every = discover("torchvision:resnet18"), discover("torchvision:resnet18+all")
    assert len(default.prunable) == 8 and all(g.kind == "inner" for g in default.prunable)
    assert len(every.prunable) == 12  # and the 4 residual streams (the stem's output is layer1's stream)


@pytest.mark.parametrize("arch", ["torchvision:resnet18", "torchvision:regnet_y_400mf", "torchvision:googlenet",
                                  "timm:mobilenetv3_small_050"])
def test_pruned_library_network_exports_to_onnx(arch, tmp_path):
    from pfs.stages.export import fold_for_inference, relative_diff, run_onnxruntime, to_onnx

    widths = [max(u, w // 2 // u * u) for w, u in zip(default_widths(arch), get_spec(arch).units, strict=True)]
    torch.manual_seed(0)
    model = _randomise(build_model(arch, widths=widths, num_classes=CLASSES).eval())
    with torch.no_grad():
        for gate in model.gates():
            gate.weight.uniform_(0.2, 1.0)
    x = torch.randn(3, 3, SIZE, SIZE)
    with torch.no_grad():
        want = model(x)
    folded, counts = fold_for_inference(model)
    assert counts["gates_merged"] == len(widths)
    with torch.no_grad():
        assert relative_diff(folded(x), want)[1] < 1e-5
    path = tmp_path / "model.onnx"
    to_onnx(folded, SIZE).save(str(path))
    assert relative_diff(run_onnxruntime(path, x), want)[1] < 1e-4
