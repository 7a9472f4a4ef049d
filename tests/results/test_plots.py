"""The plots (pfs.results.plots): where the accuracy plot's grey stars go, that the PNG is written, and the
gate-learning
curves labelled from the gates files."""

from __future__ import annotations

import pandas as pd
import pytest

from pfs.core import io
from pfs.results.plots import accuracy_vs_macs, labelled_histories, reference_points
from pfs.results.references import COMPARISON_COLUMNS


def _table() -> pd.DataFrame:
    return pd.DataFrame([
        {"dataset": "cifar10", "num_classes": 10, "arch": "resnet56", "method": "full", "schedule": "scratch_e",
         "macs": 125.0e6, "macs_reduction": 0.0, "top1_mean": 0.94, "top1_std": 0.002},
        {"dataset": "cifar10", "num_classes": 10, "arch": "resnet56", "method": "pfs", "schedule": "scratch_b",
         "macs": 62.5e6, "macs_reduction": 0.5, "top1_mean": 0.935, "top1_std": 0.001},
        {"dataset": "cifar10", "num_classes": 10, "arch": "vgg16_bn", "method": "pfs", "schedule": "scratch_b",
         "macs": 150e6, "macs_reduction": 0.52, "top1_mean": 0.93, "top1_std": 0.0},
    ])


def _refs(rows) -> pd.DataFrame:
    """Comparison rows (pfs.results.references.compare), comparable with our 10-class runs unless a row says
    otherwise."""
    rows = [{"num_classes": 10, "ref_num_classes": 10, "comparable": True, **row} for row in rows]
    return pd.DataFrame(rows).reindex(columns=COMPARISON_COLUMNS)


def test_references_sit_at_their_macs_or_at_their_ratio_of_our_standard_network():
    refs = _refs([
        {"dataset": "cifar10", "arch": "resnet56", "ref_method": "A", "ref_ratio": 0.6, "ref_top1": 92.0},
        {"dataset": "cifar10", "arch": "resnet56", "ref_method": "B", "ref_ratio": 0.5, "ref_macs": 60e6,
         "ref_top1": 93.0},
        {"dataset": "cifar10", "arch": "resnet56", "ref_method": "B", "ref_ratio": 0.5, "ref_macs": 60e6,
         "ref_top1": 93.0},  # the same reference matched twice (two runs of ours): one star
        {"dataset": "cifar10", "arch": "resnet56", "ref_method": "empty", "ref_ratio": 0.5},
        {"dataset": "cifar10", "arch": "vgg16_bn", "ref_method": "C", "ref_ratio": 0.5, "ref_top1": 93.5},
    ])
    table = _table()
    points = reference_points(table[table["arch"] == "resnet56"], refs)
    assert points == [(pytest.approx(0.4 * 125e6), 92.0, "A"), (60e6, 93.0, "B")]
    vgg = reference_points(table[table["arch"] == "vgg16_bn"], refs)
    assert vgg == [(pytest.approx(0.5 * 150e6 / 0.48), 93.5, "C")]
    assert reference_points(table, _refs([])) == []


def _imagenet(classes: int) -> pd.DataFrame:
    """An unpruned MobileNetV2 table row on ImageNet over ``classes`` classes (1000: ILSVRC2012; fewer: a subset)."""
    return pd.DataFrame([{"dataset": "imagenet", "num_classes": classes, "arch": "mobilenet_v2", "method": "full",
                          "schedule": "scratch_e", "macs": 300e6, "macs_reduction": 0.0, "top1_mean": 0.3,
                          "top1_std": 0.0}])


# torchvision's 1000-class figure beside a grid with a 10-class toy run and a 1000-class run (compare's two rows)
TORCHVISION = [
    {"dataset": "imagenet", "arch": "mobilenet_v2", "ref_method": "torchvision", "ref_ratio": 0.0, "ref_top1": 71.88,
     "ref_num_classes": 1000, "num_classes": 10, "comparable": False,
     "not_comparable": "reference: 1000 classes, this run: 10"},
    {"dataset": "imagenet", "arch": "mobilenet_v2", "ref_method": "torchvision", "ref_ratio": 0.0, "ref_top1": 71.88,
     "ref_num_classes": 1000, "num_classes": 1000},
]


def test_references_over_other_classes_are_not_drawn():
    refs = _refs(TORCHVISION)
    assert reference_points(_imagenet(10), refs) == []
    assert reference_points(_imagenet(1000), refs) == [(pytest.approx(300e6), 71.88, "torchvision")]
    old = refs.drop(columns=["comparable"])  # a comparison.csv written before classes were matched: no star
    assert reference_points(_imagenet(1000), old) == []


def test_accuracy_plot_has_a_panel_per_number_of_classes_and_stars_only_where_comparable(tmp_path, monkeypatch):
    from pfs.results import plots

    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, out: figures.append(fig))
    accuracy_vs_macs(pd.concat([_imagenet(10), _imagenet(1000)]), tmp_path / "a.png", _refs(TORCHVISION))
    axes = figures[0].axes
    assert [ax.get_title() for ax in axes] == ["mobilenet_v2 on imagenet (10 classes)",
                                               "mobilenet_v2 on imagenet (1000 classes)"]
    assert [sum(line.get_marker() == "*" for line in ax.lines) for ax in axes] == [0, 1]


def test_accuracy_plot_is_written_with_and_without_references(tmp_path):
    refs = _refs([{"dataset": "cifar10", "arch": "resnet56", "ref_method": "A", "ref_ratio": 0.6, "ref_top1": 92.0}])
    for name, references in (("with.png", refs), ("without.png", None)):
        accuracy_vs_macs(_table(), tmp_path / name, references)
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


def _history(path, nonzero: list[float], sparsity: float | None = 0.5, top1: float = 0.2):
    rows = [{"eval": i + 1, "epoch": i + 1, "step": 10 * (i + 1), "val_top1": top1, "mean_gate": 0.5,
             "nonzero_fraction": nz} for i, nz in enumerate(nonzero)]
    frame = pd.DataFrame(rows)
    if sparsity is not None:  # histories written before the target was recorded lack these two columns
        frame["sparsity"] = sparsity
        frame["target_met"] = frame["nonzero_fraction"] <= sparsity
    ok = frame[frame["nonzero_fraction"] <= 0.5]
    frame["selected"] = frame["eval"] == (ok["eval"].iloc[-1] if len(ok) else frame["eval"].iloc[-1])
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return str(path)


def _gates(path, seed: int, sparsity: float = 0.5, held_out: int | None = None) -> str:
    """A gates.pt carrying only the identity fields the labels read (and, with ``held_out``, the held-out images
    and classes its gates were evaluated on)."""
    extra = {} if held_out is None else {"val_indices": list(range(held_out)), "num_classes": 10}
    io.save_artifact(path, "pfs.gates", {"arch": "resnet20", "dataset": "cifar10", "expansion": 20,
                                         "multiplier": 1.0, "sparsity": sparsity, "seed": seed, **extra})
    return str(path)


def test_histories_are_labelled_from_their_gates_files_not_their_paths(tmp_path):
    gates = [_gates(tmp_path / "a.pt", 0), _gates(tmp_path / "b.pt", 3, sparsity=0.25, held_out=300)]
    histories = [_history(tmp_path / "x.csv", [0.9]), _history(tmp_path / "y" / "z.csv", [0.9])]
    assert labelled_histories(gates, histories) == [("resnet20 e20 m1 r0.5 seed0", histories[0], None),
                                                    ("resnet20 e20 m1 r0.25 seed3", histories[1], (300, 10))]
    with pytest.raises(ValueError, match="2 gate-learning histories for 1 gates files"):
        labelled_histories(gates[:1], histories)


def test_gate_learning_plot_draws_the_target_and_marks_runs_that_missed_it(tmp_path, monkeypatch):
    from pfs.results import plots

    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, out: figures.append(fig))
    met = _history(tmp_path / "run_a.csv", [0.9, 0.4])
    missed = _history(tmp_path / "run_b.csv", [0.9, 0.8])
    old = _history(tmp_path / "run_c.csv", [0.9, 0.8], sparsity=None)
    plots.gate_learning([("old run", old), ("met run", met), ("missed run", missed)], tmp_path / "gate_learning.png")
    axes = figures[0].axes
    labels = [text.get_text() for text in axes[0].get_legend().get_texts()]
    assert labels == ["met run", "missed run: target r NOT met (x: fallback kept)",
                      "old run"]  # in path order; no target recorded: nothing claimed
    assert [line.get_ydata()[0] for line in axes[2].lines if line.get_linestyle() == "--"] == [0.5]
    markers = [line.get_marker() for line in axes[2].lines if line.get_linestyle() == "None"]
    assert markers == ["*", "X", "*"]


def test_gate_learning_plot_draws_the_chance_line_and_marks_kept_gates_near_chance(tmp_path, monkeypatch):
    from pfs.results import plots

    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, out: figures.append(fig))
    # 300 held-out CIFAR-10 images: clearly above chance means above 10% + 3 sd = 15.2% (pfs.core.chance.chance_line)
    near = _history(tmp_path / "run_a.csv", [0.9, 0.4], top1=0.1367)
    clear = _history(tmp_path / "run_b.csv", [0.9, 0.4], top1=0.40)
    both = _history(tmp_path / "run_c.csv", [0.9, 0.8], top1=0.1367)
    unknown = _history(tmp_path / "run_d.csv", [0.9, 0.4], top1=0.1367)  # no held-out size: nothing claimed
    plots.gate_learning([("near", near, (300, 10)), ("clear", clear, (300, 10)), ("both", both, (300, 10)),
                         ("unknown", unknown, None)], tmp_path / "gate_learning.png")
    axes = figures[0].axes
    labels = [text.get_text() for text in axes[0].get_legend().get_texts()]
    assert labels == ["near: kept gates near chance (v: held-out top-1 13.67%)", "clear",
                      "both: target r NOT met (x: fallback kept): kept gates near chance (x: held-out top-1 13.67%)",
                      "unknown"]
    dotted = [line.get_ydata()[0] for line in axes[0].lines if line.get_linestyle() == ":"]
    assert dotted == [pytest.approx(15.196, abs=1e-3)]  # one line: every run held out the same 300 images
    assert any("clearly above chance: > 15.2% (300 images, 10 classes)" in t.get_text() for t in axes[0].texts)
    kept = [(line.get_marker(), line.get_color()) for line in axes[0].lines if line.get_linestyle() == "None"]
    assert kept == [("v", "r"), ("*", "k"), ("X", "r"), ("*", "k")]


def test_accuracy_plot_rings_the_rows_whose_kept_gates_are_near_chance(tmp_path, monkeypatch):
    from pfs.results import plots

    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, out: figures.append(fig))
    table = _table().assign(gates_near_chance=[None, True, False])
    table.to_csv(tmp_path / "table.csv", index=False)  # as plot_results reads it: True, False or empty
    plots.accuracy_vs_macs(pd.read_csv(tmp_path / "table.csv"), tmp_path / "a.png")
    resnet, vgg = figures[0].axes
    rings = [line for line in resnet.lines if line.get_markeredgecolor() == "red"]
    assert len(rings) == 1 and rings[0].get_ydata()[0] == pytest.approx(93.5)  # the pfs row at 93.5%
    assert [t.get_text() for t in resnet.texts] == ["gates near chance"]
    assert "kept gates near chance (red ring)" in [t.get_text() for t in resnet.get_legend().get_texts()]
    assert not [line for line in vgg.lines if line.get_markeredgecolor() == "red"] and not vgg.texts
    plots.accuracy_vs_macs(_table(), tmp_path / "b.png")  # a table without the column: no ring
    assert not [line for line in figures[1].axes[0].lines if line.get_markeredgecolor() == "red"]


# --- what a reader sees: error bars, % everywhere, side-by-side points, small multiples, the expansion ---------


def _digits_rows() -> pd.DataFrame:
    """Three methods at one MACs value on digits (two seeds each) and the unpruned network."""
    base = {"dataset": "digits", "num_classes": 10, "arch": "resnet20", "n": 2, "macs_reduction": 0.5}
    rows = [{**base, "method": "full", "schedule": "scratch_e", "macs": 2.0e6, "macs_reduction": 0.0,
             "top1_mean": 0.95, "top1_std": 0.01},
            {**base, "method": "pfs", "schedule": "scratch_e", "macs": 1.0e6, "top1_mean": 0.90, "top1_std": 0.02},
            {**base, "method": "pfs", "schedule": "scratch_b", "macs": 1.0e6, "top1_mean": 0.91, "top1_std": 0.005},
            {**base, "method": "uniform", "schedule": "scratch_e", "macs": 1.01e6, "top1_mean": 0.89,
             "top1_std": 0.0}]
    frame = pd.DataFrame(rows)
    frame["cost_s_mean"], frame["cost_s_std"], frame["shared_s_mean"] = [60.0, 90.0, 120.0, 60.0], 5.0, 0.0
    return frame


def _bars(ax) -> list[tuple[float, float, float]]:
    """(x, y, half length of the vertical error bar) of every errorbar drawn on ``ax``, in data units."""
    out = []
    for container in ax.containers:
        line, ybars = container.lines[0], container.lines[2][-1]  # the last bar collection: the vertical one
        (_, y_lo), (_, y_hi) = ybars.get_segments()[0]
        out.append((float(line.get_xdata()[0]), (y_lo + y_hi) / 2, (y_hi - y_lo) / 2))
    return out


def _markers(ax) -> list[tuple[float, float]]:
    """(x, y) of every method marker on ``ax`` (error-bar centres and bare markers; rings and stars aside)."""
    return sorted((float(line.get_xdata()[0]), float(line.get_ydata()[0])) for line in ax.lines
                  if line.get_marker() not in ("None", None, "*", "", "_", "|")  # "_", "|": error-bar caps
                  and line.get_markeredgecolor() != "red"
                  and len(line.get_xdata()) == 1)


def test_accuracy_plot_draws_every_network_at_its_true_macs_with_a_bar_only_over_several_seeds(tmp_path):
    from pfs.results.plots import accuracy_vs_macs

    rows = _digits_rows()
    rows.loc[3, ["n", "top1_std"]] = [1, float("nan")]  # uniform: one seed, no spread (table.csv leaves it empty)
    fig = accuracy_vs_macs(rows, tmp_path / "a.png")
    ax = fig.axes[0]
    assert _markers(ax) == [(1.0, pytest.approx(90.0)), (1.0, pytest.approx(91.0)), (1.01, pytest.approx(89.0)),
                            (2.0, pytest.approx(95.0))]  # the true MACs (millions): nothing shifted sideways
    bars = sorted(_bars(ax), key=lambda b: (b[0], b[1]))  # n = 2: mean ± std; the n = 1 row: no bar at all
    assert bars == [(1.0, pytest.approx(90.0), pytest.approx(2.0)), (1.0, pytest.approx(91.0), pytest.approx(0.5)),
                    (2.0, pytest.approx(95.0), pytest.approx(1.0))]
    assert ax.get_ylabel() == "top-1 accuracy (%; one test image = 0.28%)"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "full Scratch-E (n=2)", "pfs Scratch-E (n=2)", "pfs Scratch-B (n=2)", "uniform Scratch-E (n=1)"]
    y0, y1 = ax.get_ylim()
    assert y0 < 88.0 and 96.0 < y1 <= 100.5  # every point and bar inside


def test_a_crowded_macs_value_gets_a_dot_panel_listing_every_network(tmp_path):
    from pfs.results.plots import accuracy_vs_macs

    fig = accuracy_vs_macs(_digits_rows(), tmp_path / "a.png")
    scatter, dots = fig.axes  # three networks within 3% of 1M MACs: listed beside the scatter
    assert [t.get_text() for t in dots.get_yticklabels()] == [
        "full Scratch-E at 2.00M (n=2)", "pfs Scratch-E at 1.00M (n=2)", "pfs Scratch-B at 1.00M (n=2)",
        "uniform Scratch-E at 1.01M (n=2)"]
    assert sorted((y, x) for x, y in _markers(dots)) == [(0, pytest.approx(95.0)), (1, pytest.approx(90.0)),
                                                         (2, pytest.approx(91.0)), (3, pytest.approx(89.0))]
    assert dots.get_xlim() == scatter.get_ylim()  # one top-1 scale
    apart = _digits_rows().iloc[[0, 1]]  # 2M and 1M: nothing crowds, no dot panel
    assert len(accuracy_vs_macs(apart, tmp_path / "b.png").axes) == 1


def test_the_top1_axis_spans_at_least_twenty_test_images_and_two_points(tmp_path):
    from pfs.results.plots import accuracy_vs_macs, top1_limits

    # the default run: 95.8-99.5% on digits drawn on 95.8-99.5 made 1-3 images look large
    low, high = top1_limits([96.1, 97.2, 99.2], ["digits"])
    assert high - low >= 20 * 100 / 360 - 1e-9 and low < 96.1 and 99.2 < high <= 100.2
    low, high = top1_limits([93.40, 93.45], ["cifar10"])  # 20 images of 10,000: 0.2 points; at least 2 points
    assert high - low == pytest.approx(2.0) and low < 93.4 and high > 93.45
    low, high = top1_limits([10.0, 60.0], ["imagenet"])  # a real spread: its range and a margin
    assert low < 10.0 and high > 60.0 and high - low < 60
    rows = _digits_rows().assign(top1_mean=[0.99, 0.985, 0.99, 0.98], top1_std=0.0, n=1)
    ax = accuracy_vs_macs(rows, tmp_path / "a.png").axes[0]
    assert ax.get_ylim()[1] - ax.get_ylim()[0] >= 20 * 100 / 360 - 1e-9 and ax.get_ylim()[1] <= 100.2


def test_ten_methods_at_one_macs_value_stay_at_their_macs_and_are_listed_in_the_dot_panel(tmp_path):
    """The default run's shape: nine networks within 2% of one MACs value beside the unpruned one."""
    from pfs.results.plots import accuracy_vs_cost, accuracy_vs_macs

    base = {"dataset": "digits", "num_classes": 10, "arch": "resnet20", "n": 1, "macs_reduction": 0.5,
            "top1_std": float("nan"), "cost_s_std": float("nan"), "shared_s_mean": 0.0}
    rows = [{**base, "method": "full", "schedule": "scratch_e", "macs": 10.2e6, "top1_mean": 0.97, "cost_s_mean": 11}]
    rows += [{**base, "method": method, "schedule": schedule, "macs": 5.08e6 + 2e4 * k, "top1_mean": 0.96 + k / 300,
              "cost_s_mean": 30.0 + k} for k, (method, schedule) in enumerate(
                  (m, s) for m in ("pfs", "l1", "uniform", "random") for s in ("scratch_e", "scratch_b"))]
    rows.append({**base, "method": "l1", "schedule": "finetune", "macs": 5.08e6, "top1_mean": 0.95, "cost_s_mean": 30})
    table = pd.DataFrame(rows)
    fig = accuracy_vs_macs(table, tmp_path / "a.png")
    scatter, dots = fig.axes
    assert sorted(x for x, _ in _markers(scatter)) == pytest.approx(sorted(table["macs"] / 1e6))
    assert not scatter.containers and len(dots.get_yticklabels()) == 10  # one seed each: no bars
    fig = accuracy_vs_cost(table, tmp_path / "c.png")
    assert sorted(x for x, _ in _markers(fig.axes[0])) == pytest.approx(sorted(table["cost_s_mean"]))


def test_the_granularity_is_stated_only_where_the_test_set_size_is_known(tmp_path):
    from pfs.results.plots import accuracy_vs_macs, one_image_pct, top1_label

    assert one_image_pct("digits") == pytest.approx(100 / 360) and one_image_pct("cifar10") == 0.01
    assert one_image_pct("imagenet") is None
    assert top1_label(["cifar10"]) == "top-1 accuracy (%; one test image = 0.01%)"
    assert top1_label(["imagenet"]) == "top-1 accuracy (%)"
    fig = accuracy_vs_macs(_imagenet(1000), tmp_path / "a.png")
    assert fig.axes[0].get_ylabel() == "top-1 accuracy (%)"


def test_cost_plot_has_errorbars_in_both_directions_and_names_the_shared_dotted_lines(tmp_path):
    from pfs.results.plots import accuracy_vs_cost

    rows = _digits_rows()
    rows.loc[1, "shared_s_mean"] = 30.0  # pfs Scratch-E shares 30 s (its gate learning) with pfs Scratch-B
    fig = accuracy_vs_cost(rows, tmp_path / "c.png")
    ax = fig.axes[0]
    assert len(ax.containers) == 4 and all(c.has_xerr and c.has_yerr for c in ax.containers)
    assert sorted(round(y, 3) for _, y, _ in _bars(ax)) == [89.0, 90.0, 91.0, 95.0]
    assert sorted(x for x, _ in _markers(ax)) == pytest.approx([1.0, 1.0, 1.5, 2.0])  # minutes, as measured
    dotted = [line for line in ax.lines if line.get_linestyle() == ":"]
    assert [list(line.get_xdata()) for line in dotted] == [[pytest.approx(1.0), pytest.approx(1.5)]]
    assert "part shared with other rows (dotted, in its colour)" in [t.get_text() for t in ax.get_legend().get_texts()]
    assert ax.get_ylabel() == "top-1 accuracy (%; one test image = 0.28%)"
    assert "min" in ax.get_xlabel()


def _gates_with_values(path, widths: list[int], seed: int = 0) -> str:
    import torch

    gates = [torch.linspace(0, 1, w) for w in widths]
    io.save_artifact(path, "pfs.gates", {"arch": "resnet20", "dataset": "digits", "expansion": 20,
                                         "multiplier": 1.0, "sparsity": 0.5, "seed": seed, "gates": gates,
                                         "widths": widths})
    return str(path)


def test_gate_histograms_are_small_multiples_normalised_per_stage(tmp_path):
    from pfs.results.plots import gate_histograms

    files = [_gates_with_values(tmp_path / "a.pt", [16, 16, 32, 32, 32, 64]),
             _gates_with_values(tmp_path / "b.pt", [16, 32], seed=1)]
    fig = gate_histograms(files, tmp_path / "h.png")
    visible = [ax for ax in fig.axes if ax.axison]
    assert len(visible) == 3 + 2  # one panel per stage of each run; the second run's third slot left blank
    for ax in visible:
        heights = [patch.get_height() for patch in ax.patches]
        assert sum(heights) == pytest.approx(1.0)  # fractions of the stage's channels
        assert ax.get_xlim() == (0.0, 1.0)
        assert len({patch.get_facecolor() for patch in ax.patches}) == 1  # one colour per panel: nothing blended
    assert visible[0].get_title() == "stage 1: 2 groups 16 wide, 32 channels"
    assert "fraction of the stage's channels" in visible[0].get_ylabel()
    assert "resnet20 e20 m1 r0.5 seed1" in visible[3].get_ylabel()


def _channels(path, method: str, expansion: int, widths: list[int], full: list[int], **extra) -> str:
    io.write_yaml(path, {"kind": "pfs.channels", "format_version": io.FORMAT_VERSION, "method": method,
                         "arch": "resnet20", "expansion": expansion, "widths": widths, "full_widths": full,
                         "achieved_ratio": 0.5, **extra})
    return str(path)


def test_widths_plot_compares_every_method_with_the_standard_network_and_shows_the_wider_one_apart(tmp_path):
    from pfs.results.plots import channel_widths

    files = [_channels(tmp_path / "a.yaml", "pfs", 20, [18, 8], [20, 20]),
             _channels(tmp_path / "b.yaml", "uniform", 16, [8, 8], [16, 16])]
    for standard in (lambda arch: [16, 16], None):  # from pfs.models (the workflow), or from the uniform file
        fig = channel_widths(files, tmp_path / "w.png", standard)
        pfs, uniform = fig.axes
        for ax, kept in ((pfs, [18, 8]), (uniform, [8, 8])):
            heights = [patch.get_height() for patch in ax.patches]
            assert heights == [16, 16, *kept]  # grey: the standard network, whatever the method's expansion
            assert [t.get_text() for t in ax.get_legend().get_texts()][:2] == ["standard network", "kept"]
        (wider,) = [line for line in pfs.lines if line.get_marker() == "_"]  # the e20 network, apart, labelled
        assert list(wider.get_ydata()) == [20, 20]
        assert "pruned from: the e20 network (before pruning)" in [t.get_text() for t in pfs.get_legend().get_texts()]
        assert not uniform.lines and pfs.get_ylim() == uniform.get_ylim()  # one scale for every panel


def test_gate_histograms_mark_each_pruning_threshold_of_their_gates(tmp_path):
    from pfs.results.plots import gate_histograms

    gates = _gates_with_values(tmp_path / "a.pt", [16, 32])
    other = _gates_with_values(tmp_path / "b.pt", [16, 32], seed=1)
    channels = [_channels(tmp_path / f"{r}.yaml", "pfs", 20, [8, 8], [16, 32], gates_file=gates, threshold=t,
                          target_ratio=r) for r, t in ((0.5, 0.4375), (0.7, 0.625))]
    fig = gate_histograms([gates, other], tmp_path / "h.png", channels_files=channels)
    first, second = fig.axes[:2], fig.axes[2:]
    for ax in first:  # every stage panel of the gates the channels were pruned from: both thresholds
        assert [line.get_xdata()[0] for line in ax.lines] == [0.4375, 0.625]
    assert [t.get_text() for t in first[0].get_legend().get_texts()] == [
        "pruning threshold 0.438 (ratio 0.5): kept at or above",
        "pruning threshold 0.625 (ratio 0.7): kept at or above"]
    assert all(not ax.lines for ax in second)  # nothing was pruned from the other gates


def test_gate_learning_plot_shows_accuracy_in_percent(tmp_path):
    from pfs.results.plots import gate_learning

    fig = gate_learning([("run", _history(tmp_path / "h.csv", [0.4]))], tmp_path / "g.png")
    assert fig.axes[0].lines[0].get_ydata()[0] == pytest.approx(20.0)  # val_top1 0.2
    assert "%" in fig.axes[0].get_title() and fig.axes[0].get_ylabel() == "top-1 accuracy (%)"


# --- training curves: every run's history.csv, one panel per method and schedule -------------------------------


def _training_run(folder, method: str, schedule: str, seed: int = 0, ratio: float = 0.5, epochs: int = 3,
                  test: float = 0.9) -> tuple[str, str]:
    """A metrics.json carrying a run's identity and its history.csv (test top-1 climbing to ``test``)."""
    folder.mkdir(parents=True, exist_ok=True)
    io.write_json_artifact(folder / "metrics.json", "pfs.metrics", {
        "dataset": "digits", "arch": "resnet20", "method": method, "expansion": 20, "multiplier": 1.0,
        "ratio": 0.0 if method == "full" else ratio, "schedule": schedule, "seed": seed})
    epoch = list(range(1, epochs + 1))
    pd.DataFrame({"epoch": epoch, "lr": 0.1, "train_loss": [1 / e for e in epoch], "test_loss": [2 / e for e in epoch],
                  "train_top1": [0.5 + 0.5 * e / epochs for e in epoch],
                  "test_top1": [test * e / epochs for e in epoch], "test_top5": 1.0,
                  "elapsed_s": epoch}).to_csv(folder / "history.csv", index=False)
    return str(folder / "metrics.json"), str(folder / "history.csv")


def _curve_runs(tmp_path) -> list[tuple[str, str]]:
    """Five runs in four method+schedule groups: pfs Scratch-E has two seeds, Scratch-B twice the epochs."""
    return [_training_run(tmp_path / "pfs_b", "pfs", "scratch_b", epochs=6, test=0.95),
            _training_run(tmp_path / "full", "full", "scratch_e", test=0.97),
            _training_run(tmp_path / "pfs_e1", "pfs", "scratch_e", seed=1, test=0.93),
            _training_run(tmp_path / "pfs_e0", "pfs", "scratch_e", seed=0, test=0.92),
            _training_run(tmp_path / "l1_ft", "l1", "finetune", epochs=2, test=0.9)]


def test_training_curves_have_a_top1_and_a_loss_panel_per_method_and_schedule(tmp_path):
    from pfs.results.plots import training_curves

    fig = training_curves(_curve_runs(tmp_path), tmp_path / "t.png")
    assert (tmp_path / "t.png").read_bytes()[:4] == b"\x89PNG"
    assert len(fig.axes) == 2 * 3 * 3  # full, pfs, l1 (a top-1 and a loss row each) by Scratch-E, Scratch-B, fine-tuned
    panels = [ax for ax in fig.axes if ax.axison]
    top1 = [ax for ax in panels if ax.get_yscale() == "linear"]
    loss = [ax for ax in panels if ax.get_yscale() == "log"]
    assert [ax.get_title() for ax in top1] == [  # rows: methods in the tables' order; columns: schedules
        "full, Scratch-E (3 epochs)", "pfs, Scratch-E (3 epochs)", "pfs, Scratch-B (6 epochs)",
        "l1, fine-tuned (2 epochs)"]
    assert len(loss) == 4 and loss[0].get_ylabel() == "cross-entropy loss (log)"
    legend = [t.get_text() for t in top1[1].get_legend().get_texts()]
    assert legend == ["p0.5 seed0: 92.0%", "p0.5 seed1: 93.0%"]  # ordered by seed; the last epoch's test top-1
    assert [t.get_text() for t in top1[0].get_legend().get_texts()] == ["seed0: 97.0%"]  # unpruned: no ratio


def test_training_curves_draw_test_solid_and_train_dashed_in_percent_in_the_methods_colour(tmp_path):
    from matplotlib.colors import to_rgb

    from pfs.results.plots import training_curves

    fig = training_curves(_curve_runs(tmp_path), tmp_path / "t.png")
    panels = [ax for ax in fig.axes if ax.axison]
    top1 = [ax for ax in panels if ax.get_yscale() == "linear"]
    loss = [ax for ax in panels if ax.get_yscale() == "log"]
    for ax, runs in zip([*top1, *loss], (1, 2, 1, 1) * 2, strict=True):
        styles = [line.get_linestyle() for line in ax.lines]
        assert styles.count("-") == runs and styles.count("--") == runs  # one solid and one dashed line per run
    history = pd.read_csv(tmp_path / "pfs_e0" / "history.csv")
    test, train = top1[1].lines[0], top1[1].lines[1]  # pfs Scratch-E, seed 0: its test line, then its train line
    assert list(test.get_xdata()) == [1, 2, 3]
    assert list(test.get_ydata()) == pytest.approx(list(100 * history["test_top1"]))  # % of the fractions
    assert list(train.get_ydata()) == pytest.approx(list(100 * history["train_top1"]))
    assert list(loss[1].lines[0].get_ydata()) == pytest.approx(list(history["test_loss"]))
    assert list(loss[1].lines[1].get_ydata()) == pytest.approx(list(history["train_loss"]))
    assert test.get_color() == train.get_color() and train.get_linewidth() < test.get_linewidth()
    assert to_rgb(test.get_color()) == to_rgb("tab:blue")  # the first run of a panel: the method's colour itself
    assert to_rgb(top1[3].lines[0].get_color()) == to_rgb("tab:red")  # l1
    assert top1[0].get_ylabel() == "top-1 accuracy (%; one test image = 0.28%)"  # first panel of each row
    assert top1[1].get_ylabel() == top1[0].get_ylabel() and top1[2].get_ylabel() == ""
    # the top-1 axis: the second half of each run's epochs (61-100%), not the first ones (30-83%)
    low, high = top1[0].get_ylim()
    assert 55 < low < 61 and 100 <= high <= 101.5 and all(ax.get_ylim() == (low, high) for ax in top1)
    (key,) = fig.legends  # the figure's legend says which line is which
    texts = [t.get_text() for t in key.get_texts()]
    assert texts[0].startswith("test set (solid") and texts[1].startswith("training batches during each epoch")


def test_training_curves_without_runs_say_so_and_a_missing_history_names_the_file(tmp_path):
    from pfs.core.errors import PfsError
    from pfs.results.plots import training_curves

    fig = training_curves([], tmp_path / "t.png")
    assert fig.axes[0].get_title() == "no training runs"
    metrics, history = _training_run(tmp_path / "run", "pfs", "scratch_e")
    (tmp_path / "run" / "history.csv").unlink()
    with pytest.raises(PfsError, match="history.csv does not exist"):
        training_curves([(metrics, history)], tmp_path / "t.png")
