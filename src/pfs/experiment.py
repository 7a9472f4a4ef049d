"""The identity of one run (``Experiment``) and stage settings built from a config section (``settings_from``)."""

from __future__ import annotations

import dataclasses
from typing import Any

from pfs.data import dataset_info
from pfs.errors import PfsError
from pfs.models import get_spec


@dataclasses.dataclass(frozen=True)
class Experiment:
    """The identity of one run (it comes from the result path's wildcards)."""

    dataset: str
    arch: str
    seed: int
    expansion: int | None = None  # None: the arch's standard width
    multiplier: float = 1.0

    def __post_init__(self) -> None:
        try:
            spec = get_spec(self.arch)
        except ValueError as exc:  # an unknown arch (the message names the known ones) is the user's to fix
            raise PfsError(str(exc)) from None
        info = dataset_info(self.dataset)
        if self.expansion is not None and self.expansion < 1:
            raise PfsError(f"expansion must be a positive integer, got {self.expansion}")
        if spec.domain == "imagenet" and self.dataset != "imagenet":
            raise PfsError(f"arch {self.arch} is an ImageNet network; dataset {self.dataset} needs a CIFAR arch")
        if spec.domain == "cifar" and info.image_size > 64:
            raise PfsError(f"arch {self.arch} is a CIFAR network; use an ImageNet arch for {self.dataset}")

    @property
    def width(self) -> int:
        return get_spec(self.arch).base_expansion if self.expansion is None else self.expansion


def settings_from(cls, mapping: dict[str, Any], section: str, **extra):
    """Build a frozen settings dataclass from a config section, refusing unknown keys by name."""
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in mapping.items():
        name = "lambda_" if key == "lambda" else key
        if name not in names:
            raise PfsError(f"unknown key {section}.{key}; known: {', '.join(sorted(names - set(extra)))}")
        kwargs[name] = tuple(value) if isinstance(value, list) else value
    return cls(**kwargs, **extra)
