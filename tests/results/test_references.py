"""Published reference figures beside ours (pfs.results.references): the file's checks, the matching and the
differences.
Every reference number here is synthetic."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from pfs.core.catalog import DATASETS
from pfs.core.errors import PfsError
from pfs.results.references import COMPARISON_COLUMNS, compare, comparison_markdown, load_references
from pfs.results.summary import COLUMNS, write_tables
from pfs.results.tables import seed_table

REPO = Path(__file__).resolve().parents[2]


def _run(method, seed, top1, ratio=0.5, achieved=0.4995, schedule="scratch_e", arch="resnet56"):
    pruned = method != "full"
    return {"dataset": "cifar10", "num_classes": 10, "arch": arch, "method": method, "expansion": 20 if pruned else 16,
            "multiplier": 1.0, "sparsity": 0.2 if method == "pfs" else None, "ratio": ratio if pruned else 0.0,
            "achieved_ratio": achieved if pruned else 0.0, "schedule": schedule, "seed": seed,
            "macs": 62_900_000 if pruned else 125_747_840, "params": 430_000 if pruned else 855_770, "top1": top1,
            "top5": 0.99, "best_top1": top1, "epochs": 160, "train_time_s": 1.0}


def _table() -> pd.DataFrame:
    rows = [_run("full", s, a) for s, a in ((0, 0.93), (1, 0.95))]  # mean 94.0
    rows += [_run("pfs", s, a) for s, a in ((0, 0.925), (1, 0.935))]  # mean 93.0, drop 1.0
    rows += [_run("pfs", s, a, schedule="scratch_b") for s, a in ((0, 0.935), (1, 0.935))]  # 93.5
    rows += [_run("uniform", 0, 0.92, achieved=0.5003)]  # 92.0
    rows += [_run("pfs", 0, 0.90, ratio=0.7, achieved=0.7001)]
    return seed_table(pd.DataFrame(rows).reindex(columns=COLUMNS))


def _ref(**kw):
    row = {"dataset": "cifar10", "arch": "resnet56", "num_classes": 10, "split": "test", "method": "Paper X Scratch-B",
           "ratio": 0.5, "top1": 93.2, "baseline_top1": 93.8, "source": "synthetic test row, table 9"}
    row.update(kw)
    return row


def _write(tmp_path: Path, rows, version: int = 2, **top) -> Path:
    path = tmp_path / "refs.yaml"
    path.write_text(yaml.safe_dump({"format_version": version, **top, "references": rows}, sort_keys=False))
    return path


def test_the_shipped_references_file_is_valid_and_every_row_names_its_source():
    path = REPO / "configs" / "paper_results.yaml"
    refs, tolerance = load_references(path)
    assert 0 < tolerance <= 0.05
    assert refs["source"].str.len().min() >= 5
    assert refs["top1"].dropna().between(1, 100).all()
    # every row states its classes and split (format_version 2), those of the full dataset it was published on
    assert yaml.safe_load(path.read_text())["format_version"] == 2
    for row in refs.itertuples():
        info = DATASETS[row.dataset]
        assert (row.num_classes, row.split) == (info.num_classes, info.eval_split), row.method


def test_a_reference_is_compared_with_every_run_of_ours_near_its_ratio(tmp_path):
    refs, tol = load_references(_write(tmp_path, [_ref()]))
    out = compare(_table(), refs, tol)
    assert list(out.columns) == COMPARISON_COLUMNS
    assert sorted(zip(out["method"], out["schedule"], strict=True)) == [
        ("pfs", "scratch_b"), ("pfs", "scratch_e"), ("uniform", "scratch_e")]  # not the p0.7 run, not full
    pfs_b = out[(out["method"] == "pfs") & (out["schedule"] == "scratch_b")].iloc[0]
    assert pfs_b["top1_mean"] == pytest.approx(93.5) and pfs_b["n"] == 2
    assert pfs_b["top1_diff"] == pytest.approx(0.3)  # 93.5 - 93.2
    assert pfs_b["ref_drop"] == pytest.approx(0.6)  # 93.8 - 93.2
    assert pfs_b["top1_drop"] == pytest.approx(0.5)  # 94.0 - 93.5
    assert pfs_b["drop_diff"] == pytest.approx(-0.1)  # we drop 0.1 points less than the reference


def test_schedule_our_methods_and_tolerance_narrow_the_match(tmp_path):
    table = _table()
    refs, _ = load_references(_write(tmp_path, [_ref(schedule="scratch_b", our_methods=["pfs"])]))
    out = compare(table, refs)
    assert out[["method", "schedule"]].values.tolist() == [["pfs", "scratch_b"]]
    refs, tol = load_references(_write(tmp_path, [_ref(ratio=0.52)], match_tolerance=0.01))
    out = compare(table, refs, tol)
    assert len(out) == 1 and pd.isna(out.iloc[0]["n"])  # nothing of ours within 0.01 of 0.52: listed alone


def test_unpruned_references_match_only_our_unpruned_network_and_have_no_drop(tmp_path):
    refs, tol = load_references(_write(tmp_path, [_ref(ratio=0, baseline_top1=None, top1=93.0)]))
    out = compare(_table(), refs, tol)
    assert out["method"].tolist() == ["full"]
    row = out.iloc[0]
    assert row["top1_diff"] == pytest.approx(1.0) and pd.isna(row["ref_drop"]) and pd.isna(row["drop_diff"])


def test_references_of_other_archs_are_left_out_and_empty_figures_have_no_difference(tmp_path):
    rows = [_ref(arch="vgg16_bn"), _ref(top1=None, baseline_top1=None, method="Paper Y")]
    refs, tol = load_references(_write(tmp_path, rows))
    out = compare(_table(), refs, tol)
    assert set(out["ref_method"]) == {"Paper Y"} and len(out) == 3
    assert out["top1_diff"].isna().all() and out["top1_mean"].notna().all()


def test_markdown_shows_reference_ours_and_the_signed_difference(tmp_path):
    refs, tol = load_references(_write(tmp_path, [_ref(schedule="scratch_b", our_methods=["pfs"]),
                                                  _ref(ratio=0.9, method="Paper Z")]))
    text = comparison_markdown(compare(_table(), refs, tol), "refs.yaml")
    assert ("| cifar10 | resnet56 | Paper X Scratch-B (scratch_b) | 50.0 | 93.20 | 0.60 | pfs scratch_b | 50.0 | "
            "93.50 ± 0.00 (n=2) | 0.50 | +0.30 | -0.10 | synthetic test row, table 9 |") in text
    assert "| Paper Z | 90.0 | 93.20 | 0.60 | not run at this ratio |" in text
    assert comparison_markdown(pd.DataFrame(columns=COMPARISON_COLUMNS), None).startswith("No references file")
    assert "add rows there" in comparison_markdown(pd.DataFrame(columns=COMPARISON_COLUMNS), "refs.yaml")


def _imagenet_run(classes: int, top1: float, seed: int = 0) -> dict:
    """An unpruned MobileNetV2 run on ImageNet (classes: 1000 for ILSVRC2012, fewer for a subset's index)."""
    return {"dataset": "imagenet", "num_classes": classes, "arch": "mobilenet_v2", "method": "full", "expansion": 32,
            "multiplier": 1.0, "sparsity": None, "ratio": 0.0, "achieved_ratio": 0.0, "schedule": "scratch_e",
            "seed": seed, "macs": 300_774_272, "params": 3_504_872, "top1": top1, "top5": 0.9, "best_top1": top1,
            "epochs": 2, "train_time_s": 1.0}


TORCHVISION = {"dataset": "imagenet", "arch": "mobilenet_v2", "num_classes": 1000, "split": "val", "ratio": 0,
               "method": "torchvision MobileNetV2", "top1": 71.878, "source": "synthetic torchvision row"}


def test_a_reference_over_other_classes_is_listed_as_not_comparable_without_a_difference(tmp_path):
    refs, tol = load_references(_write(tmp_path, [TORCHVISION]))
    summary = pd.DataFrame([_imagenet_run(10, 0.28)]).reindex(columns=COLUMNS)  # a 10-class toy ImageNet
    out = compare(seed_table(summary), refs, tol)
    assert len(out) == 1
    row = out.iloc[0]
    assert not row["comparable"] and row["not_comparable"] == "reference: 1000 classes, this run: 10"
    assert (row["ref_num_classes"], row["num_classes"], row["split"]) == (1000, 10, "val")
    assert pd.isna(row["top1_diff"]) and pd.isna(row["top1_mean"]) and pd.isna(row["method"])
    text = comparison_markdown(out, "refs.yaml")
    assert "| top-1 diff |" not in text and "-43.88" not in text  # no table row, no difference
    assert "No reference in refs.yaml is over the number of classes and split of this grid's runs" in text
    assert ("- imagenet mobilenet_v2: torchvision MobileNetV2 (MACs reduction 0.0%, top-1 71.88; synthetic "
            "torchvision row): reference: 1000 classes, this run: 10") in text


def test_runs_over_the_references_classes_are_compared_beside_runs_over_others(tmp_path):
    refs, tol = load_references(_write(tmp_path, [TORCHVISION]))
    summary = pd.DataFrame([_imagenet_run(10, 0.28), _imagenet_run(1000, 0.70)]).reindex(columns=COLUMNS)
    table = seed_table(summary)
    assert table["num_classes"].tolist() == [10, 1000]  # two tasks, two rows, each with its own baseline
    out = compare(table, refs, tol)
    same, other = out[out["comparable"]].iloc[0], out[~out["comparable"]].iloc[0]
    assert same["num_classes"] == 1000 and same["top1_diff"] == pytest.approx(70.0 - 71.878)
    assert other["num_classes"] == 10 and pd.isna(other["top1_diff"])
    text = comparison_markdown(out, "refs.yaml")
    assert "| imagenet | mobilenet_v2 | torchvision MobileNetV2 | 0.0 | 71.88 |  | full scratch_e |" in text
    assert "| -1.88 |" in text and text.count("reference: 1000 classes, this run: 10") == 1
    assert text.index("| -1.88 |") < text.index("Not comparable")


def test_a_reference_on_another_split_is_not_comparable(tmp_path):
    refs, tol = load_references(_write(tmp_path, [_ref(split="val")]))  # not CIFAR's test set
    out = compare(_table(), refs, tol)
    assert len(out) == 1 and not out.iloc[0]["comparable"] and pd.isna(out.iloc[0]["top1_diff"])
    assert out.iloc[0]["not_comparable"] == "reference on the val split, this run on test"


def test_an_imagenet_run_that_did_not_record_its_classes_is_not_compared(tmp_path):
    refs, tol = load_references(_write(tmp_path, [TORCHVISION]))
    summary = pd.DataFrame([_imagenet_run(10, 0.28)]).reindex(columns=COLUMNS).assign(num_classes=None)
    out = compare(seed_table(summary), refs, tol)
    assert not out.iloc[0]["comparable"] and "number of classes is not recorded" in out.iloc[0]["not_comparable"]
    cifar = pd.DataFrame([_run("full", 0, 0.94)]).reindex(columns=COLUMNS).assign(num_classes=None)
    assert seed_table(cifar)["num_classes"].tolist() == [10]  # CIFAR-10 has 10 whatever was recorded


def test_a_format_1_file_is_read_with_each_datasets_standard_classes_and_split(tmp_path):
    old = [{k: v for k, v in row.items() if k not in ("num_classes", "split")} for row in (_ref(), TORCHVISION)]
    refs, _ = load_references(_write(tmp_path, old, version=1))
    assert refs[["num_classes", "split"]].values.tolist() == [[10, "test"], [1000, "val"]]
    out = compare(_table(), refs)
    assert out["comparable"].all() and out["top1_diff"].notna().all()  # an old CIFAR-10 file compares as before
    with pytest.raises(PfsError, match=r"refs.yaml: references.\d: 'num_classes' is a required property"):
        load_references(_write(tmp_path, old, version=2))  # version 2 states them


@pytest.mark.parametrize(("rows", "top", "names"), [
    ([_ref(source=None)], {}, "references.0.source"),
    ([{k: v for k, v in _ref().items() if k != "source"}], {}, "'source' is a required property"),
    ([_ref(top1=9320)], {}, "references.0.top1"),
    ([_ref(ratio=1.0)], {}, "references.0.ratio"),
    ([_ref(schedule="scratch_c")], {}, "references.0.schedule"),
    ([_ref(arch="ResNet-56")], {}, "references.0.arch"),
    ([_ref(our_methods=["pruned"])], {}, "references.0.our_methods.0"),
    ([_ref(flops=1)], {}, "'flops' was unexpected"),
    ([_ref()], {"match_tolerance": 2}, "match_tolerance"),
    ([_ref(split="train")], {}, "references.0.split"),
    ([_ref(num_classes=1)], {}, "references.0.num_classes"),
    ([_ref(num_classes=100)], {}, "references.0: num_classes 100 for cifar10, which has 10 classes"),
    ([_ref(ratio=0)], {}, "references.0: an unpruned row (ratio 0) has no baseline_top1"),
])
def test_a_malformed_references_file_is_refused_naming_the_row_and_key(tmp_path, rows, top, names):
    with pytest.raises(PfsError) as err:
        load_references(_write(tmp_path, rows, **top))
    assert names in str(err.value) and "refs.yaml" in str(err.value) and "\n" not in str(err.value)


def test_a_missing_or_unparsable_references_file_says_how_to_fix_it(tmp_path):
    with pytest.raises(PfsError, match="does not exist: set the config key references"):
        load_references(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("format_version: 1\nreferences: [\n")
    with pytest.raises(PfsError, match=r"bad.yaml is not valid YAML at line \d"):
        load_references(bad)
    version = _write(tmp_path, [_ref()])
    version.write_text(version.read_text().replace("format_version: 2", "format_version: 3"))
    with pytest.raises(PfsError, match="format_version"):
        load_references(version)


def test_write_tables_writes_the_comparison_csv_and_a_markdown_section(tmp_path):
    summary = pd.DataFrame([_run("full", 0, 0.94), _run("pfs", 0, 0.93)]).reindex(columns=COLUMNS)
    refs = _write(tmp_path, [_ref(), _ref(ratio=0, baseline_top1=None, top1=93.0, method="Paper X full")])
    out = {name: str(tmp_path / name) for name in ("table.csv", "table.md", "comparison.csv")}
    write_tables(summary, out["table.csv"], out["table.md"], out["comparison.csv"], str(refs))
    comparison = pd.read_csv(out["comparison.csv"])
    assert comparison[["ref_method", "method"]].values.tolist() == [["Paper X Scratch-B", "pfs"],
                                                                  ["Paper X full", "full"]]
    assert comparison["top1_diff"].tolist() == pytest.approx([-0.2, 1.0])
    md = Path(out["table.md"]).read_text()
    assert md.index("# Results") < md.index("# Against published figures") and "| -0.20 |" in md
    write_tables(summary, out["table.csv"], out["table.md"], out["comparison.csv"], None)
    assert pd.read_csv(out["comparison.csv"]).empty
    assert "No references file configured" in Path(out["table.md"]).read_text()


def test_table_md_lists_a_reference_over_other_classes_as_not_comparable_and_the_plot_input_says_so(tmp_path):
    from pfs.results.plots import reference_points

    summary = pd.DataFrame([_imagenet_run(10, 0.28)]).reindex(columns=COLUMNS)
    out = {name: str(tmp_path / name) for name in ("table.csv", "table.md", "comparison.csv")}
    write_tables(summary, out["table.csv"], out["table.md"], out["comparison.csv"],
                 str(_write(tmp_path, [TORCHVISION])))
    md = Path(out["table.md"]).read_text()
    assert "## imagenet (10 classes)" in md and "reference: 1000 classes, this run: 10" in md
    assert "| top-1 diff |" not in md
    table, comparison = pd.read_csv(out["table.csv"]), pd.read_csv(out["comparison.csv"])
    assert table["num_classes"].tolist() == [10]
    assert comparison[["comparable", "ref_num_classes", "num_classes"]].values.tolist() == [[False, 1000, 10]]
    assert reference_points(table, comparison) == []  # read back as the plot reads it: no star


def test_write_tables_writes_both_tables_as_html_pages_with_captions(tmp_path):
    summary = pd.DataFrame([_run("full", 0, 0.94), _run("pfs", 0, 0.93)]).reindex(columns=COLUMNS)
    refs = _write(tmp_path, [_ref(), _ref(ratio=0, baseline_top1=None, top1=93.0, method="Paper X full")])
    out = {name: str(tmp_path / name) for name in ("table.csv", "table.md", "comparison.csv", "t.html", "c.html")}
    write_tables(summary, out["table.csv"], out["table.md"], out["comparison.csv"], str(refs), None,
                 out["t.html"], out["c.html"])
    table = Path(out["t.html"]).read_text()
    assert "<table" in table and "<caption>" in table and "<script>" in table and "http" not in table
    assert "<td>94.00</td>" in table and "<td>93.00</td>" in table  # top-1 in %; one seed: no spread
    assert "± 0.00" not in table
    assert "last epoch" in table and "mean ± standard deviation over the n seeds" in table and "MACs:" in table
    comparison = Path(out["c.html"]).read_text()
    assert "Paper X Scratch-B" in comparison and "-0.20" in comparison and "Paper X full" in comparison
    write_tables(summary, out["table.csv"], out["table.md"], out["comparison.csv"], None, None,
                 out["t.html"], out["c.html"])
    assert "No references file configured" in Path(out["c.html"]).read_text()
