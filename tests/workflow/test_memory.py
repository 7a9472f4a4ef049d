"""pfs.workflow.memory: the mem_mb estimate of resources.mem_mb: auto, and the check of benchmark files against the
declared memory (torch-free, read while Snakemake builds the DAG and after a run)."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pfs.core import catalog
from pfs.workflow import memory
from pfs.workflow.config import ConfigError, check_schema
from pfs.workflow.memory import DeclaredJob, estimate_mem_mb, job_mem_mb, overruns, read_benchmark, uses_dataloader

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "schemas" / "config.schema.yaml"
HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def config(name: str) -> dict:
    return yaml.safe_load((REPO / name).read_text())


def write_benchmark(path: Path, *rows: tuple) -> Path:
    """A Snakemake benchmark TSV with one line per (max_rss, max_pss) row ("NA": no sample)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"12.3\t0:00:12\t{rss}\t900.0\t100.0\t{pss}\t1.0\t2.0\t50.0\t6.0\n" for rss, pss in rows]
    path.write_text(HEADER + "".join(lines))
    return path


# --- the estimate ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("stage", memory.STAGES)
@pytest.mark.parametrize("arch", catalog.arch_names())
def test_every_arch_has_an_estimate_on_every_dataset_it_fits(arch, stage):
    for dataset, info in catalog.DATASETS.items():
        if info.domain != catalog.arch_info(arch).domain:
            continue
        mb = estimate_mem_mb(dataset, arch, stage)
        assert mb % memory.ROUND_MB == 0 and 1000 <= mb <= 64000, (dataset, arch, mb)


def test_the_estimate_never_asks_less_than_a_measured_job_with_the_margin():
    for group, jobs in memory.JOB.items():
        dataset = {"cifar": "cifar10"}.get(group, group)
        for (arch, stage), measured in jobs.items():
            mb = estimate_mem_mb(dataset, arch, stage, gpu=False)
            scale = memory.anchor_scale(stage) if group == "imagenet" else 1
            assert mb >= memory.MARGIN * measured * scale - 2 * memory.TORCHRUN_LAUNCHER_MB, (group, arch, stage)


def test_imagenet_mobilenet_v2_training_with_one_worker_covers_the_issues_8_5_gb():
    # issue 15: train_full, MobileNetV2, 1 worker declared 4000 and reached 8.5 GB RSS (CPU jobs, fake GPUs)
    imagenet = config("configs/paper_imagenet.yaml")
    imagenet["dataset"]["num_workers"] = 1
    imagenet["train"]["batch_size"] = 32
    for gpus, device in ((1, "auto"), (1, "cpu"), (0, "auto")):
        mb = job_mem_mb({**imagenet, "device": device}, "mobilenet_v2", "train", gpus)
        assert mb >= memory.MARGIN * memory.ANCHOR_MB, (gpus, device, mb)


def test_imagenet_gate_learning_covers_issue_27s_measured_peak_with_the_margin():
    # issue 27: learn_gates, MobileNetV2 m0.35, 2 workers, batch 50, on CPU: max_pss 11,350 MB (declared 11,900)
    imagenet = config("configs/paper_imagenet.yaml")
    imagenet["dataset"]["num_workers"] = 2
    imagenet["gates"]["batch_size"] = 50
    mb = job_mem_mb({**imagenet, "device": "cpu"}, "mobilenet_v2", "gates", 1)
    assert mb >= memory.MARGIN * 11350 and mb == 13700
    for stage, (peak, job) in memory.ANCHORS.items():  # each anchor: its peak with the margin, rounded up
        mb = estimate_mem_mb("imagenet", stage=stage, **job)
        assert memory.MARGIN * peak <= mb < memory.MARGIN * peak + memory.ROUND_MB


def test_the_estimate_grows_with_workers_processes_batch_on_cpu_and_a_gpu():
    base = estimate_mem_mb("imagenet", "resnet50", "train", gpu=False)
    assert estimate_mem_mb("imagenet", "resnet50", "train", workers=2, gpu=False) > base
    assert estimate_mem_mb("imagenet", "resnet50", "train", processes=2, gpu=False) > base
    assert estimate_mem_mb("imagenet", "resnet50", "train", batch_size=128, gpu=False) > base
    assert estimate_mem_mb("imagenet", "resnet50", "train", batch_size=128, gpu=True) == estimate_mem_mb(
        "imagenet", "resnet50", "train", gpu=True)  # on a GPU the activations are not in host memory
    assert estimate_mem_mb("imagenet", "resnet50", "train", gpu=True) > base  # the CUDA runtime is
    assert estimate_mem_mb("cifar10", "resnet110", "gates") > estimate_mem_mb("cifar10", "resnet20", "gates")
    assert estimate_mem_mb("cifar10", "resnet32", "train") == estimate_mem_mb("cifar10", "resnet56", "train")


def test_job_estimates_of_the_shipped_configs():
    default = config("config.yaml")
    assert default["resources"]["mem_mb"] == "auto"
    gates, train = (job_mem_mb(default, "resnet20", stage, 1) for stage in memory.STAGES)
    assert 1000 < train <= gates < 8000  # digits: a few GB at most, workers only in gate learning
    cifar = config("configs/paper_cifar10.yaml")
    assert job_mem_mb(cifar, "resnet110", "gates", 1) > job_mem_mb(cifar, "resnet20", "gates", 1)
    imagenet = config("configs/paper_imagenet.yaml")
    # training: 8 torchrun ranks with 8 workers each; gate learning: one process on one GPU
    train8, gates1 = job_mem_mb(imagenet, "mobilenet_v2", "train", 8), job_mem_mb(imagenet, "mobilenet_v2", "gates", 1)
    assert train8 > 6 * gates1 and train8 > job_mem_mb(imagenet, "mobilenet_v2", "train", 4)
    assert job_mem_mb(imagenet, "resnet50", "train", 8) > train8


def test_workers_count_only_where_a_dataloader_reads_the_batches():
    assert uses_dataloader("digits", "gates", gpu=False)  # gate learning always uses one
    assert not uses_dataloader("digits", "train", gpu=False)  # digits sit on the device, also on CPU
    assert uses_dataloader("cifar10", "train", gpu=False) and not uses_dataloader("cifar10", "train", gpu=True)
    assert not uses_dataloader("cifar10", "train", gpu=False, device_data="always")
    assert uses_dataloader("cifar10", "train", gpu=True, device_data="never")
    assert uses_dataloader("imagenet", "train", gpu=True)
    default = config("config.yaml")
    many = copy.deepcopy(default)
    many["dataset"]["num_workers"] = 4
    assert job_mem_mb(many, "resnet20", "train", 1) == job_mem_mb(default, "resnet20", "train", 1)
    assert job_mem_mb(many, "resnet20", "gates", 1) > job_mem_mb(default, "resnet20", "gates", 1)


def test_unknown_names_fail_naming_the_known_ones():
    with pytest.raises(ValueError, match="unknown arch 'resnet18'"):
        estimate_mem_mb("cifar10", "resnet18", "train")
    with pytest.raises(ValueError, match="unknown dataset 'mnist'"):
        estimate_mem_mb("mnist", "resnet20", "train")
    with pytest.raises(ValueError, match="stage must be one of"):
        estimate_mem_mb("cifar10", "resnet20", "prune")


def test_the_module_imports_no_torch():
    code = "import sys, pfs.workflow.memory, pfs.workflow.config; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


@pytest.mark.parametrize("value", ["auto", 100, 256000])
def test_the_schema_takes_auto_or_a_number_of_mb(value):
    doc = config("config.yaml")
    doc["resources"]["mem_mb"] = value
    check_schema(doc, SCHEMA)


@pytest.mark.parametrize("value", ["lots", 50, 4.5])
def test_the_schema_refuses_other_memory_values(value):
    doc = config("config.yaml")
    doc["resources"]["mem_mb"] = value
    with pytest.raises(ConfigError, match="config resources.mem_mb"):
        check_schema(doc, SCHEMA)


# --- the check after a run -------------------------------------------------------------------------------------
def test_read_benchmark_takes_the_largest_row_and_none_for_na(tmp_path):
    assert read_benchmark(write_benchmark(tmp_path / "a.tsv", (800.5, 600.0), (950.25, 610.0))) == {
        "max_rss": 950.25, "max_pss": 610.0}
    assert read_benchmark(write_benchmark(tmp_path / "b.tsv", ("NA", "NA"))) == {"max_rss": None, "max_pss": None}


def test_overruns_are_the_jobs_whose_pss_exceeds_their_declaration(tmp_path):
    over = write_benchmark(tmp_path / "benchmarks/imagenet/mobilenet_v2/full/train_full.tsv", (8500.0, 6100.0))
    under = write_benchmark(tmp_path / "benchmarks/digits/learn_gates.tsv", (800.0, 600.0))
    na = write_benchmark(tmp_path / "benchmarks/short.tsv", ("NA", "NA"))
    no_pss = write_benchmark(tmp_path / "benchmarks/macos.tsv", (900.0, 0.0))  # no PSS on this system: RSS
    jobs = [DeclaredJob(over, 4000, "train_full"), DeclaredJob(under, 4000, "learn_gates"),
            DeclaredJob(na, 100, "train_pruned"), DeclaredJob(tmp_path / "missing.tsv", 100, "train_random"),
            DeclaredJob(under, None, "summarize", False), (under, 500, "prune", False),
            DeclaredJob(under, 700, "train_uniform"),  # RSS above, PSS below: workers' shared pages, not over
            DeclaredJob(no_pss, 850, "learn_gates")]
    found = overruns(jobs)
    assert [(o.job.rule, o.measure, o.used_mb, o.job.mem_mb, o.rss_mb) for o in found] == [
        ("train_full", "max_pss", 6100.0, 4000, 8500.0), ("prune", "max_pss", 600.0, 500, 800.0),
        ("learn_gates", "max_rss", 900.0, 850, 900.0)]
    assert found[0].suggested_mb == 7400  # 6100 x 1.2, rounded up to 100 MB


def test_overruns_since_skips_the_benchmarks_of_earlier_runs(tmp_path):
    old = write_benchmark(tmp_path / "old.tsv", (900.0, 800.0))
    new = write_benchmark(tmp_path / "new.tsv", (900.0, 800.0))
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    found = overruns([DeclaredJob(old, 100, "learn_gates"), DeclaredJob(new, 100, "train_full")],
                     since=time.time() - 60)
    assert [o.job.rule for o in found] == ["train_full"]


def test_the_warning_names_the_file_the_figures_and_the_keys_to_raise(tmp_path):
    path = write_benchmark(tmp_path / "benchmarks/x/train_full.tsv", (8500.0, 6100.0))
    (gpu_job,) = overruns([DeclaredJob(path, 4000, "train_full")])
    line = gpu_job.message(4000)
    assert "\n" not in line
    for part in ("job train_full", "max_pss 6100 MB > mem_mb 4000", str(path), "max_rss 8500 MB",
                 "resources.mem_mb (now 4000)", "to 7400", "set-resources: {train_full: {mem_mb: 7400}}"):
        assert part in line, part
    (cpu_job,) = overruns([DeclaredJob(path, 2000, "summarize", config_sized=False)])
    assert "resources.mem_mb" not in cpu_job.message("auto")
    assert "set-resources: {summarize: {mem_mb: 7400}}" in cpu_job.message("auto")
    assert "default-resources" in cpu_job.message("auto")
