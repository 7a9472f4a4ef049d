"""Your own images (``dataset.name: folder``): a tree of class folders at any image size, indexed and read as ImageNet
is (pfs.data.index, pfs.data.imagenet).

Layout: ``dataset.root/train/<class>/<image>`` (one sub-folder per class, images of any format PIL reads; at least 2
classes, none empty) and ``dataset.root/val/<class>/<image>`` with the same class folders. The classes are the class
folders of train/, in sorted order (label 0 is the first name). Without val/, set ``dataset.val_fraction`` (e.g.
0.2): every class of train/ holds out round(fraction x its images) of them (half up; at least one held out and one
kept) as the evaluation set, drawn with a fixed seed from the class's own name, so the split is the same on every
machine and run, and adding or removing a class leaves the other classes' split as it was.

Size: every image becomes ``dataset.image_size`` pixels square (default 64), the size MACs are counted at:
- training (gate learning and training from scratch): RandomResizedCrop(image_size, scale=(0.25, 1), ratio=(3/4,
  4/3)) and a random horizontal flip, as the official code's ImageNet gate learning;
- evaluation (the gates' held-out images and val): Resize(round(image_size x 8/7)) of the shorter side, then
  CenterCrop(image_size), ImageNet's 256/224 ratio.

Mean and std (per RGB channel, of pixels in [0, 1]): ``dataset.mean`` and ``dataset.std`` when given, else computed
once by prepare_folder_list over every training image as evaluation sees it (the resize and centre crop above, uint8
pixels), from exact integer sums: the same figures whatever the order or the number of processes. Either way they
are written with the image size and the class count to ``results/folder/lists/stats.yaml``, and every job of the run
reads them from there (pfs.core.catalog.dataset_info("folder")). The gates' held-out images are
``dataset.val_per_class`` images of every class of the training table, as for ImageNet.
"""

from __future__ import annotations

import logging
import math
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from pfs.core import io
from pfs.core.catalog import FOLDER, FOLDER_STATS_KIND, DatasetInfo, dataset_info, use_folder_stats
from pfs.core.errors import PfsError
from pfs.data.datatree import SPLITS, check_folder_tree
from pfs.data.imagenet import IndexedImageDataset, imagenet_gate_split, index_tables, make_imagenet_transform
from pfs.data.index import decode_image, index_tree, num_classes, unreadable_error, verify_images, write_tables

if TYPE_CHECKING:  # torch and torchvision are imported where used: indexing with given mean and std never needs them
    import torch
    from torchvision.transforms import v2

    from pfs.data.settings import DataSettings

log = logging.getLogger(__name__)

MIN_SCALE = 0.25  # smallest RandomResizedCrop area of training (fraction of the image)
EVAL_RESIZE = 8 / 7  # evaluation: the shorter side resized to image_size x this, then the centre crop
VAL_SEED = 0  # the val_fraction hold-out: fixed, so the evaluation set is a property of the tree, like a val/ folder
STATS_FILE = "stats.yaml"  # beside train.csv and val.csv
PARALLEL_FROM = 2000  # training images from which the statistics are computed in several processes


def eval_resize(image_size: int) -> int:
    """The shorter side before the evaluation's centre crop."""
    return round(image_size * EVAL_RESIZE)


def make_folder_transform(train: bool, info: DatasetInfo) -> v2.Transform:
    """The folder dataset's transform at ``info``'s image size, mean and std (the module docstring's policy): the
    ImageNet transform with the folder's crop scale and resize, without colour augmentation."""
    return make_imagenet_transform(train, MIN_SCALE, info, resize=eval_resize(info.image_size))


def hold_out(frame: pd.DataFrame, fraction: float, seed: int = VAL_SEED, root: str | Path = "") -> tuple[
        pd.DataFrame, pd.DataFrame]:
    """(train, val) of a training index table: round(fraction x n) images of every class (half up, at least 1)
    held out, each class's choice seeded by ``seed`` and its name. Both come back sorted by (label, path)."""
    if not 0 < fraction < 1:
        raise PfsError(f"dataset.val_fraction must be in (0, 1), got {fraction}")
    keep, held = [], []
    for _, rows in frame.sort_values(["label", "path"], kind="stable").groupby("label", sort=True):
        n, class_name = len(rows), str(rows["class_name"].iloc[0])
        k = max(1, math.floor(n * fraction + 0.5))
        if k >= n:
            raise PfsError(f"class folder {Path(root) / 'train' / class_name} has {n} image(s): holding out "
                           f"dataset.val_fraction={fraction} of it leaves none to train on; add images, or give the "
                           "evaluation images as val/")
        chosen = np.zeros(n, dtype=bool)
        chosen[np.random.default_rng([seed, zlib.crc32(class_name.encode())]).choice(n, k, replace=False)] = True
        keep.append(rows[~chosen])
        held.append(rows[chosen])
    return pd.concat(keep, ignore_index=True), pd.concat(held, ignore_index=True)


def _resized(path: Path, image_size: int) -> torch.Tensor:
    """An image as evaluation sees it before normalising: uint8, 3 x image_size x image_size (the steps of
    make_folder_transform(False, ...) up to its ToDtype)."""
    from torchvision.transforms import v2

    steps = v2.Compose([v2.ToImage(), v2.Resize(eval_resize(image_size), antialias=True), v2.CenterCrop(image_size)])
    return steps(decode_image(path))


def _pixel_sums(job: tuple[str, str, int]) -> tuple[int, list[int], list[int]]:
    """(pixels, per-channel sum, per-channel sum of squares) of one resized image, as exact integers."""
    import torch

    root, relative, image_size = job
    path = Path(root) / relative
    try:
        pixels = _resized(path, image_size).reshape(3, -1).to(torch.int64)
    except OSError as exc:
        raise unreadable_error(Path(root), path, exc) from None
    return pixels.shape[1], pixels.sum(1).tolist(), (pixels * pixels).sum(1).tolist()


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)  # one process per core already


def pixel_stats(root: str | Path, paths: list[str], image_size: int, workers: int = 1) -> tuple[tuple, tuple]:
    """(mean, std) per RGB channel, of pixels in [0, 1], over the images ``paths`` (relative to ``root``) as
    evaluation sees them; the population std. From integer sums, so exact up to the final division and square
    root; in ``workers`` processes from PARALLEL_FROM images on."""
    jobs = [(str(root), p, image_size) for p in paths]
    if workers > 1 and len(jobs) >= PARALLEL_FROM:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawn: a forked child of a process whose OpenMP threads ran can hang in torch
        with ProcessPoolExecutor(workers, multiprocessing.get_context("spawn"), initializer=_one_thread) as pool:
            results = list(pool.map(_pixel_sums, jobs, chunksize=max(1, len(jobs) // (workers * 16))))
    else:
        results = map(_pixel_sums, jobs)
    count, sums, squares = 0, [0, 0, 0], [0, 0, 0]
    for n, s, q in results:
        count += n
        sums = [a + b for a, b in zip(sums, s, strict=True)]
        squares = [a + b for a, b in zip(squares, q, strict=True)]
    mean = tuple(s / (count * 255) for s in sums)
    std = tuple(math.sqrt(count * q - s * s) / (count * 255) for s, q in zip(sums, squares, strict=True))
    if min(std) == 0:
        raise PfsError(f"the training images under {root} have one value in every pixel of a colour channel (std "
                       f"{std}): normalising would divide by 0; give dataset.mean and dataset.std")
    return mean, std


def _index(root: str | Path, val_fraction: float) -> dict[str, pd.DataFrame]:
    if not val_fraction:
        return index_tree(root, SPLITS, label="folder dataset")
    train = index_tree(root, ("train",), label="folder dataset")["train"]
    return dict(zip(SPLITS, hold_out(train, val_fraction, root=root), strict=True))


def prepare_folder_lists(root: str | Path, out_dir: str | Path, image_size: int, val_fraction: float = 0.0,
                         mean=None, std=None, verify_workers: int = 0, workers: int = 1) -> dict[str, Path]:
    """Write ``out_dir``'s train.csv and val.csv (index tables, pfs.data.index) and stats.yaml (image size, mean,
    std, class count); every check runs before anything is written, and the three files are renamed into place
    only when all are complete. ``mean``/``std`` None: computed from the training images (pixel_stats, ``workers``
    processes). ``verify_workers`` > 0: first decode every image with that many processes and refuse undecodable
    ones (verify_images)."""
    check_folder_tree(root, val_fraction)
    frames = _index(root, val_fraction)
    if verify_workers > 0:
        verify_images(root, frames, verify_workers)
    source = "config"
    if mean is None or std is None:
        log.info("computing the mean and std of %d training images at %d px", len(frames["train"]), image_size)
        mean, std = pixel_stats(root, list(frames["train"]["path"]), image_size, workers)
        source = "training images"
    doc = {"kind": FOLDER_STATS_KIND, "format_version": io.FORMAT_VERSION, "image_size": int(image_size),
           "mean": [float(m) for m in mean], "std": [float(s) for s in std], "source": source,
           "resize": f"Resize({eval_resize(image_size)}) + CenterCrop({image_size})",
           "num_classes": num_classes(frames["train"]), "train_images": len(frames["train"]),
           "val_images": len(frames["val"]), "val_fraction": float(val_fraction)}
    stats = Path(out_dir) / STATS_FILE
    outputs = write_tables(frames, out_dir, extra=(stats, lambda tmp: tmp.write_text(yaml_text(doc))))
    log.info("mean %s, std %s (%s) -> %s", doc["mean"], doc["std"], source, stats)
    return {**outputs, "stats": stats}


def yaml_text(doc: dict) -> str:
    import yaml

    return yaml.safe_dump(doc, sort_keys=False)


# what pfs.data.datasets calls for a dataset held as index tables (catalog: in_memory false)
def folder_tables(settings: DataSettings) -> tuple[pd.DataFrame, pd.DataFrame, DatasetInfo]:
    """The (train, val) index tables of a folder run and the dataset's facts from the stats.yaml beside them,
    which this process's catalog then reads too (pfs.core.catalog.use_folder_stats)."""
    train, val = index_tables(settings)
    stats = Path(settings.train_list).with_name(STATS_FILE)
    io.require_file(stats, "rerun prepare_folder_list (delete its train.csv first)")
    use_folder_stats(stats)
    info = dataset_info(FOLDER)
    if info.num_classes != num_classes(train):
        raise PfsError(f"{stats} records {info.num_classes} classes but {settings.train_list} has "
                       f"{num_classes(train)}: delete both and rerun prepare_folder_list")
    return train, val, info


def num_classes_of(settings: DataSettings) -> int:
    return num_classes(folder_tables(settings)[0])


def gate_learning_sets(settings: DataSettings, per_class: int, split_seed: int):
    """(train part, held-out part, held-out row numbers of the training index) for gate learning and selection:
    ``per_class`` images of every class held out (read as evaluation reads them)."""
    import torch

    frame, _, info = folder_tables(settings)
    train, val = imagenet_gate_split(frame.assign(row=np.arange(len(frame))), per_class, split_seed)
    return (IndexedImageDataset(settings.root, train, make_folder_transform(True, info)),
            IndexedImageDataset(settings.root, val, make_folder_transform(False, info)),
            torch.tensor(val["row"].to_numpy(copy=True), dtype=torch.int64))


def training_sets(settings: DataSettings, min_scale: float, color_augment: bool):
    """(training index, val index) as datasets, for training from scratch. The folder's own crop scale
    (MIN_SCALE) replaces the arch's ImageNet ``min_scale``; ``color_augment`` is refused before this is called."""
    train, val, info = folder_tables(settings)
    return (IndexedImageDataset(settings.root, train, make_folder_transform(True, info)),
            IndexedImageDataset(settings.root, val, make_folder_transform(False, info)))
