"""Gate learning: random frozen weights, Adam on the gates only, CE + lambda * (mean|g| - r)^2, clamp to [0, 1]."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TextIO

import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader

from pfs.errors import PfsError
from pfs.models import GatedNet
from pfs.progress import progress
from pfs.train import evaluate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GateConfig:
    sparsity: float  # r: target mean gate value, and the largest fraction of non-zero gates a kept epoch may have
    epochs: int = 10
    lr: float = 0.01  # Adam
    lambda_: float = 0.5  # weight of the sparsity regulariser
    batch_size: int = 128
    eval_batch_size: int = 256

    def __post_init__(self) -> None:
        if not 0 < self.sparsity < 1:
            raise PfsError(f"sparsity must be in (0, 1), got {self.sparsity}")
        for key in ("epochs", "batch_size", "eval_batch_size"):
            if getattr(self, key) < 1:
                raise PfsError(f"gates.{key} must be >= 1, got {getattr(self, key)}")
        if self.lr <= 0 or self.lambda_ < 0:
            raise PfsError(f"gates.lr must be > 0 and gates.lambda >= 0, got {self.lr} and {self.lambda_}")


@dataclass
class GateResult:
    gates: list[torch.Tensor]  # selected gates, one CPU tensor per prunable group
    selected_epoch: int  # 1-based
    history: pd.DataFrame  # one row per epoch


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


def select_epoch(history: pd.DataFrame, sparsity: float) -> int:
    """Most accurate epoch among those whose non-zero fraction is <= r; the last epoch if none qualifies."""
    ok = history[history["nonzero_fraction"] <= sparsity]
    if ok.empty:
        return int(history["epoch"].iloc[-1])
    return int(ok.loc[ok["val_top1"].idxmax(), "epoch"])  # idxmax: the earliest of equally accurate epochs


def learn_gates(model: GatedNet, train_loader: DataLoader, val_loader: DataLoader, cfg: GateConfig,
                device: torch.device, stream: TextIO | None = None) -> GateResult:
    model.to(device)
    freeze_weights(model)
    gates = model.gate_parameters()
    optimizer = torch.optim.Adam(gates, lr=cfg.lr)
    criterion = nn.CrossEntropyLoss()
    rows, snapshots = [], []
    for epoch in range(1, cfg.epochs + 1):
        model.train()  # BN normalises with batch statistics, as in the paper
        sums = {"loss": 0.0, "ce": 0.0, "reg": 0.0, "correct": 0, "n": 0}
        for x, y in progress(train_loader, f"gates epoch {epoch}/{cfg.epochs}", stream=stream):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
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
            n = len(y)
            sums["loss"] += float(loss.detach()) * n
            sums["ce"] += float(ce.detach()) * n
            sums["reg"] += float(reg.detach()) * n
            sums["correct"] += int((logits.argmax(1) == y).sum())
            sums["n"] += n
        snapshots.append([g.detach().cpu().clone() for g in gates])
        flat = torch.cat([g.detach().flatten() for g in gates])
        row = {
            "epoch": epoch,
            "loss": sums["loss"] / sums["n"],
            "ce": sums["ce"] / sums["n"],
            "reg": sums["reg"] / sums["n"],
            "train_top1": sums["correct"] / sums["n"],
            "val_top1": evaluate(model, val_loader, device)["top1"],
            "mean_gate": float(flat.mean()),
            "nonzero_fraction": nonzero_fraction(gates),
        }
        rows.append(row)
        log.info("gates epoch %d: loss %.4f ce %.4f val_top1 %.4f mean_gate %.4f nonzero %.4f", epoch, row["loss"],
                 row["ce"], row["val_top1"], row["mean_gate"], row["nonzero_fraction"])
    history = pd.DataFrame(rows)
    chosen = select_epoch(history, cfg.sparsity)
    history["selected"] = history["epoch"] == chosen
    log.info("selected epoch %d of %d", chosen, cfg.epochs)
    return GateResult(snapshots[chosen - 1], chosen, history)
