"""A library network with channel gates: ``LibraryNet`` wraps a torchvision/timm network built at the widths of its
prunable groups (pfs.models.rebuild) and multiplies each group's channels by its gate where the structure says
(pfs.models.structure: after the norm of each conv producing them), through forward hooks, so the wrapped network's
own code and state_dict keys are untouched (``net.<its keys>``, ``gate_modules.<i>.weight``).

Expansion of a library network is a percentage of its standard widths (100: the standard network): the gate network
at expansion 150 has every prunable group 1.5x wider (rounded to its unit), built by the arch's own constructor; the
groups that are not pruned keep their width. Pruning ratios are measured against expansion 100.
"""

from __future__ import annotations

import torch
from torch import nn

from pfs.core.catalog import CatalogError
from pfs.models.gate import Gate, GatedNet
from pfs.models.rebuild import build_at_widths, out_size, site_positions
from pfs.models.structure import Site, discover

BASE_EXPANSION = 100  # percent of the standard widths


class _GateHook:
    """Multiplies a layer's output (or, as a pre-hook, a child's input) by a gate along the channel dim. An object,
    not a closure: deepcopy of the network then gives the copy its own gate."""

    def __init__(self, gate: Gate, dim: int, positions: list[int] | None = None) -> None:
        self.gate, self.dim = gate, dim
        self.positions = None if positions is None else torch.tensor(positions)  # None: every channel, in order

    def scale(self, x: torch.Tensor) -> torch.Tensor:
        g = self.gate.weight
        if self.positions is not None:  # the group's channels among others (a concatenation's norm)
            size = x.shape[self.dim]
            g = torch.ones(size, dtype=g.dtype, device=g.device).index_put((self.positions.to(g.device),), g)
        shape = [1] * x.ndim
        shape[self.dim if self.dim >= 0 else x.ndim + self.dim] = -1
        return x * g.view(shape)

    def __call__(self, module, args, out=None):
        if out is None:  # forward pre-hook
            return (self.scale(args[0]), *args[1:])
        return self.scale(out)


class LibraryNet(GatedNet):
    """``arch`` (``torchvision:<model>`` or ``timm:<model>``, optionally ``+all``) with its prunable groups at
    ``widths`` and one gate per channel of each."""

    def __init__(self, arch: str, widths: list[int], expansion: int, num_classes: int) -> None:
        super().__init__()
        self.arch, self.expansion, self.widths = arch, expansion, [int(w) for w in widths]
        self.net = build_at_widths(arch, self.widths, num_classes)
        self.gate_modules = nn.ModuleList(Gate(w) for w in self.widths)
        modules = dict(self.net.named_modules())
        for index, (group, gate) in enumerate(zip(discover(arch).prunable, self.gate_modules, strict=True)):
            for site in group.sites:
                positions = None
                if list(site.positions) != list(range(group.width)) or out_size(modules[site.module]) != gate.channels:
                    positions = site_positions(arch, site.module, self.widths)[index]
                hook = _GateHook(gate, site.dim, positions)
                if site.pre:
                    modules[site.module].get_submodule(site.pre).register_forward_pre_hook(hook)
                else:
                    modules[site.module].register_forward_hook(hook)

    def forward(self, x):
        return self.net(x)

    @torch.no_grad()
    def merged(self) -> nn.Module:
        """The wrapped network alone with every gate folded into the layer it follows (a norm's affine scale and
        shift, or a conv's or Linear's weights and bias): the same function without hooks, for export."""
        import copy

        net = copy.deepcopy(self.net)
        for module in net.modules():
            module._forward_hooks.clear()
            module._forward_pre_hooks.clear()
        modules = dict(net.named_modules())
        for index, (group, gate) in enumerate(zip(discover(self.arch).prunable, self.gate_modules, strict=True)):
            for site in group.sites:
                g = gate.weight.detach()
                if list(site.positions) != list(range(group.width)) or out_size(modules[site.module]) != g.numel():
                    positions = site_positions(self.arch, site.module, self.widths)[index]
                    g = torch.ones(out_size(modules[site.module])).index_put((torch.tensor(positions),), g)
                _fold_gate(modules[site.module], site, g)
        return net


def _fold_gate(module: nn.Module, site: Site, g: torch.Tensor) -> None:
    """``g * module(x)`` as ``module'(x)``: scale the per-channel affine weight and bias (norms) or the output rows
    (conv, Linear)."""
    weight, bias = getattr(module, "weight", None), getattr(module, "bias", None)
    if weight is None:
        raise CatalogError(f"cannot fold a gate into {site.module} ({type(module).__name__}): it has no affine weight")
    view = [-1] + [1] * (weight.ndim - 1)
    weight.mul_(g.view(view).to(weight.dtype))
    if bias is not None:
        bias.mul_(g.to(bias.dtype))


def check_widths(arch: str, widths: list[int]) -> None:
    """Refuse widths that are not whole units of their group (a grouped conv loses whole conv-groups)."""
    for group, width in zip(discover(arch).prunable, widths, strict=True):
        if width % group.unit:
            raise CatalogError(f"{arch}: group {group.name} loses whole conv-groups of {group.unit} channels, so its "
                               f"width must be a multiple of {group.unit}, got {width}")
