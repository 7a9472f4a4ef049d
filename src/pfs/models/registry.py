"""Model registry: ``register_model`` / ``build_model`` / ``list_models`` (timm style)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pfs.models.gate import GatedNet

DEFAULT_CLASSES = {"cifar": 10, "imagenet": 1000}  # num_classes when build_model is not given one


@dataclass(frozen=True)
class ModelSpec:
    """What the pipeline needs to know about an architecture without building it."""

    name: str
    builder: Callable[..., GatedNet]
    widths_fn: Callable[[int], list[int]]  # expansion -> default inner widths
    base_expansion: int  # the standard (unexpanded) width setting; pruning ratios are measured against it
    domain: str  # "cifar" (32x32 inputs) or "imagenet" (224x224)
    backbone_multiplier: bool = False  # whether the builder takes ``multiplier`` (scales the unpruned widths)
    min_crop_scale: float = 0.08  # ImageNet training: smallest RandomResizedCrop area (official: 0.25 MobileNets)


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(*, widths_fn: Callable[[int], list[int]], base_expansion: int, domain: str = "cifar",
                   backbone_multiplier: bool = False, min_crop_scale: float = 0.08):
    """Decorator registering ``builder(widths=None, expansion=..., num_classes=...[, multiplier=...])``.

    The builder is registered under its function name; ``backbone_multiplier=True`` says it also takes
    ``multiplier`` (the scale of its non-prunable widths). ``min_crop_scale`` is the smallest random-crop area
    of the arch's ImageNet training augmentation.
    """
    if domain not in DEFAULT_CLASSES:
        raise ValueError(f"unknown domain {domain!r}; known: {', '.join(DEFAULT_CLASSES)}")

    def wrap(builder: Callable[..., GatedNet]) -> Callable[..., GatedNet]:
        _REGISTRY[builder.__name__] = ModelSpec(builder.__name__, builder, widths_fn, base_expansion, domain,
                                                backbone_multiplier, min_crop_scale)
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


def build_model(name: str, widths: list[int] | None = None, expansion: int | None = None,
                num_classes: int | None = None, multiplier: float = 1.0) -> GatedNet:
    """Build ``name`` with inner ``widths`` (default: full width at ``expansion``).

    Args:
        num_classes: default 10 for CIFAR archs, 1000 for ImageNet archs.
        multiplier: scale of the non-prunable backbone widths (ImageNet ResNet-50 and MobileNetV2 only);
            archs without such a backbone refuse anything but 1.
    """
    spec = get_spec(name)
    expansion = spec.base_expansion if expansion is None else int(expansion)
    if expansion < 1:
        raise ValueError(f"expansion must be a positive integer, got {expansion}")
    multiplier = float(multiplier)
    if not multiplier > 0:
        raise ValueError(f"multiplier must be > 0, got {multiplier}")
    if multiplier != 1.0 and not spec.backbone_multiplier:
        with_one = [n for n in list_models() if get_spec(n).backbone_multiplier]
        raise ValueError(f"{name} has no backbone multiplier (every width it has is set by expansion/widths); "
                         f"multiplier must be 1, got {multiplier} (archs that take one: {', '.join(with_one)})")
    expected = len(spec.widths_fn(expansion))
    if widths is not None:
        widths = [int(w) for w in widths]
        if len(widths) != expected:
            raise ValueError(f"{name} has {expected} prunable groups, got {len(widths)} widths")
        if min(widths) < 1:
            raise ValueError(f"{name}: every width must be >= 1, got {widths}")
    num_classes = DEFAULT_CLASSES[spec.domain] if num_classes is None else int(num_classes)
    extra = {"multiplier": multiplier} if spec.backbone_multiplier else {}
    return spec.builder(widths=widths, expansion=expansion, num_classes=num_classes, **extra)
