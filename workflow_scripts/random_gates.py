"""random_gates: the random-gates ablation's gates.pt (a uniform random value per channel of the expanded network,
seeded by the seed), pruned by prune_random exactly as learned gates are."""

from _common import data_settings, experiment, run_stage

from pfs.data.datasets import num_classes_of
from pfs.stages.learn_gates import stage_random_gates


def main(inputs, outputs, params, wildcards, config, log_path, threads=1):
    with run_stage(log_path, threads):
        stage_random_gates(experiment(wildcards), num_classes_of(data_settings(config, inputs)), outputs["gates"])


if "snakemake" in globals():
    sm = snakemake  # noqa: F821
    main(sm.input, sm.output, sm.params, sm.wildcards, sm.config, sm.log[0], sm.threads)
