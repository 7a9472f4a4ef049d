"""From learned gates and a MACs-reduction target to the inner widths of the pruned network.

Three pure steps, kept apart: scoring (gates -> one score per channel), ranking (one global order of all channels:
the first k of it are kept, each group topped up to a minimum width), and the search (bisection on k until the MACs
reduction, measured against the unexpanded baseline network, meets the target).

One channel of a small network can move MACs by more than the tolerance (a ResNet-56 first-stage channel is
~0.3% of its MACs). When neither side of the global threshold is within tolerance, a boundary fill drops a
few more channels just above the threshold, weakest first, skipping any whose removal would overshoot; the
number of dropped channels that outscore a kept one is reported (``out_of_order``, in channels.yaml).

Clamped gates tie: many are exactly 0 (and 1), so the threshold often falls inside a block of equal scores.
Those ties are broken by one permutation seeded from the run's seed, not by position (a stable sort would keep the
earliest layers' channels every time), so the kept channels of a tie are a uniform random subset of it whatever
their layers. The minimum width is a top-up, not a reservation: only a group left with fewer than ``min_width``
channels in the top k gets its best remaining ones added. (Reserving every group's best channels ahead of the
ranking hands a narrow layer its tied best channel on top of its share of the rest: with ties at 1 it favours
narrow layers.) How many kept channels the tie decided is reported (``PruneResult``).

``max_layer_ratio`` caps what one group may lose (Torch-Pruning's ``max_pruning_ratio``): it raises a group's
minimum width to ceil((1 - max_layer_ratio) x its width), topped up the same way, so scores normalised per layer
(L1) or a short training cannot cut a whole layer down to one channel. The capped groups free fewer MACs, so the
search moves the threshold and still meets the ratio. 1 (the default) is no cap, as in the paper's code.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch

from pfs.core.errors import PfsError
from pfs.core.reach import least_width

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PruneConfig:
    min_width: int = 1  # never prune a group below this many channels
    tolerance: float = 1e-3  # allowed |achieved - target| / target
    max_fill: int = 64  # MACs evaluations allowed for the boundary fill (0: pure global threshold)
    round_to: int = 1  # round every pruned width up to a multiple of this (8: tensor-core friendly), capped at full
    max_layer_ratio: float = 1.0  # largest fraction of a group's channels pruned (1: no cap, as the paper)

    def __post_init__(self) -> None:
        if self.min_width < 1:
            raise PfsError(f"prune.min_width must be >= 1, got {self.min_width}")
        if not 0 < self.tolerance < 1:
            raise PfsError(f"prune.tolerance must be in (0, 1), got {self.tolerance}")
        if self.max_fill < 0:
            raise PfsError(f"prune.max_fill must be >= 0, got {self.max_fill}")
        if self.round_to < 1:
            raise PfsError(f"prune.round_to must be >= 1 (1: no rounding), got {self.round_to}")
        if not 0 < self.max_layer_ratio <= 1:
            raise PfsError(f"prune.max_layer_ratio must be in (0, 1] (1: no cap), got {self.max_layer_ratio}")


@dataclass(frozen=True)
class PruneResult:
    widths: list[int]
    macs: int
    achieved_ratio: float
    kept_channels: int
    total_channels: int
    threshold: float  # score of the weakest channel kept by ranking (channels topped up to min_width aside)
    out_of_order: int = 0  # dropped channels scoring above the threshold (boundary fill; see prune_to_macs)
    tied_at_threshold: int = 0  # ranked channels (top-ups aside) scoring exactly the threshold, kept or not
    kept_by_tie: int = 0  # of those, the kept ones when the tie split them (0: all kept); see tie_counts


def min_widths(sizes: list[int], cfg: PruneConfig) -> list[int]:
    """Each group's least width: ``cfg.min_width``, raised to ceil((1 - cfg.max_layer_ratio) x its size) by the cap,
    at most the group's size (pfs.core.reach.least_width, the rule the DAG-time ratio check uses too)."""
    return [least_width(s, cfg.min_width, cfg.max_layer_ratio) for s in sizes]


def gate_scores(gates: list[torch.Tensor]) -> torch.Tensor:
    """One importance score per channel: the gate's magnitude, all groups concatenated."""
    return torch.cat([g.detach().float().abs().flatten() for g in gates])


def keep_order(gates: list[torch.Tensor], *, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All channels in the order they are kept, and each channel's group.

    Descending score; channels of exactly equal score in the order of one permutation seeded from ``seed``, the
    run's seed: the first k channels hold a uniform random subset of any block of tied channels they split, whatever
    the layers, the same seed gives the same order, and distinct scores keep their order whatever the seed. The
    channels kept for k are the first k, each group topped up to the minimum width (top_up).
    Returns (order, group_of_channel).
    """
    scores = gate_scores(gates)
    group_of = torch.cat([torch.full((g.numel(),), i, dtype=torch.long) for i, g in enumerate(gates)])
    perm = torch.randperm(len(scores), generator=torch.Generator().manual_seed(seed))
    return perm[torch.sort(scores[perm], descending=True, stable=True).indices], group_of  # stable: ties keep perm's


def _rank_in_group(channels: torch.Tensor, group_of: torch.Tensor, num_groups: int) -> torch.Tensor:
    """Each of ``channels``' position among the channels of its own group in ``channels`` (0: the first)."""
    groups = group_of[channels]
    by_group = torch.sort(groups, stable=True).indices  # positions in channels, group by group, each in order
    counts = torch.bincount(groups, minlength=num_groups)
    rank = torch.empty_like(groups)
    rank[by_group] = torch.arange(len(groups)) - (torch.cumsum(counts, 0) - counts)[groups[by_group]]
    return rank


def top_up(order: torch.Tensor, group_of: torch.Tensor, k: int, min_width: int | torch.Tensor,
           num_groups: int) -> torch.Tensor:
    """The channels added to the first ``k`` of ``order`` so that every group keeps ``min_width`` of them (at most
    all of its own; one int, or one per group: min_widths): for a group with fewer among the first ``k``, its best
    remaining ones, the next in ``order``."""
    short = (torch.as_tensor(min_width) - torch.bincount(group_of[order[:k]], minlength=num_groups)).clamp(min=0)
    rest = order[k:]
    return rest[_rank_in_group(rest, group_of, num_groups) < short[group_of[rest]]]


def widths_of(kept, group_of: torch.Tensor, num_groups: int) -> list[int]:
    """Per-group widths when the channels ``kept`` (global indices) are kept."""
    return torch.bincount(group_of[kept], minlength=num_groups).tolist()


def round_widths(widths: list[int], multiple: int, full: list[int]) -> list[int]:
    """Each width rounded up to a multiple of ``multiple``, but never above its group's full width."""
    return [min(f, -(-w // multiple) * multiple) for w, f in zip(widths, full, strict=True)]


def widths_for_keep(order: torch.Tensor, group_of: torch.Tensor, k: int, num_groups: int,
                    min_width: int | torch.Tensor) -> list[int]:
    """Per-group widths when the first ``k`` channels of ``order`` are kept, each group topped up to ``min_width``
    (top_up; one int or one per group; at most its full width). Non-decreasing in ``k``: a step adds a channel or
    one already topped up."""
    floor = torch.minimum(torch.bincount(group_of, minlength=num_groups), torch.as_tensor(min_width))
    return torch.bincount(group_of[order[:k]], minlength=num_groups).maximum(floor).tolist()


def _kept_by_min_width(order: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
    """The channels of the top-k-and-top-up set ``kept`` that a dropped channel precedes in ``order``: the top-ups,
    kept for their group's minimum width, not by their rank (for the largest k that gives this set)."""
    in_order = torch.zeros(len(order), dtype=torch.bool)
    in_order[kept] = True
    in_order = in_order[order]
    return order[in_order & (torch.cumsum(~in_order, 0) > 0)]


def tie_counts(scores: torch.Tensor, kept_ranked: torch.Tensor, ranked: torch.Tensor) -> tuple[float, int, int]:
    """(threshold, tied_at_threshold, kept_by_tie) of a final kept set.

    ``ranked``: the channels that compete in the global ranking (all but the kept set's top-ups, which are kept
    only to hold their group's ``min_width``: a group's best channels that made the ranking compete like any
    other); ``kept_ranked``: those of them that are kept (after any boundary fill). The threshold is the score of
    the weakest kept one; ``tied_at_threshold`` counts the ranked channels with exactly that score, kept or dropped;
    ``kept_by_tie`` counts the kept ones among them when some of them were dropped (the seeded permutation, or
    the boundary fill, chose between channels the gates do not separate), and is 0 when all of them were kept.
    """
    if len(kept_ranked) == 0:
        return float("nan"), 0, 0
    threshold = scores[kept_ranked].min()
    tied = int((scores[ranked] == threshold).sum())
    kept_tied = int((scores[kept_ranked] == threshold).sum())
    return float(threshold), tied, kept_tied if kept_tied < tied else 0


class _Reduction:
    """The MACs reduction against ``base_macs`` of a set of kept channels (global indices), with widths rounded up to
    ``round_to`` (rounding up keeps the MACs monotone in the channels kept). ``top(k)``, for the first ``k``
    channels of ``order`` topped up to ``min_width``, is cached: ``evaluations`` counts its distinct ``k``.
    ``min_width``: one per group (min_widths). ``best``: whether each position of ``order`` holds one of its group's
    ``min_width`` best channels."""

    def __init__(self, order: torch.Tensor, group_of: torch.Tensor, sizes: list[int], min_width: list[int],
                 round_to: int, base_macs: int, macs_of: Callable[[list[int]], int]) -> None:
        self.order, self.group_of, self.sizes, self.min_width = order, group_of, sizes, torch.tensor(min_width)
        self.round_to, self.base_macs, self.macs_of = round_to, base_macs, macs_of
        self.best = _rank_in_group(order, group_of, len(sizes)) < self.min_width[group_of[order]]
        self._cache: dict[int, float] = {}

    def rounded(self, widths: list[int]) -> list[int]:
        return round_widths(widths, self.round_to, self.sizes) if self.round_to > 1 else widths

    def widths(self, kept) -> list[int]:
        return self.rounded(widths_of(kept, self.group_of, len(self.sizes)))

    def __call__(self, kept) -> float:
        return 1.0 - self.macs_of(self.widths(kept)) / self.base_macs

    def top_up(self, k: int) -> torch.Tensor:
        return top_up(self.order, self.group_of, k, self.min_width, len(self.sizes))

    def kept(self, k: int) -> torch.Tensor:
        """The channels kept for ``k``: the first ``k`` of ``order`` and the top-ups."""
        return torch.cat([self.order[:k], self.top_up(k)])

    def top(self, k: int) -> float:
        if k not in self._cache:
            widths = widths_for_keep(self.order, self.group_of, k, len(self.sizes), self.min_width)
            self._cache[k] = 1.0 - self.macs_of(self.rounded(widths)) / self.base_macs
        return self._cache[k]

    @property
    def evaluations(self) -> int:
        return len(self._cache)


def _fill_to_tolerance(reduction: _Reduction, hi: int, ratio: float, tol: float,
                       max_tries: int) -> tuple[torch.Tensor, float, int] | None:
    """Close the gap the last ranked channel is too coarse for: from the set kept for ``hi`` (just short of the
    target), drop further channels of the first ``hi``, weakest first, whenever dropping one does not overshoot the
    tolerance. A group's ``min_width`` best channels (its first in the order; the cap's, min_widths, included) are
    never dropped, top-ups included.

    Returns (kept channel indices, reduction, channels dropped out of rank order), or None if not met.
    """
    protected = reduction.best[:hi].tolist()
    topped, kept = reduction.top_up(hi).tolist(), reduction.order[:hi].tolist()
    upper, dropped = ratio * (1 + tol), 0
    for j in range(hi - 2, -1, -1):  # order[hi - 1] alone overshoots (that is the set kept for hi - 1)
        if protected[j]:
            continue
        if max_tries == 0:
            break
        trial = kept[:j] + kept[j + 1:]
        value, max_tries = reduction(trial + topped), max_tries - 1
        if value <= upper:
            kept, dropped = trial, dropped + 1
            if abs(value - ratio) <= ratio * tol:
                return torch.tensor(kept + topped), value, dropped
    return None


def _check_reachable(reduction: _Reduction, ratio: float, cfg: PruneConfig) -> None:
    """Refuse a ratio outside what keeping every channel and keeping only the minimum widths span (within
    tolerance)."""
    total = len(reduction.order)
    if reduction.top(total) > ratio * (1 + cfg.tolerance):
        raise PfsError(
            f"ratio {ratio} cannot be reached: the unpruned gate network is already {reduction.top(total):.4f} "
            "smaller than the baseline (expansion below the standard width); raise the expansion or the ratio"
        )
    if reduction.top(0) < ratio * (1 - cfg.tolerance):
        raise PfsError(
            f"ratio {ratio} cannot be reached: keeping only prune.min_width={cfg.min_width} channel(s) per group"
            + (f" and prune.max_layer_ratio={cfg.max_layer_ratio} of each group's channels at most pruned (widths "
               f"{reduction.min_width.tolist()})" if cfg.max_layer_ratio < 1 else "")
            + f" reduces MACs by {reduction.top(0):.4f} at most (the unprunable layers cost the rest); lower the ratio"
            + (" or raise prune.max_layer_ratio" if cfg.max_layer_ratio < 1 else "")
        )


def _bisect_keep(reduction: _Reduction, ratio: float) -> tuple[int, int, int]:
    """(lo, hi, k): adjacent k (first k channels of the order, topped up) whose reductions bracket ``ratio``, and the
    closer one (the larger on a tie). The reduction is non-increasing in k. The search starts from the largest k
    that keeps only the minimum widths, so that ``hi`` keeps one channel more than ``lo`` even when ``ratio`` lies
    below what the minimum widths reduce (within tolerance: _check_reachable)."""
    lo, hi = int(reduction.best.long().cumprod(0).sum()), len(reduction.order)  # the boundary lies in [lo, hi]
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
        f"ratio {ratio} cannot be met within prune.tolerance={cfg.tolerance}: keeping {len(reduction.kept(lo))} "
        f"channels gives {reduction.top(lo):.5f} and keeping {len(reduction.kept(hi))} gives {reduction.top(hi):.5f}, "
        f"and dropping up to prune.max_fill={cfg.max_fill} more channels near the threshold did not close the gap; one "
        "channel of this network changes MACs by more than the tolerance allows. Raise prune.tolerance or "
        "prune.max_fill" + (f" (or lower prune.round_to={cfg.round_to}: it moves widths in steps of that many)"
                            if cfg.round_to > 1 else "")
    )


def _describe(gates: list[torch.Tensor], kept: torch.Tensor, topped: torch.Tensor, achieved: float,
              widths: list[int], macs_of: Callable[[list[int]], int]) -> PruneResult:
    """The result for the final kept set (``topped``: its top-ups): its widths' MACs, the threshold, the tie counts
    and ``out_of_order``."""
    scores = gate_scores(gates)
    is_kept, is_topped = torch.zeros(len(scores), dtype=torch.bool), torch.zeros(len(scores), dtype=torch.bool)
    is_kept[kept], is_topped[topped] = True, True
    ranked = (~is_topped).nonzero().flatten()
    threshold, tied, kept_by_tie = tie_counts(scores, kept[~is_topped[kept]], ranked)
    out_of_order = int((scores[ranked[~is_kept[ranked]]] > threshold).sum())
    return PruneResult(widths, macs_of(widths), achieved, sum(widths), len(scores), threshold, out_of_order, tied,
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
    achieved reduction is monotone in k, the number of channels kept by rank before the ``cfg.min_width`` top-up
    (widths_for_keep), and bisection on k finds the closest achievable value; the boundary fill (module docstring)
    closes a gap the threshold alone cannot. ``seed`` (the run's seed) breaks ties between equal scores
    (keep_order). The threshold, the tie counts (tie_counts) and ``out_of_order`` describe the final kept set,
    before ``cfg.round_to`` rounds widths up: ``out_of_order`` counts the dropped channels that score strictly
    above the threshold (0 without a fill); a channel the fill drops at the threshold score outscores no kept one,
    so it counts as tied and not kept.
    Raises PfsError when the target cannot be met within ``cfg.tolerance``.
    """
    if not 0 < ratio < 1:
        raise PfsError(f"ratio must be in (0, 1), got {ratio}")
    sizes = [g.numel() for g in gates]
    if cfg.min_width > min(sizes):
        raise PfsError(f"prune.min_width={cfg.min_width} exceeds the narrowest group ({min(sizes)} channels); "
                       f"set prune.min_width to at most {min(sizes)}")
    order, group_of = keep_order(gates, seed=seed)
    reduction = _Reduction(order, group_of, sizes, min_widths(sizes, cfg), cfg.round_to, base_macs, macs_of)
    _check_reachable(reduction, ratio, cfg)
    lo, hi, k = _bisect_keep(reduction, ratio)
    kept, achieved = reduction.kept(k), reduction.top(k)
    topped = _kept_by_min_width(order, kept)
    log.info("bisection: %d MACs evaluations, keep %d/%d channels, reduction %.5f (target %s)",
             reduction.evaluations, len(kept), len(order), achieved, ratio)
    if abs(achieved - ratio) / ratio > cfg.tolerance and cfg.max_fill > 0:
        filled = _fill_to_tolerance(reduction, hi, ratio, cfg.tolerance, cfg.max_fill)
        if filled is not None:
            kept, achieved, dropped = filled
            topped = _kept_by_min_width(order, reduction.kept(hi))  # the fill keeps the top-ups it started from
            log.info("boundary fill: dropped %d more channel(s) near the threshold, reduction %.5f", dropped, achieved)
    if abs(achieved - ratio) / ratio > cfg.tolerance:
        raise _unmet_tolerance(ratio, cfg, reduction, lo, hi)
    capped = sorted({g for g in group_of[topped].tolist() if reduction.min_width[g] > cfg.min_width})
    if capped:
        log.info("prune.max_layer_ratio=%s held group(s) %s at their cap (the ranking kept fewer)", cfg.max_layer_ratio,
                 capped)
    return _describe(gates, kept, topped, achieved, reduction.widths(kept), macs_of)


def uniform_to_macs(widths: list[int], ratio: float, base_macs: int, macs_of: Callable[[list[int]], int],
                    cfg: PruneConfig, steps: int = 40) -> PruneResult:
    """The uniform-width baseline: every group at the same fraction ``f`` of ``widths`` (rounded, at least
    ``cfg.min_width`` and what ``cfg.max_layer_ratio`` leaves (min_widths), and rounded up to ``cfg.round_to``),
    with ``f`` bisected until the MACs reduction against ``base_macs`` is as close to ``ratio`` as possible. When
    one factor cannot land within ``cfg.tolerance`` (every group moves at once), groups are widened one step at a
    time, widest first, from the factor just past the target, until it does: widths then differ from the exact
    fraction by a step at most per pass.

    Raises PfsError when the closest reachable reduction misses ``ratio`` by more than ``cfg.tolerance``.
    """
    if not 0 < ratio < 1:
        raise PfsError(f"ratio must be in (0, 1), got {ratio}")

    floors = min_widths(widths, cfg)

    def at(f: float) -> list[int]:
        scaled = [max(m, min(w, round(w * f))) for w, m in zip(widths, floors, strict=True)]
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


def unit_scores(scores: list[torch.Tensor], units: list[int]) -> list[torch.Tensor]:
    """Per group, one score per unit of ``units[g]`` consecutive channels (a grouped conv's conv-group): the mean
    |score| of its channels; groups of unit 1 unchanged."""
    return [s if u == 1 else s.detach().float().abs().reshape(-1, u).mean(1)
            for s, u in zip(scores, units, strict=True)]


def in_units(prune: Callable[..., PruneResult], scores: list[torch.Tensor], units: list[int] | None,
             macs_of: Callable[[list[int]], int], cfg: PruneConfig, *args, **kwargs) -> PruneResult:
    """Run a search (prune_to_macs, uniform_to_macs) over whole units: a group whose channels go in units (a
    grouped conv loses whole conv-groups) is ranked and sized in units, ``cfg.min_width`` and ``cfg.round_to``
    count units (``cfg.max_layer_ratio`` caps the units lost), and the result's widths are channels again. Without
    units (every paper arch) it is ``prune`` itself, unchanged."""
    if not units or all(u == 1 for u in units):
        return prune(scores, *args, macs_of, cfg, **kwargs)
    if torch.is_tensor(scores[0]):  # scores per channel
        scaled = unit_scores(scores, units)
    else:  # widths (uniform_to_macs)
        scaled = [w // u for w, u in zip(scores, units, strict=True)]
    result = prune(scaled, *args, lambda w: macs_of([a * u for a, u in zip(w, units, strict=True)]), cfg, **kwargs)
    widths = [w * u for w, u in zip(result.widths, units, strict=True)]
    total = sum(int(s.numel()) if torch.is_tensor(s) else int(s) for s in scores)
    return dataclasses.replace(result, widths=widths, kept_channels=sum(widths), total_channels=total)
