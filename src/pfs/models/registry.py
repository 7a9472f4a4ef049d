"""Model registry: ``register_model`` / ``build_model`` / ``list_models`` (timm style).

An arch's facts (domain, backbone multiplier, crop scale) live in pfs.core.catalog; the registry adds its builder and
widths.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from pfs.core.catalog import DOMAIN_CLASSES, CatalogError, arch_info, check_multiplier, is_library_arch
from pfs.models.gate import GatedNet


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
    units: tuple[int, ...] = ()  # channels per pruning unit of each group (library grouped convs); (): all 1


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(*, widths_fn: Callable[[int], list[int]], base_expansion: int):
    """Decorator registering ``builder(widths=None, expansion=..., num_classes=...[, multiplier=...])``.

    The builder is registered under its function name, which must be an arch of pfs.core.catalog.ARCHS: its domain,
    whether it takes ``multiplier`` (the scale of its non-prunable widths) and its smallest ImageNet random-crop
    area come from there.
    """

    def wrap(builder: Callable[..., GatedNet]) -> Callable[..., GatedNet]:
        facts = arch_info(builder.__name__)  # an arch missing from the catalog fails at import, naming it
        _REGISTRY[builder.__name__] = ModelSpec(builder.__name__, builder, widths_fn, base_expansion, facts.domain,
                                                facts.backbone_multiplier, facts.min_crop_scale)
        return builder

    return wrap


def list_models(domain: str | None = None) -> list[str]:
    return sorted(n for n, s in _REGISTRY.items() if domain is None or s.domain == domain)


@lru_cache(maxsize=32)
def library_spec(arch: str) -> ModelSpec:
    # imported here: Torch-Pruning imports torchvision (~2 s), which a training job of pfs's own archs never needs
    from pfs.models.libnet import BASE_EXPANSION, LibraryNet
    from pfs.models.structure import discover

    """The registry's view of a library arch: widths per expansion (percent), its builder."""
    groups = discover(arch).prunable
    if not groups:
        kinds = sorted({g.kind for g in discover(arch).groups})
        hint = "" if arch.endswith("+all") else f"try {arch}+all to prune residual streams and interfaces too, or "
        raise CatalogError(f"{arch} has no prunable channel group (its groups are: {', '.join(kinds) or 'none'}); "
                           f"{hint}pick another arch")

    def widths_fn(expansion: int) -> list[int]:
        return [max(g.unit, round(g.width * expansion / BASE_EXPANSION / g.unit) * g.unit) for g in groups]

    def builder(widths=None, expansion=BASE_EXPANSION, num_classes=10):
        return LibraryNet(arch, widths if widths is not None else widths_fn(expansion), expansion, num_classes)

    return ModelSpec(arch, builder, widths_fn, BASE_EXPANSION, "any", units=tuple(g.unit for g in groups))


def get_spec(name: str) -> ModelSpec:
    arch_info(name)  # an unknown name fails with the catalog's message (a CatalogError: a ValueError and a PfsError)
    if is_library_arch(name):
        return library_spec(name)
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
    check_multiplier(name, multiplier)
    expected = len(spec.widths_fn(expansion))
    if widths is not None:
        widths = [int(w) for w in widths]
        if len(widths) != expected:
            raise ValueError(f"{name} has {expected} prunable groups, got {len(widths)} widths")
        if min(widths) < 1:
            raise ValueError(f"{name}: every width must be >= 1, got {widths}")
        if is_library_arch(name):
            from pfs.models.libnet import check_widths

            check_widths(name, widths)
    num_classes = DOMAIN_CLASSES.get(spec.domain, 1000) if num_classes is None else int(num_classes)
    extra = {"multiplier": multiplier} if spec.backbone_multiplier else {}
    return spec.builder(widths=widths, expansion=expansion, num_classes=num_classes, **extra)
