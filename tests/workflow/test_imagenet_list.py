"""The prepare_imagenet_list rule, run by Snakemake on a tiny ImageNet-style tree (empty image files: indexing
never decodes them)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from smk_run import snakemake, tail

pytestmark = pytest.mark.slow

LISTS = "results/imagenet/lists"
LOG = "logs/imagenet/lists/prepare_imagenet_list.log"


def _tree(root: Path) -> Path:
    for split, n in (("train", 3), ("val", 2)):
        for name in ("n02", "n01"):
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                (root / split / name / f"x{i}.JPEG").write_bytes(b"")
            (root / split / name / "README.txt").write_text("ignored")
    return root


def _run(workdir: Path, root: Path):
    # the target comes first: --configfile and --config take every argument after them
    return snakemake(workdir, f"{LISTS}/train.csv", "--cores", "1", "--configfile", "tiny.yaml",
                     "--config", f"dataset={{root: '{root}'}}", timeout=300)


def test_rule_writes_train_and_val_tables_and_logs_counts(workflow_copy, tmp_path):
    result = _run(workflow_copy, _tree(tmp_path / "imagenet"))
    assert result.returncode == 0, tail(result.stdout)
    train = pd.read_csv(workflow_copy / LISTS / "train.csv")
    val = pd.read_csv(workflow_copy / LISTS / "val.csv")
    assert train["path"].tolist() == [f"train/{c}/x{i}.JPEG" for c in ("n01", "n02") for i in range(3)]
    assert train["label"].tolist() == [0, 0, 0, 1, 1, 1]
    assert val.to_dict("list") == {"path": ["val/n01/x0.JPEG", "val/n01/x1.JPEG", "val/n02/x0.JPEG", "val/n02/x1.JPEG"],
                                   "class_name": ["n01", "n01", "n02", "n02"], "label": [0, 0, 1, 1]}
    log = (workflow_copy / LOG).read_text()
    assert "train: 6 images in 2 classes" in log and "val: 4 images in 2 classes" in log
    assert "prepare_imagenet_list" in result.stdout and "learn_gates" not in result.stdout  # nothing else ran


def test_rule_refuses_mismatched_classes_and_writes_no_table(workflow_copy, tmp_path):
    root = _tree(tmp_path / "imagenet")
    shutil.rmtree(root / "val" / "n02")
    result = _run(workflow_copy, root)
    assert result.returncode != 0
    message = "val/ has other classes than train/ (1 vs 2; only in train/: n02; only in val/: none)"
    assert message in result.stdout, tail(result.stdout)
    assert message in (workflow_copy / LOG).read_text()
    assert "Traceback" not in (workflow_copy / LOG).read_text()
    assert not (workflow_copy / LISTS).exists() or list((workflow_copy / LISTS).iterdir()) == []
