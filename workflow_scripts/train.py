"""train_pruned / train_full / train_uniform / train_random: the network of the rule's channels.yaml (the standard
one without), trained from a fresh random init -> model.pt, metrics.json, history.csv. ImageNet (or several GPUs):
under torchrun, one process per GPU of resources.gpu (pfs.stages.launch.launch)."""

from _common import gpu_count, run_stage

from pfs.stages.train import TrainJob


def main(inputs, outputs, params, wildcards, config, log_path, threads=1, resources=None):
    gpus = gpu_count(resources)
    with run_stage(log_path, threads, gpus, config["device"], numerics=params.get("numerics")) as stream:
        from pfs.stages.launch import launch

        launch(TrainJob.from_rule(inputs, outputs, params, wildcards, config, gpus, log_path), threads, stream)


if "snakemake" in globals():
    sm = snakemake  # noqa: F821
    main(sm.input, sm.output, sm.params, sm.wildcards, sm.config, sm.log[0], sm.threads, sm.resources)
