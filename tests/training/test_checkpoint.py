"""Resume checkpoints: an atomic save that loads back as written, refusal of another job's file, removal."""

from __future__ import annotations

import pytest
import torch
from pfs_testkit import flip_bytes
from torch import nn

from pfs.core.errors import PfsError
from pfs.training.checkpoint import load_checkpoint, remove_checkpoint, save_checkpoint


def _save(path, key: str, epoch: int = 2) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, [1], 0.1)
    save_checkpoint(path, key, epoch=epoch, elapsed=1.5, history=[{"epoch": 1, "test_top1": 0.5}],
                    partial={"batch": 3, "loss_sum": 0.25, "correct": 2, "n": 12}, model=model, optimizer=optimizer,
                    scheduler=scheduler)
    return model


def test_saved_checkpoint_loads_back_as_written(tmp_path):
    path = tmp_path / "ckpts" / "job.pt"  # the folder is made on first save
    model = _save(path, "job")
    ckpt = load_checkpoint(path, "job")
    assert (ckpt["key"], ckpt["epoch"], ckpt["elapsed"]) == ("job", 2, 1.5)
    assert ckpt["history"] == [{"epoch": 1, "test_top1": 0.5}]
    assert ckpt["partial"] == {"batch": 3, "loss_sum": 0.25, "correct": 2, "n": 12}
    assert all(torch.equal(ckpt["model"][k], v) for k, v in model.state_dict().items())
    assert ckpt["scheduler"]["milestones"] == {1: 1} and "state" in ckpt["optimizer"]
    assert [p.name for p in path.parent.iterdir()] == ["job.pt"]  # no temp file left behind


def test_saving_again_replaces_the_checkpoint(tmp_path):
    path = tmp_path / "job.pt"
    _save(path, "job", epoch=1)
    _save(path, "job", epoch=2)
    assert load_checkpoint(path, "job")["epoch"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["job.pt"]


def test_no_checkpoint_loads_as_none(tmp_path):
    assert load_checkpoint(tmp_path / "missing.pt", "job") is None


def test_checkpoint_of_another_key_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "job.pt"
    _save(path, "job-a")
    with pytest.raises(PfsError, match="belongs to another training job .*delete it to start afresh") as err:
        load_checkpoint(path, "job-b")
    assert str(path) in str(err.value)


def test_a_checkpoint_with_flipped_bytes_is_refused_with_the_restart_advice(tmp_path):
    """Not resumed from: its weights would be another network's. The job stops, saying how to restart it."""
    path = tmp_path / "job.pt"
    _save(path, "job")
    entry = flip_bytes(path, count=4)  # nn.Linear(3, 2): the largest tensor holds 6 floats
    with pytest.raises(PfsError) as err:
        load_checkpoint(path, "job")
    assert str(err.value) == (f"{path} is corrupt: its entry {entry} fails its CRC32 check (the file changed after "
                              f"it was written); delete {path} to restart this training from epoch 1")


def test_remove_checkpoint_deletes_the_file_and_tolerates_a_missing_one(tmp_path):
    path = tmp_path / "ckpt.pt"
    path.write_bytes(b"x")
    remove_checkpoint(path)
    assert not path.exists()
    remove_checkpoint(path)  # no error the second time
    assert not path.exists()
