"""Datasets (embedded digits, CIFAR-10/100 folders, ImageNet index tables), the gate-learning split, transforms
and loaders."""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from pfs.errors import PfsError

if TYPE_CHECKING:  # torchvision is imported where it is used: prune and summarize jobs start ~3 s faster
    import pandas as pd
    from torchvision.transforms import v2

    from pfs.distributed import Dist
    from pfs.train import TrainConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_classes: int
    image_size: int  # MACs are counted for one image of this size
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    crop_padding: int  # random-crop padding of the training augmentation (pixels)
    hflip: bool  # horizontal flip is a valid augmentation (not for digits)
    folder: str | None  # sub-folder of dataset.root that must exist (None: embedded)


_CIFAR_MEAN, _CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
DATASETS = {
    # scikit-learn's 8x8 handwritten digits (1797 images, shipped inside the package), upsampled to 16x16 RGB:
    # small enough that the default run trains every stage on 2 CPU cores in minutes
    "digits": DatasetInfo("digits", 10, 16, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), 2, False, None),
    "cifar10": DatasetInfo("cifar10", 10, 32, _CIFAR_MEAN, _CIFAR_STD, 4, True, "cifar-10-batches-py"),
    "cifar100": DatasetInfo("cifar100", 100, 32, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), 4, True,
                            "cifar-100-python"),
    # read through its index tables (pfs.imagenet.prepare_lists), not a folder of its own; the number of classes
    # of a run comes from the index (pfs.imagenet.num_classes), 1000 for ILSVRC2012
    "imagenet": DatasetInfo("imagenet", 1000, 224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 0, True, None),
}
DIGITS_TEST_SIZE = 360  # fixed held-out test split of the 1797 digits (seeded, never changes)


def dataset_info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise PfsError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return DATASETS[name]


@dataclass(frozen=True)
class DataSettings:
    """Where and how to read a dataset (none of this changes a result, so none of it is a rule param)."""

    name: str
    root: str = "data"
    download: bool = False
    check_md5: bool = True
    num_workers: int = 0
    train_list: str | None = None  # ImageNet: the index tables written by prepare_imagenet_list
    val_list: str | None = None


def _cifar_reader(name: str, check_md5: bool):
    """torchvision's CIFAR reader; with check_md5 off it accepts any file set in the on-disk format."""
    from torchvision import datasets

    base = {"cifar10": datasets.CIFAR10, "cifar100": datasets.CIFAR100}[name]
    if check_md5:
        return base

    class Unchecked(base):
        meta = {**base.meta, "md5": None}  # torchvision skips the MD5 check of a file whose md5 is None

        def _check_integrity(self) -> bool:
            return all((Path(self.root) / self.base_folder / f).is_file() for f, _ in self.train_list + self.test_list)

    return Unchecked


def check_dataset_available(settings: DataSettings) -> None:
    """Fail fast, before any work, when the dataset folder is missing."""
    info = dataset_info(settings.name)
    if settings.name == "imagenet" and not (Path(settings.root) / "train").is_dir():
        raise PfsError(f"imagenet not found: {Path(settings.root) / 'train'} does not exist. Set dataset.root to the "
                       "folder that holds train/ and val/ (one sub-folder per class in each)")
    if info.folder and not settings.download and not (Path(settings.root) / info.folder).is_dir():
        raise PfsError(
            f"{settings.name} not found: {Path(settings.root) / info.folder} does not exist. Set dataset.root to the "
            f"folder that holds {info.folder}/ (torchvision's layout), or set dataset.download: true"
        )


def _unreadable_batch(settings: DataSettings, train: bool) -> Path | None:
    """The first batch file of a CIFAR split that fails to unpickle (torchvision's error does not name it)."""
    import pickle

    reader = _cifar_reader(settings.name, settings.check_md5)
    folder = Path(settings.root) / reader.base_folder
    for name, _md5 in reader.train_list if train else reader.test_list:
        try:
            with open(folder / name, "rb") as fh:
                pickle.load(fh, encoding="latin1")
        except Exception:
            return folder / name
    return None


def load_images(settings: DataSettings, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole split as ``(uint8 images N x 3 x H x W, int64 labels N)``."""
    if settings.name == "imagenet":
        raise PfsError("imagenet is not held in memory: read it with IndexedImageDataset from its index tables")
    check_dataset_available(settings)
    if settings.name == "digits":
        return _load_digits(train)
    try:
        ds = _cifar_reader(settings.name, settings.check_md5)(settings.root, train=train, download=settings.download)
    except RuntimeError as exc:  # torchvision: "Dataset not found or corrupted"
        raise PfsError(
            f"{settings.name} under {settings.root} is missing files or fails its MD5 check ({exc}). Re-extract the "
            "archive there, or set dataset.download: true"
        ) from exc
    except Exception as exc:  # a truncated or foreign batch file fails to unpickle
        bad = _unreadable_batch(settings, train)
        raise PfsError(f"{settings.name} under {settings.root} has a corrupt batch file{f' {bad}' if bad else ''} "
                       f"({type(exc).__name__}: {exc}). Re-extract the archive there") from exc
    images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
    return images, torch.as_tensor(ds.targets, dtype=torch.int64)


def _digits_csv() -> Path | None:
    """The CSV of scikit-learn's digits (8 x 8 pixel values 0..16, then the label, on each row), found without
    importing scikit-learn; None when scikit-learn is not installed."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "digits.csv.gz"


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as ``load_digits()`` gives them, (float64 images 1797 x 8 x 8, int labels 1797), read
    straight from its CSV: importing sklearn.datasets (and scipy) would cost every digits job ~1 s."""
    path, rows = _digits_csv(), None
    if path is not None:
        try:
            rows = np.loadtxt(path, delimiter=",")  # as load_digits reads it
        except (OSError, EOFError, ValueError):  # missing, truncated or not numbers
            rows = None
    if rows is None or rows.shape != (1797, 65) or not ((rows >= 0) & (rows <= 16)).all():
        # the file is missing or malformed (a scikit-learn release that moved or changed it): let scikit-learn read it
        from sklearn.datasets import load_digits

        bunch = load_digits()
        return bunch.images, bunch.target
    return rows[:, :-1].reshape(-1, 8, 8), rows[:, -1].astype(int)


def _load_digits(train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    pixels, targets = _digits_arrays()
    x = torch.as_tensor(pixels, dtype=torch.float32).unsqueeze(1) / 16.0  # pixel values 0..16
    size = DATASETS["digits"].image_size
    x = torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False)
    images = (x.clamp(0, 1) * 255).round().to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
    labels = torch.as_tensor(targets, dtype=torch.int64)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    idx = order[DIGITS_TEST_SIZE:] if train else order[:DIGITS_TEST_SIZE]
    return images[idx], labels[idx]


def split_train_val(n: int, val_size: int, split_seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded split of ``n`` training indices into (train, val); both sorted, fixed for a given seed."""
    if not 0 < val_size < n:
        raise PfsError(f"dataset.val_size must be between 1 and {n - 1} for this dataset, got {val_size}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(split_seed))
    return perm[val_size:].sort().values, perm[:val_size].sort().values


def make_transform(info: DatasetInfo, train: bool) -> v2.Transform:
    from torchvision.transforms import v2

    steps: list[v2.Transform] = []
    if train:  # the paper's CIFAR augmentation: random crop with 4-pixel padding, horizontal flip
        steps.append(v2.RandomCrop(info.image_size, padding=info.crop_padding))
        if info.hflip:
            steps.append(v2.RandomHorizontalFlip())
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(info.mean, info.std)]
    return v2.Compose(steps)


class TensorImageDataset(Dataset):
    """uint8 image tensors with a per-sample transform: ``transform``, or with ``info`` instead, the dataset's
    ``make_transform(info, train)``, made on first use. Training on the device (pfs.device_data) reads only
    ``images`` and ``labels``, so its jobs never import torchvision (~2 s of start-up)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: v2.Transform | None = None, *,
                 info: DatasetInfo | None = None, train: bool = False) -> None:
        if (transform is None) == (info is None):
            raise ValueError("TensorImageDataset takes either a transform or the DatasetInfo to make one from")
        self.images, self.labels = images, labels
        self._transform, self._recipe = transform, (info, train)

    @property
    def transform(self) -> v2.Transform:
        if self._transform is None:  # also in a DataLoader worker that received the dataset before it was made
            self._transform = make_transform(*self._recipe)
        return self._transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.transform(self.images[i]), self.labels[i]


class IndexedImageDataset(Dataset):
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
        from PIL import Image

        path = self.root / str(self.paths[i])
        try:
            with Image.open(path) as image:
                rgb = image.convert("RGB")  # greyscale and CMYK JPEGs exist in ImageNet
        except OSError as exc:  # missing, truncated or not an image
            raise PfsError(f"cannot read image {path} ({exc}); check dataset.root, or rerun prepare_imagenet_list "
                           "if the folder tree changed") from exc
        return self.transform(rgb), int(self.labels[i])


# AlexNet-style PCA lighting noise (Krizhevsky et al. 2012): the principal components of ImageNet's RGB pixels in
# [0, 1] (fb.resnet.torch's values, copied by the official code's datasets.Lighting)
IMAGENET_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_EIGVEC = ((-0.5675, 0.7192, 0.4009), (-0.5808, -0.0045, -0.8140), (-0.5836, -0.6948, 0.4203))
COLOR_JITTER = 0.4  # official ColorJitter brightness, contrast and saturation (no hue)
LIGHTING_STD = 0.1  # official alphastd: std of each component's random weight


class Lighting:
    """PCA lighting noise on a float RGB image (C x H x W, values in [0, 1]): adds the same offset
    ``eigvec @ (alpha * eigval)``, ``alpha ~ N(0, alphastd^2)`` per component, to every pixel, then clips to [0, 1]
    (the official code clips too). ``alpha`` comes from torch's global generator (in a DataLoader worker, the
    worker's, seeded from it) like the crop and flip, so a run is as reproducible as the rest of its augmentation.

    The official code adds the offset to 0..255 uint8 pixels, where it is 1/255 of this size and the cast back to
    uint8 floors it to a 0 or -1 step; here it has the scale its eigenvalues were computed for."""

    def __init__(self, alphastd: float = LIGHTING_STD, eigval=IMAGENET_EIGVAL, eigvec=IMAGENET_EIGVEC) -> None:
        self.alphastd = alphastd
        self.eigval, self.eigvec = torch.tensor(eigval), torch.tensor(eigvec)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
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


def make_loader(dataset: Dataset, batch_size: int, train: bool, num_workers: int, device: torch.device,
                rank: int = 0, world_size: int = 1, seed: int = 0) -> DataLoader:
    """A loader of ``batch_size`` per process; with ``world_size`` > 1 each rank reads its own shard (training:
    a DistributedSampler shuffled by the run's ``seed``; evaluation: every world_size-th image, so sums over ranks
    count each image once)."""
    sampler = None
    if world_size > 1 and train:  # shuffled per epoch through sampler.set_epoch (the training loop calls it)
        # epoch e shuffles with seed * 100_003 + e (the training loop's per-epoch seed): no two seeds share an order
        sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed * 100_003)
    elif world_size > 1:  # every image exactly once over all ranks (DistributedSampler would pad with repeats)
        sampler = list(range(rank, len(dataset), world_size))
    if num_workers > 0 and isinstance(dataset, TensorImageDataset):
        _ = dataset.transform  # made once here: the workers start with it, instead of each importing torchvision
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=train and sampler is None,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=num_workers > 0,
    )


GATE_MIN_SCALE = 0.25  # official ImageNet gate learning: RandomResizedCrop scale (0.25, 1) for every arch


def imagenet_lists(settings: DataSettings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The (train, val) index tables of an ImageNet run, checked to hold the same classes."""
    from pfs.imagenet import read_list

    check_dataset_available(settings)
    if not settings.train_list or not settings.val_list:
        raise PfsError("imagenet is read through its index tables: run prepare_imagenet_list first "
                       "(DataSettings.train_list / val_list are unset)")
    train, val = read_list(settings.train_list), read_list(settings.val_list)
    pairs = [sorted(set(zip(f["label"], f["class_name"], strict=True))) for f in (train, val)]
    if pairs[0] != pairs[1]:
        raise PfsError(f"{settings.train_list} and {settings.val_list} list other classes (or labels); both come "
                       "from one prepare_imagenet_list run: delete them and rerun it")
    return train, val


def num_classes_of(settings: DataSettings) -> int:
    """Classes of the run's dataset: fixed for digits and CIFAR, read from the index tables for ImageNet."""
    if settings.name == "imagenet":
        from pfs.imagenet import num_classes

        return num_classes(imagenet_lists(settings)[0])
    return dataset_info(settings.name).num_classes


def gate_learning_sets(settings: DataSettings, val_size: int, split_seed: int, val_per_class: int = 50):
    """(train part, held-out val part, val indices) of the training set, for gate learning and selection.

    ImageNet holds out ``val_per_class`` images of every class (``val_size`` is unused); the val indices are rows
    of the training index table. Other datasets hold out ``val_size`` images.
    """
    if settings.name == "imagenet":
        frame = imagenet_lists(settings)[0]
        frame = frame.assign(row=np.arange(len(frame)))
        train, val, held = imagenet_gate_learning_sets(settings.root, frame, GATE_MIN_SCALE, val_per_class,
                                                       split_seed)
        return train, val, torch.tensor(held["row"].to_numpy(copy=True), dtype=torch.int64)
    info = dataset_info(settings.name)
    images, labels = load_images(settings, train=True)
    train_idx, val_idx = split_train_val(len(labels), val_size, split_seed)
    train = TensorImageDataset(images[train_idx], labels[train_idx], info=info, train=True)
    val = TensorImageDataset(images[val_idx], labels[val_idx], info=info, train=False)
    return train, val, val_idx


def training_sets(settings: DataSettings, min_scale: float = 0.08, color_augment: bool = False):
    """(whole training set, test set), for training from scratch. ImageNet: the training and validation index
    tables, with random-resized crops of at least ``min_scale`` of the image area and, with ``color_augment``,
    the official colour jitter and lighting noise (ImageNet only: other datasets refuse it)."""
    if settings.name == "imagenet":
        return imagenet_training_sets(settings.root, *imagenet_lists(settings), min_scale, color_augment)
    if color_augment:
        raise PfsError(f"train.color_augment is the official ImageNet colour jitter and lighting noise; dataset "
                       f"{settings.name} has no such augmentation: set train.color_augment: false")
    info = dataset_info(settings.name)
    train = TensorImageDataset(*load_images(settings, train=True), info=info, train=True)
    test = TensorImageDataset(*load_images(settings, train=False), info=info, train=False)
    return train, test


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


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise PfsError(f"device {name!r} requested but CUDA is not available; set device: auto or cpu")
    return torch.device(name)


def uses_device_data(mode: str, dataset: str, device: torch.device) -> bool:
    """Whether training holds the dataset on the device (pfs.device_data): ``auto`` on CUDA for in-memory
    datasets and for the tiny embedded digits everywhere (on CPU too: no DataLoader, no torchvision import),
    ``always`` wherever possible (CIFAR on CPU too), ``never`` not at all."""
    if mode == "always" and dataset == "imagenet":
        raise PfsError("train.device_data: always needs an in-memory dataset; imagenet is read from files (use auto)")
    in_memory = dataset != "imagenet"
    return mode == "always" or (mode == "auto" and in_memory and (device.type == "cuda" or dataset == "digits"))


def training_loaders(train_set, test_set, info, cfg: TrainConfig, data: DataSettings, device: torch.device,
                     dist: Dist, seed: int):
    """(train, test) batch iterables: on-device batches (pfs.device_data) or DataLoaders, sharded under torchrun.
    ``train.batch_size`` is global: each of the ``world_size`` processes takes its share; the shards' order
    follows the run's ``seed``."""
    batch = cfg.batch_size // dist.world_size
    shard = {"rank": dist.rank, "world_size": dist.world_size}
    if uses_device_data(cfg.device_data, data.name, device):
        from pfs.device_data import DeviceBatches  # here: pfs.device_data imports this module

        channels_last = cfg.channels_last and device.type == "cuda"
        return tuple(DeviceBatches(ds.images, ds.labels, info, train, size, device, channels_last=channels_last,
                                   **shard)
                     for ds, train, size in ((train_set, True, batch), (test_set, False, cfg.eval_batch_size)))
    return (make_loader(train_set, batch, True, data.num_workers, device, **shard, seed=seed),
            make_loader(test_set, cfg.eval_batch_size, False, data.num_workers, device, **shard))
