"""``python -m pfs``: summary (JSON MACs/params, optionally of a pruned channels.yaml) and list-models."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pfs.cli import main
from pfs.method.macs import network_cost
from pfs.models import default_widths, list_models

PRUNED_RESNET56 = [10] * 9 + [20] * 9 + [40] * 9  # e=20 halved


def run_pfs(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pfs", *args], capture_output=True, text=True, timeout=120)


def write_channels(path: Path, **fields) -> Path:
    """A channels.yaml as the prune stage writes it (the fields load_channels checks), with ``fields`` changed."""
    doc = {"kind": "pfs.channels", "format_version": 1, "arch": "resnet56", "dataset": "cifar10", "expansion": 20,
           "multiplier": 1.0, "widths": PRUNED_RESNET56, **fields}
    if "macs" not in fields:
        doc["macs"] = network_cost("resnet56", 32, 10, widths=doc["widths"], expansion=20)["macs"]
    path.write_text(yaml.safe_dump(doc))
    return path


def test_summary_prints_the_standard_networks_cost_as_json():
    proc = run_pfs("summary", "--arch", "resnet56")
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout)
    cost = network_cost("resnet56", 32, 10)
    assert type(answer["macs"]) is int and type(answer["params"]) is int
    assert (answer["macs"], answer["params"]) == (cost["macs"], cost["params"]) == (125_747_840, 855_770)
    assert answer["arch"] == "resnet56" and answer["dataset"] == "cifar10"
    assert answer["expansion"] == 16 and answer["image_size"] == 32
    assert answer["widths"] == default_widths("resnet56")


def test_summary_of_a_channels_file_gives_the_pruned_cost(tmp_path):
    channels = write_channels(tmp_path / "channels.yaml")
    proc = run_pfs("summary", "--arch", "resnet56", "--channels", str(channels))
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout)
    cost = network_cost("resnet56", 32, 10, widths=PRUNED_RESNET56, expansion=20)
    assert (answer["macs"], answer["params"]) == (cost["macs"], cost["params"])
    assert answer["macs"] < network_cost("resnet56", 32, 10, expansion=20)["macs"]
    assert answer["widths"] == PRUNED_RESNET56
    assert answer["expansion"] == 20  # taken from the file


def test_summary_refuses_a_channels_file_of_another_arch_naming_the_flag_to_change(tmp_path, capsys):
    channels = write_channels(tmp_path / "channels.yaml", arch="resnet110")
    assert main(["summary", "--arch", "resnet56", "--channels", str(channels)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (f"error: channels file {channels} was made for arch resnet110, but this run asks for arch "
                   "resnet56: pass --arch resnet110 (or use a channels file made for arch resnet56)\n")


def test_summary_refuses_a_channels_file_of_another_expansion_naming_the_flag_to_change(tmp_path, capsys):
    channels = write_channels(tmp_path / "channels.yaml")
    assert main(["summary", "--arch", "resnet56", "--expansion", "16", "--channels", str(channels)]) == 2
    err = capsys.readouterr().err
    assert "was made for expansion 20, but this run asks for expansion 16: pass --expansion 20" in err
    assert "delete it" not in err  # the file is fine: the flag is what to change


def test_a_channels_file_of_another_multiplier_is_fine_and_the_flag_is_what_to_change(tmp_path, capsys):
    widths = default_widths("mobilenet_v2", 32)
    macs = network_cost("mobilenet_v2", 224, 1000, widths=widths, expansion=32, multiplier=0.35)["macs"]
    channels = write_channels(tmp_path / "channels.yaml", arch="mobilenet_v2", dataset="imagenet", expansion=32,
                              multiplier=0.35, widths=widths, macs=macs)
    flags = ["summary", "--arch", "mobilenet_v2", "--dataset", "imagenet", "--channels", str(channels)]
    assert main([*flags, "--multiplier", "1"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (f"error: channels file {channels} was made for multiplier 0.35, but this run asks for multiplier "
                   "1: pass --multiplier 0.35 (or use a channels file made for multiplier 1)\n")
    assert main([*flags, "--multiplier", "0.35"]) == 0  # the advice works
    assert json.loads(capsys.readouterr().out)["macs"] == macs
    assert main(flags) == 0  # and without the flag the file's multiplier is taken
    assert json.loads(capsys.readouterr().out)["multiplier"] == 0.35


def test_a_channels_file_of_another_dataset_names_the_default_the_run_fell_back_to(tmp_path, capsys):
    macs = network_cost("resnet56", 16, 10, widths=PRUNED_RESNET56, expansion=20)["macs"]
    channels = write_channels(tmp_path / "channels.yaml", dataset="digits", macs=macs)
    assert main(["summary", "--arch", "resnet56", "--channels", str(channels)]) == 2
    assert ("was made for dataset digits, but this run asks for dataset cifar10 (the default of --dataset): pass "
            "--dataset digits") in capsys.readouterr().err
    assert main(["summary", "--arch", "resnet56", "--dataset", "digits", "--channels", str(channels)]) == 0
    assert json.loads(capsys.readouterr().out)["macs"] == macs


def test_the_workflow_keeps_its_remedy_for_a_file_whose_identity_does_not_fit_the_job(tmp_path):
    from pfs.core.errors import PfsError
    from pfs.core.io import REMEDY
    from pfs.stages.artifacts import load_channels
    from pfs.stages.experiment import Experiment

    channels = write_channels(tmp_path / "channels.yaml", expansion=24)
    with pytest.raises(PfsError) as err:  # a training job given a stale file: remaking it is the fix
        load_channels(str(channels), Experiment("cifar10", "resnet56", 0, 20, 1.0))
    assert str(err.value) == f"{channels} was made for expansion=24, but this job needs expansion=20; {REMEDY}"


def test_summary_refuses_widths_wider_than_the_expanded_network(tmp_path, capsys):
    channels = write_channels(tmp_path / "channels.yaml", widths=[21] + PRUNED_RESNET56[1:])
    assert main(["summary", "--arch", "resnet56", "--channels", str(channels)]) == 2
    assert "width 21 of group 0 is outside 1..20" in capsys.readouterr().err


def test_summary_refuses_a_channels_file_whose_macs_disagree_with_its_widths(tmp_path, capsys):
    channels = write_channels(tmp_path / "channels.yaml", macs=12345)
    assert main(["summary", "--arch", "resnet56", "--channels", str(channels)]) == 2
    assert "claims 12345 MACs" in capsys.readouterr().err


@pytest.mark.parametrize(("text", "message"), [
    ("kind: [unclosed\n", "is not valid YAML"),
    ("- 1\n- 2\n", "is not a pfs.channels file (found 'list')"),
    ("kind: pfs.gates\nformat_version: 1\n", "is not a pfs.channels file (found 'pfs.gates')"),
])
def test_summary_refuses_a_malformed_channels_file_with_a_message(tmp_path, capsys, text, message):
    channels = tmp_path / "channels.yaml"
    channels.write_text(text)
    assert main(["summary", "--arch", "resnet56", "--channels", str(channels)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert message in err and str(channels) in err


def test_summary_refuses_a_missing_channels_file_saying_which_file_to_give(tmp_path, capsys):
    assert main(["summary", "--arch", "resnet56", "--channels", str(tmp_path / "nope.yaml")]) == 2
    assert capsys.readouterr().err == (f"error: {tmp_path / 'nope.yaml'} does not exist; give the path of a "
                                       "channels.yaml that a pruning stage wrote (results/.../channels.yaml)\n")


def test_train_refuses_a_missing_job_file_saying_what_to_give(tmp_path, capsys):
    assert main(["train", "--job", str(tmp_path / "job.json")]) == 2
    assert capsys.readouterr().err == (f"error: {tmp_path / 'job.json'} does not exist; give the job "
                                       "(pfs.stages.train.TrainJob) as a JSON object or the path of a file "
                                       "holding one\n")


def test_verify_images_refuses_a_missing_root_naming_the_flag(tmp_path, capsys):
    assert main(["verify-images", "--root", str(tmp_path / "imagenet")]) == 2
    assert capsys.readouterr().err == (f"error: --root {tmp_path / 'imagenet'} does not exist; give the folder that "
                                       "holds train/ and val/\n")


def test_summary_of_an_unknown_arch_fails_naming_it():
    proc = run_pfs("summary", "--arch", "resnet57")
    assert proc.returncode != 0
    assert proc.stdout == ""
    assert "unknown arch 'resnet57'" in proc.stderr and "resnet56" in proc.stderr


def test_summary_on_digits_counts_16x16_images(capsys):
    assert main(["summary", "--arch", "vgg11_bn", "--dataset", "digits"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["image_size"] == 16
    assert answer["macs"] == network_cost("vgg11_bn", 16, 10)["macs"]


def test_list_models_prints_the_registry_as_json(capsys):
    assert main(["list-models"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["pfs"] == list_models()
    assert "torchvision:resnet18" in printed["torchvision"] and "torchvision:vit_b_16" not in printed["torchvision"]
    assert "resnet56" in printed["pfs"] and "vgg16_bn" in printed["pfs"]
    assert "timm:convnext_atto" in printed["timm"]


def test_summary_of_an_imagenet_network_with_a_multiplier():
    proc = run_pfs("summary", "--arch", "mobilenet_v2", "--dataset", "imagenet", "--multiplier", "0.5")
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout)
    assert answer["multiplier"] == 0.5 and answer["image_size"] == 224 and answer["num_classes"] == 1000
    assert answer["macs"] == network_cost("mobilenet_v2", 224, 1000, multiplier=0.5)["macs"]
    assert answer["macs"] < network_cost("mobilenet_v2", 224, 1000)["macs"]


def test_verify_images_names_the_undecodable_files_and_passes_a_clean_tree(tmp_path):
    from PIL import Image

    for split in ("train", "val"):
        for name in ("n01", "n02"):
            (tmp_path / split / name).mkdir(parents=True)
            Image.new("RGB", (20, 16), (9, 99, 199)).save(tmp_path / split / name / "ok.JPEG")
    assert json.loads(run_pfs("verify-images", "--root", str(tmp_path), "--workers", "2").stdout) == {
        "root": str(tmp_path), "images": 4, "unreadable": 0}
    (tmp_path / "val" / "n02" / "bad.JPEG").write_bytes(b"\xff\xd8 not really a jpeg")
    proc = run_pfs("verify-images", "--root", str(tmp_path), "--workers", "2")
    assert proc.returncode == 2
    assert f"error: 1 of 5 images cannot be decoded: {tmp_path / 'val/n02/bad.JPEG'}; remove or replace" in proc.stderr
    assert "verified 5 images" in proc.stderr and "Traceback" not in proc.stderr


def test_verify_images_checks_a_folder_datasets_train_alone(tmp_path):
    from pfs_testkit import write_image_folder

    root = write_image_folder(tmp_path / "images", train_per_class=2)  # no val/ (dataset.val_fraction)
    assert main(["verify-images", "--root", str(root), "--workers", "1"]) == 0
    (root / "train" / "cat" / "bad.png").write_text("not an image")
    assert main(["verify-images", "--root", str(root), "--workers", "1"]) == 2


def test_summary_of_a_folder_dataset_reads_its_size_and_classes_from_its_stats_file(tmp_path, capsys, monkeypatch):
    from pfs.core.catalog import FOLDER_STATS_ENV

    monkeypatch.setenv(FOLDER_STATS_ENV, "")  # --folder-stats names the file in os.environ: undone afterwards
    assert main(["summary", "--arch", "resnet20", "--dataset", "folder"]) == 2
    assert "pass --folder-stats results/folder/lists/stats.yaml" in capsys.readouterr().err
    stats = tmp_path / "stats.yaml"
    stats.write_text(yaml.safe_dump({"kind": "pfs.folder_stats", "format_version": 1, "image_size": 16,
                                     "mean": [0.5] * 3, "std": [0.25] * 3, "num_classes": 3}))
    assert main(["summary", "--arch", "resnet20", "--dataset", "folder", "--folder-stats", str(stats)]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert (answer["image_size"], answer["num_classes"]) == (16, 3)
    assert answer["macs"] == network_cost("resnet20", 16, 3)["macs"]


def test_help_reads_as_plain_text():
    proc = run_pfs("--help")
    assert proc.returncode == 0, proc.stderr
    assert "usage: python -m pfs" in proc.stdout
    assert "Inspect networks, train one under torchrun, check ImageNet trees" in proc.stdout
    assert "``" not in proc.stdout and "`" not in proc.stdout  # no reStructuredText markup in the terminal


def test_summary_of_a_library_network_shows_each_group(capsys):
    assert main(["summary", "--arch", "torchvision:resnet18", "--dataset", "cifar10"]) == 0
    printed = json.loads(capsys.readouterr().out)
    groups = printed["groups"]
    pruned = [g for g in groups if g["pruned"]]
    assert [g["group"] for g in pruned][:2] == ["layer1.0.conv1", "layer1.1.conv1"] and len(pruned) == 8
    assert pruned[0]["layers"] == ["layer1.0.bn1", "layer1.0.conv1", "layer1.0.conv2"]
    assert pruned[0]["gates_after"] == ["layer1.0.bn1"] and pruned[0]["width"] == 64
    assert 0 < pruned[0]["macs_share"] < 0.2 and sum(g["macs_share"] for g in pruned) < 1
    streams = [g for g in groups if not g["pruned"]]
    assert {g["kind"] for g in streams} == {"residual"} and "residual stream" in streams[0]["why_not_pruned"]
    assert printed["image_size"] == 32 and printed["macs"] > 0
