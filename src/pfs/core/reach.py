"""Which MACs-reduction ratios a pruned network can reach, and the one line refusing one it cannot: the bounds of
the prune stage's own refusal (pfs.method.prune._check_reachable, prune.tolerance included), for the checks while
the DAG is built (pfs.workflow.ratios for the paper archs, pfs.models.checks for library networks). Torch-free."""

from __future__ import annotations

import math
from dataclasses import dataclass


def least_width(size: int, min_width: int, max_layer_ratio: float = 1.0) -> int:
    """The fewest channels (or units) pruning may leave a group of ``size``: ``min_width``, raised to
    ceil((1 - ``max_layer_ratio``) x size) by the cap (rounded to 1e-9 first: (1 - 0.7) x 10 is 3.0000000000000004
    in floats), at most ``size``. The one rule of pfs.method.prune.min_widths and
    pfs.core.paper_macs.smallest_widths."""
    return min(size, max(min_width, math.ceil(round((1 - max_layer_ratio) * size, 9))))


@dataclass(frozen=True)
class Reach:
    """The ratios one pruned network can reach: ``lowest`` (every channel kept: below 0 when it is smaller than the
    standard network) to ``highest`` (prune.min_width channels per group)."""

    what: str  # for messages: "resnet20 at expansion 20 (PFS)"
    lowest: float
    highest: float
    narrowest: int  # channels of its narrowest group (prune.min_width may not exceed it)


def reach(cost, widths: list[int], floor: list[int], base: list[int], what: str) -> Reach:
    """The Reach of a network with ``widths`` whose narrowest widths are ``floor``; ``cost(widths)``: its MACs per
    class count, ``base``: the standard network's MACs per class count (the most permissive bound over them: a
    folder's or an ImageNet subset's classes are known only to its jobs)."""
    full, small = cost(widths), cost(floor)
    return Reach(what, min(1 - f / b for f, b in zip(full, base, strict=True)),
                 max(1 - s / b for s, b in zip(small, base, strict=True)), min(widths))


def method_names(grid: dict) -> tuple[str, list[str]]:
    """For messages: the methods pruning the gate network ("PFS, random gates") and those pruning the standard
    network (uniform, L1, slimming), as the grid enables them."""
    standard = [name for flag, name in (("uniform_baseline", "uniform"), ("pretrained_baseline", "L1"),
                                        ("slimming_baseline", "slimming")) if grid.get(flag)]
    return "PFS" + (", random gates" if grid.get("random_gates") else ""), standard


def _too_high(ratio: float, r: Reach, prune: dict) -> str:
    """The line refusing ``ratio`` above what ``r`` reaches, in the words of the prune stage's refusal."""
    min_width, cap, round_to = prune.get("min_width", 1), prune.get("max_layer_ratio", 1.0), prune.get("round_to", 1)
    capped = f" and prune.max_layer_ratio={cap:g} of each group's channels at most pruned" if cap < 1 else ""
    rounded = f" (rounded up to prune.round_to={round_to})" if round_to > 1 else ""
    fix = (f"lower the ratio (to at most {r.highest:.4f})" + (", or lower prune.min_width" if min_width > 1 else "")
           + (", or lower prune.round_to" if round_to > 1 else "") + (", or raise prune.max_layer_ratio" if cap < 1
                                                                      else ""))
    return (f"grid.ratios: {ratio:g} cannot be reached by {r.what}: keeping only prune.min_width={min_width} "
            f"channel(s) per group{capped}{rounded} reduces MACs by {r.highest:.4f} at most (the unprunable layers "
            f"cost the rest); {fix}")


def reach_problem(reaches: list[Reach], ratios: list[float], prune: dict) -> str | None:
    """One line naming the first ratio (largest first) one of ``reaches`` cannot reach, with the fix; None when all
    can. The bounds are pfs.method.prune._check_reachable's, prune.tolerance included."""
    tol, min_width = prune.get("tolerance", 1e-3), prune.get("min_width", 1)
    for r in reaches:
        if min_width > r.narrowest:
            return (f"prune.min_width={min_width} exceeds the narrowest group ({r.narrowest} channels) of {r.what}; "
                    f"set prune.min_width to at most {r.narrowest}")
    for ratio in sorted(ratios, reverse=True):
        for r in sorted(reaches, key=lambda r: r.highest):
            if r.highest < ratio * (1 - tol):
                return _too_high(ratio, r, prune)
    for ratio in sorted(ratios):
        for r in sorted(reaches, key=lambda r: -r.lowest):
            if r.lowest > ratio * (1 + tol):
                return (f"grid.ratios: {ratio:g} cannot be reached by {r.what}: unpruned, it is already "
                        f"{r.lowest:.4f} smaller than the standard network (an expansion below the standard "
                        f"width); raise the expansion or the ratio (to at least {r.lowest:.4f})")
    return None
