"""The list preparation of a folder of one's own images (dataset.name: folder): its script's ``main`` called directly.
The real Snakemake run of a folder dataset, from list preparation (a val_fraction hold-out, the mean and std at the
image size) through gates, pruning, every baseline and training, the reruns a new image size plans and an empty class
folder refused while the DAG is built, is tests/workflow/test_library_run.py's (torchvision:resnet18): one run for
both, to keep the suite's time."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
from pfs_testkit import REPO, restored_globals, write_image_folder


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
