"""Benchmark: a gate-learning step with frozen weights (pfs.method.gates) against the naive step, measured in one run.

    python bench/gate_step.py [--arch resnet56] [--expansion 20] [--batch 128] [--steps 10] [--repeats 3]
                              [--device cpu|cuda] [--threads N]

Gate learning optimises only the gates; the weights keep their random init. pfs.method.gates.freeze_weights turns
``requires_grad`` off on every weight, so backward computes no weight gradients and stores none. The naive step
(the official code) leaves ``requires_grad`` on: the same loss and the same gate updates, plus weight gradients
that nobody uses. Both run the real step of pfs.method.gates (CE + lambda * (mean|g| - r)^2, Adam on the gates, clamp)
on random CIFAR-shaped batches, best of ``--repeats`` with the two interleaved. Prints one JSON object with the
seconds per step of each, their ratio, and (CUDA) the peak memory of each.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch
from _common import add_device_args, setup_device, sync
from torch import nn

from pfs.method.gates import GateConfig, freeze_weights, gate_step
from pfs.models import build_model


def make_step(arch: str, expansion: int, frozen: bool, device: torch.device, sparsity: float = 0.5):
    torch.manual_seed(0)
    model = build_model(arch, expansion=expansion).to(device).train()
    if frozen:
        freeze_weights(model)
    gates = model.gate_parameters()
    optimizer = torch.optim.Adam(gates, lr=0.01)
    criterion = nn.CrossEntropyLoss()
    cfg = GateConfig(sparsity=sparsity)

    def step(x, y) -> None:
        gate_step(model, gates, optimizer, criterion, x, y, cfg)

    weights_with_grad = lambda: sum(p.grad is not None for p in model.weight_parameters())  # noqa: E731
    return step, weights_with_grad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet56")
    parser.add_argument("--expansion", type=int, default=20)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10, help="steps per timing")
    add_device_args(parser)
    args = parser.parse_args()
    device = setup_device(args)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 3, 32, 32, generator=gen).to(device)
    y = torch.randint(0, 10, (args.batch,), generator=gen).to(device)

    variants = {name: make_step(args.arch, args.expansion, name == "frozen", device) for name in ("frozen", "naive")}
    best = dict.fromkeys(variants, float("inf"))
    peak: dict[str, int] = {}
    for step, _ in variants.values():  # warm-up (allocator, kernels)
        step(x, y)
    for _ in range(args.repeats):  # interleaved, so drift in machine load hits both alike
        for name, (step, _) in variants.items():
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            sync(device)
            start = time.perf_counter()
            for _ in range(args.steps):
                step(x, y)
            sync(device)
            best[name] = min(best[name], (time.perf_counter() - start) / args.steps)
            if device.type == "cuda":
                peak[name] = max(peak.get(name, 0), torch.cuda.max_memory_allocated(device))
    result = {
        "arch": args.arch, "expansion": args.expansion, "batch": args.batch, "device": str(device),
        "seconds_per_step": {k: round(v, 5) for k, v in best.items()},
        "ratio_naive_vs_frozen": round(best["naive"] / best["frozen"], 3),
        "weights_with_grad": {k: fn() for k, (_, fn) in variants.items()},
        "torch": torch.__version__, "python": platform.python_version(), "cpus": os.cpu_count(),
        "threads": args.threads,
    }
    if peak:
        result["peak_memory_mb"] = {k: round(v / 2**20, 1) for k, v in peak.items()}
        result["memory_ratio_naive_vs_frozen"] = round(peak["naive"] / peak["frozen"], 3)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
