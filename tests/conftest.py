"""Shared fixtures: tiny datasets generated on the fly (never downloaded); their helpers are pfs_testkit's."""

from __future__ import annotations

from pathlib import Path

import pytest
from pfs_testkit import write_tiny_cifar10


@pytest.fixture
def tiny_cifar10(tmp_path: Path) -> Path:
    """Root folder holding a tiny cifar-10-batches-py/ (100 train, 30 test images); use check_md5: false."""
    return write_tiny_cifar10(tmp_path / "data")
