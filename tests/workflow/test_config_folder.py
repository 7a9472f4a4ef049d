"""The folder dataset's config (dataset.name: folder): the schema's new keys and the values it refuses, the
cross-checks of pfs.workflow.config, the image size the jobs and the memory estimate use; no Snakemake."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from smk_run import config_error as _error
from smk_run import deep_merge

from pfs.core import catalog
from pfs.workflow.config import check_config, check_schema, coerce_overrides, dataset_image_size
from pfs.workflow.memory import job_mem_mb

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "schemas" / "config.schema.yaml"


@pytest.fixture
def folder(tmp_path) -> dict:
    """config.yaml with configs/folder.yaml laid over it (as --configfile does), its root a tree with train/ and
    val/."""
    for split in ("train", "val"):
        (tmp_path / "images" / split).mkdir(parents=True)
    config = deep_merge(yaml.safe_load((REPO / "config.yaml").read_text()),
                        yaml.safe_load((REPO / "configs" / "folder.yaml").read_text()))
    config["dataset"]["root"] = str(tmp_path / "images")
    return config


def test_the_shipped_folder_config_passes_with_archs_of_either_domain(folder):
    check_schema(folder, SCHEMA)
    check_config(folder)
    folder["grid"]["archs"] = ["resnet56", "vgg16_bn", "mobilenet_v2", "resnet50"]
    folder["grid"]["expansions"] = {"resnet56": [20], "vgg16_bn": [80], "mobilenet_v2": [40], "resnet50": [80]}
    check_schema(folder, SCHEMA)
    check_config(folder)


def test_the_schemas_image_size_default_is_the_catalogs():
    dataset = yaml.safe_load(SCHEMA.read_text())["properties"]["dataset"]["properties"]
    assert dataset["image_size"]["default"] == catalog.DEFAULT_IMAGE_SIZE == 64
    assert [dataset[key]["default"] for key in ("val_fraction", "mean", "std")] == [0, None, None]


@pytest.mark.parametrize(("key", "value", "error"), [
    ("image_size", 4, "config dataset.image_size: 4 is less than the minimum of 8"),
    ("image_size", 32.5, "config dataset.image_size: 32.5 is not of type 'integer'"),
    ("val_fraction", 1, "config dataset.val_fraction: 1 is greater than or equal to the maximum of 1"),
    ("val_fraction", -0.1, "config dataset.val_fraction: -0.1 is less than the minimum of 0"),
    ("mean", [0.5, 0.5], "config dataset.mean: [0.5, 0.5]"),
    ("mean", [0.5, 0.5, 1.5], "config dataset.mean"),
    ("std", [0.2, 0, 0.2], "config dataset.std"),
    ("std", "0.2", "config dataset.std"),
])
def test_bad_folder_values_are_schema_errors_naming_the_key(folder, key, value, error):
    folder["dataset"][key] = value
    assert _error(folder).startswith(error)


def test_a_mean_without_a_std_is_refused(folder):
    folder["dataset"]["mean"] = [0.5, 0.5, 0.5]
    assert _error(folder).startswith("dataset.mean and dataset.std go together: give both")
    folder["dataset"]["std"] = [0.2, 0.2, 0.2]
    check_config(folder)


@pytest.mark.parametrize(("key", "value"), [("image_size", 32), ("val_fraction", 0.2), ("mean", [0.5] * 3)])
def test_folder_only_keys_on_another_dataset_are_refused(key, value):
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["dataset"][key] = value
    assert _error(config) == (f"dataset.{key}: only dataset.name: folder takes it (digits has its own image size, "
                              "mean, std and evaluation split); remove it from the config")
    config["dataset"][key] = {"image_size": 64, "val_fraction": 0, "mean": None}[key]  # the defaults pass
    check_config(config)


def test_a_missing_root_is_refused_naming_the_path_and_the_layout(folder, tmp_path):
    folder["dataset"]["root"] = str(tmp_path / "nowhere")
    message = _error(folder)
    assert message.startswith(f"dataset.root: dataset folder not found: {tmp_path / 'nowhere'} does not exist. ")
    assert "train/<class>/<image>" in message and "dataset.val_fraction" in message


def test_command_line_values_get_the_folder_keys_types(folder):
    folder["dataset"] |= {"image_size": "32", "val_fraction": "0.25", "mean": "[0.5, 0.4, 0.3]", "std": "null"}
    coerce_overrides(folder, SCHEMA)
    assert (folder["dataset"]["image_size"], folder["dataset"]["val_fraction"]) == (32, 0.25)
    assert (folder["dataset"]["mean"], folder["dataset"]["std"]) == ([0.5, 0.4, 0.3], None)


def _cpu_at(config: dict, image_size: int) -> dict:
    config = copy.deepcopy(config) | {"device": "cpu"}
    config["dataset"]["image_size"] = image_size
    config["gates"]["batch_size"] = config["train"]["batch_size"] = 128
    return config


def test_jobs_see_the_configured_image_size_and_the_memory_estimate_follows_it(folder):
    assert dataset_image_size(folder) == 64
    assert dataset_image_size(yaml.safe_load((REPO / "config.yaml").read_text())) == 16  # digits: the catalog's
    for stage in ("gates", "train"):  # on CPU, activations grow with the pixels (figures: CIFAR's at 32, ImageNet's)
        sizes = [job_mem_mb(_cpu_at(folder, size), "resnet20", stage, 0) for size in (16, 32, 64, 128)]
        assert sizes[0] == sizes[1] < sizes[2] < sizes[3], sizes
        assert job_mem_mb(_cpu_at(folder, 224), "mobilenet_v2", stage, 0) < job_mem_mb(
            _cpu_at(folder, 448), "mobilenet_v2", stage, 0)
    assert job_mem_mb(folder | {"device": "auto"}, "resnet50", "train", 1) > 1000  # a GPU job: in process, 1 GPU
