"""Measure the peak memory of real GPU-rule jobs (learn_gates, train_full) per dataset, arch and DataLoader workers:
the figures behind pfs.workflow.memory's table (resources.mem_mb: auto).

    python bench/job_memory.py [--scenarios digits cifar imagenet] [--workers 0 2] [--keep DIR]

Each scenario copies the workflow into a temp folder, generates its data (digits: embedded; cifar: a small
CIFAR-10 folder of random images in torchvision's layout; imagenet: a tree of small random JPEGs), runs the
gates.pt and full-baseline model.pt targets of each arch with real Snakemake (``--cores 2``, on CPU) once per
``dataset.num_workers`` value, and reads every job's benchmark TSV (Snakemake's ``max_rss``: the sum of the RSS
of the job's processes, sampled every 0.5 s for the first 30 s, then every 30 s; ``max_pss`` likewise).
The ``-b<N>`` scenarios run one arch at a small batch, no workers: the part of a job that does not grow with
the batch. Also measured: a process that imported torchrun's launcher (``torchrun_launcher_mb``), and, with
``cifar``, the peak memory a process gains from loading a full-size (60,000-image) random CIFAR-10 through
pfs.data.datasets (``cifar_full_data_mb``), and, with ``imagenet``, what a full-size ImageNet index (1.3M rows) adds to
a
job's process and the size of the arrays its DataLoader workers read (``imagenet_index``); the small data of the
jobs lacks both.
Prints one JSON object: one row per job.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests"), str(REPO / "tests" / "workflow")]  # the tests' data and workflow helpers

from conftest import write_tiny_cifar10  # noqa: E402
from smk_run import copy_workflow, snakemake, tail, write_jpeg_tree  # noqa: E402

GRID = {"sparsities": [0.5], "ratios": [0.5], "seeds": [0], "schedules": ["scratch_e"], "full_baseline": True,
        "uniform_baseline": False, "random_gates": False}
SCENARIOS = {
    # the default experiment (config.yaml) as shipped: resnet20 e20, batch 64
    "digits": {"archs": {"resnet20": 20}, "config": {"dataset": {"name": "digits"}}, "batch": 64},
    # configs/paper_cifar10.yaml's archs and batch size (128) on a small random CIFAR-10
    "cifar": {"archs": {"resnet20": 20, "resnet56": 20, "resnet110": 20, "vgg16_bn": 80},
              "config": {"dataset": {"name": "cifar10", "root": "data", "check_md5": False, "val_size": 128}},
              "batch": 128},
    # configs/paper_imagenet.yaml's archs at their gate-learning and standard widths, 224 px crops, batch 32
    "imagenet": {"archs": {"mobilenet_v1": 40, "mobilenet_v2": 40, "resnet50": 80},
                 "config": {"dataset": {"name": "imagenet", "root": "data/imagenet", "val_per_class": 2},
                            "resources": {"gpu": 1}, "gates": {"eval_interval": 100}},
                 "batch": 32},
}
# the same jobs at a small batch: what does not grow with the batch (on CPU the activations do)
SCENARIOS["cifar-b8"] = {**SCENARIOS["cifar"], "archs": {"resnet20": 20}, "batch": 8, "workers": [0]}
SCENARIOS["imagenet-b4"] = {**SCENARIOS["imagenet"], "archs": {"mobilenet_v2": 40}, "batch": 4, "workers": [0]}


def make_data(name: str, workdir: Path) -> None:
    if name.startswith("cifar"):
        write_tiny_cifar10(workdir / "data", per_batch=160, test_size=200)  # 800 training images
    elif name.startswith("imagenet"):
        write_jpeg_tree(workdir / "data" / "imagenet", classes=tuple(f"n{i:02d}" for i in range(4)), train=18,
                        val=4)


def targets(name: str) -> list[str]:
    ds = SCENARIOS[name]["config"]["dataset"]["name"]
    out = []
    for arch, expansion in SCENARIOS[name]["archs"].items():
        out.append(f"results/{ds}/{arch}/e{expansion}_m1/s0.5/seed0/gates.pt")
        out.append(f"results/{ds}/{arch}/full/seed0/scratch_e/model.pt")
    return out


def read_benchmarks(workdir: Path) -> list[dict]:
    rows = []
    for path in sorted((workdir / "benchmarks").rglob("*.tsv")):
        if path.stem not in ("learn_gates", "train_full"):
            continue  # the CPU rules' files (list preparation)
        with open(path, newline="") as fh:
            record = next(csv.DictReader(fh, delimiter="\t"))
        parts = path.relative_to(workdir / "benchmarks").parts
        rows.append({"dataset": parts[0], "arch": parts[1], "rule": path.stem, "seconds": float(record["s"]),
                     **{k: None if record[k] == "NA" else round(float(record[k])) for k in ("max_rss", "max_pss")}})
    return rows


def run_scenario(name: str, workers: int, parent: Path) -> list[dict]:
    spec = SCENARIOS[name]
    sizes = {"epochs": 1, "batch_size": spec["batch"], "eval_batch_size": spec["batch"]}
    config = {**spec["config"], "gates": {**spec["config"].get("gates", {}), **sizes}, "train": sizes,
              "grid": {**GRID, "archs": list(spec["archs"]),
                       "expansions": {a: [e] for a, e in spec["archs"].items()}}}
    config["dataset"] = {**config["dataset"], "num_workers": workers}
    config["resources"] = {"threads": 2, **config.get("resources", {})}
    workdir = copy_workflow(parent / f"{name}_w{workers}", config)
    make_data(name, workdir)
    result = snakemake(workdir, *targets(name), "--cores", "2", "--configfile", "tiny.yaml", timeout=3600)
    if result.returncode != 0:
        raise SystemExit(f"{name} (workers {workers}) failed:\n{tail(result.stdout)}")
    return [{**row, "scenario": name, "batch": spec["batch"], "workers": workers} for row in read_benchmarks(workdir)]


FULL_CIFAR = """
import resource, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from conftest import write_tiny_cifar10
root = write_tiny_cifar10(Path({tmp!r}), per_batch=10000, test_size=10000)
from pfs.data.datasets import gate_learning_sets, training_sets
from pfs.data.settings import DataSettings
import torch
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
s = DataSettings("cifar10", root=str(root), check_md5=False)
sets = [gate_learning_sets(s, 5000, 0), training_sets(s)]
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


def full_cifar_data_mb(parent: Path) -> int:
    """Peak memory a process gains from loading a full-size CIFAR-10 (50,000 + 10,000 images) for gate learning
    and for training (ru_maxrss after the data minus before; the pickled files are written before)."""
    code = FULL_CIFAR.format(tests=str(REPO / "tests"), tmp=str(parent / "cifar_full"))
    return int(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)


IMAGENET_INDEX = """
import resource, sys
from pathlib import Path
root = Path({tmp!r})
for split in ("train", "val"):
    (root / split).mkdir(parents=True, exist_ok=True)
rows = {{"train": (1300, 1000), "val": (50, 1000)}}  # ILSVRC2012: 1,281,167 training and 50,000 val images
for split, (per_class, classes) in rows.items():
    with open(root / f"{{split}}.csv", "w") as fh:
        fh.write("path,class_name,label\\n")
        for c in range(classes):
            name = f"n{{1440764 + c:08d}}"
            fh.writelines(f"{{split}}/{{name}}/{{name}}_{{i}}.JPEG,{{name}},{{c}}\\n" for i in range(per_class))
from pfs.data.datasets import gate_learning_sets, training_sets
from pfs.data.settings import DataSettings
s = DataSettings("imagenet", root=str(root), train_list=str(root / "train.csv"), val_list=str(root / "val.csv"))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
sets = {stage}
peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024
arrays = sum(d.paths.nbytes + d.labels.nbytes for d in sets[:2]) // 2**20
print(peak, arrays)
"""


def imagenet_index_mb(parent: Path) -> dict:
    """What a full-size ImageNet index (1.3M training rows, 50k val rows, ILSVRC-style paths) adds to a job's
    process (peak, MB) and the size of the path and label arrays its datasets hold (the pages a DataLoader worker
    reads over an epoch), for gate learning and for training."""
    stages = {"gates": "gate_learning_sets(s, 50, 0)", "train": "training_sets(s, 0.08, False)"}
    out = {}
    for stage, call in stages.items():
        code = IMAGENET_INDEX.format(tmp=str(parent / "imagenet_index"), stage=call)
        peak, arrays = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                                      text=True).stdout.split()
        out[stage] = {"process_mb": int(peak), "arrays_mb": int(arrays)}
    return out


def torchrun_launcher_mb() -> int:
    """Peak RSS of a Python process that imported torchrun's launcher (torch.distributed.run): the launcher of a
    job under torchrun, and about the job's own script process that waits for it."""
    code = "import resource, torch.distributed.run; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)"
    return int(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=list(SCENARIOS))
    parser.add_argument("--workers", nargs="+", type=int, default=[0, 2])
    parser.add_argument("--keep", default=None, help="folder for the workflow copies (default: a temp folder)")
    args = parser.parse_args()
    parent = Path(args.keep or tempfile.mkdtemp(prefix="pfs_bench_memory_"))
    start, rows, extra = time.perf_counter(), [], {"torchrun_launcher_mb": torchrun_launcher_mb()}
    for name in args.scenarios:
        for workers in SCENARIOS[name].get("workers", args.workers):
            rows += run_scenario(name, workers, parent)
        if name == "cifar":
            extra["cifar_full_data_mb"] = full_cifar_data_mb(parent)
        if name == "imagenet":
            extra["imagenet_index"] = imagenet_index_mb(parent)
    print(json.dumps({
        "rows": rows, **extra, "seconds": round(time.perf_counter() - start), "python": platform.python_version(),
        "cpus": os.cpu_count(), "self_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
    }, indent=1))


if __name__ == "__main__":
    main()
