"""prune_l1: train_full's model.pt + MACs reduction ratio -> channels.yaml (widths chosen by filter L1 norm) and
pruned.pt (the kept channels' trained weights, which fine-tuning starts from)."""

from _common import experiment, run_stage

from pfs.stages.classic import stage_prune_l1


def main(inputs, outputs, params, wildcards, config, log_path, threads=1):
    with run_stage(log_path, threads):
        stage_prune_l1(experiment(wildcards), inputs["model"], float(wildcards["ratio"]), params["hp"],
                       outputs["channels"], outputs["pruned"])


if "snakemake" in globals():
    sm = snakemake  # noqa: F821
    main(sm.input, sm.output, sm.params, sm.wildcards, sm.config, sm.log[0], sm.threads)
