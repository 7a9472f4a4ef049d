"""A folder of one's own images end to end (dataset.name: folder): a generated tree of PNGs (3 classes x 12 images
of 20x24 px, no val/) goes through list preparation (a val_fraction hold-out, the mean and std at image_size 16),
gate learning, pruning and training in one real Snakemake run (slow); then the reruns a new image size plans, and an
empty class folder refused with one line while the DAG is built. Beside it, the list script's ``main`` called
directly."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from pfs_testkit import REPO, restored_globals, write_image_folder
from smk_run import SUMMARY_JOBS, copy_workflow, error_lines, job_counts, planned_jobs, snakemake, tail

EXP = "results/folder/resnet20/e20_m1/s0.5/seed0"
PRUNED = f"{EXP}/p0.5"
LISTS = "results/folder/lists"
CONFIG = {
    "dataset": {"name": "folder", "image_size": 16, "val_fraction": 0.25, "val_per_class": 2},
    "grid": {"schedules": ["scratch_e"], "full_baseline": False},
    "gates": {"epochs": 1, "batch_size": 16},
    "train": {"epochs": 1, "batch_size": 16},
}


@pytest.mark.slow
def test_a_folder_of_pngs_runs_from_list_preparation_to_training_at_its_image_size(tmp_path):
    root = write_image_folder(tmp_path / "images", train_per_class=12, size=(20, 24))
    workdir = copy_workflow(tmp_path / "wf", {**CONFIG, "dataset": {**CONFIG["dataset"], "root": str(root)}})
    result = snakemake(workdir, "--cores", "2", "--configfile", "tiny.yaml")
    assert result.returncode == 0, tail(result.stdout)
    assert job_counts(result.stdout) == {"prepare_folder_list": 1, "learn_gates": 1, "prune": 1, "train_pruned": 1,
                                         **SUMMARY_JOBS}
    train, val = (pd.read_csv(workdir / LISTS / f"{split}.csv") for split in ("train", "val"))
    assert (len(train), len(val), sorted(val["class_name"].unique())) == (27, 9, ["cat", "dog", "emu"])
    stats = yaml.safe_load((workdir / LISTS / "stats.yaml").read_text())
    assert (stats["image_size"], stats["num_classes"], stats["source"]) == (16, 3, "training images")
    channels = yaml.safe_load((workdir / PRUNED / "channels.yaml").read_text())
    metrics = json.loads((workdir / PRUNED / "scratch_e" / "metrics.json").read_text())
    from pfs.method.macs import network_cost

    assert channels["macs_baseline"] == network_cost("resnet20", 16, 3)["macs"]  # MACs at the configured size
    assert metrics["macs"] == channels["macs"] and metrics["num_classes"] == 3 and 0 <= metrics["top1"] <= 1
    summary = pd.read_csv(workdir / "results/summary.csv")
    assert summary["dataset"].tolist() == ["folder"]

    # another image size remakes the index and stats.yaml, so everything reruns
    planned, output = planned_jobs(workdir, {"dataset": {"image_size": 24}})
    assert planned == job_counts(result.stdout) and "Params have changed" in output, tail(output)

    # an empty class folder: one line while the DAG is built, naming it; nothing runs
    for image in (root / "train" / "dog").glob("*.png"):
        image.unlink()
    refused = snakemake(workdir, "-n", "--configfile", "tiny.yaml")
    assert refused.returncode != 0
    lines = error_lines(refused.stdout)
    assert lines == [f"error: class folder {root / 'train' / 'dog'} holds no images (extensions: .bmp .jpeg .jpg "
                     ".pgm .png .ppm .tif .tiff .webp); remove it or fill it"], refused.stdout


def _script():
    sys.path.insert(0, str(REPO / "workflow_scripts"))
    try:
        return importlib.import_module("prepare_folder_list")
    finally:
        sys.path.remove(str(REPO / "workflow_scripts"))


def test_the_list_script_writes_tables_and_stats_or_one_error_line_and_nothing(tmp_path, monkeypatch):
    from pfs.core.catalog import FOLDER_STATS_ENV

    monkeypatch.setenv(FOLDER_STATS_ENV, "")
    root = write_image_folder(tmp_path / "images", train_per_class=3, val_per_class=1)
    config = {"dataset": {"root": str(root), "verify_images": True}}
    params = {"lists": {"image_size": 8, "val_fraction": 0, "mean": None, "std": None}}
    out = tmp_path / "lists"
    with restored_globals():
        _script().main({}, {"train": str(out / "train.csv")}, params, {}, config, str(tmp_path / "ok.log"), 2)
    assert sorted(p.name for p in out.iterdir()) == ["stats.yaml", "train.csv", "val.csv"]
    assert "verified 12 images" in Path(tmp_path / "ok.log").read_text()
    (root / "val" / "emu" / "img0.png").unlink()
    with restored_globals(), pytest.raises(SystemExit) as exit_info:
        _script().main({}, {"train": str(tmp_path / "bad" / "train.csv")}, params, {}, config,
                       str(tmp_path / "bad.log"), 1)
    assert exit_info.value.code == 1 and not (tmp_path / "bad").exists()
    errors = [line for line in (tmp_path / "bad.log").read_text().splitlines() if "ERROR" in line]
    assert len(errors) == 1 and errors[0].endswith(f"class folder {root / 'val' / 'emu'} holds no images "
                                                   "(extensions: .bmp .jpeg .jpg .pgm .png .ppm .tif .tiff .webp); "
                                                   "remove it or fill it")
