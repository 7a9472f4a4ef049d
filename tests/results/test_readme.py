"""``python -m pfs readme``: README.md's results section rendered from a run's files, written between its markers,
and ``--check`` failing (exit 1, naming the regenerate command) when the README differs from the run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from pfs_testkit import REPO

from pfs.cli import main
from pfs.core.errors import PfsError
from pfs.results import readme

RUN = "digits/resnet20/e20_m1/s0.5/seed0"
PINNED = "pinned cpu avx2 threads 2 torch 2.14.1"
NATIVE = "native cpu avx512 onednn avx512_core_amx GenuineIntel threads 2 torch 2.14.1"
WIDTHS = [8, 8, 6, 8, 5, 8, 7, 16, 12, 16, 9, 16, 14, 32, 20, 32, 17, 32, 25]


def table_rows(target_met: bool | None) -> list[dict]:
    """table.csv rows of the default grid (one seed), as pfs.results.tables.seed_table writes them."""
    base = {"dataset": "digits", "arch": "resnet20", "multiplier": 1.0, "n": 1, "top1_std": 0.0, "top5_mean": 1.0,
            "best_top1_mean": 0.99, "top1_drop": 0.0}
    rows = [
        {**base, "method": "full", "expansion": 16, "sparsity": None, "ratio": 0.0, "schedule": "scratch_e",
         "macs": 10_200_000, "params": 272_474, "macs_reduction": 0.0, "top1_mean": 0.991667, "epochs": 12},
        {**base, "method": "pfs", "expansion": 20, "sparsity": 0.5, "ratio": 0.5, "schedule": "scratch_b",
         "macs": 5_140_000, "params": 86_123, "macs_reduction": 0.496, "top1_mean": 0.977778, "epochs": 24},
        {**base, "method": "pfs", "expansion": 20, "sparsity": 0.5, "ratio": 0.5, "schedule": "scratch_e",
         "macs": 5_140_000, "params": 86_123, "macs_reduction": 0.496, "top1_mean": 0.986111, "epochs": 12},
        {**base, "method": "uniform", "expansion": 16, "sparsity": None, "ratio": 0.5, "schedule": "scratch_e",
         "macs": 5_140_000, "params": 135_000, "macs_reduction": 0.496, "top1_mean": 0.977778, "epochs": 12},
        {**base, "method": "uniform", "expansion": 16, "sparsity": None, "ratio": 0.5, "schedule": "scratch_b",
         "macs": 5_140_000, "params": 135_000, "macs_reduction": 0.496, "top1_mean": 0.988889, "epochs": 24},
        {**base, "method": "random", "expansion": 20, "sparsity": None, "ratio": 0.5, "schedule": "scratch_e",
         "macs": 5_110_000, "params": 147_000, "macs_reduction": 0.499, "top1_mean": 0.983333, "epochs": 12},
    ]
    if target_met is not None:
        for row in rows:
            row["target_met"] = target_met if row["method"] == "pfs" else None
            row["gates_nonzero_fraction"] = 0.48 if row["method"] == "pfs" else None
    return rows


def write_channels(path: Path, method: str, tied: int, by_tie: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"kind": "pfs.channels", "format_version": 1, "method": method, "arch": "resnet20", "dataset": "digits",
           "expansion": 20, "multiplier": 1.0, "num_classes": 10, "widths": WIDTHS, "kept_channels": sum(WIDTHS),
           "total_channels": 480, "tied_at_threshold": tied, "kept_by_tie": by_tie}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def make_results(root: Path, target_met: bool | None = True) -> Path:
    """A results tree as `snakemake --cores all` leaves it, reduced to the files the README section reads."""
    results = root / "results"
    results.mkdir(parents=True)
    table = pd.DataFrame(table_rows(target_met))
    table.to_csv(results / "table.csv", index=False)
    summary = table.rename(columns={"top1_mean": "top1", "macs_reduction": "achieved_ratio", "top5_mean": "top5",
                                    "best_top1_mean": "best_top1"}).assign(seed=0, numerics=PINNED)
    summary.to_csv(results / "summary.csv", index=False)
    history = pd.DataFrame({"eval": [1, 2, 3], "epoch": [1, 2, 3], "step": [18, 36, 54], "loss": [2.4, 2.3, 2.2],
                            "ce": [2.3, 2.2, 2.1], "reg": [0.1, 0.1, 0.1], "train_top1": [0.2, 0.5, 0.7],
                            "val_top1": [0.3, 0.9, 0.8], "mean_gate": [0.7, 0.5, 0.45],
                            "nonzero_fraction": [0.9, 0.48, 0.4], "selected": [False, True, False]})
    (results / RUN).mkdir(parents=True)
    history.to_csv(results / RUN / "gates_metrics.csv", index=False)
    write_channels(results / RUN / "p0.5" / "channels.yaml", "pfs", tied=6, by_tie=2)
    write_channels(results / "digits/resnet20/random/e20_m1/seed0/p0.5/channels.yaml", "random", tied=0, by_tie=0)
    return results


def write_readme(path: Path, section: str = "typed by hand\n") -> Path:
    path.write_text(f"# title\n\nintro\n\n{readme.BEGIN}\n{section}{readme.END}\n\nafter\n")
    return path


def test_render_gives_the_results_table_in_plain_language(tmp_path):
    text = readme.render(make_results(tmp_path))
    lines = text.splitlines()
    start = lines.index("| network | MACs | params | top-1 (last epoch) | gates at target |")
    assert lines[start + 2:start + 8] == [
        "| ResNet-20, standard width (full baseline, 12 epochs) | 10.20M | 272k | 99.17% |  |",
        "| ResNet-20 pruned from scratch (gates at e20, r = 0.5), 49.6% fewer MACs, Scratch-E (12 epochs) | 5.14M "
        "| 86k | 98.61% | yes |",
        "| same, Scratch-B (24 epochs) | 5.14M | 86k | 97.78% | yes |",
        "| ResNet-20 at uniform width, 49.6% fewer MACs, Scratch-E (12 epochs) | 5.14M | 135k | 97.78% |  |",
        "| same, Scratch-B (24 epochs) | 5.14M | 135k | 98.89% |  |",
        "| ResNet-20 pruned from random gates (e20), 49.9% fewer MACs, Scratch-E (12 epochs) | 5.11M | 147k "
        "| 98.33% |  |",
    ]
    assert len(lines) > start + 8 and lines[start + 8] == ""  # the table ends there
    assert text == readme.render(tmp_path / "results")  # deterministic


def test_render_does_not_depend_on_where_the_results_are(tmp_path):
    one = make_results(tmp_path / "one")
    shutil.copytree(one, tmp_path / "two")
    assert readme.render(one) == readme.render(tmp_path / "two")
    assert "`results/summary.csv` (digits; seed 0; " in readme.render(one)


def test_render_names_the_split_each_dataset_is_measured_on(tmp_path):
    results = make_results(tmp_path)
    assert "; top-1 on the test set; " in readme.render(results)
    table = pd.read_csv(results / "table.csv")
    full = table[table["method"] == "full"].assign(dataset="imagenet", arch="mobilenet_v2")
    pd.concat([table, full]).to_csv(results / "table.csv", index=False)
    assert "(digits, imagenet; seed 0; top-1 on the test set (imagenet: val set); " in readme.render(results)
    full.to_csv(results / "table.csv", index=False)
    assert "(imagenet; seed 0; top-1 on the val set; " in readme.render(results)


def test_render_says_NO_for_gates_that_missed_their_target(tmp_path):
    text = readme.render(make_results(tmp_path, target_met=False))
    assert "| same, Scratch-B (24 epochs) | 5.14M | 86k | 97.78% | NO |" in text


@pytest.mark.parametrize("empty", [False, True])
def test_render_without_target_met_values_has_no_gates_column(tmp_path, empty):
    results = make_results(tmp_path, target_met=None)
    if empty:  # the column, but no run has a value in it
        pd.read_csv(results / "table.csv").assign(target_met=None).to_csv(results / "table.csv", index=False)
    text = readme.render(results)
    assert "| network | MACs | params | top-1 (last epoch) |\n|---|---|---|---|\n" in text
    assert "gates at target" not in text


def test_render_gives_one_gate_line_per_gate_learning_run(tmp_path):
    text = readme.render(make_results(tmp_path))
    gate_lines = [line for line in text.splitlines() if line.startswith("- ResNet-20, gates at")]
    assert gate_lines == [
        "- ResNet-20, gates at e20, r = 0.5, seed 0: kept evaluation 2 of 3 (epoch 2): 48.00% of the gates "
        "non-zero, target at most 50.00%, meets the target; held-out top-1 90.00% (chance 10.00%)"]


def test_render_flags_kept_gates_above_the_target(tmp_path):
    results = make_results(tmp_path)
    path = results / RUN / "gates_metrics.csv"
    history = pd.read_csv(path).assign(nonzero_fraction=[1.0, 0.99, 0.98], selected=[False, False, True])
    history.to_csv(path, index=False)
    text = readme.render(results)
    assert "kept evaluation 3 of 3 (epoch 3): 98.00% of the gates non-zero, target at most 50.00%, MISSES" in text


def test_render_gives_pruned_widths_and_ties(tmp_path):
    text = readme.render(make_results(tmp_path))
    widths = ", ".join(map(str, WIDTHS))
    assert (f"- ResNet-20 from learned gates (e20, seed 0), ratio 0.5: {sum(WIDTHS)} of 480 channels kept, widths "
            f"[{widths}]; 6 channels at the threshold, 2 of them kept by the seeded permutation") in text
    assert "- ResNet-20 from random gates (e20, seed 0), ratio 0.5: " in text
    random_line = next(line for line in text.splitlines() if line.startswith("- ResNet-20 from random gates"))
    assert random_line.endswith("; no channel at the threshold")


@pytest.mark.parametrize(("tied", "by_tie", "words"), [(1, 0, "1 channel at the threshold, kept"),
                                                      (4, 0, "4 channels at the threshold, all kept")])
def test_render_says_how_ties_at_the_threshold_were_kept(tmp_path, tied, by_tie, words):
    results = make_results(tmp_path)
    write_channels(results / RUN / "p0.5" / "channels.yaml", "pfs", tied=tied, by_tie=by_tie)
    assert f"]; {words}\n" in readme.render(results)


def test_render_shows_mean_and_std_over_several_seeds(tmp_path):
    results = make_results(tmp_path)
    table = pd.read_csv(results / "table.csv")
    table.loc[0, ["n", "top1_std"]] = [3, 0.0012]
    table.to_csv(results / "table.csv", index=False)
    assert "| 10.20M | 272k | 99.17% ± 0.12 (n=3) |" in readme.render(results)


def test_write_then_check_passes_and_fails_after_one_number_changes(tmp_path):
    results = make_results(tmp_path)
    path = write_readme(tmp_path / "README.md")
    assert readme.write(path, results) is True
    text = path.read_text()
    assert text.startswith("# title\n\nintro\n\n" + readme.BEGIN + "\n") and text.endswith(readme.END + "\n\nafter\n")
    assert readme.render(results) in text
    readme.check(path, results)  # no exception: up to date
    assert readme.write(path, results) is False  # nothing to change
    path.write_text(text.replace("| 99.17% |", "| 99.44% |"))
    with pytest.raises(readme.ReadmeOutOfDate) as caught:
        readme.check(path, results)
    message = str(caught.value)
    assert readme.REGENERATE in message.splitlines()[0]
    assert "-| ResNet-20, standard width (full baseline, 12 epochs) | 10.20M | 272k | 99.44% |  |" in message
    assert "+| ResNet-20, standard width (full baseline, 12 epochs) | 10.20M | 272k | 99.17% |  |" in message


@pytest.mark.parametrize("text", ["# no markers\n", f"{readme.END}\n{readme.BEGIN}\n",
                                  f"{readme.BEGIN}\n{readme.BEGIN}\n{readme.END}\n"])
def test_missing_or_misplaced_markers_give_one_error_line(tmp_path, text):
    path = tmp_path / "README.md"
    path.write_text(text)
    with pytest.raises(PfsError, match="needs one line") as caught:
        readme.check(path, make_results(tmp_path))
    assert "\n" not in str(caught.value) and readme.BEGIN in str(caught.value) and readme.END in str(caught.value)


@pytest.mark.parametrize("missing", ["table.csv", "summary.csv", f"{RUN}/gates_metrics.csv",
                                     f"{RUN}/p0.5/channels.yaml"])
def test_a_missing_results_file_is_named_with_the_command_to_run(tmp_path, missing):
    results = make_results(tmp_path)
    (results / missing).unlink()
    with pytest.raises(PfsError) as caught:
        readme.render(results)
    message = str(caught.value)
    assert "\n" not in message
    assert str(results / missing) in message and "does not exist" in message
    assert "run `snakemake --cores all` first" in message


def test_cli_check_exits_1_naming_the_regenerate_command_and_0_after_writing(tmp_path, capsys):
    results = make_results(tmp_path)
    path = write_readme(tmp_path / "README.md")
    args = ["readme", "--results", str(results), "--readme", str(path)]
    assert main([*args, "--check"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and "snakemake --cores all && python -m pfs readme" in err and "-typed by hand" in err
    assert main(args) == 0
    assert '"changed": true' in capsys.readouterr().out
    assert main([*args, "--check"]) == 0
    assert '"up_to_date": true' in capsys.readouterr().out


def test_cli_readme_of_a_missing_run_fails_in_one_line(tmp_path):
    path = write_readme(tmp_path / "README.md")
    proc = subprocess.run([sys.executable, "-m", "pfs", "readme", "--check", "--readme", str(path), "--results",
                           str(tmp_path / "results")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().count("\n") == 0
    assert "summary.csv does not exist; run `snakemake --cores all` first" in proc.stderr


def test_render_names_the_classic_baseline_its_fine_tuning_and_its_widths(tmp_path):
    results = make_results(tmp_path)
    table = pd.read_csv(results / "table.csv")
    l1 = {"dataset": "digits", "arch": "resnet20", "multiplier": 1.0, "n": 1, "top1_std": 0.0, "top5_mean": 1.0,
          "best_top1_mean": 0.99, "top1_drop": 0.0, "method": "l1", "expansion": 16, "sparsity": None, "ratio": 0.5,
          "macs": 5_080_000, "params": 119_750, "macs_reduction": 0.502, "target_met": None}
    rows = [{**l1, "schedule": "finetune", "top1_mean": 0.963889, "epochs": 2},
            {**l1, "schedule": "scratch_e", "top1_mean": 0.988889, "epochs": 12}]
    table = pd.concat([table, pd.DataFrame(rows)], ignore_index=True)
    table.to_csv(results / "table.csv", index=False)
    table.rename(columns={"top1_mean": "top1"}).assign(seed=0).to_csv(results / "summary.csv", index=False)
    write_channels(results / "digits/resnet20/l1/seed0/p0.5/channels.yaml", "l1", tied=0, by_tie=0)
    lines = readme.render(results).splitlines()
    # after the pfs rows, Scratch-E before the fine-tuned weights, whose epochs say they follow the pretraining
    start = lines.index("| same, Scratch-B (24 epochs) | 5.14M | 86k | 97.78% | yes |")
    assert lines[start + 1:start + 3] == [
        "| ResNet-20 pruned by filter L1 norm after pretraining (classic), 50.2% fewer MACs, Scratch-E (12 epochs) "
        "| 5.08M | 120k | 98.89% |  |",
        "| same, its inherited weights fine-tuned (2 epochs after the full network's 12) | 5.08M | 120k | 96.39% |  |",
    ]
    assert any(line.startswith("- ResNet-20 from filter L1 norms of the trained full network (seed 0), ratio 0.5: ")
               for line in lines)


def test_render_names_network_slimming_after_l1_with_its_sparsity_training_and_widths(tmp_path):
    results = make_results(tmp_path)
    table = pd.read_csv(results / "table.csv")
    classic = {"dataset": "digits", "arch": "resnet20", "multiplier": 1.0, "n": 1, "top1_std": 0.0, "top5_mean": 1.0,
               "best_top1_mean": 0.99, "top1_drop": 0.0, "expansion": 16, "sparsity": None, "ratio": 0.5,
               "macs": 5_080_000, "params": 119_750, "macs_reduction": 0.502, "target_met": None,
               "top1_mean": 0.95, "epochs": 2, "schedule": "finetune"}
    rows = [{**classic, "method": "slim"}, {**classic, "method": "l1"}]  # slim first: the order is the table's
    table = pd.concat([table, pd.DataFrame(rows)], ignore_index=True)
    table.to_csv(results / "table.csv", index=False)
    table.rename(columns={"top1_mean": "top1"}).assign(seed=0).to_csv(results / "summary.csv", index=False)
    for method in ("l1", "slim"):
        write_channels(results / f"digits/resnet20/{method}/seed0/p0.5/channels.yaml", method, tied=0, by_tie=0)
    lines = readme.render(results).splitlines()
    l1 = lines.index("| ResNet-20 pruned by filter L1 norm after pretraining (classic), 50.2% fewer MACs, its "
                     "inherited weights fine-tuned (2 epochs after the full network's 12) | 5.08M | 120k | 95.00% |  |")
    assert lines[l1 + 1] == (
        "| ResNet-20 pruned by BN scale after sparsity training (network slimming), 50.2% fewer MACs, its inherited "
        "weights fine-tuned (2 epochs after 12 of sparsity training) | 5.08M | 120k | 95.00% |  |")
    sources = [line.split(" (")[0] for line in lines if line.startswith("- ResNet-20 from ")]
    assert [source.removeprefix("- ResNet-20 from ") for source in sources] == [
        "learned gates", "filter L1 norms of the trained full network",
        "BN scales of the sparsity-trained full network", "random gates"]
    assert "- ResNet-20 from BN scales of the sparsity-trained full network (seed 0), ratio 0.5: " in "\n".join(lines)


def test_render_ends_with_the_numerics_fingerprint_and_what_it_promises(tmp_path):
    results = make_results(tmp_path)
    last = readme.render(results).splitlines()[-1]
    assert last.startswith(readme.FINGERPRINT_LINE) and f"`{PINNED}`" in last
    assert "the same on every x86-64 CPU with AVX2" in last
    summary = pd.read_csv(results / "summary.csv").assign(numerics=NATIVE)
    summary.to_csv(results / "summary.csv", index=False)
    last = readme.render(results).splitlines()[-1]
    assert f"`{NATIVE}`" in last and "another CPU kind" in last and "numerics.mode: pinned" in last
    assert readme.fingerprints(readme.render(results)) == NATIVE


def _rerun_on(results: Path, key: str, top1_shift: float = 0.0, macs_factor: float = 1.0) -> None:
    """The same run as if made on another machine: another fingerprint, top-1 and MACs moved a little."""
    summary = pd.read_csv(results / "summary.csv").assign(numerics=key)
    summary.to_csv(results / "summary.csv", index=False)
    table = pd.read_csv(results / "table.csv")
    table.loc[table["method"] == "pfs", "top1_mean"] += top1_shift
    table.loc[table["method"] == "pfs", "macs"] *= macs_factor
    table.to_csv(results / "table.csv", index=False)


def test_check_on_another_cpu_kind_says_so_in_one_line_and_passes_within_the_slack(tmp_path):
    results = make_results(tmp_path)
    path = write_readme(tmp_path / "README.md")
    readme.write(path, results)
    _rerun_on(results, NATIVE, top1_shift=-readme.TOP1_SLACK_IMAGES / 360, macs_factor=1.01)
    note = readme.check(path, results)
    assert note is not None and "\n" not in note
    assert f"`{PINNED}`" in note and f"`{NATIVE}`" in note and "another CPU kind" in note


@pytest.mark.parametrize(("shift", "factor", "words"), [
    (-(readme.TOP1_SLACK_IMAGES + 1) / 360, 1.0, "more than 20 test images"),
    (0.0, 1.03, "more than 2% apart"),
])
def test_check_on_another_cpu_kind_fails_beyond_the_slack(tmp_path, shift, factor, words):
    results = make_results(tmp_path)
    path = write_readme(tmp_path / "README.md")
    readme.write(path, results)
    _rerun_on(results, NATIVE, top1_shift=shift, macs_factor=factor)
    with pytest.raises(readme.ReadmeOutOfDate, match=words) as caught:
        readme.check(path, results)
    assert "pruned from scratch" in str(caught.value) and readme.REGENERATE in str(caught.value)


def test_check_on_another_cpu_kind_fails_when_a_row_or_the_target_differs(tmp_path):
    results = make_results(tmp_path)
    path = write_readme(tmp_path / "README.md")
    readme.write(path, results)
    _rerun_on(results, NATIVE)
    table = pd.read_csv(results / "table.csv")
    table.loc[table["method"] == "pfs", "target_met"] = False
    table.to_csv(results / "table.csv", index=False)
    with pytest.raises(readme.ReadmeOutOfDate, match="gates at target"):
        readme.check(path, results)
    table[table["method"] != "uniform"].to_csv(results / "table.csv", index=False)
    with pytest.raises(readme.ReadmeOutOfDate, match="the rows differ"):
        readme.check(path, results)


def test_check_with_the_same_fingerprint_compares_exactly(tmp_path):
    results = make_results(tmp_path)
    path = write_readme(tmp_path / "README.md")
    readme.write(path, results)
    _rerun_on(results, PINNED, top1_shift=-1 / 360)  # one image, same numerics: a real change
    with pytest.raises(readme.ReadmeOutOfDate, match="regenerate it with"):
        readme.check(path, results)


def _several_seeds(results: Path, seeds=(0, 1, 2)) -> None:
    """summary.csv and gates_metrics.csv of the default grid run with ``seeds``."""
    one = pd.read_csv(results / "summary.csv")
    frames = [one.assign(seed=s, top1=one["top1"] - 0.01 * s) for s in seeds]
    pd.concat(frames).to_csv(results / "summary.csv", index=False)
    for s in seeds[1:]:
        run = results / RUN.replace("seed0", f"seed{s}")
        shutil.copytree(results / RUN, run)
        history = pd.read_csv(run / "gates_metrics.csv")
        history["nonzero_fraction"] += 0.01 * s
        history.to_csv(run / "gates_metrics.csv", index=False)


def test_render_spread_gives_mean_and_std_over_the_seeds_with_command_and_date(tmp_path):
    results = make_results(tmp_path)
    _several_seeds(results)
    text = readme.render_spread(results, today="2026-12-06")
    assert "over seeds 0, 1, 2" in text and "Generated on 2026-12-06 by `" + readme.SPREAD_COMMAND + "`" in text
    assert "| ResNet-20, standard width (full baseline, 12 epochs) | 10.20M | 272k | 98.17% ± 1.00 (n=3) |" in text
    assert ("- ResNet-20, gates at e20, r = 0.5, seeds 0, 1, 2: kept non-zero fraction 49.00% ± 1.00 (target at "
            "most 50.00%, met in 3 of 3); held-out top-1 90.00% ± 0.00 (chance 10.00%)") in text
    assert text.splitlines()[-1].startswith(readme.FINGERPRINT_LINE)


def test_main_section_keeps_the_first_seed_when_the_spread_grid_ran_in_the_same_results(tmp_path):
    results = make_results(tmp_path)
    before = readme.render(results)
    _several_seeds(results)
    assert readme.render(results) == before


def test_spread_of_one_seed_names_the_command_and_write_spread_fills_its_markers(tmp_path):
    results = make_results(tmp_path)
    with pytest.raises(PfsError, match="holds seed 0 only"):
        readme.render_spread(results)
    _several_seeds(results)
    path = tmp_path / "README.md"
    path.write_text(f"{readme.BEGIN}\nx\n{readme.END}\n{readme.SPREAD_BEGIN}\ny\n{readme.SPREAD_END}\n")
    assert readme.write(path, results, spread=True) is True
    assert "(n=3)" in path.read_text() and "x\n" in path.read_text()


_MARKERS = {"results": (readme.BEGIN, readme.END), "spread": (readme.SPREAD_BEGIN, readme.SPREAD_END),
            "example": (readme.EXAMPLE_BEGIN, readme.EXAMPLE_END)}


@pytest.mark.parametrize("section", sorted(readme.SECTION_FILES))
def test_each_section_is_in_its_file_of_the_checkout_once(section):
    """README.md holds the results, the docs pages the seed spread and the example run: where --readme points."""
    text = (REPO / readme.SECTION_FILES[section]).read_text()
    readme.split(text, readme.SECTION_FILES[section], *_MARKERS[section])  # one pair, in order
    others = [path for name, path in readme.SECTION_FILES.items() if name != section]
    assert all(_MARKERS[section][0] not in (REPO / path).read_text() for path in others)


@pytest.mark.parametrize(("flag", "section"), [("--spread", "spread"), ("--example", "example")])
def test_cli_writes_the_spread_and_example_to_their_docs_pages_and_checks_the_readme(tmp_path, monkeypatch, capsys,
                                                                                       flag, section):
    results = make_results(tmp_path)
    _several_seeds(results)
    page = tmp_path / readme.SECTION_FILES[section]
    page.parent.mkdir(parents=True, exist_ok=True)
    begin, end = _MARKERS[section]
    page.write_text(f"# page\n\n{begin}\nold\n{end}\n")
    write_readme(tmp_path / "README.md")
    monkeypatch.chdir(tmp_path)
    assert main(["readme", flag, "--results", "results"]) == 0
    assert json.loads(capsys.readouterr().out)["readme"] == readme.SECTION_FILES[section]
    assert "\nold\n" not in page.read_text() and "| ResNet-20, standard width" in page.read_text()
    assert "typed by hand" in (tmp_path / "README.md").read_text()  # the README's results are left alone
    assert main(["readme", flag, "--check", "--results", "results"]) == 1  # --check: README.md's results
    assert "README.md's results section differs" in capsys.readouterr().err


def test_cli_readme_flag_still_names_the_file_of_any_section(tmp_path, capsys):
    results = make_results(tmp_path)
    _several_seeds(results)
    path = tmp_path / "notes.md"
    path.write_text(f"{readme.SPREAD_BEGIN}\nx\n{readme.SPREAD_END}\n")
    assert main(["readme", "--spread", "--results", str(results), "--readme", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)["readme"] == str(path) and "(n=3)" in path.read_text()
