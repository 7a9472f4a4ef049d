"""summarize: every metrics.json -> results/summary.csv (one row per trained network), results/table.csv, table.md
(grouped over seeds, with the accuracy drop against the unpruned baseline) and results/comparison.csv (beside the
published figures of the references file); both also as HTML pages (table.html, comparison.html) for the report.
Inputs chain_{i} (rules/targets.smk chain_inputs): the chain of benchmark files of the i-th metrics.json, whose sum
is the row's cost (pfs.results.cost); without them the cost columns are empty."""

from _common import run_stage

from pfs.results.summary import write_summary, write_tables


def chains_of(inputs: dict) -> dict | None:
    """metrics.json -> its chain's benchmark files, from the inputs metrics and chain_{i}; None without chains."""
    if "chain_0" not in inputs:
        return None
    return {metrics: list(inputs[f"chain_{i}"]) for i, metrics in enumerate(inputs["metrics"])}


def main(inputs, outputs, params, wildcards, config, log_path, threads=1):
    with run_stage(log_path, threads, uses_torch=False):  # JSON and YAML in, CSV out: no torch
        chains = chains_of(dict(inputs))
        summary = write_summary(list(inputs["metrics"]), outputs["summary"], chains)
        outs = dict(outputs)
        write_tables(summary, outputs["table_csv"], outputs["table_md"], outputs["comparison_csv"],
                     dict(inputs).get("references"), chains, outs.get("table_html"), outs.get("comparison_html"))


if "snakemake" in globals():
    sm = snakemake  # noqa: F821
    main(sm.input, sm.output, sm.params, sm.wildcards, sm.config, sm.log[0], sm.threads)
