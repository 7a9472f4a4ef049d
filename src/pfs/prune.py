"""From learned gates and a MACs-reduction target to the inner widths of the pruned network.

Three pure steps, kept apart: scoring (gates -> one score per channel), ranking (a global keep order with a
per-group minimum), and the search (bisection on how many channels to keep until the MACs reduction, measured
against the unexpanded baseline network, meets the target).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch

from pfs.errors import PfsError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PruneConfig:
    min_width: int = 1  # never prune a group below this many channels
    tolerance: float = 1e-3  # allowed |achieved - target| / target

    def __post_init__(self) -> None:
        if self.min_width < 1:
            raise PfsError(f"prune.min_width must be >= 1, got {self.min_width}")
        if not 0 < self.tolerance < 1:
            raise PfsError(f"prune.tolerance must be in (0, 1), got {self.tolerance}")


@dataclass(frozen=True)
class PruneResult:
    widths: list[int]
    macs: int
    achieved_ratio: float
    kept_channels: int
    total_channels: int
    threshold: float  # score of the weakest channel kept by ranking (forced minimum channels aside)


def gate_scores(gates: list[torch.Tensor]) -> torch.Tensor:
    """One importance score per channel: the gate's magnitude, all groups concatenated."""
    return torch.cat([g.detach().float().abs().flatten() for g in gates])


def keep_order(gates: list[torch.Tensor], min_width: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Global channel order in which channels are kept, and each channel's group.

    The ``min_width`` strongest channels of every group come first (so no group ever drops below it), then all
    others by descending score; ties break by position (stable sort), so the order is deterministic.
    Returns (order, group_of_channel, number_of_forced_channels).
    """
    scores = gate_scores(gates)
    group_of = torch.cat([torch.full((g.numel(),), i, dtype=torch.long) for i, g in enumerate(gates)])
    ranked = torch.sort(scores, descending=True, stable=True).indices
    rank_in_group = torch.zeros_like(group_of)
    seen = torch.zeros(len(gates), dtype=torch.long)
    for idx in ranked.tolist():  # position of each channel within its group's ranking
        rank_in_group[idx] = seen[group_of[idx]]
        seen[group_of[idx]] += 1
    forced = rank_in_group[ranked] < min_width
    order = torch.cat([ranked[forced], ranked[~forced]])
    return order, group_of, int(forced.sum())


def widths_for_keep(order: torch.Tensor, group_of: torch.Tensor, k: int, num_groups: int) -> list[int]:
    """Per-group widths when the first ``k`` channels of ``order`` are kept."""
    return torch.bincount(group_of[order[:k]], minlength=num_groups).tolist()


def prune_to_macs(
    gates: list[torch.Tensor],
    ratio: float,
    base_macs: int,
    macs_of: Callable[[list[int]], int],
    cfg: PruneConfig,
) -> PruneResult:
    """Keep the globally highest-gated channels so that ``1 - macs/base_macs`` is as close to ``ratio`` as possible.

    ``macs_of(widths)`` gives the MACs of the pruned network; it is non-decreasing in every width, so the
    achieved reduction is monotone in the number of kept channels and bisection on that number finds the
    closest achievable value. Raises PfsError when the target cannot be met within ``cfg.tolerance``.
    """
    if not 0 < ratio < 1:
        raise PfsError(f"ratio must be in (0, 1), got {ratio}")
    sizes = [g.numel() for g in gates]
    if cfg.min_width > min(sizes):
        raise PfsError(f"prune.min_width={cfg.min_width} exceeds the narrowest group ({min(sizes)} channels)")
    order, group_of, forced = keep_order(gates, cfg.min_width)
    total = len(order)

    cache: dict[int, float] = {}

    def reduction(k: int) -> float:
        if k not in cache:
            cache[k] = 1.0 - macs_of(widths_for_keep(order, group_of, k, len(gates))) / base_macs
        return cache[k]

    if reduction(total) > ratio * (1 + cfg.tolerance):
        raise PfsError(
            f"ratio {ratio} cannot be reached: the unpruned gate network is already {reduction(total):.4f} smaller "
            "than the baseline (expansion below the standard width); raise the expansion or the ratio"
        )
    if reduction(forced) < ratio * (1 - cfg.tolerance):
        raise PfsError(
            f"ratio {ratio} cannot be reached: keeping only prune.min_width={cfg.min_width} channel(s) per group "
            f"reduces MACs by {reduction(forced):.4f} at most (the unprunable layers cost the rest); lower the ratio"
        )
    lo, hi = forced, total  # reduction(lo) >= reduction(hi): the boundary that crosses ratio lies in [lo, hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if reduction(mid) >= ratio:
            lo = mid
        else:
            hi = mid
    k = min((lo, hi), key=lambda c: (abs(reduction(c) - ratio), -c))
    achieved = reduction(k)
    log.info("bisection: %d MACs evaluations, keep %d/%d channels, reduction %.5f (target %s)",
             len(cache), k, total, achieved, ratio)
    if abs(achieved - ratio) / ratio > cfg.tolerance:
        raise PfsError(
            f"ratio {ratio} cannot be met within prune.tolerance={cfg.tolerance}: keeping {lo} channels gives "
            f"{reduction(lo):.5f} and keeping {hi} gives {reduction(hi):.5f}; one channel of this network changes "
            "MACs by more than the tolerance allows. Raise prune.tolerance or use a larger network"
        )
    widths = widths_for_keep(order, group_of, k, len(gates))
    ranked_kept = order[forced:k]
    scores = gate_scores(gates)
    threshold = float(scores[ranked_kept].min()) if len(ranked_kept) else float("nan")
    return PruneResult(widths, macs_of(widths), achieved, k, total, threshold)
