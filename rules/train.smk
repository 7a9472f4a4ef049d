# The four training rules: one definition (train_pruned), the others reuse it with their own inputs, paths and
# method; all run workflow_scripts/train.py (pfs.stages.train.TrainJob -> pfs.stages.launch.launch).


rule train_pruned:
    input:
        **index_inputs(),
        channels=f"results/{PRUNED}/channels.yaml",
    output:
        **run_outputs(f"{PRUNED}/{{schedule}}"),
    log:
        f"logs/{PRUNED}/{{schedule}}/train_pruned.log",
    benchmark:
        f"benchmarks/{PRUNED}/{{schedule}}/train_pruned.tsv"
    retries: job_retries()
    conda:
        "../envs/pfs.yaml"
    threads: config["resources"]["threads"]
    resources:
        **gpu_resources(),
    params:
        hp=train_params,
        method="pfs",
        data=DATA,
        numerics=NUMERICS,
    script:
        "../workflow_scripts/train.py"


use rule train_pruned as train_full with:
    input:
        **index_inputs(),
    output:
        **run_outputs(FULL),
    log:
        f"logs/{FULL}/train_full.log",
    benchmark:
        f"benchmarks/{FULL}/train_full.tsv"
    params:
        hp=train_params,
        method="full",
        data=DATA,
        numerics=NUMERICS,


use rule train_pruned as train_uniform with:
    input:
        **index_inputs(),
        channels=f"results/{UNIFORM}/channels.yaml",
    output:
        **run_outputs(f"{UNIFORM}/seed{{seed}}/{{schedule}}"),
    log:
        f"logs/{UNIFORM}/seed{{seed}}/{{schedule}}/train_uniform.log",
    benchmark:
        f"benchmarks/{UNIFORM}/seed{{seed}}/{{schedule}}/train_uniform.tsv"
    params:
        hp=train_params,
        method="uniform",
        data=DATA,
        numerics=NUMERICS,


use rule train_pruned as train_random with:
    input:
        **index_inputs(),
        channels=f"results/{RANDOM_PRUNED}/channels.yaml",
    output:
        **run_outputs(f"{RANDOM_PRUNED}/{{schedule}}"),
    log:
        f"logs/{RANDOM_PRUNED}/{{schedule}}/train_random.log",
    benchmark:
        f"benchmarks/{RANDOM_PRUNED}/{{schedule}}/train_random.tsv"
    params:
        hp=train_params,
        method="random",
        data=DATA,
        numerics=NUMERICS,
