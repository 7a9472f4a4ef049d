"""Shared fixtures: tiny datasets generated on the fly (never downloaded); their helpers are pfs_testkit's."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from pfs_testkit import write_tiny_cifar10

from pfs.core import numerics


@pytest.fixture
def tiny_cifar10(tmp_path: Path) -> Path:
    """Root folder holding a tiny cifar-10-batches-py/ (100 train, 30 test images); use check_md5: false."""
    return write_tiny_cifar10(tmp_path / "data")


_NUMERICS_ENV = (numerics.MODE_ENV, numerics.THREADS_ENV, *numerics.PINNED_ENV)


@pytest.fixture(autouse=True)
def _restore_numerics():
    """Every test starts with the session's thread count and numerics environment: a stage's main() applies
    pfs.core.numerics (torch's threads, PFS_NUMERICS*, the pinned variables), which must not leak into later tests
    (a child interpreter would inherit the variables, and compute with other threads than this process)."""
    threads, saved = torch.get_num_threads(), {name: os.environ.get(name) for name in _NUMERICS_ENV}
    yield
    torch.set_num_threads(threads)
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
