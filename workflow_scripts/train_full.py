"""train_full: the unpruned standard-width network, trained with the same recipe -> model.pt, metrics."""

from _stage import data_settings, experiment, run_stage

from pfs.data import resolve_device
from pfs.stages import stage_train


def main(inputs, outputs, params, wildcards, config, log_path, threads=1):
    with run_stage(log_path, threads) as stream:
        stage_train(experiment(wildcards), "full", None, 0.0, wildcards["schedule"], params["hp"],
                    data_settings(config), resolve_device(config["device"]), config["checkpoint_dir"],
                    dict(outputs), {"achieved_ratio": 0.0}, stream)


if "snakemake" in globals():
    sm = snakemake  # noqa: F821
    main(sm.input, sm.output, sm.params, sm.wildcards, sm.config, sm.log[0], sm.threads)
