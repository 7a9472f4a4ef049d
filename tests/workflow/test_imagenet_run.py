"""The ImageNet workflow end to end on CPU: a generated tree of tiny JPEGs goes through list preparation, gate
learning, pruning and training under torchrun (2 gloo processes) in one real Snakemake run; then reruns and the
paper_imagenet target."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from smk_run import SUMMARY_JOBS, copy_workflow, job_counts, planned_jobs, snakemake, tail, write_jpeg_tree

pytestmark = pytest.mark.slow

EXP = "results/imagenet/mobilenet_v2/e8_m0.5/s0.5/seed0"
PRUNED = f"{EXP}/p0.9"
FULL = "results/imagenet/mobilenet_v2/full/seed0/scratch_e"
# MobileNetV2 at e=8, m=0.5 (41M MACs) keeps 14% of the standard network's MACs unpruned, so ratio 0.9 prunes it
CONFIG = {
    "dataset": {"name": "imagenet", "val_per_class": 1},
    "grid": {"archs": ["mobilenet_v2"], "expansions": {"mobilenet_v2": [8]}, "multipliers": {"mobilenet_v2": [0.5]},
             "ratios": [0.9]},
    "gates": {"epochs": 1, "batch_size": 6, "eval_batch_size": 8, "eval_interval": 2},
    "train": {"epochs": 1, "batch_size": 6, "eval_batch_size": 4, "scratch_b_epochs": 2, "scheduler": "cosine",
              "label_smoothing": 0.1, "nesterov": True, "weight_decay_on": "conv_linear"},
    "resources": {"gpu": 2},  # training: torchrun with 2 processes (gloo on CPU); learn_gates takes at most 1
}


@pytest.fixture(scope="module")
def imagenet_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("imagenet_run")
    root = write_jpeg_tree(tmp / "imagenet")
    workdir = copy_workflow(tmp / "wf", {**CONFIG, "dataset": {**CONFIG["dataset"], "root": str(root)}})
    result = snakemake(workdir, "--cores", "2", "--configfile", "tiny.yaml")
    if result.returncode != 0:
        pytest.fail(f"the tiny ImageNet run failed:\n{tail(result.stdout)}")
    assert job_counts(result.stdout) == {"prepare_imagenet_list": 1, "learn_gates": 1, "prune": 1, "train_pruned": 2,
                                         "train_full": 1, **SUMMARY_JOBS}
    return workdir


def _metrics(workdir: Path, run: str) -> dict:
    return json.loads((workdir / run / "metrics.json").read_text())


def test_every_stage_writes_its_files_with_imagenet_settings(imagenet_run):
    wd = imagenet_run
    lists = pd.read_csv(wd / "results/imagenet/lists/train.csv")
    assert len(lists) == 18 and sorted(lists["class_name"].unique()) == ["n01", "n02", "n03"]
    history = pd.read_csv(wd / EXP / "gates_metrics.csv")
    assert history["step"].tolist() == [2, 3]  # 15 images (one per class held out) in batches of 6, every 2 steps
    channels = yaml.safe_load((wd / PRUNED / "channels.yaml").read_text())
    assert channels["num_classes"] == 3 and channels["multiplier"] == 0.5
    assert abs(channels["achieved_ratio"] - 0.9) <= 0.9 * 0.01
    for schedule, epochs in (("scratch_e", 1), ("scratch_b", 2)):  # Scratch-B: the fixed scratch_b_epochs
        m = _metrics(wd, f"{PRUNED}/{schedule}")
        assert (m["epochs"], m["world_size"], m["num_classes"], m["min_crop_scale"]) == (epochs, 2, 3, 0.25)
        assert m["macs"] == channels["macs"] and m["settings"]["label_smoothing"] == 0.1
        assert 0 <= m["top1"] <= m["top5"] <= 1
        assert len(pd.read_csv(wd / PRUNED / schedule / "history.csv")) == epochs
    full = _metrics(wd, FULL)
    assert (full["method"], full["expansion"], full["multiplier"], full["world_size"]) == ("full", 32, 1.0, 2)
    summary = pd.read_csv(wd / "results/summary.csv")
    assert sorted(summary["method"]) == ["full", "pfs", "pfs"]


def test_training_ran_under_torchrun_and_only_rank_0_logged(imagenet_run):
    log = (imagenet_run / f"logs/{PRUNED[len('results/'):]}/scratch_b/train_pruned.log").read_text()
    assert "torchrun --standalone --nproc_per_node=2 -m pfs train" in log
    assert log.count("epoch 2/2 lr") == 1
    assert "Traceback" not in log


def test_a_finished_run_has_nothing_to_do_and_moving_the_data_reruns_nothing(imagenet_run, tmp_path):
    assert planned_jobs(imagenet_run, {})[0] == {}
    moved = tmp_path / "moved"
    shutil.copytree(Path(yaml.safe_load((imagenet_run / "tiny.yaml").read_text())["dataset"]["root"]), moved)
    assert planned_jobs(imagenet_run, {"dataset": {"root": str(moved)}})[0] == {}


def test_a_changed_tree_reruns_list_preparation_and_what_follows_and_a_stray_file_nothing(imagenet_run, tmp_path):
    tree = tmp_path / "copy"
    shutil.copytree(Path(yaml.safe_load((imagenet_run / "tiny.yaml").read_text())["dataset"]["root"]), tree)
    (tree / "train" / "n01" / "notes.txt").write_text("not an image")  # stray files: indexing skips them
    (tree / "val" / "n02" / ".DS_Store").write_bytes(b"")
    assert planned_jobs(imagenet_run, {"dataset": {"root": str(tree)}})[0] == {}
    everything = {"prepare_imagenet_list": 1, "learn_gates": 1, "prune": 1, "train_pruned": 2, "train_full": 1,
                  **SUMMARY_JOBS}
    first = tree / "train" / "n01" / "img0.JPEG"
    shutil.copy(first, first.with_name("added.JPEG"))  # one more training image
    planned, output = planned_jobs(imagenet_run, {"dataset": {"root": str(tree)}})
    assert planned == everything and "Params have changed since last execution" in output, tail(output)
    first.with_name("added.JPEG").rename(first.with_name("renamed.JPEG"))  # the same count under another name
    assert planned_jobs(imagenet_run, {"dataset": {"root": str(tree)}})[0] == everything
    lists = imagenet_run / "results/imagenet/lists"
    shutil.move(lists, tmp_path / "lists")  # the README's old remedy on top: the index is rebuilt as well
    try:
        assert planned_jobs(imagenet_run, {"dataset": {"root": str(tree)}})[0] == everything
    finally:
        shutil.move(tmp_path / "lists", lists)


def test_reruns_follow_the_changed_setting(imagenet_run):
    only_training = {"train_pruned": 2, "train_full": 1, **SUMMARY_JOBS}
    assert planned_jobs(imagenet_run, {"train_by_arch": {"mobilenet_v2": {"lr": 0.05}}})[0] == only_training
    assert planned_jobs(imagenet_run, {"train_by_arch": {"resnet50": {"lr": 0.05}}})[0] == {}  # another arch
    assert planned_jobs(imagenet_run, {"dataset": {"verify_images": True}})[0] == {}  # a check, not a setting
    assert planned_jobs(imagenet_run, {"dataset": {"val_per_class": 2}})[0] == {
        "learn_gates": 1, "prune": 1, "train_pruned": 2, **SUMMARY_JOBS}
    assert planned_jobs(imagenet_run, {"gates": {"eval_interval": 3}})[0] == {
        "learn_gates": 1, "prune": 1, "train_pruned": 2, **SUMMARY_JOBS}


def test_paper_imagenet_plans_the_papers_grid(tmp_path):
    root = write_jpeg_tree(tmp_path / "imagenet", train=2, val=1)
    workdir = copy_workflow(tmp_path / "wf")  # configs/ included
    result = snakemake(workdir, "-n", "paper_imagenet", "--configfile", "configs/paper_imagenet.yaml",
                       "--config", f"dataset={{root: '{root}'}}")
    assert result.returncode == 0, tail(result.stdout)
    assert job_counts(result.stdout) == {"prepare_imagenet_list": 1, "learn_gates": 3, "prune": 3, "train_pruned": 3,
                                         "train_full": 3, "summarize": 1, "plot_results": 1, "paper_imagenet": 1}
    assert "--nproc_per_node" not in result.stdout  # the launch is inside the training script
    assert "gpu=8" in result.stdout and "gpu=1" in result.stdout  # training jobs vs gate learning


def test_paper_imagenet_under_another_config_names_the_config_to_add(workflow_copy):
    result = snakemake(workflow_copy, "-n", "paper_imagenet", "--configfile", "tiny.yaml")
    assert result.returncode != 0
    assert "add --configfile configs/paper_imagenet.yaml" in result.stdout, tail(result.stdout)


def _corrupt_tree(tmp_path: Path) -> tuple[Path, Path]:
    root = write_jpeg_tree(tmp_path / "imagenet")
    bad = root / "train" / "n01" / "x.JPEG"  # a foreign file with an image name: indexed (indexing never decodes)
    bad.write_text("not an image")
    return root, bad


def test_a_corrupt_image_fails_gate_learning_with_one_line_naming_it_under_loader_workers(tmp_path):
    root, bad = _corrupt_tree(tmp_path)
    workdir = copy_workflow(tmp_path / "wf", {**CONFIG, "dataset": {**CONFIG["dataset"], "root": str(root),
                                                                    "num_workers": 1}})
    result = snakemake(workdir, f"{EXP}/gates.pt", "--cores", "2", "--configfile", "tiny.yaml")
    assert result.returncode != 0
    line = f"ERROR pfs.stage: cannot decode image {bad} (cannot identify image file"
    log = (workdir / "logs" / EXP.removeprefix("results/") / "learn_gates.log").read_text()
    assert line in log and "remove or replace the file" in log, tail(log)
    assert "Caught PfsError" not in log and "Traceback" not in log
    assert not (workdir / EXP / "gates.pt").exists()
    shutil.copy(bad.with_name("img0.JPEG"), bad)  # a good copy under the same name: the index stands, as the line says
    result = snakemake(workdir, "-n", f"{EXP}/gates.pt", "--configfile", "tiny.yaml")
    assert job_counts(result.stdout) == {"learn_gates": 1}, tail(result.stdout)


def test_verify_images_refuses_the_corrupt_image_in_list_preparation(tmp_path):
    root, bad = _corrupt_tree(tmp_path)
    workdir = copy_workflow(tmp_path / "wf", {**CONFIG, "dataset": {**CONFIG["dataset"], "root": str(root),
                                                                    "verify_images": True}})
    result = snakemake(workdir, "results/imagenet/lists/train.csv", "--cores", "2", "--configfile", "tiny.yaml")
    assert result.returncode != 0
    assert f"1 of 25 images cannot be decoded: {bad}; remove or replace them" in result.stdout, tail(result.stdout)
    assert not (workdir / "results/imagenet/lists/train.csv").exists()
    bad.unlink()  # the fix the line gives; the tree's fingerprint changed, so the index is rebuilt
    result = snakemake(workdir, "results/imagenet/lists/train.csv", "--cores", "2", "--configfile", "tiny.yaml")
    assert result.returncode == 0, tail(result.stdout)
    assert "verified 24 images" in (workdir / "logs/imagenet/lists/prepare_imagenet_list.log").read_text()
