"""The prunable channel groups of any network, found by Torch-Pruning's dependency graph (no per-arch tables).

A group is a set of channels that must be removed together: a conv's output channels, the BatchNorm after it, a
depthwise conv on them, a squeeze-excite that multiplies them, the input channels of every layer reading them
(through concatenations too). Each group has a width (its channels, in the order of its root layer's outputs), a
unit (1, or the channels per conv-group of a grouped convolution: such a group loses whole conv-groups, its input
and output channels together) and members: every layer dim it sizes, with the positions of each channel there.

Which groups are pruned (``Group.prunable``) follows the paper: not a residual stream (channels coupled across an
add) and not the stem or classifier interface (the first conv's outputs, the classifier's inputs), unless the arch
asks for every group (``<library>:<model>+all``). Groups the rebuild cannot size (a layer type it does not know) and
the network's output are never pruned. The gates of a group multiply its channels after the normalisation layer of
each conv producing them (after the conv where none follows), ``Group.sites``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch_pruning as tp
from torch import nn

from pfs.core.catalog import CatalogError, library_parts
from pfs.models.library import build_library_model

PROBE_SIZE = 224  # the traced input (on the meta device: no compute); the structure does not depend on it
NORMS = (nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm)
SIZED = (nn.Conv2d, nn.Linear, *NORMS)  # the layer types the rebuild resizes (pfs.models.rebuild)


@dataclass(frozen=True)
class Member:
    """One layer dim a group sizes: ``role`` "out" (a layer's outputs, a norm's features) or "in" (a layer's
    inputs); ``positions[r]``: the positions in that dim of the group's channel ``r`` (usually one; a flatten
    before a Linear gives H*W)."""

    module: str
    role: str
    positions: tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class Site:
    """Where a gate multiplies a group's channels: the output of ``module`` (``pre``: the input of its child
    ``pre``, e.g. the activation inside timm's BatchNormAct2d), along ``dim``, at ``positions`` (one per channel)."""

    module: str
    dim: int
    positions: tuple[int, ...]
    pre: str = ""


@dataclass(frozen=True)
class Group:
    name: str  # its root layer, e.g. layer1.0.conv1
    width: int
    unit: int
    kind: str  # inner, residual, interface, unsupported
    members: tuple[Member, ...]
    sites: tuple[Site, ...] = ()
    reason: str = ""  # why it is not pruned


@dataclass(frozen=True)
class Structure:
    arch: str
    groups: tuple[Group, ...]  # every group, pruned or not, in the order the network uses them
    all_groups: bool

    @property
    def prunable(self) -> tuple[Group, ...]:
        return tuple(g for g in self.groups if g.kind == "inner" or (self.all_groups and g.kind != "unsupported"))


class _Trace:
    """One forward with hooks on every leaf layer: which layer reads which layer's output, and output shapes."""

    def __init__(self, model: nn.Module, example: torch.Tensor) -> None:
        self.names = {m: n for n, m in model.named_modules()}
        self.outputs: dict[str, tuple[int, tuple[int, ...]]] = {}  # name -> (id of its output, its shape)
        self.readers: dict[int, list[str]] = {}  # id of a tensor -> layers reading it
        self.first_conv = ""
        self.calls: list[str] = []  # leaf layers in call order
        keep = [example]
        hooks = [m.register_forward_hook(self._hook(n, keep)) for n, m in model.named_modules()
                 if not list(m.children()) or isinstance(m, NORMS)]  # timm's norm+act layers have children
        try:
            with torch.no_grad():
                model(example)
        finally:
            for h in hooks:
                h.remove()

    def _hook(self, name, keep):
        def hook(module, args, out):
            self.calls.append(name)
            if args and torch.is_tensor(args[0]):
                keep.append(args[0])
                self.readers.setdefault(id(args[0]), []).append(name)
                if isinstance(module, nn.Conv2d) and not self.first_conv and id(args[0]) == id(keep[0]):
                    self.first_conv = name
            if torch.is_tensor(out):
                keep.append(out)
                self.outputs.setdefault(name, (id(out), tuple(out.shape)))
        return hook


def _members(group, names) -> tuple[list[Member], list[str]]:
    """(sized members, names of unsupported layers) of a Torch-Pruning group."""
    members, unsupported = [], []
    width = len(group[0].idxs)
    dg = group._DG
    for item in group:
        dep, idxs, roots = item.dep, item.idxs, item.root_idxs
        module = dep.target.module
        if isinstance(module, nn.Parameter):  # a parameter outside any layer (ConvNeXt's layer scale)
            unsupported.append(f"{names.get(module, 'a parameter')} (a parameter outside any layer)")
            continue
        if not isinstance(module, nn.Module) or module not in names:
            continue
        if type(module).__module__.startswith("torch_pruning"):
            continue
        role = "out" if dg.is_out_channel_pruning_fn(dep.handler) else "in"
        if not isinstance(module, SIZED):
            if list(module.parameters(recurse=False)):
                unsupported.append(f"{names[module]} ({type(module).__name__})")
            continue
        per_root: list[list[int]] = [[] for _ in range(width)]
        for i, r in zip(idxs, roots, strict=True):
            per_root[r].append(int(i))
        members.append(Member(names[module], role, tuple(tuple(sorted(p)) for p in per_root)))
    return members, unsupported


def _producers(members, trace: _Trace, modules: dict[str, nn.Module]) -> list[Member]:
    """The layers computing the group's channels from other channels (convs, Linears), less a squeeze-excite's
    excitation (a 1x1 output beside producers of feature maps: it scales channels another layer computes)."""
    found = [m for m in members if m.role == "out" and isinstance(modules[m.module], nn.Conv2d | nn.Linear)]
    shapes = {p.module: trace.outputs.get(p.module, (0, ()))[1] for p in found}
    has_map = any(len(s) == 4 and s[2] * s[3] > 1 for s in shapes.values())
    return [p for p in found if not (has_map and len(shapes[p.module]) == 4
                                     and shapes[p.module][2] * shapes[p.module][3] == 1)]


def _is_residual(members, trace: _Trace, modules: dict[str, nn.Module]) -> bool:
    """Whether two layers compute the group's channels independently (not a depthwise or grouped conv of them):
    their outputs are added, a residual stream."""
    return sum(1 for p in _producers(members, trace, modules) if getattr(modules[p.module], "groups", 1) == 1) > 1


def _merge_grouped(groups: list[dict], modules: dict[str, nn.Module]) -> list[dict]:
    """Merge the input and output groups of every grouped (not depthwise) conv: it loses whole conv-groups, inputs
    and outputs together, so its two groups are one, in the conv's channel order, with a unit of its channels per
    conv-group."""
    for name, conv in modules.items():
        if not (isinstance(conv, nn.Conv2d) and 1 < conv.groups < conv.in_channels):
            continue
        found = {}
        for g in groups:
            for m in g["members"]:
                if m.module == name and m.role not in found:
                    found[m.role] = g
        if len(found) < 2 or found["in"] is found["out"]:
            continue
        a, b = found["in"], found["out"]
        if conv.in_channels != conv.out_channels or a["width"] != b["width"]:
            a["unsupported"].append(f"{name} (grouped conv, {conv.in_channels} inputs, {conv.out_channels} outputs)")
            b["unsupported"].append(a["unsupported"][-1])
            continue
        a_order = _order_by(a, name, "in")
        b_order = _order_by(b, name, "out")
        merged = [Member(m.module, m.role, tuple(m.positions[r] for r in a_order)) for m in a["members"]]
        merged += [Member(m.module, m.role, tuple(m.positions[r] for r in b_order)) for m in b["members"]]
        a.update(members=merged, unit=max(a["unit"], b["unit"], conv.in_channels // conv.groups),
                 unsupported=a["unsupported"] + b["unsupported"])
        groups = [g for g in groups if g is not b]
    return groups


def _order_by(group: dict, module: str, role: str) -> list[int]:
    """The group's root channels in the order of ``module``'s ``role`` positions (root r at position p)."""
    member = next(m for m in group["members"] if m.module == module and m.role == role)
    return [r for _, r in sorted((p[0], r) for r, p in enumerate(member.positions))]


def _site(module: str, member: Member, trace: _Trace, modules: dict[str, nn.Module]) -> Site | None:
    """The gate site on ``module``'s output (timm's norm+act layers: before their activation), or None when a
    channel of the group has several positions there (a flatten)."""
    if any(len(q) != 1 for q in member.positions):
        return None
    children = dict(modules[module].named_children())
    pre = "drop" if "drop" in children else "act" if "act" in children else ""
    shape = trace.outputs.get(module, (None, ()))[1]
    channels_last = isinstance(modules[module], nn.Linear) or type(modules[module]) is nn.LayerNorm
    dim = 1 if len(shape) == 2 or (len(shape) == 4 and not channels_last) else -1
    return Site(module, dim, tuple(q[0] for q in member.positions), pre if isinstance(modules[module], NORMS) else "")


def _sites(members: list[Member], trace: _Trace, modules: dict[str, nn.Module]) -> tuple[Site, ...]:
    """Gate sites: after each producing layer's norm when the norm reads its output directly, else after the
    producing layer; and after every other norm that normalises the group's channels (a DenseNet layer's output,
    concatenated into every later layer's BN), so that a zero gate zeroes the channel wherever it is normalised. A
    producer whose output is 1x1 while another's is not (a squeeze-excite's excitation) gets none: the channel it
    scales is gated already."""
    sized = {m.module: m for m in members if m.role == "out"}
    sites = []
    for p in _producers(members, trace, modules):
        readers = trace.readers.get(trace.outputs.get(p.module, (None,))[0], [])
        norm = next((r for r in readers if r in sized and isinstance(modules[r], NORMS)), None)
        if norm is None or len(readers) != 1:
            sites.append(_site(p.module, p, trace, modules))
    sites += [_site(m.module, m, trace, modules) for m in sized.values() if isinstance(modules[m.module], NORMS)]
    return tuple(dict.fromkeys(s for s in sites if s is not None))


def _kind(g: dict, trace: _Trace, modules: dict[str, nn.Module], classifier_inputs: set[str]) -> tuple[str, str]:
    if g["unsupported"]:
        return "unsupported", f"sizes layers the rebuild does not know: {', '.join(g['unsupported'][:3])}"
    if _is_residual(g["members"], trace, modules):
        return "residual", "a residual stream (coupled across an add)"
    outs = {m.module for m in g["members"] if m.role == "out"}
    ins = {m.module for m in g["members"] if m.role == "in"}
    if trace.first_conv in outs:
        return "interface", "the stem's output"
    if ins & classifier_inputs:
        return "interface", "the classifier's input"
    return "inner", ""


@lru_cache(maxsize=32)
def discover(arch: str) -> Structure:
    """The channel groups of library arch ``arch`` (cached; built on the meta device, no weights)."""
    _, _, all_groups = library_parts(arch)
    model = meta_model(arch.removesuffix("+all"))
    example = torch.zeros(1, 3, PROBE_SIZE, PROBE_SIZE, device="meta")
    names = {m: n for n, m in model.named_modules()} | {p: n for n, p in model.named_parameters()}
    modules = dict(model.named_modules())
    try:
        trace = _Trace(model, example)
        with warnings.catch_warnings():  # "unwrapped parameters" (layer scales): they ride residual streams
            warnings.simplefilter("ignore", UserWarning)
            graph = tp.DependencyGraph().build_dependency(model, example_inputs=example)
    except Exception as exc:  # a network Torch-Pruning cannot trace
        raise CatalogError(f"{arch} cannot be traced for its channel groups ({type(exc).__name__}: "
                           f"{' '.join(str(exc).split())[:200]}); pick another arch") from None
    raw = []
    for group in graph.get_all_groups(root_module_types=(nn.Conv2d, nn.Linear)):
        members, unsupported = _members(group, names)
        if not any(m.role == "in" for m in members):
            continue  # the network's output (the classifier's logits): nothing reads it
        raw.append({"name": names[group[0].dep.target.module], "width": len(group[0].idxs), "unit": 1,
                    "members": members, "unsupported": unsupported})
    raw = _merge_grouped(raw, modules)
    order = {n: i for i, n in reversed(list(enumerate(trace.calls)))}  # first call of each layer
    raw.sort(key=lambda g: order.get(g["name"], len(order)))
    classifier_inputs = _head(trace, modules)
    groups = []
    for g in raw:
        kind, reason = _kind(g, trace, modules, classifier_inputs)
        groups.append(Group(g["name"], g["width"], g["unit"], kind, tuple(g["members"]),
                            _sites(g["members"], trace, modules), reason))
    return Structure(arch, tuple(groups), all_groups)


def meta_model(arch: str, num_classes: int = 10) -> nn.Module:
    """The network on the meta device (no memory, no init); built on the CPU when its constructor computes with
    tensors (torchvision's RegNets)."""
    try:
        with torch.device("meta"):
            return build_library_model(arch, num_classes=num_classes).eval()
    except NotImplementedError:
        state = torch.random.get_rng_state()
        try:
            with torch.device("cpu"):
                return build_library_model(arch, num_classes=num_classes).to("meta").eval()
        finally:
            torch.random.set_rng_state(state)  # the structure must not move the caller's random stream


def _head(trace: _Trace, modules: dict[str, nn.Module]) -> set[str]:
    """The classifier head: the Linear layers called after the last conv (or, with none, that conv: SqueezeNet's
    classifier is a conv); the channels they read are the classifier interface."""
    calls = trace.calls
    convs = [i for i, n in enumerate(calls) if isinstance(modules[n], nn.Conv2d)]
    last = convs[-1] if convs else -1
    head = {n for n in calls[last + 1:] if isinstance(modules[n], nn.Linear)}
    return head or ({calls[last]} if convs else set())
