"""A torchvision network on a folder of one's own images, end to end in one real Snakemake run (slow):
torchvision:resnet18 at 16x16 on a generated tree of PNGs (3 classes x 12 images of 20x18 px, no val/: a
val_fraction hold-out), from list preparation (index tables, mean and std at the image size) through every baseline
(full, uniform, random gates, L1 with fine-tuning, network slimming), then the pruned network exported; a rerun has
nothing to do, a changed ratio plans only pruning and training, another image size everything, and an empty class
folder is refused while the DAG is built. Beside it, the one-line refusals of a bad library arch."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
import yaml
from pfs_testkit import write_image_folder
from smk_run import SUMMARY_JOBS, copy_workflow, error_lines, job_counts, planned_jobs, snakemake, tail

ARCH = "torchvision:resnet18"
EXP = f"results/folder/{ARCH}/e100_m1/s0.5/seed0"
CONFIG = {
    "dataset": {"name": "folder", "image_size": 16, "val_fraction": 0.25, "val_per_class": 2},
    "grid": {"archs": [ARCH], "expansions": {ARCH: [100]}, "schedules": ["scratch_e"], "full_baseline": True,
             "uniform_baseline": True, "random_gates": True, "pretrained_baseline": True, "slimming_baseline": True},
    "gates": {"epochs": 1, "batch_size": 16},
    "train": {"epochs": 1, "batch_size": 16},
    "finetune": {"epochs": 1, "batch_size": 16},
}
PRUNING = {"prune": 1, "prune_uniform": 1, "prune_random": 1, "prune_l1": 1, "prune_slim": 1}
TRAINING = {"train_pruned": 1, "train_uniform": 1, "train_random": 1, "train_l1": 1, "finetune_l1": 1,
            "train_slim": 1, "finetune_slim": 1}


@pytest.mark.slow
def test_torchvision_resnet18_on_a_folder_of_images_with_every_baseline(tmp_path):
    root = write_image_folder(tmp_path / "images", train_per_class=12, size=(20, 18))
    workdir = copy_workflow(tmp_path / "wf", {**CONFIG, "dataset": {**CONFIG["dataset"], "root": str(root)}})
    result = snakemake(workdir, "--cores", "2", "--configfile", "tiny.yaml")
    assert result.returncode == 0, tail(result.stdout)
    assert job_counts(result.stdout) == {
        "prepare_folder_list": 1, "learn_gates": 1, "random_gates": 1, "train_full": 1, "train_sparse": 1,
        **PRUNING, **TRAINING, **SUMMARY_JOBS}
    train, val = (pd.read_csv(workdir / "results/folder/lists" / f"{split}.csv") for split in ("train", "val"))
    assert (len(train), len(val), sorted(val["class_name"].unique())) == (27, 9, ["cat", "dog", "emu"])
    stats = yaml.safe_load((workdir / "results/folder/lists/stats.yaml").read_text())
    assert (stats["image_size"], stats["num_classes"], stats["source"]) == (16, 3, "training images")
    summary = pd.read_csv(workdir / "results/summary.csv")
    assert sorted(summary["method"].unique()) == ["full", "l1", "pfs", "random", "slim", "uniform"]
    assert set(summary["arch"]) == {ARCH}
    channels = yaml.safe_load((workdir / EXP / "p0.5/channels.yaml").read_text())
    import torchvision

    assert (channels["library"], channels["library_version"]) == ("torchvision", torchvision.__version__)
    assert channels["groups"][0] == "layer1.0.conv1" and len(channels["groups"]) == len(channels["widths"]) == 8
    assert abs(channels["achieved_ratio"] - 0.5) <= 0.005
    from pfs.method.macs import network_cost

    assert channels["macs_baseline"] == network_cost(ARCH, 16, 3)["macs"]  # MACs at the configured size
    for name in ("table.md", "plots/accuracy.png", "plots/widths.png"):
        assert (workdir / "results" / name).stat().st_size > 0

    # the pruned network exports (gates folded into its BatchNorms, checked by onnxruntime)
    exported = subprocess.run([sys.executable, "-m", "pfs", "export", str(workdir / EXP / "p0.5/scratch_e")],
                              cwd=workdir, capture_output=True, text=True)
    assert exported.returncode == 0, exported.stderr
    report = json.loads(exported.stdout)
    assert report["arch"] == ARCH and report["relative_diff"] < 1e-4 and report["gates_merged"] == 8

    # nothing to do on a rerun; another ratio prunes and trains again, learning no gates
    assert planned_jobs(workdir, {})[0] == {}
    planned, output = planned_jobs(workdir, {"grid": {"ratios": [0.3]}})
    assert planned == {**PRUNING, **TRAINING, **SUMMARY_JOBS}, tail(output)
    # another image size remakes the index and stats.yaml, so everything reruns
    planned, output = planned_jobs(workdir, {"dataset": {"image_size": 24}}, "size.yaml")
    assert planned == job_counts(result.stdout) and "Params have changed" in output, tail(output)

    # an empty class folder: one line while the DAG is built, naming it; nothing runs
    for image in (root / "train" / "dog").glob("*.png"):
        image.unlink()
    refused = snakemake(workdir, "-n", "--configfile", "tiny.yaml")
    assert refused.returncode != 0
    assert error_lines(refused.stdout) == [
        f"error: class folder {root / 'train' / 'dog'} holds no images (extensions: .bmp .jpeg .jpg .pgm .png .ppm "
        ".tif .tiff .webp); remove it or fill it"], refused.stdout


@pytest.mark.parametrize(("arch", "message"), [
    ("torchvision:resnet1800", "error: unknown arch 'torchvision:resnet1800': torchvision has no CNN classifier "
                               "'resnet1800'; python -m pfs list-models lists the valid names"),
    ("torchvision:alexnet", "error: torchvision:alexnet cannot take 16x16 images"),
])
def test_a_bad_library_arch_is_refused_in_one_line_while_the_dag_is_built(tmp_path, arch, message):
    root = write_image_folder(tmp_path / "images", train_per_class=4, size=(8, 8))
    workdir = copy_workflow(tmp_path / "wf", {**CONFIG, "dataset": {**CONFIG["dataset"], "root": str(root)},
                                              "grid": {**CONFIG["grid"], "archs": [arch], "expansions": {arch: [100]}}})
    refused = snakemake(workdir, "-n", "--configfile", "tiny.yaml")
    assert refused.returncode != 0
    lines = error_lines(refused.stdout)
    assert len(lines) == 1 and lines[0].startswith(message), refused.stdout
    assert not (workdir / "results").exists()


def test_a_channels_file_of_a_library_network_with_other_groups_is_refused(tmp_path):
    """Another torchvision version could give the network other groups: the widths would then size other layers."""
    from pfs.core.errors import PfsError
    from pfs.method.macs import network_cost
    from pfs.method.prune import PruneConfig
    from pfs.stages.artifacts import channels_doc, load_channels
    from pfs.stages.experiment import Experiment

    exp = Experiment("cifar10", ARCH, 0)
    cost = network_cost(ARCH, 32, 10)
    doc = channels_doc(exp, "pfs", 10, [64, 64, 128, 128, 256, 256, 512, 512], 0.5, 0.0, cost, cost, PruneConfig())
    path = tmp_path / "channels.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert load_channels(str(path), exp)["groups"][0] == "layer1.0.conv1"
    doc["groups"][0] = "layer1.0.conv9"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    with pytest.raises(PfsError, match="whose channel groups differ"):
        load_channels(str(path), exp)
