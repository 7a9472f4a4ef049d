"""prepare_imagenet_list: ImageNet folder tree (dataset.root/train, dataset.root/val) -> index tables train.csv
and val.csv (one row per image: path relative to the root, class name, label). With dataset.verify_images, every
image is decoded first (``threads`` processes) and undecodable ones are refused by name."""

from pathlib import Path

from _common import run_stage

from pfs.data.index import prepare_lists


def main(inputs, outputs, params, wildcards, config, log_path, threads=1):
    with run_stage(log_path, threads, uses_torch=False):
        # the rule's outputs are <dir>/train.csv and <dir>/val.csv; the root is a location and verify_images a
        # check, so neither is a param
        workers = int(threads) if config["dataset"].get("verify_images") else 0
        prepare_lists(config["dataset"]["root"], Path(outputs["train"]).parent, verify_workers=workers)


if "snakemake" in globals():
    sm = snakemake  # noqa: F821
    main(sm.input, sm.output, sm.params, sm.wildcards, sm.config, sm.log[0], sm.threads)
