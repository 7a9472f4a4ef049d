"""L1-norm filter pruning (Li et al., "Pruning Filters for Efficient ConvNets", ICLR 2017), the classic
pretrain-prune-fine-tune baseline of "Rethinking the Value of Network Pruning", for any registered arch.

Four pure steps, kept apart like pfs.method.prune's: the channel map (which dims of which state_dict entries a prunable
group indexes, found by probing shapes, no per-arch tables), scoring (each channel's filter L1 norm, normalised
per group), choosing the channels of given widths (``kept_channels``), and surgery (``prune_state``: the trained
weights cut to those channels, loadable into ``build_model(arch, widths=...)``). The widths themselves come from
pfs.method.prune.prune_to_macs, the same MACs search as the gate-pruned networks (pfs.stages.classic.stage_prune_l1).
"""

from __future__ import annotations

from collections import OrderedDict

import torch

from pfs.core.catalog import is_library_arch
from pfs.core.errors import PfsError
from pfs.models import build_model, default_widths

# state_dict key -> {dim: the prunable group indexing that dim}, or, for a library network, {dim: [(group, positions
# of each of its channels in that dim)]} (a concatenation puts several groups, and channels no group prunes, in one)
ChannelMap = dict[str, dict[int, int | list[tuple[int, tuple[tuple[int, ...], ...]]]]]


def map_entries(dims_of_key: dict) -> list[tuple[int, int, torch.Tensor | None]]:
    """(dim, group, positions or None: the whole dim in channel order) of one state_dict entry of a channel map."""
    found = []
    for dim, value in dims_of_key.items():
        if isinstance(value, int):
            found.append((dim, value, None))
        else:
            found.extend((dim, g, torch.tensor([p[0] for p in pos]) if all(len(p) == 1 for p in pos)
                          else torch.tensor(pos)) for g, pos in value)
    return found

RANKING = "l1_norm_per_layer_normalised"  # what channels.yaml records as the ranking used


def _shapes(arch: str, widths: list[int], expansion: int, num_classes: int, multiplier: float) -> dict[str, tuple]:
    """The state_dict shapes of ``arch`` at ``widths``. Built on the CPU: the meta device would skip the weights'
    memory but its first random init imports torch's reference ops (~3 s), longer than building a ResNet-50."""
    model = build_model(arch, widths=widths, expansion=expansion, num_classes=num_classes, multiplier=multiplier)
    return {key: tuple(t.shape) for key, t in model.state_dict().items()}


def channel_map(arch: str, widths: list[int], expansion: int, num_classes: int, multiplier: float = 1.0) -> ChannelMap:
    """For every state_dict entry of ``arch`` built at ``widths``, the dims indexed by a prunable group.

    Found by probing shapes, with no per-arch table: the model is built at ``widths``, then with every group ``g``
    (of ``n``) widened by ``g + 1``, then by ``n - g``. A dim that follows group ``g`` one-to-one grows by
    ``g + 1`` and ``n - g``, whose sum is ``n + 1``; a dim that followed several groups (a concatenation) or a
    multiple of one would break that sum and is refused, as a model definition the map cannot describe. Three
    builds on the meta device whatever the depth. Entries no group indexes (the residual stream, the stem of a
    CIFAR ResNet, BN counters) are left out.
    """
    widths = [int(w) for w in widths]
    if is_library_arch(arch):
        return _library_map(arch, widths)
    n = len(widths)
    base = _shapes(arch, widths, expansion, num_classes, multiplier)
    up = _shapes(arch, [w + g + 1 for g, w in enumerate(widths)], expansion, num_classes, multiplier)
    down = _shapes(arch, [w + n - g for g, w in enumerate(widths)], expansion, num_classes, multiplier)
    if not base.keys() == up.keys() == down.keys():  # a width that adds or removes layers is not a channel count
        raise RuntimeError(f"{arch}: changing the widths changes the set of layers")
    found: ChannelMap = {}
    for key, shape in base.items():
        for dim, (size, a, b) in enumerate(zip(shape, up[key], down[key], strict=True)):
            grow_up, grow_down = a - size, b - size
            if grow_up == grow_down == 0:
                continue
            if grow_up + grow_down != n + 1 or not 1 <= grow_up <= n:
                raise RuntimeError(f"{arch}: {key} dim {dim} does not follow one prunable group one-to-one")
            found.setdefault(key, {})[dim] = grow_up - 1
    missing = sorted(set(range(n)) - {g for dims in found.values() for g in dims.values()})
    if missing:
        raise RuntimeError(f"{arch}: groups {missing} index no weight")
    return found


def _library_map(arch: str, widths: list[int]) -> ChannelMap:
    """A library network's channel map from its channel groups (pfs.models.rebuild.channel_map), at its standard
    widths (the trained network the classic baselines prune), keys as LibraryNet names them."""
    if widths != default_widths(arch):
        raise PfsError(f"{arch}: the channel map of a library network is for its standard widths "
                       f"{default_widths(arch)}, got {widths}")
    from pfs.models import rebuild  # Torch-Pruning imports torchvision: only for library archs

    found: ChannelMap = rebuild.channel_map(arch, prefix="net.")
    for group in range(len(widths)):
        found[f"gate_modules.{group}.weight"] = {0: group}
    return found


def l1_scores(state_dict: dict[str, torch.Tensor], cmap: ChannelMap, widths: list[int]) -> list[torch.Tensor]:
    """Per group, each channel's L1 filter norm divided by the group's largest, so every score is in [0, 1].

    A channel's norm is the sum of |w| over the convolution filters that produce it: the 4-D weights whose
    output dim (dim 0) the group indexes. Where one group indexes several such outputs (a MobileNetV1 pointwise
    conv and the next block's depthwise conv, a MobileNetV2 stem and block 0's depthwise conv), their norms add.

    Why normalised per group: a filter's raw L1 norm grows with its fan-in (k*k*C_in weights) and with each
    layer's weight scale, so raw norms of different layers are not comparable and a global ranking of them would
    empty the layers of small fan-in first. Li et al. rank within each layer and pick every layer's ratio by hand
    from a sensitivity analysis, which cannot be aimed at a MACs reduction; ranking the per-layer-normalised
    norms globally is the usual automatic variant. Scores in [0, 1] are what pfs.method.prune.prune_to_macs ranks
    gates on (it takes |score|; exact ties are broken by the run's seed), so the L1 baseline goes through the same
    MACs search and prune settings as the gate-pruned networks: only the channel scores differ from PFS.
    """
    sums = [torch.zeros(int(w), dtype=torch.float64) for w in widths]
    for key, dims in cmap.items():
        weight = state_dict[key]
        if weight.ndim != 4:  # BN, gates, linear layers: not a filter
            continue
        for dim, group, positions in map_entries(dims):
            if dim != 0:  # a conv's inputs
                continue
            norms = weight.detach().double().abs().flatten(1).sum(1).cpu()
            norms = norms if positions is None else norms[positions]
            if norms.shape[0] != len(sums[group]):
                raise PfsError(f"{key} has {norms.shape[0]} filters but group {group} has width {len(sums[group])}")
            sums[group] += norms
    return [(s / s.max() if s.max() > 0 else s).float() for s in sums]


def kept_channels(scores: list[torch.Tensor], widths: list[int], units: list[int] | None = None) -> list[torch.Tensor]:
    """The ``widths[g]`` highest-scoring channels of each group ``g`` (ties: the lower index), as sorted indices; a
    group of ``units[g]`` > 1 (a library grouped conv) keeps its ``widths[g] / units[g]`` best whole units (mean
    score)."""
    kept = []
    for group, (s, w) in enumerate(zip(scores, widths, strict=True)):
        if not 1 <= w <= len(s):
            raise PfsError(f"width {w} of group {group} is outside 1..{len(s)}")
        unit = units[group] if units else 1
        ranked = s if unit == 1 else s.reshape(-1, unit).mean(1)
        order = torch.sort(ranked, descending=True, stable=True).indices  # stable: equal scores keep index order
        best = order[: w // unit].sort().values
        kept.append(best if unit == 1 else (best[:, None] * unit + torch.arange(unit)).flatten())
    return kept


def prune_state(state_dict: dict[str, torch.Tensor], cmap: ChannelMap,
                kept: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """The weights of the network keeping channels ``kept`` (per group): every mapped dim cut to them (in a dim
    several groups share, each group's kept positions and every position no group prunes), every other entry
    copied. The result loads into ``build_model(arch, widths=[len(k) for k in kept], ...)`` (strict)."""
    pruned = OrderedDict()
    pruned._metadata = getattr(state_dict, "_metadata", None)  # module versions (torchvision's MNASNet reads its own)
    for key, tensor in state_dict.items():
        tensor = tensor.detach()
        by_dim: dict[int, list[tuple[int, torch.Tensor | None]]] = {}
        for dim, group, positions in map_entries(cmap.get(key, {})):
            by_dim.setdefault(dim, []).append((group, positions))
        for dim, parts in by_dim.items():
            if len(parts) == 1 and parts[0][1] is None:
                index = kept[parts[0][0]]
            else:
                keep = torch.ones(tensor.shape[dim], dtype=torch.bool)
                for group, positions in parts:
                    keep[positions.flatten()] = False
                    keep[positions[kept[group]].flatten()] = True
                index = keep.nonzero().flatten()
            tensor = tensor.index_select(dim, index.to(tensor.device))
        pruned[key] = tensor.clone() if key not in cmap else tensor
    return pruned
