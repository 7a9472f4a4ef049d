"""MACs of pfs's own archs (the paper's: CIFAR ResNets and VGGs, MobileNetV1/V2, ResNet-50) from their widths,
torch-free, for the config checks while Snakemake builds the DAG (pfs.workflow.config.check_ratios): which MACs
reductions a grid's pruning can reach at all.

The convention is pfs.method.macs.count_macs's (multiply-accumulates of conv and Linear layers for one image; BN,
ReLU, pooling, residual adds and gates are not counted), and the layer shapes are pfs.models' builders': tests/core/
test_paper_macs.py checks both against a built network on every paper arch (a change to a builder fails there).
"""

from __future__ import annotations

from pfs.core.reach import least_width

# the standard (unexpanded) width setting of each family: pruning ratios are measured against it
BASE_EXPANSION = {
    **{f"resnet{d}": 16 for d in (20, 32, 44, 56, 110)},
    **{f"vgg{d}_bn": 64 for d in (11, 13, 16, 19)},
    "mobilenet_v1": 32, "mobilenet_v2": 32, "resnet50": 64,
}
_VGG = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512],
}
_R50_BLOCKS, _R50_OUTPUTS = (3, 4, 6, 3), (256, 512, 1024, 2048)
_V1_STRIDE2, _V2_STRIDE2 = (1, 3, 5, 11), (1, 3, 6, 13)
_V2_HIDDEN = [32, 96, 144, 144, 192, 192, 192, 384, 384, 384, 384, 576, 576, 576, 960, 960, 960, 1280]
_V2_OUTPUTS = [16, 24, 24, 32, 32, 32, 64, 64, 64, 64, 96, 96, 96, 160, 160, 160, 320]


def default_widths(arch: str, expansion: int | None = None) -> list[int]:
    """The inner widths (one per prunable group) of ``arch`` at ``expansion`` (default: its standard width), as
    pfs.models.default_widths gives them."""
    c = BASE_EXPANSION[arch] if expansion is None else int(expansion)
    if arch.startswith("vgg"):
        return [max(1, int(v * c / 64)) for v in _VGG[int(arch[3:-3])] if v != "M"]
    if arch == "resnet50":
        return [w for stage, n in enumerate(_R50_BLOCKS) for w in [c * 2 ** stage] * (2 * n)]
    if arch == "mobilenet_v1":
        return [c, 2 * c, 4 * c, 4 * c, 8 * c, 8 * c] + [16 * c] * 6 + [32 * c] * 2
    if arch == "mobilenet_v2":
        return [int(v * c / 32) for v in _V2_HIDDEN]
    n = (int(arch[6:]) - 2) // 6  # a CIFAR ResNet
    return [c] * n + [2 * c] * n + [4 * c] * n


class _Counter:
    """Conv and Linear MACs of one image, layer by layer, following the spatial size."""

    def __init__(self, size: int) -> None:
        self.size, self.macs = size, 0

    def conv(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, size: int | None = None) -> int:
        """Add a conv (padding kernel // 2) on a ``size`` map (default: the current one); returns its output size."""
        out = ((self.size if size is None else size) + 2 * (kernel // 2) - kernel) // stride + 1
        self.macs += kernel * kernel * (cin // groups) * cout * out * out
        return out

    def linear(self, cin: int, cout: int) -> None:
        self.macs += cin * cout


def _cifar_resnet(count: _Counter, widths: list[int], c: int, classes: int) -> None:
    n = len(widths) // 3
    count.conv(3, c, 3)
    cin = c
    for i, mid in enumerate(widths):
        stage, cout = i // n, c * 2 ** (i // n)
        stride = 2 if stage > 0 and i % n == 0 else 1
        size = count.size
        count.size = count.conv(cin, mid, 3, stride)
        count.conv(mid, cout, 3)
        if stride != 1 or cin != cout:
            count.conv(cin, cout, 1, stride, size=size)
        cin = cout
    count.linear(cin, classes)


def _vgg(count: _Counter, widths: list[int], depth: int, classes: int) -> None:
    cin, it = 3, iter(widths)
    for v in _VGG[depth]:
        if v == "M":
            count.size //= 2
        else:
            cout = next(it)
            count.conv(cin, cout, 3)
            cin = cout
    count.linear(cin, classes)


def _resnet50(count: _Counter, widths: list[int], m: float, classes: int) -> None:
    count.size = count.conv(3, int(m * 64), 7, 2)
    count.size = (count.size + 2 - 3) // 2 + 1  # max-pool 3, stride 2, padding 1
    cin, it = int(m * 64), iter(widths)
    for stage, (n, out) in enumerate(zip(_R50_BLOCKS, _R50_OUTPUTS, strict=True)):
        cout = int(m * out)
        for i in range(n):
            mid1, mid2, stride, size = next(it), next(it), 2 if stage > 0 and i == 0 else 1, count.size
            count.conv(cin, mid1, 1)
            count.size = count.conv(mid1, mid2, 3, stride)
            count.conv(mid2, cout, 1)
            if stride != 1 or cin != cout:
                count.conv(cin, cout, 1, stride, size=size)
            cin = cout
    count.linear(cin, classes)


def _mobilenet_v1(count: _Counter, widths: list[int], classes: int) -> None:
    count.size = count.conv(3, widths[0], 3, 2)
    for i, (cin, cout) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        count.size = count.conv(cin, cin, 3, 2 if i in _V1_STRIDE2 else 1, groups=cin)
        count.conv(cin, cout, 1)
    count.linear(widths[-1], classes)


def _mobilenet_v2(count: _Counter, widths: list[int], m: float, classes: int) -> None:
    count.size = count.conv(3, widths[0], 3, 2)
    cin = widths[0]
    for j, (hidden, out) in enumerate(zip(widths[:-1], _V2_OUTPUTS, strict=True)):
        cout = int(m * out)
        if j > 0:  # block 0 has no expansion conv: its depthwise conv runs on the stem's channels
            count.conv(cin, hidden, 1)
        else:
            hidden = cin
        count.size = count.conv(hidden, hidden, 3, 2 if j in _V2_STRIDE2 else 1, groups=hidden)
        count.conv(hidden, cout, 1)
        cin = cout
    count.conv(cin, widths[-1], 1)
    count.linear(widths[-1], classes)


def paper_macs(arch: str, image_size: int, num_classes: int, widths: list[int] | None = None,
               expansion: int | None = None, multiplier: float = 1.0) -> int:
    """MACs of ``arch`` with inner ``widths`` (default: full width at ``expansion``) and backbone ``multiplier``
    (ResNet-50, MobileNetV2) for one ``image_size`` image: pfs.method.macs.network_cost's figure, without torch."""
    c = BASE_EXPANSION[arch] if expansion is None else int(expansion)
    widths = default_widths(arch, c) if widths is None else [int(w) for w in widths]
    count = _Counter(int(image_size))
    if arch.startswith("vgg"):
        _vgg(count, widths, int(arch[3:-3]), num_classes)
    elif arch == "resnet50":
        _resnet50(count, widths, float(multiplier), num_classes)
    elif arch == "mobilenet_v1":
        _mobilenet_v1(count, widths, num_classes)
    elif arch == "mobilenet_v2":
        _mobilenet_v2(count, widths, float(multiplier), num_classes)
    else:
        _cifar_resnet(count, widths, c, num_classes)
    return count.macs


def smallest_widths(widths: list[int], min_width: int, round_to: int = 1, units: list[int] | None = None,
                    max_layer_ratio: float = 1.0) -> list[int]:
    """The narrowest widths pruning can leave of ``widths`` (pfs.method.prune.min_widths, then round_widths): each
    group at ``min_width``, or at ceil((1 - ``max_layer_ratio``) x its width) where that is more, at most its
    width, rounded up to ``round_to`` (at most its width). ``units``: channels per unit of each group (a grouped
    conv's conv-groups: min_width, max_layer_ratio and round_to count units)."""
    units = units or [1] * len(widths)
    out = []
    for width, unit in zip(widths, units, strict=True):
        full = width // unit
        keep = least_width(full, min_width, max_layer_ratio)
        out.append(min(full, -(-keep // round_to) * round_to) * unit)
    return out
