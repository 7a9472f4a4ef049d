"""Helpers the tests share (a module of its own, not conftest.py, so every test imports the same one: pytest puts
tests/ on sys.path through pyproject's pythonpath): the repository root and tiny datasets made on the fly."""

from __future__ import annotations

import contextlib
import logging
import pickle
import struct
import sys
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parent.parent  # the checkout
CIFAR10_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]


def write_tiny_cifar10(root: Path, per_batch: int = 20, test_size: int = 30, seed: int = 0) -> Path:
    """A CIFAR-10 folder in torchvision's on-disk layout (pickled batches under cifar-10-batches-py/).

    Images are random noise with a class-dependent mean colour, so a network can learn something.
    """
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)

    def batch(n: int) -> dict:
        labels = rng.integers(0, 10, n)
        images = rng.integers(0, 128, (n, 3, 32, 32)) + (labels * 12)[:, None, None, None]
        return {"data": images.reshape(n, -1).astype(np.uint8), "labels": labels.tolist()}

    for name in CIFAR10_TRAIN:
        with open(folder / name, "wb") as fh:
            pickle.dump(batch(per_batch), fh)
    with open(folder / "test_batch", "wb") as fh:
        pickle.dump(batch(test_size), fh)
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, fh)
    return root


def flip_bytes(path: Path, count: int = 64, entry: str | None = None) -> str:
    """Invert ``count`` bytes in the middle of one entry of a torch file (default: its largest tensor), as a disk
    or copy fault would, leaving the zip's structure intact; returns the entry's name."""
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
    if entry is None:
        info = max((i for i in infos if "/data/" in i.filename), key=lambda i: i.file_size)
    else:
        info = next(i for i in infos if i.filename.endswith(entry))
    assert info.file_size >= count
    data = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26:info.header_offset + 30])
    start = info.header_offset + 30 + name_len + extra_len + (info.file_size - count) // 2
    data[start:start + count] = bytes(b ^ 0xFF for b in data[start:start + count])
    path.write_bytes(bytes(data))
    return info.filename


@contextlib.contextmanager
def restored_globals():
    """The scripts reconfigure the root logger (force=True) and torch's threads; undo that afterwards."""
    root = logging.getLogger()
    handlers, level, threads = root.handlers[:], root.level, torch.get_num_threads()
    try:
        yield
    finally:
        for handler in root.handlers:
            if handler not in handlers:
                stream = getattr(handler, "stream", None)
                if stream not in (None, sys.stderr, sys.__stderr__) and hasattr(stream, "close"):
                    stream.close()  # the job log the script opened
        root.handlers[:] = handlers
        root.setLevel(level)
        torch.set_num_threads(threads)


CLASSES = ("n02", "n01", "n03")  # created out of order: labels must follow the sorted names


TRAIN_PER_CLASS, VAL_PER_CLASS = 4, 2


def write_tiny_imagenet(root: Path, classes=CLASSES, train_per_class=TRAIN_PER_CLASS,
                        val_per_class=VAL_PER_CLASS) -> Path:
    """``root/{train,val}/<class>/img<i>.JPEG`` (40x30 solid colour JPEGs) plus files an indexer must skip."""
    for split, n in (("train", train_per_class), ("val", val_per_class)):
        for c, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in reversed(range(n)):  # written in reverse: order must not come from the file system
                Image.new("RGB", (40, 30), (60 * c, 10 * i, 200)).save(folder / f"img{i}.JPEG")
            (folder / "README.txt").write_text("not an image")
            (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
            (folder / "._img0.JPEG").write_bytes(b"\0\5\26\7")  # macOS resource fork: hidden, not an image
        (root / split / "LICENSE.txt").write_text("a plain file beside the class folders is not a class")
        (root / split / ".hidden_dir").mkdir()
    return root


FOLDER_CLASSES = ("emu", "cat", "dog")  # created out of order: labels follow the sorted names (cat 0, dog 1, emu 2)


def write_image_folder(root: Path, classes=FOLDER_CLASSES, train_per_class: int = 12, val_per_class: int = 0,
                       size: tuple[int, int] = (24, 20), seed: int = 0) -> Path:
    """A folder dataset ``root/train/<class>/img<i>.png`` (and ``root/val/...`` when ``val_per_class``): lossless
    PNGs of ``size`` (width, height), random noise around a colour of each class, so a network can tell them apart;
    plus files an indexer must skip."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", train_per_class), ("val", val_per_class)):
        for name in classes if n else ():
            folder = root / split / name
            folder.mkdir(parents=True)
            label = sorted(classes).index(name)
            colour = np.array([40 + 80 * label, 90, 200 - 70 * label])
            for i in range(n):
                pixels = rng.integers(-40, 41, (size[1], size[0], 3)) + colour
                Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(folder / f"img{i}.png")
            (folder / "notes.txt").write_text("not an image")
            (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    return root
