"""CIFAR VGG with BN (the variant of the official code: no last max-pool, global average pool, one Linear)."""

from __future__ import annotations

from torch import nn

from pfs.models.gate import ConvBNGateReLU, GatedNet, init_weights
from pfs.models.registry import register_model

_CFGS = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512],
}
BASE = 64  # standard width of the first conv; expansion e scales every conv by e/64


def vgg_widths(depth: int, expansion: int) -> list[int]:
    return [max(1, int(v * expansion / BASE)) for v in _CFGS[depth] if v != "M"]


class VGG(GatedNet):
    """Every conv is conv-BN-gate-ReLU and is one prunable group."""

    def __init__(self, depth: int, widths: list[int] | None, expansion: int, num_classes: int) -> None:
        super().__init__()
        self.arch, self.expansion = f"vgg{depth}_bn", expansion
        self.widths = list(widths) if widths is not None else vgg_widths(depth, expansion)
        layers: list[nn.Module] = []
        cin, it = 3, iter(self.widths)
        for v in _CFGS[depth]:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                cout = next(it)
                layers.append(ConvBNGateReLU(cin, cout))
                cin = cout
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(cin, num_classes)
        self._init()

    def _init(self) -> None:
        # official CIFAR VGG init: conv N(0, sqrt(2/(k*k*C_out))), BN gamma 0.5, Linear N(0, 0.01)
        init_weights(self, bn_weight=0.5, linear_std=0.01)

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)).flatten(1))


def _register(depth: int) -> None:
    def builder(widths=None, expansion=BASE, num_classes=10):
        return VGG(depth, widths, expansion, num_classes)

    builder.__name__ = f"vgg{depth}_bn"
    register_model(widths_fn=lambda e: vgg_widths(depth, e), base_expansion=BASE)(builder)


for _depth in _CFGS:
    _register(_depth)
