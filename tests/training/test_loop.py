"""Training from scratch: the Scratch-E/B budget, the config checks, the lr schedule, evaluation and resume."""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import os
import random
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from pfs_testkit import REPO, write_tiny_cifar10
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

import pfs.core.progress
import pfs.training.loop
from pfs.core.catalog import DATASETS, dataset_info
from pfs.core.errors import PfsError
from pfs.core.io import load_artifact
from pfs.data.datasets import TensorImageDataset, make_loader, make_transform, training_sets
from pfs.data.device_data import DeviceBatches
from pfs.data.index import prepare_lists
from pfs.data.settings import DataSettings
from pfs.models import build_model
from pfs.training.distributed import Dist
from pfs.training.loaders import training_loaders
from pfs.training.loop import Preempted, TrainConfig, budget_epochs, decay_groups, evaluate, train_from_scratch

CPU = torch.device("cpu")


# ---------------------------------------------------------------- budget


@pytest.mark.parametrize("ratio", [0.0, 0.5, 0.9])
def test_scratch_e_keeps_the_epochs(ratio):
    assert budget_epochs(160, "scratch_e", ratio) == 160


@pytest.mark.parametrize(("ratio", "expected"), [(0.0, 160), (0.5, 320), (0.6, 400), (0.7, 533), (0.9, 1600)])
def test_scratch_b_stretches_epochs_to_the_full_models_compute(ratio, expected):
    assert budget_epochs(160, "scratch_b", ratio) == expected


@pytest.mark.parametrize("ratio", [0.3, 0.5, 0.7])
def test_scratch_b_with_a_fixed_length_ignores_the_ratio(ratio):
    # the official ImageNet budget training: 300 epochs for MobileNets, 200 for ResNet-50, at any ratio
    assert budget_epochs(150, "scratch_b", ratio, scratch_b_epochs=300) == 300
    assert budget_epochs(150, "scratch_e", ratio, scratch_b_epochs=300) == 150


def test_budget_refuses_an_unknown_schedule_naming_the_known_ones():
    with pytest.raises(PfsError, match=r"unknown schedule 'scratch_c'; known: scratch_e, scratch_b"):
        budget_epochs(160, "scratch_c", 0.5)


@pytest.mark.parametrize("ratio", [1.0, 1.5, -0.1])
@pytest.mark.parametrize("schedule", ["scratch_e", "scratch_b"])
def test_budget_refuses_a_ratio_outside_0_1(schedule, ratio):
    with pytest.raises(PfsError, match=r"ratio must be in \[0, 1\)"):
        budget_epochs(160, schedule, ratio)


# ---------------------------------------------------------------- TrainConfig


def test_train_config_refuses_an_unknown_optimizer_by_name():
    with pytest.raises(PfsError, match=r"train.optimizer 'adamw' unknown; known: sgd"):
        TrainConfig(optimizer="adamw")


def test_train_config_refuses_an_unknown_scheduler_by_name():
    with pytest.raises(PfsError, match=r"train.scheduler 'step' unknown; known: multistep, cosine"):
        TrainConfig(scheduler="step")


@pytest.mark.parametrize("bad", [{"epochs": 0}, {"batch_size": 0}, {"lr": 0.0}])
def test_train_config_refuses_non_positive_sizes(bad):
    with pytest.raises(PfsError, match="must be positive"):
        TrainConfig(**bad)


@pytest.mark.parametrize("milestones", [(0.5, 1.0), (0.0, 0.5), (1.5,)])
def test_train_config_refuses_milestones_outside_0_1(milestones):
    with pytest.raises(PfsError, match="train.milestones are fractions"):
        TrainConfig(milestones=milestones)


def test_train_config_refuses_an_unknown_weight_decay_rule_and_a_negative_budget():
    with pytest.raises(PfsError, match="weight_decay_on 'bn'.*all, conv_linear"):
        TrainConfig(weight_decay_on="bn")
    with pytest.raises(PfsError, match="scratch_b_epochs"):
        TrainConfig(scratch_b_epochs=-1)


# ---------------------------------------------------------------- weight decay


def _shapes(params) -> list[tuple[int, ...]]:
    return sorted(tuple(p.shape) for p in params)


def test_conv_linear_decay_skips_depthwise_bn_bias_and_gates():
    model = build_model("mobilenet_v2", expansion=8, num_classes=5, multiplier=0.25)
    for g in model.gate_parameters():
        g.requires_grad_(False)  # as train_from_scratch does
    decay, rest = decay_groups(model, TrainConfig(weight_decay=4e-5, weight_decay_on="conv_linear"))
    assert decay["weight_decay"] == 4e-5 and rest["weight_decay"] == 0.0
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    regular = [m.weight for m in convs if m.groups == 1]
    depthwise = [m.weight for m in convs if m.groups > 1]
    linear = [m.weight for m in model.modules() if isinstance(m, nn.Linear)]
    assert depthwise and regular and linear
    assert _shapes(decay["params"]) == _shapes(regular + linear)
    assert {id(p) for p in depthwise} <= {id(p) for p in rest["params"]}
    gate_ids = {id(g) for g in model.gate_parameters()}
    assert not gate_ids & {id(p) for group in (decay, rest) for p in group["params"]}  # frozen: not optimised
    assert len(decay["params"]) + len(rest["params"]) == sum(p.requires_grad for p in model.parameters())


def test_all_decay_puts_every_trained_parameter_in_one_group():
    model = build_model("resnet20", expansion=8)
    (group,) = decay_groups(model, TrainConfig(weight_decay=1e-4))
    assert group["weight_decay"] == 1e-4 and len(group["params"]) == len(list(model.parameters()))


# ---------------------------------------------------------------- tiny data


def _image_sets(n_train: int = 16, n_test: int = 8) -> tuple[TensorImageDataset, TensorImageDataset]:
    """Random 16x16 uint8 images with digits' transforms (random-crop augmentation in training)."""
    g = torch.Generator().manual_seed(1)
    info = DATASETS["digits"]
    x = torch.randint(0, 256, (n_train + n_test, 3, 16, 16), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (n_train + n_test,), generator=g)
    train = TensorImageDataset(x[:n_train], y[:n_train], make_transform(info, train=True))
    test = TensorImageDataset(x[n_train:], y[n_train:], make_transform(info, train=False))
    return train, test


def _loaders(batch_size: int = 8, on_device: bool = False):
    train, test = _image_sets()
    if on_device:  # pfs.data.device_data: the same images held as uint8 and augmented per batch
        info = DATASETS["digits"]
        return (DeviceBatches(train.images, train.labels, info, True, batch_size, CPU),
                DeviceBatches(test.images, test.labels, info, False, 8, CPU))
    return make_loader(train, batch_size, True, 0, CPU), make_loader(test, 8, False, 0, CPU)


def _linear(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 10))


def _train_linear(tmp_path, cfg: TrainConfig, epochs: int, key: str = "k", name: str = "ckpt.pt"):
    train_loader, test_loader = _loaders()
    return train_from_scratch(_linear(), train_loader, test_loader, cfg, epochs, 0, CPU, tmp_path / name, key)


# ---------------------------------------------------------------- lr schedule


def test_multistep_decays_lr_tenfold_at_half_and_three_quarters_of_the_epochs(tmp_path):
    result = _train_linear(tmp_path, TrainConfig(epochs=8, lr=0.1), epochs=8)
    # milestones int(0.5 * 8) = 4 and int(0.75 * 8) = 6 scheduler steps: epochs 1-4, 5-6, 7-8
    assert result.history["epoch"].tolist() == list(range(1, 9))
    assert result.history["lr"].tolist() == pytest.approx([0.1] * 4 + [0.01] * 2 + [0.001] * 2, rel=1e-9)


def test_multistep_with_one_epoch_trains_at_the_initial_lr(tmp_path):
    # int(0.5 * 1) == 0: a milestone at 0 used to decay the lr 100x before the only epoch
    result = _train_linear(tmp_path, TrainConfig(epochs=1, lr=0.1), epochs=1)
    assert result.history["lr"].tolist() == [0.1]


def test_cosine_schedule_follows_half_a_cosine(tmp_path):
    result = _train_linear(tmp_path, TrainConfig(epochs=4, lr=0.1, scheduler="cosine"), epochs=4)
    expected = [0.1 * 0.5 * (1 + math.cos(math.pi * e / 4)) for e in range(4)]
    assert result.history["lr"].tolist() == pytest.approx(expected, rel=1e-9)
    assert expected[2] == pytest.approx(0.05)


def test_history_and_metrics_report_the_last_epoch_and_the_best(tmp_path):
    result = _train_linear(tmp_path, TrainConfig(epochs=3), epochs=3)
    h = result.history
    assert list(h.columns) == ["epoch", "lr", "train_loss", "train_top1", "test_loss", "test_top1", "test_top5",
                               "elapsed_s"]
    assert len(h) == 3
    m = result.metrics
    assert m["epochs"] == 3
    assert m["top1"] == h["test_top1"].iloc[-1] and m["top5"] == h["test_top5"].iloc[-1]
    assert m["best_top1"] == h["test_top1"].max()
    assert h.loc[h["epoch"] == m["best_epoch"], "test_top1"].item() == m["best_top1"]
    assert m["train_time_s"] == h["elapsed_s"].iloc[-1] > 0
    assert h["elapsed_s"].is_monotonic_increasing


def test_training_keeps_the_gates_at_one_so_the_net_is_the_plain_pruned_network(tmp_path):
    torch.manual_seed(0)
    model = build_model("resnet20", widths=[3] * 9, expansion=8)
    train_loader, test_loader = _loaders()
    train_from_scratch(model, train_loader, test_loader, TrainConfig(epochs=1, weight_decay=0.1), 1, 0, CPU,
                       tmp_path / "c.pt", "k")
    assert all(torch.equal(g.detach(), torch.ones_like(g)) for g in model.gate_parameters())


# ---------------------------------------------------------------- evaluate


def test_evaluate_top1_top5_and_loss_on_known_logits():
    logits = torch.tensor([
        [5.0, 4, 3, 2, 1, 0],  # label 0: rank 1
        [5.0, 4, 3, 2, 1, 0],  # label 5: rank 6 (outside the top 5)
        [0.0, 9, 1, 2, 3, 4],  # label 1: rank 1
        [9.0, 8, 7, 6, 5, 0],  # label 4: rank 5
    ])
    labels = torch.tensor([0, 5, 1, 4])
    loader = DataLoader(TensorDataset(logits, labels), batch_size=3)  # two uneven batches
    model = nn.Identity()
    got = evaluate(model, loader, CPU)
    assert got["top1"] == 0.5
    assert got["top5"] == 0.75
    assert got["loss"] == pytest.approx(float(nn.functional.cross_entropy(logits, labels)), rel=1e-6)
    assert model.training is False


def test_evaluate_top5_with_fewer_than_five_classes_counts_every_sample():
    logits = torch.tensor([[0.0, 1, 2], [2.0, 1, 0]])
    got = evaluate(nn.Identity(), DataLoader(TensorDataset(logits, torch.tensor([0, 0])), batch_size=2), CPU)
    assert got["top1"] == 0.5
    assert got["top5"] == 1.0


# ---------------------------------------------------------------- resume


class _Killed(Exception):
    """Stands in for the job being killed in the middle of training."""


def _killed_in_epoch(epoch: int, trained: list[str] | None = None):
    """pfs.training.loop._train_epoch that raises _Killed when it starts ``epoch`` (recording each epoch's description
    in
    ``trained``), for monkeypatching."""
    real_epoch = pfs.training.loop._train_epoch

    def killed(*args, **kwargs):
        if trained is not None:
            trained.append(args[5])
        if args[5].startswith(f"train {epoch}/"):
            raise _Killed
        return real_epoch(*args, **kwargs)

    return killed


def _resnet(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return build_model("resnet20", expansion=4, num_classes=10)


def _uninterrupted_and_resumed(tmp_path, monkeypatch, build, cfg: TrainConfig, epochs: int, batch_size: int = 8):
    """Run A straight through; run B killed while training epoch 2, then restarted from its checkpoint."""
    train_loader, test_loader = _loaders(batch_size)
    run_a = build(0)
    a = train_from_scratch(run_a, train_loader, test_loader, cfg, epochs, 7, CPU, tmp_path / "a.pt", "job")

    real_epoch = pfs.training.loop._train_epoch
    trained: list[str] = []
    with monkeypatch.context() as patch:
        patch.setattr(pfs.training.loop, "_train_epoch", _killed_in_epoch(2, trained))
        with pytest.raises(_Killed):
            train_from_scratch(build(0), train_loader, test_loader, cfg, epochs, 7, CPU, tmp_path / "b.pt", "job")
    assert load_artifact(tmp_path / "b.pt", "pfs.checkpoint")["epoch"] == 1

    # the restarted job builds a differently initialised model: everything must come from the checkpoint
    monkeypatch.setattr(pfs.training.loop, "_train_epoch", lambda *a, **k: trained.append(a[5]) or real_epoch(*a, **k))
    run_b = build(99)
    b = train_from_scratch(run_b, train_loader, test_loader, cfg, epochs, 7, CPU, tmp_path / "b.pt", "job")
    assert trained == [f"train {e}/{epochs}" for e in (1, 2, *range(2, epochs + 1))]  # epoch 1 not repeated
    return run_a, a, run_b, b


def _assert_same_run(run_a, a, run_b, b) -> None:
    state_a, state_b = run_a.state_dict(), run_b.state_dict()
    assert state_a.keys() == state_b.keys()
    assert [k for k in state_a if not torch.equal(state_a[k], state_b[k])] == []  # bitwise, BN buffers included
    pd.testing.assert_frame_equal(a.history.drop(columns="elapsed_s"), b.history.drop(columns="elapsed_s"),
                                  check_exact=True)
    assert {k: v for k, v in a.metrics.items() if k != "train_time_s"} == {
        k: v for k, v in b.metrics.items() if k != "train_time_s"}


def test_resumed_training_is_bitwise_identical_to_an_uninterrupted_run(tmp_path, monkeypatch):
    cfg = TrainConfig(epochs=3, batch_size=8, lr=0.05)
    run_a, a, run_b, b = _uninterrupted_and_resumed(tmp_path, monkeypatch, _resnet, cfg, epochs=3)
    _assert_same_run(run_a, a, run_b, b)
    assert b.metrics["epochs"] == 3 and b.history["epoch"].tolist() == [1, 2, 3]


@pytest.mark.parametrize(
    ("scheduler", "lrs"), [("multistep", [0.1, 0.1, 0.01, 0.001]), ("cosine", [0.1, 0.075, 0.025])]
)
def test_resume_restores_the_lr_schedule(tmp_path, monkeypatch, scheduler, lrs):
    # killed after epoch 1: the lr of every later epoch must come from the restored scheduler state
    cfg = TrainConfig(epochs=len(lrs), lr=0.1, scheduler=scheduler)
    run_a, a, run_b, b = _uninterrupted_and_resumed(tmp_path, monkeypatch, _linear, cfg, len(lrs))
    _assert_same_run(run_a, a, run_b, b)
    assert b.history["lr"].tolist() == pytest.approx(lrs, rel=1e-9)


def test_checkpoint_of_the_last_epoch_is_resumed_without_training_again(tmp_path, monkeypatch):
    cfg = TrainConfig(epochs=2)
    first = _train_linear(tmp_path, cfg, epochs=2)
    monkeypatch.setattr(pfs.training.loop, "_train_epoch", lambda *a, **k: pytest.fail("trained again"))
    again = _train_linear(tmp_path, cfg, epochs=2)
    pd.testing.assert_frame_equal(first.history, again.history)
    assert again.metrics == first.metrics


def test_checkpoint_of_another_job_is_refused(tmp_path):
    _train_linear(tmp_path, TrainConfig(epochs=1), epochs=1, key="job-a")
    path = tmp_path / "ckpt.pt"
    with pytest.raises(PfsError, match="belongs to another training job") as err:
        _train_linear(tmp_path, TrainConfig(epochs=1), epochs=1, key="job-b")
    assert str(path) in str(err.value)


def test_truncated_checkpoint_is_refused_with_a_clear_error(tmp_path):
    _train_linear(tmp_path, TrainConfig(epochs=1), epochs=1)
    path = tmp_path / "ckpt.pt"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(PfsError, match="corrupt or not a torch file") as err:
        _train_linear(tmp_path, TrainConfig(epochs=1), epochs=1)
    message = str(err.value)
    assert str(path) in message
    assert f"delete {path} to restart this training from epoch 1" in message


def test_a_file_of_another_kind_at_the_checkpoint_path_is_refused(tmp_path):
    from pfs.core.io import save_artifact

    save_artifact(tmp_path / "ckpt.pt", "pfs.gates", {"gates": []})
    with pytest.raises(PfsError, match="is not a pfs.checkpoint file \\(found 'pfs.gates'\\)"):
        _train_linear(tmp_path, TrainConfig(epochs=1), epochs=1)


def _signalling_progress(send: Callable[[], None]):
    """pfs.training.loop.progress that calls ``send`` (which signals the job) when the second batch of epoch 2 is
    loaded,
    for monkeypatching."""
    real_progress = pfs.training.loop.progress

    def signalling(iterable, desc, **kwargs):
        for i, item in enumerate(real_progress(iterable, desc, **kwargs)):
            if desc.startswith("train 2/") and i == 1:
                send()
            yield item

    return signalling


@pytest.mark.parametrize("on_device", [False, True], ids=["dataloader", "device_data"])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1])
def test_signal_mid_epoch_saves_a_checkpoint_that_resumes_bitwise(tmp_path, monkeypatch, signum, on_device):
    """SLURM preemption (SIGTERM) or a time-limit warning (SIGUSR1) in the middle of epoch 2: the job saves
    where it stands and stops; the rerun continues from that batch and ends exactly like an uninterrupted run."""
    cfg = TrainConfig(epochs=3, batch_size=4, lr=0.05)
    train_loader, test_loader = _loaders(batch_size=4, on_device=on_device)  # 16 images: 4 batches per epoch
    run_a = _resnet(0)
    a = train_from_scratch(run_a, train_loader, test_loader, cfg, 3, 7, CPU, tmp_path / "a.pt", "job")

    with monkeypatch.context() as patch:
        patch.setattr(pfs.training.loop, "progress", _signalling_progress(lambda: os.kill(os.getpid(), signum)))
        with pytest.raises(Preempted, match=f"signal {int(signum)} in epoch 2 after batch 2"):
            train_from_scratch(_resnet(0), train_loader, test_loader, cfg, 3, 7, CPU, tmp_path / "b.pt", "job")
    ckpt = load_artifact(tmp_path / "b.pt", "pfs.checkpoint")
    assert ckpt["epoch"] == 1 and ckpt["partial"]["batch"] == 2 and ckpt["partial"]["n"] == 8
    assert signal.getsignal(signum) == signal.SIG_DFL  # the handlers are removed again

    run_b = _resnet(99)  # everything must come from the checkpoint
    b = train_from_scratch(run_b, train_loader, test_loader, cfg, 3, 7, CPU, tmp_path / "b.pt", "job")
    _assert_same_run(run_a, a, run_b, b)


# ---------------------------------------------------------------- resume with DataLoader workers


def _noise_image_folder(root: Path, classes: int = 3, per_class: int = 4) -> Path:
    """An ImageNet-style tree ``root/{train,val}/c<k>/<i>.{JPEG,png}`` of small random-noise images (so crops and
    flips change the pixels)."""
    rng = np.random.default_rng(0)
    for split, n in (("train", per_class), ("val", 2)):
        for k in range(classes):
            folder = root / split / f"c{k}"
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (20, 24 + 2 * i, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.{'JPEG' if i % 2 else 'png'}")
    return root


def _data_with_workers(kind: str, tmp_path: Path) -> DataSettings:
    """Settings of a tiny dataset read by 2 DataLoader workers: CIFAR-10 batch files (20 training images: batches
    of 8, 8, 4) or an image-folder tree read through its index tables (12 training images: 3 batches of 4)."""
    if kind == "cifar10":
        root = write_tiny_cifar10(tmp_path / "cifar", per_batch=4, test_size=8)
        return DataSettings("cifar10", root=str(root), check_md5=False, num_workers=2)
    root = _noise_image_folder(tmp_path / "images")
    lists = prepare_lists(root, tmp_path / "lists")
    return DataSettings("imagenet", root=str(root), num_workers=2, train_list=str(lists["train"]),
                        val_list=str(lists["val"]))


def _small_cnn(seed: int, num_classes: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                         nn.Flatten(), nn.Linear(16, num_classes))


def _train_with_workers(data: DataSettings, checkpoint: Path, model_seed: int):
    """(model, result) of 3 epochs through the loaders a training job makes (image folders: the official colour
    augmentation too, drawn in the workers)."""
    images = data.name == "imagenet"
    cfg = TrainConfig(epochs=3, batch_size=4 if images else 8, eval_batch_size=8, lr=0.05, device_data="never",
                      color_augment=images)
    train_set, test_set = training_sets(data, min_scale=0.25, color_augment=images)
    loaders = training_loaders(train_set, test_set, dataset_info(data.name), cfg, data, CPU, Dist(), seed=7)
    model = _small_cnn(model_seed, 10 if data.name == "cifar10" else 3)
    return model, train_from_scratch(model, *loaders, cfg, 3, 7, CPU, checkpoint, "job")


def _child_env() -> dict[str, str]:
    """The environment of a child interpreter that imports this module (and pfs_testkit)."""
    path = [str(Path(__file__).parent), str(REPO / "tests"), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path)}


def _killed_in_epoch_2(data: dict, checkpoint: str) -> None:
    """The job of a child process (a session of its own): train until the second batch of epoch 2 is loaded, then
    SIGKILL the whole job at once, DataLoader workers included (a node failure, a time limit's final kill)."""
    pfs.training.loop.progress = _signalling_progress(lambda: os.killpg(0, signal.SIGKILL))  # in the child only
    _train_with_workers(DataSettings(**data), Path(checkpoint), model_seed=0)


def _run_killed_job(data: DataSettings, checkpoint: Path) -> None:
    """Run _killed_in_epoch_2 in a new interpreter (a job forks its workers from a clean process)."""
    code = f"import test_loop; test_loop._killed_in_epoch_2({dataclasses.asdict(data)!r}, {str(checkpoint)!r})"
    env = _child_env()
    child = subprocess.run([sys.executable, "-c", code], env=env, start_new_session=True, capture_output=True,
                           text=True, timeout=120)
    assert child.returncode == -signal.SIGKILL, child.stderr[-3000:]


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
@pytest.mark.parametrize("kind", ["cifar10", "image_folder"])
def test_a_job_with_loader_workers_stopped_mid_epoch_resumes_bitwise(tmp_path, monkeypatch, kind, signum):
    """A job reading through 2 DataLoader workers, killed (SIGKILL, in a child process: back to the end of epoch 1)
    or preempted (SIGTERM: a checkpoint after batch 2 of epoch 2) mid-epoch, resumes with new workers and ends
    exactly like an uninterrupted run: every epoch's shuffling and augmentation follow (seed, epoch) alone."""
    data = _data_with_workers(kind, tmp_path)
    if signum == signal.SIGKILL:
        _run_killed_job(data, tmp_path / "b.pt")
    else:
        with monkeypatch.context() as patch:
            patch.setattr(pfs.training.loop, "progress", _signalling_progress(lambda: os.kill(os.getpid(), signum)))
            with pytest.raises(Preempted, match="in epoch 2 after batch 2"):
                _train_with_workers(data, tmp_path / "b.pt", model_seed=0)
    ckpt = load_artifact(tmp_path / "b.pt", "pfs.checkpoint")
    assert (ckpt["epoch"], ckpt["partial"]["batch"]) == (1, 0 if signum == signal.SIGKILL else 2)

    run_a, a = _train_with_workers(data, tmp_path / "a.pt", model_seed=0)
    run_b, b = _train_with_workers(data, tmp_path / "b.pt", model_seed=99)  # all must come from the checkpoint
    _assert_same_run(run_a, a, run_b, b)


def _preempted_in_epoch_2(data: dict, checkpoint: str) -> None:
    """The job of a child process (a session of its own): when the second batch of epoch 2 is loaded, say so on
    stdout and wait for a line on stdin, which the test sends once it has signalled the whole process group."""

    def wait_for_the_signal() -> None:
        print("signal me", flush=True)
        sys.stdin.readline()

    pfs.training.loop.progress = _signalling_progress(wait_for_the_signal)  # in the child only
    _train_with_workers(DataSettings(**data), Path(checkpoint), model_seed=0)


def _process_group(pgid: int) -> list[int]:
    """Pids of the live processes in process group ``pgid`` (from /proc)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _ppid, group = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except OSError:  # exited meanwhile
            continue
        if int(group) == pgid and state != "Z":
            pids.append(int(stat.parent.name))
    return pids


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="lists processes through /proc")
def test_sigterm_to_every_process_of_a_job_with_loader_workers_saves_its_mid_epoch_checkpoint(tmp_path):
    """SLURM signals every process of a job step, DataLoader workers included (torch's workers die of a SIGTERM
    that their parent did not send): the workers outlive it, the job saves its checkpoint at the batch and stops
    as a signalled job does, no worker is left behind, and the rerun ends exactly like an uninterrupted run."""
    data = _data_with_workers("cifar10", tmp_path)
    code = (f"import test_loop; test_loop._preempted_in_epoch_2({dataclasses.asdict(data)!r}, "
            f"{str(tmp_path / 'b.pt')!r})")
    env = _child_env()
    with open(tmp_path / "stderr.txt", "w+") as stderr:
        child = subprocess.Popen([sys.executable, "-c", code], env=env, start_new_session=True, text=True,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr)
        try:
            assert child.stdout.readline() == "signal me\n"
            workers = set(_process_group(child.pid)) - {child.pid}
            os.killpg(child.pid, signal.SIGTERM)  # from outside the job, as slurmstepd sends it
            child.communicate("go\n", timeout=60)
        finally:
            child.kill()
        stderr.seek(0)
        message = stderr.read()
    assert child.returncode == 1, message[-3000:]  # the uncaught Preempted; a worker's death also gives 1
    preempted = "pfs.training.loop.Preempted: training stopped by signal 15 in epoch 2 after batch 2"
    assert preempted in message, message[-3000:]
    assert "killed by signal" not in message
    assert len(workers) >= 2  # the training loader's 2 workers (and the test loader's, kept from epoch 1)
    assert _process_group(child.pid) == []  # none left behind
    ckpt = load_artifact(tmp_path / "b.pt", "pfs.checkpoint")
    assert (ckpt["epoch"], ckpt["partial"]["batch"]) == (1, 2)

    run_a, a = _train_with_workers(data, tmp_path / "a.pt", model_seed=0)
    run_b, b = _train_with_workers(data, tmp_path / "b.pt", model_seed=99)  # all must come from the checkpoint
    _assert_same_run(run_a, a, run_b, b)


class _WorkerDraws(Dataset):
    """Item i: i, what the loading worker's torch, numpy and ``random`` generators draw next, and the worker's id."""

    def __len__(self) -> int:
        return 12

    def __getitem__(self, i: int) -> torch.Tensor:
        worker = torch.utils.data.get_worker_info()
        return torch.tensor([i, torch.rand(()).item(), np.random.rand(), random.random(), worker.id],
                            dtype=torch.float64)


def _draws_in_last_epoch(epochs: list[int], world_size: int = 1, fresh: bool = True) -> torch.Tensor:
    """The items rank 0's training loader (2 workers) gives in the last of ``epochs``, each epoch seeded as the
    training loop seeds it; ``fresh`` false: a loader that keeps its workers between epochs instead."""
    cfg, data = TrainConfig(batch_size=2 * world_size, device_data="never"), DataSettings("cifar10", num_workers=2)
    loader, _ = training_loaders(_WorkerDraws(), _WorkerDraws(), dataset_info("cifar10"), cfg, data, CPU,
                                 Dist(0, world_size), seed=7)
    if not fresh:
        loader = make_loader(_WorkerDraws(), 2, True, 2, CPU)
    for epoch in epochs:
        pfs.training.loop._seed_epoch(loader, 7, epoch)
        draws = torch.cat(list(loader))
    return draws


@pytest.mark.parametrize("world_size", [1, 2])
def test_what_a_training_worker_draws_in_an_epoch_does_not_depend_on_the_epochs_before(world_size):
    """Epoch 3 of the training loader: its samples, their order and each worker's torch, numpy and random draws
    are the same after epochs 1 and 2 ran in the same loader as in a new loader that starts at epoch 3 (a resumed
    run), for a plain shuffle and for rank 0's DistributedSampler shard."""
    resumed = _draws_in_last_epoch([3], world_size)
    assert torch.equal(_draws_in_last_epoch([1, 2, 3], world_size), resumed)
    assert resumed[:, 4].tolist() == [(k // 2) % 2 for k in range(len(resumed))]  # batches of 2 to workers 0, 1, 0..
    by_worker = [resumed[resumed[:, 4] == w, 1:4] for w in (0, 1)]
    assert not (by_worker[0][:2] == by_worker[1][:2]).any()  # the workers' generators differ
    assert not (_draws_in_last_epoch([2], world_size)[:, 1:4] == resumed[:, 1:4]).any()  # and differ by epoch
    # workers kept between epochs carry epoch 2's state into epoch 3: what a training loader must not do
    assert not torch.equal(_draws_in_last_epoch([1, 2, 3], fresh=False), _draws_in_last_epoch([3], fresh=False))


def test_a_training_loader_that_keeps_its_workers_between_epochs_is_refused(tmp_path):
    train, test = _image_sets()
    kept = DataLoader(train, batch_size=8, num_workers=1, persistent_workers=True)
    with pytest.raises(PfsError, match=r"keeps its workers between epochs .* fresh_workers=True"):
        train_from_scratch(_linear(), kept, make_loader(test, 8, False, 0, CPU), TrainConfig(epochs=1), 1, 0, CPU,
                           tmp_path / "c.pt", "k")
    assert not (tmp_path / "c.pt").exists()


def test_train_config_refuses_an_unknown_device_data_mode():
    with pytest.raises(PfsError, match="device_data 'gpu' unknown; known: auto, always, never"):
        TrainConfig(device_data="gpu")


def test_compile_wraps_the_network_and_checkpoints_the_plain_module(tmp_path, monkeypatch):
    compiled = []

    def fake_compile(module):  # torch.compile itself takes ~40 s on CPU; its wiring is what is tested here
        compiled.append(module)
        return module

    monkeypatch.setattr(torch, "compile", fake_compile)
    model = _linear()
    train_loader, test_loader = _loaders()
    train_from_scratch(model, train_loader, test_loader, TrainConfig(epochs=1, compile=True), 1, 0, CPU,
                       tmp_path / "c.pt", "k")
    assert compiled == [model]
    train_from_scratch(_linear(), train_loader, test_loader, TrainConfig(epochs=1), 1, 0, CPU, tmp_path / "d.pt", "k")
    assert len(compiled) == 1  # off by default


# ---------------------------------------------------------------- the per-epoch line (pfs.core.progress.Eta)


def _ticks(step: float):
    """A fake clock for pfs.core.progress.Eta: each reading is ``step`` seconds after the last (Eta reads it when made
    and at each epoch's end)."""
    return functools.partial(next, itertools.count(1000.0, step))


def _epoch_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "pfs.training.loop" and r.getMessage().startswith("epoch ")]


LINE = (r"epoch {epoch}/{epochs} lr [0-9.e-]+ train_loss \d+\.\d{{4}} test top-1 \d+\.\d\d% top-5 \d+\.\d\d% \| "
        r"(?P<elapsed>\d+\.\d) s elapsed, ~{left} left, {rate} img/s")


def test_each_epoch_line_says_elapsed_time_time_left_and_images_per_second(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(pfs.core.progress, "_clock", _ticks(10.0))  # 10 s an epoch, 16 training images each
    with caplog.at_level("INFO", logger="pfs.training.loop"):
        _train_linear(tmp_path, TrainConfig(epochs=3), epochs=3)
    lines = _epoch_lines(caplog)
    assert len(lines) == 3, lines
    for epoch, (line, left) in enumerate(zip(lines, ("20.0 s", "10.0 s", "0.0 s"), strict=True), start=1):
        match = re.fullmatch(LINE.format(epoch=epoch, epochs=3, left=re.escape(left), rate=r"1\.6"), line)
        assert match and float(match["elapsed"]) == 10.0 * epoch, line


def test_a_resumed_runs_eta_counts_the_epochs_done_before_and_takes_the_pace_of_this_session(
        tmp_path, monkeypatch, caplog):
    with monkeypatch.context() as patch:
        patch.setattr(pfs.training.loop, "_train_epoch", _killed_in_epoch(3))
        with pytest.raises(_Killed):
            _train_linear(tmp_path, TrainConfig(epochs=4), epochs=4)
    before = load_artifact(tmp_path / "ckpt.pt", "pfs.checkpoint")["elapsed"]  # 2 epochs, in real seconds

    monkeypatch.setattr(pfs.core.progress, "_clock", _ticks(10.0))
    caplog.clear()  # the killed run's lines, if an earlier test left pfs logging at INFO
    with caplog.at_level("INFO", logger="pfs.training.loop"):
        _train_linear(tmp_path, TrainConfig(epochs=4), epochs=4)
    lines = _epoch_lines(caplog)
    assert len(lines) == 2, lines  # epochs 3 and 4: the pace of 10 s an epoch gives 10 s left after epoch 3
    for epoch, line, left in ((3, lines[0], "10.0 s"), (4, lines[1], "0.0 s")):
        match = re.fullmatch(LINE.format(epoch=epoch, epochs=4, left=re.escape(left), rate=r"1\.6"), line)
        assert match, line
        assert float(match["elapsed"]) == pytest.approx(before + 10.0 * (epoch - 2), abs=0.051), line
