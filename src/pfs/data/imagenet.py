"""ImageNet: index its folder tree into tables, and read the images those tables list.

Index an ImageNet-style folder tree (``root/{train,val}/<class>/<image>``) into tables, once, so loaders never
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
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from pfs.core.catalog import DATASETS, DatasetInfo, check_data_present
from pfs.core.errors import PfsError
from pfs.core.io import atomic_path
from pfs.data.datatree import IMAGE_EXTENSIONS, class_folders, image_names

if TYPE_CHECKING:  # torch and torchvision are imported where used: list preparation never needs them
    import torch
    from torchvision.transforms import v2

    from pfs.data.settings import DataSettings

log = logging.getLogger(__name__)

SPLITS = ("train", "val")
COLUMNS = ("path", "class_name", "label")
_SHOWN = 5  # differing class names shown in an error message


def _require_classes(split_dir: Path) -> list[str]:
    classes = class_folders(split_dir)
    if not classes:
        raise PfsError(f"{split_dir} has no class folders; expected one sub-folder per class (e.g. n01440764/). "
                       "The ILSVRC2012 val archive unpacks flat: move its images into class folders first")
    return classes


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
        images = image_names(os.path.join(split_dir, name))
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


def prepare_lists(root: str | os.PathLike, out_dir: str | os.PathLike, verify_workers: int = 0) -> dict[str, Path]:
    """Write ``out_dir/train.csv`` and ``out_dir/val.csv``; all checks run before anything is written.

    Both tables are written to temp files first and renamed only when both are complete. ``verify_workers`` > 0:
    first decode every image with that many processes and refuse undecodable ones (verify_images).
    """
    frames = index_tree(root)
    if verify_workers > 0:
        verify_images(root, frames, verify_workers)
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


class IndexedImageDataset:  # a map-style dataset (DataLoader needs only __len__ and __getitem__)
    """Image files listed in an index table (columns path, label; paths relative to ``root``), decoded on access."""

    def __init__(self, root: str | Path, frame: pd.DataFrame, transform: v2.Transform) -> None:
        missing = {"path", "label"} - set(frame.columns)
        if missing:
            raise PfsError(f"an image index needs the columns path and label; it lacks {', '.join(sorted(missing))}")
        self.root, self.transform = Path(root), transform
        # numpy arrays, not lists of str: DataLoader workers then share the pages instead of copying them on access
        self.paths = np.asarray(frame["path"], dtype=str)
        self.labels = np.asarray(frame["label"], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        path = self.root / str(self.paths[i])
        try:
            rgb = _decode(path)
        except OSError as exc:
            raise unreadable_error(self.root, path, exc) from None  # one line, from a DataLoader worker too
        return self.transform(rgb), int(self.labels[i])


def _decode(path: Path, draft: int | None = None):
    """The image at ``path`` as RGB (greyscale and CMYK JPEGs exist in ImageNet); ``draft``: let a JPEG decode at
    a reduced scale of at least that many pixels a side (all its data is still read: truncation is still seen)."""
    from PIL import Image

    with Image.open(path) as image:
        if draft:
            image.draft("RGB", (draft, draft))
        return image.convert("RGB")


def unreadable_error(root: Path, path: Path, exc: OSError) -> PfsError:
    """The one-line error for an image that cannot be read: missing (the tree changed under the index, or another
    dataset.root) or undecodable (a corrupt or foreign file: remove or replace it)."""
    if isinstance(exc, FileNotFoundError):
        return PfsError(f"image {path} is listed in the index but missing: check dataset.root (a changed tree is "
                        "re-indexed by the next run)")
    return PfsError(f"cannot decode image {path} ({exc}): remove or replace the file, then run again (the index is "
                    "rebuilt); to find every such file before training, set dataset.verify_images: true or run "
                    f"`python -m pfs verify-images --root {root}`")


def _check_one(path: str) -> str | None:
    try:
        _decode(Path(path), draft=64)
    except (OSError, ValueError) as exc:  # PIL: OSError for truncated or unidentified data, ValueError rarely
        return f"{type(exc).__name__}: {exc}"
    return None


def unreadable_images(root: str | os.PathLike, paths: list[str], workers: int = 1) -> list[tuple[str, str]]:
    """(path, reason) of every image of ``paths`` (relative to ``root``) that cannot be decoded, decoding each in
    one of ``workers`` processes (a JPEG at a reduced scale: every byte is read, the inverse DCT is cheaper)."""
    full = [os.path.join(root, p) for p in paths]
    if workers <= 1:
        reasons = map(_check_one, full)
    else:
        from concurrent.futures import ProcessPoolExecutor

        pool = ProcessPoolExecutor(workers)
        reasons = pool.map(_check_one, full, chunksize=max(1, min(256, len(full) // (workers * 8) or 1)))
    try:
        return [(p, r) for p, r in zip(paths, reasons, strict=True) if r is not None]
    finally:
        if workers > 1:
            pool.shutdown()


def verify_images(root: str | os.PathLike, frames: dict[str, pd.DataFrame], workers: int = 1) -> None:
    """Decode every image the index tables list; refuse with one line naming the bad files (all of them in the
    log) and the fix."""
    import time

    paths = [p for frame in frames.values() for p in frame["path"]]
    start = time.perf_counter()
    bad = unreadable_images(root, paths, workers)
    seconds = time.perf_counter() - start
    log.info("verified %d images in %.1f s (%.0f files/s, %d decoding processes): %d unreadable", len(paths), seconds,
             len(paths) / max(seconds, 1e-9), workers, len(bad))
    for path, reason in bad:
        log.info("unreadable: %s (%s)", Path(root) / path, reason)
    if bad:
        shown = ", ".join(str(Path(root) / p) for p, _ in bad[:_SHOWN])
        more = f" (+{len(bad) - _SHOWN} more, all listed in the log)" if len(bad) > _SHOWN else ""
        raise PfsError(f"{len(bad)} of {len(paths)} images cannot be decoded: {shown}{more}; remove or replace "
                       "them and run again")


# AlexNet-style PCA lighting noise (Krizhevsky et al. 2012): the principal components of ImageNet's RGB pixels in
# [0, 1] (fb.resnet.torch's values, copied by the official code's datasets.Lighting)
IMAGENET_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_EIGVEC = ((-0.5675, 0.7192, 0.4009), (-0.5808, -0.0045, -0.8140), (-0.5836, -0.6948, 0.4203))
COLOR_JITTER = 0.4  # official ColorJitter brightness, contrast and saturation (no hue)
LIGHTING_STD = 0.1  # official alphastd: std of each component's random weight


class Lighting:
    """PCA lighting noise on a float RGB image (C x H x W, values in [0, 1]): adds the same offset
    ``eigvec @ (alpha * eigval)``, ``alpha ~ N(0, alphastd^2)`` per component, to every pixel, then clips to [0, 1]
    (the official code clips too). ``alpha`` comes from torch's global generator (in a training DataLoader worker,
    the worker's, seeded at each epoch from the run's seed, the epoch and the worker's id) like the crop, the colour
    jitter and the flip, so a run, resumed or not, is as reproducible as the rest of its augmentation.

    The official code adds the offset to 0..255 uint8 pixels, where it is 1/255 of this size and the cast back to
    uint8 floors it to a 0 or -1 step; here it has the scale its eigenvalues were computed for."""

    def __init__(self, alphastd: float = LIGHTING_STD, eigval=IMAGENET_EIGVAL, eigvec=IMAGENET_EIGVEC) -> None:
        import torch

        self.alphastd = alphastd
        self.eigval, self.eigvec = torch.tensor(eigval), torch.tensor(eigvec)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        import torch

        if not image.is_floating_point():
            raise TypeError(f"Lighting works on float images in [0, 1], got {image.dtype}")
        offset = self.eigvec @ (torch.randn(3) * self.alphastd * self.eigval)
        out = (image + offset.to(image.device, image.dtype).view(3, 1, 1)).clamp(0, 1)
        return out.as_subclass(type(image))  # keeps a tv_tensors.Image an Image for the transforms that follow

    def __repr__(self) -> str:
        return f"{type(self).__name__}(alphastd={self.alphastd})"


def make_imagenet_transform(train: bool, min_scale: float = 0.08, info: DatasetInfo = DATASETS["imagenet"],
                            resize: int = 256, color_augment: bool = False) -> v2.Transform:
    """ImageNet augmentation of the official code: train RandomResizedCrop(image_size, scale=(min_scale, 1)),
    [ColorJitter(0.4, 0.4, 0.4), PCA lighting noise (0.1)], flip; eval Resize(resize) + CenterCrop(image_size).

    Args:
        min_scale: smallest crop area as a fraction of the image: 0.25 for MobileNets, 0.08 for ResNet-50.
        color_augment: add the colour jitter and lighting noise (official training from scratch only; its gate
            learning and evaluation have neither).
    """
    import torch
    from torchvision.transforms import v2

    if not 0 < min_scale <= 1:
        raise PfsError(f"min_scale (smallest random-crop area fraction) must be in (0, 1], got {min_scale}")
    if color_augment and not train:
        raise PfsError("colour augmentation (train.color_augment) is for training transforms only, never evaluation")
    steps: list[v2.Transform] = [v2.ToImage()]  # PIL -> uint8 tensor: the rest runs on tensors
    if train:
        steps.append(v2.RandomResizedCrop(info.image_size, scale=(min_scale, 1.0), antialias=True))
        if color_augment:  # the official order: crop, jitter, lighting, flip; lighting needs floats in [0, 1]
            steps += [v2.ColorJitter(brightness=COLOR_JITTER, contrast=COLOR_JITTER, saturation=COLOR_JITTER),
                      v2.ToDtype(torch.float32, scale=True), Lighting()]
        steps.append(v2.RandomHorizontalFlip())
    else:
        steps += [v2.Resize(resize, antialias=True), v2.CenterCrop(info.image_size)]
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(info.mean, info.std)]  # ToDtype: no-op on floats
    return v2.Compose(steps)



def imagenet_gate_split(frame: pd.DataFrame, per_class: int = 50, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out ``per_class`` images of every class of a training index for gate selection: (train, val).

    The official code holds out the last 50 of each class in os.listdir order (machine-dependent). Here the rows
    are sorted by (label, path) and each class draws its own seeded choice, so the split depends only on the
    seed and that class's file names. Both frames come back sorted by (label, path).
    """
    if per_class < 1 or seed < 0:
        raise PfsError(f"the gate split needs per_class >= 1 and seed >= 0, got per_class={per_class}, seed={seed}")
    frame = frame.sort_values(["label", "path"], kind="stable", ignore_index=True)
    counts = frame.groupby("label", sort=True).size()
    small = counts[counts <= per_class]
    if len(small):
        shown = ", ".join(f"label {label} ({n} images)" for label, n in small.head(5).items())
        raise PfsError(f"{len(small)} classes have {per_class} images or fewer, so holding out {per_class} per class "
                       f"leaves nothing to learn gates on: {shown}; lower the per-class hold-out")
    held = np.zeros(len(frame), dtype=bool)
    start = 0
    for label, n in counts.items():  # rows of a class are contiguous after the sort
        held[start + np.random.default_rng([seed, int(label)]).choice(n, per_class, replace=False)] = True
        start += n
    return frame[~held].reset_index(drop=True), frame[held].reset_index(drop=True)



GATE_MIN_SCALE = 0.25  # official ImageNet gate learning: RandomResizedCrop scale (0.25, 1) for every arch


def index_tables(settings: DataSettings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The (train, val) index tables of an ImageNet run, checked to hold the same classes."""
    check_data_present(settings.name, settings.root, settings.download)
    if not settings.train_list or not settings.val_list:
        raise PfsError("imagenet is read through its index tables: run prepare_imagenet_list first "
                       "(DataSettings.train_list / val_list are unset)")
    train, val = read_list(settings.train_list), read_list(settings.val_list)
    pairs = [sorted(set(zip(f["label"], f["class_name"], strict=True))) for f in (train, val)]
    if pairs[0] != pairs[1]:
        raise PfsError(f"{settings.train_list} and {settings.val_list} list other classes (or labels); both come "
                       "from one prepare_imagenet_list run: delete them and rerun it")
    return train, val



def imagenet_gate_learning_sets(root: str | Path, train_frame: pd.DataFrame, min_scale: float, per_class: int = 50,
                                seed: int = 0):
    """(train part, held-out part, held-out frame) of the ImageNet training index, for gate learning and selection
    (the held-out part is read like the validation set: resize and centre crop)."""
    train, val = imagenet_gate_split(train_frame, per_class, seed)
    return (IndexedImageDataset(root, train, make_imagenet_transform(True, min_scale)),
            IndexedImageDataset(root, val, make_imagenet_transform(False)), val)


def imagenet_training_sets(root: str | Path, train_frame: pd.DataFrame, val_frame: pd.DataFrame, min_scale: float,
                           color_augment: bool = False):
    """(whole training index, validation index) as datasets, for training from scratch (``color_augment``: the
    training images only)."""
    return (IndexedImageDataset(root, train_frame, make_imagenet_transform(True, min_scale,
                                                                           color_augment=color_augment)),
            IndexedImageDataset(root, val_frame, make_imagenet_transform(False)))




# what pfs.data.datasets calls for a dataset held as index tables (catalog: in_memory false)
def num_classes_of(settings: DataSettings) -> int:
    return num_classes(index_tables(settings)[0])


def gate_learning_sets(settings: DataSettings, per_class: int, split_seed: int):
    """(train part, held-out part, held-out row numbers of the training index) for gate learning and selection:
    ``per_class`` images of every class held out."""
    frame = index_tables(settings)[0]
    frame = frame.assign(row=np.arange(len(frame)))
    train, val, held = imagenet_gate_learning_sets(settings.root, frame, GATE_MIN_SCALE, per_class, split_seed)
    import torch

    return train, val, torch.tensor(held["row"].to_numpy(copy=True), dtype=torch.int64)


def training_sets(settings: DataSettings, min_scale: float, color_augment: bool):
    return imagenet_training_sets(settings.root, *index_tables(settings), min_scale, color_augment)
