rule learn_gates:
    input:
        **index_inputs(),
    output:
        gates=f"results/{EXP}/gates.pt",
        history=f"results/{EXP}/gates_metrics.csv",
    log:
        f"logs/{EXP}/learn_gates.log",
    benchmark:
        f"benchmarks/{EXP}/learn_gates.tsv"
    retries: job_retries()
    conda:
        "../envs/pfs.yaml"
    threads: config["resources"]["threads"]
    resources:
        **gpu_resources(max_gpu=1, stage="gates"),
    params:
        hp=section_params("gates"),
        split=split_params(),
        data=DATA,
        numerics=NUMERICS,
    script:
        "../workflow_scripts/learn_gates.py"


rule random_gates:
    input:
        **index_inputs(),
    output:
        gates=f"results/{RANDOM}/gates.pt",
    log:
        f"logs/{RANDOM}/random_gates.log",
    benchmark:
        f"benchmarks/{RANDOM}/random_gates.tsv"
    conda:
        "../envs/pfs.yaml"
    script:
        "../workflow_scripts/random_gates.py"
