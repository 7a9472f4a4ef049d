"""The workflow's torch-free config helpers (pfs.workflow.config, pfs.core.grid): schema errors, cross-checks, the grid,
per-arch train settings. Imported by rules/config.smk, they are tested here without Snakemake."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import yaml
from smk_run import config_error as _error

from pfs.core import catalog
from pfs.core.grid import pruned_runs, random_runs
from pfs.models import get_spec, list_models
from pfs.workflow.config import (
    ConfigError,
    check_config,
    check_output_folders,
    check_schema,
    coerce_overrides,
    train_settings,
)

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "schemas" / "config.schema.yaml"


@pytest.fixture
def default() -> dict:
    return yaml.safe_load((REPO / "config.yaml").read_text())


@pytest.fixture
def imagenet(tmp_path) -> dict:
    config = yaml.safe_load((REPO / "configs" / "paper_imagenet.yaml").read_text())
    for split in ("train", "val"):
        (tmp_path / "imagenet" / split).mkdir(parents=True)
    config["dataset"]["root"] = str(tmp_path / "imagenet")
    return config


def test_the_catalog_the_registry_and_the_schema_list_the_same_archs_and_datasets():
    assert list_models() == catalog.arch_names()  # every registered builder has its facts, and no fact lacks one
    for name in list_models():
        spec, facts = get_spec(name), catalog.arch_info(name)
        assert (spec.domain, spec.backbone_multiplier, spec.min_crop_scale) == (
            facts.domain, facts.backbone_multiplier, facts.min_crop_scale)
    schema = yaml.safe_load(SCHEMA.read_text())["properties"]
    assert sorted(schema["grid"]["properties"]["archs"]["items"]["anyOf"][0]["enum"]) == catalog.arch_names()
    assert schema["dataset"]["properties"]["name"]["enum"] == list(catalog.DATASETS)


@pytest.mark.parametrize("name", ["config.yaml", "configs/paper_cifar10.yaml", "configs/paper_imagenet.yaml"])
def test_shipped_configs_pass_the_schema(name):
    check_schema(yaml.safe_load((REPO / name).read_text()), SCHEMA)


@pytest.mark.parametrize("name", ["configs/paper_cifar10.yaml", "configs/paper_imagenet.yaml"])
def test_paper_configs_prune_without_a_layer_cap_though_config_yaml_sets_one(name, default):
    # a paper config is layered over config.yaml (Snakemake merges --configfile into the Snakefile's configfile)
    assert default["prune"]["max_layer_ratio"] == 0.9
    assert yaml.safe_load((REPO / name).read_text())["prune"]["max_layer_ratio"] == 1.0  # the paper's: no cap


def test_paper_imagenet_grid_has_every_arch_and_the_official_recipe(imagenet):
    check_config(imagenet)
    runs = pruned_runs(imagenet)
    assert sorted({r["arch"] for r in runs}) == catalog.arch_names("imagenet")
    assert {(r["arch"], r["expansion"], r["multiplier"]) for r in runs} == {
        ("mobilenet_v1", "40", "1"), ("mobilenet_v2", "40", "1"), ("resnet50", "80", "1")}
    mbv2, r50 = train_settings(imagenet, "mobilenet_v2"), train_settings(imagenet, "resnet50")
    assert (mbv2["scheduler"], mbv2["scratch_b_epochs"]) == ("cosine", 300)
    assert (r50["scheduler"], r50["scratch_b_epochs"], r50["milestones"]) == ("multistep", 200, [0.3, 0.6, 0.9])
    assert mbv2["nesterov"] and mbv2["label_smoothing"] == 0.1 and mbv2["weight_decay_on"] == "conv_linear"
    gates = imagenet["gates"]
    assert (gates["eval_interval"], gates["lambda"], gates["epochs"]) == (500, 0.05, 1)


def test_train_settings_are_sorted_so_key_order_never_reruns_a_job(default):
    config = copy.deepcopy(default)
    config["train"] = dict(reversed(list(config["train"].items())))
    assert list(train_settings(config, "resnet20")) == sorted(default["train"])
    assert train_settings(config, "resnet20") == train_settings(default, "resnet20")


def test_multipliers_enter_the_grid_in_canonical_form(imagenet):
    imagenet["grid"]["multipliers"] = {"mobilenet_v2": [0.75, 1.0, 1.3]}
    got = sorted({(r["arch"], r["multiplier"]) for r in pruned_runs(imagenet)})
    assert ("mobilenet_v2", "0.75") in got and ("mobilenet_v2", "1") in got and ("mobilenet_v2", "1.3") in got
    assert ("resnet50", "1") in got  # no entry: [1]


def test_a_multiplier_on_an_arch_without_a_backbone_is_refused(imagenet):
    imagenet["grid"]["multipliers"]["mobilenet_v1"] = [0.5]
    assert "grid.multipliers.mobilenet_v1" in _error(imagenet) and "mobilenet_v2, resnet50" in _error(imagenet)


def test_cifar_arch_on_imagenet_and_imagenet_arch_on_cifar_are_refused(imagenet, default):
    imagenet["grid"]["archs"] = ["resnet56"]
    imagenet["grid"]["expansions"] = {"resnet56": [20]}
    assert "resnet56 is a CIFAR network; dataset imagenet" in _error(imagenet)
    default["grid"]["archs"] = ["resnet50"]
    default["grid"]["expansions"] = {"resnet50": [80]}
    assert "resnet50 is an ImageNet network; dataset digits" in _error(default)


@pytest.mark.parametrize("missing", ["train", "val"])
def test_an_imagenet_root_without_train_or_val_is_refused(imagenet, missing):
    (Path(imagenet["dataset"]["root"]) / missing).rmdir()
    message = _error(imagenet)
    assert f"lacks {missing}/" in message and "dataset.root" in message


def test_train_by_arch_entries_are_checked_against_the_train_schema(imagenet):
    imagenet["train_by_arch"]["resnet50"]["schedulr"] = "cosine"
    assert "config train_by_arch.resnet50: Additional properties" in _error(imagenet)
    imagenet["train_by_arch"]["resnet50"] = {"scheduler": "step"}
    assert "train_by_arch.resnet50.scheduler" in _error(imagenet)


def test_train_by_arch_entry_of_an_arch_not_in_the_grid_is_ignored(default):
    default["train_by_arch"] = {"vgg16_bn": {"lr": 0.05}}
    check_schema(default, SCHEMA)
    assert train_settings(default, "resnet20")["lr"] == default["train"]["lr"]


def test_negative_eval_interval_and_zero_multiplier_are_schema_errors(imagenet):
    bad = copy.deepcopy(imagenet)
    bad["gates"]["eval_interval"] = -1
    assert "gates.eval_interval" in _error(bad)
    imagenet["grid"]["multipliers"]["resnet50"] = [0]
    assert "grid.multipliers.resnet50" in _error(imagenet)


def test_building_the_dag_imports_no_torch():
    """rules/config.smk imports pfs.workflow.config and pfs.core.grid while Snakemake parses the workflow: torch would
    add seconds to
    every dry run and every job submission."""
    import subprocess
    import sys

    code = ("import sys, pfs.workflow.config, pfs.core.grid, pfs.results.references; "
            "print('torch' in sys.modules, 'torchvision' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_an_output_folder_that_is_a_file_or_not_writable_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    check_output_folders(["results", "logs"])  # missing folders are made by the run
    (tmp_path / "results").write_text("")
    with pytest.raises(ConfigError, match="results is a file, but the workflow writes its outputs under results/"):
        check_output_folders(["results"])
    (tmp_path / "logs").mkdir()
    check_output_folders(["logs"])
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # root writes anywhere: a chmod would not show it
    with pytest.raises(ConfigError, match=r"logs/ is not writable by this user: make it writable \(chmod u\+w logs\)"):
        check_output_folders(["logs"])


def test_random_gates_runs_follow_the_gate_learning_grid_without_sparsity(default):
    default["grid"]["random_gates"] = False
    assert random_runs(default) == []  # off unless grid.random_gates
    default["grid"].update(random_gates=True, seeds=[0, 1], ratios=[0.5, 0.7], schedules=["scratch_b"])
    runs = random_runs(default)
    assert len(runs) == 4 and all("sparsity" not in r for r in runs)
    assert {(r["seed"], r["ratio"], r["schedule"]) for r in runs} == {
        (s, p, "scratch_b") for s in ("0", "1") for p in ("0.5", "0.7")}
    assert {(r["arch"], r["expansion"], r["multiplier"]) for r in runs} == {("resnet20", "20", "1")}


def test_a_bad_references_file_is_refused_before_the_dag(default, tmp_path):
    default["references"] = str(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="config references: references file .*missing.yaml does not exist"):
        check_config(default)
    bad = tmp_path / "bad.yaml"
    bad.write_text("format_version: 1\nreferences:\n  - {dataset: cifar10, arch: resnet56, method: X, ratio: 0.5}\n")
    default["references"] = str(bad)
    with pytest.raises(ConfigError, match="references.0: 'top1' is a required property"):
        check_config(default)
    default["references"] = ""
    check_config(default)  # none configured


def test_every_training_rule_gets_the_early_term_signal_under_the_slurm_profile():
    """A training rule missing from profiles/slurm would be killed at its time limit without a checkpoint."""
    import re

    # one rule defined, the others reuse it (use rule ... as), the classic baselines' in classic.smk
    text = "".join((REPO / "rules" / name).read_text() for name in ("train.smk", "classic.smk"))
    rules = set(re.findall(r"^rule (train_\w+):", text, re.M)) | set(
        re.findall(r"^use rule train_pruned as (\w+)", text, re.M))
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    assert rules == {"train_pruned", "train_full", "train_uniform", "train_random", "finetune_l1", "train_l1",
                     "train_sparse", "finetune_slim", "train_slim"}
    assert {rule: profile["set-resources"].get(rule) for rule in rules} == {
        rule: {"slurm_extra": "'--signal=TERM@300'"} for rule in rules}


def test_colour_augmentation_outside_imagenet_is_refused_before_the_dag(default):
    config = {**default, "train": {**default["train"], "color_augment": True}}
    with pytest.raises(ConfigError, match="train.color_augment: .*dataset digits .*set train.color_augment: false"):
        check_config(config)
    by_arch = {**default, "train_by_arch": {"resnet20": {"color_augment": True}}}
    with pytest.raises(ConfigError, match="train.color_augment"):
        check_config(by_arch)


def test_verify_images_is_refused_for_datasets_not_read_from_image_files(default, imagenet):
    default["dataset"]["verify_images"] = True
    assert _error(default).startswith("dataset.verify_images: digits is not read from image files")
    imagenet["dataset"]["verify_images"] = True
    check_config(imagenet)


# ---------------------------------------------------------------- --config overrides (coerce_overrides)
# Snakemake reads --config train='{epochs: 6}' with YAML's base loader: every nested value arrives as a string


def _override(default: dict, section: str, given: dict) -> dict:
    """``default`` with the section as Snakemake gives it for --config section='{...}' (strings), then coerced."""
    config = copy.deepcopy(default)
    config[section] = {**config.get(section, {}), **given}
    return coerce_overrides(config, SCHEMA)


@pytest.mark.parametrize(("section", "given", "expected"), [
    ("train", {"epochs": "6"}, {"epochs": 6}),  # integer
    ("gates", {"lr": "0.05", "lambda": "1"}, {"lr": 0.05, "lambda": 1}),  # number (an integer is a number)
    ("train", {"weight_decay": "1e-4"}, {"weight_decay": 1e-4}),  # number YAML 1.1 reads as a string
    ("train", {"nesterov": "true", "amp": "False"}, {"nesterov": True, "amp": False}),  # boolean
    ("train", {"milestones": ["0.3", "0.6"]}, {"milestones": [0.3, 0.6]}),  # array of numbers
    ("train", {"milestones": "[0.3, 0.6]"}, {"milestones": [0.3, 0.6]}),  # array given as one string
    ("grid", {"seeds": ["0", "1"], "full_baseline": "false"}, {"seeds": [0, 1], "full_baseline": False}),
    ("grid", {"expansions": {"resnet20": ["8", "20"]}}, {"expansions": {"resnet20": [8, 20]}}),
    ("resources", {"mem_mb": "8000"}, {"mem_mb": 8000}),  # an integer or 'auto'
    ("resources", {"mem_mb": "auto"}, {"mem_mb": "auto"}),
    ("dataset", {"root": "/datasets/123"}, {"root": "/datasets/123"}),  # a string stays a string
    ("train", {"scheduler": "cosine"}, {"scheduler": "cosine"}),
])
def test_nested_command_line_values_get_the_schemas_types(default, section, given, expected):
    config = _override(default, section, given)
    assert {key: config[section][key] for key in expected} == expected
    for key, value in expected.items():
        assert type(config[section][key]) is type(value)
    check_schema(config, SCHEMA)


def test_a_train_by_arch_entry_gets_the_train_sections_types(default):
    config = _override(default, "train_by_arch", {"resnet20": {"lr": "0.05", "epochs": "3", "nesterov": "yes",
                                                               "milestones": ["0.5"]}})
    assert config["train_by_arch"]["resnet20"] == {"lr": 0.05, "epochs": 3, "nesterov": True, "milestones": [0.5]}
    check_schema(config, SCHEMA)
    assert train_settings(config, "resnet20")["epochs"] == 3


def test_a_null_where_the_schema_allows_one_is_read_as_none():
    schema = {"type": "object", "properties": {"limit": {"type": ["integer", "null"]}}}
    assert coerce_overrides({"limit": "null"}, schema) == {"limit": None}
    assert coerce_overrides({"limit": "~"}, schema) == {"limit": None}
    assert coerce_overrides({"limit": "7"}, schema) == {"limit": 7}


@pytest.mark.parametrize(("section", "given", "error"), [
    ("train", {"epochs": "six"}, "config train.epochs: 'six' is not of type 'integer'"),
    ("train", {"epochs": "6.5"}, "config train.epochs: '6.5' is not of type 'integer'"),
    ("train", {"nesterov": "maybe"}, "config train.nesterov: 'maybe' is not of type 'boolean'"),
    ("gates", {"lr": "fast"}, "config gates.lr: 'fast' is not of type 'number'"),
    ("train", {"epochs": "0"}, "config train.epochs: 0 is less than the minimum of 1"),  # typed, then checked
])
def test_a_value_that_does_not_read_as_the_schemas_type_is_named_by_the_schema_check(default, section, given, error):
    config = _override(default, section, given)
    with pytest.raises(ConfigError) as info:
        check_schema(config, SCHEMA)
    message = str(info.value)
    assert message.startswith(error) and "fix it in the config file or --config" in message, message
