"""End to end: one real Snakemake run of the tiny grid runs every rule once and writes every declared artifact."""

from __future__ import annotations

import base64
import csv
import json
import re
from collections import Counter

import pandas as pd
import pytest
import yaml
from smk_run import (
    ALL_JOBS,
    EXP,
    PRUNED,
    RUN_DIRS,
    approx_fraction,
    approx_seconds,
    job_counts,
    snakemake,
    tail,
    write_yaml,
)

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
        assert float(row["top1"]) == approx_fraction(metrics["top1"])
        assert int(row["macs"]) == metrics["macs"]


def _wall_seconds(path) -> float:
    """A benchmark file's wall seconds (column s), read directly: the mean over its rows (one per repeat)."""
    with open(path, newline="") as fh:
        values = [float(row["s"]) for row in csv.DictReader(fh, delimiter="\t")]
    assert values, path
    return sum(values) / len(values)


def test_each_summary_row_costs_the_sum_of_its_chains_benchmark_files(finished_run):
    from pfs.results.cost import in_unit

    bench = {name: finished_run.workdir / f"benchmarks/{job.removeprefix('results/')}.tsv" for name, job in (
        ("gates", f"{EXP}/learn_gates"), ("prune", f"{PRUNED}/prune"), ("full", f"{RUN_DIRS['full']}/train_full"),
        *((run, f"{RUN_DIRS[run]}/train_pruned") for run in ("scratch_e", "scratch_b")))}
    chains = {"full": ["full"], "scratch_e": ["gates", "prune", "scratch_e"],
              "scratch_b": ["gates", "prune", "scratch_b"]}
    with open(finished_run.workdir / "results/summary.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(chains)
    for row in rows:
        run = "full" if row["method"] == "full" else row["schedule"]
        assert float(row["cost_s"]) == approx_seconds(sum(_wall_seconds(bench[job]) for job in chains[run])), run
        shared = sum(_wall_seconds(bench[job]) for job in ("gates", "prune")) if run != "full" else 0.0
        assert float(row["shared_s"]) == approx_seconds(shared), run  # one gate learning serves both schedules
        assert int(row["cost_jobs"]) == len(chains[run])
        assert float(row["cost_s"]) > 0 and float(row["cost_s"]) >= float(row["train_time_s"]) * 0.99
    table = (finished_run.workdir / "results/table.md").read_text()
    total = sum(_wall_seconds(path) for path in bench.values())  # every job once
    said = re.search(r"The whole grid took ([\d.]+) (s|min|h) wall", table)
    assert said, table
    printed = float(said[1])  # as printed: one decimal below 100, none from there
    assert printed == pytest.approx(in_unit(total, said[2]), abs=0.51 if printed >= 100 else 0.051)


def test_every_job_has_a_log_and_every_gpu_job_a_benchmark(finished_run):
    gpu_jobs = [f"{EXP}/learn_gates", f"{PRUNED}/scratch_e/train_pruned", f"{PRUNED}/scratch_b/train_pruned",
                f"{RUN_DIRS['full']}/train_full"]
    jobs = [*gpu_jobs, f"{PRUNED}/prune", "results/summarize"]
    logs = [finished_run.workdir / f"{job.replace('results/', 'logs/', 1)}.log" for job in jobs]
    benchmarks = [finished_run.workdir / f"{job.replace('results/', 'benchmarks/', 1)}.tsv" for job in gpu_jobs]
    assert [p for p in logs + benchmarks if not p.is_file()] == []
    assert "test top-1" in logs[1].read_text()  # the training loop's log lines reached the job's log


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
    for name in ("accuracy", "accuracy_cost", "widths", "gate_histograms", "gate_learning", "training_curves"):
        data = (plots / f"{name}.png").read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 10_000, name
    assert "± " in (finished_run.workdir / "results" / "table.md").read_text()
    workdir = tmp_path / "wf"
    shutil.copytree(finished_run.workdir, workdir, symlinks=True)
    result = snakemake(workdir, "--report", "report.html", "--configfile", "tiny.yaml")
    assert result.returncode == 0, tail(result.stdout)
    html = (workdir / "report.html").read_text(errors="replace")
    assert len(html) > 100_000 and "accuracy.png" in html and "table.csv" in html and "accuracy_cost.png" in html
    # the tables are readable in the page: embedded as text/html (the report opens those in its view), their
    # values those of table.csv, their captions saying what the numbers are
    pages = {}
    for name, data in re.findall(r"data:text/html;charset=[\w-]+;filename=([\w.]+);base64,([A-Za-z0-9+/=]+)", html):
        pages[name] = base64.b64decode(data).decode()
    assert set(pages) >= {"table.html", "comparison.html"}
    table = pd.read_csv(workdir / "results" / "table.csv")
    for row in table.itertuples():
        spread = f" ± {100 * row.top1_std:.2f}" if row.n > 1 else ""  # one seed: the value alone
        assert f"<td>{100 * row.top1_mean:.2f}{spread}</td>" in pages["table.html"], row
        assert f"{row.macs / 1e6:.2f}" in pages["table.html"]
    assert "<table" in pages["table.html"] and "mean ± standard deviation over the n seeds" in pages["table.html"]
    assert "one test image = 0.28%" in pages["table.html"]
    assert "Against published figures" in pages["comparison.html"]
    # the landing page says what to look at first and links the tables
    assert "What to look at first" in html and "showResultInfo" in html


def test_export_writes_a_checked_onnx_beside_every_trained_model_and_lists_it_in_the_report(finished_run, tmp_path):
    import shutil

    import onnx
    import torch

    from pfs.core.io import sha256_file
    from pfs.stages.export import run_onnxruntime

    workdir = tmp_path / "wf"
    shutil.copytree(finished_run.workdir, workdir, symlinks=True)
    write_yaml(workdir / "export.yaml", {"grid": {"export": True}})
    result = snakemake(workdir, "--cores", "2", "--configfile", "tiny.yaml", "export.yaml")
    assert result.returncode == 0, tail(result.stdout)
    assert job_counts(result.stdout) == {"export": 3, "all": 1}  # nothing upstream reruns
    for run_dir in RUN_DIRS.values():
        out, source = workdir / run_dir / "model.onnx", workdir / run_dir / "model.pt"
        meta = {p.key: p.value for p in onnx.load(out).metadata_props}
        metrics = json.loads((workdir / run_dir / "metrics.json").read_text())
        assert meta["source_sha256"] == sha256_file(source)
        assert json.loads(meta["widths"]) == metrics["widths"] and int(meta["macs"]) == metrics["macs"]
        assert float(meta["top1"]) == pytest.approx(metrics["top1"])
        assert float(meta["relative_diff"]) <= float(meta["tolerance"])
        assert run_onnxruntime(out, torch.zeros(4, 3, 16, 16)).shape == (4, 10)  # digits: 16x16, 10 classes
        log = workdir / run_dir.replace("results/", "logs/", 1) / "export.log"
        assert "BatchNorm folded" in log.read_text()
        assert (workdir / run_dir.replace("results/", "benchmarks/", 1) / "export.tsv").is_file()
    assert list(workdir.rglob(".model.onnx.*")) == []  # no temp file left
    result = snakemake(workdir, "--report", "report.html", "--configfile", "tiny.yaml", "export.yaml")
    assert result.returncode == 0, tail(result.stdout)
    assert "model.onnx" in (workdir / "report.html").read_text(errors="replace")
