"""summarize: every metrics.json -> results/summary.csv (one row per trained network)."""

from _stage import run_stage

from pfs.summary import write_summary


def main(inputs, outputs, params, wildcards, config, log_path, threads=1):
    with run_stage(log_path, threads):
        write_summary(list(inputs["metrics"]), outputs["summary"])


if "snakemake" in globals():
    sm = snakemake  # noqa: F821
    main(sm.input, sm.output, sm.params, sm.wildcards, sm.config, sm.log[0], sm.threads)
