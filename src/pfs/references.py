"""Published reference figures beside ours: read a references file (configs/paper_results.yaml), check it, and join
it with the seed-grouped table (pfs.tables) into a comparison with the difference.

A reference row names a dataset, an arch (our registry's name), the MACs reduction ``ratio`` against the standard
network (0: the unpruned network) and a top-1 in percent, as published, with its source. It is compared with each
of our table rows of the same dataset and arch whose achieved MACs reduction is within ``match_tolerance`` of the
ratio, optionally only one schedule and some of our methods. A reference whose top-1 is empty (not yet read in a
source) is listed without a difference. Torch-free: the workflow checks the file while it builds the DAG.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

from pfs.errors import PfsError

DEFAULT_TOLERANCE = 0.02
SCHEMA = Path(__file__).resolve().parent / "references.schema.yaml"
COMPARISON_COLUMNS = ["dataset", "arch", "ref_method", "ref_ratio", "ref_schedule", "ref_macs", "ref_top1",
                      "ref_baseline_top1", "ref_drop", "source", "method", "schedule", "expansion", "sparsity",
                      "macs_reduction", "n", "top1_mean", "top1_std", "top1_drop", "top1_diff", "drop_diff"]


def load_references(path: str | Path) -> tuple[pd.DataFrame, float]:
    """The reference rows of ``path`` (top-1 values in %, as published) and its match tolerance; one clear PfsError
    naming the file, the row and the key when the file is missing or malformed."""
    import jsonschema

    path = Path(path)
    where = f"references file {path}"
    if not path.is_file():
        raise PfsError(f"{where} does not exist: set the config key references to an existing file, or to '' for "
                       "none (the shipped one is configs/paper_results.yaml)")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise PfsError(f"{where} is not valid YAML{at}: fix the file (see configs/paper_results.yaml)") from None
    schema = yaml.safe_load(SCHEMA.read_text())
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(doc))
    if error is not None:
        at = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        raise PfsError(f"{where}: {at}: {error.message} (keys and allowed values: {SCHEMA.name} in the pfs package)")
    rows = doc.get("references") or []
    for i, row in enumerate(rows):
        if row["ratio"] == 0 and row.get("baseline_top1") is not None:
            raise PfsError(f"{where}: references.{i}: an unpruned row (ratio 0) has no baseline_top1; remove it")
    columns = ["dataset", "arch", "method", "ratio", "schedule", "our_methods", "macs", "top1", "baseline_top1",
               "source"]
    frame = pd.DataFrame(rows).reindex(columns=columns)
    frame = frame.astype({"ratio": float, "macs": float, "top1": float, "baseline_top1": float})
    return frame, float(doc.get("match_tolerance", DEFAULT_TOLERANCE))


def compare(table: pd.DataFrame, references: pd.DataFrame, tolerance: float = DEFAULT_TOLERANCE) -> pd.DataFrame:
    """One row per (reference, matching row of ours); references of our datasets and archs that match nothing keep
    one row with our columns empty. ``top1_diff`` = our mean top-1 minus the reference's, ``drop_diff`` = our drop
    against our unpruned network minus the reference's drop against its own (when it states its baseline), both
    in percentage points: positive means ours is more accurate / drops more."""
    if table.empty or references.empty:
        return pd.DataFrame(columns=COMPARISON_COLUMNS)
    ours_keys = set(zip(table["dataset"], table["arch"], strict=True))
    out = []
    for ref in references.itertuples(index=False):
        if (ref.dataset, ref.arch) not in ours_keys:
            continue  # a reference for something this grid does not run
        rows = table[(table["dataset"] == ref.dataset) & (table["arch"] == ref.arch)
                     & ((table["macs_reduction"] - ref.ratio).abs() <= tolerance)]
        if isinstance(ref.schedule, str):
            rows = rows[rows["schedule"] == ref.schedule]
        if isinstance(ref.our_methods, list):
            rows = rows[rows["method"].isin(ref.our_methods)]
        ref_drop = ref.baseline_top1 - ref.top1 if ref.ratio > 0 else float("nan")
        base = {"dataset": ref.dataset, "arch": ref.arch, "ref_method": ref.method, "ref_ratio": ref.ratio,
                "ref_schedule": ref.schedule if isinstance(ref.schedule, str) else "", "ref_macs": ref.macs,
                "ref_top1": ref.top1, "ref_baseline_top1": ref.baseline_top1, "ref_drop": ref_drop,
                "source": ref.source}
        if rows.empty:
            out.append(base)
        for row in rows.itertuples(index=False):
            top1, drop = 100 * row.top1_mean, 100 * row.top1_drop
            out.append({**base, "method": row.method, "schedule": row.schedule, "expansion": row.expansion,
                        "sparsity": row.sparsity, "macs_reduction": row.macs_reduction, "n": row.n,
                        "top1_mean": top1, "top1_std": 100 * row.top1_std, "top1_drop": drop,
                        "top1_diff": top1 - ref.top1, "drop_diff": drop - ref_drop})
    return pd.DataFrame(out, columns=COMPARISON_COLUMNS)


def _num(value: float, fmt: str = "{:.2f}", signed: bool = False) -> str:
    if pd.isna(value):
        return ""
    return ("{:+.2f}" if signed else fmt).format(value)


def comparison_markdown(comparison: pd.DataFrame, references_path: str | None) -> str:
    """The comparison as markdown: every reference beside each matching run of ours, with the differences."""
    if not references_path:
        return "No references file configured (config key references).\n"
    if comparison.empty:
        return (f"No reference in {references_path} is for a dataset and arch of this grid; add rows there, each "
                "with its source.\n")
    lines = ["All accuracies in %. diff = ours - reference; drop = unpruned top-1 - pruned top-1 (each against its "
             "own unpruned network). An empty reference top-1 was not read in a source yet.", "",
             "| dataset | arch | reference | ref MACs reduction | ref top-1 | ref drop | ours | our MACs reduction | "
             "our top-1 | our drop | top-1 diff | drop diff | source |", "|" + "---|" * 13]
    for r in comparison.itertuples(index=False):
        ref_name = r.ref_method + (f" ({r.ref_schedule})" if r.ref_schedule else "")
        ours = "not run at this ratio" if pd.isna(r.n) else f"{r.method} {r.schedule}"
        top1 = "" if pd.isna(r.n) else f"{r.top1_mean:.2f} ± {r.top1_std:.2f} (n={int(r.n)})"
        lines.append(f"| {r.dataset} | {r.arch} | {ref_name} | {100 * r.ref_ratio:.1f} | {_num(r.ref_top1)} | "
                     f"{_num(r.ref_drop)} | {ours} | {_num(100 * r.macs_reduction, '{:.1f}')} | {top1} | "
                     f"{_num(r.top1_drop)} | {_num(r.top1_diff, signed=True)} | {_num(r.drop_diff, signed=True)} | "
                     f"{r.source} |")
    return "\n".join(lines) + "\n"
