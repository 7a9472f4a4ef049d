"""Determinism: the same seed gives bit-identical gates, channels and metrics on CPU across two whole runs, and
every metrics file records the seed, the versions and the git commit."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
import torch
import yaml
from smk_run import EXP, FULL, PRUNED, RUN_DIRS, snakemake, tail

from pfs.core.io import load_artifact

pytestmark = pytest.mark.slow

RESULT_KEYS = ("widths", "macs", "params", "top1", "top5", "best_top1", "best_top5", "best_epoch", "epochs")


def test_a_second_run_from_scratch_is_bit_identical(finished_run, tmp_path):
    again = tmp_path / "again"
    shutil.copytree(finished_run.workdir, again, symlinks=True)
    shutil.rmtree(again / "results")
    result = snakemake(again, "--cores", "2", "--configfile", "tiny.yaml")
    assert result.returncode == 0, tail(result.stdout)
    first, second = finished_run.workdir, again

    a, b = (load_artifact(w / EXP / "gates.pt", "pfs.gates") for w in (first, second))
    assert all(torch.equal(x, y) for x, y in zip(a["gates"], b["gates"], strict=True))
    assert torch.equal(a["val_indices"], b["val_indices"])
    ca, cb = (yaml.safe_load((w / PRUNED / "channels.yaml").read_text()) for w in (first, second))
    ca.pop("gates_file"), cb.pop("gates_file")
    assert ca == cb  # widths, MACs, threshold and the gates file's hash
    for run in RUN_DIRS.values():
        ma, mb = (json.loads((w / run / "metrics.json").read_text()) for w in (first, second))
        assert {k: ma[k] for k in RESULT_KEYS} == {k: mb[k] for k in RESULT_KEYS}, run
        ha, hb = (pd.read_csv(w / run / "history.csv").drop(columns="elapsed_s") for w in (first, second))
        pd.testing.assert_frame_equal(ha, hb, check_exact=True)
        sa, sb = (load_artifact(w / run / "model.pt", "pfs.model")["state_dict"] for w in (first, second))
        assert all(torch.equal(sa[k], sb[k]) for k in sa), run


def test_metrics_record_seed_versions_and_commit(finished_run):
    metrics = json.loads((finished_run.workdir / FULL / "metrics.json").read_text())
    assert metrics["seed"] == 0 and metrics["settings"]["epochs"] == 1
    assert set(metrics["versions"]) == {"pfs", "torch", "torchvision", "snakemake", "python", "git_commit"}
    assert metrics["versions"]["torch"] == torch.__version__
