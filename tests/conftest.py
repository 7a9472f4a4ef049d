"""Shared fixtures: tiny datasets generated on the fly (never downloaded) and the repository root."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
CIFAR10_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]


def write_tiny_cifar10(root: Path, per_batch: int = 20, test_size: int = 30, seed: int = 0) -> Path:
    """A CIFAR-10 folder in torchvision's on-disk layout (pickled batches under cifar-10-batches-py/).

    Images are random noise with a class-dependent mean colour, so a network can learn something.
    """
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)

    def batch(n: int) -> dict:
        labels = rng.integers(0, 10, n)
        images = rng.integers(0, 128, (n, 3, 32, 32)) + (labels * 12)[:, None, None, None]
        return {"data": images.reshape(n, -1).astype(np.uint8), "labels": labels.tolist()}

    for name in CIFAR10_TRAIN:
        with open(folder / name, "wb") as fh:
            pickle.dump(batch(per_batch), fh)
    with open(folder / "test_batch", "wb") as fh:
        pickle.dump(batch(test_size), fh)
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, fh)
    return root


@pytest.fixture
def tiny_cifar10(tmp_path: Path) -> Path:
    """Root folder holding a tiny cifar-10-batches-py/ (100 train, 30 test images); use check_md5: false."""
    return write_tiny_cifar10(tmp_path / "data")
