"""ImageNet ResNet-50 (Bottleneck, stride on the 3x3 conv as in the official code and torchvision).

Prunable: the outputs of conv1 and conv2 of each of the 16 bottlenecks (two groups per block, 32 in all). The
7x7 stem, the block outputs (the residual stream) and the 1x1 projection shortcuts are never pruned; the
multiplier scales them (int(m * v)).
"""

from __future__ import annotations

from torch import nn

from pfs.models.gate import Gate, GatedNet, init_weights
from pfs.models.registry import register_model

BASE = 64  # standard inner width of the first stage; expansion c gives inner widths c, 2c, 4c, 8c per stage
BLOCKS = (3, 4, 6, 3)  # bottlenecks per stage
STEM = 64  # stem width at multiplier 1
OUTPUTS = (256, 512, 1024, 2048)  # block output width of each stage at multiplier 1


def resnet50_widths(expansion: int) -> list[int]:
    return [w for stage, n in enumerate(BLOCKS) for w in [expansion * 2 ** stage] * (2 * n)]


class Bottleneck(nn.Module):
    """1x1 conv-BN-gate-ReLU (``mid1``) -> 3x3 conv-BN-gate-ReLU (``mid2``) -> 1x1 conv-BN, + shortcut, ReLU."""

    def __init__(self, cin: int, mid1: int, mid2: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, mid1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid1)
        self.gate1 = Gate(mid1)
        self.conv2 = nn.Conv2d(mid1, mid2, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid2)
        self.gate2 = Gate(mid2)
        self.conv3 = nn.Conv2d(mid2, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:  # 1x1 projection; never pruned
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.relu(self.gate1(self.bn1(self.conv1(x))))
        out = self.relu(self.gate2(self.bn2(self.conv2(out))))
        return self.relu(self.bn3(self.conv3(out)) + self.shortcut(x))


class ResNet50(GatedNet):
    def __init__(self, widths: list[int] | None, expansion: int, num_classes: int, multiplier: float) -> None:
        super().__init__()
        self.arch, self.expansion, self.multiplier = "resnet50", expansion, multiplier
        self.widths = list(widths) if widths is not None else resnet50_widths(expansion)
        stem, outputs = int(multiplier * STEM), [int(multiplier * v) for v in OUTPUTS]
        if min(stem, *outputs) < 1:
            raise ValueError(f"resnet50: multiplier {multiplier} gives a backbone width of 0")
        self.stem = nn.Sequential(
            nn.Conv2d(3, stem, 7, 2, 3, bias=False), nn.BatchNorm2d(stem), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1),
        )
        blocks, cin, it = [], stem, iter(self.widths)
        for stage, (n, cout) in enumerate(zip(BLOCKS, outputs, strict=True)):
            for i in range(n):
                blocks.append(Bottleneck(cin, next(it), next(it), cout, 2 if stage > 0 and i == 0 else 1))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)  # PyTorch's default init, as in the official code
        init_weights(self)

    def forward(self, x):
        return self.fc(self.pool(self.blocks(self.stem(x))).flatten(1))


@register_model(widths_fn=resnet50_widths, base_expansion=BASE)
def resnet50(widths=None, expansion=BASE, num_classes=1000, multiplier=1.0):
    return ResNet50(widths, expansion, num_classes, multiplier)
