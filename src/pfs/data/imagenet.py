"""ImageNet: read the images its index tables list (pfs.data.index), with the official transforms, the
gate-learning split and the training sets."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from pfs.core.catalog import DATASETS, DatasetInfo, check_data_present
from pfs.core.errors import PfsError
from pfs.data.index import LIST_RULES, decode_image, num_classes, read_list, unreadable_error

if TYPE_CHECKING:  # torch and torchvision are imported where used: list preparation never needs them
    import torch
    from torchvision.transforms import v2

    from pfs.data.settings import DataSettings

log = logging.getLogger(__name__)

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
            rgb = decode_image(path)
        except OSError as exc:
            raise unreadable_error(self.root, path, exc) from None  # one line, from a DataLoader worker too
        return self.transform(rgb), int(self.labels[i])


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
    """The (train, val) index tables of an ImageNet (or folder) run, checked to hold the same classes."""
    check_data_present(settings.name, settings.root, settings.download)
    rule = LIST_RULES[settings.name][1]
    if not settings.train_list or not settings.val_list:
        raise PfsError(f"{settings.name} is read through its index tables: run {rule} first "
                       "(DataSettings.train_list / val_list are unset)")
    train, val = read_list(settings.train_list, settings.name), read_list(settings.val_list, settings.name)
    pairs = [sorted(set(zip(f["label"], f["class_name"], strict=True))) for f in (train, val)]
    if pairs[0] != pairs[1]:
        raise PfsError(f"{settings.train_list} and {settings.val_list} list other classes (or labels); both come "
                       f"from one {rule} run: delete them and rerun it")
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
