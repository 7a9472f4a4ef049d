"""The checks of a grid's library networks while Snakemake builds the DAG (rules/config.smk), before any job: the
name exists (else the closest one is suggested), the network has a prunable group, it takes the dataset's image
size, every expansion gives it widths, and every grid ratio is within what pruning it can reach (the bounds of
pfs.workflow.ratios, from its layer sizes: no network is built)."""

from __future__ import annotations

import importlib

from pfs.core.catalog import DEFAULT_IMAGE_SIZE, FOLDER, CatalogError, closest, dataset_info, is_library_arch
from pfs.core.errors import PfsError
from pfs.core.paper_macs import smallest_widths
from pfs.core.reach import Reach, method_names, reach, reach_problem
from pfs.models.library import check_library_name, torchvision_cnns
from pfs.models.rebuild import library_cost
from pfs.models.registry import get_spec


def _checked_name(arch: str) -> None:
    """check_library_name, its refusal naming the library's closest model name."""
    try:
        check_library_name(arch.removesuffix("+all"))
    except CatalogError as exc:
        library, _, model = arch.removesuffix("+all").partition(":")
        names = torchvision_cnns() if library == "torchvision" else importlib.import_module("timm").list_models()
        guess = closest(model, names)
        raise CatalogError(f"{exc}" + (f" (did you mean '{library}:{guess}'?)" if guess else "")) from None


def _library_reaches(config: dict, arch: str, size: int, classes: tuple[int, ...]) -> list[Reach]:
    """The Reach of every network the grid prunes for library ``arch`` (from its layer sizes: none is built)."""
    spec, prune = get_spec(arch), config.get("prune", {})
    gated, standard = method_names(config["grid"])

    def cost(widths: list[int]) -> list[int]:
        return [library_cost(arch, size, c, widths)["macs"] for c in classes]

    def floor(widths: list[int]) -> list[int]:
        return smallest_widths(widths, prune.get("min_width", 1), prune.get("round_to", 1), list(spec.units),
                               prune.get("max_layer_ratio", 1.0))

    networks = [(e, f"{arch} at expansion {e} ({gated})") for e in config["grid"]["expansions"].get(arch, [])]
    if standard:
        networks.append((spec.base_expansion, f"{arch}'s standard network ({', '.join(standard)})"))
    base = cost(spec.widths_fn(spec.base_expansion))
    found = []
    for expansion, what in networks:
        if expansion < 1:
            raise PfsError(f"grid.expansions.{arch}: {expansion} is not a percentage of the standard widths "
                           f"(100: the standard network, 125: 1.25x)")
        widths = spec.widths_fn(expansion)
        found.append(reach(cost, widths, floor(widths), base, what))
    return found


def check_library_archs(config: dict, classes: tuple[int, ...] = (10,)) -> None:
    """Raise PfsError in one line for the first library arch of ``config["grid"]["archs"]`` that cannot run;
    ``classes``: the class counts to bound its classifier's MACs with (pfs.workflow.ratios.class_counts)."""
    data = config["dataset"]
    size = int(data.get("image_size") or DEFAULT_IMAGE_SIZE) if data["name"] == FOLDER else dataset_info(
        data["name"]).image_size
    for arch in (a for a in config["grid"]["archs"] if is_library_arch(a)):
        _checked_name(arch)
        get_spec(arch)  # no prunable group: refused here
        library_cost(arch, size, 10)  # too small an image for its strides: refused here
        problem = reach_problem(_library_reaches(config, arch, size, classes), config["grid"]["ratios"],
                                config.get("prune", {}))
        if problem:
            raise PfsError(problem)
