"""Collect metrics.json files into one table."""

from __future__ import annotations

import pandas as pd

from pfs import io
from pfs.references import compare, comparison_markdown, load_references
from pfs.tables import seed_table, to_markdown

# num_classes: what the network was built for (ImageNet: the index's classes), on which references are matched;
# target_met and gates_nonzero_fraction: learned gates only (did gate learning reach r)
COLUMNS = ["dataset", "num_classes", "arch", "method", "expansion", "multiplier", "sparsity", "ratio",
           "achieved_ratio", "schedule", "seed", "macs", "params", "top1", "top5", "best_top1", "epochs",
           "train_time_s", "target_met", "gates_nonzero_fraction"]


def collect(paths: list[str]) -> pd.DataFrame:
    rows = [io.load_json_artifact(path, "pfs.metrics", remedy="delete it and rerun its training") for path in paths]
    frame = pd.DataFrame(rows).reindex(columns=COLUMNS)
    return frame.sort_values(["dataset", "arch", "method", "ratio", "schedule", "seed"], ignore_index=True)


def write_summary(paths: list[str], out: str) -> pd.DataFrame:
    frame = collect(paths)
    io.write_csv(out, frame)
    return frame


def write_tables(summary: pd.DataFrame, out_csv: str, out_md: str, out_comparison: str,
                 references: str | None = None) -> pd.DataFrame:
    """The seed-grouped table (pfs.tables) as CSV and markdown, and its comparison with the published figures of
    the ``references`` file (pfs.references) as CSV and as a second section of the markdown."""
    table = seed_table(summary)
    refs, tolerance = load_references(references) if references else (pd.DataFrame(), 0.0)
    comparison = compare(table, refs, tolerance)
    io.write_csv(out_csv, table)
    io.write_csv(out_comparison, comparison)
    io.atomic_write_text(out_md, "# Results (mean ± std over seeds)\n\n" + to_markdown(table)
                         + "\n# Against published figures\n\n" + comparison_markdown(comparison, references))
    return table
