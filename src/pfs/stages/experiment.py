"""The identity of one run (``Experiment``) and stage settings built from a config section (``settings_from``)."""

from __future__ import annotations

import dataclasses
from typing import Any

from pfs.core.catalog import check_arch_fits, check_multiplier
from pfs.core.errors import PfsError
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
        check_arch_fits(self.arch, self.dataset)  # unknown names, or an arch made for other inputs
        if self.expansion is not None and self.expansion < 1:
            raise PfsError(f"expansion must be a positive integer, got {self.expansion}")
        check_multiplier(self.arch, self.multiplier)

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
