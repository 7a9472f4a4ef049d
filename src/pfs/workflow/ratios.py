"""The grid's MACs-reduction ratios against what pruning can reach, checked while the DAG is built (torch-free).

Every pruning job (PFS and random gates from the expanded network; the uniform, L1 and slimming baselines from the
standard one) measures its reduction against the standard network (the arch's standard width, multiplier 1), and
refuses, hours into a run, a ratio outside what its network spans: keeping every channel, and keeping only
prune.min_width per group (pfs.method.prune._check_reachable, within prune.tolerance). The same bounds, computed
here from the widths (pfs.core.paper_macs), refuse such a ratio before any job. Library networks (torchvision:,
timm:) are checked in pfs.models.checks, which may import torch.
"""

from __future__ import annotations

from pfs.core import catalog
from pfs.core.paper_macs import BASE_EXPANSION, default_widths, paper_macs, smallest_widths
from pfs.core.reach import Reach, method_names, reach, reach_problem


def paper_reaches(config: dict, arch: str, image_size: int, classes: tuple[int, ...]) -> list[Reach]:
    """The Reach of every network the grid prunes for ``arch`` (a paper arch)."""
    grid, prune = config["grid"], config.get("prune", {})
    gated, methods = method_names(grid)

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
