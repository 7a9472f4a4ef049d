"""prepare_imagenet_list: ImageNet folder tree (dataset.root/train, dataset.root/val) -> index tables train.csv
and val.csv (one row per image: path relative to the root, class name, label)."""

from pathlib import Path

from _common import run_stage

from pfs.imagenet import prepare_lists


def main(inputs, outputs, params, wildcards, config, log_path, threads=1):
    with run_stage(log_path, threads):
        # the rule's outputs are <dir>/train.csv and <dir>/val.csv; the root is a location, not a param
        prepare_lists(config["dataset"]["root"], Path(outputs["train"]).parent)


if "snakemake" in globals():
    sm = snakemake  # noqa: F821
    main(sm.input, sm.output, sm.params, sm.wildcards, sm.config, sm.log[0], sm.threads)
