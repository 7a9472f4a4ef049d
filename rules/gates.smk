rule learn_gates:
    output:
        gates=f"results/{EXP}/gates.pt",
        history=f"results/{EXP}/gates_metrics.csv",
    log:
        f"logs/{EXP}/learn_gates.log",
    benchmark:
        f"benchmarks/{EXP}/learn_gates.tsv"
    params:
        hp=config["gates"],
        split=split_params(),
    threads: config["resources"]["threads"]
    resources:
        **gpu_resources(),
    conda:
        "../envs/pfs.yaml"
    script:
        "../workflow_scripts/learn_gates.py"
