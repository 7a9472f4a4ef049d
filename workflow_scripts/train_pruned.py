"""train_pruned: the pruned widths from channels.yaml, trained from a fresh random init -> model.pt, metrics."""

from _stage import data_settings, experiment, run_stage

from pfs.data import resolve_device
from pfs.stages import load_channels, stage_train


def main(inputs, outputs, params, wildcards, config, log_path, threads=1):
    with run_stage(log_path, threads) as stream:
        exp = experiment(wildcards)
        doc = load_channels(inputs["channels"], exp)
        extra = {"sparsity": float(wildcards["sparsity"]), "achieved_ratio": doc["achieved_ratio"]}
        stage_train(exp, "pfs", doc["widths"], float(wildcards["ratio"]), wildcards["schedule"], params["hp"],
                    data_settings(config), resolve_device(config["device"]), config["checkpoint_dir"],
                    dict(outputs), extra, stream)


if "snakemake" in globals():
    sm = snakemake  # noqa: F821
    main(sm.input, sm.output, sm.params, sm.wildcards, sm.config, sm.log[0], sm.threads)
