"""prune_uniform: the uniform-width baseline's channels.yaml (every group of the standard network shrunk by one
factor to the MACs ratio)."""

from _common import data_settings, experiment, run_stage

from pfs.data.datasets import num_classes_of
from pfs.stages.prune import stage_prune_uniform


def main(inputs, outputs, params, wildcards, config, log_path, threads=1):
    with run_stage(log_path, threads):
        stage_prune_uniform(experiment(wildcards), float(wildcards["ratio"]), params["hp"], outputs["channels"],
                            num_classes_of(data_settings(config, inputs)))


if "snakemake" in globals():
    sm = snakemake  # noqa: F821
    main(sm.input, sm.output, sm.params, sm.wildcards, sm.config, sm.log[0], sm.threads)
