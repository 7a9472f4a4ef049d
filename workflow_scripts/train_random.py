"""train_random: the random-gates ablation (channels.yaml of prune_random), trained from a fresh random init with
the same recipe -> model.pt, metrics.

ImageNet (or several GPUs): under torchrun, one process per GPU of resources.gpu."""

from _stage import train_main as main

if "snakemake" in globals():
    sm = snakemake  # noqa: F821
    main(sm.input, sm.output, sm.params, sm.wildcards, sm.config, sm.log[0], sm.threads, sm.resources)
