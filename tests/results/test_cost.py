"""The compute cost of each trained network (pfs.results.cost): sums of its chain's Snakemake benchmark files, the
shared
jobs, the grid total (every job once), and the cost columns of summary.csv, table.csv, table.md and the plot."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import pytest

from pfs.core.errors import PfsError
from pfs.results.cost import COST_COLUMNS, chain_costs, cost_cell, duration, grid_total, read_benchmark
from pfs.results.summary import COLUMNS, write_summary, write_tables
from pfs.results.tables import TABLE_COLUMNS, seed_table, to_markdown

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time"


def bench(path: Path, *rows: tuple[float, float | str]) -> str:
    """A benchmark TSV as Snakemake writes it: one (s, cpu_time) row per repeat, the other columns filled in."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [HEADER] + [f"{s:.2f}\t0:00:{int(s):02d}\t512.3\t2048.0\t400.1\t420.7\t1.2\t3.4\t97.5\t"
                        + (cpu if isinstance(cpu, str) else f"{cpu:.2f}") for s, cpu in rows]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def wall_in_file(path: str) -> float:
    """The file's wall seconds read directly (mean over its rows), independently of pfs.results.cost."""
    with open(path, newline="") as fh:
        values = [float(row["s"]) for row in csv.DictReader(fh, delimiter="\t")]
    return sum(values) / len(values)


@pytest.fixture
def grid(tmp_path) -> dict[str, list[str]]:
    """Chains of a small grid: one gate learning + pruning serving PFS Scratch-E and Scratch-B, a full network that
    is also the pretrained network of two L1-pruned rows (one L1 pruning: fine-tuned and from scratch)."""
    b = tmp_path / "benchmarks"
    gates, prune = bench(b / "exp/learn_gates.tsv", (30.0, 58.5)), bench(b / "exp/p0.5/prune.tsv", (2.5, 2.4))
    train_e = bench(b / "exp/p0.5/scratch_e/train_pruned.tsv", (40.25, 79.0))
    train_b = bench(b / "exp/p0.5/scratch_b/train_pruned.tsv", (80.5, 160.0))
    full = bench(b / "full/seed0/scratch_e/train_full.tsv", (100.0, 190.0))
    prune_l1 = bench(b / "l1/p0.5/prune_l1.tsv", (1.5, 1.4))
    finetune = bench(b / "l1/p0.5/finetune/finetune_l1.tsv", (20.0, 39.0))
    scratch = bench(b / "l1/p0.5/scratch_e/train_l1.tsv", (41.0, 80.0))
    return {
        "results/exp/p0.5/scratch_e/metrics.json": [gates, prune, train_e],
        "results/exp/p0.5/scratch_b/metrics.json": [gates, prune, train_b],
        "results/full/seed0/scratch_e/metrics.json": [full],
        "results/l1/p0.5/finetune/metrics.json": [full, prune_l1, finetune],
        "results/l1/p0.5/scratch_e/metrics.json": [full, prune_l1, scratch],
    }


# ---------------------------------------------------------------- reading one benchmark file


def test_read_benchmark_gives_wall_and_cpu_seconds(tmp_path):
    path = bench(tmp_path / "job.tsv", (12.34, 23.5))
    assert read_benchmark(path) == {"path": path, "s": 12.34, "cpu_time": 23.5, "repeats": 1}


def test_several_rows_are_repeats_of_one_job_and_count_as_their_mean(tmp_path):
    record = read_benchmark(bench(tmp_path / "job.tsv", (10.0, 20.0), (14.0, 26.0), (12.0, 23.0)))
    assert (record["s"], record["cpu_time"], record["repeats"]) == (pytest.approx(12.0), pytest.approx(23.0), 3)


@pytest.mark.parametrize("missing", ["NA", "-"])
def test_a_job_without_cpu_time_has_none(tmp_path, missing):
    record = read_benchmark(bench(tmp_path / "job.tsv", (3.0, missing)))
    assert record["s"] == 3.0 and record["cpu_time"] is None


def test_the_files_snakemake_writes_are_read(tmp_path):
    benchmark = pytest.importorskip("snakemake.benchmark")
    sampled = benchmark.BenchmarkRecord(running_time=65.4321, cpu_time=120.5)
    sampled.data_collected = True
    fast = benchmark.BenchmarkRecord(running_time=0.75)  # ended before the first sample: NA columns
    fast.process_gone = True
    for name, records in (("plain.tsv", [sampled, fast]), ("fast.tsv", [fast])):
        benchmark.write_benchmark_records(records, str(tmp_path / name), False)
    plain = read_benchmark(tmp_path / "plain.tsv")
    assert plain["s"] == pytest.approx((65.43 + 0.75) / 2) and plain["cpu_time"] is None and plain["repeats"] == 2
    assert read_benchmark(tmp_path / "fast.tsv")["s"] == pytest.approx(0.75)


def test_a_missing_benchmark_file_is_named_with_the_fix(tmp_path):
    path = tmp_path / "benchmarks" / "exp" / "learn_gates.tsv"
    with pytest.raises(PfsError, match=rf"benchmark file {path} does not exist.*rerun the job that writes it"):
        read_benchmark(path)


@pytest.mark.parametrize(("text", "problem"), [
    ("", "not a Snakemake benchmark table"),
    ("wall\tcpu\n1\t2\n", "not a Snakemake benchmark table"),
    (HEADER + "\n", "has a header but no measurement"),
    (HEADER + "\nabc\t0:00:01\tNA\tNA\tNA\tNA\tNA\tNA\tNA\tNA\n", "has s = 'abc', not a number"),
    (HEADER + "\nNA\t0:00:01\tNA\tNA\tNA\tNA\tNA\tNA\tNA\tNA\n", "has no wall time"),
    (HEADER + "\n1.5\t0:00:01\n", "row 2 has 2 fields"),
])
def test_a_malformed_benchmark_file_is_named_with_the_fix(tmp_path, text, problem):
    path = tmp_path / "job.tsv"
    path.write_text(text)
    with pytest.raises(PfsError, match=rf"benchmark file {path}.*{problem}.*delete it and rerun"):
        read_benchmark(path)


# ---------------------------------------------------------------- chains


def test_each_rows_cost_is_the_sum_of_its_chains_files(grid):
    costs = chain_costs(grid)
    assert list(costs.columns) == COST_COLUMNS and list(costs.index) == list(grid)
    for metrics, chain in grid.items():
        assert costs.loc[metrics, "cost_s"] == pytest.approx(sum(wall_in_file(p) for p in chain)), metrics
        assert costs.loc[metrics, "cost_jobs"] == len(chain)
    assert costs.loc["results/exp/p0.5/scratch_e/metrics.json", "cost_s"] == pytest.approx(30 + 2.5 + 40.25)
    assert costs.loc["results/exp/p0.5/scratch_e/metrics.json", "cost_cpu_s"] == pytest.approx(58.5 + 2.4 + 79)


def test_jobs_in_several_chains_are_shared_and_counted_once_in_the_grid_total(grid):
    costs = chain_costs(grid)
    pfs_e, pfs_b, full, finetune, scratch = (costs.loc[m] for m in grid)
    assert pfs_e["shared_s"] == pfs_b["shared_s"] == pytest.approx(30 + 2.5)  # gate learning + pruning
    assert pfs_e["shared_with"] == 2
    assert full["shared_s"] == 100 and full["shared_with"] == 3  # the pretrained network of both L1 rows
    assert finetune["shared_s"] == scratch["shared_s"] == pytest.approx(100 + 1.5)
    files = {p for chain in grid.values() for p in chain}
    total = grid_total(grid)
    assert total["s"] == pytest.approx(sum(wall_in_file(p) for p in files))
    assert total["s"] == pytest.approx(costs["cost_s"].sum() - 30 - 2.5 - 2 * 100 - 1.5)
    assert total["jobs"] == len(files) == 8 and total["cpu_missing"] == 0
    assert total["cpu_s"] == pytest.approx(58.5 + 2.4 + 79 + 160 + 190 + 1.4 + 39 + 80)


def test_an_unshared_chain_has_nothing_shared(tmp_path):
    costs = chain_costs({"m.json": [bench(tmp_path / "a.tsv", (5.0, 9.0)), bench(tmp_path / "b.tsv", (1.0, 2.0))]})
    assert costs.loc["m.json"].to_dict() == {"cost_s": 6.0, "cost_cpu_s": 11.0, "shared_s": 0.0, "cost_jobs": 2,
                                             "shared_with": 1}


def test_the_cpu_cost_is_empty_only_for_chains_with_a_job_without_cpu_time(grid):
    bench(Path(grid["results/full/seed0/scratch_e/metrics.json"][0]), (100.0, "NA"))
    costs = chain_costs(grid)
    assert costs["cost_cpu_s"].isna().tolist() == [False, False, True, True, True]
    assert costs.loc["results/full/seed0/scratch_e/metrics.json", "cost_s"] == 100  # the wall time still counts
    total = grid_total(grid)
    assert total["cpu_s"] is None and total["cpu_missing"] == 1


def test_a_chain_naming_a_missing_benchmark_file_fails_naming_it(grid, tmp_path):
    grid["results/full/seed0/scratch_e/metrics.json"].append(str(tmp_path / "benchmarks" / "gone.tsv"))
    with pytest.raises(PfsError, match="gone.tsv does not exist"):
        chain_costs(grid)


# ---------------------------------------------------------------- summary.csv, table.csv, table.md


def _metrics(path: Path, method: str, schedule: str, seed: int = 0, top1: float = 0.9) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    pruned = method != "full"
    doc = {"kind": "pfs.metrics", "format_version": 1, "dataset": "digits", "num_classes": 10, "arch": "resnet20",
           "method": method, "expansion": 20 if method == "pfs" else 16, "multiplier": 1.0,
           "sparsity": 0.5 if method == "pfs" else None, "ratio": 0.5 if pruned else 0.0,
           "achieved_ratio": 0.5 if pruned else 0.0, "schedule": schedule, "seed": seed,
           "macs": 5e6 if pruned else 1e7, "params": 8e4 if pruned else 2.7e5, "top1": top1, "top5": 1.0,
           "best_top1": top1, "epochs": 1, "train_time_s": 1.0}
    path.write_text(json.dumps(doc))
    return str(path)


def _runs(tmp_path: Path, grid: dict) -> list[str]:
    kinds = [("pfs", "scratch_e"), ("pfs", "scratch_b"), ("full", "scratch_e"), ("l1", "finetune"),
             ("l1", "scratch_e")]
    return [_metrics(tmp_path / m, *kind) for m, kind in zip(grid, kinds, strict=True)]


def test_summary_rows_carry_their_chains_cost(grid, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the chains' metrics paths are relative to the working directory, as in the DAG
    paths = _runs(tmp_path, grid)
    summary = write_summary(list(grid), str(tmp_path / "summary.csv"), grid)
    written = pd.read_csv(tmp_path / "summary.csv")
    assert list(written.columns) == COLUMNS and COLUMNS[-len(COST_COLUMNS):] == COST_COLUMNS
    costs = chain_costs(grid)
    for metrics in grid:
        doc = json.loads(Path(metrics).read_text())
        row = written[(written["method"] == doc["method"]) & (written["schedule"] == doc["schedule"])].iloc[0]
        for column in COST_COLUMNS:
            decimals = 1 if column.endswith("_s") else 0  # summary.csv: seconds to 1 decimal, counts as integers
            assert row[column] == pytest.approx(round(costs.loc[metrics, column], decimals)), (metrics, column)
    assert len(summary) == len(paths)


def test_without_chains_the_cost_columns_are_empty(grid, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _runs(tmp_path, grid)
    summary = write_summary(list(grid), str(tmp_path / "summary.csv"))
    assert list(summary.columns) == COLUMNS and summary[COST_COLUMNS].isna().all().all()


def test_a_metrics_file_without_a_chain_is_refused(grid, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _runs(tmp_path, grid)
    chains = dict(list(grid.items())[:-1])
    with pytest.raises(ValueError, match="no chain of benchmark files for results/l1/p0.5/scratch_e/metrics.json"):
        write_summary(list(grid), str(tmp_path / "summary.csv"), chains)


def _seed_rows(costs: list[tuple[float, float | None, float]]) -> pd.DataFrame:
    """summary.csv rows of one PFS experiment over seeds with (cost_s, cost_cpu_s, shared_s)."""
    rows = []
    for seed, (cost, cpu, shared) in enumerate(costs):
        rows.append({"dataset": "digits", "num_classes": 10, "arch": "resnet20", "method": "pfs", "expansion": 20,
                     "multiplier": 1.0, "sparsity": 0.5, "ratio": 0.5, "achieved_ratio": 0.5,
                     "schedule": "scratch_e", "seed": seed, "macs": 5e6, "params": 8e4, "top1": 0.9, "top5": 1.0,
                     "best_top1": 0.9, "epochs": 1, "cost_s": cost, "cost_cpu_s": cpu, "shared_s": shared,
                     "cost_jobs": 3, "shared_with": 2})
    return pd.DataFrame(rows).reindex(columns=COLUMNS)


def test_the_table_averages_the_cost_over_seeds():
    table = seed_table(_seed_rows([(100.0, 190.0, 30.0), (140.0, 250.0, 50.0), (120.0, 220.0, 40.0)]))
    assert list(table.columns) == TABLE_COLUMNS and TABLE_COLUMNS[-4:] == ["cost_s_mean", "cost_s_std",
                                                                            "cost_cpu_s_mean", "shared_s_mean"]
    row = table.iloc[0]
    assert row["cost_s_mean"] == pytest.approx(120) and row["cost_s_std"] == pytest.approx(20)
    assert row["cost_cpu_s_mean"] == pytest.approx(220) and row["shared_s_mean"] == pytest.approx(40)
    single = seed_table(_seed_rows([(100.0, 190.0, 30.0)])).iloc[0]
    assert pd.isna(single["cost_s_std"])  # one seed: no spread exists (not 0)


def test_a_seed_without_a_cost_leaves_the_mean_empty_not_lower():
    row = seed_table(_seed_rows([(100.0, 190.0, 30.0), (140.0, None, 50.0)])).iloc[0]
    assert row["cost_s_mean"] == pytest.approx(120) and pd.isna(row["cost_cpu_s_mean"])
    row = seed_table(_seed_rows([(100.0, 190.0, 30.0), (None, None, None)])).iloc[0]
    assert pd.isna(row["cost_s_mean"]) and pd.isna(row["cost_s_std"]) and pd.isna(row["shared_s_mean"])


def test_markdown_shows_the_cost_and_under_the_table_what_it_includes_and_the_grid_total():
    table = seed_table(_seed_rows([(100.0, 190.0, 30.0), (120.0, 250.0, 50.0)]))
    text = to_markdown(table, {"s": 4000.0, "cpu_s": 7300.0, "jobs": 7, "cpu_missing": 0})
    assert "| epochs | gates at target | cost |\n|" + "---|" * 14 + "\n" in text
    assert text.splitlines()[4].endswith("| 1 |  | 110 ± 14.1 s (40.0 shared) |")
    minutes = to_markdown(seed_table(_seed_rows([(600.0, 1000.0, 300.0), (660.0, 1100.0, 300.0)])))
    assert minutes.splitlines()[4].endswith("| 10.5 ± 0.7 min (5.0 shared) |")
    assert "gate learning + pruning + training for pfs" in text and "shown as shared" in text
    assert "The whole grid took 66.7 min wall, 2.0 h CPU (7 jobs, each counted once)." in text
    no_cpu = to_markdown(table, {"s": 50.0, "cpu_s": None, "jobs": 7, "cpu_missing": 2})
    assert "took 50.0 s wall; CPU time not recorded for 2 of them (7 jobs" in no_cpu
    unknown = to_markdown(seed_table(_seed_rows([(None, None, None)])))
    assert unknown.splitlines()[4].endswith("|  |") and "Cost:" not in unknown


def test_write_tables_puts_the_grid_total_under_the_table(grid, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _runs(tmp_path, grid)
    summary = write_summary(list(grid), "summary.csv", grid)
    table = write_tables(summary, "table.csv", "table.md", "comparison.csv", None, grid)
    assert table["cost_s_mean"].notna().all()
    text = Path("table.md").read_text()
    assert f"The whole grid took {duration(grid_total(grid)['s'])} wall" in text
    assert text.index("The whole grid took") < text.index("# Against published figures")
    assert "| l1 | 16 |  | finetune |" in text


@pytest.mark.parametrize(("args", "cell"), [
    ((4.25, 0.0, 0.0, 1), "4.2 s"),
    ((72.5, 3.0, 30.0, 3), "72.5 ± 3.0 s (30.0 shared)"),
    ((125.0, 7.0, 0.0, 2), "2.1 ± 0.1 min"),
    ((3 * 3600.0, 0.0, 3600.0, 1), "3.0 h (1.0 shared)"),
    ((float("nan"), float("nan"), float("nan"), 2), ""),
])
def test_cost_cells(args, cell):
    assert cost_cell(*args) == cell


# ---------------------------------------------------------------- the plot


def _table_with_costs() -> pd.DataFrame:
    base = {"dataset": "digits", "num_classes": 10, "arch": "resnet20", "n": 3, "top1_std": 0.01, "cost_s_std": 2.0}
    rows = [("full", "scratch_e", 1e7, 0.95, 60.0, 60.0), ("pfs", "scratch_e", 5e6, 0.93, 43.0, 22.0),
            ("pfs", "scratch_b", 5e6, 0.94, 68.0, 22.0), ("l1", "finetune", 5e6, 0.92, 75.0, 61.0),
            ("l1", "scratch_e", 5e6, 0.91, 86.0, 61.0), ("uniform", "scratch_e", 5e6, 0.90, float("nan"), 0.0)]
    return pd.DataFrame([{**base, "method": m, "schedule": s, "macs": macs, "macs_reduction": 1 - macs / 1e7,
                          "top1_mean": top1, "cost_s_mean": cost, "shared_s_mean": shared}
                         for m, s, macs, top1, cost, shared in rows])


def test_accuracy_vs_cost_plot_is_written(tmp_path):
    from pfs.results.plots import accuracy_vs_cost

    accuracy_vs_cost(_table_with_costs(), tmp_path / "accuracy_cost.png")
    assert (tmp_path / "accuracy_cost.png").read_bytes()[:4] == b"\x89PNG"


def test_accuracy_vs_cost_plot_draws_each_method_at_its_cost(tmp_path, monkeypatch):
    from pfs.results import plots

    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, out: figures.append(fig))
    plots.accuracy_vs_cost(_table_with_costs(), tmp_path / "a.png")
    ax = figures[0].axes[0]
    assert ax.get_xlabel() == "cost of the network's whole chain of jobs (wall s)"
    assert ax.get_ylabel() == "top-1 accuracy (%; one test image = 0.28%)"
    assert ax.get_title() == "resnet20 on digits (10 classes)"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["full Scratch-E (n=3)", "pfs Scratch-E (n=3)", "pfs Scratch-B (n=3)", "l1 fine-tuned (n=3)",
                      "l1 Scratch-E (n=3)", "part shared with other rows (dotted, in its colour)"]  # uniform: no cost
    points = {bars.get_label(): bars.lines[0] for bars in ax.containers}  # errorbar: the markers' line
    assert points["l1 fine-tuned (n=3)"].get_marker() == "P" and points["l1 Scratch-E (n=3)"].get_marker() == "D"
    assert points["l1 fine-tuned (n=3)"].get_color() == "tab:red"
    assert points["pfs Scratch-B (n=3)"].get_mfc() == "none"
    assert list(points["pfs Scratch-E (n=3)"].get_xdata()) == [43.0]  # its true cost
    shared = sorted(tuple(line.get_xdata()) for line in ax.lines if line.get_linestyle() == ":")
    assert shared == [(0.0, 60.0), (14.0, 75.0), (21.0, 43.0), (25.0, 86.0), (46.0, 68.0)]
    plots.accuracy_vs_cost(_table_with_costs().assign(cost_s_mean=lambda t: 60 * t["cost_s_mean"]), "b.png")
    assert figures[1].axes[0].get_xlabel().endswith("(wall min)")  # one unit per figure, from the largest cost


def test_accuracy_vs_cost_plot_of_a_table_without_costs_says_so(tmp_path, monkeypatch):
    from pfs.results import plots

    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, out: figures.append(fig))
    plots.accuracy_vs_cost(_table_with_costs().assign(cost_s_mean=float("nan")), tmp_path / "a.png")
    assert figures[0].axes[0].get_title().endswith(": no cost recorded")
