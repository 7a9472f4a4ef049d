"""The typed training job (pfs.jobs.TrainJob): built from a rule, through JSON and back, refused when malformed."""

from __future__ import annotations

import pytest

from pfs.errors import PfsError
from pfs.jobs import TrainJob

OUT = {"model": "m.pt", "metrics": "m.json", "history": "h.csv"}
CONFIG = {"dataset": {"name": "digits", "root": "data", "download": False, "check_md5": True, "num_workers": 0},
          "device": "cpu", "checkpoint_dir": "ck"}


def test_a_pruned_rule_gives_a_job_that_survives_json():
    wildcards = {"dataset": "digits", "arch": "resnet20", "expansion": "20", "multiplier": "1", "sparsity": "0.5",
                 "seed": "3", "ratio": "0.5", "schedule": "scratch_b"}
    job = TrainJob.from_rule({"channels": "c.yaml"}, OUT, {"hp": {"epochs": 2}, "method": "pfs"}, wildcards, CONFIG,
                             gpus=0, log="train.log")
    assert (job.method, job.seed, job.expansion, job.sparsity, job.ratio, job.channels) == (
        "pfs", 3, 20, 0.5, 0.5, "c.yaml")
    assert job.data == {"root": "data", "download": False, "check_md5": True, "num_workers": 0}
    assert job.train == {"epochs": 2} and not job.needs_torchrun
    assert TrainJob.from_json(job.to_json()) == job


def test_a_full_rule_gives_the_standard_network_and_imagenet_index_tables_reach_the_job():
    wildcards = {"dataset": "imagenet", "arch": "mobilenet_v2", "seed": "0", "schedule": "scratch_e"}
    inputs = {"train_list": "lists/train.csv", "val_list": "lists/val.csv"}
    job = TrainJob.from_rule(inputs, OUT, {"hp": {}}, wildcards, CONFIG, gpus=8, log=None)
    assert job.method == "full" and job.channels is None and job.expansion is None and job.ratio == 0.0
    assert job.data["train_list"] == "lists/train.csv" and job.needs_torchrun and job.gpus == 8


@pytest.mark.parametrize("change, message", [
    ({"colour": 1}, r"unknown keys \['colour'\]"),
    ({"seed": None}, r"missing keys \['seed'\]"),
    ({"method": "magic"}, "method 'magic' unknown; known: full, pfs, uniform, random"),
    ({"method": "pfs"}, "method pfs needs a channels file"),
    ({"channels": "c.yaml"}, "method full needs no channels file"),
    ({"outputs": {"model": "m.pt"}}, "outputs are model, metrics, history"),
])
def test_a_malformed_job_is_refused_by_name(change, message):
    fields = {"dataset": "digits", "arch": "resnet20", "seed": 0, "outputs": OUT, **change}
    fields = {k: v for k, v in fields.items() if v is not None}
    with pytest.raises(PfsError, match=message):
        TrainJob.from_json(fields)


def test_a_job_that_is_not_json_is_one_clear_error():
    with pytest.raises(PfsError, match="a training job must be JSON"):
        TrainJob.from_json("{not json")
