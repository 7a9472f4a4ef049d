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


rule plot_results:
    input:
        table=TABLES["table_csv"],
        channels=all_channels(),
        gates=experiment_files("gates.pt"),
        histories=experiment_files("gates_metrics.csv"),
    output:
        accuracy=report(PLOTS["accuracy"], caption="../report/accuracy_vs_macs.rst", category="Plots"),
        widths=report(PLOTS["widths"], caption="../report/widths.rst", category="Plots"),
        gate_histograms=report(PLOTS["gate_histograms"], caption="../report/gate_histograms.rst", category="Plots"),
        gate_learning=report(PLOTS["gate_learning"], caption="../report/gate_learning.rst", category="Plots"),
    log:
        "logs/plot_results.log",
    conda:
        "../envs/pfs.yaml"
    script:
        "../workflow_scripts/plot_results.py"
