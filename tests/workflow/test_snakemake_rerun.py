"""Incremental reruns: a config change reruns exactly the stage it reaches and what depends on it (dry runs).

A change goes in a second --configfile over the tiny config of the shared finished run; ``-n`` plans without
running, so the finished run stays as it was.
"""

from __future__ import annotations

import concurrent.futures
import shutil

import pytest
import yaml
from smk_run import REPO, SUMMARY_JOBS, deep_merge, planned_jobs

pytestmark = pytest.mark.slow

# change -> the jobs Snakemake must plan (rule -> count); 2 train_pruned = Scratch-E and Scratch-B
RERUNS = {
    "new ratio": ({"grid": {"ratios": [0.6]}}, {"prune": 1, "train_pruned": 2, **SUMMARY_JOBS}),
    "train.lr": ({"train": {"lr": 0.05}}, {"train_pruned": 2, "train_full": 1, **SUMMARY_JOBS}),
    "gates.lambda": ({"gates": {"lambda": 0.4}},
                     {"learn_gates": 1, "prune": 1, "train_pruned": 2, **SUMMARY_JOBS}),
    "prune.tolerance": ({"prune": {"tolerance": 0.02}}, {"prune": 1, "train_pruned": 2, **SUMMARY_JOBS}),
    "dataset.val_size": ({"dataset": {"val_size": 200}},  # the gate-learning split; training uses all images
                         {"learn_gates": 1, "prune": 1, "train_pruned": 2, **SUMMARY_JOBS}),
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
        "gates": {"lambda": 0.5, "lr": 0.1},
        "prune": {"min_width": 1},
        "dataset": {"split_seed": 0},
    }
    planned, output = planned_jobs(finished_run.workdir, change)
    assert planned == {}, output
    assert "Nothing to be done" in output


# ---------------------------------------------------------------- every config key


GATES_DOWN = {"learn_gates": 1, "prune": 1, "train_pruned": 2, **SUMMARY_JOBS}
PRUNE_DOWN = {"prune": 1, "train_pruned": 2, **SUMMARY_JOBS}
TRAINING = {"train_pruned": 2, "train_full": 1, **SUMMARY_JOBS}
NOTHING: dict[str, int] = {}
NEW_GRID_POINT = {"learn_gates": 1, "prune": 1, "train_pruned": 2, **SUMMARY_JOBS}

# every key of the schema (section.key) -> (a new value, the jobs it must plan); values that locate or size a job
# (paths, workers, threads, device, cluster resources) change no result and rerun nothing
KEY_RERUNS = {
    "dataset.root": ("elsewhere", NOTHING),  # digits is embedded; for CIFAR/ImageNet it is a location too
    "dataset.download": (True, NOTHING),
    "dataset.check_md5": (False, NOTHING),
    "dataset.val_size": (200, GATES_DOWN),
    "dataset.val_per_class": (10, NOTHING),  # ImageNet only
    "dataset.split_seed": (1, GATES_DOWN),
    "dataset.num_workers": (1, NOTHING),
    "grid.archs": (["resnet20", "resnet32"], {**NEW_GRID_POINT, "train_full": 1},
                   {"grid": {"expansions": {"resnet20": [20], "resnet32": [20]}}}),
    "grid.expansions": ({"resnet20": [20, 24]}, NEW_GRID_POINT),
    "grid.multipliers": ({"resnet20": [1]}, NOTHING),  # 1 is what an arch without an entry gets
    "grid.sparsities": ([0.5, 0.4], NEW_GRID_POINT),
    "grid.ratios": ([0.5, 0.6], {"prune": 1, "train_pruned": 2, **SUMMARY_JOBS}),
    "grid.seeds": ([0, 1], {**NEW_GRID_POINT, "train_full": 1}),
    "grid.schedules": (["scratch_e"], dict(SUMMARY_JOBS)),  # fewer runs: only the summary changes
    "grid.full_baseline": (False, dict(SUMMARY_JOBS)),
    "grid.uniform_baseline": (True, {"prune_uniform": 1, "train_uniform": 2, **SUMMARY_JOBS}),
    "grid.random_gates": (True, {"random_gates": 1, "prune_random": 1, "train_random": 2, **SUMMARY_JOBS}),
    "grid.export": (True, {"export": 3, "all": 1}),  # model.onnx beside each trained model; nothing else reruns
    "grid.pretrained_baseline": (True, {"prune_l1": 1, "finetune_l1": 1, "train_l1": 2, **SUMMARY_JOBS}),
    "grid.slimming_baseline": (True, {"train_sparse": 1, "prune_slim": 1, "finetune_slim": 1, "train_slim": 2,
                                      **SUMMARY_JOBS}),
    # a param of train_sparse only (config.sparse_settings): with the baseline off no job reads it; with it on it
    # reruns the whole slimming chain (tests/workflow/test_slimming_baseline.py)
    "slimming.s": (0.001, NOTHING),
    "gates.epochs": (2, GATES_DOWN),
    "gates.lr": (0.02, GATES_DOWN),
    "gates.lambda": (0.4, GATES_DOWN),
    "gates.batch_size": (64, GATES_DOWN),
    "gates.eval_batch_size": (100, GATES_DOWN),  # a learn_gates param (evaluation is exact at any batch size)
    "gates.eval_interval": (5, GATES_DOWN),
    "prune.min_width": (2, PRUNE_DOWN),
    "prune.tolerance": (0.02, PRUNE_DOWN),
    "prune.max_fill": (0, PRUNE_DOWN),
    "prune.round_to": (2, PRUNE_DOWN),
    "prune.max_layer_ratio": (0.95, PRUNE_DOWN),
    **{f"train.{key}": (value, TRAINING) for key, value in {
        "epochs": 2, "batch_size": 64, "eval_batch_size": 100, "optimizer": "sgd", "lr": 0.05, "momentum": 0.8,
        "nesterov": True, "weight_decay": 0.0005, "weight_decay_on": "conv_linear", "scheduler": "cosine",
        "milestones": [0.4], "gamma": 0.2, "label_smoothing": 0.1, "amp": True, "scratch_b_epochs": 3,
        "device_data": "always", "channels_last": False, "compile": True,
    }.items() if key != "optimizer"},
    "train.optimizer": ("sgd", NOTHING),  # the only optimiser: restating it changes nothing
    "train_by_arch": ({"resnet20": {"lr": 0.05}}, TRAINING),
    "references": ("", dict(SUMMARY_JOBS)),  # the comparison table (and its stars in the accuracy plot) only
    "device": ("cpu", NOTHING),
    # how gate learning and training compute (pfs.core.numerics): other last digits, so both rerun, and what follows
    "numerics.mode": ("pinned", {**GATES_DOWN, "train_full": 1}),
    "checkpoint_dir": ("elsewhere", NOTHING),
    **{f"resources.{key}": (value, NOTHING) for key, value in
       {"gpu": 0, "threads": 2, "mem_mb": 2000, "runtime": 60, "retries": 1}.items()},
}
NOT_HERE = {"dataset.name": "another dataset is another grid (tests/workflow/test_snakemake_errors.py)",
            # ImageNet only: refused on digits before the DAG is built (tests/test_workflow_config.py); like every
            # train.* key it is a training param (train_settings), so on ImageNet it reruns training only
            "train.color_augment": "refused outside ImageNet (tests/test_workflow_config.py)",
            # ImageNet only (refused on digits); read by list preparation's script, not a param: on ImageNet it
            # reruns nothing (tests/workflow/test_imagenet_run.py runs it)
            "dataset.verify_images": "refused outside ImageNet (tests/test_workflow_config.py)",
            # folder datasets only (refused on digits: tests/workflow/test_config_folder.py); a param of list
            # preparation, so a change remakes the index and stats.yaml and reruns everything
            # (tests/workflow/test_library_run.py plans it for image_size)
            **{f"dataset.{key}": "folder datasets only (tests/workflow/test_library_run.py)"
               for key in ("image_size", "val_fraction", "mean", "std")},
            # fine-tuning runs only with grid.pretrained_baseline (or slimming_baseline): test_classic_baseline.py
            **{f"finetune.{key}": "only with grid.pretrained_baseline (tests/workflow/test_classic_baseline.py)"
               for key in ("epochs", "batch_size", "lr", "scheduler", "milestones", "gamma", "weight_decay")}}


def _schema_keys() -> set[str]:
    schema = yaml.safe_load((REPO / "schemas" / "config.schema.yaml").read_text())
    keys = set()
    for name, prop in schema["properties"].items():
        inner = prop.get("properties")
        keys |= {f"{name}.{key}" for key in inner} if inner else {name}
    return keys


def test_the_rerun_table_covers_every_config_key():
    assert set(KEY_RERUNS) | set(NOT_HERE) == _schema_keys()


def _change(key: str, value, also: dict | None = None) -> dict:
    section, _, name = key.partition(".")
    change = {section: {name: value}} if name else {section: value}
    return deep_merge(change, also or {})


@pytest.fixture(scope="module")
def key_plans(finished_run) -> dict[str, tuple[dict[str, int], str]]:
    """The dry run of every KEY_RERUNS change, a few at a time (each waits mostly on its own interpreter start and
    parse: about 3 s each, 60 of them)."""

    def plan(key: str):
        value, _, *also = KEY_RERUNS[key]  # also: a change the new value needs beside it
        return planned_jobs(finished_run.workdir, _change(key, value, *also), f"change-{key}.yaml")

    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
        return dict(zip(sorted(KEY_RERUNS), pool.map(plan, sorted(KEY_RERUNS)), strict=True))


@pytest.mark.parametrize("key", sorted(KEY_RERUNS))
def test_each_config_key_reruns_exactly_what_it_changes(key_plans, key):
    planned, output = key_plans[key]
    assert planned == KEY_RERUNS[key][1], output


@pytest.mark.parametrize("script, expected", [
    ("prune.py", PRUNE_DOWN),
    ("summarize.py", dict(SUMMARY_JOBS)),
    ("train.py", {"train_pruned": 2, "train_full": 1, **SUMMARY_JOBS}),  # one script for every training rule
])
def test_editing_a_workflow_script_reruns_only_its_stage(finished_run, tmp_path, script, expected):
    workdir = tmp_path / "wf"
    shutil.copytree(finished_run.workdir, workdir, symlinks=True)
    path = workdir / "workflow_scripts" / script
    path.write_text(path.read_text() + "\n# edited\n")
    planned, output = planned_jobs(workdir, {})
    assert planned == expected, output
