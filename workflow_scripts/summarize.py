"""summarize: every metrics.json -> results/summary.csv (one row per trained network) and results/table.csv,
table.md (grouped over seeds, with the accuracy drop against the unpruned baseline)."""

from _stage import run_stage

from pfs.summary import write_summary, write_tables


def main(inputs, outputs, params, wildcards, config, log_path, threads=1):
    with run_stage(log_path, threads):
        summary = write_summary(list(inputs["metrics"]), outputs["summary"])
        write_tables(summary, outputs["table_csv"], outputs["table_md"])


if "snakemake" in globals():
    sm = snakemake  # noqa: F821
    main(sm.input, sm.output, sm.params, sm.wildcards, sm.config, sm.log[0], sm.threads)
