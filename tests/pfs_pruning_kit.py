"""Helpers the pruning tests share (pfs.method.l1, pfs.method.slim and their stages): a standard network's model.pt
with random weights, small sizes per arch, and the check that a cut network keeps the logits."""

from __future__ import annotations

from pathlib import Path

import torch

from pfs.core import io
from pfs.method.l1 import prune_state
from pfs.models import build_model, get_spec
from pfs.stages.experiment import Experiment

PRUNE_HP = {"min_width": 1, "tolerance": 0.01, "max_fill": 64, "round_to": 1}
SMALL = {"cifar": 2, "imagenet": 4}  # a small expansion per domain (resnet20 at 2: widths 2, 4, 8)
MULTIPLIER = {"resnet50": 0.25, "mobilenet_v2": 0.5}  # shrink the unpruned backbones too


def write_standard_model(path: Path, exp: Experiment, num_classes: int = 10, init_seed: int = 0,
                         **identity) -> dict[str, torch.Tensor]:
    """A model.pt as train_full writes it (pfs.stages.train._finish) for ``exp``'s standard network, with random weights
    and BN statistics; ``identity`` overrides its fields (to make a mismatched file). Returns its state_dict."""
    torch.manual_seed(init_seed)
    model = build_model(exp.arch, expansion=exp.width, num_classes=num_classes, multiplier=exp.multiplier)
    randomise_bn(model)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    fields = {"dataset": exp.dataset, "arch": exp.arch, "method": "full", "expansion": exp.width,
              "multiplier": exp.multiplier, "ratio": 0.0, "schedule": "scratch_e", "seed": exp.seed,
              "widths": model.widths, "num_classes": num_classes, "metrics": {"top1": 0.5}, **identity}
    io.save_artifact(path, "pfs.model", {**fields, "state_dict": state})
    return state


def randomise_bn(model: torch.nn.Module) -> None:
    """BN affine parameters and running statistics away from their init, so a test sees every one of them."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)


def small_sizes(arch: str) -> tuple[int, float, int]:
    """A small expansion, multiplier and input size for ``arch`` (ImageNet archs pool globally: 64x64 works)."""
    domain = get_spec(arch).domain
    return SMALL[domain], MULTIPLIER.get(arch, 1.0), 32 if domain == "cifar" else 64


def assert_cut_keeps_logits(model, state, cmap, kept, arch, expansion, multiplier, size, g) -> None:
    """``model`` (whose ``state`` has every channel outside ``kept`` silenced) and the network cut to ``kept`` by
    prune_state, built at those widths and loaded strictly, give the same logits on a random batch."""
    x = torch.randn(2, 3, size, size, generator=g)
    with torch.no_grad():
        before = model.eval()(x)
    small = build_model(arch, widths=[len(k) for k in kept], expansion=expansion, num_classes=10,
                        multiplier=multiplier)
    small.load_state_dict(prune_state(state, cmap, kept), strict=True)
    with torch.no_grad():
        after = small.eval()(x)
    assert torch.allclose(before, after, rtol=1e-4, atol=1e-5 * float(before.abs().max()))
