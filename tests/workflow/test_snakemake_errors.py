"""Bad input through Snakemake: the run stops with a message naming the bad key or value, and writes no results."""

from __future__ import annotations

import re
import shutil

import pytest
import yaml
from smk_run import (
    ALL_JOBS,
    PRUNED,
    RUN_DIRS,
    SUMMARY_JOBS,
    copy_workflow,
    error_lines,
    job_counts,
    snakemake,
    tail,
    write_yaml,
)

pytestmark = pytest.mark.slow

# bad config (deep-merged over the tiny one) -> (key, value): one line of the output must name both
BAD_CONFIGS = {
    "unknown arch": ({"grid": {"archs": ["resnet99"]}}, "grid.archs", "'resnet99'"),
    "arch without expansions": ({"grid": {"archs": ["resnet32"]}}, "grid.expansions", "'resnet32'"),
    "ratio 0": ({"grid": {"ratios": [0]}}, "grid.ratios", "0"),
    "ratio 1": ({"grid": {"ratios": [1]}}, "grid.ratios", "1"),
    "ratio -0.1": ({"grid": {"ratios": [-0.1]}}, "grid.ratios", "-0.1"),
    "sparsity 1.5": ({"grid": {"sparsities": [1.5]}}, "grid.sparsities", "1.5"),
    "missing CIFAR folder": ({"dataset": {"name": "cifar10", "root": "no/such/folder"}}, "dataset.root",
                             "no/such/folder"),
    "unknown key": ({"train": {"lrr": 0.1}}, "train", "'lrr'"),
}


def names(line: str, text: str) -> bool:
    """``text`` occurs in ``line`` as a whole token (so '0' does not match inside 'ratios.0' or '0.5')."""
    return re.search(rf"(?<![\w.-]){re.escape(text)}(?![\w.])", line) is not None


@pytest.mark.parametrize("bad, key, value", BAD_CONFIGS.values(), ids=BAD_CONFIGS.keys())
def test_bad_config_stops_before_any_job(tmp_path, bad, key, value):
    workdir = copy_workflow(tmp_path / "wf", bad)
    result = snakemake(workdir, "--cores", "1", "--configfile", "tiny.yaml")
    assert result.returncode != 0
    lines = error_lines(result.stdout)  # exactly one line besides Snakemake's notices: no header, no traceback
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stdout
    assert key in lines[0] and names(lines[0], value), result.stdout
    assert not (workdir / "results").exists()


def test_a_paper_target_under_another_config_stops_with_one_line(tmp_path):
    workdir = copy_workflow(tmp_path / "wf")
    result = snakemake(workdir, "-n", "paper_cifar10", "--configfile", "tiny.yaml")
    assert result.returncode != 0
    errors = [line for line in result.stdout.splitlines() if "error" in line.lower() or "Traceback" in line]
    assert errors == ["error: target paper_cifar10 runs the grid of configs/paper_cifar10.yaml, but the config has "
                      "dataset digits: add --configfile configs/paper_cifar10.yaml (after the targets)"], result.stdout


def test_existing_cifar_folder_is_accepted(tmp_path, tiny_cifar10):
    """The same CIFAR config as 'missing CIFAR folder', with the folder present: the whole grid is planned."""
    workdir = copy_workflow(tmp_path / "wf", {"dataset": {"name": "cifar10", "root": str(tiny_cifar10),
                                                          "check_md5": False}})
    result = snakemake(workdir, "-n", "--configfile", "tiny.yaml")
    assert result.returncode == 0, tail(result.stdout)
    assert job_counts(result.stdout) == ALL_JOBS
    assert "results/cifar10/resnet20/e20_m1/s0.5/seed0/gates.pt" in result.stdout


def names_arch_mismatch(text: str) -> bool:
    return any("arch" in line and names(line, "resnet32") and names(line, "resnet20") for line in text.splitlines())


def test_channels_of_another_arch_fail_the_training_jobs(finished_run, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(finished_run.workdir, workdir)  # keeps mtimes and .snakemake/: still finished
    channels = workdir / PRUNED / "channels.yaml"
    doc = yaml.safe_load(channels.read_text())
    doc.update(arch="resnet32", full_widths=[20] * 5 + [40] * 5 + [80] * 5, widths=[10] * 5 + [20] * 5 + [40] * 5)
    write_yaml(channels, doc)  # newer than the trained models, so both train_pruned jobs rerun
    untouched = {p: p.stat().st_mtime_ns for p in (workdir / RUN_DIRS["full"]).iterdir()}

    planned = snakemake(workdir, "-n", "--configfile", "tiny.yaml")
    assert job_counts(planned.stdout) == {"train_pruned": 2, **SUMMARY_JOBS}, tail(planned.stdout)

    result = snakemake(workdir, "--cores", "2", "--configfile", "tiny.yaml")
    assert result.returncode != 0
    assert names_arch_mismatch(result.stdout), tail(result.stdout)
    for schedule in ("scratch_e", "scratch_b"):
        log = (workdir / PRUNED.replace("results/", "logs/", 1) / schedule / "train_pruned.log").read_text()
        assert names_arch_mismatch(log), log
        assert not (workdir / RUN_DIRS[schedule] / "model.pt").exists()
        assert not (workdir / RUN_DIRS[schedule] / "metrics.json").exists()
    assert {p: p.stat().st_mtime_ns for p in (workdir / RUN_DIRS["full"]).iterdir()} == untouched
