"""What ``python -m pfs summary`` shows of a library network: each channel group, its layers, width and share of the
MACs, and why a group is not pruned."""

from __future__ import annotations

from pfs.models.rebuild import library_cost
from pfs.models.structure import discover


def group_table(arch: str, image_size: int, num_classes: int, widths: list[int]) -> list[dict]:
    """One row per channel group of ``arch`` (pruned or not): name, kind, width (now / standard), unit, layers, and,
    for a pruned group, its share of the MACs: the MACs that go when it keeps only one unit, over the total."""
    structure = discover(arch)
    total = library_cost(arch, image_size, num_classes, widths)["macs"]
    prunable = {g.name: i for i, g in enumerate(structure.prunable)}
    rows = []
    for group in structure.groups:
        row = {"group": group.name, "kind": group.kind, "pruned": group.name in prunable,
               "standard_width": group.width, "unit": group.unit,
               "layers": sorted({m.module for m in group.members}), "gates_after": [s.module for s in group.sites]}
        if group.name in prunable:
            index = prunable[group.name]
            narrow = list(widths)
            narrow[index] = group.unit
            row["width"] = widths[index]
            row["macs_share"] = round((total - library_cost(arch, image_size, num_classes, narrow)["macs"]) / total, 6)
        else:
            row["why_not_pruned"] = group.reason
        rows.append(row)
    return rows
