"""The seed-grouped results table (pfs.results.tables): means, spreads, counts and the drop against the baseline."""

from __future__ import annotations

import pandas as pd
import pytest

from pfs.results.summary import COLUMNS
from pfs.results.tables import TABLE_COLUMNS, seed_table, to_markdown


def _run(method, seed, top1, ratio=0.5, schedule="scratch_e", arch="resnet56"):
    pruned = method != "full"
    return {"dataset": "cifar10", "arch": arch, "method": method, "expansion": 20 if pruned else 16,
            "multiplier": 1.0, "sparsity": 0.2 if pruned else None, "ratio": ratio if pruned else 0.0,
            "achieved_ratio": 0.4995 if pruned else 0.0, "schedule": schedule, "seed": seed,
            "macs": 62_000_000 if pruned else 125_000_000, "params": 430_000 if pruned else 855_000, "top1": top1,
            "top5": 0.99, "best_top1": top1 + 0.001, "epochs": 160, "train_time_s": 1.0}


def _summary(rows) -> pd.DataFrame:
    return pd.DataFrame(rows).reindex(columns=COLUMNS)


def test_seeds_are_averaged_and_the_drop_is_against_the_full_networks_mean():
    rows = [_run("full", s, a) for s, a in ((0, 0.93), (1, 0.94), (2, 0.95))]
    rows += [_run("pfs", s, a) for s, a in ((0, 0.92), (1, 0.93))]
    rows += [_run("pfs", 0, 0.90, ratio=0.7)]
    table = seed_table(_summary(rows))
    assert list(table.columns) == TABLE_COLUMNS
    assert table["method"].tolist() == ["full", "pfs", "pfs"] and table["n"].tolist() == [3, 2, 1]
    full, pfs, pfs70 = (table.iloc[i] for i in range(3))
    assert full["top1_mean"] == pytest.approx(0.94) and full["top1_std"] == pytest.approx(0.01)
    assert pfs["top1_mean"] == pytest.approx(0.925) and pfs["top1_drop"] == pytest.approx(0.015)
    assert pd.isna(pfs70["top1_std"]) and pfs70["top1_drop"] == pytest.approx(0.04)  # one seed: no spread exists
    assert pd.isna(full["sparsity"]) and pfs["sparsity"] == 0.2 and pfs["macs_reduction"] == 0.4995


def test_without_a_baseline_the_drop_is_empty_and_archs_stay_apart():
    table = seed_table(_summary([_run("pfs", 0, 0.9), _run("full", 0, 0.95, arch="vgg16_bn")]))
    row = table[table["arch"] == "resnet56"].iloc[0]
    assert pd.isna(row["top1_drop"])


def test_markdown_shows_mean_std_and_n_per_dataset():
    text = to_markdown(seed_table(_summary([_run("full", 0, 0.94), _run("full", 1, 0.95), _run("pfs", 0, 0.93)])))
    assert text.startswith("## cifar10")
    assert "| resnet56 | full | 16 |  | scratch_e | 125.00M | 0.00 | 855.0k | 94.50 ± 0.71 (n=2) | 0.00 |" in text
    assert "| resnet56 | pfs | 20 | 0.2 | scratch_e | 62.00M | 49.95 | 430.0k | 93.00 (n=1) | 1.50 |" in text
    assert "±" not in text.split("| pfs |")[1]  # one seed: the value and n=1, never '± 0.00'
    assert "multiplier" not in text  # every row at multiplier 1: no column
    assert to_markdown(seed_table(_summary([]))) == "No finished training runs yet.\n"


def test_target_met_holds_only_when_every_seed_met_it_and_is_empty_without_learned_gates():
    rows = [_run("full", 0, 0.94)]
    rows += [{**_run("pfs", s, 0.93), "target_met": met, "gates_nonzero_fraction": nz}
             for s, met, nz in ((0, True, 0.18), (1, False, 0.30))]
    rows += [{**_run("pfs", 0, 0.90, ratio=0.7), "target_met": True, "gates_nonzero_fraction": 0.18}]
    table = seed_table(_summary(rows))
    full, missed, met = (table.iloc[i] for i in range(3))
    assert pd.isna(full["target_met"]) and missed["target_met"] is False and met["target_met"] is True
    assert missed["gates_nonzero_fraction"] == pytest.approx(0.24)
    text = to_markdown(table)
    assert "| gates at target |" in text
    full_line = next(line for line in text.splitlines() if "| resnet56 | full |" in line)
    assert full_line.endswith("| 160 |  |  |")  # gates at target and cost (no benchmark files here): empty
    assert "| **no** (non-zero 0.24) |" in text and text.count("| yes |") == 1


def _gated(seed, top1, ratio=0.5, met=True, val_top1=0.41, near=False):
    """A pfs run whose channels.yaml recorded the gate report (pfs.stages.artifacts.GATE_REPORT)."""
    return {**_run("pfs", seed, top1, ratio=ratio), "target_met": met, "gates_nonzero_fraction": 0.18 if met else 0.96,
            "gates_val_top1": val_top1, "gates_near_chance": near}


def test_gates_near_chance_in_some_seed_are_shown_in_every_table_beside_the_target(tmp_path):
    from pfs.results.report_html import results_frame
    from pfs.results.tables import NEAR_CHANCE_NOTE

    rows = [_run("full", 0, 0.94), _gated(0, 0.93, val_top1=0.1367, near=True), _gated(1, 0.93),
            _gated(0, 0.90, ratio=0.7), _gated(0, 0.91, ratio=0.3, met=False, val_top1=0.12, near=True)]
    summary = _summary(rows)
    summary.to_csv(tmp_path / "summary.csv", index=False)  # as summarize writes it and a later reader reads it
    for frame in (summary, pd.read_csv(tmp_path / "summary.csv")):
        table = seed_table(frame)
        full, missed, near, clear = (table.iloc[i] for i in range(4))  # ratios 0.3, 0.5 (two seeds), 0.7
        assert pd.isna(full["gates_near_chance"]) and pd.isna(full["gates_val_top1_min"])
        assert (near["n"], near["gates_near_chance"], near["gates_val_top1_min"]) == (2, True, 0.1367)
        assert (clear["gates_near_chance"], missed["gates_near_chance"]) == (False, True)
    text = to_markdown(table)
    assert "| yes, **near chance** (lowest held-out top-1 of the seeds 13.67%) |" in text
    assert "| **no** (non-zero 0.96), **near chance** (held-out top-1 12.00%) |" in text
    assert text.count("| yes |") == 1 and NEAR_CHANCE_NOTE in text
    cells = results_frame(table)["gates at target"].tolist()  # table.html
    assert cells == ["", "no (non-zero 0.96), near chance (held-out top-1 12.00%)",
                     "yes, near chance (lowest held-out top-1 of the seeds 13.67%)", "yes"]
    clear_only = seed_table(_summary([_gated(0, 0.93)]))
    assert NEAR_CHANCE_NOTE not in to_markdown(clear_only) and "| yes |" in to_markdown(clear_only)


def test_a_summary_written_before_the_near_chance_status_was_recorded_still_gives_the_tables():
    rows = [{**_run("pfs", 0, 0.93), "target_met": True, "gates_nonzero_fraction": 0.18}]
    table = seed_table(pd.DataFrame(rows))  # no gates_val_top1 nor gates_near_chance column
    assert pd.isna(table.loc[0, "gates_near_chance"]) and "| yes |" in to_markdown(table)


def _imagenet(method, top1, classes, ratio=0.5):
    return {**_run(method, 0, top1, ratio=ratio, arch="mobilenet_v2"), "dataset": "imagenet", "num_classes": classes}


def test_runs_over_another_number_of_classes_are_another_row_with_their_own_baseline():
    rows = [_imagenet("full", 0.70, 1000), _imagenet("pfs", 0.68, 1000), _imagenet("full", 0.30, 10),
            _imagenet("pfs", 0.25, 10)]
    table = seed_table(_summary(rows))
    assert list(zip(table["num_classes"], table["method"], strict=True)) == [
        (10, "full"), (10, "pfs"), (1000, "full"), (1000, "pfs")]
    assert table["top1_drop"].tolist() == pytest.approx([0.0, 0.05, 0.0, 0.02])  # each against its own full
    text = to_markdown(table)
    assert text.index("## imagenet (10 classes)") < text.index("## imagenet (1000 classes)")


def test_the_classes_come_from_the_dataset_when_it_has_a_fixed_number_and_stay_empty_for_imagenet():
    cifar = seed_table(_summary([_run("full", 0, 0.94)]).assign(num_classes=None))
    assert cifar["num_classes"].tolist() == [10] and to_markdown(cifar).startswith("## cifar10 (10 classes)")
    imagenet = seed_table(_summary([_imagenet("full", 0.3, None)]))
    assert imagenet["num_classes"].isna().all()
    assert to_markdown(imagenet).startswith("## imagenet (classes not recorded)")


def test_rows_of_another_multiplier_get_a_multiplier_column_in_every_table():
    from pfs.results.report_html import results_frame

    rows = [_imagenet("full", 0.70, 1000), {**_imagenet("pfs", 0.60, 1000), "multiplier": 0.35},
            {**_imagenet("pfs", 0.62, 1000), "seed": 1, "multiplier": 0.35}]
    table = seed_table(_summary(rows))
    text = to_markdown(table)
    assert "| arch | method | expansion | multiplier | sparsity |" in text
    assert "| mobilenet_v2 | full | 16 | 1 |  | scratch_e |" in text
    assert "| mobilenet_v2 | pfs | 20 | 0.35 | 0.2 | scratch_e |" in text and "61.00 ± 1.41 (n=2)" in text
    assert all(line.count("|") == text.splitlines()[2].count("|") for line in text.splitlines() if "|" in line)
    assert results_frame(table)["multiplier"].tolist() == ["1", "0.35"]
    assert "multiplier" not in results_frame(seed_table(_summary([_run("full", 0, 0.9)]))).columns


def test_one_seed_shows_the_value_and_n_without_a_spread_in_html_and_comparison():
    from pfs.results.references import comparison_markdown
    from pfs.results.report_html import comparison_frame, results_frame

    table = seed_table(_summary([_run("full", 0, 0.94), _run("pfs", 0, 0.9344), _run("pfs", 1, 0.9356)]))
    assert pd.isna(table.loc[0, "top1_std"]) and pd.isna(table.loc[0, "cost_s_std"])
    assert results_frame(table)["top-1 (%) mean ± std"].tolist() == ["94.00", "93.50 ± 0.08"]
    from pfs.results.references import COMPARISON_COLUMNS

    row = {"dataset": "cifar10", "arch": "resnet56", "ref_method": "A", "ref_ratio": 0.5, "ref_schedule": "",
           "ref_top1": 93.0, "source": "s", "num_classes": 10, "comparable": True, "method": "pfs",
           "schedule": "scratch_e", "macs_reduction": 0.5, "n": 1, "top1_mean": 92.5, "top1_std": float("nan")}
    comparison = pd.DataFrame([{**row, "multiplier": 1.0}, {**row, "n": 3, "top1_std": 0.25, "multiplier": 0.35}])
    comparison = comparison.reindex(columns=COMPARISON_COLUMNS)
    cells = [line.split(" | ") for line in comparison_markdown(comparison, "refs.yaml").splitlines()
             if line.startswith("| cifar10")]
    assert [c[8] for c in cells] == ["92.50 (n=1)", "92.50 ± 0.25 (n=3)"]
    assert [c[6] for c in cells] == ["pfs scratch_e", "pfs scratch_e x0.35"]  # never read as the reference's m1
    html = comparison_frame(comparison)
    assert html["our top-1 (%) mean ± std"].tolist() == ["92.50 (n=1)", "92.50 ± 0.25 (n=3)"]
    assert html["ours"].tolist() == ["pfs scratch_e", "pfs scratch_e x0.35"]


def test_summary_csv_is_rounded_to_its_precision_and_in_the_tables_row_order(tmp_path):
    from pfs.core import io
    from pfs.results.summary import write_summary

    runs = [_run("pfs", 1, 0.9722222222222222, schedule="scratch_b"), _run("pfs", 0, 0.9694444444444444),
            _run("full", 0, 0.9611111111111111), _run("pfs", 0, 0.95, schedule="scratch_b")]
    paths = []
    for i, run in enumerate(runs):
        run = {**run, "macs": 5_090_000.0, "train_time_s": 117.436164115, "gates_nonzero_fraction": 0.4531249}
        io.write_json_artifact(tmp_path / f"{i}.json", "pfs.metrics", run)
        paths.append(str(tmp_path / f"{i}.json"))
    summary = write_summary(paths, str(tmp_path / "summary.csv"))
    text = (tmp_path / "summary.csv").read_text()
    assert "0.9722222" not in text and "117.436" not in text and "5090000.0" not in text
    written = pd.read_csv(tmp_path / "summary.csv")
    assert written["top1"].tolist() == [0.9611, 0.9694, 0.95, 0.9722]  # fractions to 4 decimals
    assert written["train_time_s"].tolist() == [117.4] * 4 and written["macs"].tolist() == [5_090_000] * 4
    assert written["achieved_ratio"].tolist() == [0.0, 0.4995, 0.4995, 0.4995]  # 6 decimals, as channels.yaml
    assert written["gates_nonzero_fraction"].tolist() == [0.453125] * 4
    # table.md's order: full first, then pfs Scratch-E before Scratch-B; seeds last
    assert list(zip(written["method"], written["schedule"], written["seed"], strict=True)) == [
        ("full", "scratch_e", 0), ("pfs", "scratch_e", 0), ("pfs", "scratch_b", 0), ("pfs", "scratch_b", 1)]
    table = seed_table(summary)
    assert table[["method", "schedule"]].values.tolist() == [["full", "scratch_e"], ["pfs", "scratch_e"],
                                                            ["pfs", "scratch_b"]]


def test_the_readme_results_name_every_rows_multiplier_where_some_row_is_not_at_1():
    from pfs.results.readme import results_table

    rows = [_imagenet("full", 0.70, 1000), {**_imagenet("pfs", 0.60, 1000), "multiplier": 0.35}]
    labels = [line.split(" | ")[0] for line in results_table(seed_table(_summary(rows)))[2:]]
    assert labels[0].startswith("| MobileNetV2 x1, standard width") and labels[1].startswith("| MobileNetV2 x0.35 ")
    plain = results_table(seed_table(_summary([_run("full", 0, 0.9)])))[2]  # every row at 1: named as before
    assert plain.startswith("| ResNet-56, standard width")


def test_the_comparison_carries_each_rows_multiplier(tmp_path):
    import yaml

    from pfs.results.references import compare, comparison_markdown, load_references

    ref = {"dataset": "cifar10", "arch": "resnet56", "num_classes": 10, "split": "test", "method": "Paper X",
           "ratio": 0.5, "top1": 93.2, "source": "synthetic"}
    (tmp_path / "refs.yaml").write_text(yaml.safe_dump({"format_version": 2, "references": [ref]}))
    table = seed_table(_summary([_run("full", 0, 0.94), {**_run("pfs", 0, 0.93), "multiplier": 0.35}]))
    comparison = compare(table, *load_references(tmp_path / "refs.yaml"))
    assert comparison["multiplier"].tolist() == [0.35]
    assert "| pfs scratch_e x0.35 |" in comparison_markdown(comparison, "refs.yaml")
