"""The artifacts passed between stages: gates.pt, channels.yaml, the trained standard network's model.pt that a
classic baseline prunes (train_full's for L1, train_sparse's for slimming) and pruned.pt (its pruned weights), read
with their identity checks, and the channels.yaml document built in one place."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import torch

from pfs.core import io
from pfs.core.catalog import dataset_info, is_library_arch
from pfs.core.chance import near_chance
from pfs.core.errors import PfsError
from pfs.method.macs import network_cost
from pfs.models import default_widths
from pfs.stages.experiment import Experiment

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from pfs.method.prune import PruneConfig

# what channels.yaml, metrics.json and the tables carry about learned gates: did gate learning reach r, the kept
# gates' non-zero fraction, their held-out top-1, and whether that is near chance (pfs.core.chance.near_chance)
GATE_REPORT = ("target_met", "gates_nonzero_fraction", "gates_val_top1", "gates_near_chance")
CHANNELS_FIELDS = (  # channels.yaml's keys in the order written; each pruning stage writes those it has
    "kind", "format_version", "method", "arch", "library", "library_version", "dataset", "expansion", "multiplier",
    "num_classes", "widths", "full_widths", "groups", "target_ratio", "achieved_ratio", "width_factor", "macs",
    "params", "macs_baseline", "params_baseline", "macs_expanded", "params_expanded", "kept_channels",
    "total_channels", "threshold", "tied_at_threshold", "kept_by_tie", "out_of_order", "min_width", "round_to",
    "max_layer_ratio", "tolerance", *GATE_REPORT, "gates_file", "gates_sha256", "ranking", "model_file",
    "model_sha256", "numerics",
)
PRUNED_KIND = "pfs.pruned"  # pruned.pt: a classic baseline's pruned weights, which its fine-tuning starts from


def _identity_fields(exp: Experiment) -> tuple[tuple[str, object], ...]:
    return ("arch", exp.arch), ("dataset", exp.dataset), ("expansion", exp.width), ("multiplier", exp.multiplier)


def load_gates(path: str, exp: Experiment) -> tuple[list[torch.Tensor], int, str, dict]:
    """The gates of ``path`` (checked against ``exp``), the number of classes they were learned on, their method
    (pfs: learned; random: the ablation's random draw), and, for learned gates, whether gate learning met its
    target, the kept gates' non-zero fraction, their held-out top-1 and whether it is near chance (GATE_REPORT)."""
    data = io.load_artifact(path, "pfs.gates")
    for key, want in _identity_fields(exp):
        io.check_field(path, data, key, want)
    want = default_widths(exp.arch, exp.width)
    got = [int(g.numel()) for g in data["gates"]]
    if got != want:
        raise PfsError(f"{path}: gate sizes {got} do not match {exp.arch} at expansion {exp.width} ({want})")
    method = str(data.get("method", "pfs"))
    report = {"target_met": data.get("target_met"), "gates_nonzero_fraction": data.get("nonzero_fraction"),
              "gates_val_top1": data.get("val_top1"), "gates_near_chance": near_chance(data)}
    # the numerics fingerprint of the job that made the gates: what the widths derived from them depend on
    numerics = {"numerics": data["numerics"]} if "numerics" in data else {}
    return (list(data["gates"]), int(data.get("num_classes", dataset_info(exp.dataset).num_classes)), method,
            {**(report if method == "pfs" else {}), **numerics})


# the classic baselines' pruning -> the trained standard network it starts from: (method, schedule of its model.pt,
# the sentence that says which file that is)
_PRETRAINED = {
    "l1": ("full", "scratch_e", "L1 pruning starts from train_full's model.pt of the same arch, dataset and seed (the "
                                "unpruned standard network); check the rule's input, or delete the file and rerun "
                                "train_full"),
    "slim": ("slim", "sparse", "slimming starts from train_sparse's model.pt of the same arch, dataset and seed (the "
                               "standard network trained with the BN sparsity penalty); check the rule's input, or "
                               "delete the file and rerun train_sparse"),
}


def load_standard_model(path: str, exp: Experiment, pruning: str = "l1") -> tuple[dict[str, torch.Tensor], int, dict]:
    """The weights, number of classes and numerics fingerprint ({} when it has none) of a trained model.pt, refused
    (one line) unless it is the standard
    network (full widths) that ``pruning`` (l1: train_full's, method full; slim: train_sparse's, method slim,
    schedule sparse) starts from, of ``exp``'s arch, dataset, expansion, multiplier and seed."""
    data = io.load_artifact(path, "pfs.model")
    method, schedule, remedy = _PRETRAINED[pruning]
    for key, want in (*_identity_fields(exp), ("seed", exp.seed), ("method", method), ("schedule", schedule)):
        io.check_field(path, data, key, want, remedy)
    full = default_widths(exp.arch, exp.width)
    if list(data.get("widths", [])) != full:
        raise PfsError(f"{path} has widths {data.get('widths')}, not the standard {exp.arch}'s {full}; {remedy}")
    return data["state_dict"], int(data["num_classes"]), dict(data.get("numerics", {}))


def load_pruned(path: str, exp: Experiment, widths: list[int], num_classes: int,
                model_sha256: str | None = None) -> dict[str, torch.Tensor]:
    """The weights of a pruned.pt, refused (one line) unless they are ``exp``'s network (arch, dataset, expansion,
    multiplier, seed) at ``widths`` (the channels file's) for ``num_classes`` classes, cut from the trained network
    whose sha256 the channels file records (``model_sha256``, when it records one: both files come from one pruning
    job, which records the same hash in each)."""
    data = io.load_artifact(path, PRUNED_KIND)
    remedy = "it does not belong with this channels file: delete both and rerun their pruning (prune_l1, prune_slim)"
    for key, want in (*_identity_fields(exp), ("seed", exp.seed), ("widths", list(widths)),
                      ("num_classes", num_classes)):
        io.check_field(path, data, key, want, remedy)
    if model_sha256 is not None and data.get("model_sha256") != model_sha256:
        raise PfsError(f"{path} was cut from the model.pt of sha256 {str(data.get('model_sha256'))[:12]}..., but its "
                       f"channels file from the one of sha256 {model_sha256[:12]}...; {remedy}")
    return data["state_dict"]


def channels_doc(exp: Experiment, method: str, num_classes: int, widths: list[int], target_ratio: float,
                 achieved_ratio: float, cost: dict, baseline: dict, cfg: PruneConfig, **extra) -> dict:
    """The channels.yaml document of a pruned network: its identity, widths, MACs ratio, MACs and params (``cost``;
    ``baseline``: the standard network's) and the prune settings, plus the stage's own ``extra`` fields, keys in
    CHANNELS_FIELDS order."""
    unknown = sorted(set(extra) - set(CHANNELS_FIELDS))
    if unknown:
        raise ValueError(f"channels.yaml has no field {', '.join(unknown)}; known: {', '.join(CHANNELS_FIELDS)}")
    fields = {
        "kind": "pfs.channels", "format_version": io.FORMAT_VERSION, "method": method,
        "arch": exp.arch, "dataset": exp.dataset, "expansion": exp.width, "multiplier": exp.multiplier,
        "num_classes": num_classes, "widths": widths, "full_widths": default_widths(exp.arch, exp.width),
        "target_ratio": target_ratio, "achieved_ratio": round(achieved_ratio, 6),
        "macs": cost["macs"], "params": cost["params"],
        "macs_baseline": baseline["macs"], "params_baseline": baseline["params"],
        "min_width": cfg.min_width, "round_to": cfg.round_to, "max_layer_ratio": cfg.max_layer_ratio,
        "tolerance": cfg.tolerance, **extra,
        **library_fields(exp.arch),
    }
    return {key: fields[key] for key in CHANNELS_FIELDS if key in fields}


def _check_library(path: str, doc: dict, arch: str) -> None:
    """A library network's channels.yaml names its groups: refuse it when this library's network has other groups
    (another version rebuilds another network from the same widths); say so when only the version differs."""
    if not is_library_arch(arch) or "groups" not in doc:
        return
    now = library_fields(arch)
    if doc["groups"] != now["groups"]:
        raise PfsError(f"{path} was pruned on {arch} of {doc.get('library')} {doc.get('library_version')}, whose "
                       f"channel groups differ from {now['library']} {now['library_version']}'s installed here; "
                       "rerun learn_gates and prune (delete their outputs) or install that version")
    if doc.get("library_version") != now["library_version"]:
        log.warning("%s was pruned with %s %s, this is %s: the same channel groups, rebuilt by this version's "
                    "constructor", path, now["library"], doc.get("library_version"), now["library_version"])


def library_fields(arch: str) -> dict:
    """What channels.yaml records of a torchvision/timm network beside its widths: the library, its version (a
    network is rebuilt from arch and widths by that library's constructor) and each group's name (its root layer),
    in the order of ``widths``; nothing for pfs's own archs."""
    if not is_library_arch(arch):
        return {}
    from pfs.models.library import library_version
    from pfs.models.structure import discover

    library = arch.partition(":")[0]
    return {"library": library, "library_version": library_version(library),
            "groups": [g.name for g in discover(arch).prunable]}


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
    _check_library(path, doc, exp.arch)
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
