"""From learned gates and a MACs-reduction target to the inner widths of the pruned network.

Three pure steps, kept apart: scoring (gates -> one score per channel), ranking (a global keep order with a
per-group minimum), and the search (bisection on how many channels to keep until the MACs reduction, measured
against the unexpanded baseline network, meets the target).

One channel of a small network can move MACs by more than the tolerance (a ResNet-56 first-stage channel is
~0.3% of its MACs). When neither side of the global threshold is within tolerance, a boundary fill drops a
few more channels just above the threshold, weakest first, skipping any whose removal would overshoot; the
number of dropped channels that outscore a kept one is reported (``out_of_order``, in channels.yaml).

Clamped gates tie: many are exactly 0 (and 1), so the threshold often falls inside a block of equal scores.
Those ties are broken by permutations seeded from the run's seed, not by position (a stable sort would keep the
earliest layers' channels every time): one draws each group's forced minimum-width channels among its tied
strongest ones, another orders the remaining channels, so every tied channel beyond the forced ones is kept as
often whatever its layer. How many kept channels the tie decided is reported (``PruneResult``).
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
    max_fill: int = 64  # MACs evaluations allowed for the boundary fill (0: pure global threshold)
    round_to: int = 1  # round every pruned width up to a multiple of this (8: tensor-core friendly), capped at full

    def __post_init__(self) -> None:
        if self.min_width < 1:
            raise PfsError(f"prune.min_width must be >= 1, got {self.min_width}")
        if not 0 < self.tolerance < 1:
            raise PfsError(f"prune.tolerance must be in (0, 1), got {self.tolerance}")
        if self.max_fill < 0:
            raise PfsError(f"prune.max_fill must be >= 0, got {self.max_fill}")
        if self.round_to < 1:
            raise PfsError(f"prune.round_to must be >= 1 (1: no rounding), got {self.round_to}")


@dataclass(frozen=True)
class PruneResult:
    widths: list[int]
    macs: int
    achieved_ratio: float
    kept_channels: int
    total_channels: int
    threshold: float  # score of the weakest channel kept by ranking (forced minimum channels aside)
    out_of_order: int = 0  # dropped channels scoring above the threshold (boundary fill; see prune_to_macs)
    tied_at_threshold: int = 0  # ranked channels (forced ones aside) scoring exactly the threshold, kept or not
    kept_by_tie: int = 0  # of those, the kept ones when the tie split them (0: all kept); see tie_counts


def gate_scores(gates: list[torch.Tensor]) -> torch.Tensor:
    """One importance score per channel: the gate's magnitude, all groups concatenated."""
    return torch.cat([g.detach().float().abs().flatten() for g in gates])


def _by_score(channels: torch.Tensor, scores: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``channels`` by descending score, exactly equal scores in a random order drawn from ``generator``."""
    shuffled = channels[torch.randperm(len(channels), generator=generator)]
    return shuffled[torch.sort(scores[shuffled], descending=True, stable=True).indices]  # stable: ties stay shuffled


def keep_order(gates: list[torch.Tensor], min_width: int, *, seed: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Global channel order in which channels are kept, and each channel's group.

    The ``min_width`` strongest channels of every group come first (so no group ever drops below it), then all
    others by descending score. Channels of exactly equal score are ordered by permutations seeded from ``seed``,
    the run's seed: no layer wins ties for its position, the same seed gives the same order, and distinct scores
    keep their order whatever the seed. Two independent permutations: the first picks each group's forced
    channels among its tied strongest ones, the second orders the other channels. With one permutation for both,
    a group's forced channel would be the first of its tied channels in that permutation, leaving its other tied
    channels behind the rest (a narrow group with few tied channels more so): its tied channels would be kept less
    often than a wide group's.
    Returns (order, group_of_channel, number_of_forced_channels).
    """
    scores = gate_scores(gates)
    group_of = torch.cat([torch.full((g.numel(),), i, dtype=torch.long) for i, g in enumerate(gates)])
    generator = torch.Generator().manual_seed(seed)
    ranked = _by_score(torch.arange(len(scores)), scores, generator)
    groups = group_of[ranked]
    by_group = torch.sort(groups, stable=True).indices  # positions in ranked, group by group, each in ranked order
    counts = torch.bincount(groups, minlength=len(gates))
    rank_in_group = torch.empty_like(groups)  # each ranked channel's position within its group's ranking
    rank_in_group[by_group] = torch.arange(len(groups)) - (torch.cumsum(counts, 0) - counts)[groups[by_group]]
    forced = rank_in_group < min_width
    order = torch.cat([ranked[forced], _by_score(ranked[~forced], scores, generator)])
    return order, group_of, int(forced.sum())


def widths_of(kept, group_of: torch.Tensor, num_groups: int) -> list[int]:
    """Per-group widths when the channels ``kept`` (global indices) are kept."""
    return torch.bincount(group_of[kept], minlength=num_groups).tolist()


def round_widths(widths: list[int], multiple: int, full: list[int]) -> list[int]:
    """Each width rounded up to a multiple of ``multiple``, but never above its group's full width."""
    return [min(f, -(-w // multiple) * multiple) for w, f in zip(widths, full, strict=True)]


def widths_for_keep(order: torch.Tensor, group_of: torch.Tensor, k: int, num_groups: int) -> list[int]:
    """Per-group widths when the first ``k`` channels of ``order`` are kept."""
    return widths_of(order[:k], group_of, num_groups)


def tie_counts(scores: torch.Tensor, kept_ranked: torch.Tensor, ranked: torch.Tensor) -> tuple[float, int, int]:
    """(threshold, tied_at_threshold, kept_by_tie) of a final kept set.

    ``ranked``: the channels that compete in the global ranking (all but each group's forced ``min_width``);
    ``kept_ranked``: those of them that are kept (after any boundary fill). The threshold is the score of the
    weakest kept one; ``tied_at_threshold`` counts the ranked channels with exactly that score, kept or dropped;
    ``kept_by_tie`` counts the kept ones among them when some of them were dropped (the seeded permutation, or
    the boundary fill, chose between channels the gates do not separate), and is 0 when all of them were kept.
    """
    if len(kept_ranked) == 0:
        return float("nan"), 0, 0
    threshold = scores[kept_ranked].min()
    tied = int((scores[ranked] == threshold).sum())
    kept_tied = int((scores[kept_ranked] == threshold).sum())
    return float(threshold), tied, kept_tied if kept_tied < tied else 0


def _fill_to_tolerance(order, group_of, hi: int, forced: int, reduction_of, ratio: float, tol: float,
                       max_tries: int) -> tuple[torch.Tensor, float, int] | None:
    """Close the gap the last ranked channel is too coarse for: from the top-``hi`` set (just short of the
    target), drop further kept channels, weakest first, whenever dropping one does not overshoot the tolerance.

    Returns (kept channel indices, reduction, channels dropped out of rank order), or None if not met.
    """
    kept = order[:hi].tolist()
    upper = ratio * (1 + tol)
    current, dropped = reduction_of(kept), 0
    for j in range(hi - 2, forced - 1, -1):  # order[hi - 1] alone overshoots (that is the top-(hi-1) set)
        if max_tries == 0:
            break
        trial = kept[:j] + kept[j + 1:]
        value, max_tries = reduction_of(trial), max_tries - 1
        if value <= upper:
            kept, current, dropped = trial, value, dropped + 1
            if abs(current - ratio) <= ratio * tol:
                return torch.tensor(kept), current, dropped
    return None


class _Reduction:
    """The MACs reduction against ``base_macs`` of a set of kept channels (global indices), with widths rounded up to
    ``round_to`` (rounding up keeps the MACs monotone in the channels kept). ``top(k)``, for the first ``k``
    channels of ``order``, is cached: ``evaluations`` counts its distinct ``k``."""

    def __init__(self, order: torch.Tensor, group_of: torch.Tensor, sizes: list[int], round_to: int, base_macs: int,
                 macs_of: Callable[[list[int]], int]) -> None:
        self.order, self.group_of, self.sizes, self.round_to = order, group_of, sizes, round_to
        self.base_macs, self.macs_of = base_macs, macs_of
        self._cache: dict[int, float] = {}

    def widths(self, kept) -> list[int]:
        widths = widths_of(kept, self.group_of, len(self.sizes))
        return round_widths(widths, self.round_to, self.sizes) if self.round_to > 1 else widths

    def __call__(self, kept) -> float:
        return 1.0 - self.macs_of(self.widths(kept)) / self.base_macs

    def top(self, k: int) -> float:
        if k not in self._cache:
            self._cache[k] = self(self.order[:k])
        return self._cache[k]

    @property
    def evaluations(self) -> int:
        return len(self._cache)


def _check_reachable(reduction: _Reduction, forced: int, ratio: float, cfg: PruneConfig) -> None:
    """Refuse a ratio outside what keeping every channel and keeping only the forced ones span (within tolerance)."""
    total = len(reduction.order)
    if reduction.top(total) > ratio * (1 + cfg.tolerance):
        raise PfsError(
            f"ratio {ratio} cannot be reached: the unpruned gate network is already {reduction.top(total):.4f} "
            "smaller than the baseline (expansion below the standard width); raise the expansion or the ratio"
        )
    if reduction.top(forced) < ratio * (1 - cfg.tolerance):
        raise PfsError(
            f"ratio {ratio} cannot be reached: keeping only prune.min_width={cfg.min_width} channel(s) per group "
            f"reduces MACs by {reduction.top(forced):.4f} at most (the unprunable layers cost the rest); "
            "lower the ratio"
        )


def _bisect_keep(reduction: _Reduction, forced: int, ratio: float) -> tuple[int, int, int]:
    """(lo, hi, k): the adjacent numbers of kept channels whose reductions bracket ``ratio``, and the closer one
    (the larger on a tie). The reduction is non-increasing in the number kept."""
    lo, hi = forced, len(reduction.order)  # top(lo) >= top(hi): the boundary that crosses ratio lies in [lo, hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if reduction.top(mid) >= ratio:
            lo = mid
        else:
            hi = mid
    return lo, hi, min((lo, hi), key=lambda c: (abs(reduction.top(c) - ratio), -c))


def _unmet_tolerance(ratio: float, cfg: PruneConfig, reduction: _Reduction, lo: int, hi: int) -> PfsError:
    """The error when neither neighbour of the target nor the boundary fill lands within the tolerance."""
    return PfsError(
        f"ratio {ratio} cannot be met within prune.tolerance={cfg.tolerance}: keeping {lo} channels gives "
        f"{reduction.top(lo):.5f} and keeping {hi} gives {reduction.top(hi):.5f}, and dropping up to "
        f"prune.max_fill={cfg.max_fill} more channels near the threshold did not close the gap; one channel of "
        "this network changes MACs by more than the tolerance allows. Raise prune.tolerance or prune.max_fill"
        + (f" (or lower prune.round_to={cfg.round_to}: it moves widths in steps of that many)"
           if cfg.round_to > 1 else "")
    )


def _describe(gates: list[torch.Tensor], order: torch.Tensor, forced: int, kept, achieved: float, widths: list[int],
              macs_of: Callable[[list[int]], int]) -> PruneResult:
    """The result for the final kept set: its widths' MACs, the threshold, the tie counts and ``out_of_order``."""
    # the fill drops only ranked channels, so the forced ones stay the first ``forced`` of ``kept``
    scores, ranked = gate_scores(gates), order[forced:]
    threshold, tied, kept_by_tie = tie_counts(scores, kept[forced:], ranked)
    is_kept = torch.zeros(len(order), dtype=torch.bool)
    is_kept[kept] = True
    out_of_order = int((scores[ranked[~is_kept[ranked]]] > threshold).sum())
    return PruneResult(widths, macs_of(widths), achieved, sum(widths), len(order), threshold, out_of_order, tied,
                       kept_by_tie)


def prune_to_macs(
    gates: list[torch.Tensor],
    ratio: float,
    base_macs: int,
    macs_of: Callable[[list[int]], int],
    cfg: PruneConfig,
    *,
    seed: int,
) -> PruneResult:
    """Keep the globally highest-gated channels so that ``1 - macs/base_macs`` is as close to ``ratio`` as possible.

    ``macs_of(widths)`` gives the MACs of the pruned network; it is non-decreasing in every width, so the
    achieved reduction is monotone in the number of kept channels and bisection on that number finds the
    closest achievable value; the boundary fill (module docstring) closes a gap the threshold alone cannot.
    ``seed`` (the run's seed) breaks ties between equal scores (keep_order). The threshold, the tie counts
    (tie_counts) and ``out_of_order`` describe the final kept set, before ``cfg.round_to`` rounds widths up:
    ``out_of_order`` counts the dropped channels that score strictly above the threshold (0 without a fill); a
    channel the fill drops at the threshold score outscores no kept one, so it counts as tied and not kept.
    Raises PfsError when the target cannot be met within ``cfg.tolerance``.
    """
    if not 0 < ratio < 1:
        raise PfsError(f"ratio must be in (0, 1), got {ratio}")
    sizes = [g.numel() for g in gates]
    if cfg.min_width > min(sizes):
        raise PfsError(f"prune.min_width={cfg.min_width} exceeds the narrowest group ({min(sizes)} channels); "
                       f"set prune.min_width to at most {min(sizes)}")
    order, group_of, forced = keep_order(gates, cfg.min_width, seed=seed)
    reduction = _Reduction(order, group_of, sizes, cfg.round_to, base_macs, macs_of)
    _check_reachable(reduction, forced, ratio, cfg)
    lo, hi, k = _bisect_keep(reduction, forced, ratio)
    kept, achieved = order[:k], reduction.top(k)
    log.info("bisection: %d MACs evaluations, keep %d/%d channels, reduction %.5f (target %s)",
             reduction.evaluations, k, len(order), achieved, ratio)
    if abs(achieved - ratio) / ratio > cfg.tolerance and cfg.max_fill > 0:
        filled = _fill_to_tolerance(order, group_of, hi, forced, reduction, ratio, cfg.tolerance, cfg.max_fill)
        if filled is not None:
            kept, achieved, dropped = filled
            log.info("boundary fill: dropped %d more channel(s) near the threshold, reduction %.5f", dropped, achieved)
    if abs(achieved - ratio) / ratio > cfg.tolerance:
        raise _unmet_tolerance(ratio, cfg, reduction, lo, hi)
    return _describe(gates, order, forced, kept, achieved, reduction.widths(kept), macs_of)


def uniform_to_macs(widths: list[int], ratio: float, base_macs: int, macs_of: Callable[[list[int]], int],
                    cfg: PruneConfig, steps: int = 40) -> PruneResult:
    """The uniform-width baseline: every group at the same fraction ``f`` of ``widths`` (rounded, at least
    ``cfg.min_width``, and rounded up to ``cfg.round_to``), with ``f`` bisected until the MACs reduction against
    ``base_macs`` is as close to ``ratio`` as possible. When one factor cannot land within ``cfg.tolerance``
    (every group moves at once), groups are widened one step at a time, widest first, from the factor just past
    the target, until it does: widths then differ from the exact fraction by a step at most per pass.

    Raises PfsError when the closest reachable reduction misses ``ratio`` by more than ``cfg.tolerance``.
    """
    if not 0 < ratio < 1:
        raise PfsError(f"ratio must be in (0, 1), got {ratio}")

    def at(f: float) -> list[int]:
        scaled = [max(cfg.min_width, min(w, round(w * f))) for w in widths]
        return round_widths(scaled, cfg.round_to, widths) if cfg.round_to > 1 else scaled

    def reduction(f: float) -> float:
        return 1.0 - macs_of(at(f)) / base_macs

    lo, hi = 0.0, 1.0  # reduction(lo) >= reduction(hi); bisect for the crossing of ratio
    for _ in range(steps):
        mid = (lo + hi) / 2
        if reduction(mid) >= ratio:
            lo = mid
        else:
            hi = mid
    f = min((lo, hi), key=lambda c: abs(reduction(c) - ratio))
    result, achieved = at(f), reduction(f)
    if abs(achieved - ratio) / ratio > cfg.tolerance:  # one factor moves every group at once: widen one at a time
        result, achieved = at(lo), reduction(lo)
        step = cfg.round_to
        for _ in range(4):  # a few passes over the groups, widest first, each by one step
            for i in sorted(range(len(widths)), key=lambda j: -widths[j]):
                if abs(achieved - ratio) / ratio <= cfg.tolerance:
                    break
                trial = result.copy()
                trial[i] = min(widths[i], trial[i] + step)
                value = 1.0 - macs_of(trial) / base_macs
                if trial[i] != result[i] and value >= ratio * (1 - cfg.tolerance):
                    result, achieved = trial, value
    if abs(achieved - ratio) / ratio > cfg.tolerance:
        raise PfsError(f"the uniform baseline cannot reach ratio {ratio} within prune.tolerance={cfg.tolerance}: "
                       f"the closest uniform width factor {f:.4f} gives {achieved:.5f}; raise prune.tolerance")
    return PruneResult(result, macs_of(result), achieved, sum(result), sum(widths), float(f))
