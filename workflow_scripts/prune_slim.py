"""prune_slim: train_sparse's model.pt (trained with the BN sparsity penalty) + MACs reduction ratio ->
channels.yaml (widths chosen by BN scale over the whole network: network slimming) and pruned.pt (the kept
channels' trained weights, which fine-tuning starts from)."""

from _common import experiment, run_stage

from pfs.stages.classic import stage_prune_slim


def main(inputs, outputs, params, wildcards, config, log_path, threads=1):
    with run_stage(log_path, threads):
        stage_prune_slim(experiment(wildcards), inputs["model"], float(wildcards["ratio"]), params["hp"],
                         outputs["channels"], outputs["pruned"])


if "snakemake" in globals():
    sm = snakemake  # noqa: F821
    main(sm.input, sm.output, sm.params, sm.wildcards, sm.config, sm.log[0], sm.threads)
