"""Whether a held-out accuracy is above chance: the one definition the gate-learning warning, the tables, the
plots and the channels files share (torch-free, so the artifact layer can ask it without importing training)."""

from __future__ import annotations

CHANCE_SIGMAS = 3.0  # a held-out top-1 is clearly above chance beyond this many binomial standard deviations


def chance_line(n: int, num_classes: int, sigmas: float = CHANCE_SIGMAS) -> float:
    """The held-out top-1 that chance (1 / num_classes) on ``n`` images exceeds only rarely: chance plus ``sigmas``
    binomial standard deviations (CIFAR-10, 300 images: 0.152; 5,000 images: 0.113)."""
    chance = 1.0 / num_classes
    return chance + sigmas * (chance * (1 - chance) / max(n, 1)) ** 0.5


def above_chance(top1: float, n: int, num_classes: int, sigmas: float = CHANCE_SIGMAS) -> bool:
    """Whether a top-1 of ``top1`` on ``n`` images is above chance (1 / num_classes) by more than ``sigmas``
    binomial standard deviations: a held-out accuracy that chance alone would rarely give."""
    return top1 > chance_line(n, num_classes, sigmas)


def held_out_size(gates_doc: dict) -> tuple[int, int] | None:
    """(held-out images, classes) that a gates.pt (its loaded dict) evaluated its gates on; None when it records no
    held-out evaluation (random gates)."""
    if gates_doc.get("val_indices") is None or gates_doc.get("num_classes") is None:
        return None
    return len(gates_doc["val_indices"]), int(gates_doc["num_classes"])


def near_chance(gates_doc: dict) -> bool | None:
    """Whether the kept gates of a gates.pt (its loaded dict) are near chance: their held-out top-1 is not
    clearly above it (above_chance). None when it records no held-out evaluation (random gates)."""
    size = held_out_size(gates_doc)
    if size is None or gates_doc.get("val_top1") is None:
        return None
    return not above_chance(float(gates_doc["val_top1"]), *size)
