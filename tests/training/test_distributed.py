"""Multi-process training: torchrun with 2 gloo processes on CPU writes the same files as 1 process; GPU checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from pfs.core.errors import PfsError
from pfs.core.io import load_artifact
from pfs.training import distributed

TORCHRUN = Path(sys.executable).parent / "torchrun"


def _job(out: Path) -> dict:
    return {"dataset": "digits", "arch": "resnet20", "seed": 0, "expansion": 8,
            "train": {"epochs": 2, "batch_size": 64}, "device": "cpu", "checkpoint_dir": str(out / "ckpt"),
            "log": str(out / "train.log"),
            "outputs": {k: str(out / f) for k, f in (("model", "model.pt"), ("metrics", "metrics.json"),
                                                     ("history", "history.csv"))}}


def _torchrun(nproc: int, out: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [str(TORCHRUN), "--standalone", f"--nproc_per_node={nproc}", "-m", "pfs", "train",
           "--job", json.dumps(_job(out))]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_two_gloo_processes_write_the_same_files_as_one(tmp_path):
    runs = {}
    for nproc in (1, 2):
        out = tmp_path / f"n{nproc}"
        result = _torchrun(nproc, out)
        assert result.returncode == 0, result.stderr[-3000:]
        answer = json.loads(result.stdout.strip().splitlines()[-1])  # only rank 0 answers
        assert answer["world_size"] == nproc and answer["epochs"] == 2
        runs[nproc] = out
    one, two = (json.loads((runs[n] / "metrics.json").read_text()) for n in (1, 2))
    assert sorted(one) == sorted(two)  # same format
    assert (one["world_size"], two["world_size"]) == (1, 2)
    assert one["macs"] == two["macs"] and one["widths"] == two["widths"]
    assert 0 <= two["top1"] <= 1 and two["epochs"] == 2
    h1, h2 = (pd.read_csv(runs[n] / "history.csv") for n in (1, 2))
    assert list(h1.columns) == list(h2.columns) and len(h2) == 2
    model = load_artifact(runs[2] / "model.pt", "pfs.model")
    assert not any(k.startswith("module.") for k in model["state_dict"])  # saved unwrapped, loadable anywhere
    assert not list((runs[2] / "ckpt").glob("*.pt"))  # the resume checkpoint is gone after success
    log = (runs[2] / "train.log").read_text()
    assert log.count("epoch 2/2") == 1  # rank 0 alone logs


def test_setup_without_torchrun_is_a_single_process(monkeypatch):
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    dist, device = distributed.setup("cpu")
    assert (dist.rank, dist.world_size, dist.enabled, dist.is_main) == (0, 1, False, True)
    assert device == torch.device("cpu")
    assert distributed.all_reduce_sum([1.0, 2.5], device) == [1.0, 2.5]


def test_a_job_that_sees_fewer_gpus_than_it_was_given_stops_before_any_work(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    with pytest.raises(PfsError, match=r"given 2 GPU\(s\).*sees 1"):
        distributed.setup("auto")
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    with pytest.raises(PfsError, match=r"given 4 GPU\(s\).*sees 1"):
        distributed.setup("auto", expected_gpus=4)


# ---------------------------------------------------------------- devices (resolve_device)


def test_resolve_device_auto_is_cpu_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert distributed.resolve_device("auto") == torch.device("cpu")
    assert distributed.resolve_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("name", ["cuda", "cuda:1"])
def test_resolve_device_refuses_cuda_when_it_is_unavailable(monkeypatch, name):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(PfsError, match=f"device '{name}' requested but CUDA is not available"):
        distributed.resolve_device(name)


