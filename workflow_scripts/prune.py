"""prune: gates + MACs reduction ratio -> channels.yaml (inner widths of the pruned network)."""

from _common import experiment, run_stage

from pfs.stages.prune import stage_prune


def main(inputs, outputs, params, wildcards, config, log_path, threads=1):
    with run_stage(log_path, threads):
        stage_prune(experiment(wildcards), inputs["gates"], float(wildcards["ratio"]), params["hp"],
                    outputs["channels"])


if "snakemake" in globals():
    sm = snakemake  # noqa: F821
    main(sm.input, sm.output, sm.params, sm.wildcards, sm.config, sm.log[0], sm.threads)
