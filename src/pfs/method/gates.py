"""Gate learning: random frozen weights, Adam on the gates only, CE + lambda * (mean|g| - r)^2, clamp to [0, 1]."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TextIO

import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader

from pfs.core.errors import PfsError
from pfs.core.progress import Eta, progress
from pfs.models import GatedNet
from pfs.training.loop import evaluate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GateConfig:
    sparsity: float  # r: target mean gate value, and the largest fraction of non-zero gates a kept epoch may have
    epochs: int = 10
    lr: float = 0.01  # Adam
    lambda_: float = 0.5  # weight of the sparsity regulariser
    batch_size: int = 128
    eval_batch_size: int = 256
    eval_interval: int = 0  # 0: evaluate after every epoch; N: also every N steps (official ImageNet: 500)

    def __post_init__(self) -> None:
        if not 0 < self.sparsity < 1:
            raise PfsError(f"sparsity must be in (0, 1), got {self.sparsity}")
        if self.eval_interval < 0:
            raise PfsError(f"gates.eval_interval must be >= 0 (0: after each epoch), got {self.eval_interval}")
        for key in ("epochs", "batch_size", "eval_batch_size"):
            if getattr(self, key) < 1:
                raise PfsError(f"gates.{key} must be >= 1, got {getattr(self, key)}")
        if self.lr <= 0 or self.lambda_ < 0:
            raise PfsError(f"gates.lr must be > 0 and gates.lambda >= 0, got {self.lr} and {self.lambda_}")


@dataclass
class GateResult:
    gates: list[torch.Tensor]  # selected gates, one CPU tensor per prunable group
    selected: int  # 1-based number of the selected evaluation
    history: pd.DataFrame  # one row per evaluation (the end of every epoch, and every eval_interval steps)

    @property
    def _kept(self) -> pd.Series:
        return self.history.loc[self.history["eval"] == self.selected].iloc[0]

    @property
    def selected_epoch(self) -> int:
        return int(self._kept["epoch"])

    @property
    def target_met(self) -> bool:
        """Whether the kept gates meet the target: a non-zero fraction of at most r (else they are the fallback,
        the last evaluation's, and pruning ranks gates that never became sparse)."""
        return bool(self._kept["target_met"])

    def report(self) -> dict[str, float | bool]:
        """What gates.pt, channels.yaml and the tables record about the kept evaluation: whether it met the
        target, its non-zero fraction and held-out top-1, and the lowest non-zero fraction reached at all."""
        return {"target_met": self.target_met, "nonzero_fraction": float(self._kept["nonzero_fraction"]),
                "min_nonzero_fraction": float(self.history["nonzero_fraction"].min()),
                "val_top1": float(self._kept["val_top1"])}


def random_gates(widths: list[int], seed: int) -> list[torch.Tensor]:
    """The random-gates ablation: one value drawn uniformly from [0, 1) per channel, from ``seed`` alone (no data,
    no training), in the layout of learned gates. Pruning them keeps a random subset of channels."""
    generator = torch.Generator().manual_seed(int(seed))
    return [torch.rand(int(w), generator=generator) for w in widths]


def sparsity_loss(gates: list[torch.Tensor], sparsity: float) -> torch.Tensor:
    """(mean |g| over every gate of every group - r)^2: each channel counts once, whatever its layer."""
    return (torch.cat([g.flatten() for g in gates]).abs().mean() - sparsity) ** 2


def nonzero_fraction(gates: list[torch.Tensor]) -> float:
    flat = torch.cat([g.detach().flatten() for g in gates])
    return float((flat != 0).float().mean())


def freeze_weights(model: GatedNet) -> None:
    """Only gates learn: weights keep their random init and get no gradient (none computed, none stored)."""
    for p in model.weight_parameters():
        p.requires_grad_(False)


def select_evaluation(history: pd.DataFrame, sparsity: float, key: str = "eval") -> int:
    """The ``key`` of the most accurate evaluation among those whose non-zero fraction is <= r (the earliest of
    equally accurate ones); the last evaluation's if none qualifies."""
    ok = history[history["nonzero_fraction"] <= sparsity]
    if ok.empty:
        return int(history[key].iloc[-1])
    return int(ok.loc[ok["val_top1"].idxmax(), key])  # idxmax: the earliest of equally accurate evaluations


def gate_step(model: GatedNet, gates: list[torch.Tensor], optimizer: torch.optim.Optimizer, criterion: nn.Module,
              x: torch.Tensor, y: torch.Tensor, cfg: GateConfig):
    """One optimisation step of the gates: CE + lambda * (mean|g| - r)^2, then clamp to [0, 1].
    Returns (loss, ce, reg, logits)."""
    logits = model(x)
    ce = criterion(logits, y)
    reg = sparsity_loss(gates, cfg.sparsity)
    loss = ce + cfg.lambda_ * reg
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    with torch.no_grad():
        for g in gates:
            g.clamp_(0.0, 1.0)
    return loss, ce, reg, logits


class _Running:
    """Training statistics since the last evaluation."""

    def __init__(self) -> None:
        self.loss = self.ce = self.reg = 0.0
        self.correct = self.n = 0

    def add(self, loss, ce, reg, logits, y) -> None:
        n = len(y)
        self.loss += float(loss.detach()) * n
        self.ce += float(ce.detach()) * n
        self.reg += float(reg.detach()) * n
        self.correct += int((logits.argmax(1) == y).sum())
        self.n += n

    def means(self) -> dict[str, float]:
        n = max(self.n, 1)
        return {"loss": self.loss / n, "ce": self.ce / n, "reg": self.reg / n, "train_top1": self.correct / n}


def evaluation_count(epochs: int, steps_per_epoch: int, eval_interval: int) -> int:
    """How many evaluations learn_gates makes: every ``eval_interval`` steps (if > 0), and at the end of every epoch
    that such an evaluation did not just end."""
    if steps_per_epoch < 1:
        return 0
    total = epochs * steps_per_epoch
    interval = total // eval_interval if eval_interval else 0
    ends = sum(1 for e in range(1, epochs + 1) if not eval_interval or (e * steps_per_epoch) % eval_interval)
    return interval + ends


def eval_line(row: dict, evals: int, epochs: int, steps: int, eta: Eta | str) -> str:
    """The log line of one gate evaluation (job log and terminal), e.g. ``gates eval 4/6 (epoch 4/6, step 72/108):
    loss 0.4321 ce 0.4100 val top-1 91.20% mean_gate 0.4000 nonzero 0.5000 | 12.3 s elapsed, ~24.6 s left,
    1840 img/s`` (pfs.core.progress.Eta)."""
    return (f"gates eval {row['eval']}/{evals} (epoch {row['epoch']}/{epochs}, step {row['step']}/{steps}): "
            f"loss {row['loss']:.4f} ce {row['ce']:.4f} val top-1 {100 * row['val_top1']:.2f}% "
            f"mean_gate {row['mean_gate']:.4f} nonzero {row['nonzero_fraction']:.4f} | {eta}")


def learn_gates(model: GatedNet, train_loader: DataLoader, val_loader: DataLoader, cfg: GateConfig,
                device: torch.device, stream: TextIO | None = None) -> GateResult:
    """Learn the gates of ``model`` for ``cfg.epochs`` passes over ``train_loader``, evaluating on ``val_loader``
    after every epoch (and every ``cfg.eval_interval`` steps), and return the gates of the selected evaluation."""
    model.to(device)
    freeze_weights(model)
    gates = model.gate_parameters()
    optimizer = torch.optim.Adam(gates, lr=cfg.lr)
    criterion = nn.CrossEntropyLoss()
    rows: list[dict] = []
    snapshots: list[list[torch.Tensor]] = []
    step = images = 0
    steps_per_epoch = len(train_loader)
    total_steps = cfg.epochs * steps_per_epoch
    total_evals = evaluation_count(cfg.epochs, steps_per_epoch, cfg.eval_interval)
    eta = Eta(total_steps)

    def evaluation(epoch: int, running: _Running) -> None:
        nonlocal images
        flat = torch.cat([g.detach().flatten() for g in gates])
        row = {"eval": len(rows) + 1, "epoch": epoch, "step": step, **running.means(),
               "val_top1": evaluate(model, val_loader, device)["top1"], "mean_gate": float(flat.mean()),
               "nonzero_fraction": nonzero_fraction(gates)}
        model.train()  # BN normalises with batch statistics, as in the paper
        rows.append(row)
        snapshots.append([g.detach().cpu().clone() for g in gates])
        log.info("%s", eval_line(row, total_evals, cfg.epochs, total_steps, eta.update(step, images)))
        images = 0

    for epoch in range(1, cfg.epochs + 1):
        model.train()
        running = _Running()
        for x, y in progress(train_loader, f"gates epoch {epoch}/{cfg.epochs}", stream=stream):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss, ce, reg, logits = gate_step(model, gates, optimizer, criterion, x, y, cfg)
            step += 1
            images += len(y)
            running.add(loss, ce, reg, logits, y)
            if cfg.eval_interval and step % cfg.eval_interval == 0:
                evaluation(epoch, running)
                running = _Running()
        if running.n:  # the epoch's end, unless an interval evaluation just happened there
            evaluation(epoch, running)
    history = pd.DataFrame(rows)
    chosen = select_evaluation(history, cfg.sparsity)
    history["sparsity"] = cfg.sparsity  # the target r, so the file (and its plot) tells which evaluations meet it
    history["target_met"] = history["nonzero_fraction"] <= cfg.sparsity
    history["selected"] = history["eval"] == chosen
    result = GateResult(snapshots[chosen - 1], chosen, history)
    kept = result.report()
    log.info("selected evaluation %d of %d (epoch %d): non-zero fraction %.4f (target <= %g%s), held-out top-1 %.2f%%",
             chosen, len(rows), result.selected_epoch, kept["nonzero_fraction"], cfg.sparsity,
             "" if result.target_met else ", NOT met: the last evaluation is kept", 100 * kept["val_top1"])
    return result


def target_missed_advice(run: str, sparsity: float, report: dict) -> str:
    """The one warning line of a gate-learning run whose gates never became sparse enough."""
    return (f"{run}: gate learning did NOT reach its target: the lowest non-zero gate fraction reached was "
            f"{report['min_nonzero_fraction']:.4f} > r = {sparsity:g}, so the last evaluation's gates are kept (the "
            "paper's fallback) and pruning ranks gates that never became sparse. Give it more steps or larger ones: "
            "raise gates.epochs or gates.lr, or lower gates.batch_size (more steps per epoch)")
