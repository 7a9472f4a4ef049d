"""The typed training job (pfs.stages.train.TrainJob): built from a rule, through JSON and back, refused when
malformed."""

from __future__ import annotations

import pytest
from pfs_testkit import write_tiny_cifar10

from pfs.core.errors import PfsError
from pfs.stages.train import TrainJob

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
    ({"method": "magic"}, "method 'magic' unknown; known: full, pfs, uniform, random, l1, slim"),
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


# ---------------------------------------------------------------- fine-tuning (the L1 baseline)


def test_a_finetune_rule_gives_an_l1_job_that_starts_from_its_pruned_weights():
    wildcards = {"dataset": "digits", "arch": "resnet20", "seed": "1", "ratio": "0.5"}
    inputs = {"channels": "p0.5/channels.yaml", "pruned": "p0.5/pruned.pt"}
    job = TrainJob.from_rule(inputs, OUT, {"hp": {"epochs": 2, "lr": 0.001}, "method": "l1"}, wildcards, CONFIG,
                             gpus=0, log=None)
    assert (job.method, job.schedule, job.channels, job.init) == ("l1", "finetune", "p0.5/channels.yaml",
                                                                  "p0.5/pruned.pt")
    assert TrainJob.from_json(job.to_json()) == job
    named = TrainJob.from_rule(inputs, OUT, {"hp": {}, "method": "l1", "schedule": "finetune"}, wildcards, CONFIG,
                               gpus=0, log=None)
    assert (named.schedule, named.init) == ("finetune", "p0.5/pruned.pt")
    scratch = TrainJob.from_rule({"channels": "p0.5/channels.yaml"}, OUT, {"hp": {}, "method": "l1"},
                                 {**wildcards, "schedule": "scratch_b"}, CONFIG, gpus=0, log=None)
    assert (scratch.method, scratch.schedule, scratch.init) == ("l1", "scratch_b", None)  # Scratch-B of L1 widths


@pytest.mark.parametrize("change, message", [
    ({"method": "l1", "channels": "c.yaml", "init": "p.pt"}, "exactly when its schedule is finetune; got schedule "
                                                             "scratch_e with init 'p.pt'"),
    ({"method": "l1", "channels": "c.yaml", "schedule": "finetune"}, "got schedule finetune with init None"),
    ({"init": "p.pt", "schedule": "finetune"}, "a fine-tuning job .init. needs the channels file"),
    ({"method": "l1"}, "method l1 needs a channels file"),
])
def test_a_malformed_finetune_job_is_refused_by_name(change, message):
    with pytest.raises(PfsError, match=message):
        TrainJob.from_json({"dataset": "digits", "arch": "resnet20", "seed": 0, "outputs": OUT, **change})


@pytest.fixture(scope="module")
def l1_run(tmp_path_factory):
    """A tiny CIFAR-10 folder and a standard resnet20 model.pt for it (random weights, as train_full writes it)
    L1-pruned to ratio 0.5."""
    from pfs_pruning_kit import PRUNE_HP, write_standard_model

    from pfs.stages.classic import stage_prune_l1
    from pfs.stages.experiment import Experiment

    tmp = tmp_path_factory.mktemp("l1")
    write_tiny_cifar10(tmp / "data", per_batch=4, test_size=10)  # 20 training images: two steps an epoch
    exp = Experiment("cifar10", "resnet20", 1)
    state = write_standard_model(tmp / "model.pt", exp)
    stage_prune_l1(exp, str(tmp / "model.pt"), 0.5, PRUNE_HP, str(tmp / "channels.yaml"), str(tmp / "pruned.pt"))
    return {"folder": tmp, "state": state}


def _finetune_job(l1_run, tmp_path, epochs: int = 1, pruned: str | None = None) -> TrainJob:
    folder = l1_run["folder"]
    return TrainJob("cifar10", "resnet20", 1, {k: str(tmp_path / f"{k}.out") for k in OUT}, method="l1",
                    schedule="finetune", ratio=0.5, channels=str(folder / "channels.yaml"),
                    init=pruned or str(folder / "pruned.pt"), device="cpu", checkpoint_dir=str(tmp_path / "ck"),
                    train={"epochs": epochs, "batch_size": 10, "lr": 0.01, "milestones": []},
                    data={"root": str(folder / "data"), "check_md5": False})


def test_a_finetune_job_starts_from_the_surgically_pruned_weights_and_keeps_its_epochs(l1_run, tmp_path):
    import torch

    from pfs.method.l1 import channel_map, kept_channels, l1_scores, prune_state
    from pfs.models import build_model, default_widths
    from pfs.stages.train import _prepare, run_job
    from pfs.training.distributed import Dist
    from pfs.training.loop import evaluate

    job = _finetune_job(l1_run, tmp_path)
    run = _prepare(job, Dist(), torch.device("cpu"))
    full = default_widths("resnet20")
    cmap = channel_map("resnet20", full, 16, 10)
    kept = kept_channels(l1_scores(l1_run["state"], cmap, full), run.model.widths)
    surgical = build_model("resnet20", widths=run.model.widths)
    surgical.load_state_dict(prune_state(l1_run["state"], cmap, kept), strict=True)
    test_loader = run.loaders[1]
    assert evaluate(run.model, test_loader, run.device) == evaluate(surgical, test_loader, run.device)
    assert run.epochs == 1  # the finetune section's epochs: no Scratch-B stretch at ratio 0.5

    metrics = run_job(job)
    assert (metrics["method"], metrics["schedule"], metrics["epochs"]) == ("l1", "finetune", 1)
    from pfs.core import io

    assert metrics["init_sha256"] == io.sha256_file(job.init)
    assert io.load_artifact(job.outputs["model"], "pfs.model")["widths"] == run.model.widths


def test_a_killed_finetune_job_resumes_to_the_uninterrupted_result(l1_run, tmp_path, monkeypatch):
    import pandas as pd
    import torch

    import pfs.training.loop
    from pfs.core import io
    from pfs.stages.train import run_job

    straight = run_job(_finetune_job(l1_run, tmp_path / "a", epochs=2))
    real_epoch, trained = pfs.training.loop._train_epoch, []

    def killed_in_epoch_2(*args, **kwargs):
        trained.append(args[5])
        if args[5].startswith("train 2/"):
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    job = _finetune_job(l1_run, tmp_path / "b", epochs=2)
    monkeypatch.setattr(pfs.training.loop, "_train_epoch", killed_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        run_job(job)
    monkeypatch.setattr(pfs.training.loop, "_train_epoch", lambda *a, **k: trained.append(a[5]) or real_epoch(*a, **k))
    resumed = run_job(job)
    assert trained == ["train 1/2", "train 2/2", "train 2/2"]  # epoch 1 came from the checkpoint
    assert resumed["top1"] == straight["top1"] and resumed["init_sha256"] == straight["init_sha256"]
    a = io.load_artifact(tmp_path / "a" / "model.out", "pfs.model")["state_dict"]
    b = io.load_artifact(tmp_path / "b" / "model.out", "pfs.model")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert pd.read_csv(tmp_path / "b" / "history.out")["lr"].tolist() == [0.01, 0.01]  # no milestones: constant


def test_another_pruned_file_never_resumes_a_stale_checkpoint(l1_run, tmp_path):
    import torch

    from pfs.core import io
    from pfs.stages.train import _prepare
    from pfs.training.distributed import Dist

    data = io.load_artifact(l1_run["folder"] / "pruned.pt", "pfs.pruned")
    data["state_dict"] = {k: v + 1 if v.is_floating_point() else v for k, v in data["state_dict"].items()}
    io.save_artifact(tmp_path / "other.pt", "pfs.pruned", data)
    cpu = torch.device("cpu")
    one = _prepare(_finetune_job(l1_run, tmp_path), Dist(), cpu)
    other = _prepare(_finetune_job(l1_run, tmp_path, pruned=str(tmp_path / "other.pt")), Dist(), cpu)
    assert one.key != other.key and one.checkpoint != other.checkpoint


@pytest.mark.parametrize("change, message", [
    ({"seed": 2}, r"was made for seed=2, but this job needs seed=1; it does not belong with this channels file"),
    ({"widths": [1] * 9}, r"was made for widths=\[1, 1, .*\], but this job needs widths="),
    ({"drop": "fc.bias"}, r"its weights do not fit resnet20 at widths .* Missing key\(s\) in state_dict: \"fc.bias\""),
    ({"model_sha256": "0" * 64}, r"bad.pt was cut from the model.pt of sha256 000000000000\.\.\., but its channels "
                                 r"file from the one of sha256 [0-9a-f]{12}\.\.\.; it does not belong with this "
                                 r"channels file"),
])
def test_a_pruned_file_of_another_network_is_refused_in_one_line(l1_run, tmp_path, change, message):
    import torch

    from pfs.core import io
    from pfs.stages.train import _prepare
    from pfs.training.distributed import Dist

    data = io.load_artifact(l1_run["folder"] / "pruned.pt", "pfs.pruned")
    if "drop" in change:
        del data["state_dict"][change.pop("drop")]
    io.save_artifact(tmp_path / "bad.pt", "pfs.pruned", {**data, **change})
    with pytest.raises(PfsError, match=message) as err:
        _prepare(_finetune_job(l1_run, tmp_path, pruned=str(tmp_path / "bad.pt")), Dist(), torch.device("cpu"))
    assert "\n" not in str(err.value)
