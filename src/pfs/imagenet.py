"""Index an ImageNet-style folder tree (``root/{train,val}/<class>/<image>``) into tables, once, so loaders never
walk the file system again.

A table has one row per image: ``path`` (relative to the dataset root, e.g. ``train/n01440764/x.JPEG``),
``class_name`` (the class folder) and ``label`` (the class's position in the sorted class-folder list). Rows are
sorted by (label, path), so a table, and any split drawn from it, is the same on every file system (the official
lists keep os.listdir order). Indexing never decodes or stats an image: one os.scandir per folder, whose entries
carry the file type on Linux file systems.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from pfs.errors import PfsError
from pfs.io import atomic_path

log = logging.getLogger(__name__)

SPLITS = ("train", "val")
COLUMNS = ("path", "class_name", "label")
# torchvision's ImageFolder extensions (compared case-insensitively), plus .webp
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp"})
_SUFFIXES = tuple(IMAGE_EXTENSIONS)  # str.endswith takes a tuple: one C call per name instead of os.path.splitext
_SHOWN = 5  # differing class names shown in an error message


def _is_hidden(name: str) -> bool:
    # .DS_Store, macOS '._x.JPEG' resource forks (not images despite the extension), .ipynb_checkpoints/
    return name.startswith(".")


def class_folders(split_dir: str | os.PathLike) -> list[str]:
    """Sorted names of the class folders of a split (hidden folders and plain files are ignored)."""
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        raise PfsError(f"{split_dir} is not a folder; an ImageNet root holds train/ and val/ with one folder per class")
    with os.scandir(split_dir) as entries:
        return sorted(e.name for e in entries if not _is_hidden(e.name) and e.is_dir())


def _require_classes(split_dir: Path) -> list[str]:
    classes = class_folders(split_dir)
    if not classes:
        raise PfsError(f"{split_dir} has no class folders; expected one sub-folder per class (e.g. n01440764/). "
                       "The ILSVRC2012 val archive unpacks flat: move its images into class folders first")
    return classes


def _image_names(class_dir: str) -> list[str]:
    """Sorted image file names directly inside one class folder (deeper folders are not searched)."""
    with os.scandir(class_dir) as entries:  # is_file() reads the entry's type from readdir: no stat
        return sorted(e.name for e in entries
                      if e.name.lower().endswith(_SUFFIXES) and not _is_hidden(e.name) and e.is_file())


def index_split(split_dir: str | os.PathLike) -> pd.DataFrame:
    """One row per image of ``split_dir`` (columns path, class_name, label), sorted by (label, path).

    Paths are relative to the dataset root (the parent of ``split_dir``). Refuses a split without class folders
    and a class folder without images, since either would shift or lose labels.
    """
    split_dir = Path(split_dir)
    classes = _require_classes(split_dir)
    paths: list[str] = []
    class_names: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        images = _image_names(os.path.join(split_dir, name))
        if not images:
            raise PfsError(f"class folder {split_dir / name} holds no images (extensions: "
                           f"{' '.join(sorted(IMAGE_EXTENSIONS))}); remove it or fill it")
        prefix = f"{split_dir.name}/{name}/"
        paths += [prefix + image for image in images]  # one class shares the prefix: name order == path order
        class_names += [name] * len(images)
        labels += [label] * len(images)
    return pd.DataFrame({"path": paths, "class_name": class_names, "label": np.asarray(labels, dtype=np.int64)})


def _differences(train: list[str], val: list[str]) -> str:
    def shown(names: list[str]) -> str:
        more = f" (+{len(names) - _SHOWN} more)" if len(names) > _SHOWN else ""
        return ", ".join(names[:_SHOWN]) + more if names else "none"

    only_train = sorted(set(train) - set(val))
    only_val = sorted(set(val) - set(train))
    return f"only in train/: {shown(only_train)}; only in val/: {shown(only_val)}"


def index_tree(root: str | os.PathLike) -> dict[str, pd.DataFrame]:
    """Index ``root/train`` and ``root/val``; refuses a tree whose splits are missing or disagree on the classes."""
    root = Path(root)
    missing = [f"{split}/" for split in SPLITS if not (root / split).is_dir()]
    if missing:
        raise PfsError(f"ImageNet root {root} lacks {' and '.join(missing)}; set dataset.root to the folder that "
                       "holds train/ and val/ (one sub-folder per class in each)")
    classes = {split: _require_classes(root / split) for split in SPLITS}  # compared before any image is listed
    if classes["train"] != classes["val"]:
        raise PfsError(f"ImageNet root {root}: val/ has other classes than train/ ({len(classes['val'])} vs "
                       f"{len(classes['train'])}; {_differences(classes['train'], classes['val'])}), so labels "
                       "would not match")
    return {split: index_split(root / split) for split in SPLITS}


def prepare_lists(root: str | os.PathLike, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write ``out_dir/train.csv`` and ``out_dir/val.csv``; all checks run before anything is written.

    Both tables are written to temp files first and renamed only when both are complete.
    """
    frames = index_tree(root)
    outputs = {split: Path(out_dir) / f"{split}.csv" for split in SPLITS}
    with contextlib.ExitStack() as stack:
        for split, frame in frames.items():
            frame.to_csv(stack.enter_context(atomic_path(outputs[split])), index=False)
    for split, frame in frames.items():
        log.info("%s: %d images in %d classes -> %s", split, len(frame), frame["label"].nunique(), outputs[split])
    return outputs


def read_list(path: str | os.PathLike) -> pd.DataFrame:
    """Load an index table written by prepare_lists and check it (columns, labels 0..K-1, one label per class)."""
    path = Path(path)
    remedy = "rerun prepare_imagenet_list (delete the file first)"
    if not path.is_file():
        raise PfsError(f"ImageNet list {path} does not exist; {remedy}")
    try:
        frame = pd.read_csv(path, dtype={"path": str, "class_name": str, "label": "int64"}, keep_default_na=False)
    except (ValueError, pd.errors.ParserError) as exc:
        raise PfsError(f"ImageNet list {path} is not a valid index table ({exc}); {remedy}") from exc
    if list(frame.columns) != list(COLUMNS):
        raise PfsError(f"ImageNet list {path} has columns {list(frame.columns)}, expected {list(COLUMNS)}; {remedy}")
    if frame.empty:
        raise PfsError(f"ImageNet list {path} has no rows; {remedy}")
    pairs = frame[["label", "class_name"]].drop_duplicates()
    labels = sorted(pairs["label"])
    if labels != list(range(len(labels))) or pairs["class_name"].nunique() != len(pairs):
        raise PfsError(f"ImageNet list {path}: labels are not 0..K-1 with one class name each; {remedy}")
    return frame


def num_classes(frame: pd.DataFrame) -> int:
    """Number of classes of an index table (labels are 0..K-1)."""
    return int(frame["label"].max()) + 1
