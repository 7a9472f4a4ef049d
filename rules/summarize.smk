rule summarize:
    input:
        metrics=all_metrics(),
    output:
        **TABLES,
        summary=SUMMARY,
    log:
        "logs/summarize.log",
    conda:
        "../envs/pfs.yaml"
    script:
        "../workflow_scripts/summarize.py"
