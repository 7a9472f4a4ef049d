rule prune:
    input:
        gates=f"results/{EXP}/gates.pt",
    output:
        channels=f"results/{PRUNED}/channels.yaml",
    log:
        f"logs/{PRUNED}/prune.log",
    benchmark:
        f"benchmarks/{PRUNED}/prune.tsv"
    conda:
        "../envs/pfs.yaml"
    params:
        hp=section_params("prune"),
    script:
        "../workflow_scripts/prune.py"


rule prune_uniform:
    input:
        **index_inputs(),
    output:
        channels=f"results/{UNIFORM}/channels.yaml",
    log:
        f"logs/{UNIFORM}/prune_uniform.log",
    benchmark:
        f"benchmarks/{UNIFORM}/prune_uniform.tsv"
    conda:
        "../envs/pfs.yaml"
    params:
        hp=section_params("prune"),
    script:
        "../workflow_scripts/prune_uniform.py"


rule prune_random:
    input:
        gates=f"results/{RANDOM}/gates.pt",
    output:
        channels=f"results/{RANDOM_PRUNED}/channels.yaml",
    log:
        f"logs/{RANDOM_PRUNED}/prune_random.log",
    benchmark:
        f"benchmarks/{RANDOM_PRUNED}/prune_random.tsv"
    conda:
        "../envs/pfs.yaml"
    params:
        hp=section_params("prune"),
    script:
        "../workflow_scripts/prune.py"
