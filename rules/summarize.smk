rule summarize:
    input:
        **references_input(),
        **chain_inputs(),  # the compute of each run's chain (pfs.results.cost)
        metrics=all_metrics(),
    output:
        table_csv=reported(TABLES["table_csv"], "table.rst", "Tables"),
        table_md=TABLES["table_md"],
        comparison_csv=reported(TABLES["comparison_csv"], "comparison.rst", "Tables"),
        table_html=reported(TABLES["table_html"], "table.rst", "Tables"),
        comparison_html=reported(TABLES["comparison_html"], "comparison.rst", "Tables"),
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
        comparison=TABLES["comparison_csv"],
        channels=all_channels(),
        # one gates.pt and one gates_metrics.csv per gate-learning run, in the same order: each history's plot
        # label is the identity of the gates.pt at its position
        gates=experiment_files("gates.pt"),
        histories=experiment_files("gates_metrics.csv"),
        # one metrics.json (the run's identity) and one history.csv (its epochs) per training run, in the same order
        metrics=all_metrics(),
        train_histories=run_files("history.csv"),
    output:
        accuracy=reported(PLOTS["accuracy"], "accuracy_vs_macs.rst", "Plots"),
        accuracy_cost=reported(PLOTS["accuracy_cost"], "accuracy_vs_cost.rst", "Plots"),
        widths=reported(PLOTS["widths"], "widths.rst", "Plots"),
        gate_histograms=reported(PLOTS["gate_histograms"], "gate_histograms.rst", "Plots"),
        gate_learning=reported(PLOTS["gate_learning"], "gate_learning.rst", "Plots"),
        training_curves=reported(PLOTS["training_curves"], "training_curves.rst", "Plots"),
    log:
        "logs/plot_results.log",
    conda:
        "../envs/pfs.yaml"
    script:
        "../workflow_scripts/plot_results.py"
