"""The pipeline's stages as plain functions: read inputs, check them, call the algorithm, write outputs.

Workflow scripts and ``python -m pfs`` call these; nothing here knows about Snakemake.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.metadata
import importlib.util
import logging
import platform
import subprocess
from pathlib import Path
from typing import Any, TextIO

import torch

import pfs
from pfs import io
from pfs.data import (
    DataSettings,
    dataset_info,
    gate_learning_sets,
    make_loader,
    num_classes_of,
)
from pfs.distributed import Dist
from pfs.errors import PfsError
from pfs.gates import GateConfig, above_chance, learn_gates, random_gates, target_missed_advice
from pfs.macs import network_cost
from pfs.models import build_model, default_widths, get_spec
from pfs.prune import PruneConfig, prune_to_macs, uniform_to_macs
from pfs.train import TrainConfig

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Experiment:
    """The identity of one run (it comes from the result path's wildcards)."""

    dataset: str
    arch: str
    seed: int
    expansion: int | None = None  # None: the arch's standard width
    multiplier: float = 1.0

    def __post_init__(self) -> None:
        try:
            spec = get_spec(self.arch)
        except ValueError as exc:  # an unknown arch (the message names the known ones) is the user's to fix
            raise PfsError(str(exc)) from None
        info = dataset_info(self.dataset)
        if self.expansion is not None and self.expansion < 1:
            raise PfsError(f"expansion must be a positive integer, got {self.expansion}")
        if spec.domain == "imagenet" and self.dataset != "imagenet":
            raise PfsError(f"arch {self.arch} is an ImageNet network; dataset {self.dataset} needs a CIFAR arch")
        if spec.domain == "cifar" and info.image_size > 64:
            raise PfsError(f"arch {self.arch} is a CIFAR network; use an ImageNet arch for {self.dataset}")

    @property
    def width(self) -> int:
        return get_spec(self.arch).base_expansion if self.expansion is None else self.expansion


def settings_from(cls, mapping: dict[str, Any], section: str, **extra):
    """Build a frozen settings dataclass from a config section, refusing unknown keys by name."""
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in mapping.items():
        name = "lambda_" if key == "lambda" else key
        if name not in names:
            raise PfsError(f"unknown key {section}.{key}; known: {', '.join(sorted(names - set(extra)))}")
        kwargs[name] = tuple(value) if isinstance(value, list) else value
    return cls(**kwargs, **extra)


def _version_of(package: str) -> str:
    """``package.__version__`` without importing the package (torchvision alone costs a job ~2 s of start-up): the
    literal of its version.py where it has one (torchvision's carries the build tag, e.g. +cu130, that its wheel's
    metadata lacks), else the installed distribution's version."""
    spec = importlib.util.find_spec(package)  # locates the package without importing it
    for folder in (spec.submodule_search_locations or []) if spec else []:
        try:
            tree = ast.parse((Path(folder) / "version.py").read_text())
        except (OSError, SyntaxError, ValueError):  # none (snakemake has none) or unreadable: ask the metadata
            continue
        for node in tree.body:
            if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
                    and [getattr(t, "id", None) for t in node.targets] == ["__version__"]):
                return str(node.value.value)
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def provenance() -> dict[str, str]:
    """Versions and git commit, recorded in every metrics file."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                                cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return {"pfs": pfs.__version__, "torch": torch.__version__, "torchvision": _version_of("torchvision"),
            "snakemake": _version_of("snakemake"), "python": platform.python_version(), "git_commit": commit}


def stage_learn_gates(exp: Experiment, sparsity: float, hp: dict, data: DataSettings, split: dict,
                      device: torch.device, out_gates: str, out_history: str, stream: TextIO | None = None) -> None:
    cfg = settings_from(GateConfig, hp, "gates", sparsity=sparsity)
    classes = num_classes_of(data)
    train_set, val_set, val_idx = gate_learning_sets(data, split.get("val_size", 0), split["split_seed"],
                                                     split.get("val_per_class", 50))
    torch.manual_seed(exp.seed)
    model = build_model(exp.arch, expansion=exp.width, num_classes=classes, multiplier=exp.multiplier)
    result = learn_gates(
        model,
        make_loader(train_set, cfg.batch_size, True, data.num_workers, device),
        make_loader(val_set, cfg.eval_batch_size, False, data.num_workers, device),
        cfg, device, stream,
    )
    report = result.report()
    run = str(Path(out_gates).parent)
    if not result.target_met:
        log.warning("%s", target_missed_advice(run, sparsity, report))
    if not above_chance(report["val_top1"], len(val_set), classes):
        log.warning("%s: the kept gates' held-out top-1 %.4f is not clearly above chance (1/%d on %d images): the "
                    "gates barely steer the random network; raise gates.epochs or gates.lr", run, report["val_top1"],
                    classes, len(val_set))
    io.write_csv(out_history, result.history)
    io.save_artifact(out_gates, "pfs.gates", {
        "arch": exp.arch, "dataset": exp.dataset, "expansion": exp.width, "multiplier": exp.multiplier,
        "sparsity": sparsity, "seed": exp.seed, "widths": model.widths, "gates": result.gates,
        "num_classes": classes, "selected": result.selected, "selected_epoch": result.selected_epoch,
        **report, "val_indices": val_idx, "split": dict(split),
        "settings": dataclasses.asdict(cfg),
    })


def stage_random_gates(exp: Experiment, num_classes: int, out_gates: str) -> None:
    """The random-gates ablation's gates.pt: values drawn uniformly at random (pfs.gates.random_gates, seeded by
    the experiment's seed) for every channel of the expanded network, in the format of learned gates, so the same
    pruning (stage_prune) turns them into a random channel configuration at each MACs ratio."""
    widths = default_widths(exp.arch, exp.width)
    io.save_artifact(out_gates, "pfs.gates", {
        "arch": exp.arch, "dataset": exp.dataset, "expansion": exp.width, "multiplier": exp.multiplier,
        "sparsity": None, "seed": exp.seed, "widths": widths, "gates": random_gates(widths, exp.seed),
        "num_classes": num_classes, "method": "random",
    })
    log.info("random gates for %s e%d m%g (seed %d): %d channels", exp.arch, exp.width, exp.multiplier, exp.seed,
             sum(widths))


def _identity_fields(exp: Experiment) -> tuple[tuple[str, object], ...]:
    return ("arch", exp.arch), ("dataset", exp.dataset), ("expansion", exp.width), ("multiplier", exp.multiplier)


GATE_REPORT = ("target_met", "gates_nonzero_fraction")  # what channels.yaml, metrics.json and the tables carry


def _load_gates(path: str, exp: Experiment) -> tuple[list[torch.Tensor], int, str, dict]:
    """The gates of ``path`` (checked against ``exp``), the number of classes they were learned on, their method
    (pfs: learned; random: the ablation's random draw), and, for learned gates, whether gate learning met its
    target and the kept gates' non-zero fraction (GATE_REPORT)."""
    data = io.load_artifact(path, "pfs.gates")
    for key, want in _identity_fields(exp):
        io.check_field(path, data, key, want)
    want = default_widths(exp.arch, exp.width)
    got = [int(g.numel()) for g in data["gates"]]
    if got != want:
        raise PfsError(f"{path}: gate sizes {got} do not match {exp.arch} at expansion {exp.width} ({want})")
    method = str(data.get("method", "pfs"))
    report = {"target_met": data.get("target_met"), "gates_nonzero_fraction": data.get("nonzero_fraction")}
    return (list(data["gates"]), int(data.get("num_classes", dataset_info(exp.dataset).num_classes)), method,
            report if method == "pfs" else {})


def stage_prune(exp: Experiment, gates_path: str, ratio: float, hp: dict, out_channels: str) -> dict:
    cfg = settings_from(PruneConfig, hp, "prune")
    gates, classes, method, gate_report = _load_gates(gates_path, exp)
    size = dataset_info(exp.dataset).image_size
    base = network_cost(exp.arch, size, classes)  # the unexpanded standard network
    m = exp.multiplier
    full = network_cost(exp.arch, size, classes, expansion=exp.width, multiplier=m)
    result = prune_to_macs(
        gates, ratio, base["macs"], lambda w: network_cost(exp.arch, size, classes, w, exp.width, m)["macs"], cfg,
        seed=exp.seed,  # breaks ties between equal gates (clamped ones sit at exactly 0 or 1)
    )
    pruned = network_cost(exp.arch, size, classes, result.widths, exp.width, m)
    doc = {
        "kind": "pfs.channels", "format_version": io.FORMAT_VERSION, "method": method,
        "arch": exp.arch, "dataset": exp.dataset, "expansion": exp.width, "multiplier": exp.multiplier,
        "num_classes": classes,
        "widths": result.widths, "full_widths": default_widths(exp.arch, exp.width),
        "target_ratio": ratio, "achieved_ratio": round(result.achieved_ratio, 6),
        "macs": pruned["macs"], "params": pruned["params"],
        "macs_baseline": base["macs"], "params_baseline": base["params"],
        "macs_expanded": full["macs"], "params_expanded": full["params"],
        "kept_channels": result.kept_channels, "total_channels": result.total_channels,
        "threshold": result.threshold, "tied_at_threshold": result.tied_at_threshold,
        "kept_by_tie": result.kept_by_tie, "out_of_order": result.out_of_order, "min_width": cfg.min_width,
        "round_to": cfg.round_to, "tolerance": cfg.tolerance, **gate_report,
        "gates_file": str(gates_path), "gates_sha256": io.sha256_file(gates_path),
    }
    io.write_yaml(out_channels, doc)
    if gate_report.get("target_met") is False:
        log.warning("%s: pruned from gates whose learning did not reach its target (non-zero fraction %.4f > r; "
                    "see the learn_gates log): these widths come from the fallback gates", out_channels,
                    gate_report["gates_nonzero_fraction"])
    if result.kept_by_tie > 0.1 * result.kept_channels:
        log.warning("%s: a tie decided %d of the %d kept channels (%d channels score exactly the threshold %g, seed "
                    "%d chose which to keep); the gates do not separate these channels, so those widths are a "
                    "seeded random choice: learn the gates longer or with a lower sparsity, or accept it",
                    out_channels, result.kept_by_tie, result.kept_channels, result.tied_at_threshold,
                    result.threshold, exp.seed)
    log.info("pruned %s to %s: MACs %d -> %d (reduction %.4f vs baseline %d)", exp.arch, result.widths,
             full["macs"], pruned["macs"], result.achieved_ratio, base["macs"])
    return doc


def stage_prune_uniform(exp: Experiment, ratio: float, hp: dict, out_channels: str, num_classes: int) -> dict:
    """The uniform-width baseline's channels.yaml: every prunable group of the standard network shrunk by one
    factor (pfs.prune.uniform_to_macs) to the same MACs reduction as the gate-pruned networks."""
    cfg = settings_from(PruneConfig, hp, "prune")
    size = dataset_info(exp.dataset).image_size
    base = network_cost(exp.arch, size, num_classes, multiplier=exp.multiplier)
    result = uniform_to_macs(default_widths(exp.arch, exp.width), ratio, base["macs"],
                             lambda w: network_cost(exp.arch, size, num_classes, w, exp.width, exp.multiplier)["macs"],
                             cfg)
    pruned = network_cost(exp.arch, size, num_classes, result.widths, exp.width, exp.multiplier)
    doc = {
        "kind": "pfs.channels", "format_version": io.FORMAT_VERSION, "method": "uniform",
        "arch": exp.arch, "dataset": exp.dataset, "expansion": exp.width, "multiplier": exp.multiplier,
        "num_classes": num_classes, "widths": result.widths, "full_widths": default_widths(exp.arch, exp.width),
        "target_ratio": ratio, "achieved_ratio": round(result.achieved_ratio, 6), "width_factor": result.threshold,
        "macs": pruned["macs"], "params": pruned["params"], "macs_baseline": base["macs"],
        "params_baseline": base["params"], "min_width": cfg.min_width, "round_to": cfg.round_to,
        "tolerance": cfg.tolerance,
    }
    io.write_yaml(out_channels, doc)
    log.info("uniform %s at factor %.4f: %s, MACs %d (reduction %.4f)", exp.arch, result.threshold, result.widths,
             pruned["macs"], result.achieved_ratio)
    return doc


def load_channels(path: str, exp: Experiment, num_classes: int | None = None) -> dict:
    """Read a channels.yaml and refuse it unless it fits ``exp`` (arch, dataset, expansion, multiplier, sane
    widths) and, when given, the dataset's ``num_classes``."""
    doc = io.load_yaml_artifact(path, "pfs.channels")
    for key, want in _identity_fields(exp):
        io.check_field(path, doc, key, want)
    classes = int(doc.get("num_classes", dataset_info(exp.dataset).num_classes))
    if num_classes is not None and classes != num_classes:
        raise PfsError(f"{path} was pruned for {classes} classes but the dataset has {num_classes} (the ImageNet "
                       "index changed?); rerun learn_gates and prune (delete their outputs)")
    full = default_widths(exp.arch, exp.width)
    widths = doc.get("widths")
    if not isinstance(widths, list) or len(widths) != len(full) or not all(isinstance(w, int) for w in widths):
        raise PfsError(f"{path}: widths must be a list of {len(full)} integers for {exp.arch}, got {widths!r}")
    bad = [(i, w, f) for i, (w, f) in enumerate(zip(widths, full, strict=True)) if not 1 <= w <= f]
    if bad:
        i, w, f = bad[0]
        raise PfsError(f"{path}: width {w} of group {i} is outside 1..{f} (the expanded network's width); "
                       "rerun prune instead of editing the file")
    size = dataset_info(exp.dataset).image_size
    macs = network_cost(exp.arch, size, classes, widths, exp.width, exp.multiplier)["macs"]
    if macs != doc.get("macs"):
        raise PfsError(f"{path} claims {doc.get('macs')} MACs but its widths give {macs}; the file was edited or "
                       "is stale: rerun prune (delete the file) instead of editing it")
    return doc


def uses_device_data(mode: str, dataset: str, device: torch.device) -> bool:
    """Whether training holds the dataset on the device (pfs.device_data): ``auto`` on CUDA for in-memory
    datasets and for the tiny embedded digits everywhere (on CPU too: no DataLoader, no torchvision import),
    ``always`` wherever possible (CIFAR on CPU too), ``never`` not at all."""
    if mode == "always" and dataset == "imagenet":
        raise PfsError("train.device_data: always needs an in-memory dataset; imagenet is read from files (use auto)")
    in_memory = dataset != "imagenet"
    return mode == "always" or (mode == "auto" and in_memory and (device.type == "cuda" or dataset == "digits"))


def training_loaders(train_set, test_set, info, cfg: TrainConfig, data: DataSettings, device: torch.device,
                     dist: Dist, seed: int):
    """(train, test) batch iterables: on-device batches (pfs.device_data) or DataLoaders, sharded under torchrun.
    ``train.batch_size`` is global: each of the ``world_size`` processes takes its share; the shards' order
    follows the run's ``seed``."""
    batch = cfg.batch_size // dist.world_size
    shard = {"rank": dist.rank, "world_size": dist.world_size}
    if uses_device_data(cfg.device_data, data.name, device):
        from pfs.device_data import DeviceBatches

        channels_last = cfg.channels_last and device.type == "cuda"
        return tuple(DeviceBatches(ds.images, ds.labels, info, train, size, device, channels_last=channels_last,
                                   **shard)
                     for ds, train, size in ((train_set, True, batch), (test_set, False, cfg.eval_batch_size)))
    return (make_loader(train_set, batch, True, data.num_workers, device, **shard, seed=seed),
            make_loader(test_set, cfg.eval_batch_size, False, data.num_workers, device, **shard))
