"""The on-device data path: same augmentation distribution as the torchvision path (random crop with zero
padding, horizontal flip), shapes, dtypes, sharding and determinism, all checked on CPU."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F
from torchvision.transforms.v2 import functional as TF

from pfs.core.catalog import DATASETS
from pfs.data.datasets import TensorImageDataset, make_transform
from pfs.data.device_data import DeviceBatches, crop_flip

CPU = torch.device("cpu")
CIFAR = DATASETS["cifar10"]
PAD = CIFAR.crop_padding


def coded_image(size: int = 32) -> torch.Tensor:
    """uint8 3 x size x size: channel 0 holds row + 1, channel 1 column + 1 (0 only in the padding)."""
    rows = torch.arange(1, size + 1).view(-1, 1).expand(size, size)
    return torch.stack([rows, rows.T, torch.full((size, size), 7)]).to(torch.uint8)


def decode(x: torch.Tensor, info=CIFAR) -> tuple[int, int, bool]:
    pad = info.crop_padding
    """(top offset, left offset, flipped) of one augmented, normalised coded image."""
    raw = (x * torch.tensor(info.std).view(-1, 1, 1) * 255 + torch.tensor(info.mean).view(-1, 1, 1) * 255).round()
    c = x.shape[-1] // 2
    top = int(raw[0, c, c]) - 1 - c + pad
    flipped = bool(raw[1, c, c + 1] < raw[1, c, c - 1])
    left = int(raw[1, c, c]) - 1 - (x.shape[-1] - 1 - c if flipped else c) + pad
    return top, left, flipped


@pytest.mark.parametrize("flip", [False, True])
def test_crop_flip_equals_torchvisions_crop_of_the_padded_image(flip):
    image = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    for top, left in [(0, 0), (8, 8), (3, 5), (8, 0)]:
        got = crop_flip(image[None], torch.tensor([[top, left]]), torch.tensor([flip]), PAD)[0]
        want = TF.crop(F.pad(image, (PAD,) * 4), top, left, 32, 32)
        assert torch.equal(got, TF.horizontal_flip(want) if flip else want)


def _transform_counts(samples: list[tuple[int, int, bool]]) -> tuple[torch.Tensor, float]:
    counts = torch.zeros(2 * PAD + 1, 2 * PAD + 1)
    for top, left, _ in samples:
        counts[top, left] += 1
    return counts, sum(f for _, _, f in samples) / len(samples)


def _uniform_enough(counts: torch.Tensor) -> bool:
    """Chi-square test of uniform crop offsets at the 0.1% level (80 degrees of freedom: critical value 124.8)."""
    expected = counts.sum() / counts.numel()
    return float(((counts - expected) ** 2 / expected).sum()) < 124.8


def test_device_path_draws_the_same_crop_and_flip_distribution_as_torchvision():
    n = 4000
    images = coded_image().expand(n, -1, -1, -1).contiguous()
    labels = torch.zeros(n, dtype=torch.long)
    torch.manual_seed(0)
    device = [decode(x) for xb, _ in DeviceBatches(images, labels, CIFAR, True, 500, CPU) for x in xb]
    reference = TensorImageDataset(images[:n], labels, make_transform(CIFAR, train=True))
    torchvision = [decode(reference[i][0]) for i in range(n)]
    for samples in (device, torchvision):
        counts, flip_rate = _transform_counts(samples)
        assert counts.sum() == n and (counts > 0).all()  # every offset 0..8 x 0..8 occurs, nothing else
        assert _uniform_enough(counts)
        assert abs(flip_rate - 0.5) < 4 * math.sqrt(0.25 / n)


def test_batches_are_normalised_float32_with_labels_and_cover_the_split_once():
    images = torch.randint(0, 256, (10, 3, 32, 32), dtype=torch.uint8)
    labels = torch.arange(10)
    loader = DeviceBatches(images, labels, CIFAR, False, 4, CPU)
    batches = list(loader)
    assert len(loader) == len(batches) == 3
    x = torch.cat([b[0] for b in batches])
    assert x.dtype == torch.float32 and x.shape == (10, 3, 32, 32)
    assert torch.cat([b[1] for b in batches]).tolist() == list(range(10))  # evaluation keeps the order
    reference = make_transform(CIFAR, train=False)
    assert torch.allclose(x, torch.stack([reference(im) for im in images]), atol=1e-5)


def test_training_batches_shuffle_and_are_fixed_by_the_seed():
    images = torch.randint(0, 256, (20, 3, 32, 32), dtype=torch.uint8)
    labels = torch.arange(20)
    loader = DeviceBatches(images, labels, CIFAR, True, 8, CPU)

    def epoch(seed):
        torch.manual_seed(seed)
        return [(x.clone(), y.clone()) for x, y in loader]

    a, b, c = epoch(1), epoch(1), epoch(2)
    assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b, strict=True))
    assert sorted(torch.cat([y for _, y in a]).tolist()) == list(range(20))
    assert torch.cat([y for _, y in a]).tolist() != torch.cat([y for _, y in c]).tolist()


def test_ranks_get_equal_training_steps_and_disjoint_evaluation_shards():
    images = torch.zeros(11, 3, 8, 8, dtype=torch.uint8)
    labels = torch.arange(11)
    torch.manual_seed(0)
    train = [DeviceBatches(images, labels, CIFAR, True, 2, CPU, rank=r, world_size=3) for r in range(3)]
    seen = []
    for loader in train:
        torch.manual_seed(0)  # every rank draws the same epoch order, as DistributedSampler's shared seed
        ys = [y for _, y in loader]
        assert len(ys) == len(loader) == 2  # ceil(11 / 3) = 4 samples a rank, batches of 2
        seen += torch.cat(ys).tolist()
    assert len(seen) == 12 and set(seen) == set(range(11))  # one repeat pads 11 to 12
    evaluation = [DeviceBatches(images, labels, CIFAR, False, 2, CPU, rank=r, world_size=3) for r in range(3)]
    assert sorted(int(v) for loader in evaluation for _, y in loader for v in y) == list(range(11))


def test_digits_are_cropped_but_never_flipped():
    info = DATASETS["digits"]  # padding 2, no flip (a mirrored digit is another symbol)
    images = coded_image(16).expand(400, -1, -1, -1).contiguous()
    torch.manual_seed(0)
    samples = [decode(x, info) for xb, _ in DeviceBatches(images, torch.zeros(400, dtype=torch.long), info, True,
                                                          100, CPU) for x in xb]
    assert not any(f for _, _, f in samples)
    assert {(t, left) for t, left, _ in samples} == {(t, left) for t in range(5) for left in range(5)}


def test_channels_last_batches():
    images = torch.zeros(4, 3, 8, 8, dtype=torch.uint8)
    x, _ = next(iter(DeviceBatches(images, torch.zeros(4, dtype=torch.long), CIFAR, False, 4, CPU,
                                   channels_last=True)))
    assert x.is_contiguous(memory_format=torch.channels_last)
