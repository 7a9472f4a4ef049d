"""ImageNet MobileNetV1 and MobileNetV2 (the official code's variants), built from their prunable widths.

MobileNetV1: the stem conv and the pointwise output of each of the 13 depthwise-separable blocks are prunable
(14 groups); a block's depthwise conv has the width of the preceding gate. There is no other width, so there is
no backbone for a multiplier to scale (the official code accepts ``-m`` and ignores it; we refuse it).

MobileNetV2: the stem conv, the expanded (hidden) width of inverted residuals 1..16 and the last 1x1 conv are
prunable (18 groups). Block 0 has no expansion conv: its depthwise conv runs on the stem's channels (tied to the
stem gate). Block outputs are never pruned; the multiplier scales them (int(m * v)). Unlike the official code, a
block keeps its expansion conv even when a pruned hidden width happens to equal its input width.

Pooling is adaptive (global), so any input size works; at 224x224 it equals the official AvgPool2d(7).
"""

from __future__ import annotations

from torch import nn

from pfs.models.gate import ConvBNGateReLU, Gate, GatedNet, init_weights
from pfs.models.registry import register_model

BASE = 32  # standard stem width of both MobileNets; the expansion e scales the prunable widths by e/32

V1_STRIDE2 = (1, 3, 5, 11)  # depthwise-separable blocks that halve the resolution
V2_HIDDEN = [32, 96, 144, 144, 192, 192, 192, 384, 384, 384, 384, 576, 576, 576, 960, 960, 960, 1280]
V2_OUTPUTS = [16, 24, 24, 32, 32, 32, 64, 64, 64, 64, 96, 96, 96, 160, 160, 160, 320]  # block outputs (m = 1)
V2_STRIDE2 = (1, 3, 6, 13)  # inverted residuals that halve the resolution


def mobilenet_v1_widths(expansion: int) -> list[int]:
    c = expansion
    return [c, 2 * c, 4 * c, 4 * c, 8 * c, 8 * c] + [16 * c] * 6 + [32 * c] * 2


def mobilenet_v2_widths(expansion: int) -> list[int]:
    """Stem, hidden widths of blocks 1..16, last conv: the standard widths scaled by expansion/32."""
    return [int(v * expansion / BASE) for v in V2_HIDDEN]


def _init_mobilenet(model: nn.Module) -> None:
    # official MobileNet init: conv N(0, sqrt(2/(k*k*C_out))), BN 1/0, Linear N(0, 0.01) with zero bias
    init_weights(model, linear_std=0.01)


class DepthwiseSeparable(nn.Module):
    """3x3 depthwise conv-BN-ReLU on ``cin`` channels, then 1x1 conv-BN-gate-ReLU to ``cout`` (prunable)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.dw = nn.Sequential(
            nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin), nn.ReLU(inplace=True),
        )
        self.pw = ConvBNGateReLU(cin, cout, kernel=1)

    def forward(self, x):
        return self.pw(self.dw(x))


class MobileNetV1(GatedNet):
    def __init__(self, widths: list[int] | None, expansion: int, num_classes: int) -> None:
        super().__init__()
        self.arch, self.expansion = "mobilenet_v1", expansion
        self.widths = list(widths) if widths is not None else mobilenet_v1_widths(expansion)
        self.stem = ConvBNGateReLU(3, self.widths[0], kernel=3, stride=2)
        self.blocks = nn.Sequential(*[
            DepthwiseSeparable(cin, cout, 2 if i in V1_STRIDE2 else 1)
            for i, (cin, cout) in enumerate(zip(self.widths[:-1], self.widths[1:], strict=True))
        ])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(self.widths[-1], num_classes)
        _init_mobilenet(self)

    def forward(self, x):
        return self.classifier(self.pool(self.blocks(self.stem(x))).flatten(1))


class InvertedResidual(nn.Module):
    """[1x1 conv-BN-gate-ReLU6 to ``hidden``] -> 3x3 depthwise conv-BN-ReLU6 -> 1x1 conv-BN to ``cout`` (+ x).

    ``expand=False`` (block 0 only) drops the expansion conv: the depthwise conv runs on the ``cin`` input
    channels, whose gate is the stem's.
    """

    def __init__(self, cin: int, hidden: int, cout: int, stride: int, expand: bool = True) -> None:
        super().__init__()
        if not expand and hidden != cin:
            raise ValueError(f"a block without expansion conv has hidden width = input width, got {hidden} != {cin}")
        self.expand = nn.Sequential(
            nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), Gate(hidden), nn.ReLU6(inplace=True),
        ) if expand else nn.Identity()
        self.dw = nn.Sequential(
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
        )
        self.project = nn.Sequential(nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        out = self.project(self.dw(self.expand(x)))
        return x + out if self.residual else out


class MobileNetV2(GatedNet):
    def __init__(self, widths: list[int] | None, expansion: int, num_classes: int, multiplier: float) -> None:
        super().__init__()
        self.arch, self.expansion, self.multiplier = "mobilenet_v2", expansion, multiplier
        self.widths = list(widths) if widths is not None else mobilenet_v2_widths(expansion)
        outputs = [int(multiplier * v) for v in V2_OUTPUTS]
        if min(outputs) < 1:
            raise ValueError(f"mobilenet_v2: multiplier {multiplier} gives a block output of width 0: {outputs}")
        self.stem = ConvBNGateReLU(3, self.widths[0], kernel=3, stride=2)
        blocks, cin = [], self.widths[0]
        for j, (hidden, cout) in enumerate(zip(self.widths[:-1], outputs, strict=True)):
            # block 0 has no expansion (its hidden width is the stem's); every later block keeps its expansion conv
            hidden = cin if j == 0 else hidden
            blocks.append(InvertedResidual(cin, hidden, cout, 2 if j in V2_STRIDE2 else 1, expand=j > 0))
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.last = ConvBNGateReLU(cin, self.widths[-1], kernel=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(self.widths[-1], num_classes)
        _init_mobilenet(self)

    def forward(self, x):
        return self.classifier(self.pool(self.last(self.blocks(self.stem(x)))).flatten(1))


@register_model(widths_fn=mobilenet_v1_widths, base_expansion=BASE)
def mobilenet_v1(widths=None, expansion=BASE, num_classes=1000):
    return MobileNetV1(widths, expansion, num_classes)


@register_model(widths_fn=mobilenet_v2_widths, base_expansion=BASE)
def mobilenet_v2(widths=None, expansion=BASE, num_classes=1000, multiplier=1.0):
    return MobileNetV2(widths, expansion, num_classes, multiplier)
