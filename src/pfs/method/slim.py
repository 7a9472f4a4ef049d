"""Network slimming (Liu et al., "Learning Efficient Convolutional Networks through Network Slimming", ICCV 2017),
the second classic baseline of "Rethinking the Value of Network Pruning": train the standard network with an L1
penalty on its BatchNorm scales (pfs.training.loop.add_bn_sparsity, rule train_sparse), then prune the channels whose
scales |gamma| are smallest over the whole network.

Two pure steps beside pfs.method.l1's channel map and surgery, which slimming shares: which BN weights each prunable
group
indexes (``group_batchnorms``) and the channel scores (``bn_scale_scores``). The widths come from the same MACs
search as every other method (pfs.stages.classic.stage_prune_slim).
"""

from __future__ import annotations

import torch
from torch import nn

from pfs.core.errors import PfsError
from pfs.method.l1 import ChannelMap, map_entries

RANKING = "bn_scale_global"  # what channels.yaml records: |gamma| ranked over the whole network, no per-layer scaling


def group_batchnorms(model: nn.Module, cmap: ChannelMap, groups: int) -> list[list[str | tuple[str, torch.Tensor]]]:
    """Per prunable group, the state_dict keys of the BatchNorm2d weights (scales) whose channels it indexes (a
    library network's BN that holds other channels too: (key, the positions of the group's channels in it)).

    A BN weight is a ``<name>.weight`` of one of ``model``'s nn.BatchNorm2d modules; its group is the one the
    channel map gives its dim 0. Several BNs can follow one group (a MobileNetV2 block's expansion and depthwise
    BNs, a MobileNetV1 pointwise BN and the next depthwise BN, a DenseNet layer's output in every later layer's
    BN). A group with none cannot be ranked by BN scale: refused in one line.
    """
    found: list[list[str | tuple[str, torch.Tensor]]] = [[] for _ in range(groups)]
    for name, module in model.named_modules():
        key = f"{name}.weight"
        if isinstance(module, nn.BatchNorm2d) and module.affine:
            for dim, group, positions in map_entries(cmap.get(key, {})):
                if dim == 0:
                    found[group].append(key if positions is None else (key, positions))
    missing = [g for g, keys in enumerate(found) if not keys]
    if missing:
        arch = getattr(model, "arch", "") or type(model).__name__
        raise PfsError(f"prunable groups {missing} of {arch} index no BatchNorm2d weight: network slimming ranks "
                       "channels by their BN scale and cannot prune them; use grid.pretrained_baseline instead")
    return found


def bn_scale_scores(state_dict: dict[str, torch.Tensor],
                    batchnorms: list[list[str | tuple[str, torch.Tensor]]]) -> list[torch.Tensor]:
    """Per group, each channel's |gamma| (averaged over the group's BNs), divided by the largest over all groups.

    Global, not per layer: the sparsity training's L1 penalty pushes every scale toward zero at the same rate, so
    scales of different layers are comparable, and slimming prunes by one global threshold on them (Liu et al.,
    Sec. 3; the rethinking code's vggprune.py sorts every BN weight of the network together). A layer whose scales
    are all small thus loses its channels first. Dividing by the global largest only puts the scores in [0, 1],
    what pfs.method.prune.prune_to_macs ranks, and changes no order. Where one group indexes several BNs their |gamma|
    are averaged: one score per channel on the same scale as a group of one BN (a sum would rank the channels of
    MobileNet's two-BN groups about twice as high as the rest, whatever their scales).
    """
    sums = []
    for group, entries in enumerate(batchnorms):
        scales = []
        for entry in entries:
            key, positions = (entry, None) if isinstance(entry, str) else entry
            gamma = state_dict[key].detach().double().abs().cpu()
            scales.append(gamma if positions is None else gamma[positions.flatten()])
        sizes = {int(s.numel()) for s in scales}
        if len(sizes) != 1:
            keys = [e if isinstance(e, str) else e[0] for e in entries]
            raise PfsError(f"the BatchNorm weights {keys} of group {group} differ in size ({sorted(sizes)})")
        sums.append(sum(scales) / len(scales))
    top = max(float(s.max()) for s in sums)
    return [(s / top if top > 0 else s).float() for s in sums]
