"""A dataset's files on disk: the class folders and image names of an ImageNet-style tree, and the fingerprint of
a dataset's files that the workflow tracks (a rule param), so changed data reruns what read it.

Standard library only: rules/config.smk computes the fingerprint while the DAG is built.

The fingerprint is what the jobs would see, not where it lies, so moving the data reruns nothing:
- ImageNet-style trees: every split's class folders and the sorted names of their images (what list preparation
  indexes; hidden files and non-image names, such as a stray ``notes.txt``, are left out as indexing leaves them);
- CIFAR folders read with the MD5 check on: torchvision's MD5 list itself (a file that differs is refused when
  read, so the content is fixed by it); with the check off: each batch file's name, size and a hash of its first
  and last MiB;
- the embedded digits: a constant.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from pfs.core.catalog import dataset_info
from pfs.core.errors import PfsError

# torchvision's ImageFolder extensions (compared case-insensitively), plus .webp
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp"})
_SUFFIXES = tuple(IMAGE_EXTENSIONS)  # str.endswith takes a tuple: one C call per name instead of os.path.splitext
_EDGE = 1 << 20  # bytes hashed at each end of an unchecked CIFAR batch file


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
        return f"{dataset} tree {_tree_digest(Path(root), info.folders)}"
    if check_md5:
        return f"{dataset}: torchvision's files (MD5-checked when read)"
    return f"{dataset} files {_cifar_digest(Path(root) / info.folders[0])}"
