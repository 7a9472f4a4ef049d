"""The plots (pfs.plots): where the accuracy plot's grey stars go, that the PNG is written, and the gate-learning
curves labelled from the gates files."""

from __future__ import annotations

import pandas as pd
import pytest

from pfs import io
from pfs.plots import accuracy_vs_macs, labelled_histories, reference_points
from pfs.references import COMPARISON_COLUMNS


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
    """Comparison rows (pfs.references.compare), comparable with our 10-class runs unless a row says otherwise."""
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
    from pfs import plots

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


def _history(path, nonzero: list[float], sparsity: float | None = 0.5):
    rows = [{"eval": i + 1, "epoch": i + 1, "step": 10 * (i + 1), "val_top1": 0.2, "mean_gate": 0.5,
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


def _gates(path, seed: int, sparsity: float = 0.5) -> str:
    """A gates.pt carrying only the identity fields the labels read."""
    io.save_artifact(path, "pfs.gates", {"arch": "resnet20", "dataset": "cifar10", "expansion": 20,
                                         "multiplier": 1.0, "sparsity": sparsity, "seed": seed})
    return str(path)


def test_histories_are_labelled_from_their_gates_files_not_their_paths(tmp_path):
    gates = [_gates(tmp_path / "a.pt", 0), _gates(tmp_path / "b.pt", 3, sparsity=0.25)]
    histories = [_history(tmp_path / "x.csv", [0.9]), _history(tmp_path / "y" / "z.csv", [0.9])]
    assert labelled_histories(gates, histories) == [("resnet20 e20 m1 r0.5 seed0", histories[0]),
                                                    ("resnet20 e20 m1 r0.25 seed3", histories[1])]
    with pytest.raises(ValueError, match="2 gate-learning histories for 1 gates files"):
        labelled_histories(gates[:1], histories)


def test_gate_learning_plot_draws_the_target_and_marks_runs_that_missed_it(tmp_path, monkeypatch):
    from pfs import plots

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
