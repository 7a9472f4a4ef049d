"""Reading a dataset: the in-memory ones (embedded digits, CIFAR-10/100 folders) here, ImageNet's image files
through pfs.data.imagenet and a folder of the user's own images through pfs.data.folder; the gate-learning split,
transforms, loaders and the loader choice.

The facts about each dataset (sizes, statistics, folders) are pfs.core.catalog's."""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from pfs.core.catalog import DATASETS, FOLDER, DatasetInfo, check_color_augment, check_data_present, dataset_info
from pfs.core.errors import PfsError
from pfs.data.settings import DataSettings

if TYPE_CHECKING:  # torchvision is imported where it is used: prune and summarize jobs start ~3 s faster
    from torchvision.transforms import v2


log = logging.getLogger(__name__)


DIGITS_TEST_SIZE = DATASETS["digits"].test_images  # fixed held-out test split of the 1797 digits (seeded)


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
    if not dataset_info(settings.name).in_memory:
        raise PfsError(f"{settings.name} is not held in memory: read it through its index tables (pfs.data.imagenet)")
    check_data_present(settings.name, settings.root, settings.download)
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
    ``make_transform(info, train)``, made on first use. Training on the device (pfs.data.device_data) reads only
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


WORKER_IGNORED_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)  # the main process checkpoints on them (pfs.training.loop)


def _leave_signals_to_the_main_process(_worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: the worker outlives the SIGTERM/SIGUSR1 that SLURM sends to every process of
    a job, so the main process can checkpoint at its batch and stop; its DataLoader then shuts the worker down.

    A SIGTERM from the main process (DataLoader's terminate() of a worker that did not join, multiprocessing's at
    interpreter exit) still ends the worker, as torch's own worker handler does: ignoring that one would hang the
    job's exit. Python's handlers do not see the sender, so the signals are blocked and a thread takes them.
    """
    if not hasattr(signal, "sigwaitinfo"):  # macOS: no SLURM; torch's handlers stay
        return
    parent = os.getppid()
    signal.pthread_sigmask(signal.SIG_BLOCK, WORKER_IGNORED_SIGNALS)

    def take_signals() -> None:
        while True:
            info = signal.sigwaitinfo(WORKER_IGNORED_SIGNALS)
            if info.si_signo == signal.SIGTERM and info.si_pid == parent:
                os._exit(0)  # what torch's handler does on its parent's SIGTERM

    threading.Thread(target=take_signals, name="pfs-worker-signals", daemon=True).start()


def make_loader(dataset: Dataset, batch_size: int, train: bool, num_workers: int, device: torch.device,
                rank: int = 0, world_size: int = 1, seed: int = 0, fresh_workers: bool = False) -> DataLoader:
    """A loader of ``batch_size`` per process; with ``world_size`` > 1 each rank reads its own shard (training:
    a DistributedSampler shuffled by the run's ``seed``; evaluation: every world_size-th image, so sums over ranks
    count each image once).

    ``fresh_workers``: start the ``num_workers`` workers anew at every pass (epoch) instead of keeping them. A
    worker's torch, numpy and ``random`` generators are seeded when it starts, from torch's global generator in
    this process and the worker's id; kept workers would draw epoch e's augmentation from whatever epoch e - 1 left
    them, so a run resumed at epoch e would draw other crops. Fresh workers follow the seed the training loop sets
    before each epoch (pfs.training.loop), at the cost of one worker start-up per epoch (~80 ms for 2 workers on CPU).

    Workers leave SIGTERM/SIGUSR1 to the main process (_leave_signals_to_the_main_process).
    """
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
        persistent_workers=num_workers > 0 and not fresh_workers,
        worker_init_fn=_leave_signals_to_the_main_process if num_workers > 0 else None,
    )


def _index_reader(settings: DataSettings):
    """The module that reads a dataset held as image files through index tables (catalog: ``in_memory`` false):
    pfs.data.folder for the user's own folder, pfs.data.imagenet for ImageNet; None for the in-memory datasets
    read here."""
    if dataset_info(settings.name).in_memory:
        return None
    from pfs.data import folder, imagenet  # pandas and PIL: imported only by the jobs that read image files

    return folder if settings.name == FOLDER else imagenet


def num_classes_of(settings: DataSettings) -> int:
    """Classes of the run's dataset: fixed for digits and CIFAR, read from the index tables for ImageNet and folders."""
    reader = _index_reader(settings)
    return reader.num_classes_of(settings) if reader else dataset_info(settings.name).num_classes


def gate_learning_sets(settings: DataSettings, val_size: int, split_seed: int, val_per_class: int = 50):
    """(train part, held-out val part, val indices) of the training set, for gate learning and selection.

    In-memory datasets hold out ``val_size`` images; ImageNet and folders hold out ``val_per_class`` images of every
    class (``val_size`` is unused) and their val indices are rows of the training index table.
    """
    reader = _index_reader(settings)
    if reader:
        return reader.gate_learning_sets(settings, val_per_class, split_seed)
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
    if color_augment:
        check_color_augment(settings.name)
    reader = _index_reader(settings)
    if reader:
        return reader.training_sets(settings, min_scale, color_augment)
    info = dataset_info(settings.name)
    train = TensorImageDataset(*load_images(settings, train=True), info=info, train=True)
    test = TensorImageDataset(*load_images(settings, train=False), info=info, train=False)
    return train, test


def write_digits_folder(out: str | Path) -> dict[str, int]:
    """The embedded digits as a folder dataset: ``out/{train,val}/<digit>/<index>.png``, the 16x16 RGB images
    the digits runs see, train/ the fixed 1,437 and val/ the fixed 360 held-out images of their split; real,
    small images to try ``dataset.name: folder`` and a library network on without a download. Refuses an
    existing non-empty ``out``. Returns the images written per split."""
    from PIL import Image

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise PfsError(f"{out} is not empty: give a new folder for the digits images")
    counts = {}
    for split, train in (("train", True), ("val", False)):
        images, labels = _load_digits(train)
        for i, (image, label) in enumerate(zip(images, labels, strict=True)):
            folder = out / split / str(int(label))
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"{i:04d}.png")
        counts[split] = len(labels)
    return counts
