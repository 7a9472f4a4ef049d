"""The checks of a grid's library networks while Snakemake builds the DAG (rules/config.smk), before any job: the
name exists, the network has a prunable group, it takes the dataset's image size, and every expansion gives it
widths."""

from __future__ import annotations

from pfs.core.catalog import DEFAULT_IMAGE_SIZE, FOLDER, dataset_info, is_library_arch
from pfs.core.errors import PfsError
from pfs.models.library import check_library_name
from pfs.models.rebuild import library_cost
from pfs.models.registry import get_spec


def check_library_archs(config: dict) -> None:
    """Raise PfsError in one line for the first library arch of ``config["grid"]["archs"]`` that cannot run."""
    data = config["dataset"]
    size = int(data.get("image_size") or DEFAULT_IMAGE_SIZE) if data["name"] == FOLDER else dataset_info(
        data["name"]).image_size
    for arch in (a for a in config["grid"]["archs"] if is_library_arch(a)):
        check_library_name(arch.removesuffix("+all"))
        spec = get_spec(arch)  # no prunable group: refused here
        library_cost(arch, size, 10)  # too small an image for its strides: refused here
        for expansion in config["grid"]["expansions"].get(arch, []):
            if expansion < 1:
                raise PfsError(f"grid.expansions.{arch}: {expansion} is not a percentage of the standard widths "
                               f"(100: the standard network, 125: 1.25x)")
            spec.widths_fn(expansion)
