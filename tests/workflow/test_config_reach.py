"""Mistakes refused in one line while the DAG is built: grid ratios no pruning can reach, and names and keys with the
closest valid one suggested (pfs.workflow.config, pfs.workflow.ratios, pfs.core.catalog)."""

from __future__ import annotations

import pytest
from smk_run import TINY_CONFIG, config_error, deep_merge

from pfs.core.catalog import CatalogError, arch_info, dataset_info


@pytest.mark.parametrize(("change", "says"), [
    # the prune stage's own refusal ("0.9306 at most"), now before any job
    ({"grid": {"ratios": [0.5, 0.95]}}, ("grid.ratios: 0.95 cannot be reached by resnet20 at expansion 20 (PFS)",
                                         "prune.min_width=1", "by 0.9306 at most", "lower the ratio")),
    ({"grid": {"ratios": [0.9]}, "prune": {"max_layer_ratio": 0.9}},
     ("grid.ratios: 0.9 cannot be reached", "prune.max_layer_ratio=0.9", "raise prune.max_layer_ratio")),
    ({"grid": {"ratios": [0.9]}, "prune": {"min_width": 4, "round_to": 8}},
     ("prune.min_width=4", "prune.round_to=8", "or lower prune.min_width, or lower prune.round_to")),
    ({"grid": {"ratios": [0.1], "expansions": {"resnet20": [8]}}},
     ("grid.ratios: 0.1 cannot be reached by resnet20 at expansion 8", "already 0.7473 smaller",
      "raise the expansion or the ratio")),
    ({"prune": {"min_width": 30}}, ("prune.min_width=30 exceeds the narrowest group (20 channels) of resnet20",
                                    "set prune.min_width to at most 20")),
    # the baselines prune the standard network: from below the standard width the gates reach further
    ({"grid": {"ratios": [0.96], "expansions": {"resnet20": [12]}, "uniform_baseline": True}},
     ("grid.ratios: 0.96 cannot be reached by resnet20's standard network (uniform)", "by 0.9461 at most")),
])
def test_a_ratio_no_pruning_can_reach_is_refused_before_any_job(change, says):
    message = config_error(deep_merge(TINY_CONFIG, change))
    assert all(s in message for s in says), message


def test_reachable_ratios_pass():
    from pfs.workflow.config import check_ratios

    check_ratios(deep_merge(TINY_CONFIG, {"grid": {"ratios": [0.3, 0.9]}, "dataset": {"name": "digits"}}))


@pytest.mark.parametrize(("change", "says"), [
    ({"train": {"epoch": 7}}, "config train: Additional properties are not allowed ('epoch' was unexpected); did "
                              "you mean 'epochs'?"),
    ({"grdi": {}}, "did you mean 'grid'?"),
    ({"train_by_arch": {"resnet20": {"epoch": 3}}}, "config train_by_arch.resnet20: Additional properties are not "
                                                    "allowed ('epoch' was unexpected); did you mean 'epochs'?"),
    ({"grid": {"archs": ["resnet21"]}}, "config grid.archs.0: 'resnet21' is not valid under any of the given "
                                        "schemas; did you mean 'resnet20'?"),
    ({"grid": {"archs": ["torchvison:resnet18"]}}, "did you mean 'torchvision:resnet18'?"),
    ({"dataset": {"name": "cifar"}}, "did you mean 'cifar10'?"),
])
def test_a_misspelt_key_or_name_gets_the_closest_valid_one(change, says):
    assert says in config_error(deep_merge(TINY_CONFIG, change))


def test_a_key_unlike_any_gets_no_suggestion():
    assert "did you mean" not in config_error(deep_merge(TINY_CONFIG, {"train": {"zzzz": 1}}))


def test_the_catalog_suggests_the_closest_arch_and_dataset():
    with pytest.raises(CatalogError, match=r"unknown arch 'resnet21' \(did you mean 'resnet20'\?\)"):
        arch_info("resnet21")
    with pytest.raises(CatalogError, match=r"unknown dataset 'cifar' \(did you mean 'cifar10'\?\)"):
        dataset_info("cifar")
