rule prune:
    input:
        gates=f"results/{EXP}/gates.pt",
    output:
        channels=f"results/{PRUNED}/channels.yaml",
    log:
        f"logs/{PRUNED}/prune.log",
    params:
        hp=config["prune"],
    conda:
        "../envs/pfs.yaml"
    script:
        "../workflow_scripts/prune.py"
