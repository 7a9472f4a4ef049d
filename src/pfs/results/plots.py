"""Figures of a finished grid (matplotlib, PNG): accuracy vs MACs and vs compute cost per method, pruned widths per
layer, learned gate values per stage, the gate-learning curves and the training curves of every run."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from pfs.core import io  # noqa: E402
from pfs.core.catalog import TEST_IMAGES  # noqa: E402
from pfs.core.chance import above_chance, chance_line, held_out_size  # noqa: E402
from pfs.core.errors import PfsError  # noqa: E402
from pfs.results.cost import in_unit, scale  # noqa: E402
from pfs.results.references import comparable_rows  # noqa: E402
from pfs.results.tables import METHOD_ORDER, SCHEDULE_NAMES, SCHEDULE_ORDER  # noqa: E402

_STYLE = {"full": ("black", "s"), "pfs": ("tab:blue", "o"), "l1": ("tab:red", "D"), "slim": ("tab:purple", "h"),
          "uniform": ("tab:orange", "^"), "random": ("tab:green", "v")}
# a classic baseline (l1, slim) with its inherited weights fine-tuned, in the method's colour (its scratch_e/b: the
# method's own marker)
_FINETUNE_MARKER = "P"
_MAX_PANELS = 6  # at most this many experiments per figure (the first ones, in path order)
_CLUSTER = 0.03  # points closer than this fraction of a panel's largest x crowd one place: a dot panel lists them
# a top-1 axis spans at least this many test images (pfs.results.readme.TOP1_SLACK_IMAGES: about the spread of one
# row over seeds and CPU kinds), so that a difference of a few images does not fill the axis ...
_MIN_SPAN_IMAGES = 20
_MIN_SPAN_PP = 2.0  # ... and at least this many percentage points (large or unknown test sets)


def _save(fig, out: str | Path, rect: tuple[float, float, float, float] | None = None) -> Figure:
    """Write the figure as PNG and return it (closed in pyplot, still readable: the tests inspect it); ``rect``:
    the part of the figure the axes are laid out in (room left for a figure legend)."""
    fig.tight_layout(rect=rect)
    with io.atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return fig


def one_image_pct(dataset: str) -> float | None:
    """How much one test image moves top-1, in % (100 / the test set's size), None where the size is not known."""
    size = TEST_IMAGES.get(str(dataset))
    return 100.0 / size if size else None


def top1_label(datasets) -> str:
    """The y label of a top-1 axis: in %, with the test-set granularity where one dataset of known size is drawn,
    e.g. ``top-1 accuracy (%; one test image = 0.28%)``."""
    steps = {one_image_pct(d) for d in pd.unique(pd.Series(list(datasets), dtype=object))}
    if len(steps) == 1 and None not in steps:
        return f"top-1 accuracy (%; one test image = {steps.pop():.2g}%)"
    return "top-1 accuracy (%)"


def top1_limits(values, datasets) -> tuple[float, float]:
    """y limits (%) of a top-1 axis showing ``values`` (%): their range plus a margin, widened about its middle to
    at least _MIN_SPAN_IMAGES test images of the coarsest dataset drawn and _MIN_SPAN_PP points, kept inside 0-100
    (a little room above 100 for a marker there)."""
    values = [float(v) for v in values if pd.notna(v)]
    if not values:
        return 0.0, 100.0
    steps = [one_image_pct(d) for d in pd.unique(pd.Series(list(datasets), dtype=object))]
    need = max([_MIN_SPAN_PP, *(_MIN_SPAN_IMAGES * step for step in steps if step)])
    low, high = min(values), max(values)
    span = max(1.15 * (high - low), need)
    low, high = (low + high - span) / 2, (low + high + span) / 2
    top = 100 + 0.03 * span
    low, high = (low - max(0.0, high - top), min(high, top)) if high > top else (low, high)
    return (0.0, max(high, span)) if low < 0 else (low, high)


def _crowded(xs: Sequence[float]) -> bool:
    """Whether two of ``xs`` lie within _CLUSTER of the largest of them (their markers would cover each other)."""
    xs = sorted(float(x) for x in xs if pd.notna(x))
    tol = _CLUSTER * max((abs(x) for x in xs), default=0.0)
    return any(b - a <= tol for a, b in zip(xs, xs[1:], strict=False))


def _n_text(ns) -> str:
    """'n=1', 'n=3' or 'n=1-3': the seeds behind the points of one legend entry."""
    ns = sorted({int(n) for n in ns if pd.notna(n)})
    return "n not recorded" if not ns else f"n={ns[0]}" if len(ns) == 1 else f"n={ns[0]}-{ns[-1]}"


def _point(ax, x: float, y: float, std: float, n: int, xerr: float | None, style: tuple[str, str, str],
           label: str | None, vertical: bool = True) -> None:
    """One row's marker at (x, y): with its error bar(s) where n > 1 (a spread exists), a bare marker for one seed;
    ``vertical`` False: the bar along x (a dot panel, where top-1 is the x axis)."""
    color, marker, fill = style
    spread = int(n) > 1 and pd.notna(std)
    bar = {"yerr": [std] if spread else None, "xerr": [xerr] if xerr and spread else None} if vertical else {
        "xerr": [std] if spread else None}
    if bar.get("yerr") is None and bar.get("xerr") is None:
        ax.plot([x], [y], marker, color=color, mfc=fill, linestyle="none", label=label)
    else:
        ax.errorbar([x], [y], fmt=marker, color=color, mfc=fill, capsize=3, label=label, **bar)


def _legend(ax, first: Sequence[str], below: bool = False) -> None:
    """The axis' legend with the entries ``first`` (the methods, in the tables' order) first, then the others;
    ``below``: under the axis in two columns (inside, it would hide points)."""
    rank = {label: i for i, label in enumerate(first)}
    pairs = sorted(zip(*ax.get_legend_handles_labels(), strict=True), key=lambda hl: rank.get(hl[1], len(rank)))
    if pairs and below:
        ax.legend(*zip(*pairs, strict=True), fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
    elif pairs:
        ax.legend(*zip(*pairs, strict=True), fontsize=7)


def _errorbars(ax, rows: pd.DataFrame, x: pd.Series, xerr: pd.Series | None = None) -> list[str]:
    """Top-1 in % of each row at its true ``x`` (never shifted), one colour and marker per method and schedule;
    mean ± std over seeds as an error bar where n > 1, a bare marker for one seed (the legend says n); a red ring
    where the kept gates are near chance. Returns the methods' legend labels in drawing order."""
    labels = []
    for (method, schedule), sub in rows.groupby(["method", "schedule"], sort=False):
        label = f"{method} {SCHEDULE_NAMES.get(schedule, schedule)}" + (f" ({_n_text(sub['n'])})" if "n" in sub else "")
        labels.append(label)
        for k, i in enumerate(sub.index):
            _point(ax, float(x[i]), 100 * rows.at[i, "top1_mean"], 100 * rows.at[i, "top1_std"], _n(rows, i),
                   None if xerr is None else float(xerr[i]), _style(method, schedule), label if k == 0 else None)
    for k, i in enumerate(rows.index[_near_chance(rows)]):  # a red ring and a word under each: gates near chance
        y = 100 * rows.at[i, "top1_mean"]
        ax.plot([x[i]], [y], "o", markersize=15, mfc="none", mec="red", mew=1.5,
                label="kept gates near chance (red ring)" if k == 0 else None)
        ax.annotate("gates near chance", (x[i], y), xytext=(0, -16), textcoords="offset points", fontsize=6,
                    color="red", ha="center")
    return labels


def _near_chance(rows: pd.DataFrame) -> pd.Series:
    """Per table row: whether the kept gates of some seed are near chance (table.csv's gates_near_chance, True,
    False or empty; a table without the column: False)."""
    if "gates_near_chance" not in rows.columns:
        return pd.Series(False, index=rows.index)
    return rows["gates_near_chance"].map(lambda v: not pd.isna(v) and str(v).strip().lower() in ("true", "1", "1.0"))


def _n(rows: pd.DataFrame, i) -> int:
    return int(rows.at[i, "n"]) if "n" in rows.columns and pd.notna(rows.at[i, "n"]) else 1


def _spread_values(rows: pd.DataFrame) -> list[float]:
    """Every top-1 end a panel draws (%): each mean, and mean ± std where n > 1."""
    out = []
    for i in rows.index:
        y, std = 100 * rows.at[i, "top1_mean"], 100 * rows.at[i, "top1_std"]
        out += [y - std, y + std] if _n(rows, i) > 1 and pd.notna(std) else [y]
    return out


def _dot_panel(ax, rows: pd.DataFrame, where: pd.Series, limits: tuple[float, float], what: str) -> None:
    """Every row of a crowded panel on its own line (top to bottom in the tables' order): top-1 (%) along x on the
    scatter's scale, the row's method, schedule, ratio and ``where`` (its MACs or cost, as drawn) in the tick
    label; mean ± std where n > 1."""
    labels = []
    for k, i in enumerate(rows.index):
        method, schedule = rows.at[i, "method"], rows.at[i, "schedule"]
        _point(ax, 100 * rows.at[i, "top1_mean"], k, 100 * rows.at[i, "top1_std"], _n(rows, i), None,
               _style(method, schedule), None, vertical=False)
        labels.append(f"{method} {SCHEDULE_NAMES.get(schedule, schedule)} at {where[i]} (n={_n(rows, i)})")
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set_ylim(len(labels) - 0.5, -0.5)
    ax.set_xlim(*limits)
    ax.set(title=f"each network on its own line\n(the markers crowd one {what} value on the left)",
           xlabel="top-1 accuracy (%)")
    ax.title.set_fontsize(8)
    ax.grid(alpha=0.3, axis="x")


def run_label(doc: dict) -> str:
    """A run's label from the identity its gates.pt or channels.yaml carries, e.g. ``resnet20 e20 m1 r0.5 seed0``."""
    parts = [doc["arch"], f"e{doc['expansion']}", f"m{doc.get('multiplier', 1):g}"]
    if doc.get("sparsity") is not None:
        parts.append(f"r{doc['sparsity']:g}")
    if doc.get("target_ratio") is not None:
        parts.append(f"p{doc['target_ratio']:g}")
    if doc.get("seed") is not None:
        parts.append(f"seed{doc['seed']}")
    return " ".join(parts)


def _standard_macs(rows: pd.DataFrame) -> float:
    """MACs of the standard-width network of one dataset+arch, from any row (macs / (1 - reduction))."""
    return float((rows["macs"] / (1 - rows["macs_reduction"])).median())


def reference_points(rows: pd.DataFrame, references: pd.DataFrame) -> list[tuple[float, float, str]]:
    """(MACs, top-1 %, name) of each published reference (comparison rows with a figure) of the dataset+arch of
    ``rows`` that is comparable with them (the same number of classes and split; pfs.results.references.compare): at its
    stated MACs, or else at its ratio of our standard network's MACs. A reference over another number of classes
    is not drawn."""
    if rows.empty or references.empty:
        return []
    dataset, arch = rows["dataset"].iloc[0], rows["arch"].iloc[0]
    mine = references[(references["dataset"] == dataset) & (references["arch"] == arch)
                      & references["ref_top1"].notna() & comparable_rows(references)]
    if "num_classes" in rows.columns and "num_classes" in mine.columns:
        mine = mine[pd.to_numeric(mine["num_classes"], errors="coerce").isin(
            pd.to_numeric(rows["num_classes"], errors="coerce").dropna())]
    mine = mine.drop_duplicates(["ref_method", "ref_ratio", "ref_top1"])
    return [(float(r.ref_macs) if pd.notna(r.ref_macs) else (1 - r.ref_ratio) * _standard_macs(rows),
             float(r.ref_top1), str(r.ref_method)) for r in mine.itertuples(index=False)]


def _panels(table: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(title, rows) per dataset, number of classes and arch."""
    if table.empty:
        return [("no runs", table)]
    keys = ["dataset", "num_classes", "arch"] if "num_classes" in table.columns else ["dataset", "arch"]
    panels = []
    for key, rows in table.groupby(keys, sort=False, dropna=False):
        dataset, arch = key[0], key[-1]
        classes = f" ({int(key[1])} classes)" if len(key) == 3 and pd.notna(key[1]) else ""
        panels.append((f"{arch} on {dataset}{classes}", rows))
    return panels


def _figure(panels: list[tuple[str, pd.DataFrame]], xs: list[pd.Series]) -> tuple[Figure, list]:
    """A figure with one scatter axis per panel and, where a panel's points crowd one x (_crowded), a dot panel
    beside it: [(scatter, dot panel or None)] per panel."""
    crowded = [len(x) > 1 and _crowded(x) for x in xs]
    ratios = [r for c in crowded for r in ((5.5, 4.5) if c else (5.5,))]
    entries = max([rows.groupby(["method", "schedule"]).ngroups + 2 if len(rows) else 0 for _, rows in panels])
    fig = plt.figure(figsize=(sum(ratios), 4.4 + 0.2 * -(-entries // 2)))  # room for the legend below
    grid = fig.add_gridspec(1, len(ratios), width_ratios=ratios)
    axes, col = [], 0
    for c in crowded:
        axes.append((fig.add_subplot(grid[0, col]), fig.add_subplot(grid[0, col + 1]) if c else None))
        col += 2 if c else 1
    return fig, axes


def accuracy_vs_macs(table: pd.DataFrame, out: str | Path, references: pd.DataFrame | None = None) -> Figure:
    """Top-1 in % (mean over seeds, std as error bar where n > 1; one seed: a bare marker) against each network's
    true MACs, one colour and marker per method and schedule, one panel per dataset, number of classes and arch.
    The y axis spans at least _MIN_SPAN_IMAGES test images (top1_limits) and its label says how much one image is;
    where markers crowd one MACs value, a dot panel beside lists every network with its top-1 on the same scale.
    Published ``references`` (pfs.results.references.compare's rows) comparable with a panel's runs (same dataset,
    arch, number of classes and split) as labelled grey stars, at their stated MACs or else at their ratio of our
    standard network's MACs."""
    panels = _panels(table)
    refs = references if references is not None else pd.DataFrame()
    xs = [rows["macs"] / 1e6 if len(rows) else pd.Series(dtype=float) for _, rows in panels]
    fig, axes = _figure(panels, xs)
    for (ax, dots), (title, rows), x in zip(axes, panels, xs, strict=True):
        labels = _errorbars(ax, rows, x)
        stars = reference_points(rows, refs)
        for n, (macs, top1, name) in enumerate(stars):
            ax.plot(macs / 1e6, top1, "*", color="dimgray", markersize=11,
                    label="published (grey stars)" if n == 0 else None)
            ax.annotate(name, (macs / 1e6, top1), fontsize=6, xytext=(4, 4), textcoords="offset points",
                        color="dimgray")
        datasets = rows.get("dataset", [])
        limits = top1_limits([*_spread_values(rows), *(t for _, t, _ in stars)], datasets)
        ax.set(title=title, xlabel="MACs per image (millions)", ylabel=top1_label(datasets), ylim=limits)
        ax.grid(alpha=0.3)
        _legend(ax, labels, below=True)
        if dots is not None:
            _dot_panel(dots, rows, x.map(lambda m: f"{m:.2f}M"), limits, "MACs")
    return _save(fig, out)


def _style(method: str, schedule: str) -> tuple[str, str, str]:
    """(colour, marker, marker fill) of a method and schedule: the method's colour and marker, hollow for
    Scratch-B, a filled plus for fine-tuned inherited weights."""
    color, marker = _STYLE.get(method, ("tab:gray", "x"))
    if schedule == "finetune":
        marker = _FINETUNE_MARKER
    return color, marker, "none" if schedule == "scratch_b" else color


def accuracy_vs_cost(table: pd.DataFrame, out: str | Path) -> Figure:
    """Top-1 (mean over seeds, std as error bar where n > 1) against the compute of each network's whole chain of
    jobs (table.csv's cost_s_mean, pfs.results.cost: wall time of gate learning + pruning + training for PFS, of
    pretraining + pruning + fine-tuning for the classic baseline, shared jobs in full; std over seeds as error bar),
    at its true cost, in the colours and markers of accuracy_vs_macs; a dotted line from each point to the left
    spans the part shared with other rows (its right end: the cost of this network alone, its left end: without
    the shared jobs), named in the legend. One panel per dataset, number of classes and arch, with a dot panel
    where points crowd one cost; rows without a recorded cost are left out. The y axis as in accuracy_vs_macs."""
    known = table[pd.to_numeric(table["cost_s_mean"], errors="coerce").notna()] if "cost_s_mean" in table else (
        table.iloc[0:0])
    panels = [(title, known.loc[known.index.intersection(rows.index)]) for title, rows in _panels(table)]
    _, unit = scale(float(known["cost_s_mean"].max())) if len(known) else (0.0, "s")
    xs = [in_unit(rows["cost_s_mean"].astype(float), unit) for _, rows in panels]
    fig, axes = _figure(panels, xs)
    for (ax, dots), (title, rows), cost in zip(axes, panels, xs, strict=True):
        labels = _errorbars(ax, rows, cost, in_unit(rows["cost_s_std"].astype(float), unit))
        _shared_lines(ax, rows, cost, unit)
        datasets = rows.get("dataset", [])
        limits = top1_limits(_spread_values(rows), datasets)
        ax.set(title=title if len(rows) else f"{title}: no cost recorded",
               xlabel=f"cost of the network's whole chain of jobs (wall {unit})", ylabel=top1_label(datasets),
               ylim=limits)
        ax.set_xlim(left=0)
        ax.grid(alpha=0.3)
        _legend(ax, labels, below=True)
        if dots is not None:
            _dot_panel(dots, rows, cost.map(lambda c: f"{c:.3g} {unit}"), limits, "cost")
    return _save(fig, out)


def _shared_lines(ax, rows: pd.DataFrame, cost: pd.Series, unit: str) -> None:
    """The dotted line left of each point over the part of its cost shared with other rows, one legend entry."""
    first = True
    for (method, schedule), sub in rows.groupby(["method", "schedule"], sort=False):
        color = _style(method, schedule)[0]
        shared = in_unit(sub["shared_s_mean"].fillna(0).astype(float), unit)
        for x, s, y in zip(cost[sub.index], shared, 100 * sub["top1_mean"], strict=True):
            if s > 0:
                ax.plot([x - s, x], [y, y], ":", color=color, linewidth=1,
                        label="part shared with other rows (dotted, in its colour)" if first else None)
                first = False


_PRUNES_STANDARD = ("l1", "slim", "uniform")  # methods that prune the standard network: full_widths is its widths


def _standard(doc: dict, docs: list[dict], standard_widths: Callable[[str], list[int]] | None) -> list[int] | None:
    """The standard network's widths for ``doc``'s arch: from ``standard_widths`` (pfs.models.default_widths, which
    the workflow passes: results import pfs.core only), else the full widths of a file of the same arch pruned from
    the standard network (_PRUNES_STANDARD), else None."""
    if standard_widths is not None:
        return [int(w) for w in standard_widths(doc["arch"])]
    for other in [doc, *docs]:
        if other["arch"] == doc["arch"] and other.get("method") in _PRUNES_STANDARD:
            return [int(w) for w in other["full_widths"]]
    return None


def channel_widths(channels_files: list[str], out: str | Path,
                   standard_widths: Callable[[str], list[int]] | None = None) -> Figure:
    """Per prunable group: the kept width of each pruned network (coloured bars) against the STANDARD network's
    width (grey bars, the same reference for every method; ``standard_widths``: arch -> those widths, see _standard);
    where a network was pruned from a wider one (gates learned at expansion e20), that network's width as a black
    tick per group, labelled with its expansion. All panels share one scale, so the kept widths of gates, L1 norms
    and the uniform factor compare bar by bar."""
    docs = [io.load_yaml_artifact(p, "pfs.channels") for p in sorted(channels_files)[:_MAX_PANELS]]
    fig, axes = plt.subplots(max(1, len(docs)), 1, figsize=(10, 2.8 * max(1, len(docs))), squeeze=False,
                             sharey=True)
    for ax, doc in zip(axes[:, 0], docs, strict=False):
        x = np.arange(len(doc["widths"]))
        standard = _standard(doc, docs, standard_widths)
        if standard is not None:
            ax.bar(x, standard, color="lightgray", label="standard network")
        ax.bar(x, doc["widths"], width=0.55, color=_STYLE.get(doc.get("method", "pfs"), _STYLE["pfs"])[0],
               label="kept")
        if standard is None or list(doc["full_widths"]) != standard:
            ax.plot(x, doc["full_widths"], "_", color="black", markersize=14, markeredgewidth=2, linestyle="none",
                    label=f"pruned from: the e{doc['expansion']} network (before pruning)")
        ax.set(title=f"{run_label(doc)}: {doc.get('method', 'pfs')}, MACs reduction {doc['achieved_ratio']:.3f}",
               xlabel="prunable group (input to output)", ylabel="channels")
        _legend(ax, ["standard network", "kept"])
    if not docs:
        axes[0, 0].set_title("no pruned networks")
    return _save(fig, out)


def _stages(widths: list[int]) -> list[list[int]]:
    """Group indices split where the full width changes (a network stage: ResNet 16/32/64, VGG 64/128/...)."""
    stages: list[list[int]] = []
    for i, w in enumerate(widths):
        if not stages or widths[stages[-1][-1]] != w:
            stages.append([])
        stages[-1].append(i)
    return stages


def _thresholds(gates_file: str, channels: list[dict]) -> list[tuple[float, float]]:
    """(target ratio, threshold) of every channels.yaml pruned from ``gates_file`` (its gates_file field), by ratio:
    the score of the weakest channel ranking kept."""
    mine = [d for d in channels if d.get("gates_file") and d.get("threshold") is not None
            and os.path.normpath(str(d["gates_file"])) == os.path.normpath(str(gates_file))]
    return sorted({(float(d.get("target_ratio") or 0), float(d["threshold"])) for d in mine})


def gate_histograms(gates_files: list[str], out: str | Path, bins: int = 20,
                    channels_files: Sequence[str] = ()) -> Figure:
    """Small multiples of the selected gate values: one row per gates file, one panel per network stage (groups
    of the same width), every panel over gate values 0 to 1 with the same bins, the bar heights the fraction of
    that stage's channels (so stages of different widths compare). The pruning threshold of each channels.yaml
    pruned from a gates file (``channels_files``) as a dashed vertical line on its row, named in the legend: the
    channels at or above it (ties aside) are kept."""
    files = sorted(gates_files)[:_MAX_PANELS]
    docs = [io.load_artifact(p, "pfs.gates") for p in files]
    channels = [io.load_yaml_artifact(p, "pfs.channels") for p in channels_files]
    stages = [_stages(doc["widths"]) for doc in docs]
    cols = max([len(s) for s in stages] or [1])
    fig, axes = plt.subplots(max(1, len(docs)), cols, figsize=(3.2 * cols, 2.6 * max(1, len(docs))),
                             squeeze=False, sharex=True, sharey="row")
    edges = np.linspace(0, 1, bins + 1)
    for row, (path, doc, groups) in enumerate(zip(files, docs, stages, strict=True)):
        gates, widths = doc["gates"], doc["widths"]
        thresholds = _thresholds(path, channels)
        for n, ax in enumerate(axes[row]):
            if n >= len(groups):
                ax.set_axis_off()
                continue
            values = torch.cat([gates[i].flatten() for i in groups[n]]).float().numpy()
            ax.hist(values, bins=edges, weights=np.full(len(values), 1 / max(1, len(values))),
                    color=f"C{n}", edgecolor="white", linewidth=0.5)
            for k, (ratio, threshold) in enumerate(thresholds):
                ax.axvline(threshold, color="black", linestyle=(0, (4, 1 + 2 * k)), linewidth=1,
                           label=f"pruning threshold {threshold:.3g} (ratio {ratio:g}): kept at or above")
            ax.set_title(f"stage {n + 1}: {len(groups[n])} groups {widths[groups[n][0]]} wide, "
                         f"{len(values)} channels", fontsize=8)
            ax.set_xlim(0, 1)
            ax.grid(alpha=0.3)
            if row == len(docs) - 1:
                ax.set_xlabel("gate value")
        if thresholds:
            axes[row, 0].legend(fontsize=6)
        axes[row, 0].set_ylabel(f"{run_label(doc)}\nfraction of the stage's channels", fontsize=8)
    if not docs:
        axes[0, 0].set_title("no gate-learning runs")
    return _save(fig, out)


def labelled_histories(gates_files: Sequence[str],
                       histories: Sequence[str]) -> list[tuple[str, str, tuple[int, int] | None]]:
    """(label, gates_metrics.csv, held-out size) of each gate-learning run: the history has no identity of its own,
    so it takes the label of the gates.pt at the same position (one of each per run, in the same order), and the
    (held-out images, classes) its gates were evaluated on (pfs.method.gates.held_out_size: None where not recorded),
    which
    tell whether they beat chance."""
    if len(gates_files) != len(histories):
        raise ValueError(f"{len(histories)} gate-learning histories for {len(gates_files)} gates files; "
                         "pass one of each per run, in the same order")
    docs = [io.load_artifact(g, "pfs.gates") for g in gates_files]
    return [(run_label(doc), str(h), held_out_size(doc)) for doc, h in zip(docs, histories, strict=True)]


def gate_learning(histories: Sequence[tuple[str, str] | tuple[str, str, tuple[int, int] | None]],
                  out: str | Path) -> Figure:
    """Held-out accuracy (%), mean gate and non-zero fraction at every evaluation of gate learning; ``histories``:
    a (legend label, gates_metrics.csv[, (held-out images, classes)]) tuple per run (see labelled_histories). The
    target r is drawn on the non-zero panel, and where the held-out size is known, the accuracy that is clearly
    above chance (pfs.core.chance.chance_line) on the accuracy panel; a run that missed r or whose kept gates are near
    chance says so in its label and marks its kept evaluation in red."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    targets, chance_lines = set(), set()
    for label, path, *held_out in sorted(histories, key=lambda run: str(run[1]))[:_MAX_PANELS]:
        size = held_out[0] if held_out else None
        h = pd.read_csv(path)
        missed = "target_met" in h and not h["target_met"].any()  # no evaluation reached r: the last one is kept
        kept_top1 = h.loc[h["selected"], "val_top1"]
        near = size is not None and len(kept_top1) == 1 and not above_chance(float(kept_top1.iloc[0]), *size)
        if missed:
            label += ": target r NOT met (x: fallback kept)"
        if near:
            mark = "x" if missed else "v"
            label += f": kept gates near chance ({mark}: held-out top-1 {100 * kept_top1.iloc[0]:.2f}%)"
        if size is not None:
            chance_lines.add((100 * chance_line(*size), *size))
        h["val_top1"] = 100 * h["val_top1"]  # accuracy in %, as in every other plot
        chosen = h[h["selected"]]
        for ax, column in zip(axes, ("val_top1", "mean_gate", "nonzero_fraction"), strict=True):
            ax.plot(h["step"], h[column], marker="o", label=label)
            ax.plot(chosen["step"], chosen[column], "rX" if missed else ("rv" if near else "k*"), markersize=12)
        if "sparsity" in h:
            targets.add(float(h["sparsity"].iloc[0]))
    for r in sorted(targets):  # kept gates must lie on or below this line
        axes[2].axhline(r, color="grey", linestyle="--", linewidth=1)
        axes[2].annotate(f"target r = {r:g}", (0, r), xycoords=("axes fraction", "data"), fontsize=8,
                         xytext=(4, 3), textcoords="offset points", color="grey")
    for line, images, classes in sorted(chance_lines):  # kept gates should lie above this line
        axes[0].axhline(line, color="grey", linestyle=":", linewidth=1)
        axes[0].annotate(f"clearly above chance: > {line:.1f}% ({images} images, {classes} classes)", (0, line),
                         xycoords=("axes fraction", "data"), fontsize=8, xytext=(4, 3), textcoords="offset points",
                         color="grey")
    titles = ("held-out top-1 (%)", "mean gate", "fraction of non-zero gates")
    for ax, title in zip(axes, titles, strict=True):
        ax.set(title=f"{title} (star: kept)", xlabel="gate-learning step")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("top-1 accuracy (%)")
    axes[0].legend(fontsize=7)
    return _save(fig, out)


_CURVE_PANELS = 12  # at most this many method+schedule panels in the training-curves figure (the first ones)
_HISTORY_COLUMNS = ("epoch", "train_top1", "test_top1")


def _read_run(metrics_path: str | Path, history_path: str | Path) -> tuple[dict, pd.DataFrame]:
    """A training run's identity (metrics.json) and its per-epoch history (history.csv beside it)."""
    doc = io.load_json_artifact(metrics_path, "pfs.metrics", remedy="delete it and rerun its training")
    try:
        history = pd.read_csv(history_path)
    except FileNotFoundError:
        raise PfsError(f"{history_path} does not exist (the history of {metrics_path}); rerun its training") from None
    missing = [c for c in _HISTORY_COLUMNS if c not in history.columns]
    if missing or history.empty:
        raise PfsError(f"{history_path} has {'no column ' + ', '.join(missing) if missing else 'no epochs'}; "
                       "delete it and rerun its training")
    return doc, history


def _shade(color: str, k: int, n: int) -> tuple[float, float, float]:
    """The k-th of n shades of a method's colour (the first the colour itself, the last lighter): runs of one
    panel keep their method's colour and stay apart."""
    rgb = np.array(matplotlib.colors.to_rgb(color))
    return tuple(rgb + (1 - rgb) * (0.55 * k / max(1, n - 1)))


def _curve_label(doc: dict, varying: set[str]) -> str:
    """A run's label in its panel: its ratio (pruned networks) and seed, plus the expansion, multiplier or arch
    where they differ between the panel's runs."""
    parts = [doc["arch"]] if "arch" in varying else []
    parts += [f"e{doc[k]}" if k == "expansion" else f"m{doc[k]:g}" for k in ("expansion", "multiplier") if k in varying]
    if doc.get("method") != "full" and doc.get("ratio") is not None:
        parts.append(f"p{doc['ratio']:g}")
    parts.append(f"seed{doc['seed']}")
    return " ".join(parts)


def _curve_groups(loaded: list[tuple[dict, pd.DataFrame, str]]) -> dict[tuple, list[tuple[dict, pd.DataFrame]]]:
    """The runs of each panel, panels in the tables' order: key (dataset, arch, method order, method, schedule
    order, schedule); within a panel by ratio, expansion, seed and file."""

    def panel(d: dict) -> tuple:
        return (d["dataset"], d["arch"], METHOD_ORDER.get(d["method"], len(METHOD_ORDER)), d["method"],
                SCHEDULE_ORDER.get(d["schedule"], len(SCHEDULE_ORDER)), d["schedule"])

    groups: dict[tuple, list[tuple[dict, pd.DataFrame]]] = {}
    for doc, history, _ in sorted(loaded, key=lambda run: (panel(run[0]), run[0].get("ratio") or 0,
                                                           run[0].get("expansion") or 0, run[0]["seed"], run[2])):
        groups.setdefault(panel(doc), []).append((doc, history))
    return groups


def _curve_panel(ax, members: list[tuple[dict, pd.DataFrame]], several: bool, loss: bool = False) -> None:
    """One panel of training_curves: per run a solid test line (a dot at the last epoch; top-1: its value in the
    legend) and a thin dashed train line, in one shade of the method's colour; ``loss``: the cross-entropy panel
    (log scale) under the top-1 one, else the top-1 panel titled with the method and schedule (``several``: the
    dataset and arch too)."""
    doc0 = members[0][0]
    color = _STYLE.get(doc0["method"], ("tab:gray", "x"))[0]
    varying = {k for k in ("arch", "expansion", "multiplier") if len({d.get(k) for d, _ in members}) > 1}
    test_col, train_col, factor = ("test_loss", "train_loss", 1) if loss else ("test_top1", "train_top1", 100)
    for k, (doc, h) in enumerate(members):
        shade = _shade(color, k, len(members))
        if test_col in h:  # a history.csv written before the test loss was logged has none
            test = factor * h[test_col]
            label = None if loss else f"{_curve_label(doc, varying)}: {test.iloc[-1]:.1f}%"
            ax.plot(h["epoch"], test, "-", color=shade, linewidth=1.6, marker="o", markersize=4,
                    markevery=[len(h) - 1], label=label)
        if train_col in h:
            ax.plot(h["epoch"], factor * h[train_col], "--", color=shade, linewidth=0.8)
    ax.grid(alpha=0.3)
    if loss:
        ax.set_yscale("log")
        return
    epochs = {len(h) for _, h in members}
    title = f"{doc0['method']}, {SCHEDULE_NAMES.get(doc0['schedule'], doc0['schedule'])}"
    title += f" ({epochs.pop()} epochs)" if len(epochs) == 1 else ""
    ax.set_title(f"{doc0['arch']} on {doc0['dataset']}: {title}" if several else title, fontsize=10)
    ax.legend(fontsize=7, loc="lower right", title="last-epoch test top-1", title_fontsize=7)


def _label_outer_panels(axes: np.ndarray, labels: Sequence[str]) -> None:
    """The y label of each row (``labels``) on its first visible panel, the x label and ticks on the lowest
    visible panel of each column."""
    visible = np.array([[ax.axison for ax in row] for row in axes])
    for (r, c), ax in np.ndenumerate(axes):
        if not visible[r, c]:
            continue
        if not visible[r, :c].any():
            ax.set_ylabel(labels[r], fontsize=8)
        if not visible[r + 1:, c].any():
            ax.set_xlabel("epoch")
            ax.xaxis.set_tick_params(labelbottom=True)


def _curve_limits(loaded: list[tuple[dict, pd.DataFrame, str]]) -> tuple[tuple[float, float], tuple[float, float]]:
    """(top-1 limits in %, loss limits) shared by every panel: top-1 over the second half of every run's epochs
    (where training settles; the first epochs, near chance, enter from below), widened as on the accuracy plots
    (top1_limits); the loss over every epoch, on a log scale."""
    late = [v for _, h, _ in loaded for v in 100 * h[["test_top1", "train_top1"]].iloc[len(h) // 2:].to_numpy().ravel()]
    top1 = top1_limits(late, [d["dataset"] for d, _, _ in loaded])
    losses = [v for _, h, _ in loaded for c in ("test_loss", "train_loss") if c in h for v in h[c] if v > 0]
    return top1, ((min(losses) / 1.5, max(losses) * 1.5) if losses else (0.01, 10.0))


def training_curves(runs: Sequence[tuple[str, str]], out: str | Path) -> Figure:
    """Test and train top-1 (%) and cross-entropy loss at every epoch of every training run: ``runs``, a
    (metrics.json, history.csv) pair per run. Small multiples: per method (per dataset and arch where the grid has
    several) a row of top-1 panels over a row of loss panels, one column per schedule (Scratch-E, Scratch-B,
    fine-tuned), all on the same axes (Scratch-B's longer budget shows as a longer curve): the top-1 axis spans the
    second half of the runs' epochs (_curve_limits), the loss a log scale. In each panel one solid line per run
    (test, a dot at the last epoch: what the tables report, its top-1 in the legend) and a thin dashed line of the
    same colour (train, over each epoch's augmented batches while training; its loss label-smoothed where the
    recipe smooths), in the method's colour, one shade per run. At most _CURVE_PANELS method+schedule groups."""
    loaded = [(*_read_run(m, h), str(m)) for m, h in runs]
    groups = _curve_groups(loaded)
    shown = list(groups)[:_CURVE_PANELS]
    rows = list(dict.fromkeys(key[:4] for key in shown))  # (dataset, arch, method order, method)
    cols = sorted({key[4:] for key in shown})  # (schedule order, schedule)
    nrows, ncols = max(1, len(rows)), max(1, len(cols))
    fig, axes = plt.subplots(2 * nrows, ncols, figsize=(4.8 * ncols, 0.6 + 4.4 * nrows), squeeze=False,
                             sharex=True, gridspec_kw={"height_ratios": [3, 1.6] * nrows})
    if not shown:
        axes[0, 0].set_title("no training runs")
        return _save(fig, out)
    several = len({key[:2] for key in shown}) > 1  # several datasets or archs: the titles name them
    top1, loss = _curve_limits(loaded)
    for (r, c), ax in np.ndenumerate(axes):
        key = (*rows[r // 2], *cols[c])
        if key not in shown:
            ax.set_axis_off()
            continue
        _curve_panel(ax, groups[key], several, loss=r % 2 == 1)
        ax.set_ylim(*(loss if r % 2 else top1))
    _label_outer_panels(axes, [top1_label(d["dataset"] for d, _, _ in loaded), "cross-entropy loss (log)"] * nrows)
    styles = [Line2D([], [], color="dimgray", linewidth=1.6, marker="o", markersize=4, markevery=[1],
                     label="test set (solid; dot: the last epoch, what the tables report)"),
              Line2D([], [], color="dimgray", linewidth=0.8, linestyle="--",
                     label="training batches during each epoch (dashed, thin)")]
    more = f"; first {len(shown)} of {len(groups)} method+schedule groups" if len(groups) > len(shown) else ""
    height = fig.get_size_inches()[1]
    fig.legend(handles=styles, loc="upper center", ncol=2, fontsize=8, frameon=False,
               title=f"every training run's history.csv{more}; top-1 axis: the second half of the epochs",
               title_fontsize=8)
    return _save(fig, out, rect=(0, 0, 1, 1 - 0.55 / height))
