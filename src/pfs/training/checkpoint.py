"""Resume checkpoints of a training job: one file per job, written atomically, keyed by the job's settings."""

from __future__ import annotations

import os
from pathlib import Path

from pfs.core.errors import PfsError
from pfs.core.io import load_artifact, save_artifact

KIND = "pfs.checkpoint"


def load_checkpoint(path: Path, key: str) -> dict | None:
    """The checkpoint at ``path``, or None when there is none; refuses a damaged one (pfs.core.io.check_intact: resuming
    from changed bytes would train on from another network) and one written by a job of another ``key``, saying
    to delete it, which restarts the training from epoch 1."""
    if not path.is_file():
        return None
    ckpt = load_artifact(path, KIND, remedy=f"delete {path} to restart this training from epoch 1")
    if ckpt.get("key") != key:
        raise PfsError(f"{path} belongs to another training job (settings differ); delete it to start afresh")
    return ckpt


def save_checkpoint(path: Path, key: str, *, epoch: int, elapsed: float, history: list[dict], partial: dict,
                    model, optimizer, scheduler) -> None:
    """Write, atomically, the training state after ``epoch`` finished epochs.

    Args:
        elapsed: seconds of training and evaluation so far.
        history: one row per finished epoch.
        partial: where the unfinished epoch stands (batches done, running sums); empty counts at an epoch's end.
        model, optimizer, scheduler: saved through their ``state_dict()``.
    """
    save_artifact(path, KIND, {
        "key": key, "epoch": epoch, "elapsed": elapsed, "history": history, "partial": partial,
        "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
    })


def remove_checkpoint(path: Path) -> None:
    """Delete the checkpoint at ``path`` (once the job's outputs are written); no error if there is none."""
    if path.exists():
        os.unlink(path)
