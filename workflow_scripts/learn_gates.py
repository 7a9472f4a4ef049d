"""learn_gates: learn channel gates on frozen random weights -> gates.pt, gates_metrics.csv."""

from _common import data_settings, experiment, gpu_count, run_stage

from pfs.stages.learn_gates import stage_learn_gates
from pfs.training.distributed import resolve_device


def main(inputs, outputs, params, wildcards, config, log_path, threads=1, resources=None):
    with run_stage(log_path, threads, gpu_count(resources), config["device"],
                   numerics=params.get("numerics")) as stream:
        stage_learn_gates(
            experiment(wildcards), float(wildcards["sparsity"]), params["hp"], data_settings(config, inputs),
            params["split"], resolve_device(config["device"]), outputs["gates"], outputs["history"], stream,
        )


if "snakemake" in globals():
    sm = snakemake  # noqa: F821
    main(sm.input, sm.output, sm.params, sm.wildcards, sm.config, sm.log[0], sm.threads, sm.resources)
