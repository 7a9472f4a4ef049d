"""The prune stages (prune, prune_random, prune_uniform): gates.pt (or a uniform factor) -> channels.yaml, the
widths of the pruned network at a MACs reduction."""

from __future__ import annotations

import logging

import torch

from pfs.core import io
from pfs.core.catalog import dataset_info
from pfs.core.numerics import fingerprint
from pfs.method.macs import network_cost
from pfs.method.prune import PruneConfig, PruneResult, in_units, prune_to_macs, uniform_to_macs
from pfs.models import default_widths, get_spec
from pfs.stages.artifacts import channels_doc, load_gates
from pfs.stages.experiment import Experiment, settings_from

log = logging.getLogger(__name__)


def prune_scores(exp: Experiment, scores: list[torch.Tensor], classes: int, ratio: float, cfg: PruneConfig,
                  method: str, **extra) -> tuple[PruneResult, dict]:
    """The global MACs search (pfs.method.prune.prune_to_macs) over per-channel ``scores`` of the network at ``exp``'s
    expansion, and the channels.yaml document of its widths (``extra``: the method's own fields)."""
    size = dataset_info(exp.dataset).image_size
    base = network_cost(exp.arch, size, classes)  # the unexpanded standard network
    m = exp.multiplier
    full = network_cost(exp.arch, size, classes, expansion=exp.width, multiplier=m)

    def macs_of(widths: list[int]) -> int:
        return network_cost(exp.arch, size, classes, widths, exp.width, m)["macs"]

    # in_units: a library network's grouped conv loses whole conv-groups; every other group single channels. The
    # seed breaks ties between equal scores (clamped gates sit at exactly 0 or 1)
    result = in_units(prune_to_macs, scores, list(get_spec(exp.arch).units), macs_of, cfg, ratio, base["macs"],
                      seed=exp.seed)
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
    result, doc = prune_scores(exp, gates, classes, ratio, cfg, method, **gate_report, gates_file=str(gates_path),
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


def stage_prune_uniform(exp: Experiment, ratio: float, hp: dict, out_channels: str, num_classes: int) -> dict:
    """The uniform-width baseline's channels.yaml: every prunable group of the standard network shrunk by one
    factor (pfs.method.prune.uniform_to_macs) to the same MACs reduction as the gate-pruned networks."""
    cfg = settings_from(PruneConfig, hp, "prune")
    size = dataset_info(exp.dataset).image_size
    base = network_cost(exp.arch, size, num_classes, multiplier=exp.multiplier)
    result = in_units(uniform_to_macs, default_widths(exp.arch, exp.width), list(get_spec(exp.arch).units),
                      lambda w: network_cost(exp.arch, size, num_classes, w, exp.width, exp.multiplier)["macs"], cfg,
                      ratio, base["macs"])
    pruned = network_cost(exp.arch, size, num_classes, result.widths, exp.width, exp.multiplier)
    doc = channels_doc(exp, "uniform", num_classes, result.widths, ratio, result.achieved_ratio, pruned, base, cfg,
                       width_factor=result.threshold, numerics=fingerprint())
    io.write_yaml(out_channels, doc)
    log.info("uniform %s at factor %.4f: %s, MACs %d (reduction %.4f)", exp.arch, result.threshold, result.widths,
             pruned["macs"], result.achieved_ratio)
    return doc
