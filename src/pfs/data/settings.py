"""Where and how a job reads its dataset: the settings every reader takes (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DataSettings:
    """Where and how to read a dataset (none of this changes a result, so none of it is a rule param)."""

    name: str
    root: str = "data"
    download: bool = False
    check_md5: bool = True
    num_workers: int = 0
    # ImageNet / folder: the index tables written by prepare_imagenet_list / prepare_folder_list (a folder's
    # stats.yaml lies beside them)
    train_list: str | None = None
    val_list: str | None = None
