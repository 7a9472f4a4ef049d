"""CIFAR ResNets (BasicBlock, 6n+2 layers). Only the inner width of each block is prunable."""

from __future__ import annotations

from torch import nn

from pfs.models.gate import Gate, GatedNet, init_weights
from pfs.models.registry import register_model

BASE = 16  # standard stem width; expansion c gives residual stages c, 2c, 4c


def resnet_widths(depth: int, expansion: int) -> list[int]:
    n = (depth - 2) // 6
    return [expansion] * n + [2 * expansion] * n + [4 * expansion] * n


class BasicBlock(nn.Module):
    """conv1-BN-gate-ReLU (prunable width ``mid``) -> conv2-BN, + shortcut, ReLU."""

    def __init__(self, cin: int, mid: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, mid, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.gate = Gate(mid)
        self.conv2 = nn.Conv2d(mid, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:  # 1x1 projection, as in the official code; never pruned
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.relu(self.gate(self.bn1(self.conv1(x))))
        return self.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(GatedNet):
    def __init__(self, depth: int, widths: list[int] | None, expansion: int, num_classes: int) -> None:
        super().__init__()
        self.arch, self.expansion = f"resnet{depth}", expansion
        self.widths = list(widths) if widths is not None else resnet_widths(depth, expansion)
        n, c = (depth - 2) // 6, expansion
        self.stem = nn.Sequential(nn.Conv2d(3, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True))
        blocks, cin, it = [], c, iter(self.widths)
        for stage, planes in enumerate((c, 2 * c, 4 * c)):
            for i in range(n):
                blocks.append(BasicBlock(cin, next(it), planes, 2 if stage > 0 and i == 0 else 1))
                cin = planes
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)
        init_weights(self)

    def forward(self, x):
        return self.fc(self.pool(self.blocks(self.stem(x))).flatten(1))


def _register(depth: int) -> None:
    def builder(widths=None, expansion=BASE, num_classes=10):
        return CifarResNet(depth, widths, expansion, num_classes)

    builder.__name__ = f"resnet{depth}"
    register_model(widths_fn=lambda e: resnet_widths(depth, e), base_expansion=BASE)(builder)


for _depth in (20, 32, 44, 56, 110):
    _register(_depth)
