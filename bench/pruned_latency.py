"""Benchmark: the full standard network against the pruned one (a physically smaller network), measured in one run.

    python bench/pruned_latency.py [--archs resnet56,mobilenet_v2] [--ratio 0.5] [--tolerance 0.01]
                                   [--repeats 5] [--iters N] [--device cpu|cuda] [--amp] [--threads N]
                                   [--round-to 8[,16]] [--kinds infer,train,ort] [--profile]

For each arch, three variants of the network at its standard width (expansion = the arch's base expansion, so the
unpruned network is the baseline pruning ratios are measured against), all built from the same seed:
- ``full``: the standard network, every channel kept;
- ``pruned``: widths from the package's prune stage (pfs.stages.prune.stage_prune) at ``--ratio`` MACs reduction;
- ``pruned_round8``: the same with ``round_to=8`` (every width rounded up to a multiple of 8, still meeting the
  ratio within ``--tolerance``; reported under ``skipped`` with the reason when it cannot, e.g. resnet20);
  ``--round-to 8,16`` adds ``pruned_round16`` (onnxruntime computes convs in blocks of 16 channels on AVX-512).
The gates are the random-gates ablation's (pfs.stages.learn_gates.stage_random_gates: seeded ``torch.rand`` per prunable
group), a stand-in for learned gates: which channels are kept does not matter for speed, only how many per layer,
and random gates give a realistic uneven profile. gates.pt and channels.yaml go to a temporary folder.

CIFAR archs run 32x32 inputs with 10 classes (inference batches 1 and 128, a train step at batch 64); ImageNet
archs 224x224 with 1000 classes (inference batches 1 and 16, a train step at batch 8, to keep CPU time modest).
Three kinds of measurement (``--kinds``), each for every variant, best of ``--repeats`` with the variants
interleaved, each repeat the median of ``--iters`` calls after warm-up:
- ``infer_bN``: a forward pass, model.eval() under torch.inference_mode;
- ``train_bN``: one training step, model.train(): forward, cross-entropy, backward, SGD (momentum) step;
- ``ort_infer_bN``: the deployed form - the network exported as ``python -m pfs export`` writes it (gates merged,
  BatchNorm folded; pfs.stages.export), run by onnxruntime's CPU provider (all graph optimisations, ``--threads``
  intra-op threads) on the same batches. CPU only.
``--profile`` adds onnxruntime's own per-node profile of one call at the largest batch: milliseconds per op type
(Conv split into depthwise, 1x1 and kxk) for every variant, with the MACs share of each conv kind, to show
where the measured speedup falls short of the MACs ratio.
``--iters`` 0 (default) picks, per measurement, enough calls for ~0.25 s of the full network (3 to 100).
On CUDA every call is synchronised; ``--amp`` runs the networks under bf16 autocast.

Prints one JSON object, per arch: MACs and params of each variant (counted on the meta device and checked against
the built model), ``theoretical_speedup`` = full MACs / variant MACs, milliseconds per call of every variant,
``measured_speedup`` = full time / variant time per measurement, and ``efficiency`` = measured / theoretical.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from pfs.core.errors import PfsError
from pfs.data.datasets import dataset_info
from pfs.method.macs import count_macs, count_params, network_cost
from pfs.models import build_model, default_widths, get_spec
from pfs.stages.experiment import Experiment
from pfs.stages.export import fold_for_inference, to_onnx
from pfs.stages.learn_gates import stage_random_gates
from pfs.stages.prune import stage_prune

# per domain: (dataset giving the image size and classes, inference batches, train-step batch)
DOMAINS = {"cifar": ("cifar10", (1, 128), 64), "imagenet": ("imagenet", (1, 16), 8)}
WARMUP = 2
TARGET_S = 0.25  # auto --iters: calls per measurement ~ this many seconds of the full network


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


def prune(exp: Experiment, gates_path: str, ratio: float, tolerance: float, round_to: int,
          folder: str) -> tuple[dict, float]:
    """Widths pruned from ``gates_path`` by the prune stage (pfs.stages.prune.stage_prune); returns (info, seconds)."""
    hp = {"tolerance": tolerance, "round_to": round_to}
    start = time.perf_counter()
    doc = stage_prune(exp, gates_path, ratio, hp, str(Path(folder) / f"channels_round{round_to}.yaml"))
    seconds = time.perf_counter() - start
    return {"widths": doc["widths"], "macs": doc["macs"], "params": doc["params"],
            "achieved_ratio": round(doc["achieved_ratio"], 5), "out_of_order": doc["out_of_order"],
            "channels": f"{doc['kept_channels']}/{doc['total_channels']}"}, seconds


def make_model(arch: str, widths: list[int] | None, expansion: int, classes: int, size: int,
               info: dict, device: torch.device) -> nn.Module:
    torch.manual_seed(0)
    model = build_model(arch, widths=widths, expansion=expansion, num_classes=classes)
    # the built network really has the counted shapes (not a masked full network)
    assert count_macs(model, size) == info["macs"] and count_params(model) == info["params"], arch
    return model.to(device)


def onnx_session(model: nn.Module, size: int, threads: int, path: Path, profile: bool = False):
    """The deployed form of ``model`` (before any train step): folded and exported to ``path`` as pfs.stages.export
    does,
    opened by onnxruntime's CPU provider; ``profile``: with its per-node profiler on, saving the optimised graph."""
    import onnxruntime as ort

    if not path.exists():
        to_onnx(fold_for_inference(model)[0], size).save(path, external_data=False)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if profile:
        options.enable_profiling, options.profile_file_prefix = True, str(path.with_suffix(""))
        options.optimized_model_filepath = str(path.with_suffix(".optimized.onnx"))
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def make_calls(model: nn.Module, device: torch.device, amp: bool, size: int, classes: int,
               infer_batches: tuple[int, ...], train_batch: int, kinds: set[str],
               session=None) -> dict[str, tuple[bool, Callable[[], None]]]:
    """Measurement name -> (train mode, one call) of ``kinds``. Inputs are fixed seeded tensors, the same for every
    variant and for PyTorch and onnxruntime (``session``)."""
    gen = torch.Generator().manual_seed(1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    criterion = nn.CrossEntropyLoss()
    calls: dict[str, tuple[bool, Callable[[], None]]] = {}

    def infer_call(x: torch.Tensor) -> Callable[[], None]:
        def call() -> None:
            with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                model(x)
        return call

    def ort_call(x: torch.Tensor) -> Callable[[], None]:
        feed = {"input": x.numpy()}
        return lambda: session.run(None, feed)

    for b in infer_batches:
        x = torch.randn(b, 3, size, size, generator=gen)
        if "infer" in kinds:
            calls[f"infer_b{b}"] = (False, infer_call(x.to(device)))
        if session is not None:
            calls[f"ort_infer_b{b}"] = (False, ort_call(x))
    x = torch.randn(train_batch, 3, size, size, generator=gen).to(device)
    y = torch.randint(0, classes, (train_batch,), generator=gen).to(device)

    def train_call() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = criterion(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    if "train" in kinds:
        calls[f"train_b{train_batch}"] = (True, train_call)
    return calls


def conv_kind(groups: int, kernel: tuple[int, ...] | list[int]) -> str:
    return "depthwise conv" if groups > 1 else "1x1 conv" if math.prod(kernel) == 1 else "kxk conv"


def conv_macs_by_kind(model: nn.Module, size: int) -> dict[str, dict[str, int]]:
    """MACs of one image per conv kind (depthwise, 1x1, kxk; and the Linear layer) and per conv output resolution."""
    total: dict[str, dict[str, int]] = {"by_kind": {}, "by_resolution": {}}

    def hook(m: nn.Module, _inp, out) -> None:
        kind = conv_kind(m.groups, m.kernel_size) if isinstance(m, nn.Conv2d) else "linear"
        macs = out[0].numel() * (m.weight[0].numel() if isinstance(m, nn.Conv2d) else m.in_features)
        total["by_kind"][kind] = total["by_kind"].get(kind, 0) + macs
        if isinstance(m, nn.Conv2d):
            res = f"{out.shape[-2]}x{out.shape[-1]}"
            total["by_resolution"][res] = total["by_resolution"].get(res, 0) + macs

    hooks = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, size, size))
    for h in hooks:
        h.remove()
    return total


OP_CATEGORIES = {"ReorderInput": "layout reorder (NCHWc)", "ReorderOutput": "layout reorder (NCHWc)",
                 "Add": "add / sum", "Sum": "add / sum", "Relu": "activation", "Clip": "activation",
                 "GlobalAveragePool": "pool", "ReduceMean": "pool", "Gemm": "linear", "MatMul": "linear"}


def ort_profile(model: nn.Module, size: int, batch: int, threads: int, path: Path, runs: int = 3) -> dict:
    """Milliseconds of one onnxruntime call at ``batch`` (each node's fastest of ``runs`` calls after a warm-up),
    from its profiler: per op category, and the convs' per output resolution (a CNN's stages); a conv's kind
    comes from the optimised graph's node attributes."""
    import onnx

    session = onnx_session(model, size, threads, path, profile=True)
    feed = {"input": torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(2)).numpy()}
    for _ in range(runs + 1):
        session.run(None, feed)
    events = json.loads(Path(session.end_profiling()).read_text())
    graph = onnx.load(str(path.with_suffix(".optimized.onnx"))).graph
    shapes = {t.name: list(t.dims) for t in graph.initializer}
    kinds = {}
    for node in graph.node:
        if node.op_type in ("Conv", "FusedConv"):
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            kernel = attrs.get("kernel_shape") or shapes.get(node.input[1], [1, 1, 1, 1])[2:]
            kinds[node.name] = conv_kind(attrs.get("group", 1), kernel)
    per_node: dict[str, list[float]] = {}
    ops, resolution = {}, {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            name = e["name"].removesuffix("_kernel_time")
            per_node.setdefault(name, []).append(e["dur"] / 1e3)
            ops[name] = e["args"]["op_name"]
            shape = next(iter(e["args"].get("output_type_shape", [{}])[0].values()), [])
            resolution[name] = f"{shape[-2]}x{shape[-1]}" if len(shape) >= 4 else "?"
    ms: dict[str, float] = {}
    conv_ms: dict[str, float] = {}
    for name, durs in per_node.items():
        category = kinds.get(name) or OP_CATEGORIES.get(ops[name], "other")
        ms[category] = ms.get(category, 0.0) + min(durs[1:] or durs)
        if name in kinds:
            conv_ms[resolution[name]] = conv_ms.get(resolution[name], 0.0) + min(durs[1:] or durs)
    return {"ms_by_op": {k: round(v, 3) for k, v in sorted(ms.items(), key=lambda kv: -kv[1])},
            "conv_ms_by_resolution": {k: round(v, 3) for k, v in conv_ms.items()}}


def time_calls(fn: Callable[[], None], n: int, device: torch.device) -> list[float]:
    times = []
    for _ in range(n):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return times


def bench_arch(arch: str, args: argparse.Namespace, device: torch.device) -> dict:
    spec = get_spec(arch)
    dataset, infer_batches, train_batch = DOMAINS[spec.domain]
    size, classes = dataset_info(dataset).image_size, dataset_info(dataset).num_classes
    expansion = spec.base_expansion
    exp = Experiment(dataset, arch, args.seed, expansion)
    full_cost = network_cost(arch, size, classes, expansion=expansion)
    infos = {"full": {"widths": default_widths(arch, expansion), **full_cost}}
    prune_s, skipped = {}, {}
    with tempfile.TemporaryDirectory(prefix="pruned_latency_") as folder:
        gates_path = str(Path(folder) / "gates.pt")
        stage_random_gates(exp, classes, gates_path)
        variants = {"pruned": 1, **{f"pruned_round{r}": r for r in args.round_to}}  # -> PruneConfig.round_to
        for name, round_to in variants.items():
            try:
                infos[name], prune_s[name] = prune(exp, gates_path, args.ratio, args.tolerance, round_to, folder)
            except PfsError as e:  # e.g. round_to=8 on a small net: steps of 8 channels overshoot the tolerance
                skipped[name] = str(e)
    pruned = [v for v in variants if v in infos]
    models = {v: make_model(arch, None if v == "full" else info["widths"], expansion, classes, size, info, device)
              for v, info in infos.items()}
    kinds = set(args.kinds.split(","))
    onnx_dir = tempfile.TemporaryDirectory(prefix="pruned_latency_onnx_")
    sessions = {v: onnx_session(m, size, args.threads, Path(onnx_dir.name) / f"{v}.onnx") if "ort" in kinds else None
                for v, m in models.items()}
    profile = {v: ort_profile(m, size, max(infer_batches), args.threads, Path(onnx_dir.name) / f"{v}.onnx")
               for v, m in models.items()} if args.profile else {}
    conv_macs = {v: conv_macs_by_kind(m, size) for v, m in models.items()} if args.profile else {}
    onnx_bytes = {v: (Path(onnx_dir.name) / f"{v}.onnx").stat().st_size for v in models} if "ort" in kinds else {}
    calls = {v: make_calls(m, device, args.amp, size, classes, infer_batches, train_batch, kinds, sessions[v])
             for v, m in models.items()}
    measurements = list(calls["full"])
    iters = {}
    for meas in measurements:  # warm-up: allocator, oneDNN/cuDNN primitives, autotuning
        for v, model in models.items():
            train, fn = calls[v][meas]
            model.train(train)
            warm = time_calls(fn, WARMUP, device)
            if v == "full":
                iters[meas] = args.iters or max(3, min(100, math.ceil(TARGET_S / min(warm))))
    best = {meas: dict.fromkeys(models, float("inf")) for meas in measurements}
    for _ in range(args.repeats):  # interleaved, so drift in machine load hits every variant alike
        for meas in measurements:
            for v, model in models.items():
                train, fn = calls[v][meas]
                model.train(train)
                best[meas][v] = min(best[meas][v], statistics.median(time_calls(fn, iters[meas], device)))
    onnx_dir.cleanup()
    theoretical = {v: full_cost["macs"] / infos[v]["macs"] for v in pruned}
    measured = {meas: {v: best[meas]["full"] / best[meas][v] for v in pruned} for meas in measurements}
    return {
        "domain": spec.domain, "image_size": size, "num_classes": classes, "expansion": expansion,
        "target_ratio": args.ratio, "tolerance": args.tolerance,
        "prune_s": {k: round(s, 2) for k, s in prune_s.items()},
        "variants": infos,
        "iters": iters,
        "ms": {meas: {v: round(t * 1e3, 3) for v, t in best[meas].items()} for meas in measurements},
        "theoretical_speedup": {v: round(s, 3) for v, s in theoretical.items()},
        "params_ratio": {v: round(full_cost["params"] / infos[v]["params"], 3) for v in pruned},
        "measured_speedup": {m: {v: round(s, 3) for v, s in d.items()} for m, d in measured.items()},
        "efficiency": {m: {v: round(s / theoretical[v], 3) for v, s in d.items()} for m, d in measured.items()},
        **({"onnx_bytes": onnx_bytes} if onnx_bytes else {}),
        **({"ort_profile": profile, "macs_per_image": conv_macs} if profile else {}),
        **({"skipped": skipped} if skipped else {}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", default="resnet56,mobilenet_v2", help="comma-separated registered archs")
    parser.add_argument("--ratio", type=float, default=0.5, help="MACs reduction vs the standard network")
    parser.add_argument("--tolerance", type=float, default=0.01, help="prune.tolerance")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--iters", type=int, default=0, help="calls per repeat (0: auto, ~0.25 s of the full net)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast (meant for CUDA)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--seed", type=int, default=0, help="seed of the random stand-in gates")
    parser.add_argument("--round-to", default="8", type=lambda t: [int(r) for r in t.split(",")],
                        help="prune.round_to of the rounded variants, comma-separated (default 8: pruned_round8)")
    parser.add_argument("--kinds", default="infer,train,ort", help="measurements: infer (PyTorch eager), train "
                        "(a PyTorch train step), ort (the exported ONNX network under onnxruntime, CPU only)")
    parser.add_argument("--profile", action="store_true", help="onnxruntime's per-op-type milliseconds at the "
                        "largest inference batch, and MACs per conv kind")
    args = parser.parse_args()
    unknown = set(args.kinds.split(",")) - {"infer", "train", "ort"}
    if unknown:
        parser.error(f"--kinds: unknown {', '.join(sorted(unknown))}; known: infer, train, ort")
    if ("ort" in args.kinds.split(",") or args.profile) and args.device != "cpu":
        parser.error("onnxruntime runs on the CPU here: drop ort from --kinds (and --profile) with --device cuda")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # every variant gets its best kernels (warm-up autotunes)
    else:
        torch.set_flush_denormal(True)  # SGD on random data must not drift into slow denormal arithmetic
    archs = [a.strip() for a in args.archs.split(",") if a.strip()]
    start = time.perf_counter()
    results = {arch: bench_arch(arch, args, device) for arch in archs}
    text = json.dumps({
        "archs": results, "gates": f"seeded random torch.rand (seed {args.seed}), a stand-in for learned gates",
        "repeats": args.repeats, "warmup": WARMUP, "device": str(device), "amp": args.amp,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "total_s": round(time.perf_counter() - start, 1),
        "torch": torch.__version__, "python": platform.python_version(), "cpus": os.cpu_count(),
        "threads": args.threads,
    }, indent=2)
    print(re.sub(r"\[\s+([-\d.,\s]+?)\s+\]", lambda m: "[" + " ".join(m.group(1).split()) + "]",
                 text))  # number lists (widths) on one line


if __name__ == "__main__":
    main()
