"""MACs and parameter counts of any built model.

Convention: multiply-accumulates of Conv2d and Linear layers for ONE image at the dataset's resolution
(32x32 CIFAR, 224x224 ImageNet); BN, ReLU, pooling, residual adds, gates and biases are not counted.
Parameters exclude the gates (they fold into BN once training is done).
"""

from __future__ import annotations

import torch
from torch import nn

from pfs.core.catalog import check_multiplier, is_library_arch
from pfs.models import Gate, build_model, default_widths


def count_macs(model: nn.Module, image_size: int) -> int:
    """MACs of one forward pass of a ``3 x image_size x image_size`` image (works on meta-device models)."""
    total = 0

    def conv_hook(m: nn.Conv2d, _inp, out):
        nonlocal total
        kh, kw = m.kernel_size
        total += kh * kw * (m.in_channels // m.groups) * out.shape[1] * out.shape[2] * out.shape[3]

    def linear_hook(m: nn.Linear, _inp, out):
        nonlocal total
        total += m.in_features * m.out_features * (out.numel() // out.shape[-1] // out.shape[0])

    hooks = [
        m.register_forward_hook(conv_hook if isinstance(m, nn.Conv2d) else linear_hook)
        for m in model.modules()
        if isinstance(m, nn.Conv2d | nn.Linear)
    ]
    device = next(model.parameters()).device
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, image_size, image_size, device=device))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return int(total)


def count_params(model: nn.Module) -> int:
    """Parameters of the network, gates excluded."""
    gate_ids = {id(m.weight) for m in model.modules() if isinstance(m, Gate)}
    return int(sum(p.numel() for p in model.parameters() if id(p) not in gate_ids))


def network_cost(arch: str, image_size: int, num_classes: int, widths: list[int] | None = None,
                 expansion: int | None = None, multiplier: float = 1.0) -> dict[str, int]:
    """``{"macs", "params"}`` of ``arch`` built on the meta device (no memory, no init cost); a library network's
    from its layer sizes (pfs.models.rebuild.library_cost: the same figures, without building it)."""
    if is_library_arch(arch):
        check_multiplier(arch, multiplier)
        if widths is None:
            widths = default_widths(arch, expansion)
        from pfs.models.rebuild import library_cost  # Torch-Pruning imports torchvision: only for library archs

        return library_cost(arch, image_size, num_classes, widths)
    with torch.device("meta"):
        model = build_model(arch, widths=widths, expansion=expansion, num_classes=num_classes, multiplier=multiplier)
    return {"macs": count_macs(model, image_size), "params": count_params(model)}
