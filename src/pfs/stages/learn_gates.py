"""The learn_gates stage (and the random-gates ablation's random_gates): an expanded network's gates -> gates.pt.

The workflow scripts learn_gates.py and random_gates.py call these; nothing here knows about Snakemake."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import TextIO

import torch

from pfs.core import io
from pfs.core.chance import above_chance
from pfs.core.numerics import fingerprint
from pfs.data.datasets import gate_learning_sets, make_loader, num_classes_of
from pfs.data.settings import DataSettings
from pfs.method.gates import GateConfig, learn_gates, random_gates, target_missed_advice
from pfs.models import build_model, default_widths
from pfs.stages.experiment import Experiment, settings_from

log = logging.getLogger(__name__)


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
        "settings": dataclasses.asdict(cfg), "numerics": fingerprint(str(device)),
    })


def stage_random_gates(exp: Experiment, num_classes: int, out_gates: str) -> None:
    """The random-gates ablation's gates.pt: values drawn uniformly at random (pfs.method.gates.random_gates, seeded by
    the experiment's seed) for every channel of the expanded network, in the format of learned gates, so the same
    pruning (stage_prune) turns them into a random channel configuration at each MACs ratio."""
    widths = default_widths(exp.arch, exp.width)
    io.save_artifact(out_gates, "pfs.gates", {
        "arch": exp.arch, "dataset": exp.dataset, "expansion": exp.width, "multiplier": exp.multiplier,
        "sparsity": None, "seed": exp.seed, "widths": widths, "gates": random_gates(widths, exp.seed),
        "num_classes": num_classes, "method": "random", "numerics": fingerprint(),
    })
    log.info("random gates for %s e%d m%g (seed %d): %d channels", exp.arch, exp.width, exp.multiplier, exp.seed,
             sum(widths))
