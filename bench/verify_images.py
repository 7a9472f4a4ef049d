"""Benchmark: decoding every image to find the unreadable ones (pfs.data.index.unreadable_images, what
dataset.verify_images and `python -m pfs verify-images` run), measured in one run.

    python bench/verify_images.py [--images 2000] [--size 500x375] [--workers N] [--repeats 2]

Writes ``--images`` random-texture JPEGs of ImageNet's typical size (500x375, quality 90) into a temp folder, then
times, best of ``--repeats``:
- ``full_1``: a full decode to RGB in one process (what a training DataLoader does per image), the baseline;
- ``draft_1``: the verification's reduced-scale JPEG decode in one process (every byte is still read, so a
  truncated file is still caught);
- ``draft_N``: the same with ``--workers`` processes (default: all CPUs).
Prints one JSON object: files/s of each, each one's speed-up over ``full_1``, and the hours ImageNet's 1.33M
images (train + val) would take at ``draft_N``'s rate on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from pfs.data import index

IMAGENET_IMAGES = 1_331_167  # ILSVRC2012: 1,281,167 training + 50,000 validation images


def make_images(folder: Path, n: int, size: tuple[int, int]) -> list[str]:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (size[1] // 8, size[0] // 8, 3), dtype=np.uint8)  # smooth-ish texture: real sizes
    names = []
    for i in range(n):
        tile = np.roll(base, i, axis=1).repeat(8, 0).repeat(8, 1)
        noisy = np.clip(tile.astype(np.int16) + rng.integers(-20, 21, tile.shape), 0, 255).astype(np.uint8)
        names.append(f"img{i}.JPEG")
        Image.fromarray(noisy).save(folder / names[-1], quality=90)
    return names


def full_decode(root: Path, names: list[str]) -> int:
    for name in names:
        with Image.open(root / name) as image:
            image.convert("RGB")
    return len(names)


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--size", default="500x375", help="WIDTHxHEIGHT of each JPEG")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))

    tmp = Path(tempfile.mkdtemp(prefix="pfs_bench_verify_"))
    try:
        names = make_images(tmp, args.images, size)
        full_decode(tmp, names[:50])  # warm-up: imports and page cache
        seconds = {
            "full_1": best(lambda: full_decode(tmp, names), args.repeats),
            "draft_1": best(lambda: index.unreadable_images(tmp, names, 1), args.repeats),
            f"draft_{args.workers}": best(lambda: index.unreadable_images(tmp, names, args.workers), args.repeats),
        }
        megabytes = sum((tmp / n).stat().st_size for n in names) / 1e6
    finally:
        shutil.rmtree(tmp)
    rate = {k: args.images / v for k, v in seconds.items()}
    parallel = rate[f"draft_{args.workers}"]
    print(json.dumps({
        "images": args.images, "size": args.size, "megabytes": round(megabytes, 1), "repeats": args.repeats,
        "files_per_s": {k: round(v) for k, v in rate.items()},
        "speedup_vs_full_1": {k: round(v / rate["full_1"], 2) for k, v in rate.items() if k != "full_1"},
        "imagenet_hours_at_draft_parallel": round(IMAGENET_IMAGES / parallel / 3600, 2),
        "python": platform.python_version(), "cpus": os.cpu_count(),
    }, indent=2))


if __name__ == "__main__":
    main()
