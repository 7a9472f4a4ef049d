"""A training job killed with SIGKILL mid-run resumes from its checkpoint and ends bitwise like an uninterrupted run
(digits held on the device; CIFAR-10 read by DataLoader workers)."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pandas as pd
import pytest
import torch
from smk_run import FULL, SNAKEMAKE, copy_workflow, snakemake, tail

from pfs.core.io import load_artifact

pytestmark = pytest.mark.slow

FOUR_EPOCHS = {"train": {"epochs": 4, "batch_size": 128}}
# tiny_cifar10's 100 images in 10 batches an epoch, read by 2 DataLoader workers (digits sit on the device: none)
CIFAR_WITH_WORKERS = {"dataset": {"name": "cifar10", "root": "../data", "check_md5": False, "val_size": 20,
                                  "num_workers": 2},
                      "train": {"epochs": 4, "batch_size": 10}}


def _wait_for_checkpoint(workdir, proc, timeout=240.0):
    """Block until the running job has written a checkpoint of at least one finished epoch."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the job finished before it could be killed"
        for path in (workdir / "checkpoints").glob("*.pt"):
            try:
                if load_artifact(path, "pfs.checkpoint")["epoch"] >= 1:
                    return path
            except Exception:  # noqa: BLE001 - being replaced right now; look again
                pass
        time.sleep(0.2)
    pytest.fail("no checkpoint appeared")


@pytest.mark.parametrize(("config", "full"), [(FOUR_EPOCHS, FULL),
                                              (CIFAR_WITH_WORKERS, FULL.replace("/digits/", "/cifar10/"))],
                         ids=["digits", "cifar10_2_workers"])
def test_killed_training_resumes_and_matches_an_uninterrupted_run(tmp_path, request, config, full):
    if config is CIFAR_WITH_WORKERS:
        request.getfixturevalue("tiny_cifar10")  # tmp_path/data: ../data of both workflow copies
    target = f"{full}/model.pt"
    straight = copy_workflow(tmp_path / "straight", config)
    result = snakemake(straight, target, "--cores", "1", "--configfile", "tiny.yaml")
    assert result.returncode == 0, tail(result.stdout)

    killed = copy_workflow(tmp_path / "killed", config)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SNAKEMAKE")}
    proc = subprocess.Popen([str(SNAKEMAKE), target, "--cores", "1", "--configfile", "tiny.yaml"], cwd=killed,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        checkpoint = _wait_for_checkpoint(killed, proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # snakemake and the job, no chance to clean up
        proc.wait()
    done_before_kill = load_artifact(checkpoint, "pfs.checkpoint")["epoch"]
    assert 1 <= done_before_kill < 4
    assert not (killed / target).exists()

    assert snakemake(killed, "--unlock", "--configfile", "tiny.yaml").returncode == 0  # the kill left a lock
    result = snakemake(killed, target, "--cores", "1", "--rerun-incomplete", "--configfile", "tiny.yaml")
    assert result.returncode == 0, tail(result.stdout)
    log = (killed / "logs" / full.removeprefix("results/") / "train_full.log").read_text()
    assert f"after epoch {done_before_kill}" in log and "resuming from" in log
    assert not checkpoint.exists()  # removed once the outputs are written

    a = load_artifact(straight / target, "pfs.model")["state_dict"]
    b = load_artifact(killed / target, "pfs.model")["state_dict"]
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
    history_a = pd.read_csv(straight / full / "history.csv").drop(columns="elapsed_s")
    history_b = pd.read_csv(killed / full / "history.csv").drop(columns="elapsed_s")
    pd.testing.assert_frame_equal(history_a, history_b, check_exact=True)
    assert history_b["epoch"].tolist() == [1, 2, 3, 4]
