"""Gate learning: the sparsity loss, the epoch-selection rule, and learn_gates on a tiny random dataset."""

from __future__ import annotations

import functools
import io
import itertools

import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import pfs.core.progress
from pfs.core.chance import above_chance, chance_line, held_out_size, near_chance
from pfs.core.errors import PfsError
from pfs.method.gates import (
    GateConfig,
    eval_line,
    evaluation_count,
    learn_gates,
    nonzero_fraction,
    select_evaluation,
    sparsity_loss,
)
from pfs.models import build_model

HISTORY_COLUMNS = ["eval", "epoch", "step", "loss", "ce", "reg", "train_top1", "val_top1", "mean_gate",
                   "nonzero_fraction", "sparsity", "target_met", "selected"]


# --- the loss and the statistics --------------------------------------------------------------------------------

def test_sparsity_loss_is_squared_gap_between_mean_gate_and_r():
    gates = [torch.tensor([1.0, 0.0]), torch.tensor([0.5, 0.5])]
    assert float(sparsity_loss(gates, 0.2)) == pytest.approx((0.5 - 0.2) ** 2)
    assert float(sparsity_loss(gates, 0.5)) == 0.0


def test_sparsity_loss_weighs_every_channel_once_whatever_its_group():
    # mean over all 4 channels is 0.25; a mean of group means would give 0.5
    assert float(sparsity_loss([torch.tensor([1.0]), torch.zeros(3)], 0.0)) == pytest.approx(0.0625)


def test_sparsity_loss_uses_magnitudes():
    assert float(sparsity_loss([torch.tensor([-1.0, 0.0])], 0.5)) == 0.0


def test_sparsity_loss_gradient_pushes_every_nonzero_gate_towards_r():
    gates = [torch.tensor([1.0, 0.0], requires_grad=True), torch.tensor([0.5, 0.5], requires_grad=True)]
    sparsity_loss(gates, 0.2).backward()
    # d/dg (mean|g| - r)^2 = 2 (mean - r) sign(g) / N = 2 * 0.3 / 4
    assert torch.allclose(gates[0].grad, torch.tensor([0.15, 0.0]))
    assert torch.allclose(gates[1].grad, torch.tensor([0.15, 0.15]))


def test_nonzero_fraction_counts_exact_zeros_over_all_groups():
    assert nonzero_fraction([torch.tensor([0.0, 0.3]), torch.tensor([0.0, 0.0, 1.0])]) == pytest.approx(0.4)
    assert nonzero_fraction([torch.ones(3, requires_grad=True)]) == 1.0
    assert nonzero_fraction([torch.zeros(5)]) == 0.0


# --- selecting the epoch ----------------------------------------------------------------------------------------

@pytest.fixture
def history() -> pd.DataFrame:
    return pd.DataFrame({
        "epoch": [1, 2, 3, 4, 5],
        "val_top1": [0.5, 0.7, 0.6, 0.7, 0.9],
        "nonzero_fraction": [1.0, 0.3, 0.2, 0.2, 0.5],
    })


def test_select_evaluation_takes_the_most_accurate_sparse_enough_epoch(history):
    assert select_evaluation(history, 0.3, "epoch") == 2  # epochs 2-4 qualify; 2 and 4 tie at 0.7, the earlier wins
    assert select_evaluation(history, 0.2, "epoch") == 4  # "at most r" includes r itself: epochs 3 and 4
    assert select_evaluation(history, 0.5, "epoch") == 5


def test_select_evaluation_falls_back_to_the_last_epoch(history):
    assert select_evaluation(history, 0.1, "epoch") == 5
    assert select_evaluation(history.iloc[:3], 0.1, "epoch") == 3


# --- learn_gates ------------------------------------------------------------------------------------------------

def tiny_loaders(seed: int = 0) -> tuple[DataLoader, DataLoader]:
    gen = torch.Generator().manual_seed(seed)
    x, y = torch.randn(64, 3, 16, 16, generator=gen), torch.randint(0, 10, (64,), generator=gen)
    return (DataLoader(TensorDataset(x, y), batch_size=16),
            DataLoader(TensorDataset(x[:32], y[:32]), batch_size=32))


def run_learn_gates(**settings):
    torch.manual_seed(0)
    model = build_model("resnet20", expansion=8)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    train, val = tiny_loaders()
    cfg = GateConfig(**{"sparsity": 0.5, "epochs": 2, "lr": 0.1, "lambda_": 0.5, "batch_size": 16, **settings})
    result = learn_gates(model, train, val, cfg, torch.device("cpu"), stream=io.StringIO())
    return model, before, result


@pytest.fixture(scope="module")
def learned():
    return run_learn_gates()


def test_learn_gates_leaves_every_weight_bitwise_unchanged_and_gradient_free(learned):
    model, before, _ = learned
    gate_ids = {id(p) for p in model.gate_parameters()}
    weights = [(n, p) for n, p in model.named_parameters() if id(p) not in gate_ids]
    assert len(weights) == len(before) - len(gate_ids) > 0
    for name, p in weights:
        assert torch.equal(p.detach(), before[name]), name
        assert not p.requires_grad, name
        assert p.grad is None, name


def test_learn_gates_moves_the_gates_and_keeps_them_in_unit_interval(learned):
    model, before, result = learned
    names = [n for n, p in model.named_parameters() if any(p is g for g in model.gate_parameters())]
    assert len(names) == len(model.widths) == 9
    assert any(not torch.equal(p.detach(), before[n]) for n, p in model.named_parameters() if n in names)
    for g in model.gate_parameters():
        assert g.requires_grad
        assert float(g.detach().min()) >= 0.0 and float(g.detach().max()) <= 1.0
    assert [g.numel() for g in result.gates] == model.widths
    for g in result.gates:
        assert g.device.type == "cpu" and not g.requires_grad
        assert float(g.min()) >= 0.0 and float(g.max()) <= 1.0
    assert float(torch.cat(result.gates).mean()) < 1.0


def test_learn_gates_history_has_one_row_per_epoch_and_marks_the_selection(learned):
    _, _, result = learned
    h = result.history
    assert list(h.columns) == HISTORY_COLUMNS
    assert h["epoch"].tolist() == [1, 2]
    assert h["eval"].tolist() == [1, 2]
    assert h["selected"].tolist() == [e == result.selected for e in (1, 2)]
    assert result.selected == select_evaluation(h, 0.5) and result.selected_epoch == result.selected
    assert h["loss"].tolist() == pytest.approx((h["ce"] + 0.5 * h["reg"]).tolist(), rel=1e-5)
    for col in ("train_top1", "val_top1", "mean_gate", "nonzero_fraction"):
        assert h[col].between(0, 1).all(), col
    row = h[h["selected"]].iloc[0]
    flat = torch.cat(result.gates)
    assert row["mean_gate"] == pytest.approx(float(flat.mean()), abs=1e-6)
    assert row["nonzero_fraction"] == pytest.approx(nonzero_fraction(result.gates))
    assert h["target_met"].tolist() == (h["nonzero_fraction"] <= 0.5).tolist() and (h["sparsity"] == 0.5).all()
    report = result.report()
    assert report["target_met"] == result.target_met == bool(row["target_met"])
    assert report["min_nonzero_fraction"] == pytest.approx(h["nonzero_fraction"].min())
    assert report["val_top1"] == row["val_top1"]


def test_eval_interval_evaluates_every_n_steps_and_at_the_end_of_each_epoch():
    # 64 images in batches of 16: 4 steps an epoch, 8 in all; every 3 steps -> steps 3, 6, plus epoch ends 4 and 8
    _, _, result = run_learn_gates(eval_interval=3)
    h = result.history
    assert h["step"].tolist() == [3, 4, 6, 8]
    assert h["epoch"].tolist() == [1, 1, 2, 2]
    assert h["eval"].tolist() == [1, 2, 3, 4]
    assert h["selected"].sum() == 1 and result.selected == select_evaluation(h, 0.5)
    chosen = h[h["selected"]].iloc[0]
    assert chosen["nonzero_fraction"] == pytest.approx(nonzero_fraction(result.gates))


def test_an_interval_that_ends_an_epoch_is_not_evaluated_twice():
    _, _, result = run_learn_gates(eval_interval=4)  # steps 4 and 8 are also the epoch ends
    assert result.history["step"].tolist() == [4, 8]


def test_eval_interval_must_not_be_negative():
    with pytest.raises(PfsError, match="eval_interval"):
        GateConfig(sparsity=0.5, eval_interval=-1)


def test_learn_gates_returns_a_snapshot_not_the_live_parameters(learned):
    model, _, result = learned
    live = {g.data_ptr() for g in model.gate_parameters()}
    assert not any(g.data_ptr() in live for g in result.gates)


def test_strong_sparsity_regulariser_drives_the_mean_gate_down():
    _, _, control = run_learn_gates(lambda_=0.0, sparsity=0.05)
    _, _, strong = run_learn_gates(lambda_=100.0, sparsity=0.05)
    control_mean = control.history["mean_gate"].iloc[-1]
    strong_mean = strong.history["mean_gate"].iloc[-1]
    assert strong_mean < 0.4
    assert strong_mean < control_mean - 0.3
    assert strong.history["reg"].iloc[-1] < strong.history["reg"].iloc[0]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"sparsity": 0.0}, r"sparsity must be in \(0, 1\), got 0\.0"),
    ({"sparsity": 1.0}, r"sparsity must be in \(0, 1\), got 1\.0"),
    ({"sparsity": 0.5, "epochs": 0}, r"gates\.epochs must be >= 1, got 0"),
    ({"sparsity": 0.5, "batch_size": 0}, r"gates\.batch_size must be >= 1, got 0"),
    ({"sparsity": 0.5, "lr": 0.0}, r"gates\.lr must be > 0 and gates\.lambda >= 0"),
    ({"sparsity": 0.5, "lambda_": -1.0}, r"gates\.lr must be > 0 and gates\.lambda >= 0"),
])
def test_gate_config_is_validated(kwargs, message):
    with pytest.raises(PfsError, match=message):
        GateConfig(**kwargs)


@pytest.mark.parametrize("top1, n, expected", [(0.25, 300, True), (0.133, 300, False), (0.375, 8, False),
                                               (0.9, 8, True)])
def test_above_chance_needs_three_binomial_standard_deviations(top1, n, expected):
    assert above_chance(top1, n, num_classes=10) is expected


def test_a_gates_files_kept_gates_are_near_chance_below_the_line_the_learn_gates_warning_uses():
    # the default config's seed 1: 13.67% on 300 held-out CIFAR-10 images, under the 15.2% chance rarely exceeds
    assert chance_line(300, 10) == pytest.approx(0.1520, abs=1e-4)
    doc = {"val_top1": 0.1367, "val_indices": torch.arange(300), "num_classes": 10}
    assert held_out_size(doc) == (300, 10) and near_chance(doc) is True
    assert near_chance({**doc, "val_top1": 0.16}) is False
    assert near_chance({**doc, "val_indices": torch.arange(5000)}) is False  # the line is 11.3% on 5,000 images
    assert held_out_size({"num_classes": 10}) is None and near_chance({"num_classes": 10}) is None  # random gates


# --- the evaluation line (pfs.core.progress.Eta for the timing) -------------------------------------------------------

def _simulated_evaluations(epochs: int, steps_per_epoch: int, interval: int) -> int:
    """learn_gates' loop, without the learning: how many evaluations it makes."""
    count = step = 0
    for _ in range(epochs):
        since = 0
        for _ in range(steps_per_epoch):
            step += 1
            since += 1
            if interval and step % interval == 0:
                count, since = count + 1, 0
        count += since > 0
    return count


@pytest.mark.parametrize("epochs", [1, 2, 6])
@pytest.mark.parametrize("steps_per_epoch", [1, 4, 18])
@pytest.mark.parametrize("interval", [0, 1, 3, 4, 5, 18, 500])
def test_evaluation_count_is_the_number_learn_gates_makes(epochs, steps_per_epoch, interval):
    assert evaluation_count(epochs, steps_per_epoch, interval) == _simulated_evaluations(
        epochs, steps_per_epoch, interval)


def test_eval_line_names_the_totals_and_the_eta():
    row = {"eval": 4, "epoch": 4, "step": 72, "loss": 0.43214, "ce": 0.41, "val_top1": 0.912, "mean_gate": 0.4,
           "nonzero_fraction": 0.5}
    assert eval_line(row, 6, 6, 108, "12.3 s elapsed, ~24.6 s left, 1840 img/s") == (
        "gates eval 4/6 (epoch 4/6, step 72/108): loss 0.4321 ce 0.4100 val top-1 91.20% mean_gate 0.4000 "
        "nonzero 0.5000 | 12.3 s elapsed, ~24.6 s left, 1840 img/s")


def test_each_evaluation_line_gives_the_totals_and_an_eta(monkeypatch, caplog):
    # 64 images in batches of 16: 4 steps an epoch, 8 in all; every 3 steps -> evaluations at steps 3, 4, 6, 8
    monkeypatch.setattr(pfs.core.progress, "_clock", functools.partial(next, itertools.count(1000.0, 10.0)))
    with caplog.at_level("INFO", logger="pfs.method.gates"):
        run_learn_gates(eval_interval=3)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("gates eval")]
    # 10 s between evaluations; images/s over the whole session: 16 per step
    expected = [(1, 1, 3, "10.0 s", "~16.7 s", "4.8"), (2, 1, 4, "20.0 s", "~20.0 s", "3.2"),
                (3, 2, 6, "30.0 s", "~10.0 s", "3.2"), (4, 2, 8, "40.0 s", "~0.0 s", "3.2")]
    assert len(lines) == len(expected), lines
    for line, (n, epoch, step, elapsed, left, rate) in zip(lines, expected, strict=True):
        assert line.startswith(f"gates eval {n}/4 (epoch {epoch}/2, step {step}/8): loss "), line
        assert line.endswith(f" | {elapsed} elapsed, {left} left, {rate} img/s"), line
