"""Fixtures of the data tests: a tiny ImageNet-style tree (pfs_testkit.write_tiny_imagenet)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pfs_testkit import write_tiny_imagenet


@pytest.fixture
def tiny_imagenet(tmp_path: Path) -> Path:
    return write_tiny_imagenet(tmp_path / "imagenet")
