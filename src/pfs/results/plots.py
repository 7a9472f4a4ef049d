"""Figures of a finished grid (matplotlib, PNG): accuracy vs MACs and vs compute cost per method, pruned widths per
layer, learned gate values per stage, the gate-learning curves and the training curves of every run."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.transforms import offset_copy  # noqa: E402

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
_OFFSET_PT = 7.0  # horizontal spread (points) between methods drawn at (nearly) the same x
_CLUSTER = 0.03  # points closer than this fraction of a panel's largest x count as one place


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


def x_offsets(xs: Sequence[float]) -> list[float]:
    """A deterministic horizontal offset (in points) per point so that points at (nearly) the same x do not hide
    one another: points within _CLUSTER of the largest x of each other form a group, spread symmetrically about
    their x in the order given (0 for a point alone)."""
    xs = [float(x) for x in xs]
    if not xs:
        return []
    tol = _CLUSTER * max(abs(x) for x in xs)
    order = sorted(range(len(xs)), key=lambda i: (xs[i], i))
    groups: list[list[int]] = []
    for i in order:
        if groups and xs[i] - xs[groups[-1][0]] <= tol:
            groups[-1].append(i)
        else:
            groups.append([i])
    offsets = [0.0] * len(xs)
    for group in groups:
        for k, i in enumerate(sorted(group)):  # in drawing order, left to right
            offsets[i] = (k - (len(group) - 1) / 2) * _OFFSET_PT
    return offsets


def _errorbars(ax, fig, rows: pd.DataFrame, x: pd.Series, xerr: pd.Series | None = None) -> None:
    """Top-1 mean ± std (in %) of each row at ``x``, one colour and marker per method and schedule, with the
    overlapping points of one place shifted sideways (x_offsets: the shift is in points, the data stay put)."""
    series = list(rows.groupby(["method", "schedule"], sort=False))
    flat = [(method, schedule, i) for (method, schedule), sub in series for i in sub.index]
    offsets = dict(zip([i for *_, i in flat], x_offsets([x[i] for *_, i in flat]), strict=True))
    for (method, schedule), sub in series:
        color, marker, fill = _style(method, schedule)
        for n, i in enumerate(sub.index):
            transform = offset_copy(ax.transData, fig=fig, x=offsets[i], y=0, units="points")
            ax.errorbar([x[i]], [100 * rows.at[i, "top1_mean"]], yerr=[100 * rows.at[i, "top1_std"]],
                        xerr=None if xerr is None else [xerr[i]], fmt=marker, color=color, mfc=fill, capsize=3,
                        transform=transform, label=f"{method} {schedule}" if n == 0 else None)
    near = rows.index[_near_chance(rows)]
    for n, i in enumerate(near):  # a red ring and a word under each point whose gates barely beat chance
        y = 100 * rows.at[i, "top1_mean"]
        transform = offset_copy(ax.transData, fig=fig, x=offsets[i], y=0, units="points")
        ax.plot([x[i]], [y], "o", markersize=15, mfc="none", mec="red", mew=1.5, transform=transform,
                label="kept gates near chance (red ring)" if n == 0 else None)
        ax.annotate("gates near chance", (x[i], y), xytext=(offsets[i], -16), textcoords="offset points",
                    fontsize=6, color="red", ha="center")
    # a shifted transform keeps matplotlib from autoscaling to these points: give it their extent (bars included)
    for i in rows.index:
        y, dy = 100 * rows.at[i, "top1_mean"], 100 * float(rows.at[i, "top1_std"])
        dx = 0.0 if xerr is None else float(xerr[i])
        ax.update_datalim([(x[i] - dx, y - dy), (x[i] + dx, y + dy)])
    ax.autoscale_view()
    _room_for_offsets(ax, fig, [offsets[i] for *_, i in flat])


def _near_chance(rows: pd.DataFrame) -> pd.Series:
    """Per table row: whether the kept gates of some seed are near chance (table.csv's gates_near_chance, True,
    False or empty; a table without the column: False)."""
    if "gates_near_chance" not in rows.columns:
        return pd.Series(False, index=rows.index)
    return rows["gates_near_chance"].map(lambda v: not pd.isna(v) and str(v).strip().lower() in ("true", "1", "1.0"))


def _room_for_offsets(ax, fig, offsets: Sequence[float]) -> None:
    """Widen the x range so that points shifted sideways by ``offsets`` (points) stay inside the axes: a range R
    drawn W points wide needs R / (1 - 2 m / W) for a shift of m points on each side (W taken at 80% of the axes'
    present width, leaving room for tight_layout to shrink it)."""
    shift = max((abs(o) for o in offsets), default=0.0)
    if not shift:
        return
    width = 0.8 * fig.get_figwidth() * 72 * ax.get_position().width
    left, right = ax.get_xlim()
    grown = (right - left) / max(1 - 2 * shift / width, 0.5)
    pad = shift * grown / width
    ax.set_xlim(left - pad, right + pad)


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


def accuracy_vs_macs(table: pd.DataFrame, out: str | Path, references: pd.DataFrame | None = None) -> Figure:
    """Top-1 in % (mean over seeds, std as error bar) against MACs, one colour per method, one panel per dataset,
    number of classes and arch; methods at (nearly) the same MACs drawn side by side (x_offsets); the y label says
    how much one test image is where the test set's size is known. Published ``references``
    (pfs.results.references.compare's rows) comparable with a panel's runs (same dataset, arch, number of classes and
    split) as labelled grey stars, at their stated MACs or else at their ratio of our standard network's MACs."""
    panels = _panels(table)
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False)
    refs = references if references is not None else pd.DataFrame()
    for ax, (title, rows) in zip(axes[0], panels, strict=True):
        _errorbars(ax, fig, rows, rows["macs"] / 1e6)
        for n, (macs, top1, name) in enumerate(reference_points(rows, refs)):
            ax.plot(macs / 1e6, top1, "*", color="dimgray", markersize=11,
                    label="published (grey stars)" if n == 0 else None)
            ax.annotate(name, (macs / 1e6, top1), fontsize=6, xytext=(4, 4), textcoords="offset points",
                        color="dimgray")
        ax.set(title=title, xlabel="MACs (millions; methods at one MACs value drawn side by side)",
               ylabel=top1_label(rows.get("dataset", [])))
        ax.grid(alpha=0.3)
        if len(rows):
            ax.legend(fontsize=8)
    return _save(fig, out)


def _style(method: str, schedule: str) -> tuple[str, str, str]:
    """(colour, marker, marker fill) of a method and schedule: the method's colour and marker, hollow for
    Scratch-B, a filled plus for fine-tuned inherited weights."""
    color, marker = _STYLE.get(method, ("tab:gray", "x"))
    if schedule == "finetune":
        marker = _FINETUNE_MARKER
    return color, marker, "none" if schedule == "scratch_b" else color


def accuracy_vs_cost(table: pd.DataFrame, out: str | Path) -> Figure:
    """Top-1 (mean over seeds, std as error bar) against the compute of each network's whole chain of jobs
    (table.csv's cost_s_mean, pfs.results.cost: wall time of gate learning + pruning + training for PFS, of pretraining
    +
    pruning + fine-tuning for the classic baseline, shared jobs in full; std over seeds as error bar), in the
    colours and markers of accuracy_vs_macs; a dotted line from each point to the left spans the part shared with
    other rows (its right end: the cost of this network alone, its left end: without the shared jobs). One panel
    per dataset, number of classes and arch; rows without a recorded cost are left out. Top-1 in %, the y label
    with the test-set granularity as in accuracy_vs_macs; points at (nearly) the same cost drawn side by side."""
    known = table[pd.to_numeric(table["cost_s_mean"], errors="coerce").notna()] if "cost_s_mean" in table else (
        table.iloc[0:0])
    panels = _panels(table)
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False)
    _, unit = scale(float(known["cost_s_mean"].max())) if len(known) else (0.0, "s")
    for ax, (title, rows) in zip(axes[0], panels, strict=True):
        rows = known.loc[known.index.intersection(rows.index)]
        cost = in_unit(rows["cost_s_mean"].astype(float), unit)
        _errorbars(ax, fig, rows, cost, in_unit(rows["cost_s_std"].fillna(0).astype(float), unit))
        for (method, schedule), sub in rows.groupby(["method", "schedule"], sort=False):
            color = _style(method, schedule)[0]
            shared = in_unit(sub["shared_s_mean"].fillna(0).astype(float), unit)
            for x, s, y in zip(cost[sub.index], shared, 100 * sub["top1_mean"], strict=True):
                if s > 0:
                    ax.plot([x - s, x], [y, y], ":", color=color, linewidth=1)
        ax.set(title=title if len(rows) else f"{title}: no cost recorded",
               xlabel=f"cost of the network's whole chain of jobs (wall {unit})",
               ylabel=top1_label(rows.get("dataset", [])))
        ax.set_xlim(left=0)
        ax.grid(alpha=0.3)
        if len(rows):
            ax.legend(fontsize=8)
    return _save(fig, out)


def channel_widths(channels_files: list[str], out: str | Path) -> Figure:
    """Per prunable group: the kept width of each pruned network against its full (expanded) width; each panel's
    y axis names the expansion it is drawn at (the uniform baseline's differs from the learned gates'), and all
    share one scale, so the kept widths of gates, L1 norms and the uniform factor compare bar by bar."""
    docs = [io.load_yaml_artifact(p, "pfs.channels") for p in sorted(channels_files)[:_MAX_PANELS]]
    fig, axes = plt.subplots(max(1, len(docs)), 1, figsize=(10, 2.8 * max(1, len(docs))), squeeze=False,
                             sharey=True)
    for ax, doc in zip(axes[:, 0], docs, strict=False):
        x = range(len(doc["widths"]))
        ax.bar(x, doc["full_widths"], color="lightgray", label="before pruning")
        ax.bar(x, doc["widths"], color=_STYLE.get(doc.get("method", "pfs"), _STYLE["pfs"])[0], label="kept")
        ax.set(title=f"{run_label(doc)}: {doc.get('method', 'pfs')}, MACs reduction {doc['achieved_ratio']:.3f}",
               xlabel="prunable group (input to output)", ylabel=f"channels (expansion {doc['expansion']})")
        ax.legend(fontsize=8)
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


def gate_histograms(gates_files: list[str], out: str | Path, bins: int = 20) -> Figure:
    """Small multiples of the selected gate values: one row per gates file, one panel per network stage (groups
    of the same width), every panel over gate values 0 to 1 with the same bins, the bar heights the fraction of
    that stage's channels (so stages of different widths compare)."""
    docs = [io.load_artifact(p, "pfs.gates") for p in sorted(gates_files)[:_MAX_PANELS]]
    stages = [_stages(doc["widths"]) for doc in docs]
    cols = max([len(s) for s in stages] or [1])
    fig, axes = plt.subplots(max(1, len(docs)), cols, figsize=(3.2 * cols, 2.6 * max(1, len(docs))),
                             squeeze=False, sharex=True, sharey="row")
    edges = np.linspace(0, 1, bins + 1)
    for row, (doc, groups) in enumerate(zip(docs, stages, strict=True)):
        gates, widths = doc["gates"], doc["widths"]
        for n, ax in enumerate(axes[row]):
            if n >= len(groups):
                ax.set_axis_off()
                continue
            values = torch.cat([gates[i].flatten() for i in groups[n]]).float().numpy()
            ax.hist(values, bins=edges, weights=np.full(len(values), 1 / max(1, len(values))),
                    color=f"C{n}", edgecolor="white", linewidth=0.5)
            ax.set_title(f"stage {n + 1}: {len(groups[n])} groups {widths[groups[n][0]]} wide, "
                         f"{len(values)} channels", fontsize=8)
            ax.set_xlim(0, 1)
            ax.grid(alpha=0.3)
            if row == len(docs) - 1:
                ax.set_xlabel("gate value")
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


def _curve_panel(ax, members: list[tuple[dict, pd.DataFrame]], several: bool) -> None:
    """One panel of training_curves: per run a solid test top-1 line (a dot and its value at the last epoch) and
    a thin dashed train top-1 line, in one shade of the method's colour; ``several``: the title names the dataset
    and arch."""
    doc0 = members[0][0]
    color = _STYLE.get(doc0["method"], ("tab:gray", "x"))[0]
    varying = {k for k in ("arch", "expansion", "multiplier") if len({d.get(k) for d, _ in members}) > 1}
    for k, (doc, h) in enumerate(members):
        shade = _shade(color, k, len(members))
        test, train = 100 * h["test_top1"], 100 * h["train_top1"]
        ax.plot(h["epoch"], test, "-", color=shade, linewidth=1.6, marker="o", markersize=4,
                markevery=[len(h) - 1], label=f"{_curve_label(doc, varying)}: {test.iloc[-1]:.1f}%")
        ax.plot(h["epoch"], train, "--", color=shade, linewidth=0.8)
    epochs = {len(h) for _, h in members}
    title = f"{doc0['method']}, {SCHEDULE_NAMES.get(doc0['schedule'], doc0['schedule'])}"
    title += f" ({epochs.pop()} epochs)" if len(epochs) == 1 else ""
    ax.set_title(f"{doc0['arch']} on {doc0['dataset']}: {title}" if several else title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right", title="last-epoch test top-1", title_fontsize=7)


def _label_outer_panels(axes: np.ndarray, label: str) -> None:
    """The y label (``label``) on the first visible panel of each row, the x label and ticks on the lowest
    visible panel of each column."""
    visible = np.array([[ax.axison for ax in row] for row in axes])
    for (r, c), ax in np.ndenumerate(axes):
        if not visible[r, c]:
            continue
        if not visible[r, :c].any():
            ax.set_ylabel(label, fontsize=8)
            ax.yaxis.set_tick_params(labelleft=True)
        if not visible[r + 1:, c].any():
            ax.set_xlabel("epoch")
            ax.xaxis.set_tick_params(labelbottom=True)


def training_curves(runs: Sequence[tuple[str, str]], out: str | Path) -> Figure:
    """Test and train top-1 (%) at every epoch of every training run: ``runs``, a (metrics.json, history.csv)
    pair per run. Small multiples: one row per method (per dataset and arch where the grid has several), one
    column per schedule (Scratch-E, Scratch-B, fine-tuned), all panels on the same axes (Scratch-B's longer
    budget shows as a longer curve); in each panel one solid line per run (test top-1, a dot at the last epoch:
    what the tables report, its value in the legend) and a thin dashed line of the same colour (train top-1,
    counted over each epoch's augmented batches while training), in the method's colour, one shade per run. At
    most _CURVE_PANELS panels (the first ones in the tables' order)."""
    loaded = [(*_read_run(m, h), str(m)) for m, h in runs]
    groups = _curve_groups(loaded)
    shown = list(groups)[:_CURVE_PANELS]
    rows = list(dict.fromkeys(key[:4] for key in shown))  # (dataset, arch, method order, method)
    cols = sorted({key[4:] for key in shown})  # (schedule order, schedule)
    fig, axes = plt.subplots(max(1, len(rows)), max(1, len(cols)), figsize=(4.8 * max(1, len(cols)),
                             0.6 + 3.0 * max(1, len(rows))), squeeze=False, sharex=True, sharey=True)
    if not shown:
        axes[0, 0].set_title("no training runs")
        return _save(fig, out)
    label = top1_label(d["dataset"] for d, _, _ in loaded)
    several = len({key[:2] for key in shown}) > 1  # several datasets or archs: the titles name them
    for (r, c), ax in np.ndenumerate(axes):
        key = (*rows[r], *cols[c])
        if key not in shown:
            ax.set_axis_off()
            continue
        _curve_panel(ax, groups[key], several)
    _label_outer_panels(axes, label)
    highest = max(float(100 * h[["test_top1", "train_top1"]].max().max()) for _, h, _ in loaded)
    axes[0, 0].set_ylim(top=min(101.0, highest + 2))  # shared by every panel: no room wasted above 100%
    styles = [Line2D([], [], color="dimgray", linewidth=1.6, marker="o", markersize=4, markevery=[1],
                     label="test top-1 (solid; dot: the last epoch, what the tables report)"),
              Line2D([], [], color="dimgray", linewidth=0.8, linestyle="--",
                     label="train top-1 (dashed, thin; on the training batches during each epoch)")]
    more = f"; first {len(shown)} of {len(groups)} method+schedule groups" if len(groups) > len(shown) else ""
    height = fig.get_size_inches()[1]
    fig.legend(handles=styles, loc="upper center", ncol=2, fontsize=8, frameon=False,
               title=f"every training run's history.csv{more}", title_fontsize=8)
    return _save(fig, out, rect=(0, 0, 1, 1 - 0.55 / height))
