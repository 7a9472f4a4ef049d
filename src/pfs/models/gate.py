"""The channel gate: one learnable scalar per channel, multiplied onto a BatchNorm output."""

from __future__ import annotations

import torch
from torch import nn


class Gate(nn.Module):
    """Channel-wise scale ``y = g * x`` with ``g`` initialised to 1 (placed after BN, before ReLU)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))

    @property
    def channels(self) -> int:
        return self.weight.numel()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight.view(1, -1, 1, 1)

    def extra_repr(self) -> str:
        return f"channels={self.channels}"


class ConvBNGateReLU(nn.Sequential):
    """conv -> BN -> gate -> ReLU, the prunable unit of plain networks."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            Gate(cout),
            nn.ReLU(inplace=True),
        )


class GatedNet(nn.Module):
    """Base class: a network built from ``widths`` (one entry per prunable group) that owns one Gate per group."""

    arch: str = ""
    widths: list[int]
    expansion: int
    multiplier: float = 1.0  # scale of the unpruned backbone widths (only ResNet-50 and MobileNetV2 take one)

    def gates(self) -> list[Gate]:
        """The gates in prunable-group order (the order of ``widths``)."""
        found = [m for m in self.modules() if isinstance(m, Gate)]
        if [g.channels for g in found] != list(self.widths):
            raise RuntimeError(f"{self.arch}: gate order does not match widths")  # a model-definition bug
        return found

    def gate_parameters(self) -> list[nn.Parameter]:
        return [g.weight for g in self.gates()]

    def weight_parameters(self) -> list[nn.Parameter]:
        """Every parameter that is not a gate (the random weights that gate learning keeps frozen)."""
        gate_ids = {id(p) for p in self.gate_parameters()}
        return [p for p in self.parameters() if id(p) not in gate_ids]


def init_weights(model: nn.Module, bn_weight: float = 1.0, linear_std: float | None = None) -> None:
    """The official random init: conv N(0, sqrt(2 / (k*k*C_out))) (Kaiming fan-out), BN weight ``bn_weight`` and
    bias 0, Linear N(0, ``linear_std``) with zero bias (None: PyTorch's default Linear init)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, bn_weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and linear_std is not None:
            nn.init.normal_(m.weight, 0, linear_std)
            nn.init.zeros_(m.bias)
