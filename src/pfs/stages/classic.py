"""The classic baselines' pruning stages (prune_l1, prune_slim): a trained standard network scored per channel, pruned
by the same MACs search as the gate-pruned networks -> channels.yaml and pruned.pt (the kept weights)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from pfs.core import io
from pfs.method.l1 import RANKING as L1_RANKING
from pfs.method.l1 import ChannelMap, channel_map, kept_channels, l1_scores, prune_state
from pfs.method.prune import PruneConfig
from pfs.method.slim import RANKING as SLIM_RANKING
from pfs.method.slim import bn_scale_scores, group_batchnorms
from pfs.models import build_model, default_widths, get_spec
from pfs.stages.artifacts import PRUNED_KIND, load_standard_model
from pfs.stages.experiment import Experiment, settings_from
from pfs.stages.prune import prune_scores

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
    result, doc = prune_scores(exp, scores, classes, ratio, cfg, method, ranking=ranking, model_file=str(model_path),
                                model_sha256=model_sha256, numerics=numerics)
    kept = kept_channels(scores, result.widths, list(get_spec(exp.arch).units))  # the search chose how many
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
    """L1-norm filter pruning of train_full's model.pt: filter L1 norms normalised per layer (pfs.method.l1.l1_scores);
    channels.yaml (method l1) and pruned.pt as _prune_trained writes them."""
    return _prune_trained(exp, model_path, ratio, hp, out_channels, out_pruned, "l1", L1_RANKING,
                          lambda state, cmap, widths, _: l1_scores(state, cmap, widths))


def stage_prune_slim(exp: Experiment, model_path: str, ratio: float, hp: dict, out_channels: str,
                     out_pruned: str) -> dict:
    """Network slimming's pruning of train_sparse's model.pt (trained with the L1 penalty on BN scales): each
    channel's |gamma| ranked over the whole network (pfs.method.slim.bn_scale_scores); channels.yaml (method slim) and
    pruned.pt as _prune_trained writes them."""

    def score(state: dict[str, torch.Tensor], cmap: ChannelMap, widths: list[int], classes: int):
        model = build_model(exp.arch, expansion=exp.width, num_classes=classes, multiplier=exp.multiplier)
        return bn_scale_scores(state, group_batchnorms(model, cmap, len(widths)))

    return _prune_trained(exp, model_path, ratio, hp, out_channels, out_pruned, "slim", SLIM_RANKING, score)
