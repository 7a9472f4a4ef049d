"""prepare_folder_list: a folder of the user's images (dataset.root/train, and dataset.root/val or
dataset.val_fraction of train/ held out) -> index tables train.csv and val.csv (one row per image: path relative to
the root, class name, label) and stats.yaml (image size, per-channel mean and std: given, or computed from the
training images at that size; the class count). With dataset.verify_images, every image is decoded first
(``threads`` processes) and undecodable ones are refused by name."""

from pathlib import Path

from _common import run_stage

from pfs.data.folder import prepare_folder_lists


def main(inputs, outputs, params, wildcards, config, log_path, threads=1):
    with run_stage(log_path, threads, uses_torch=False):
        # the root is a location and verify_images a check, so neither is a param; the rest is params["lists"]
        lists, workers = params["lists"], int(threads)
        verify = workers if config["dataset"].get("verify_images") else 0
        prepare_folder_lists(config["dataset"]["root"], Path(outputs["train"]).parent, lists["image_size"],
                             lists["val_fraction"], lists["mean"], lists["std"], verify_workers=verify, workers=workers)


if "snakemake" in globals():
    sm = snakemake  # noqa: F821
    main(sm.input, sm.output, sm.params, sm.wildcards, sm.config, sm.log[0], sm.threads)
