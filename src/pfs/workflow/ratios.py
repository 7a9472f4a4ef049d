"""The grid's MACs-reduction ratios against what pruning can reach, checked while the DAG is built (torch-free).

Every pruning job (PFS and random gates from the expanded network; the uniform, L1 and slimming baselines from the
standard one) measures its reduction against the standard network (the arch's standard width, multiplier 1), and
refuses, hours into a run, a ratio outside what its network spans: keeping every channel, and keeping only
prune.min_width per group (pfs.method.prune._check_reachable, within prune.tolerance). The same bounds, computed
here from the widths (pfs.core.paper_macs), refuse such a ratio before any job. Library networks (torchvision:,
timm:) are checked in pfs.models.checks, which may import torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from pfs.core import catalog
from pfs.core.paper_macs import BASE_EXPANSION, default_widths, paper_macs, smallest_widths


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


def paper_reaches(config: dict, arch: str, image_size: int, classes: tuple[int, ...]) -> list[Reach]:
    """The Reach of every network the grid prunes for ``arch`` (a paper arch)."""
    grid, prune = config["grid"], config.get("prune", {})
    methods = [name for flag, name in (("uniform_baseline", "uniform"), ("pretrained_baseline", "L1"),
                                       ("slimming_baseline", "slimming")) if grid.get(flag)]
    gated = "PFS" + (", random gates" if grid.get("random_gates") else "")

    def floor(widths: list[int]) -> list[int]:
        return smallest_widths(widths, prune.get("min_width", 1), prune.get("round_to", 1), None,
                               prune.get("max_layer_ratio", 1.0))

    def cost(e: int, m: float):
        return lambda widths: [paper_macs(arch, image_size, c, widths, e, m) for c in classes]

    base = [paper_macs(arch, image_size, c) for c in classes]
    found = []
    for e in grid["expansions"][arch]:
        for m in grid.get("multipliers", {}).get(arch, [1]):
            widths = default_widths(arch, e)
            at = f" multiplier {m:g}" if float(m) != 1 else ""
            found.append(reach(cost(e, m), widths, floor(widths), base, f"{arch} at expansion {e}{at} ({gated})"))
    if methods:
        widths = default_widths(arch)
        found.append(reach(cost(BASE_EXPANSION[arch], 1.0), widths, floor(widths), base,
                           f"{arch}'s standard network ({', '.join(methods)})"))
    return found


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


def class_counts(dataset: str, num_classes: int | None = None) -> tuple[int, ...]:
    """The class counts to bound the classifier's MACs with: ``num_classes`` when given (a folder's tree), the
    dataset's fixed count, else 1 and its nominal count (an ImageNet subset has fewer classes)."""
    if num_classes:
        return (int(num_classes),)
    info = catalog.dataset_info(dataset)
    return (info.num_classes,) if info.fixed_classes else (1, info.num_classes or 1000)


def ratio_problem(config: dict, image_size: int, num_classes: int | None = None) -> str | None:
    """The first grid ratio a paper arch of ``config`` cannot reach (reach_problem), or None."""
    classes = class_counts(config["dataset"]["name"], num_classes)
    for arch in config["grid"]["archs"]:
        if catalog.is_library_arch(arch):
            continue
        problem = reach_problem(paper_reaches(config, arch, image_size, classes), config["grid"]["ratios"],
                                config.get("prune", {}))
        if problem:
            return problem
    return None
