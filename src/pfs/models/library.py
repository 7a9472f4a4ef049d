"""Networks of the libraries users already use, by name: ``torchvision:<name>`` (every CNN classifier of
``torchvision.models``) and ``timm:<name>`` (timm, an optional extra), built at random init.

This module only names and builds the library's own network; pfs.models.structure finds its prunable channel
groups, pfs.models.rebuild builds it at other widths, and pfs.models.libnet wraps it with gates.
"""

from __future__ import annotations

import importlib
from functools import lru_cache

from torch import nn

from pfs.core.catalog import CatalogError, library_parts

TIMM_EXTRA = "pip install 'pfs-pipeline[timm]' (or: pip install timm==1.0.31)"
# torchvision classifiers that are not convolutional networks (attention blocks throughout): refused by name
TORCHVISION_NOT_CNN = ("vit_", "swin_", "maxvit_")
# timm modules (families) whose models are CNNs: what ``pfs list-models`` lists (any other timm name still builds
# when it is a CNN that Torch-Pruning can trace)
TIMM_CNN_MODULES = ("resnet", "efficientnet", "mobilenetv3", "regnet", "convnext", "densenet", "rexnet",
                    "ghostnet", "mobilenetv4", "resnest", "res2net", "dla", "dpn", "vgg", "hrnet", "cspnet", "repvgg")
SEE_LIST = "python -m pfs list-models lists the valid names"
# constructor arguments of torchvision models that would otherwise return more than logits in training (auxiliary
# classifiers) or warn that their default init will change (GoogLeNet: its current init, said explicitly)
TORCHVISION_KWARGS = {"googlenet": {"aux_logits": False, "init_weights": True}, "inception_v3": {"aux_logits": False}}


def _timm():
    try:
        return importlib.import_module("timm")
    except ImportError:
        raise CatalogError(f"timm is not installed, so timm: archs cannot be built; {TIMM_EXTRA}") from None


@lru_cache(maxsize=1)
def torchvision_cnns() -> tuple[str, ...]:
    """Every classification model of torchvision.models that is a CNN, sorted."""
    import torchvision

    names = torchvision.models.list_models(module=torchvision.models)
    return tuple(sorted(n for n in names if not n.startswith(TORCHVISION_NOT_CNN)))


@lru_cache(maxsize=1)
def timm_cnns() -> tuple[str, ...]:
    """timm's models of its CNN families (TIMM_CNN_MODULES), sorted; empty without timm."""
    try:
        timm = importlib.import_module("timm")
    except ImportError:
        return ()
    names: set[str] = set()
    for module in TIMM_CNN_MODULES:
        names.update(timm.list_models(module=module))
    return tuple(sorted(names))


def check_library_name(arch: str) -> tuple[str, str]:
    """(library, model) of a library arch, refusing an unknown model in one line that says how to list them."""
    library, name, _ = library_parts(arch)
    if library == "torchvision":
        if name not in torchvision_cnns():
            raise CatalogError(f"unknown arch {arch!r}: torchvision has no CNN classifier {name!r}; {SEE_LIST}")
    else:
        timm = _timm()
        if not timm.is_model(name):
            raise CatalogError(f"unknown arch {arch!r}: timm has no model {name!r}; {SEE_LIST}")
    return library, name


def library_version(library: str) -> str:
    return importlib.import_module("timm" if library == "timm" else "torchvision").__version__


def build_library_model(arch: str, num_classes: int) -> nn.Module:
    """The library's own network at random init (its own initialisation), with ``num_classes`` outputs; no
    download (no pretrained weights). Seed torch before calling for a reproducible init."""
    library, name = check_library_name(arch)
    if library == "torchvision":
        import torchvision

        return torchvision.models.get_model(name, weights=None, num_classes=num_classes,
                                            **TORCHVISION_KWARGS.get(name, {}))
    return _timm().create_model(name, pretrained=False, num_classes=num_classes)
