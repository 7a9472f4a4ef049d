"""Collect metrics.json files into one table: results/summary.csv, one row per trained network, in the order of
table.md (dataset, classes, arch, method, ratio, expansion, multiplier, sparsity, schedule, then seed).

Units of summary.csv (rounded to the precision they have):

- ``top1``, ``top5``, ``best_top1``: last-epoch (best-epoch) accuracy on the test set (ImageNet: val) as a fraction
  0-1, 4 decimals (0.01 percentage point, what the tables print in %);
- ``achieved_ratio``: MACs reduction against the standard network (e = the arch's standard, m = 1), fraction 0-1,
  6 decimals (as channels.yaml records it); ``ratio``: its target p, as configured; ``sparsity``: the gate target
  r; ``expansion``: e, the width the gates (or widths) were taken at; ``multiplier``: m, the backbone width scale;
- ``gates_nonzero_fraction``, ``gates_val_top1``: the kept gates' non-zero fraction (6 decimals) and held-out top-1
  (4 decimals), fractions 0-1 (learned gates only);
- ``macs``, ``params``: multiply-accumulates per image and parameters of the trained network, integers;
- ``train_time_s``: wall seconds of the training loop; ``cost_s``, ``cost_cpu_s``, ``shared_s``: wall (CPU) seconds of
  the network's whole chain of jobs and its shared part (pfs.results.cost), all 1 decimal;
- ``num_classes``, ``seed``, ``epochs``, ``cost_jobs``, ``shared_with``: integers; ``numerics``: the numerics
  fingerprint's key.
"""

from __future__ import annotations

import os

import pandas as pd

from pfs.core import io
from pfs.results.cost import COST_COLUMNS, chain_costs, grid_total
from pfs.results.references import compare, comparison_markdown, load_references
from pfs.results.report_html import write_html_tables
from pfs.results.tables import cost_note, in_table_order, near_chance_note, seed_table, to_markdown

# num_classes: what the network was built for (ImageNet: the index's classes), on which references are matched;
# target_met ... gates_near_chance: learned gates only (did gate learning reach r; the kept gates' non-zero fraction,
# held-out top-1 and whether that is near chance, pfs.core.chance.near_chance); cost_s ... shared_with: the compute of
# the
# network's whole chain of jobs (pfs.results.cost), empty without benchmark files; numerics: the key of
# the numerics fingerprint the training ran with (pfs.core.numerics: mode, CPU kernels or GPU, threads, torch), empty
# for metrics written before it was recorded
COLUMNS = ["dataset", "num_classes", "arch", "method", "expansion", "multiplier", "sparsity", "ratio",
           "achieved_ratio", "schedule", "seed", "macs", "params", "top1", "top5", "best_top1", "epochs",
           "train_time_s", "target_met", "gates_nonzero_fraction", "gates_val_top1", "gates_near_chance",
           "numerics", *COST_COLUMNS]


def collect(paths: list[str], chains: dict[str, list[str]] | None = None) -> pd.DataFrame:
    """One row per metrics.json; with ``chains`` (metrics path -> the benchmark files of its chain of jobs,
    rules/targets.smk run_chains) each row carries its compute (pfs.results.cost.chain_costs), else the cost columns are
    empty."""
    rows = [io.load_json_artifact(path, "pfs.metrics", remedy="delete it and rerun its training") for path in paths]
    frame = pd.DataFrame(rows).drop(columns=COST_COLUMNS, errors="ignore")
    if "numerics" in frame.columns:  # the fingerprint's key: one comparable string per row
        frame["numerics"] = [fp.get("key") if isinstance(fp, dict) else None for fp in frame["numerics"]]
    if chains is not None:
        costs = chain_costs(chains).rename(index=os.path.normpath)
        wanted = [os.path.normpath(p) for p in paths]
        unknown = [p for p, n in zip(paths, wanted, strict=True) if n not in costs.index]
        if unknown:
            raise ValueError(f"no chain of benchmark files for {unknown[0]} (of {len(unknown)}): the chains must "
                             "name every metrics file")
        for column in COST_COLUMNS:
            frame[column] = costs.loc[wanted, column].to_numpy()
    return in_table_order(rounded(frame.reindex(columns=COLUMNS)), then=("seed",))


# summary.csv's numbers to the precision they have (units: the module docstring): fractions to 4 decimals (0.01
# percentage point, what the tables print; a test set of 10,000 images moves by 0.0001 per image), seconds to 1
# decimal (a job's start-up varies by more), counts as integers
FRACTIONS = ["top1", "top5", "best_top1", "gates_val_top1"]
# fractions printed rounded again downstream (MACs reduction to 0.1%, the non-zero fraction to 0.01): 6 decimals,
# as channels.yaml records them, so that no double rounding moves a printed digit (0.499467 -> 0.4995 -> 50.0%)
RATIOS = ["achieved_ratio", "gates_nonzero_fraction"]
SECONDS = ["train_time_s", "cost_s", "cost_cpu_s", "shared_s"]
COUNTS = ["num_classes", "seed", "macs", "params", "epochs", "cost_jobs", "shared_with"]


def rounded(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` (summary.csv's columns) to the precision its numbers have: FRACTIONS to 4 decimals, RATIOS to 6,
    SECONDS to 1, COUNTS as integers (empty stays empty)."""
    frame = frame.copy()
    for columns, decimals in ((FRACTIONS, 4), (RATIOS, 6), (SECONDS, 1)):
        for column in columns:
            frame[column] = pd.to_numeric(frame[column], errors="coerce").round(decimals)
    for column in COUNTS:
        frame[column] = pd.to_numeric(frame[column], errors="coerce").round().astype("Int64")
    return frame


def write_summary(paths: list[str], out: str, chains: dict[str, list[str]] | None = None) -> pd.DataFrame:
    frame = collect(paths, chains)
    io.write_csv(out, frame)
    return frame


def write_tables(summary: pd.DataFrame, out_csv: str, out_md: str, out_comparison: str,
                 references: str | None = None, chains: dict[str, list[str]] | None = None,
                 out_html: str | None = None, out_comparison_html: str | None = None) -> pd.DataFrame:
    """The seed-grouped table (pfs.results.tables) as CSV and markdown, and its comparison with the published figures of
    the ``references`` file (pfs.results.references) as CSV and as a second section of the markdown. With ``chains``
    the markdown says under the table what the cost column includes and what the whole grid took (every job
    once, pfs.results.cost.grid_total). With ``out_html`` and ``out_comparison_html`` both as HTML pages too
    (pfs.results.report_html: what the Snakemake report shows inline)."""
    table = seed_table(summary)
    refs, tolerance = load_references(references) if references else (pd.DataFrame(), 0.0)
    comparison = compare(table, refs, tolerance)
    io.write_csv(out_csv, table)
    io.write_csv(out_comparison, comparison)
    io.atomic_write_text(out_md, "# Results (mean ± std over seeds)\n\n"
                         + to_markdown(table, grid_total(chains) if chains else None)
                         + "\n# Against published figures\n\n" + comparison_markdown(comparison, references))
    if out_html and out_comparison_html:
        note = cost_note(table, grid_total(chains) if chains else None) if table["cost_s_mean"].notna().any() else ""
        note = " ".join(part for part in (near_chance_note(table), note) if part)
        write_html_tables(table, comparison, out_html, out_comparison_html, references, note)
    return table
