"""pfs.core.paper_macs: the torch-free MACs of the paper archs equal a built network's count (pfs.method.macs)."""

from __future__ import annotations

import random

import pytest

from pfs.core.catalog import ARCHS
from pfs.core.paper_macs import BASE_EXPANSION, default_widths, paper_macs, smallest_widths
from pfs.method.macs import network_cost
from pfs.models import default_widths as model_widths
from pfs.models import get_spec


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_paper_macs_equal_the_built_networks_count(arch):
    rng = random.Random(arch)
    domain = ARCHS[arch].domain
    size = 224 if domain == "imagenet" else rng.choice([16, 32])
    expansion = BASE_EXPANSION[arch] * 5 // 4
    multiplier = 0.75 if ARCHS[arch].backbone_multiplier else 1.0
    assert BASE_EXPANSION[arch] == get_spec(arch).base_expansion
    assert default_widths(arch) == model_widths(arch)
    assert default_widths(arch, expansion) == model_widths(arch, expansion)
    pruned = [rng.randint(1, w) for w in default_widths(arch, expansion)]
    for widths, e, m in ((None, None, 1.0), (pruned, expansion, multiplier)):
        assert paper_macs(arch, size, 7, widths, e, m) == network_cost(arch, size, 7, widths, e, m)["macs"], (e, m)


def test_smallest_widths_respect_the_minimum_rounding_and_units():
    assert smallest_widths([16, 2, 64], 4) == [4, 2, 4]
    assert smallest_widths([16, 2, 64], 3, round_to=8) == [8, 2, 8]  # rounded up, never above the full width
    assert smallest_widths([32, 12], 1, units=[4, 1]) == [4, 1]  # one conv-group of 4 channels
    assert smallest_widths([100, 10], 1, max_layer_ratio=0.9) == [10, 1]
