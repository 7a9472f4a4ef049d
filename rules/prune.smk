rule prune:
    input:
        gates=f"results/{EXP}/gates.pt",
    output:
        channels=f"results/{PRUNED}/channels.yaml",
    log:
        f"logs/{PRUNED}/prune.log",
    conda:
        "../envs/pfs.yaml"
    params:
        hp=section_params("prune"),
    script:
        "../workflow_scripts/prune.py"
