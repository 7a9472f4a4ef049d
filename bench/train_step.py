"""Benchmark: the on-device data path (pfs.data.device_data) against the DataLoader path, measured in one run.

    python bench/train_step.py [--arch resnet20] [--images 4096] [--batch 128] [--repeats 3] [--workers 0]
                               [--device cpu|cuda] [--threads N]

CIFAR-shaped random uint8 images (no download). Two measurements, each for both paths, best of ``--repeats``
with the paths interleaved:
- ``data``: one pass producing augmented, normalised batches on the device (random crop with padding 4, flip),
  nothing trained: the DataLoader path (torchvision transforms per image, ``--workers`` processes, pinned
  host-to-device copies) vs DeviceBatches (uint8 held on the device, crop/flip per batch by indexing);
- ``epoch``: the same pass with a real training step per batch (SGD, CE, the arch at its standard width).
On CUDA the device path also runs the network in channels_last with bf16 autocast, as ``train.device_data:
auto`` and ``train.channels_last`` do; the DataLoader path runs it as before (NCHW, bf16). Prints one JSON object:
seconds, images/s and the ratio DataLoader / device for each measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch
from _common import add_device_args, setup_device, sync
from torch import nn

from pfs.core.catalog import DATASETS
from pfs.data.datasets import TensorImageDataset, make_loader, make_transform
from pfs.data.device_data import DeviceBatches
from pfs.models import build_model

INFO = DATASETS["cifar10"]


def loaders(images, labels, batch, workers, device):
    standard = make_loader(TensorImageDataset(images, labels, make_transform(INFO, train=True)), batch, True,
                           workers, device)
    on_device = DeviceBatches(images, labels, INFO, True, batch, device, channels_last=device.type == "cuda")
    return {"dataloader": standard, "device": on_device}


def data_pass(loader, device) -> int:
    n = 0
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        n += len(y)
    sync(device)
    return n


def make_trainer(arch: str, device: torch.device, channels_last: bool):
    torch.manual_seed(0)
    model = build_model(arch).to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    criterion = nn.CrossEntropyLoss()

    def epoch(loader) -> int:
        model.train()
        n = 0
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                loss = criterion(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            n += len(y)
        sync(device)
        return n

    return epoch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet20")
    parser.add_argument("--images", type=int, default=4096)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    add_device_args(parser)
    args = parser.parse_args()
    device = setup_device(args)
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (args.images, 3, 32, 32), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, 10, (args.images,), generator=gen)
    paths = loaders(images, labels, args.batch, args.workers, device)
    trainers = {"dataloader": make_trainer(args.arch, device, False),
                "device": make_trainer(args.arch, device, device.type == "cuda")}
    for name, loader in paths.items():  # warm-up: workers, allocator, kernels
        data_pass(loader, device)
        trainers[name](loader)
    seconds = {m: dict.fromkeys(paths, float("inf")) for m in ("data", "epoch")}
    for _ in range(args.repeats):  # interleaved, so drift in machine load hits both alike
        for name, loader in paths.items():
            start = time.perf_counter()
            assert data_pass(loader, device) == args.images
            seconds["data"][name] = min(seconds["data"][name], time.perf_counter() - start)
            start = time.perf_counter()
            assert trainers[name](loader) == args.images
            seconds["epoch"][name] = min(seconds["epoch"][name], time.perf_counter() - start)
    print(json.dumps({
        "arch": args.arch, "images": args.images, "batch": args.batch, "workers": args.workers, "device": str(device),
        "seconds": {m: {k: round(v, 4) for k, v in s.items()} for m, s in seconds.items()},
        "images_per_s": {m: {k: round(args.images / v) for k, v in s.items()} for m, s in seconds.items()},
        "ratio_dataloader_vs_device": {m: round(s["dataloader"] / s["device"], 2) for m, s in seconds.items()},
        "torch": torch.__version__, "python": platform.python_version(), "cpus": os.cpu_count(),
        "threads": args.threads,
    }, indent=2))


if __name__ == "__main__":
    main()
