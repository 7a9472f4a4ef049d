"""The fast in-memory path: a whole small dataset held on the device as uint8, augmented there per batch.

For CIFAR-sized data the DataLoader path (one Python transform call per image, worker processes, host-to-device
copies every batch) keeps a GPU waiting. Here the split sits on the device once; each batch is gathered by index,
randomly cropped (zero padding, like torchvision's ``RandomCrop(size, padding)``) and flipped with a few tensor
ops, and normalised, with no worker processes. The randomness of a whole epoch (order, crop offsets, flips) is
drawn at its start from torch's global generator, so the training loop's per-epoch seed fixes it, and replaying
the first batches of an epoch after a resume sees exactly the same data.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from pfs.core.catalog import DatasetInfo


def crop_flip(images: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor, padding: int) -> torch.Tensor:
    """Crop each image of ``images`` (B x C x H x W) at ``offsets`` (B x 2: top, left, in 0..2*padding) of its
    zero-padded copy, then mirror it horizontally where ``flips`` (B bool) is set; same size and dtype out."""
    b, c, h, w = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))
    rows = offsets[:, 0, None] + torch.arange(h, device=images.device)  # B x H
    cols = offsets[:, 1, None] + torch.arange(w, device=images.device)  # B x W
    cols = torch.where(flips[:, None], cols.flip(1), cols)
    batch = torch.arange(b, device=images.device)[:, None, None, None]
    channel = torch.arange(c, device=images.device)[None, :, None, None]
    return padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]


class DeviceBatches:
    """Batches of normalised float images from uint8 ``images`` kept on ``device``.

    Training batches are shuffled, cropped and (if the dataset allows) flipped; evaluation batches are neither.
    With ``world_size`` > 1 each rank takes every ``world_size``-th sample: for training from a shuffled order
    padded (as DistributedSampler does) so that every rank runs the same number of steps; for evaluation without
    padding, so sums over ranks count every image once.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, info: DatasetInfo, train: bool, batch_size: int,
                 device: torch.device, rank: int = 0, world_size: int = 1, channels_last: bool = False) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"DeviceBatches needs uint8 N x C x H x W images, got {images.dtype} "
                             f"{tuple(images.shape)}")
        self.images = images.to(device)
        self.labels = labels.to(device)
        self.info, self.train, self.batch_size = info, train, batch_size
        self.rank, self.world_size, self.channels_last = rank, world_size, channels_last
        self.mean = torch.tensor(info.mean, device=device).view(1, -1, 1, 1) * 255
        self.std = torch.tensor(info.std, device=device).view(1, -1, 1, 1) * 255

    def _indices(self) -> torch.Tensor:
        n = len(self.labels)
        if not self.train:
            return torch.arange(self.rank, n, self.world_size)
        order = torch.randperm(n)
        per_rank = math.ceil(n / self.world_size)
        order = torch.cat([order, order[: per_rank * self.world_size - n]])  # pad to a multiple of world_size
        return order[self.rank :: self.world_size]

    def __len__(self) -> int:
        n = len(self.labels)
        per_rank = math.ceil(n / self.world_size) if self.train else len(range(self.rank, n, self.world_size))
        return math.ceil(per_rank / self.batch_size)

    def __iter__(self):
        indices = self._indices()
        pad = self.info.crop_padding
        if self.train:  # the epoch's augmentation, drawn up front (see the module docstring)
            offsets = torch.randint(0, 2 * pad + 1, (len(indices), 2))
            flips = torch.rand(len(indices)) < 0.5 if self.info.hflip else torch.zeros(len(indices), dtype=torch.bool)
        device = self.images.device
        for start in range(0, len(indices), self.batch_size):
            idx = indices[start : start + self.batch_size].to(device)
            x = self.images[idx]
            if self.train:
                sl = slice(start, start + self.batch_size)
                x = crop_flip(x, offsets[sl].to(device), flips[sl].to(device), pad)
            x = (x.float() - self.mean) / self.std
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.labels[idx]
