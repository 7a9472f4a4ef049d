"""The workflow passes Snakemake's linter and snakefmt (run on the repository itself, as CI does)."""

from __future__ import annotations

import subprocess

import pytest
from smk_run import BIN, REPO, snakemake, tail

pytestmark = pytest.mark.slow


def test_snakemake_lint_finds_nothing():
    result = snakemake(REPO, "--lint")
    assert result.returncode == 0, tail(result.stdout)


def test_snakefmt_would_change_nothing():
    result = subprocess.run([str(BIN / "snakefmt"), "--check", "."], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, timeout=120)
    assert result.returncode == 0, tail(result.stdout)
