"""The pipeline's stages as plain functions: read inputs, check them, call the algorithm, write outputs.

Workflow scripts and ``python -m pfs`` call these; nothing here knows about Snakemake.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import torch

from pfs import io
from pfs.artifacts import PRUNED_KIND, channels_doc, load_gates, load_standard_model
from pfs.catalog import dataset_info
from pfs.chance import above_chance
from pfs.data import DataSettings, gate_learning_sets, make_loader, num_classes_of
from pfs.experiment import Experiment, settings_from
from pfs.gates import GateConfig, learn_gates, random_gates, target_missed_advice
from pfs.l1 import RANKING as L1_RANKING
from pfs.l1 import ChannelMap, channel_map, kept_channels, l1_scores, prune_state
from pfs.macs import network_cost
from pfs.models import build_model, default_widths
from pfs.numerics import fingerprint
from pfs.prune import PruneConfig, PruneResult, prune_to_macs, uniform_to_macs
from pfs.slim import RANKING as SLIM_RANKING
from pfs.slim import bn_scale_scores, group_batchnorms

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
    """The random-gates ablation's gates.pt: values drawn uniformly at random (pfs.gates.random_gates, seeded by
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


def _prune_scores(exp: Experiment, scores: list[torch.Tensor], classes: int, ratio: float, cfg: PruneConfig,
                  method: str, **extra) -> tuple[PruneResult, dict]:
    """The global MACs search (pfs.prune.prune_to_macs) over per-channel ``scores`` of the network at ``exp``'s
    expansion, and the channels.yaml document of its widths (``extra``: the method's own fields)."""
    size = dataset_info(exp.dataset).image_size
    base = network_cost(exp.arch, size, classes)  # the unexpanded standard network
    m = exp.multiplier
    full = network_cost(exp.arch, size, classes, expansion=exp.width, multiplier=m)
    result = prune_to_macs(
        scores, ratio, base["macs"], lambda w: network_cost(exp.arch, size, classes, w, exp.width, m)["macs"], cfg,
        seed=exp.seed,  # breaks ties between equal scores (clamped gates sit at exactly 0 or 1)
    )
    pruned = network_cost(exp.arch, size, classes, result.widths, exp.width, m)
    doc = channels_doc(
        exp, method, classes, result.widths, ratio, result.achieved_ratio, pruned, base, cfg,
        macs_expanded=full["macs"], params_expanded=full["params"],
        kept_channels=result.kept_channels, total_channels=result.total_channels,
        threshold=result.threshold, tied_at_threshold=result.tied_at_threshold,
        kept_by_tie=result.kept_by_tie, out_of_order=result.out_of_order, **extra,
    )
    log.info("pruned %s to %s (%s scores): MACs %d -> %d (reduction %.4f vs baseline %d)", exp.arch, result.widths,
             method, full["macs"], pruned["macs"], result.achieved_ratio, base["macs"])
    return result, doc


def stage_prune(exp: Experiment, gates_path: str, ratio: float, hp: dict, out_channels: str) -> dict:
    cfg = settings_from(PruneConfig, hp, "prune")
    gates, classes, method, gate_report = load_gates(gates_path, exp)
    result, doc = _prune_scores(exp, gates, classes, ratio, cfg, method, **gate_report, gates_file=str(gates_path),
                                gates_sha256=io.sha256_file(gates_path))
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
    return doc


Scorer = Callable[[dict[str, torch.Tensor], ChannelMap, list[int], int], list[torch.Tensor]]  # + num_classes


def _prune_trained(exp: Experiment, model_path: str, ratio: float, hp: dict, out_channels: str, out_pruned: str,
                   method: str, ranking: str, score: Scorer) -> dict:
    """The classic baselines' pruning: a trained standard network (``method``'s: train_full's model.pt for l1,
    train_sparse's for slim) scored per channel by ``score``, pruned to ``ratio`` by the same MACs search and prune
    settings as the gate-pruned networks; writes channels.yaml (``method``, ``ranking``) and pruned.pt, the kept
    channels' trained weights that fine-tuning starts from."""
    cfg = settings_from(PruneConfig, hp, "prune")
    state, classes, numerics = load_standard_model(model_path, exp, method)
    widths = default_widths(exp.arch, exp.width)
    cmap = channel_map(exp.arch, widths, exp.width, classes, exp.multiplier)
    scores = score(state, cmap, widths, classes)
    model_sha256 = io.sha256_file(model_path)
    result, doc = _prune_scores(exp, scores, classes, ratio, cfg, method, ranking=ranking, model_file=str(model_path),
                                model_sha256=model_sha256, numerics=numerics)
    kept = kept_channels(scores, result.widths)  # per group the top channels; the search chose only how many
    io.save_artifact(out_pruned, PRUNED_KIND, {
        "arch": exp.arch, "dataset": exp.dataset, "expansion": exp.width, "multiplier": exp.multiplier,
        "seed": exp.seed, "widths": result.widths, "num_classes": classes, "target_ratio": ratio,
        "achieved_ratio": result.achieved_ratio, "ranking": ranking, "kept": kept,
        "state_dict": prune_state(state, cmap, kept), "model_file": str(model_path), "model_sha256": model_sha256,
    })
    io.write_yaml(out_channels, doc)
    return doc


def stage_prune_l1(exp: Experiment, model_path: str, ratio: float, hp: dict, out_channels: str,
                   out_pruned: str) -> dict:
    """L1-norm filter pruning of train_full's model.pt: filter L1 norms normalised per layer (pfs.l1.l1_scores);
    channels.yaml (method l1) and pruned.pt as _prune_trained writes them."""
    return _prune_trained(exp, model_path, ratio, hp, out_channels, out_pruned, "l1", L1_RANKING,
                          lambda state, cmap, widths, _: l1_scores(state, cmap, widths))


def stage_prune_slim(exp: Experiment, model_path: str, ratio: float, hp: dict, out_channels: str,
                     out_pruned: str) -> dict:
    """Network slimming's pruning of train_sparse's model.pt (trained with the L1 penalty on BN scales): each
    channel's |gamma| ranked over the whole network (pfs.slim.bn_scale_scores); channels.yaml (method slim) and
    pruned.pt as _prune_trained writes them."""

    def score(state: dict[str, torch.Tensor], cmap: ChannelMap, widths: list[int], classes: int):
        model = build_model(exp.arch, expansion=exp.width, num_classes=classes, multiplier=exp.multiplier)
        return bn_scale_scores(state, group_batchnorms(model, cmap, len(widths)))

    return _prune_trained(exp, model_path, ratio, hp, out_channels, out_pruned, "slim", SLIM_RANKING, score)


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
    doc = channels_doc(exp, "uniform", num_classes, result.widths, ratio, result.achieved_ratio, pruned, base, cfg,
                       width_factor=result.threshold, numerics=fingerprint())
    io.write_yaml(out_channels, doc)
    log.info("uniform %s at factor %.4f: %s, MACs %d (reduction %.4f)", exp.arch, result.threshold, result.widths,
             pruned["macs"], result.achieved_ratio)
    return doc
