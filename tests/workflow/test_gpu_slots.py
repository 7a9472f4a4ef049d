"""Local GPU claims: each job gets GPUs of its own through per-GPU lock files (no GPU needed to test)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap

import pytest

from pfs.core.errors import PfsError
from pfs.workflow.gpu_slots import ENV, claim_gpus


@pytest.fixture(autouse=True)
def _no_scheduler_gpus(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)


@contextlib.contextmanager
def another_job():
    """Claims inside this block act like another job's: a fresh environment without our CUDA_VISIBLE_DEVICES."""
    saved = os.environ.pop(ENV, None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ[ENV] = saved


def test_two_claims_get_different_gpus_and_set_the_visible_devices(tmp_path):
    with claim_gpus(1, total=3, lock_dir=tmp_path) as first:
        assert first == [0] and os.environ[ENV] == "0"
        with another_job(), claim_gpus(2, total=3, lock_dir=tmp_path, wait_s=0) as second:
            assert second == [1, 2] and os.environ[ENV] == "1,2"
        assert os.environ[ENV] == "0"
    assert ENV not in os.environ


def test_a_released_gpu_is_claimed_again(tmp_path):
    with claim_gpus(2, total=2, lock_dir=tmp_path):
        pass
    with claim_gpus(2, total=2, lock_dir=tmp_path, wait_s=0) as again:
        assert again == [0, 1]


def test_no_free_gpu_after_the_wait_is_a_clear_error_and_nothing_stays_locked(tmp_path):
    with claim_gpus(1, total=2, lock_dir=tmp_path), another_job():
        with pytest.raises(PfsError, match=r"no 2 free GPU\(s\) of 2"):
            with claim_gpus(2, total=2, lock_dir=tmp_path, wait_s=0):
                pass
        with claim_gpus(1, total=2, lock_dir=tmp_path, wait_s=0) as other:  # the failed claim let GPU 1 go
            assert other == [1]


def test_a_job_killed_outright_frees_its_gpus(tmp_path):
    holder = textwrap.dedent(f"""
        import os, signal, sys
        from pfs.workflow.gpu_slots import claim_gpus
        with claim_gpus(2, total=2, lock_dir={str(tmp_path)!r}):
            print("held", flush=True)
            sys.stdin.read()
    """)
    proc = subprocess.Popen([sys.executable, "-c", holder], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env={k: v for k, v in os.environ.items() if k != ENV})
    assert proc.stdout.readline().strip() == "held"
    with pytest.raises(PfsError):
        with claim_gpus(1, total=2, lock_dir=tmp_path, wait_s=0):
            pass
    proc.kill()
    proc.wait()
    with claim_gpus(2, total=2, lock_dir=tmp_path, wait_s=0) as ids:
        assert ids == [0, 1]


def test_nothing_is_claimed_under_a_scheduler_without_gpus_or_for_cpu_jobs(tmp_path, monkeypatch):
    with claim_gpus(0, total=4, lock_dir=tmp_path) as ids:
        assert ids is None
    with claim_gpus(1, total=0, lock_dir=tmp_path) as ids:
        assert ids is None and ENV not in os.environ
    monkeypatch.setenv(ENV, "3")  # SLURM chose the GPU
    with claim_gpus(1, total=4, lock_dir=tmp_path) as ids:
        assert ids is None and os.environ[ENV] == "3"
    assert not list(tmp_path.iterdir())


def test_more_gpus_than_the_machine_has_is_refused(tmp_path):
    with pytest.raises(PfsError, match="needs 4 GPUs .* has 2; lower resources.gpu"):
        with claim_gpus(4, total=2, lock_dir=tmp_path):
            pass
