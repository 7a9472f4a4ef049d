"""Architectures with channel gates, each built from a list of inner widths: the registry (build_model, list_models)
and one family per module.

May import pfs.core only (an arch's facts are pfs.core.catalog's).
"""

from pfs.models import mobilenet, resnet_cifar, resnet_imagenet, vgg  # noqa: F401  (registers the families)
from pfs.models.gate import Gate, GatedNet
from pfs.models.registry import ModelSpec, build_model, default_widths, get_spec, list_models, register_model

__all__ = [
    "Gate", "GatedNet", "ModelSpec", "build_model", "default_widths", "get_spec", "list_models", "register_model",
]
