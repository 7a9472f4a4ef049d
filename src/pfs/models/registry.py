"""Model registry: ``register_model`` / ``build_model`` / ``list_models`` (timm style)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pfs.models.gate import GatedNet


@dataclass(frozen=True)
class ModelSpec:
    """What the pipeline needs to know about an architecture without building it."""

    name: str
    builder: Callable[..., GatedNet]
    widths_fn: Callable[[int], list[int]]  # expansion -> default inner widths
    base_expansion: int  # the standard (unexpanded) width setting; pruning ratios are measured against it
    domain: str  # "cifar" (32x32 inputs) or "imagenet" (224x224)


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(*, widths_fn: Callable[[int], list[int]], base_expansion: int, domain: str = "cifar"):
    """Decorator registering ``builder(widths=None, expansion=..., num_classes=...)`` under its function name."""

    def wrap(builder: Callable[..., GatedNet]) -> Callable[..., GatedNet]:
        _REGISTRY[builder.__name__] = ModelSpec(builder.__name__, builder, widths_fn, base_expansion, domain)
        return builder

    return wrap


def list_models(domain: str | None = None) -> list[str]:
    return sorted(n for n, s in _REGISTRY.items() if domain is None or s.domain == domain)


def get_spec(name: str) -> ModelSpec:
    if name not in _REGISTRY:
        raise ValueError(f"unknown arch {name!r}; known: {', '.join(list_models())}")
    return _REGISTRY[name]


def default_widths(name: str, expansion: int | None = None) -> list[int]:
    """Inner widths of ``name`` at ``expansion`` (default: the arch's standard width)."""
    spec = get_spec(name)
    return spec.widths_fn(spec.base_expansion if expansion is None else expansion)


def build_model(name: str, widths: list[int] | None = None, expansion: int | None = None, num_classes: int = 10):
    """Build ``name`` with inner ``widths`` (default: full width at ``expansion``)."""
    spec = get_spec(name)
    expansion = spec.base_expansion if expansion is None else int(expansion)
    if expansion < 1:
        raise ValueError(f"expansion must be a positive integer, got {expansion}")
    expected = len(spec.widths_fn(expansion))
    if widths is not None:
        widths = [int(w) for w in widths]
        if len(widths) != expected:
            raise ValueError(f"{name} has {expected} prunable groups, got {len(widths)} widths")
        if min(widths) < 1:
            raise ValueError(f"{name}: every width must be >= 1, got {widths}")
    return spec.builder(widths=widths, expansion=expansion, num_classes=num_classes)
