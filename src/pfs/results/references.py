"""Published reference figures beside ours: read a references file (configs/paper_results.yaml), check it, and join
it with the seed-grouped table (pfs.results.tables) into a comparison with the difference.

A reference row names a dataset, an arch (our registry's name), the number of classes and the split its top-1 is
over (ImageNet val, CIFAR test), the MACs reduction ``ratio`` against the standard network (0: the unpruned
network) and a top-1 in percent, as published, with its source. It is compared with each of our table rows of the
same dataset, arch, number of classes and split whose achieved MACs reduction is within ``match_tolerance`` of the
ratio, optionally only one schedule and some of our methods. Our runs of the same dataset and arch over another
number of classes (a 10-class ImageNet subset against a 1000-class figure) or on another split get the reference
listed as not comparable, with the reason and no difference. A reference whose top-1 is empty (not yet read in a
source) is listed without a difference. Torch-free: the workflow checks the file while it builds the DAG.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

from pfs.core.catalog import dataset_info
from pfs.core.errors import PfsError

DEFAULT_TOLERANCE = 0.02
SCHEMA = Path(__file__).resolve().parent / "references.schema.yaml"
# ref_*: the reference's; num_classes and split: those of our runs it was matched with; comparable: the classes
# and split agree (else not_comparable says why, and our columns and the differences stay empty)
COMPARISON_COLUMNS = ["dataset", "arch", "ref_method", "ref_ratio", "ref_schedule", "ref_num_classes", "ref_split",
                      "ref_macs", "ref_top1", "ref_baseline_top1", "ref_drop", "source", "num_classes", "split",
                      "comparable", "not_comparable", "method", "schedule", "expansion", "multiplier", "sparsity",
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
    rows = [dict(row) for row in doc.get("references") or []]
    for i, row in enumerate(rows):
        if row["ratio"] == 0 and row.get("baseline_top1") is not None:
            raise PfsError(f"{where}: references.{i}: an unpruned row (ratio 0) has no baseline_top1; remove it")
        info = dataset_info(row["dataset"])
        # format_version 1 predates these keys: its rows are over the dataset's standard classes and split
        row.setdefault("num_classes", info.num_classes)
        row.setdefault("split", info.eval_split)
        if info.fixed_classes and row["num_classes"] != info.num_classes:
            raise PfsError(f"{where}: references.{i}: num_classes {row['num_classes']} for {row['dataset']}, which "
                           f"has {info.num_classes} classes; fix num_classes (or the dataset)")
    columns = ["dataset", "arch", "method", "ratio", "schedule", "our_methods", "num_classes", "split", "macs",
               "top1", "baseline_top1", "source"]
    frame = pd.DataFrame(rows).reindex(columns=columns)
    frame = frame.astype({"ratio": float, "num_classes": "Int64", "macs": float, "top1": float,
                          "baseline_top1": float})
    return frame, float(doc.get("match_tolerance", DEFAULT_TOLERANCE))


def _not_comparable(ref, classes, split: str) -> str:
    """Why a reference does not compare with our runs over ``classes`` classes measured on ``split`` ('' when it
    does)."""
    if pd.isna(classes):
        return "this run's number of classes is not recorded (its metrics.json predates num_classes: rerun it)"
    reasons = []
    if int(ref.num_classes) != int(classes):
        reasons.append(f"reference: {int(ref.num_classes)} classes, this run: {int(classes)}")
    if ref.split != split:
        reasons.append(f"reference on the {ref.split} split, this run on {split}")
    return "; ".join(reasons)


def compare(table: pd.DataFrame, references: pd.DataFrame, tolerance: float = DEFAULT_TOLERANCE) -> pd.DataFrame:
    """One row per (reference, matching row of ours); references of our datasets and archs that match nothing keep
    one row with our columns empty. ``top1_diff`` = our mean top-1 minus the reference's, ``drop_diff`` = our drop
    against our unpruned network minus the reference's drop against its own (when it states its baseline), both
    in percentage points: positive means ours is more accurate / drops more. Only runs over the reference's
    number of classes and split are compared: for our runs of its dataset and arch over another number of classes
    (each such count once) or split, the reference gets one row with ``comparable`` False, the reason in
    ``not_comparable`` and no difference."""
    if table.empty or references.empty:
        return pd.DataFrame(columns=COMPARISON_COLUMNS)
    if "num_classes" not in table.columns:  # a table of a caller that does not know the classes: not comparable
        table = table.assign(num_classes=pd.NA)
    ours_keys = set(zip(table["dataset"], table["arch"], strict=True))
    out = []
    for ref in references.itertuples(index=False):
        if (ref.dataset, ref.arch) not in ours_keys:
            continue  # a reference for something this grid does not run
        split = dataset_info(ref.dataset).eval_split
        ref_drop = ref.baseline_top1 - ref.top1 if ref.ratio > 0 else float("nan")
        base = {"dataset": ref.dataset, "arch": ref.arch, "ref_method": ref.method, "ref_ratio": ref.ratio,
                "ref_schedule": ref.schedule if isinstance(ref.schedule, str) else "",
                "ref_num_classes": ref.num_classes, "ref_split": ref.split, "ref_macs": ref.macs,
                "ref_top1": ref.top1, "ref_baseline_top1": ref.baseline_top1, "ref_drop": ref_drop,
                "source": ref.source, "split": split}
        mine = table[(table["dataset"] == ref.dataset) & (table["arch"] == ref.arch)]
        for classes, group in mine.groupby("num_classes", sort=True, dropna=False):
            reason = _not_comparable(ref, classes, split)
            head = {**base, "num_classes": classes, "comparable": not reason, "not_comparable": reason}
            if reason:
                out.append(head)
                continue
            rows = group[(group["macs_reduction"] - ref.ratio).abs() <= tolerance]
            if isinstance(ref.schedule, str):
                rows = rows[rows["schedule"] == ref.schedule]
            if isinstance(ref.our_methods, list):
                rows = rows[rows["method"].isin(ref.our_methods)]
            if rows.empty:
                out.append(head)
            for row in rows.itertuples(index=False):
                top1, drop = 100 * row.top1_mean, 100 * row.top1_drop
                out.append({**head, "method": row.method, "schedule": row.schedule, "expansion": row.expansion,
                            "multiplier": getattr(row, "multiplier", float("nan")),
                            "sparsity": row.sparsity, "macs_reduction": row.macs_reduction, "n": row.n,
                            "top1_mean": top1, "top1_std": 100 * row.top1_std, "top1_drop": drop,
                            "top1_diff": top1 - ref.top1, "drop_diff": drop - ref_drop})
    return pd.DataFrame(out, columns=COMPARISON_COLUMNS)


def _num(value: float, fmt: str = "{:.2f}", signed: bool = False) -> str:
    if pd.isna(value):
        return ""
    return ("{:+.2f}" if signed else fmt).format(value)


def ours(row) -> str:
    """The 'ours' cell of a comparison row: method and schedule, with the backbone multiplier where it is not 1
    (a multiplier-0.35 network is never read as the multiplier-1 one a reference names); 'not run at this ratio'."""
    if pd.isna(row.n):
        return "not run at this ratio"
    multiplier = getattr(row, "multiplier", float("nan"))
    shown = f" x{float(multiplier):g}" if pd.notna(multiplier) and float(multiplier) != 1 else ""
    return f"{row.method} {row.schedule}{shown}"


def _top1(mean: float, std: float, n: int) -> str:
    """'97.22 ± 0.50 (n=5)'; one seed: '97.22 (n=1)' (no spread exists); values in %."""
    return f"{mean:.2f} ± {std:.2f} (n={n})" if n > 1 and pd.notna(std) else f"{mean:.2f} (n={n})"


def comparable_rows(comparison: pd.DataFrame) -> pd.Series:
    """Which rows of a comparison compare like with like (the same number of classes and split), as booleans,
    whether built by compare or read back from comparison.csv; none of a comparison written before the column
    existed (its rows were never checked)."""
    if "comparable" not in comparison.columns:
        return pd.Series(False, index=comparison.index)
    return comparison["comparable"].map(lambda v: str(v).strip().lower() in ("true", "1", "1.0")).astype(bool)


def comparison_markdown(comparison: pd.DataFrame, references_path: str | None) -> str:
    """The comparison as markdown: every comparable reference beside each matching run of ours, with the
    differences; then the references of our datasets and archs over another number of classes or split, each
    with the reason and no difference."""
    if not references_path:
        return "No references file configured (config key references).\n"
    if comparison.empty:
        return (f"No reference in {references_path} is for a dataset and arch of this grid; add rows there, each "
                "with its source.\n")
    comparable = comparable_rows(comparison)
    lines = []
    if comparable.any():
        lines += ["All accuracies in %. diff = ours - reference; drop = unpruned top-1 - pruned top-1 (each against "
                  "its own unpruned network). An empty reference top-1 was not read in a source yet.", "",
                  "| dataset | arch | reference | ref MACs reduction | ref top-1 | ref drop | ours | "
                  "our MACs reduction | our top-1 | our drop | top-1 diff | drop diff | source |", "|" + "---|" * 13]
    else:
        lines.append(f"No reference in {references_path} is over the number of classes and split of this grid's "
                     "runs (the references of its datasets and archs are listed below).")
    for r in comparison[comparable].itertuples(index=False):
        ref_name = r.ref_method + (f" ({r.ref_schedule})" if r.ref_schedule else "")
        top1 = "" if pd.isna(r.n) else _top1(r.top1_mean, r.top1_std, int(r.n))
        lines.append(f"| {r.dataset} | {r.arch} | {ref_name} | {100 * r.ref_ratio:.1f} | {_num(r.ref_top1)} | "
                     f"{_num(r.ref_drop)} | {ours(r)} | {_num(100 * r.macs_reduction, '{:.1f}')} | {top1} | "
                     f"{_num(r.top1_drop)} | {_num(r.top1_diff, signed=True)} | {_num(r.drop_diff, signed=True)} | "
                     f"{r.source} |")
    others = comparison[~comparable]
    if not others.empty:
        lines += ["", "Not comparable, so no difference is computed (a top-1 over another number of classes or on "
                  "another split measures another task):", ""]
        for r in others.itertuples(index=False):
            ref_name = r.ref_method + (f" ({r.ref_schedule})" if isinstance(r.ref_schedule, str) and r.ref_schedule
                                       else "")
            top1 = f", top-1 {_num(r.ref_top1)}" if pd.notna(r.ref_top1) else ""
            lines.append(f"- {r.dataset} {r.arch}: {ref_name} (MACs reduction {100 * r.ref_ratio:.1f}%{top1}; "
                         f"{r.source}): {r.not_comparable}")
    return "\n".join(lines) + "\n"
