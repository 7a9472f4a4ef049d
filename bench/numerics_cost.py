"""Benchmark: the cost of ``numerics.mode: pinned`` against ``native``, measured in one run on this CPU.

    python bench/numerics_cost.py [--arch resnet20] [--size 16] [--batch 64] [--steps 20] [--repeats 3] [--threads 2]

Each measurement runs in a fresh process (pinned mode must be applied before torch's first operation), the modes
interleaved, best of ``--repeats``: ``--steps`` training steps (SGD, cross-entropy, forward + backward + update) of
the arch at its standard width on random images of ``--size`` pixels, the default experiment's shapes by default
(digits upsampled to 16x16, batch 64). Prints one JSON object: ms per step in each mode, the ratio pinned / native,
this CPU's kernels, and whether the two modes' losses differ (they should: other kernels, other last digits).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, sys, time
from pfs.core import numerics
mode, arch, size, batch, steps, threads = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:7])
numerics.apply(mode, threads)
import torch
from pfs.models import build_model
torch.manual_seed(0)
model = build_model(arch, num_classes=10)
opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
x, y = torch.randn(batch, 3, size, size), torch.randint(0, 10, (batch,))
def step():
    opt.zero_grad()
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return loss
for _ in range(3):  # warm-up: first-call allocations and kernel selection
    step()
start = time.perf_counter()
for _ in range(steps):
    loss = step()
print(json.dumps({"ms_per_step": 1000 * (time.perf_counter() - start) / steps, "loss": loss.item(),
                  "key": numerics.fingerprint()["key"]}))
"""


def measure(mode: str, args: argparse.Namespace) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, mode, args.arch, str(args.size), str(args.batch),
                          str(args.steps), str(args.threads)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet20")
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    runs: dict[str, list[dict]] = {"native": [], "pinned": []}
    for _ in range(args.repeats):
        for mode in runs:
            runs[mode].append(measure(mode, args))
    best = {mode: min(r["ms_per_step"] for r in rs) for mode, rs in runs.items()}
    print(json.dumps({
        "arch": args.arch, "size": args.size, "batch": args.batch, "threads": args.threads,
        "ms_per_step": {mode: round(ms, 1) for mode, ms in best.items()},
        "pinned_over_native": round(best["pinned"] / best["native"], 2),
        "fingerprints": {mode: rs[0]["key"] for mode, rs in runs.items()},
        "losses_differ": runs["native"][0]["loss"] != runs["pinned"][0]["loss"],
    }, indent=1))


if __name__ == "__main__":
    main()
