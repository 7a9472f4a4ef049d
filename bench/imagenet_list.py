"""Benchmark: indexing an ImageNet-style tree (pfs.data.imagenet) against naive baselines, measured in one run.

    python bench/imagenet_list.py [--classes 1000] [--train-per-class 100] [--val-per-class 10] [--repeats 3]

Builds a tree of empty ``.JPEG`` files in a temp folder (indexing never opens an image, so empty files cost the
same as real ones), then times, best of ``--repeats`` with the methods interleaved (warm page cache for all):
- ``index``: pfs.data.index.index_split on train/ and val/ (what a loader needs);
- ``prepare_lists``: index + class checks + both CSVs written atomically (the whole workflow stage);
- ``imagenet_folder``: torchvision.datasets.ImageFolder construction on train/ and val/ (what the official
  training script does at every start);
- ``walk_stat``: os.walk + os.stat of every file + sorted (a naive indexer);
- ``fingerprint``: pfs.data.datatree.fingerprint, computed at every DAG build (class folders and image names hashed);
  ``ratio_vs_index`` says what it costs next to indexing; for ImageNet's 1.28M training images run
  ``--train-per-class 1281 --val-per-class 50``.
Prints one JSON object: seconds, files/s, and each baseline's time divided by ``index``'s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pfs.data.datatree import IMAGE_EXTENSIONS, fingerprint
from pfs.data.index import SPLITS, index_split, prepare_lists


def make_tree(root: Path, classes: int, per_split: dict[str, int]) -> int:
    """Empty image files ``root/{split}/n{class:08d}/n{class:08d}_{i}.JPEG``; returns the number of files."""
    for split, n in per_split.items():
        for c in range(classes):
            folder = root / split / f"n{c:08d}"
            folder.mkdir(parents=True)
            for i in range(n):
                open(folder / f"n{c:08d}_{i}.JPEG", "wb").close()
    return classes * sum(per_split.values())


def index(root: Path) -> int:
    return sum(len(index_split(root / split)) for split in SPLITS)


def imagenet_folder(root: Path) -> int:
    from torchvision.datasets import ImageFolder

    return sum(len(ImageFolder(str(root / split)).samples) for split in SPLITS)


def walk_stat(root: Path) -> int:
    n = 0
    for split in SPLITS:
        rows = []
        for folder, _, files in os.walk(root / split):
            for name in files:
                if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS and os.path.isfile(os.path.join(folder, name)):
                    rows.append((os.path.basename(folder), os.path.join(folder, name)))
        n += len(sorted(rows))
    return n


def best_times(methods: dict[str, Callable[[], int]], repeats: int, expected: int) -> dict[str, float]:
    best = dict.fromkeys(methods, float("inf"))
    for _ in range(repeats):  # interleaved, so drift in machine load hits every method alike
        for name, fn in methods.items():
            start = time.perf_counter()
            found = fn()
            best[name] = min(best[name], time.perf_counter() - start)
            assert found == expected, f"{name} found {found} images, expected {expected}"
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--train-per-class", type=int, default=100)
    parser.add_argument("--val-per-class", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", default=None, help="parent of the temp tree (default: the system temp folder)")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="pfs_bench_imagenet_", dir=args.dir))
    try:
        root, out = tmp / "imagenet", tmp / "lists"
        start = time.perf_counter()
        files = make_tree(root, args.classes, {"train": args.train_per_class, "val": args.val_per_class})
        build_s = time.perf_counter() - start
        imagenet_folder(root)  # warm-up: torchvision import and the page cache are not what we time
        def prepare() -> int:
            return sum(len(p.read_text().splitlines()) - 1 for p in prepare_lists(root, out).values())

        methods = {
            "index": lambda: index(root),
            "prepare_lists": prepare,
            "imagenet_folder": lambda: imagenet_folder(root),
            "walk_stat": lambda: walk_stat(root),
            "fingerprint": lambda: len(fingerprint("imagenet", root)) and files,  # the files it covers
        }
        best = best_times(methods, args.repeats, files)
        csv_bytes = sum(p.stat().st_size for p in out.iterdir())
    finally:
        shutil.rmtree(tmp)
    print(json.dumps({
        "files": files, "classes": args.classes, "repeats": args.repeats, "tree_build_s": round(build_s, 2),
        "seconds": {k: round(v, 4) for k, v in best.items()},
        "files_per_s": {k: round(files / v) for k, v in best.items()},
        "ratio_vs_index": {k: round(v / best["index"], 2) for k, v in best.items() if k != "index"},
        "csv_bytes": csv_bytes, "python": platform.python_version(), "cpus": os.cpu_count(),
    }, indent=2))


if __name__ == "__main__":
    main()
