"""A library network at any widths of its prunable groups, built by its own constructor, so its own
initialisation runs at those widths.

Why not cut the full network: a slice of a wider layer's random weights keeps the wider layer's scale (Kaiming's
std is sqrt(2 / fan), and fan shrinks with the width), so a pruned network trained "from scratch" would start from
the wrong init. Instead the library's constructor runs again with every layer a group sizes created at its new
size: the k-th Conv2d/Linear/norm layer the constructor creates is the k-th of the full network (checked), and its
channel counts are changed before it is made; the arch's init loop then sees the new shapes. Every parameter's
shape is then checked against what the groups predict, so a network whose code computes a width of its own (a
split into fixed halves) is refused in one line instead of failing later.

The channel map (``channel_map``) says where each group's channels sit in every weight: the surgery that cuts a
trained network to kept channels (the classic baselines' inherited weights) and the L1 scores read it.
"""

from __future__ import annotations

import inspect
import math
from functools import lru_cache

import torch
from torch import nn

from pfs.core.catalog import CatalogError
from pfs.models.library import build_library_model
from pfs.models.structure import Structure, discover, meta_model

PATCHED = (nn.Conv2d, nn.Linear, nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm)
# per-group positions of its channels in one weight dim: one row per channel (its positions there)
Positions = tuple[tuple[int, ...], ...]
ChannelMap = dict[str, dict[int, list[tuple[int, Positions]]]]  # state_dict key -> dim -> [(group, positions)]


def param_dims(module: nn.Module, role: str) -> list[tuple[str, int]]:
    """The (parameter or buffer name, dim) that a group member of ``role`` sizes in ``module``."""
    if role == "in":
        if isinstance(module, nn.Conv2d) and module.groups > 1:
            return []  # a depthwise or grouped conv keeps its channels per conv-group: only its outputs are cut
        return [("weight", 1)] if isinstance(module, nn.Conv2d | nn.Linear) else []
    names = ("weight", "bias", "running_mean", "running_var")
    return [(n, 0) for n in names if getattr(module, n, None) is not None and getattr(module, n).ndim >= 1]


def _deltas(structure: Structure, widths: list[int]) -> dict[tuple[str, str], int]:
    """(layer, role) -> change of its size at ``widths`` (one per prunable group) against the full network."""
    deltas: dict[tuple[str, str], int] = {}
    for group, width in zip(structure.prunable, widths, strict=True):
        for m in group.members:
            per_channel = sum(len(p) for p in m.positions) // group.width
            deltas[(m.module, m.role)] = deltas.get((m.module, m.role), 0) + (width - group.width) * per_channel
    return deltas


def _new_args(module: nn.Module, deltas: dict[str, int]) -> dict[str, object]:
    """The constructor arguments of ``module`` (a full-width layer) at its new size."""
    out, inp = deltas.get("out", 0), deltas.get("in", 0)
    if isinstance(module, nn.Conv2d):
        new_out = module.out_channels + out
        new_in = module.in_channels + inp
        if module.groups > 1 and module.groups == module.in_channels and not inp:
            new_in = new_out  # a depthwise conv: Torch-Pruning's member is its outputs, its inputs follow
        per_group = module.in_channels // module.groups
        return {"in_channels": new_in, "out_channels": new_out, "groups": max(1, new_in // per_group)}
    if isinstance(module, nn.Linear):
        return {"in_features": module.in_features + inp, "out_features": module.out_features + out}
    if isinstance(module, nn.BatchNorm2d):
        return {"num_features": module.num_features + out}
    if isinstance(module, nn.LayerNorm):
        shape = tuple(module.normalized_shape)
        return {"normalized_shape": (*shape[:-1], shape[-1] + out)}
    if isinstance(module, nn.GroupNorm):
        return {"num_channels": module.num_channels + out}
    raise CatalogError(f"cannot resize a {type(module).__name__}")


class _Constructors:
    """Patches the constructors of PATCHED: records the layers in creation order, or changes the arguments of the
    ``k``-th by ``overrides[k]``."""

    def __init__(self, overrides: dict[int, dict[str, object]] | None = None) -> None:
        self.created: list[nn.Module] = []
        self.overrides = overrides or {}
        self.saved: list[tuple[type, object | None]] = []

    def __enter__(self):
        for cls in PATCHED:
            original = cls.__init__
            self.saved.append((cls, cls.__dict__.get("__init__")))
            cls.__init__ = self._wrap(original)
        return self

    def __exit__(self, *exc):
        for cls, original in reversed(self.saved):
            if original is None:
                del cls.__init__
            else:
                cls.__init__ = original

    def _wrap(self, original):
        signature = inspect.signature(original)

        def init(module, *args, **kwargs):
            k = len(self.created)
            self.created.append(module)
            if k in self.overrides:
                bound = signature.bind(module, *args, **kwargs)
                bound.arguments.update(self.overrides[k])
                args, kwargs = bound.args[1:], bound.kwargs
            original(module, *args, **kwargs)

        return init


@lru_cache(maxsize=16)
def _creation_order(arch: str) -> tuple[tuple[str | None, type], ...]:
    """(name or None, class) of every PATCHED layer in the order the constructor of ``arch`` creates them."""
    with _Constructors() as record:
        model = meta_model(arch)
    names = {id(m): n for n, m in model.named_modules()}
    return tuple((names.get(id(m)), type(m)) for m in record.created)


def build_at_widths(arch: str, widths: list[int], num_classes: int) -> nn.Module:
    """The library network ``arch`` with its prunable groups at ``widths``, initialised by its own constructor at
    those widths (seed torch before calling). Refuses widths the network's code cannot take, in one line."""
    structure = discover(arch)
    base = arch.removesuffix("+all")
    if list(widths) == [g.width for g in structure.prunable]:
        return build_library_model(base, num_classes)
    meta = _meta_modules(arch, num_classes)
    by_layer: dict[str, dict[str, int]] = {}
    for (name, role), delta in _deltas(structure, widths).items():
        by_layer.setdefault(name, {})[role] = delta
    order = _creation_order(base)
    overrides = {k: _new_args(meta[name], by_layer[name]) for k, (name, _) in enumerate(order) if name in by_layer}
    with _Constructors(overrides) as built:
        model = build_library_model(base, num_classes)
    if [type(m) for m in built.created] != [cls for _, cls in order]:
        raise CatalogError(f"{arch}: its constructor creates other layers at widths {widths}; it cannot be rebuilt")
    _check_shapes(arch, model, expected_shapes(arch, widths, num_classes), widths)
    return model


def expected_shapes(arch: str, widths: list[int], num_classes: int) -> dict[str, tuple[int, ...]]:
    """The state_dict shapes the groups predict for ``arch`` at ``widths``."""
    structure = discover(arch)
    modules = _meta_modules(arch, num_classes)
    shapes = {k: list(v.shape) for k, v in modules[""].state_dict().items()}
    for (name, role), delta in _deltas(structure, widths).items():
        for param, dim in param_dims(modules[name], role):
            shapes[f"{name}.{param}"][dim] += delta
    return {k: tuple(v) for k, v in shapes.items()}


def _check_shapes(arch: str, model: nn.Module, expected: dict[str, tuple[int, ...]], widths: list[int]) -> None:
    for key, tensor in model.state_dict().items():
        if key in expected and tuple(tensor.shape) != expected[key]:
            raise CatalogError(f"{arch} cannot be rebuilt at widths {widths}: its code sizes {key} "
                               f"{tuple(tensor.shape)} where the channel groups give {expected[key]} (a width it "
                               "computes itself); prune it with its default groups or pick another arch")


def channel_map(arch: str, prefix: str = "") -> ChannelMap:
    """Where every prunable group's channels sit in the full network's state_dict (keys with ``prefix``)."""
    structure = discover(arch)
    modules = _meta_modules(arch, 10)
    found: ChannelMap = {}
    for index, group in enumerate(structure.prunable):
        for m in group.members:
            for param, dim in param_dims(modules[m.module], m.role):
                found.setdefault(f"{prefix}{m.module}.{param}", {}).setdefault(dim, []).append((index, m.positions))
    return found




@lru_cache(maxsize=16)
def _meta_modules(arch: str, num_classes: int) -> dict[str, nn.Module]:
    return dict(meta_model(arch.removesuffix("+all"), num_classes).named_modules())


@lru_cache(maxsize=64)
def _mac_factors(arch: str, image_size: int, num_classes: int) -> tuple[tuple[str, int], ...]:
    """Per Conv2d and Linear of the full network, in call order: MACs per (input channel per conv-group x output
    channel) for one ``image_size`` image: k*k*H_out*W_out (conv), the positions it is applied at (Linear)."""
    modules = _meta_modules(arch, num_classes)
    model = modules[""]
    factors: list[tuple[str, int]] = []

    def hook(name):
        def record(module, _args, out):
            if isinstance(module, nn.Conv2d):
                kh, kw = module.kernel_size
                factors.append((name, kh * kw * out.shape[2] * out.shape[3]))
            else:
                factors.append((name, out.numel() // out.shape[-1] // out.shape[0]))
        return record

    hooks = [m.register_forward_hook(hook(n)) for n, m in modules.items() if isinstance(m, nn.Conv2d | nn.Linear)]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, image_size, image_size, device="meta"))
    except Exception as exc:  # too small an input for its strides and pools
        raise CatalogError(f"{arch} cannot take {image_size}x{image_size} images ({type(exc).__name__}: "
                           f"{' '.join(str(exc).split())[:160]}); raise dataset.image_size or pick another arch"
                           ) from None
    finally:
        for h in hooks:
            h.remove()
    return tuple(factors)


def library_cost(arch: str, image_size: int, num_classes: int, widths: list[int] | None = None) -> dict[str, int]:
    """``{"macs", "params"}`` of ``arch`` with its prunable groups at ``widths`` (default: standard), computed from
    the layer sizes the groups give (no network is built): the convention of pfs.method.macs (conv and Linear
    multiply-accumulates of one image, gates not counted), equal to counting a built network."""
    structure = discover(arch)
    widths = [g.width for g in structure.prunable] if widths is None else list(widths)
    modules = _meta_modules(arch, num_classes)
    by_layer: dict[str, dict[str, int]] = {}
    for (name, role), delta in _deltas(structure, widths).items():
        by_layer.setdefault(name, {})[role] = delta
    macs = 0
    for name, factor in _mac_factors(arch, image_size, num_classes):
        module = modules[name]
        size = _new_args(module, by_layer.get(name, {}))
        if isinstance(module, nn.Conv2d):
            macs += factor * size["in_channels"] // size["groups"] * size["out_channels"]
        else:
            macs += factor * size["in_features"] * size["out_features"]
    shapes = expected_shapes(arch, widths, num_classes)
    params = sum(math.prod(shapes[name]) for name, _ in modules[""].named_parameters())
    return {"macs": int(macs), "params": int(params)}


def out_size(module: nn.Module) -> int:
    for attr in ("out_channels", "out_features", "num_features", "num_channels"):
        if hasattr(module, attr):
            return int(getattr(module, attr))
    return int(module.normalized_shape[-1])


def site_positions(arch: str, module: str, widths: list[int]) -> dict[int, list[int]]:
    """Where each prunable group's channels sit in ``module``'s outputs when the groups are at ``widths``: the
    full layer's outputs are runs of channels, one run per group (a concatenation keeps its parts in order), and
    each group's run takes its new width. A layout it cannot describe so (a group's channels not one run in
    order) is refused."""
    structure = discover(arch)
    size = out_size(_meta_modules(arch, 10)[module])
    owner = [-1] * size
    for index, group in enumerate(structure.prunable):
        for m in group.members:
            if m.module == module and m.role == "out":
                for (p,) in m.positions:
                    owner[p] = index
                if [p for (p,) in m.positions] != list(range(m.positions[0][0], m.positions[0][0] + group.width)):
                    raise CatalogError(f"{arch}: the channels of group {group.name} are not one run in {module}")
    found: dict[int, list[int]] = {}
    offset, start = 0, 0
    while start < size:
        end = start
        while end < size and owner[end] == owner[start]:
            end += 1
        length = end - start if owner[start] < 0 else widths[owner[start]]
        if owner[start] >= 0:
            found[owner[start]] = list(range(offset, offset + length))
        offset, start = offset + length, end
    return found
