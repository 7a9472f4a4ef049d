"""The batches a training job iterates: the dataset held on the device (pfs.data.device_data) or DataLoaders
(pfs.data.datasets.make_loader), sharded over the processes of a torchrun job."""

from __future__ import annotations

import torch

from pfs.core.catalog import dataset_info
from pfs.core.errors import PfsError
from pfs.data.datasets import make_loader
from pfs.data.device_data import DeviceBatches
from pfs.data.settings import DataSettings
from pfs.training.distributed import Dist
from pfs.training.loop import TrainConfig


def uses_device_data(mode: str, dataset: str, device: torch.device) -> bool:
    """Whether training holds the dataset on the device (pfs.data.device_data): ``auto`` on CUDA for in-memory
    datasets and for the tiny embedded ones (digits) everywhere (on CPU too: no DataLoader, no torchvision
    import), ``always`` wherever possible (CIFAR on CPU too), ``never`` not at all."""
    info = dataset_info(dataset)
    if mode == "always" and not info.in_memory:
        raise PfsError(f"train.device_data: always needs an in-memory dataset; {dataset} is read from files "
                       "(use auto)")
    embedded = not info.folders
    return mode == "always" or (mode == "auto" and info.in_memory and (device.type == "cuda" or embedded))


def training_loaders(train_set, test_set, info, cfg: TrainConfig, data: DataSettings, device: torch.device,
                     dist: Dist, seed: int):
    """(train, test) batch iterables: on-device batches (pfs.data.device_data) or DataLoaders, sharded under torchrun.
    ``train.batch_size`` is global: each of the ``world_size`` processes takes its share; the shards' order
    follows the run's ``seed``. Training workers start anew at each epoch (make_loader's ``fresh_workers``), so a
    resumed run draws each epoch's augmentation as an uninterrupted one does."""
    batch = cfg.batch_size // dist.world_size
    shard = {"rank": dist.rank, "world_size": dist.world_size}
    if uses_device_data(cfg.device_data, data.name, device):
        channels_last = cfg.channels_last and device.type == "cuda"
        return tuple(DeviceBatches(ds.images, ds.labels, info, train, size, device, channels_last=channels_last,
                                   **shard)
                     for ds, train, size in ((train_set, True, batch), (test_set, False, cfg.eval_batch_size)))
    return (make_loader(train_set, batch, True, data.num_workers, device, **shard, seed=seed, fresh_workers=True),
            make_loader(test_set, cfg.eval_batch_size, False, data.num_workers, device, **shard))
