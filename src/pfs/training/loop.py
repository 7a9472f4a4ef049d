"""Training from scratch: SGD with the paper's schedule, Scratch-E / Scratch-B budgets, resumable checkpoints."""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TextIO

import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from pfs.core import numerics
from pfs.core.errors import PfsError
from pfs.core.progress import Eta, progress
from pfs.training.checkpoint import load_checkpoint, save_checkpoint
from pfs.training.distributed import Dist, all_reduce_sum

log = logging.getLogger(__name__)

SCHEDULES = ("scratch_e", "scratch_b")
DECAY_GROUPS = ("all", "conv_linear")
DEVICE_DATA = ("auto", "always", "never")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 160  # Scratch-E length; Scratch-B stretches it to epochs / (1 - ratio)
    batch_size: int = 128
    eval_batch_size: int = 256
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    weight_decay_on: str = "all"  # "all" (official CIFAR) or "conv_linear" (official ImageNet: no depthwise/BN/bias)
    scheduler: str = "multistep"
    milestones: tuple[float, ...] = (0.5, 0.75)  # fractions of the epochs where lr is multiplied by gamma
    gamma: float = 0.1
    label_smoothing: float = 0.0
    amp: bool = False  # bf16 autocast on CUDA (no effect on CPU): a speed option; the paper trains in fp32
    scratch_b_epochs: int = 0  # 0: Scratch-B trains int(epochs / (1 - ratio)); N > 0: exactly N (official ImageNet)
    device_data: str = "auto"  # in-memory data held and augmented on the device: auto (CUDA; digits), always, never
    channels_last: bool = True  # NHWC memory format on CUDA (no effect on CPU)
    compile: bool = False  # torch.compile the network (pays a compile time at start)
    color_augment: bool = False  # ImageNet only: the official ColorJitter(0.4, 0.4, 0.4) + PCA lighting noise (0.1)
    # network slimming's sparsity training: s of the L1 penalty s * sum|gamma| on every BN scale (add_bn_sparsity);
    # 0: off. Not a train key: only rule train_sparse sets it (config slimming.s), so no other job's params change
    bn_sparsity: float = 0.0

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise PfsError(f"train.optimizer {self.optimizer!r} unknown; known: {', '.join(OPTIMIZERS)}")
        if self.scheduler not in SCHEDULERS:
            raise PfsError(f"train.scheduler {self.scheduler!r} unknown; known: {', '.join(SCHEDULERS)}")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise PfsError(f"train.epochs, train.batch_size and train.lr must be positive, got {self}")
        if self.weight_decay_on not in DECAY_GROUPS:
            raise PfsError(f"train.weight_decay_on {self.weight_decay_on!r} unknown; known: {', '.join(DECAY_GROUPS)}")
        if self.device_data not in DEVICE_DATA:
            raise PfsError(f"train.device_data {self.device_data!r} unknown; known: {', '.join(DEVICE_DATA)}")
        if self.scratch_b_epochs < 0:
            raise PfsError(f"train.scratch_b_epochs must be >= 0 (0: epochs / (1 - ratio)), "
                           f"got {self.scratch_b_epochs}")
        if self.bn_sparsity < 0:
            raise PfsError(f"bn_sparsity (slimming.s) must be >= 0, got {self.bn_sparsity}")
        if any(not 0 < m < 1 for m in self.milestones):
            raise PfsError(f"train.milestones are fractions of the epochs in (0, 1), got {list(self.milestones)}")


def budget_epochs(epochs: int, schedule: str, ratio: float, scratch_b_epochs: int = 0) -> int:
    """Scratch-E keeps ``epochs``. Scratch-B trains int(epochs / (1 - ratio)) epochs (the full model's compute,
    the paper's CIFAR rule), or exactly ``scratch_b_epochs`` when that is > 0 (the official ImageNet code: 300 for
    MobileNets, 200 for ResNet-50, whatever the ratio)."""
    if schedule not in SCHEDULES:
        raise PfsError(f"unknown schedule {schedule!r}; known: {', '.join(SCHEDULES)}")
    if not 0 <= ratio < 1:
        raise PfsError(f"ratio must be in [0, 1), got {ratio}")
    if schedule == "scratch_e":
        return epochs
    return scratch_b_epochs if scratch_b_epochs > 0 else int(epochs / (1 - ratio))


def decay_groups(model: nn.Module, cfg: TrainConfig) -> list[dict]:
    """Parameter groups of the optimiser: weight decay on every parameter ("all"), or only on the weights of
    regular convolutions and linear layers ("conv_linear": depthwise convs, BN and biases get none)."""
    trained = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    if cfg.weight_decay_on == "all":
        return [{"params": [p for _, p in trained], "weight_decay": cfg.weight_decay}]
    decay, rest = [], []
    for name, p in trained:
        # the official rule: 4-D weights whose 2nd dimension is not 1 (convs but depthwise) and 2-D weights (linear)
        is_weight = name.endswith("weight") and ((p.ndim == 4 and p.shape[1] != 1) or p.ndim == 2)
        (decay if is_weight else rest).append(p)
    return [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": rest, "weight_decay": 0.0}]


def _sgd(params, cfg: TrainConfig):
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)


def _multistep(optimizer, cfg: TrainConfig, epochs: int):
    # a milestone of 0 would decay the lr before the first epoch (epochs=1: int(0.5) == 0), so the earliest is 1
    milestones = [max(1, int(m * epochs)) for m in cfg.milestones]
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, cfg.gamma)


def _cosine(optimizer, cfg: TrainConfig, epochs: int):
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: 0.5 * (1 + math.cos(math.pi * e / epochs)))


def bn_scales(model: nn.Module) -> list[nn.Parameter]:
    """The scales (weights) of every affine BatchNorm2d of ``model``: what the sparsity penalty acts on."""
    return [m.weight for m in model.modules() if isinstance(m, nn.BatchNorm2d) and m.affine]


@torch.no_grad()
def add_bn_sparsity(scales: Sequence[nn.Parameter], s: float) -> None:
    """Network slimming's sparsity training (Liu et al., ICCV 2017, Eq. 1): the subgradient s * sign(gamma) of the
    penalty s * sum|gamma| added to every BN scale's gradient after backward, before the optimiser step, as updateBN
    does in github.com/Eric-mingjie/rethinking-network-pruning (cifar/network-slimming/main.py). Under torchrun the
    gradients are already averaged over the ranks and every rank adds the same term."""
    for gamma in scales:
        if gamma.grad is not None:
            gamma.grad.add_(torch.sign(gamma), alpha=s)


OPTIMIZERS: dict[str, Callable] = {"sgd": _sgd}  # (parameter groups carrying their weight decay, cfg)
SCHEDULERS: dict[str, Callable] = {"multistep": _multistep, "cosine": _cosine}


@dataclass
class TrainResult:
    history: pd.DataFrame
    metrics: dict = field(default_factory=dict)


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, device: torch.device, amp: bool = False) -> dict[str, float]:
    """Loss, top-1 and top-5 accuracy (fractions) over ``loader`` (summed over all ranks under torchrun)."""
    model.eval()
    loss = top1 = top5 = n = 0.0
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with _autocast(device, amp):
            logits = model(x)
        logits = logits.float()
        loss += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        top1 += int((top[:, 0] == y).sum())
        top5 += int((top == y[:, None]).any(1).sum())
        n += len(y)
    loss, top1, top5, n = all_reduce_sum([loss, top1, top5, n], device)
    return {"loss": loss / n, "top1": top1 / n, "top5": top5 / n}


def _autocast(device: torch.device, amp: bool):
    """bf16 autocast on CUDA when ``amp``; a no-op context on CPU."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda")


class Preempted(PfsError):
    """Training stopped by SIGTERM/SIGUSR1 after saving a resumable checkpoint (rerun the job to resume)."""


class _StopOnSignals:
    """Turn SIGTERM/SIGUSR1 (SLURM preemption, time limit warnings) into a flag the training loop checks."""

    SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> _StopOnSignals:
        if threading.current_thread() is threading.main_thread():  # handlers can only be set there
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, _frame) -> None:
        self.signum = signum

    def requested(self, device: torch.device) -> bool:
        """Whether any rank got a signal (all ranks must stop at the same batch, or collectives would hang)."""
        return all_reduce_sum([float(self.signum is not None)], device)[0] > 0

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


@dataclass
class _EpochProgress:
    """Where the current epoch stands: batches done and running sums (saved in a mid-epoch checkpoint)."""

    batch: int = 0
    loss_sum: float = 0.0
    correct: int = 0
    n: int = 0


def _train_epoch(model, loader, optimizer, criterion, device, desc, stream, state: _EpochProgress,
                 stop: _StopOnSignals, amp: bool = False,
                 sparsity: tuple[Sequence[nn.Parameter], float] = ((), 0.0)) -> bool:
    """Train one epoch from batch ``state.batch`` on; False if a signal stopped it (``state`` says where).
    ``sparsity``: the BN scales and s of network slimming's penalty (add_bn_sparsity; s = 0: none).

    Batches before ``state.batch`` (done before a preemption) are loaded but not trained on: loading them
    replays the epoch's random draws, so the rest of the epoch sees exactly the data it would have seen.
    """
    model.train()
    for i, (x, y) in enumerate(progress(loader, desc, stream=stream)):
        if i < state.batch:
            continue
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with _autocast(device, amp):
            logits = model(x)
            loss = criterion(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if sparsity[1] > 0:
            add_bn_sparsity(*sparsity)
        optimizer.step()
        state.batch = i + 1
        state.loss_sum += float(loss.detach()) * len(y)
        state.correct += int((logits.argmax(1) == y).sum())
        state.n += len(y)
        if stop.requested(device):
            if stop.signum is None:  # another rank was signalled
                stop.signum = -1
            return False
    return True


@dataclass
class _RunProgress:
    """Where the run stands: what a checkpoint restores besides the model, optimiser and scheduler."""

    start: int = 1  # the next epoch to train
    elapsed: float = 0.0  # seconds of training and evaluation so far
    rows: list[dict] = field(default_factory=list)  # the history: one row per finished epoch
    partial: _EpochProgress = field(default_factory=_EpochProgress)  # epoch ``start`` so far (after a preemption)


def _place_model(model: nn.Module, cfg: TrainConfig, device: torch.device, dist: Dist) -> nn.Module:
    """Freeze ``model``'s gates and move it to ``device``; returns the network to train (DDP-wrapped, compiled)."""
    if hasattr(model, "gate_parameters"):  # gates stay 1: the trained network is the plain pruned network
        for gate in model.gate_parameters():
            gate.requires_grad_(False)
    model.to(device)
    if cfg.channels_last and device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    net = model
    if dist.enabled:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    if cfg.compile:
        if device.type == "cpu" and numerics.current_mode() == "pinned":
            raise PfsError("train.compile: true with numerics.mode: pinned on CPU: torch.compile generates kernels for "
                           "this CPU's instruction set, which pinned mode exists to avoid; turn one of them off")
        net = torch.compile(net)
    return net


def _resume(checkpoint: Path, key: str, model: nn.Module, optimizer, scheduler) -> _RunProgress:
    """Restore model, optimiser and scheduler from ``checkpoint`` if there is one; where the run stands."""
    if (ckpt := load_checkpoint(checkpoint, key)) is None:
        return _RunProgress()
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    run = _RunProgress(ckpt["epoch"] + 1, ckpt["elapsed"], ckpt["history"], _EpochProgress(**ckpt.get("partial", {})))
    log.info("resuming from %s after epoch %d, batch %d", checkpoint, ckpt["epoch"], run.partial.batch)
    return run


def _seed_epoch(train_loader: DataLoader, seed: int, epoch: int) -> None:
    """Seed the shuffling and augmentation of ``epoch`` from (seed, epoch) alone, so a resumed run draws the same.

    The global generator seeded here also seeds the loader's workers (torch, numpy, ``random``: from it and the
    worker's id) when they start, which a training loader does at every epoch (_check_fresh_workers)."""
    torch.manual_seed(seed * 100_003 + epoch)
    if isinstance(getattr(train_loader, "sampler", None), DistributedSampler):
        train_loader.sampler.set_epoch(epoch)


def _check_fresh_workers(train_loader) -> None:
    """Refuse a training DataLoader whose workers outlive an epoch: they would draw epoch e's augmentation from the
    state epoch e - 1 left them, so a run resumed at epoch e (new workers) would draw other crops and flips."""
    if isinstance(train_loader, DataLoader) and train_loader.num_workers > 0 and train_loader.persistent_workers:
        raise PfsError("the training DataLoader keeps its workers between epochs (persistent_workers=True), so a "
                       "resumed run would not draw the augmentation an uninterrupted one draws; make it with "
                       "pfs.data.datasets.make_loader(..., fresh_workers=True)")


def _metrics(history: pd.DataFrame, epochs: int, elapsed: float) -> dict:
    """The run's summary: last-epoch and best test accuracy, the epochs and the training time (s)."""
    best = history.loc[history["test_top1"].idxmax()]
    return {
        "top1": float(history["test_top1"].iloc[-1]),  # the paper reports the last epoch on CIFAR
        "top5": float(history["test_top5"].iloc[-1]),
        "best_top1": float(best["test_top1"]),
        "best_top5": float(best["test_top5"]),
        "best_epoch": int(best["epoch"]),
        "epochs": epochs,
        "train_time_s": elapsed,
    }


def epoch_line(epoch: int, epochs: int, row: dict, eta: Eta | str) -> str:
    """The per-epoch log line (job log and terminal), e.g. ``epoch 3/6 lr 0.1 train_loss 0.4321 test top-1
    91.23% top-5 99.10% | 12.3 s elapsed, ~24.6 s left, 1840 img/s`` (pfs.core.progress.Eta)."""
    return (f"epoch {epoch}/{epochs} lr {row['lr']:.4g} train_loss {row['train_loss']:.4f} test top-1 "
            f"{100 * row['test_top1']:.2f}% top-5 {100 * row['test_top5']:.2f}% | {eta}")


def _epochs_done(run: _RunProgress, train_loader) -> float:
    """Epochs a resumed run has behind it: the finished ones and the part of the next trained before a restart."""
    try:
        return run.start - 1 + run.partial.batch / max(len(train_loader), 1)
    except TypeError:  # a loader without a length
        return run.start - 1


def train_from_scratch(model: nn.Module, train_loader: DataLoader, test_loader: DataLoader, cfg: TrainConfig,
                       epochs: int, seed: int, device: torch.device, checkpoint: Path, key: str,
                       stream: TextIO | None = None, dist: Dist | None = None) -> TrainResult:
    """Train ``model`` for ``epochs``, checkpointing every epoch to ``checkpoint`` and resuming from it.

    Each epoch's randomness (shuffling, augmentation, in DataLoader workers too) is seeded from (seed, epoch), so
    a resumed run is bitwise identical to an uninterrupted one on CPU. SIGTERM/SIGUSR1 save a mid-epoch checkpoint
    and raise Preempted; the next run continues from that batch. Under torchrun (``dist``) the model is wrapped in
    DistributedDataParallel, statistics are summed over ranks and only rank 0 writes the checkpoint.
    """
    dist = dist or Dist()
    _check_fresh_workers(train_loader)
    net = _place_model(model, cfg, device, dist)
    optimizer = OPTIMIZERS[cfg.optimizer](decay_groups(model, cfg), cfg)
    scheduler = SCHEDULERS[cfg.scheduler](optimizer, cfg, epochs)
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    run = _resume(checkpoint, key, model, optimizer, scheduler)
    sparsity = (bn_scales(model) if cfg.bn_sparsity > 0 else [], cfg.bn_sparsity)

    def save(done_epochs: int) -> None:  # rank 0 writes; every rank holds the same state
        if dist.is_main:
            save_checkpoint(checkpoint, key, epoch=done_epochs, elapsed=run.elapsed, history=run.rows,
                            partial=asdict(run.partial), model=model, optimizer=optimizer, scheduler=scheduler)

    eta = Eta(epochs, _epochs_done(run, train_loader), run.elapsed)  # resumed epochs count as done, not as pace
    with _StopOnSignals() as stop:
        for epoch in range(run.start, epochs + 1):
            t0 = time.perf_counter()
            _seed_epoch(train_loader, seed, epoch)
            lr = optimizer.param_groups[0]["lr"]
            resumed_n = run.partial.n  # images of this epoch trained before a restart (not this session's pace)
            if not _train_epoch(net, train_loader, optimizer, criterion, device, f"train {epoch}/{epochs}", stream,
                                run.partial, stop, cfg.amp, sparsity):
                run.elapsed += time.perf_counter() - t0
                save(epoch - 1)
                raise Preempted(f"training stopped by signal {stop.signum} in epoch {epoch} after batch "
                                f"{run.partial.batch}; saved {checkpoint}, rerun the job to resume from there")
            loss_sum, correct, n, images = all_reduce_sum(
                [run.partial.loss_sum, run.partial.correct, run.partial.n, run.partial.n - resumed_n], device)
            row = {"epoch": epoch, "lr": lr, "train_loss": loss_sum / n, "train_top1": correct / n}
            run.partial = _EpochProgress()
            scheduler.step()
            row |= {f"test_{k}": v for k, v in evaluate(net, test_loader, device, cfg.amp).items()}
            run.elapsed += time.perf_counter() - t0
            row["elapsed_s"] = run.elapsed
            run.rows.append(row)
            log.info("%s", epoch_line(epoch, epochs, row, eta.update(epoch, images)))
            save(epoch)
            if epoch < epochs and stop.requested(device):
                raise Preempted(f"training stopped by signal {stop.signum} after epoch {epoch}; saved {checkpoint}, "
                                "rerun the job to resume from there")
    history = pd.DataFrame(run.rows)
    return TrainResult(history, _metrics(history, epochs, run.elapsed))
