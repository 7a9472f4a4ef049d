"""Memory of the GPU jobs (learn_gates, train_*): ``resources.mem_mb: auto`` estimates it from measured peak
figures, and after a run each job's benchmark file is compared with what it declared.

Torch-free: rules/resources.smk calls it while the DAG is built.

**What is measured.** Snakemake's benchmark files give, per job, ``max_rss`` and ``max_pss`` (MB): the resident
and the proportional set size of the job's processes (the script, torchrun and its ranks, DataLoader workers)
summed, sampled every 0.5 s for the first 30 s, then every 30 s. Without DataLoader workers the two agree on a
job alone (PSS splits pages shared with other processes). With workers they part: a forked worker's RSS counts
every page it shares with its parent, so the RSS sum counts the parent's memory once per worker; measured here,
CIFAR-10 gate learning of resnet110 had max_rss 2617 MB and max_pss 2600 MB with no worker, and max_rss 7811 MB
but max_pss 2450 MB with 2. A cgroup memory limit (SLURM's ConstrainRAMSpace) charges pages once, like PSS. So
the check after a run compares ``max_pss`` (``max_rss`` where a file has none) with the declaration, and the
estimate is built the same way: single-process figures from ``max_rss``, the cost of a worker from ``max_pss``.
The figures below are real jobs on CPU (2 cores, torch 2.x, Python 3.11), measured by

    python bench/job_memory.py        # ~45 min on 2 cores; prints one JSON object, one row per job

(digits as in config.yaml; CIFAR-10 with configs/paper_cifar10.yaml's archs and batch 128 on a small random
CIFAR-10 folder; ImageNet with configs/paper_imagenet.yaml's archs at 224 px and batch 32 on a tree of small
random JPEGs; each at ``dataset.num_workers`` 0 and 2; small-batch runs; the data the small folders lack). On a
GPU node the same command measures GPU jobs (``device: auto``).

**The estimate** of a job (dataset d, arch a, stage gates|train, P processes, W DataLoader workers per process,
batch b per process) is, rounded up to 100 MB,

    MARGIN x [ launcher (torchrun jobs) + P x ( JOB[d][a, stage]             measured peak, 0 workers
                                              + CUDA_HOST_MB          on a GPU (assumed, not measured), or
                                                SLOPE x (b - REF_BATCH)   on CPU, above the measured batch
                                              + FULL_DATA_MB[d]       the data the small test data lacks
                                              + W x (WORKER_MB[d] + 2 prefetched batches) ) ]

P is resources.gpu for training under torchrun (ImageNet, or more than one GPU), else 1; W is
dataset.num_workers where a DataLoader reads the batches (gate learning always; training unless the data sits on
the device: digits, and CIFAR on a GPU, with train.device_data auto).

**ImageNet** is measured here on a tiny tree, not on ILSVRC2012. Its job figures are scaled, one factor per stage
(anchor_scale), so that the estimate before the margin matches the full-size figures we have:
- training: 8.5 GB (8500 MB) max_rss in a train_full benchmark file (MobileNetV2, 2 epochs, num_workers 1, CPU jobs
  on a cluster of fake GPUs), reported in this project's issue 15, point 5 ("declared mem_mb 4000 and reached 8.5 GB
  RSS"; its max_pss was not given, and is at most that);
- gate learning: 11,350 MB max_pss (18,682 MB max_rss) in a learn_gates benchmark file (MobileNetV2 at multiplier
  0.35, num_workers 2, batch 50, on CPU), reported in issue 27, where the estimate of then (11,900 MB with the
  margin) left 5% instead of MARGIN's 20%.
The 1.3M-row index the tiny tree lacks is measured apart and added.

**A torchvision or timm network** (``torchvision:<name>``, not measured) takes ResNet-50's ImageNet figures
(LIBRARY_STAND_IN), scaled like a folder dataset's to the images' size; set ``resources.mem_mb`` for a larger one.

**A folder dataset** (the user's images, not measured) takes the table of the arch's own inputs, CIFAR's for a CIFAR
arch, else ImageNet's, and on CPU counts its activations as those of batch x (its pixels / the table's pixels)
images of the table's size.
"""

from __future__ import annotations

import csv
import functools
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from pfs.core import catalog

MARGIN = 1.2  # over the measured peaks: sampling misses short peaks, real images decode larger than the test JPEGs
ROUND_MB = 100
STAGES = ("gates", "train")

# --- measured: bench/job_memory.py on this project's 2-core CPU machine (MB) -------------------------------------
# JOB[group][(arch, stage)]: max_rss of the job with no DataLoader worker at REF_BATCH (the gates' and training's
# batch and eval batch), learn_gates and train_full (standard width). digits: the largest of the bench run and a
# full default run (snakemake --cores 2). The ImageNet train jobs ran under torchrun with 1 rank: their figure
# includes the script and launcher processes.
JOB = {
    "digits": {("resnet20", "gates"): 809, ("resnet20", "train"): 806},
    "cifar": {
        ("resnet20", "gates"): 1105, ("resnet20", "train"): 1225,
        ("resnet56", "gates"): 1684, ("resnet56", "train"): 1591,
        ("resnet110", "gates"): 2617, ("resnet110", "train"): 3034,
        ("vgg16_bn", "gates"): 1426, ("vgg16_bn", "train"): 1293,
    },
    "imagenet": {
        ("mobilenet_v1", "gates"): 2836, ("mobilenet_v1", "train"): 3242,
        ("mobilenet_v2", "gates"): 2617, ("mobilenet_v2", "train"): 2920,
        ("resnet50", "gates"): 4370, ("resnet50", "train"): 5181,
    },
}
REF_BATCH = {"digits": 64, "cifar": 128, "imagenet": 32}
# FLOOR: the same job at FLOOR_BATCH (cifar: resnet20, imagenet: mobilenet_v2): the part that does not grow with
# the batch; on CPU the rest (the activations) grows with it, by (JOB - FLOOR) / (REF_BATCH - FLOOR_BATCH) per image
FLOOR = {"cifar": {"gates": 764, "train": 765}, "imagenet": {"gates": 1258, "train": 2155}}
FLOOR_BATCH = {"cifar": 8, "imagenet": 4}
# one DataLoader worker: the largest max_pss increase per worker from 0 to 2 workers over the archs and stages
# (its own heap, decoding and two prefetched batches; the pages it shares with its parent split, not repeated)
WORKER_MB = {"digits": 130, "cifar": 126, "imagenet": 645}
TORCHRUN_LAUNCHER_MB = 508  # a process that imported torch.distributed.run; a torchrun job adds two (script, launcher)
# what the small test data lacks, added to every process (the peak memory it added to one): a full-size CIFAR-10
# (60,000 images) loaded through pfs.data.datasets for gate learning and for training (both in one process: an upper
# bound), and a 1.3M-row ImageNet index (ILSVRC2012's 1,281,167 + 50,000) read for gate learning / for training
FULL_DATA_MB = {"cifar": {"gates": 766, "train": 766}, "imagenet": {"gates": 645, "train": 569}}

# --- the one figure not measured here -------------------------------------------------------------------------
# (job peak MB, the job): full-size ImageNet jobs the tiny tree's figures are scaled to, one per stage (see above)
ANCHORS = {
    "train": (8500, dict(arch="mobilenet_v2", workers=1, batch_size=32, gpu=False)),  # issue 15: max_rss
    "gates": (11350, dict(arch="mobilenet_v2", workers=2, batch_size=50, gpu=False)),  # issue 27: max_pss
}
ANCHOR_MB = ANCHORS["train"][0]
# --- assumed, not measured (no GPU here): host memory of torch's CUDA runtime, cuDNN and cuBLAS in one process
CUDA_HOST_MB = 3000
PREFETCH_BATCHES = 2  # DataLoader's prefetch_factor: batches each worker keeps ready (in shared memory)

# archs without a measurement of their own take the figure of a measured arch at least as large
STAND_IN = {"resnet32": "resnet56", "resnet44": "resnet56", "vgg11_bn": "vgg16_bn", "vgg13_bn": "vgg16_bn",
            "vgg19_bn": "vgg16_bn"}

# a torchvision/timm network (not measured) takes the figure of ResNet-50 on ImageNet, the largest measured; a much
# larger one needs resources.mem_mb set by hand
LIBRARY_STAND_IN = "resnet50"

# the image side of each table's measurements: a folder dataset's activations scale with its pixels against these
TABLE_IMAGE_SIZE = {"digits": 16, "cifar": 32, "imagenet": 224}


def _group(dataset: str, arch: str) -> str:
    """The table of measured figures for ``arch`` on ``dataset``; a folder dataset takes that of the arch's own
    inputs (CIFAR's for a CIFAR arch, else ImageNet's), scaled to its image size in estimate_mem_mb."""
    catalog.dataset_info(dataset)  # unknown names fail here, naming the known ones
    if dataset == catalog.FOLDER:
        return "cifar" if catalog.arch_info(arch).domain == "cifar" else "imagenet"
    return "cifar" if dataset.startswith("cifar") else dataset


def _figure(group: str, arch: str, stage: str) -> tuple[str, int]:
    """(table the figure came from, measured job peak) of ``arch`` at ``stage``; digits takes CIFAR's figure for
    an arch not measured on digits (larger images, a larger dataset: never less)."""
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    catalog.arch_info(arch)
    if catalog.is_library_arch(arch):  # not measured: the largest measured network's figure (LIBRARY_STAND_IN)
        return "imagenet", JOB["imagenet"][(LIBRARY_STAND_IN, stage)]
    arch = STAND_IN.get(arch, arch)
    for table in (group, "cifar") if group == "digits" else (group,):
        if (arch, stage) in JOB[table]:
            return table, JOB[table][(arch, stage)]
    raise ValueError(f"no memory figure for {arch} on {group}; set resources.mem_mb to a number")


@functools.cache
def anchor_scale(stage: str) -> float:
    """The factor of the tiny ImageNet tree's ``stage`` figures that makes the estimate of ANCHORS[stage]'s job,
    before the margin, its measured full-size peak."""
    peak, job = ANCHORS[stage]
    rest = _raw_mb("imagenet", job["arch"], stage, scale=0.0, **{k: v for k, v in job.items() if k != "arch"})
    return (peak - rest) / JOB["imagenet"][(job["arch"], stage)]


def estimate_mem_mb(dataset: str, arch: str, stage: str, *, processes: int = 1, workers: int = 0,
                    batch_size: int | None = None, gpu: bool = True, torchrun: bool = False,
                    image_size: int | None = None) -> int:
    """Memory (MB) to declare for one job: see the module docstring for the formula and its figures.

    ``processes``: training ranks under torchrun (1 otherwise); ``workers``: DataLoader workers per process (0
    when the job uses none); ``batch_size``: per process (None: the measured one); ``gpu``: the job computes on a
    GPU (activations off the host, the CUDA runtime on it); ``image_size``: a folder dataset's (None: the
    catalog's), whose activations on CPU count as those of (its pixels / the table's) times more images."""
    total = _raw_mb(dataset, arch, stage, processes=processes, workers=workers, batch_size=batch_size, gpu=gpu,
                    torchrun=torchrun, image_size=image_size)
    return math.ceil(MARGIN * total / ROUND_MB) * ROUND_MB


def _raw_mb(dataset: str, arch: str, stage: str, *, processes: int = 1, workers: int = 0,
            batch_size: int | None = None, gpu: bool = True, torchrun: bool = False, image_size: int | None = None,
            scale: float | None = None) -> float:
    """The estimate before the margin (``scale``: ImageNet's factor, None: anchor_scale's)."""
    group = _group(dataset, arch)
    table, job = _figure(group, arch, stage)
    batch = REF_BATCH[table] if batch_size is None else batch_size
    size = image_size or catalog.dataset_info(dataset).image_size
    area = (size / TABLE_IMAGE_SIZE[table]) ** 2 if dataset == catalog.FOLDER else 1.0
    per_process = float(job)
    if table == "imagenet":
        per_process *= anchor_scale(stage) if scale is None else scale
        if stage == "train":  # measured under torchrun: the launcher is counted once below, not once per rank
            per_process -= 2 * TORCHRUN_LAUNCHER_MB
            torchrun = True
    if gpu:
        per_process += CUDA_HOST_MB
    elif batch * area > REF_BATCH[table] and table in FLOOR:
        slope = max(0.0, (job - FLOOR[table][stage]) / (REF_BATCH[table] - FLOOR_BATCH[table]))
        per_process += slope * (batch * area - REF_BATCH[table])
    per_process += FULL_DATA_MB.get(table, {}).get(stage, 0)
    image_bytes = 3 * size * size * 4  # a float32 image of a batch
    extra_batches = PREFETCH_BATCHES * max(0, batch - REF_BATCH[table]) * image_bytes / 2**20
    per_worker = WORKER_MB[table] + extra_batches  # the measured worker held its prefetched batches at REF_BATCH
    return processes * (per_process + workers * per_worker) + (2 * TORCHRUN_LAUNCHER_MB if torchrun else 0)


def uses_dataloader(dataset: str, stage: str, gpu: bool, device_data: str = "auto") -> bool:
    """Whether the job reads batches through a DataLoader (whose workers cost memory): gate learning always;
    training unless its data sits on the device (pfs.training.loaders.uses_device_data, torch-free)."""
    if stage == "gates":
        return True
    info = catalog.dataset_info(dataset)
    embedded = not info.folders
    on_device = device_data == "always" or (device_data == "auto" and info.in_memory and (gpu or embedded))
    return not (on_device and info.in_memory)


def job_mem_mb(config: dict, arch: str, stage: str, gpus: int) -> int:
    """``resources.mem_mb: auto`` for a job of ``arch`` at ``stage`` given ``gpus`` GPUs, from the config's dataset,
    workers, batch size, device and train.device_data."""
    from pfs.workflow.config import dataset_image_size, train_settings  # torch-free

    dataset = config["dataset"]["name"]
    gpu = gpus > 0 and config.get("device", "auto") != "cpu"
    # as pfs.stages.train.TrainJob.needs_torchrun: ImageNet always, other datasets on several GPUs
    torchrun = stage == "train" and (dataset == "imagenet" or gpus > 1)
    processes = max(1, gpus) if torchrun else 1
    if stage == "gates":
        batch, device_data = config["gates"]["batch_size"], "never"
    else:
        settings = train_settings(config, arch)
        batch, device_data = max(1, settings["batch_size"] // processes), settings.get("device_data", "auto")
    workers = config["dataset"].get("num_workers", 0) if uses_dataloader(dataset, stage, gpu, device_data) else 0
    return estimate_mem_mb(dataset, arch, stage, processes=processes, workers=workers, batch_size=batch, gpu=gpu,
                           torchrun=torchrun, image_size=dataset_image_size(config))


# --- after a run: benchmark files against the declarations ------------------------------------------------------
class DeclaredJob(NamedTuple):
    """A job of the run as the check sees it."""

    benchmark: str | os.PathLike  # its benchmark TSV
    mem_mb: float | None  # what it declared (None: nothing)
    rule: str
    config_sized: bool = True  # sized by the config's resources (the GPU rules), else by the profile's


@dataclass(frozen=True)
class Overrun:
    """A job whose benchmark peaked above the memory it declared."""

    job: DeclaredJob
    measure: str  # the figure compared: max_pss, or max_rss where the file has no PSS
    used_mb: float
    rss_mb: float | None = None

    @property
    def suggested_mb(self) -> int:
        return math.ceil(MARGIN * self.used_mb / ROUND_MB) * ROUND_MB

    def message(self, config_mem_mb: int | str | None = None) -> str:
        """One line: the job, its benchmark file, used vs declared, and the keys to raise (``config_mem_mb``: the
        config's resources.mem_mb, shown)."""
        job, mb = self.job, self.suggested_mb
        rss = f"max_rss {self.rss_mb:.0f} MB, " if self.measure != "max_rss" and self.rss_mb is not None else ""
        rule_key = f"set-resources: {{{job.rule}: {{mem_mb: {mb}}}}} in your profile"
        if job.config_sized:
            now = f" (now {config_mem_mb})" if config_mem_mb is not None else ""
            fix = f"raise resources.mem_mb{now} in the config to {mb}, or this rule's alone with {rule_key}"
        else:
            fix = f"give it more with {rule_key} (or default-resources: mem_mb for every such rule)"
        return (f"job {job.rule} used more memory than it declared: {self.measure} {self.used_mb:.0f} MB > mem_mb "
                f"{job.mem_mb:.0f} ({rss}{job.benchmark}); on a cluster it may be killed for memory: {fix}")


def _number(text: str | None) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):  # "NA": the job ended before the first sample
        return None
    return value if math.isfinite(value) else None


def read_benchmark(path: str | os.PathLike) -> dict[str, float | None]:
    """``max_rss`` and ``max_pss`` (MB) of a Snakemake benchmark TSV, the largest over its rows (repeats); None
    where it has no figure ("NA") or no row."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    out: dict[str, float | None] = {}
    for key in ("max_rss", "max_pss"):
        values = [v for v in (_number(row.get(key)) for row in rows) if v is not None]
        out[key] = max(values) if values else None
    return out


def overruns(jobs: Iterable[DeclaredJob], since: float | None = None) -> list[Overrun]:
    """The jobs whose benchmark's max_pss (max_rss where it has none: see the module docstring) exceeds the mem_mb
    they declared; with ``since`` (a time.time()), only benchmark files written since then (this run's). A job
    without a declaration, a benchmark file or a figure in it is skipped."""
    found = []
    for job in jobs:
        job = DeclaredJob(*job)
        path = Path(job.benchmark)
        if job.mem_mb is None or not path.is_file() or (since is not None and path.stat().st_mtime < since):
            continue
        try:
            figures = read_benchmark(path)
        except (OSError, csv.Error, UnicodeDecodeError):
            continue  # a half-written or foreign file: not worth failing a finished run for
        measure = "max_pss" if figures["max_pss"] else "max_rss"  # PSS 0 or NA: not measured on this system
        used = figures[measure]
        if used is not None and used > float(job.mem_mb):
            found.append(Overrun(job, measure, used, figures["max_rss"]))
    return found
