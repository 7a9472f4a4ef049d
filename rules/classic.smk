# The classic baseline the paper argues against (grid.pretrained_baseline): the trained standard network (the
# model of train_full, reused, never trained twice), its filters ranked by L1 norm and pruned to each MACs ratio
# with the same search and prune settings as the gates, then fine-tuned from those weights (finetune section); the
# same L1-chosen architecture is also trained from scratch (Scratch-E/B), separating the architecture found from
# the inherited weights.


rule prune_l1:
    input:
        model=f"results/{PRETRAINED}/model.pt",
    output:
        channels=f"results/{L1}/channels.yaml",
        pruned=f"results/{L1}/pruned.pt",
    log:
        f"logs/{L1}/prune_l1.log",
    benchmark:
        f"benchmarks/{L1}/prune_l1.tsv"
    conda:
        "../envs/pfs.yaml"
    params:
        hp=section_params("prune"),
    script:
        "../workflow_scripts/prune_l1.py"


use rule train_pruned as finetune_l1 with:
    input:
        **index_inputs(),
        channels=f"results/{L1}/channels.yaml",
        pruned=f"results/{L1}/pruned.pt",
    output:
        **run_outputs(f"{L1}/finetune"),
    log:
        f"logs/{L1}/finetune/finetune_l1.log",
    benchmark:
        f"benchmarks/{L1}/finetune/finetune_l1.tsv"
    params:
        hp=finetune_params,
        method="l1",
        schedule="finetune",
        data=DATA,
        numerics=NUMERICS,


use rule train_pruned as train_l1 with:
    input:
        **index_inputs(),
        channels=f"results/{L1}/channels.yaml",
    output:
        **run_outputs(f"{L1}/{{schedule}}"),
    log:
        f"logs/{L1}/{{schedule}}/train_l1.log",
    benchmark:
        f"benchmarks/{L1}/{{schedule}}/train_l1.tsv"
    params:
        hp=train_params,
        method="l1",
        data=DATA,
        numerics=NUMERICS,


# Network slimming (grid.slimming_baseline; Liu et al., ICCV 2017): the standard network trained with an L1 penalty
# on its BN scales (train_sparse: the train section's Scratch-E recipe plus slimming.s), its channels ranked by |BN
# scale| over the whole network and pruned to each ratio by the same MACs search and prune settings, then fine-tuned
# (the same finetune section as L1) and its architecture trained from scratch.


use rule train_pruned as train_sparse with:
    input:
        **index_inputs(),
    output:
        **run_outputs(SPARSE),
    log:
        f"logs/{SPARSE}/train_sparse.log",
    benchmark:
        f"benchmarks/{SPARSE}/train_sparse.tsv"
    params:
        hp=sparse_params,
        method="slim",
        schedule="sparse",
        data=DATA,
        numerics=NUMERICS,


rule prune_slim:
    input:
        model=f"results/{SPARSE}/model.pt",
    output:
        channels=f"results/{SLIM}/channels.yaml",
        pruned=f"results/{SLIM}/pruned.pt",
    log:
        f"logs/{SLIM}/prune_slim.log",
    benchmark:
        f"benchmarks/{SLIM}/prune_slim.tsv"
    conda:
        "../envs/pfs.yaml"
    params:
        hp=section_params("prune"),
    script:
        "../workflow_scripts/prune_slim.py"


use rule train_pruned as finetune_slim with:
    input:
        **index_inputs(),
        channels=f"results/{SLIM}/channels.yaml",
        pruned=f"results/{SLIM}/pruned.pt",
    output:
        **run_outputs(f"{SLIM}/finetune"),
    log:
        f"logs/{SLIM}/finetune/finetune_slim.log",
    benchmark:
        f"benchmarks/{SLIM}/finetune/finetune_slim.tsv"
    params:
        hp=finetune_params,
        method="slim",
        schedule="finetune",
        data=DATA,
        numerics=NUMERICS,


use rule train_pruned as train_slim with:
    input:
        **index_inputs(),
        channels=f"results/{SLIM}/channels.yaml",
    output:
        **run_outputs(f"{SLIM}/{{schedule}}"),
    log:
        f"logs/{SLIM}/{{schedule}}/train_slim.log",
    benchmark:
        f"benchmarks/{SLIM}/{{schedule}}/train_slim.tsv"
    params:
        hp=train_params,
        method="slim",
        data=DATA,
        numerics=NUMERICS,
