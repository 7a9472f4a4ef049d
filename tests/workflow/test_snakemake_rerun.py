"""Incremental reruns: a config change reruns exactly the stage it reaches and what depends on it (dry runs).

A change goes in a second --configfile over the tiny config of the shared finished run; ``-n`` plans without
running, so the finished run stays as it was.
"""

from __future__ import annotations

import pytest
from smk_run import planned_jobs

pytestmark = pytest.mark.slow

# change -> the jobs Snakemake must plan (rule -> count); 2 train_pruned = Scratch-E and Scratch-B
RERUNS = {
    "new ratio": ({"grid": {"ratios": [0.6]}}, {"prune": 1, "train_pruned": 2, "summarize": 1, "all": 1}),
    "train.lr": ({"train": {"lr": 0.05}}, {"train_pruned": 2, "train_full": 1, "summarize": 1, "all": 1}),
    "gates.lambda": ({"gates": {"lambda": 0.4}},
                     {"learn_gates": 1, "prune": 1, "train_pruned": 2, "summarize": 1, "all": 1}),
    "prune.tolerance": ({"prune": {"tolerance": 0.02}}, {"prune": 1, "train_pruned": 2, "summarize": 1, "all": 1}),
    "dataset.val_size": ({"dataset": {"val_size": 200}},  # the gate-learning split; training uses all images
                         {"learn_gates": 1, "prune": 1, "train_pruned": 2, "summarize": 1, "all": 1}),
}


@pytest.mark.parametrize("change, expected", RERUNS.values(), ids=RERUNS.keys())
def test_config_change_reruns_exactly_its_stage_and_downstream(finished_run, change, expected):
    planned, output = planned_jobs(finished_run.workdir, change)
    assert planned == expected, output


def test_settings_that_do_not_change_results_rerun_nothing(finished_run):
    """Threads, the checkpoint folder and values restated equal to the current ones (in another key order)."""
    change = {
        "resources": {"threads": 2},
        "checkpoint_dir": "elsewhere",
        "train": {"lr": 0.1, "momentum": 0.9},
        "gates": {"lambda": 0.5, "lr": 0.01},
        "prune": {"min_width": 1},
        "dataset": {"split_seed": 0},
    }
    planned, output = planned_jobs(finished_run.workdir, change)
    assert planned == {}, output
    assert "Nothing to be done" in output
