"""A dataset's files on disk: the class folders and image names of an ImageNet-style tree, and the fingerprint of
a dataset's files that the workflow tracks (a rule param), so changed data reruns what read it.

Standard library only: rules/config.smk computes the fingerprint while the DAG is built.

The fingerprint is what the jobs would see, not where it lies, so moving the data reruns nothing:
- ImageNet-style trees (imagenet, folder): the class folders of train/ and val/ and the sorted names of their images
  (what list preparation indexes; hidden files and non-image names, such as a stray ``notes.txt``, are left out as
  indexing leaves them; a folder dataset without val/ is fingerprinted as such);
- CIFAR folders read with the MD5 check on: torchvision's MD5 list itself (a file that differs is refused when
  read, so the content is fixed by it); with the check off: each batch file's name, size and a hash of its first
  and last MiB;
- the embedded digits: a constant.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from pfs.core.catalog import check_data_present, dataset_info
from pfs.core.errors import PfsError

# torchvision's ImageFolder extensions (compared case-insensitively), plus .webp
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp"})
_SUFFIXES = tuple(IMAGE_EXTENSIONS)  # str.endswith takes a tuple: one C call per name instead of os.path.splitext
_EDGE = 1 << 20  # bytes hashed at each end of an unchecked CIFAR batch file
SPLITS = ("train", "val")  # the splits of a class-folder tree
_SHOWN = 5  # class names shown in an error message


def is_hidden(name: str) -> bool:
    # .DS_Store, macOS '._x.JPEG' resource forks (not images despite the extension), .ipynb_checkpoints/
    return name.startswith(".")


def class_folders(split_dir: str | os.PathLike) -> list[str]:
    """Sorted names of the class folders of a split (hidden folders and plain files are ignored)."""
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        raise PfsError(f"{split_dir} is not a folder; an ImageNet root holds train/ and val/ with one folder per class")
    with os.scandir(split_dir) as entries:
        return sorted(e.name for e in entries if not is_hidden(e.name) and e.is_dir())


def image_names(class_dir: str | os.PathLike) -> list[str]:
    """Sorted image file names directly inside one class folder (deeper folders are not searched)."""
    with os.scandir(class_dir) as entries:  # is_file() reads the entry's type from readdir: no stat
        return sorted(e.name for e in entries
                      if e.name.lower().endswith(_SUFFIXES) and not is_hidden(e.name) and e.is_file())


def class_differences(train: list[str], val: list[str]) -> str:
    """The class folders only one split has, for an error message (the first few of each)."""
    def shown(names: list[str]) -> str:
        more = f" (+{len(names) - _SHOWN} more)" if len(names) > _SHOWN else ""
        return ", ".join(names[:_SHOWN]) + more if names else "none"

    only_train = sorted(set(train) - set(val))
    only_val = sorted(set(val) - set(train))
    return f"only in train/: {shown(only_train)}; only in val/: {shown(only_val)}"


def _has_image(class_dir: Path) -> bool:
    with os.scandir(class_dir) as entries:  # stops at the first image: a large class costs one read, not a listing
        return any(e.name.lower().endswith(_SUFFIXES) and not is_hidden(e.name) and e.is_file() for e in entries)


def check_folder_tree(root: str | os.PathLike, val_fraction: float = 0.0) -> list[str]:
    """Refuse, in one line and before any job, a folder dataset's tree that cannot be indexed: no root or train/,
    val/ missing without ``val_fraction`` (or both given), fewer than 2 class folders, a class folder without
    images, or val/ with other class folders than train/. Returns the class names. Lists folders, opens no image."""
    check_data_present("folder", root)
    root = Path(root)
    has_val = (root / "val").is_dir()
    if has_val and val_fraction > 0:
        raise PfsError(f"dataset folder: {root} has val/ and dataset.val_fraction is {val_fraction}; use one: "
                       "val/ as the evaluation set (val_fraction: 0), or remove val/ to hold out part of train/")
    if not has_val and val_fraction == 0:
        raise PfsError(f"dataset folder: {root} has train/ but no val/; add val/<class>/<image> with the same class "
                       "folders as train/, or set dataset.val_fraction (e.g. 0.2) to hold out that part of every "
                       "class of train/ as the evaluation set")
    classes = {split: class_folders(root / split) for split in SPLITS if (root / split).is_dir()}
    if len(classes["train"]) < 2:
        found = f"only {classes['train'][0]}/" if classes["train"] else "none"
        raise PfsError(f"dataset folder: {root / 'train'} needs at least 2 class folders (one sub-folder per class, "
                       f"its images inside) to train a classifier; found {found}")
    if has_val and classes["val"] != classes["train"]:
        raise PfsError(f"dataset folder: {root / 'val'} has other class folders than {root / 'train'} "
                       f"({class_differences(classes['train'], classes['val'])}); both need the same class names")
    for split, names in classes.items():
        for name in names:
            if not _has_image(root / split / name):
                raise PfsError(f"class folder {root / split / name} holds no images (extensions: "
                               f"{' '.join(sorted(IMAGE_EXTENSIONS))}); remove it or fill it")
    return classes["train"]


def _tree_digest(root: Path, splits: tuple[str, ...]) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for split in splits:
        split_dir = root / split
        if not split_dir.is_dir():
            digest.update(f"{split}: missing\n".encode())
            continue
        for name in class_folders(split_dir):
            # image_names without its is_file() (one Python call less per file: ~1.5x faster on 1.3M files); a
            # sub-folder with an image extension, which indexing skips, is the only difference
            images = sorted(n for n in os.listdir(split_dir / name) if n.lower().endswith(_SUFFIXES) and n[0] != ".")
            digest.update(f"{split}/{name} {len(images)}\n".encode())
            digest.update("\n".join(images).encode())
    return digest.hexdigest()


def _cifar_digest(folder: Path) -> str:
    if not folder.is_dir():
        return "missing"
    digest = hashlib.blake2b(digest_size=16)
    with os.scandir(folder) as entries:
        files = sorted(e.name for e in entries if e.is_file() and not is_hidden(e.name))
    for name in files:
        size = (folder / name).stat().st_size
        digest.update(f"{name} {size}\n".encode())
        with open(folder / name, "rb") as fh:
            digest.update(fh.read(_EDGE))
            if size > 2 * _EDGE:
                fh.seek(-_EDGE, os.SEEK_END)
                digest.update(fh.read(_EDGE))
    return digest.hexdigest()


def fingerprint(dataset: str, root: str | os.PathLike, check_md5: bool = True) -> str:
    """A short text that changes when the files a job of ``dataset`` would read under ``root`` change (see the
    module docstring for what each dataset's covers); cheap enough to compute at every DAG build."""
    info = dataset_info(dataset)
    if not info.folders:
        return f"{dataset}: embedded"
    if not info.in_memory:  # an ImageNet-style tree, indexed by list preparation
        return f"{dataset} tree {_tree_digest(Path(root), SPLITS)}"
    if check_md5:
        return f"{dataset}: torchvision's files (MD5-checked when read)"
    return f"{dataset} files {_cifar_digest(Path(root) / info.folders[0])}"
