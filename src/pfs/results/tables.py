"""The results table: runs grouped over seeds (mean, std, n) in the layout of the paper's tables (architecture, MACs
reduction, accuracy, accuracy drop against the unpruned baseline of the same architecture)."""

from __future__ import annotations

import pandas as pd

from pfs.core.catalog import dataset_info
from pfs.results.cost import COST_COLUMNS, cost_cell, duration

# one table row per experiment: everything that identifies a run except its seed (num_classes: an ImageNet subset
# is another task than ImageNet, with its own baseline and its own references)
GROUP = ["dataset", "num_classes", "arch", "method", "expansion", "multiplier", "sparsity", "ratio", "schedule"]
TABLE_COLUMNS = [*GROUP, "n", "macs", "params", "macs_reduction", "top1_mean", "top1_std", "top5_mean",
                 "best_top1_mean", "top1_drop", "epochs", "target_met", "gates_nonzero_fraction",
                 "gates_near_chance", "gates_val_top1_min",  # learned gates: some seed's kept gates near chance
                 "cost_s_mean", "cost_s_std", "cost_cpu_s_mean", "shared_s_mean"]  # cost: pfs.results.cost, over seeds
METHOD_ORDER = {"full": 0, "pfs": 1, "l1": 2, "slim": 3, "uniform": 4, "random": 5}  # row order of every table
SCHEDULE_ORDER = {"scratch_e": 0, "scratch_b": 1, "finetune": 2}
SCHEDULE_NAMES = {"scratch_e": "Scratch-E", "scratch_b": "Scratch-B", "finetune": "fine-tuned"}  # in figures, text


def _all_met(values: pd.Series):
    """Whether gate learning met its target in every seed of a row; empty (NA) for methods without learned gates."""
    known = values.dropna()
    return pd.NA if known.empty else bool(known.astype(bool).all())


def _any_near(values: pd.Series):
    """Whether the kept gates of some seed of a row are near chance (pfs.core.chance.near_chance, recorded per run);
    empty (NA) when no seed recorded it (methods without learned gates, runs pruned before it was recorded)."""
    known = values.dropna()
    return pd.NA if known.empty else bool(known.astype(bool).any())


def _mean_known(values: pd.Series) -> float:
    """The mean over seeds, empty (NaN) when some seed has no value (a cost not recorded is not zero)."""
    values = pd.to_numeric(values, errors="coerce")
    return float("nan") if values.empty or values.isna().any() else float(values.mean())


def _std_known(values: pd.Series) -> float:
    """The standard deviation over seeds, empty (NaN) for one seed (a spread over one value does not exist) and when
    some seed has no value."""
    values = pd.to_numeric(values, errors="coerce")
    if len(values) < 2 or values.isna().any():
        return float("nan")
    return float(values.std())


def _num_classes(frame: pd.DataFrame) -> pd.Series:
    """Each run's number of classes: as recorded (metrics.json's num_classes), else the dataset's when it has a
    fixed number (CIFAR, digits); -1 for an ImageNet run that did not record it (its index decided)."""
    recorded = frame["num_classes"] if "num_classes" in frame.columns else pd.Series(pd.NA, index=frame.index)
    fixed = frame["dataset"].map(lambda d: dataset_info(d).num_classes if dataset_info(d).fixed_classes else -1)
    return pd.to_numeric(recorded, errors="coerce").fillna(fixed).astype(int)


def seed_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Group the per-run summary over seeds; ``top1_drop`` is the unpruned baseline's mean top-1 (same dataset,
    number of classes and arch) minus this row's (positive: less accurate than the baseline), empty without a
    baseline. ``num_classes`` is empty for an ImageNet run that did not record it."""
    if summary.empty:
        return pd.DataFrame(columns=TABLE_COLUMNS)
    frame = summary.copy()
    frame[["sparsity", "multiplier"]] = frame[["sparsity", "multiplier"]].fillna(-1)  # full runs: no sparsity
    frame["num_classes"] = _num_classes(frame)
    for column in COST_COLUMNS:  # a summary of a caller without benchmark files: no cost
        if column not in frame.columns:
            frame[column] = float("nan")
    for column in ("gates_val_top1", "gates_near_chance"):  # a summary.csv written before they were recorded
        if column not in frame.columns:
            frame[column] = pd.NA
    grouped = frame.groupby(GROUP, sort=False, dropna=False)
    table = grouped.agg(n=("seed", "nunique"), macs=("macs", "first"), params=("params", "first"),
                        macs_reduction=("achieved_ratio", "mean"), top1_mean=("top1", "mean"),
                        top1_std=("top1", "std"), top5_mean=("top5", "mean"), best_top1_mean=("best_top1", "mean"),
                        epochs=("epochs", "first"), target_met=("target_met", _all_met),
                        gates_nonzero_fraction=("gates_nonzero_fraction", "mean"),
                        gates_near_chance=("gates_near_chance", _any_near),
                        gates_val_top1_min=("gates_val_top1", lambda v: pd.to_numeric(v, errors="coerce").min()),
                        cost_s_mean=("cost_s", _mean_known), cost_s_std=("cost_s", _std_known),
                        cost_cpu_s_mean=("cost_cpu_s", _mean_known),
                        shared_s_mean=("shared_s", _mean_known)).reset_index()
    keys = ["dataset", "num_classes", "arch"]
    full = table[table["method"] == "full"].groupby(keys)["top1_mean"].mean()
    baseline = table.set_index(keys).index.map(full.to_dict().get)
    table["top1_drop"] = pd.to_numeric(baseline, errors="coerce") - table["top1_mean"]
    table["sparsity"] = table["sparsity"].where(table["sparsity"] >= 0)
    table["multiplier"] = table["multiplier"].where(table["multiplier"] >= 0)
    table["num_classes"] = table["num_classes"].astype("Int64").where(table["num_classes"] >= 0)
    return in_table_order(table)[TABLE_COLUMNS]


ROW_ORDER = ["dataset", "num_classes", "arch", "_method", "ratio", "expansion", "multiplier", "sparsity", "_schedule"]


def in_table_order(frame: pd.DataFrame, then: tuple[str, ...] = ()) -> pd.DataFrame:
    """``frame``'s rows in the order of every table (table.csv, table.md, summary.csv): dataset, number of classes,
    arch, method (METHOD_ORDER), ratio, expansion, multiplier, sparsity, schedule (SCHEDULE_ORDER), then the columns
    ``then`` (summary.csv: the seed); a stable sort, empty values first."""
    keys = frame.assign(_method=frame["method"].map(METHOD_ORDER).fillna(len(METHOD_ORDER)),
                        _schedule=frame["schedule"].map(SCHEDULE_ORDER).fillna(len(SCHEDULE_ORDER)))
    if "num_classes" not in keys.columns:
        keys["num_classes"] = pd.NA
    keys["num_classes"] = pd.to_numeric(keys["num_classes"], errors="coerce")
    order = keys.sort_values([*ROW_ORDER, *then], kind="stable", na_position="first").index
    return frame.loc[order].reset_index(drop=True)


def _pct(value: float) -> str:
    return "" if pd.isna(value) else f"{100 * value:.2f}"


def gates_cell(row, emphasis: str = "**") -> str:
    """The 'gates at target' cell of a table row: 'yes', or '**no** (non-zero 0.96)' when gate learning missed r
    in some seed, then ', **near chance** (held-out top-1 13.67%)' when the kept gates of some seed are near chance
    (with several seeds, the lowest held-out top-1); empty without learned gates. ``emphasis``: the markup around
    the warnings ('' in HTML)."""
    if pd.isna(row.target_met):
        return ""
    cell = "yes" if row.target_met else f"{emphasis}no{emphasis} (non-zero {row.gates_nonzero_fraction:.2f})"
    near = getattr(row, "gates_near_chance", pd.NA)  # absent from a table.csv written before it was recorded
    if pd.notna(near) and near:
        top1 = "lowest held-out top-1 of the seeds" if row.n > 1 else "held-out top-1"
        cell += f", {emphasis}near chance{emphasis} ({top1} {_pct(row.gates_val_top1_min)}%)"
    return cell


NEAR_CHANCE_NOTE = ("Near chance: the held-out top-1 of the kept gates (on gate learning's validation split) is not "
                    "clearly above chance, i.e. 1 / classes plus a few binomial standard deviations on that many "
                    "images (pfs.core.chance.above_chance; the learn_gates log warns too): the gates barely steer the "
                    "random network, so the widths pruned from them are close to a random choice.")


def near_chance_note(table: pd.DataFrame) -> str:
    """The sentence under the tables when the kept gates of some row are near chance, else ''."""
    if "gates_near_chance" not in table.columns:
        return ""
    return NEAR_CHANCE_NOTE if bool(table["gates_near_chance"].dropna().astype(bool).any()) else ""


def _classes(value) -> str:
    return "classes not recorded" if pd.isna(value) else f"{int(value)} classes"


COST_NOTE = ("Cost: the wall-clock time of every job a row's network needed (Snakemake's benchmark files under "
             "benchmarks/), mean (± std) over seeds: gate learning + pruning + training for pfs; pretraining (the "
             "full network's training) + L1 pruning + fine-tuning or training from scratch for l1; sparsity "
             "training + BN-scale pruning + fine-tuning or training from scratch for slim; random gates "
             "and/or pruning + training for random and uniform; the training alone for full{imagenet}. A job that "
             "several rows need (one gate learning for several ratios and schedules, one pretraining for several "
             "ratios) is included in full in each of them, and that part is shown as shared.")


def cost_note(table: pd.DataFrame, grid: dict | None = None) -> str:
    """The sentences under the tables: what the cost column includes, and (``grid``: pfs.results.cost.grid_total) what
    the whole grid took with every job counted once."""
    imagenet = "; on ImageNet the index preparation too, shared by every row" if (
        table["dataset"] == "imagenet").any() else ""
    text = COST_NOTE.format(imagenet=imagenet)
    if grid:
        cpu = f", {duration(grid['cpu_s'])} CPU" if grid["cpu_s"] is not None else (
            f"; CPU time not recorded for {grid['cpu_missing']} of them")
        text += f" The whole grid took {duration(grid['s'])} wall{cpu} ({grid['jobs']} jobs, each counted once)."
    return text


def top1_cell(mean: float, std: float, n: int, unit: str = "") -> str:
    """A top-1 cell in %: ``97.22 ± 0.50 (n=5)`` over several seeds, ``97.22 (n=1)`` for one (no spread exists)."""
    if pd.isna(mean):
        return ""
    if int(n) > 1 and pd.notna(std):
        return f"{100 * mean:.2f}{unit} ± {100 * std:.2f} (n={int(n)})"
    return f"{100 * mean:.2f}{unit} (n={int(n)})"


def needs_multiplier(rows: pd.DataFrame) -> bool:
    """Whether ``rows`` need a multiplier column: some row's network has a backbone multiplier other than 1 (so a
    row at 0.35 is never read against the full network at 1 without the multiplier shown)."""
    if "multiplier" not in rows.columns:
        return False
    known = pd.to_numeric(rows["multiplier"], errors="coerce").dropna()
    return bool((known != 1).any())


def multiplier_text(value) -> str:
    """'0.35', '1'; '' when not recorded."""
    return "" if pd.isna(value) else f"{float(value):g}"


def to_markdown(table: pd.DataFrame, grid: dict | None = None) -> str:
    """One markdown table per dataset and number of classes: accuracies in %, top-1 as mean ± std over n
    seeds (one seed: the value and n=1, no spread), the multiplier where some row's differs from 1, the cost
    (pfs.results.cost) as mean ± std with its shared part; then, when some row has a cost, what the cost includes
    and (``grid``: pfs.results.cost.grid_total) what the whole grid took."""
    if table.empty:
        return "No finished training runs yet.\n"
    parts = []
    for (dataset, classes), rows in table.groupby(["dataset", "num_classes"], sort=False, dropna=False):
        multiplier = needs_multiplier(rows)
        header = ("| arch | method | expansion | " + ("multiplier | " if multiplier else "") + "sparsity | schedule | "
                  "MACs | MACs reduction (%) | params | top-1 (%) | drop vs full (%) | top-5 (%) | epochs | "
                  "gates at target | cost |")
        lines = [f"## {dataset} ({_classes(classes)})", "", header, "|" + "---|" * (header.count("|") - 1)]
        for r in rows.itertuples():
            sparsity = "" if pd.isna(r.sparsity) else f"{r.sparsity:g}"
            expansion = f"{r.expansion} | {multiplier_text(r.multiplier)}" if multiplier else f"{r.expansion}"
            top1 = top1_cell(r.top1_mean, r.top1_std, r.n)
            lines.append(f"| {r.arch} | {r.method} | {expansion} | {sparsity} | {r.schedule} | {r.macs / 1e6:.2f}M "
                         f"| {_pct(r.macs_reduction)} | {r.params / 1e3:.1f}k | {top1} "
                         f"| {_pct(r.top1_drop)} | {_pct(r.top5_mean)} | {r.epochs} | {gates_cell(r)} | "
                         f"{cost_cell(r.cost_s_mean, r.cost_s_std, r.shared_s_mean, r.n)} |")
        parts.append("\n".join(lines))
    if near_chance_note(table):
        parts.append(near_chance_note(table))
    if table["cost_s_mean"].notna().any():
        parts.append(cost_note(table, grid))
    return "\n\n".join(parts) + "\n"
