"""One training job as a typed value: what a training rule asks for, passed as JSON to torchrun's processes, and
run by ``run_job`` (in this process, or on every rank). A job names its network (dataset, arch, widths from a
channels.yaml or none for the standard network), its schedule and seed, where to read data and write results. A
fine-tuning job (the classic baselines') also names the pruned.pt whose weights it starts from instead of a random
init; network slimming's sparsity training (schedule sparse) is the standard network trained with its BN penalty.

    rule train_* -> workflow_scripts/train.py -> pfs.stages.launch.launch(TrainJob) -> run_job -> pfs.training.loop
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, TextIO

from pfs.core.errors import PfsError

OUTPUTS = ("model", "metrics", "history")
METHODS = ("full", "pfs", "uniform", "random", "l1", "slim")
FINETUNE = "finetune"  # the schedule of a job that starts from pruned weights: the finetune section's epochs, as is
SPARSE = "sparse"  # network slimming's sparsity training: the standard network, train's epochs, the BN penalty on


@dataclass(frozen=True)
class TrainJob:
    """A training job: the experiment's identity, its settings, and where its files go."""

    dataset: str
    arch: str
    seed: int
    outputs: dict[str, str]  # model, metrics, history
    method: str = "full"  # full (standard widths), pfs (learned gates), uniform, random (random gates), l1, slim
    # scratch_e, scratch_b; finetune (the finetune epochs as they are) exactly with init; sparse (slim's pretraining)
    schedule: str = "scratch_e"
    ratio: float = 0.0  # the MACs reduction asked of the pruned network (0: unpruned)
    expansion: int | None = None  # None: the arch's standard width
    multiplier: float = 1.0
    sparsity: float | None = None  # r of the gates that chose the widths (pfs only)
    channels: str | None = None  # the channels.yaml with the widths; None: the standard network
    init: str | None = None  # a pruned.pt (prune_l1, prune_slim) whose weights start the training; None: random init
    train: dict[str, Any] = field(default_factory=dict)  # the train config section (TrainConfig's defaults else)
    data: dict[str, Any] = field(default_factory=dict)  # DataSettings fields but the name (root, num_workers, ...)
    device: str = "auto"
    checkpoint_dir: str = "checkpoints"
    gpus: int = 0  # GPUs the job was given: under torchrun one process each, and it stops if it sees fewer
    log: str | None = None  # the job log (under torchrun the launcher appends the ranks' output to it)

    def __post_init__(self) -> None:
        if sorted(self.outputs) != sorted(OUTPUTS):
            raise PfsError(f"a training job's outputs are {', '.join(OUTPUTS)}; got {', '.join(sorted(self.outputs))}")
        if self.method not in METHODS:
            raise PfsError(f"training job method {self.method!r} unknown; known: {', '.join(METHODS)}")
        if self.schedule == SPARSE and self.method != "slim":
            raise PfsError(f"schedule {SPARSE} (network slimming's sparsity training) is method slim's, not "
                           f"{self.method}'s")
        standard = self.method == "full" or self.schedule == SPARSE  # the standard network, at its full widths
        if standard != (self.channels is None):
            raise PfsError(f"a training job of method {self.method}"
                           + (f" and schedule {SPARSE}" if self.schedule == SPARSE else "") + " needs "
                           + ("no channels file (it trains the standard network)" if standard
                              else "a channels file (its pruned widths)"))
        if (float(self.train.get("bn_sparsity", 0)) > 0) != (self.schedule == SPARSE):
            raise PfsError(f"the BN sparsity penalty is on (bn_sparsity > 0) exactly in a job of schedule {SPARSE}; "
                           f"got schedule {self.schedule} with bn_sparsity {self.train.get('bn_sparsity', 0)}")
        if (self.init is not None) != (self.schedule == FINETUNE):
            raise PfsError(f"a training job starts from pruned weights (init) exactly when its schedule is {FINETUNE}; "
                           f"got schedule {self.schedule} with init {self.init!r}")
        if self.init is not None and self.channels is None:
            raise PfsError("a fine-tuning job (init) needs the channels file its pruned weights were cut to")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | dict) -> TrainJob:
        """A job from its JSON (text or parsed), refusing unknown and missing keys by name."""
        try:
            fields = json.loads(text) if isinstance(text, str) else dict(text)
        except ValueError as exc:
            raise PfsError(f"a training job must be JSON: {exc}") from None
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(fields) - known)
        missing = sorted(f.name for f in dataclasses.fields(cls)
                         if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
                         and f.name not in fields)
        if unknown or missing:
            raise PfsError(f"training job: unknown keys {unknown}, missing keys {missing}; known: {sorted(known)}")
        return cls(**fields)

    @classmethod
    def from_rule(cls, inputs, outputs, params, wildcards, config: dict, gpus: int, log: str | None) -> TrainJob:
        """The job of a training rule: identity from the wildcards, settings from its ``hp`` param, the method from
        its ``method`` param (default: pfs with a channels input, full without), locations from the config. A
        ``pruned`` input (prune_l1's or prune_slim's pruned.pt) makes it a fine-tuning job from those weights; its
        schedule is the ``schedule`` wildcard, else a ``schedule`` param (train_sparse's: sparse), else finetune."""
        wc, inputs, params = dict(wildcards), dict(inputs), dict(params)
        init = str(inputs["pruned"]) if "pruned" in inputs else None
        return cls(
            dataset=wc["dataset"], arch=wc["arch"], seed=int(wc.get("seed", 0)),
            outputs={k: str(v) for k, v in dict(outputs).items()},
            method=params.get("method", "pfs" if "channels" in inputs else "full"),
            schedule=wc.get("schedule") or params.get("schedule") or (FINETUNE if init else wc["schedule"]),
            ratio=float(wc.get("ratio", 0.0)),
            expansion=int(wc["expansion"]) if "expansion" in wc else None,
            multiplier=float(wc.get("multiplier", 1)),
            sparsity=float(wc["sparsity"]) if "sparsity" in wc else None,
            channels=str(inputs["channels"]) if "channels" in inputs else None, init=init,
            train=dict(params["hp"]), data=data_fields(config, inputs), device=config["device"],
            checkpoint_dir=config["checkpoint_dir"], gpus=gpus, log=log,
        )

    @property
    def needs_torchrun(self) -> bool:
        """ImageNet always trains under torchrun (one process per GPU); other datasets only on several GPUs."""
        return self.dataset == "imagenet" or self.gpus > 1


def data_fields(config: dict, inputs=None) -> dict:
    """Where a job reads its dataset (DataSettings fields but the name): the config's location settings, and the
    ImageNet index tables (prepare_imagenet_list's outputs) among a rule's ``inputs``."""
    fields = {k: config["dataset"][k] for k in ("root", "download", "check_md5", "num_workers")}
    inputs = dict(inputs or {})
    if "train_list" in inputs:
        fields |= {"train_list": str(inputs["train_list"]), "val_list": str(inputs["val_list"])}
    return fields


@dataclass
class _Run:
    """What ``run_job`` builds before training: the settings, network and data of one job."""

    cfg: Any  # pfs.training.loop.TrainConfig
    epochs: int
    device: Any  # torch.device
    model: Any
    cost: dict[str, int]  # num_classes, and macs and params counted before training (a forward pass)
    loaders: tuple  # (train, test)
    identity: dict[str, Any]  # what names the run in model.pt and metrics.json (and keys its checkpoint)
    extra: dict[str, Any]  # metrics carried from the channels file (achieved ratio, gate-learning report)
    checkpoint: Any  # pathlib.Path of the resume checkpoint
    key: str


def run_job(job: TrainJob, dist=None, device=None, stream: TextIO | None = None) -> dict:
    """Train ``job``'s network from a fresh random init, or from ``job.init``'s pruned weights (fine-tuning), with
    pfs.training.loop.train_from_scratch; rank 0 writes model.pt, metrics.json and history.csv. Returns the metrics.

    Under torchrun (``dist``) every rank trains its shard with batch_size / world_size images per step (the
    config's batch size and lr are global)."""
    from pfs.training.distributed import Dist
    from pfs.training.loop import train_from_scratch

    dist = dist or Dist()
    run = _prepare(job, dist, device)
    result = train_from_scratch(run.model, *run.loaders, run.cfg, run.epochs, job.seed, run.device, run.checkpoint,
                                run.key, stream, dist)
    return _finish(job, run, result, dist)


def checkpoint_key(identity: dict, widths, cfg, epochs: int, out: str, world_size: int,
                   init_sha256: str | None = None) -> str:
    """The key of a training job's resume checkpoint: a hash of everything that makes its training what it is
    (identity, widths, settings, epochs, output, world size, the weights a fine-tuning starts from). A checkpoint
    of another key is refused (pfs.training.checkpoint.load_checkpoint)."""
    from pfs.core import io

    settings = dataclasses.asdict(cfg)
    if not settings["bn_sparsity"]:  # without the penalty, the key it had before the setting existed: a checkpoint
        del settings["bn_sparsity"]  # of a job started by an older pfs still resumes
    return io.stable_hash({**identity, "widths": widths, "train": settings, "epochs": epochs, "out": out,
                           "world_size": world_size, **({"init_sha256": init_sha256} if init_sha256 else {})})


def _prepare(job: TrainJob, dist, device) -> _Run:
    """Settings, data, the network at the job's widths (seeded), and the key of its resume checkpoint."""
    from pathlib import Path

    import torch

    from pfs.core.catalog import dataset_info
    from pfs.data.datasets import num_classes_of, training_sets
    from pfs.data.settings import DataSettings
    from pfs.method.macs import count_macs, count_params
    from pfs.models import build_model, get_spec
    from pfs.stages.artifacts import GATE_REPORT, load_channels
    from pfs.stages.experiment import Experiment, settings_from
    from pfs.training.distributed import resolve_device
    from pfs.training.loaders import training_loaders
    from pfs.training.loop import TrainConfig, budget_epochs

    cfg = settings_from(TrainConfig, job.train, "train")
    if cfg.batch_size % dist.world_size:
        raise PfsError(f"train.batch_size={cfg.batch_size} is the global batch: it must divide evenly over "
                       f"{dist.world_size} processes")
    data, exp = DataSettings(job.dataset, **job.data), Experiment(job.dataset, job.arch, job.seed, job.expansion,
                                                                  job.multiplier)
    classes, widths, extra = num_classes_of(data), None, {"achieved_ratio": 0.0}
    if job.channels:
        doc = load_channels(job.channels, exp, classes)
        widths = doc["widths"]
        extra = {"achieved_ratio": doc["achieved_ratio"], **{k: doc[k] for k in GATE_REPORT if k in doc}}
    if job.sparsity is not None:
        extra["sparsity"] = job.sparsity
    min_scale = get_spec(job.arch).min_crop_scale  # ImageNet random-resized-crop area (unused by other datasets)
    train_set, test_set = training_sets(data, min_scale, cfg.color_augment)
    if job.dataset == "imagenet":
        extra["min_crop_scale"] = min_scale
    torch.manual_seed(job.seed)
    model = build_model(job.arch, widths=widths, expansion=exp.width, num_classes=classes, multiplier=job.multiplier)
    if job.init:  # fine-tuning: the pruned weights replace the random init (and a new pruned.pt a stale checkpoint)
        extra["init_sha256"] = _load_init(job, exp, model, classes, doc.get("model_sha256"))
    info = dataset_info(job.dataset)
    cost = {"num_classes": classes, "macs": count_macs(model, info.image_size), "params": count_params(model)}
    device = device if device is not None else resolve_device(job.device)
    epochs = cfg.epochs if job.schedule in (FINETUNE, SPARSE) else budget_epochs(cfg.epochs, job.schedule, job.ratio,
                                                                                cfg.scratch_b_epochs)
    identity = {"dataset": job.dataset, "arch": job.arch, "method": job.method, "expansion": exp.width,
                "multiplier": job.multiplier, "ratio": job.ratio, "schedule": job.schedule, "seed": job.seed}
    key = checkpoint_key(identity, model.widths, cfg, epochs, job.outputs["model"], dist.world_size,
                         extra.get("init_sha256") if job.init else None)
    loaders = training_loaders(train_set, test_set, info, cfg, data, device, dist, job.seed)
    return _Run(cfg, epochs, device, model, cost, loaders, identity, extra, Path(job.checkpoint_dir) / f"{key}.pt",
                key)


def _load_init(job: TrainJob, exp, model, classes: int, model_sha256: str | None) -> str:
    """Load ``job.init``'s pruned weights into ``model`` (built at the channels file's widths), refusing a file of
    another network in one line; returns its sha256 (part of the resume checkpoint's key)."""
    from pfs.core import io
    from pfs.stages.artifacts import load_pruned

    state = load_pruned(job.init, exp, model.widths, classes, model_sha256)  # the hash its channels file records
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # keys or shapes of another network; torch's message spans many lines
        reason = " ".join(str(exc).split())[:300]
        raise PfsError(f"{job.init}: its weights do not fit {job.arch} at widths {model.widths} ({reason}); "
                       f"delete it and rerun prune_{job.method}") from None
    return io.sha256_file(job.init)


def _finish(job: TrainJob, run: _Run, result, dist) -> dict:
    """The job's metrics; on rank 0, history.csv, model.pt and metrics.json written and the checkpoint removed."""
    from pfs.core import io
    from pfs.core.numerics import fingerprint
    from pfs.core.provenance import provenance
    from pfs.training.checkpoint import remove_checkpoint

    model = run.model
    metrics = {**run.identity, **run.extra, "widths": model.widths, **run.cost, **result.metrics,
               "device": str(run.device), "world_size": dist.world_size,
               "settings": dataclasses.asdict(run.cfg), "versions": provenance(),
               "numerics": fingerprint(str(run.device))}
    if dist.is_main:
        io.write_csv(job.outputs["history"], result.history)
        io.save_artifact(job.outputs["model"], "pfs.model", {
            **run.identity, "widths": model.widths, "num_classes": run.cost["num_classes"],
            "state_dict": {k: v.cpu() for k, v in model.state_dict().items()}, "metrics": result.metrics,
            "numerics": metrics["numerics"],
        })
        io.write_json_artifact(job.outputs["metrics"], "pfs.metrics", metrics)
        remove_checkpoint(run.checkpoint)
    return metrics
