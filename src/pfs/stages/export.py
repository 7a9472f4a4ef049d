"""Deployable networks: a trained model.pt with every gate merged into the BatchNorm before it, every BatchNorm
folded into the conv before it, exported to ONNX and checked against the PyTorch model on random inputs.

    python -m pfs export RUN_DIR_OR_MODEL [--format onnx] [--out FILE]     rule export -> model.onnx

Folding: a gate follows BN (``y = g * BN(x)``), so ``g`` scales BN's affine map, and BN in eval mode is an affine
map per channel that folds into the conv before it: ``w' = w * s``, ``b' = s * (b - mean) + g * beta`` with
``s = g * gamma / sqrt(var + eps)``. The patterns are found by data flow (a torch.fx trace), not by class or
attribute names, so every registered arch folds the same way; the folded BN and gate become ``nn.Identity``.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import tempfile
from pathlib import Path

import torch
from torch import fx, nn

import pfs
from pfs.core import io
from pfs.core.catalog import dataset_info
from pfs.core.errors import PfsError
from pfs.method.macs import count_macs, count_params
from pfs.models import Gate, GatedNet, build_model

log = logging.getLogger(__name__)

MODEL_KIND = "pfs.model"  # what jobs._finish writes
# ONNX opset 18: the opset torch's exporter (dynamo=True) translates to natively (its torchlib's; another opset is
# a conversion pass), and the oldest a runtime must read: torch 2.14 writes 20 unless told
OPSET = 18
# max |exported - original| over max |original| (the logits' scale), on random inputs: fp32 folding and another
# kernel order give < 1e-6 (measured on every registered arch, random BN statistics and gates); 1e-4 leaves room
# for deeper and wider networks and is far below what a wrong fold or a misplaced channel does
TOLERANCE = 1e-4
CHECK_BATCH = 3  # random images checked; not the export's example batch (2), so the dynamic batch axis is checked
REMEDY = "delete it and rerun the training stage that makes it"
MISSING = ("give the path of a trained model.pt (results/.../model.pt) or of the run folder holding it, or run the "
           "training stage that makes it")


def resolve_model_path(path: str | os.PathLike) -> Path:
    """A training run's folder (its model.pt) or a model file itself."""
    path = Path(path)
    return path / "model.pt" if path.is_dir() else path


def load_trained(path: str | os.PathLike) -> tuple[GatedNet, dict]:
    """The trained network of a model.pt (built at its recorded widths, weights loaded strictly, eval mode) and the
    file's fields; a missing or corrupt file, one of another kind or format version, or one whose weights do not
    fit its widths is refused in one line."""
    data = io.load_artifact(path, MODEL_KIND, REMEDY, MISSING)
    missing = [k for k in ("arch", "dataset", "widths", "num_classes", "state_dict") if k not in data]
    if missing:
        raise PfsError(f"{path} lacks {', '.join(missing)}; {REMEDY}")
    try:
        model = build_model(data["arch"], widths=data["widths"], expansion=data.get("expansion"),
                            num_classes=data["num_classes"], multiplier=data.get("multiplier", 1.0))
    except ValueError as exc:  # widths of another arch, an unknown arch
        raise PfsError(f"{path}: {exc}; {REMEDY}") from None
    try:
        model.load_state_dict(data["state_dict"], strict=True)
    except RuntimeError as exc:  # keys or shapes of another network; torch's message spans many lines
        reason = " ".join(str(exc).split())[:300]
        raise PfsError(f"{path}: its weights do not fit {data['arch']} at its recorded widths {data['widths']} "
                       f"({reason}); {REMEDY}") from None
    return model.eval(), data


class _GateTracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, Gate) or super().is_leaf_module(m, qualname)


def _fold_chains(model: nn.Module) -> list[tuple[str, str, str | None]]:
    """(conv, bn, gate or None) module names where a Conv2d's output feeds only a BatchNorm2d and, when a gate
    follows, that BN's output feeds only the gate; each of them called once (a module called twice is left)."""
    graph = _GateTracer().trace(model)
    modules = dict(model.named_modules())
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1

    def is_call(node, kind) -> bool:
        return (isinstance(node, fx.Node) and node.op == "call_module" and isinstance(modules[node.target], kind)
                and calls[node.target] == 1)

    chains = []
    for node in graph.nodes:
        if not (is_call(node, nn.BatchNorm2d) and len(node.args) == 1 and is_call(node.args[0], nn.Conv2d)
                and len(node.args[0].users) == 1):
            continue
        after = list(node.users)
        gate = after[0].target if len(after) == 1 and is_call(after[0], Gate) and after[0].args == (node,) else None
        chains.append((node.args[0].target, node.target, gate))
    return chains


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


@torch.no_grad()
def fold_for_inference(model: nn.Module) -> tuple[nn.Module, dict[str, int]]:
    """A copy of ``model`` in eval mode with every gate merged into the BatchNorm before it and every BatchNorm
    folded into the conv before it (both replaced by ``nn.Identity``); returns it and the counts (bn_folded,
    gates_merged, bn_kept: BatchNorms with no conv to fold into). A gate that follows no foldable BatchNorm is
    refused: removing it would change the network."""
    if hasattr(model, "merged"):  # a library network: its gates fold into the layers they follow, hooks removed
        folded = model.merged().eval()
        try:
            chains = _fold_chains(folded)
        except Exception as exc:  # its code does not trace symbolically: exported with its BatchNorms kept
            log.info("%s: not traceable by torch.fx (%s), so its BatchNorms are exported unfolded", model.arch,
                     type(exc).__name__)
            chains = []
        merged = set(range(len(model.gates())))
    else:
        folded = copy.deepcopy(model).eval()
        chains = _fold_chains(folded)
        merged = {gate for _, _, gate in chains if gate is not None}
        stray = [n for n, m in folded.named_modules() if isinstance(m, Gate) and n not in merged]
        if stray:
            raise PfsError(f"gate {stray[0]} does not follow a conv + BatchNorm: it cannot be folded away")
    for conv_name, bn_name, gate_name in chains:
        conv, bn = folded.get_submodule(conv_name), folded.get_submodule(bn_name)
        # float64: the fold adds no rounding of its own beyond the final cast
        std = (bn.running_var.double() + bn.eps).sqrt()
        gamma = bn.weight.double() if bn.affine else torch.ones_like(std)
        beta = bn.bias.double() if bn.affine else torch.zeros_like(std)
        g = folded.get_submodule(gate_name).weight.double() if gate_name else torch.ones_like(std)
        scale = g * gamma / std
        bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(std)
        weight = conv.weight.double() * scale.view(-1, 1, 1, 1)
        conv.weight = nn.Parameter(weight.to(conv.weight.dtype))
        conv.bias = nn.Parameter((scale * (bias - bn.running_mean.double()) + g * beta).to(conv.weight.dtype))
        _replace(folded, bn_name, nn.Identity())
        if gate_name:
            _replace(folded, gate_name, nn.Identity())
    kept = sum(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    return folded, {"bn_folded": len(chains), "gates_merged": len(merged), "bn_kept": kept}


def relative_diff(got: torch.Tensor, want: torch.Tensor) -> tuple[float, float]:
    """(max abs difference, that over the largest |want|: the output's scale); inf for a non-finite output."""
    diff = float((got.double() - want.double()).abs().max())
    if not math.isfinite(diff):
        return math.inf, math.inf
    return diff, diff / max(float(want.double().abs().max()), 1e-12)


def check_output_folder(out: Path) -> None:
    """Refuse, before the export, an output whose folder cannot be made or written."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out.parent):
            pass
    except OSError as exc:
        raise PfsError(f"cannot write {out}: its folder {out.parent} is not writable ({exc.strerror or exc})") from None


def to_onnx(model: nn.Module, image_size: int, opset: int = OPSET):
    """``model`` (fold it first) as an ONNXProgram by torch.onnx.export's torch.export-based exporter, with a
    dynamic batch axis (input ``input``, output ``logits``); a failure is one line (PfsError)."""
    for name in ("onnxscript", "onnx_ir"):  # a dozen INFO lines per export about its graph passes
        logging.getLogger(name).setLevel(logging.WARNING)
    example = torch.zeros(2, 3, image_size, image_size)  # batch 2: an example batch of 1 would be specialised
    try:
        return torch.onnx.export(model, (example,), dynamo=True, opset_version=opset, input_names=["input"],
                                 output_names=["logits"], dynamic_shapes=({0: torch.export.Dim("batch")},),
                                 verbose=False, external_data=False)
    except Exception as exc:  # the exporter's own errors, unsupported ops: one line, no file written
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise PfsError(f"ONNX export failed ({type(exc).__name__}: {first[:300]})") from None


def run_onnxruntime(path: str | os.PathLike, x: torch.Tensor) -> torch.Tensor:
    """The logits of the ONNX file at ``path`` for ``x``, by onnxruntime's CPU provider."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.log_severity_level = 3  # errors only: its warnings about unused initializers are noise here
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {"input": x.numpy()})[0])


def _metadata(data: dict, model: GatedNet, source: Path, image_size: int, checks: dict, opset: int) -> dict:
    """The provenance written into the ONNX file's metadata_props (strings)."""
    info = dataset_info(data["dataset"])
    fields = {
        "arch": data["arch"], "dataset": data["dataset"], "method": data.get("method"),
        "expansion": data.get("expansion"), "multiplier": data.get("multiplier"), "ratio": data.get("ratio"),
        "schedule": data.get("schedule"), "seed": data.get("seed"), "widths": list(model.widths),
        "num_classes": data["num_classes"], "macs": count_macs(model, image_size), "params": count_params(model),
        "top1": (data.get("metrics") or {}).get("top1"),
        "input": f"float32 [batch, 3, {image_size}, {image_size}], per channel (pixel / 255 - mean) / std",
        "mean": list(info.mean), "std": list(info.std),
        "source_model": str(source), "source_sha256": io.sha256_file(source), "pfs_version": pfs.__version__,
        "torch_version": torch.__version__, "opset": opset, "exporter": "torch.onnx.export(dynamo=True)",
        **checks,
    }
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in fields.items() if v is not None}


def export_onnx(model_path: str | os.PathLike, out: str | os.PathLike | None = None, tolerance: float = TOLERANCE,
                opset: int = OPSET) -> dict:
    """Write ``model_path``'s trained network (a run folder or its model.pt), gates merged and BatchNorm folded, as
    ONNX to ``out`` (default: model.onnx beside it), atomically; refused (nothing written) when the folded network
    or the ONNX file's output under onnxruntime differs from the original's by more than ``tolerance`` relative
    to the output's scale. Returns what was checked and written."""
    source = resolve_model_path(model_path)
    out = Path(out) if out is not None else source.with_name("model.onnx")
    model, data = load_trained(source)
    size = dataset_info(data["dataset"]).image_size
    check_output_folder(out)
    folded, counts = fold_for_inference(model)
    x = torch.randn(CHECK_BATCH, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = model(x)
        _, fold_rel = relative_diff(folded(x), want)
    if not torch.isfinite(want).all():
        raise PfsError(f"{source}: the trained network's outputs are not finite (did training diverge?); nothing "
                       "written")
    if fold_rel > tolerance:
        raise PfsError(f"{source}: the folded network differs from the original by {fold_rel:.2e} of the output's "
                       f"scale (tolerance {tolerance:g}); nothing written")
    program = to_onnx(folded, size, opset)
    with io.atomic_path(out) as tmp:
        program.save(tmp, external_data=False)
        onnx_abs, onnx_rel = relative_diff(run_onnxruntime(tmp, x), want)
        if onnx_rel > tolerance:
            raise PfsError(f"{source}: the ONNX network differs from the original by {onnx_rel:.2e} of the output's "
                           f"scale under onnxruntime (tolerance {tolerance:g}); nothing written")
        checks = {"max_abs_diff": float(f"{onnx_abs:.3g}"), "relative_diff": float(f"{onnx_rel:.3g}"),
                  "tolerance": tolerance, **counts}
        program.model.metadata_props.update(_metadata(data, model, source, size, checks, opset))
        program.save(tmp, external_data=False)
    nodes = [n.op_type for n in program.model.graph]
    report = {"model": str(source), "onnx": str(out), "format": "onnx", "opset": opset, "arch": data["arch"],
              "widths": list(model.widths), **checks, "fold_relative_diff": float(f"{fold_rel:.3g}"),
              "mul_nodes": nodes.count("Mul"), "batchnorm_nodes": nodes.count("BatchNormalization"),
              "bytes": out.stat().st_size}
    log.info("%s -> %s: %d BatchNorm folded, %d gates merged, max |onnx - torch| %.2e (%.2e of the output scale)",
             source, out, counts["bn_folded"], counts["gates_merged"], onnx_abs, onnx_rel)
    return report
