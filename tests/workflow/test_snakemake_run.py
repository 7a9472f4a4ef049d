"""End to end: one real Snakemake run of the tiny grid runs every rule once and writes every declared artifact."""

from __future__ import annotations

import csv
import json
import re
from collections import Counter

import pytest
import yaml
from smk_run import ALL_JOBS, EXP, PRUNED, RUN_DIRS, job_counts, snakemake, tail

pytestmark = pytest.mark.slow

RUN_FILES = ("model.pt", "metrics.json", "history.csv")
EPOCHS = {"scratch_e": 1, "scratch_b": 2, "full": 1}  # train.epochs 1; Scratch-B: 1 / (1 - 0.5)


def test_tiny_grid_runs_every_rule_once(finished_run):
    assert job_counts(finished_run.output) == ALL_JOBS
    finished = Counter(re.findall(r"Finished jobid: \d+ \(Rule: (\w+)\)", finished_run.output))
    assert finished == ALL_JOBS, tail(finished_run.output)
    print(f"tiny grid: {sum(ALL_JOBS.values())} jobs in {finished_run.seconds:.1f} s")


def test_every_artifact_is_written(finished_run):
    expected = [f"{EXP}/gates.pt", f"{EXP}/gates_metrics.csv", f"{PRUNED}/channels.yaml", "results/summary.csv"]
    expected += [f"{run_dir}/{name}" for run_dir in RUN_DIRS.values() for name in RUN_FILES]
    missing = [p for p in expected if not (finished_run.workdir / p).is_file()]
    assert not missing
    empty = [p for p in expected if (finished_run.workdir / p).stat().st_size == 0]
    assert not empty


def test_pruned_widths_meet_the_macs_target(finished_run):
    doc = yaml.safe_load((finished_run.workdir / PRUNED / "channels.yaml").read_text())
    assert (doc["arch"], doc["dataset"], doc["expansion"], doc["target_ratio"]) == ("resnet20", "digits", 20, 0.5)
    assert len(doc["widths"]) == len(doc["full_widths"]) == 9
    assert all(1 <= w <= f for w, f in zip(doc["widths"], doc["full_widths"], strict=True))
    assert abs(doc["achieved_ratio"] - 0.5) / 0.5 <= 0.01  # prune.tolerance


def test_each_training_run_records_its_schedule(finished_run):
    channels = yaml.safe_load((finished_run.workdir / PRUNED / "channels.yaml").read_text())
    for run, run_dir in RUN_DIRS.items():
        metrics = json.loads((finished_run.workdir / run_dir / "metrics.json").read_text())
        with open(finished_run.workdir / run_dir / "history.csv", newline="") as fh:
            history = list(csv.DictReader(fh))
        assert metrics["epochs"] == len(history) == EPOCHS[run], run
        assert metrics["method"] == ("full" if run == "full" else "pfs")
        if run != "full":
            assert metrics["widths"] == channels["widths"]
            assert metrics["macs"] == channels["macs"]
            assert metrics["schedule"] == run


def test_summary_has_one_row_per_trained_network(finished_run):
    with open(finished_run.workdir / "results/summary.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted((r["method"], r["schedule"]) for r in rows) == [
        ("full", "scratch_e"), ("pfs", "scratch_b"), ("pfs", "scratch_e")]
    for row in rows:
        run = "full" if row["method"] == "full" else row["schedule"]
        metrics = json.loads((finished_run.workdir / RUN_DIRS[run] / "metrics.json").read_text())
        assert float(row["top1"]) == pytest.approx(metrics["top1"])
        assert int(row["macs"]) == metrics["macs"]


def test_every_job_has_a_log_and_every_gpu_job_a_benchmark(finished_run):
    gpu_jobs = [f"{EXP}/learn_gates", f"{PRUNED}/scratch_e/train_pruned", f"{PRUNED}/scratch_b/train_pruned",
                f"{RUN_DIRS['full']}/train_full"]
    jobs = [*gpu_jobs, f"{PRUNED}/prune", "results/summarize"]
    logs = [finished_run.workdir / f"{job.replace('results/', 'logs/', 1)}.log" for job in jobs]
    benchmarks = [finished_run.workdir / f"{job.replace('results/', 'benchmarks/', 1)}.tsv" for job in gpu_jobs]
    assert [p for p in logs + benchmarks if not p.is_file()] == []
    assert "test_top1" in logs[1].read_text()  # the training loop's log lines reached the job's log


def test_resume_checkpoints_are_removed_after_success(finished_run):
    checkpoints = finished_run.workdir / "checkpoints"
    assert not checkpoints.exists() or list(checkpoints.iterdir()) == []


def test_finished_run_has_nothing_left_to_do(finished_run):
    result = snakemake(finished_run.workdir, "-n", "--configfile", "tiny.yaml")
    assert result.returncode == 0, tail(result.stdout)
    assert "Nothing to be done" in result.stdout
    assert job_counts(result.stdout) == {}


def test_plots_are_non_empty_pngs_and_the_report_builds(finished_run, tmp_path):
    import shutil

    plots = finished_run.workdir / "results" / "plots"
    for name in ("accuracy", "widths", "gate_histograms", "gate_learning"):
        data = (plots / f"{name}.png").read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 10_000, name
    assert "± " in (finished_run.workdir / "results" / "table.md").read_text()
    workdir = tmp_path / "wf"
    shutil.copytree(finished_run.workdir, workdir, symlinks=True)
    result = snakemake(workdir, "--report", "report.html", "--configfile", "tiny.yaml")
    assert result.returncode == 0, tail(result.stdout)
    html = (workdir / "report.html").read_text(errors="replace")
    assert len(html) > 100_000 and "accuracy.png" in html and "table.csv" in html
