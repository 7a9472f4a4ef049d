"""Each workflow script's ``main`` called directly (no Snakemake) on a tiny CIFAR-10 folder.

One module-scoped pipeline (learn_gates -> prune -> train_pruned, train_full -> summarize) feeds the output
checks; the bad-input tests check that a script logs one error line, exits with status 1 and writes nothing.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from pfs_testkit import REPO, restored_globals, write_tiny_cifar10

from pfs.core import io
from pfs.data.datasets import make_loader, training_sets
from pfs.data.settings import DataSettings
from pfs.models import build_model, default_widths
from pfs.results.summary import COLUMNS
from pfs.training.loop import evaluate

SCRIPTS = ("learn_gates", "prune", "train", "summarize", "plot_results")  # train: every training rule
JOB_LOGS = ("learn_gates", "prune", "train_pruned", "train_full", "summarize")
WILDCARDS = {"dataset": "cifar10", "arch": "resnet20", "expansion": "20", "multiplier": "1", "sparsity": "0.5",
             "seed": "0", "ratio": "0.5", "schedule": "scratch_e"}
FULL_WILDCARDS = {"dataset": "cifar10", "arch": "resnet20", "seed": "0", "schedule": "scratch_e"}
VERSION_KEYS = {"pfs", "torch", "torchvision", "snakemake", "python", "git_commit"}
RESNET20_STANDARD = [16] * 3 + [32] * 3 + [64] * 3



@pytest.fixture(autouse=True)
def _isolate():
    with restored_globals():
        yield


@pytest.fixture(scope="module")
def scripts():
    folder = str(REPO / "workflow_scripts")
    sys.path.insert(0, folder)
    try:
        yield {name: importlib.import_module(name) for name in SCRIPTS}
    finally:
        sys.path.remove(folder)


def _tables(folder: Path) -> dict[str, str]:
    return {"table_csv": str(folder / "table.csv"), "table_md": str(folder / "table.md"),
            "comparison_csv": str(folder / "comparison.csv")}


def make_config(tmp: Path, root: Path, name: str = "cifar10") -> dict:
    """config.yaml with a tiny budget, data under ``root`` and checkpoints under ``tmp``."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["dataset"].update(name=name, root=str(root), check_md5=False, val_size=8, split_seed=0)
    config["gates"].update(epochs=1, batch_size=64)
    config["train"].update(epochs=1, batch_size=64)
    config["checkpoint_dir"] = str(tmp / "checkpoints")
    config["device"] = "cpu"
    return config


def split(config: dict) -> dict:
    return {k: config["dataset"][k] for k in ("val_size", "split_seed")}


def run_files(folder: Path) -> dict[str, str]:
    return {"model": str(folder / "model.pt"), "metrics": str(folder / "metrics.json"),
            "history": str(folder / "history.csv")}


def run_learn_gates(scripts, out: Path, config: dict, wildcards: dict, log: Path) -> dict[str, str]:
    outputs = {"gates": str(out / "gates.pt"), "history": str(out / "gates_metrics.csv")}
    scripts["learn_gates"].main({}, outputs, {"hp": config["gates"], "split": split(config)}, wildcards, config,
                                str(log), 2)
    return outputs


def run_prune(scripts, gates: str, out: Path, config: dict, wildcards: dict, log: Path) -> str:
    channels = str(out / "channels.yaml")
    scripts["prune"].main({"gates": gates}, {"channels": channels}, {"hp": config["prune"]}, wildcards, config,
                          str(log))
    return channels


def run_train_pruned(scripts, channels: str, out: Path, config: dict, wildcards: dict, log: Path) -> dict:
    outputs = run_files(out)
    params = {"hp": config["train"], "method": "pfs"}
    scripts["train"].main({"channels": channels}, outputs, params, wildcards, config, str(log), 2)
    return outputs


def run_train_full(scripts, out: Path, config: dict, wildcards: dict, log: Path) -> dict:
    outputs = run_files(out)
    scripts["train"].main({}, outputs, {"hp": config["train"], "method": "full"}, wildcards, config, str(log), 2)
    return outputs


@pytest.fixture(scope="module")
def pipeline(scripts, tmp_path_factory):
    """The whole chain once: 20 training and 8 test images of 32x32, one epoch per stage."""
    tmp = tmp_path_factory.mktemp("pipeline")
    root = write_tiny_cifar10(tmp / "data", per_batch=4, test_size=8)
    config = make_config(tmp, root)
    exp = tmp / "results" / "cifar10" / "resnet20" / "e20_m1" / "s0.5" / "seed0"
    logs = tmp / "logs"
    full_dir = tmp / "results" / "cifar10" / "resnet20" / "full" / "seed0" / "scratch_e"
    summary = str(tmp / "results" / "summary.csv")
    with restored_globals():  # one block per job: each closes the log file its script opened
        gates = run_learn_gates(scripts, exp, config, WILDCARDS, logs / "learn_gates.log")
    with restored_globals():
        channels = run_prune(scripts, gates["gates"], exp / "p0.5", config, WILDCARDS, logs / "prune.log")
    with restored_globals():
        pruned = run_train_pruned(scripts, channels, exp / "p0.5" / "scratch_e", config, WILDCARDS,
                                  logs / "train_pruned.log")
    with restored_globals():
        full = run_train_full(scripts, full_dir, config, FULL_WILDCARDS, logs / "train_full.log")
    with restored_globals():
        scripts["summarize"].main({"metrics": [pruned["metrics"], full["metrics"]]},
                                  {"summary": summary, **_tables(tmp / "results")}, {}, {}, config,
                                  str(logs / "summarize.log"))
    return {"tmp": tmp, "root": root, "config": config, "gates": gates, "channels": channels, "pruned": pruned,
            "full": full, "summary": summary, "logs": logs}


# ---------------------------------------------------------------- outputs of the good path


def test_learn_gates_writes_gates_and_their_history(pipeline):
    data = io.load_artifact(pipeline["gates"]["gates"], "pfs.gates")
    assert (data["arch"], data["dataset"], data["expansion"], data["sparsity"], data["seed"]) == (
        "resnet20", "cifar10", 20, 0.5, 0)
    assert data["widths"] == default_widths("resnet20", 20) == [20] * 3 + [40] * 3 + [80] * 3
    assert [g.numel() for g in data["gates"]] == data["widths"]
    assert all(float(g.min()) >= 0 and float(g.max()) <= 1 for g in data["gates"])
    assert len(data["val_indices"]) == 8 and data["split"] == {"val_size": 8, "split_seed": 0}
    assert data["selected_epoch"] == 1
    history = pd.read_csv(pipeline["gates"]["history"])
    assert history["epoch"].tolist() == [1]
    assert history["selected"].tolist() == [True]


def test_gates_that_miss_their_target_are_flagged_in_every_file_and_warned_once(pipeline):
    """The tiny pipeline's one gate epoch never reaches r: the fallback is kept, and gates.pt, channels.yaml,
    metrics.json, summary.csv, table.csv and table.md all say so; the job log has one WARNING naming the run. On 8
    held-out images its gates are near chance too (clearly above chance would take > 41.8%): channels.yaml down to
    table.md say that as well."""
    data = io.load_artifact(pipeline["gates"]["gates"], "pfs.gates")
    assert data["target_met"] is False and data["nonzero_fraction"] > 0.5
    assert data["min_nonzero_fraction"] == data["nonzero_fraction"]  # one evaluation only
    history = pd.read_csv(pipeline["gates"]["history"])
    assert history["target_met"].tolist() == [False] and history["sparsity"].tolist() == [0.5]
    log_text = (pipeline["logs"] / "learn_gates.log").read_text()
    warnings = [line for line in log_text.splitlines() if " WARNING " in line and "target" in line]
    assert len(warnings) == 1
    run = str(Path(pipeline["gates"]["gates"]).parent)
    assert run in warnings[0] and "did NOT reach its target" in warnings[0]
    assert f"{data['min_nonzero_fraction']:.4f} > r = 0.5" in warnings[0]
    assert "gates.epochs" in warnings[0] and "gates.lr" in warnings[0]
    doc = yaml.safe_load(Path(pipeline["channels"]).read_text())
    assert doc["target_met"] is False and doc["gates_nonzero_fraction"] == pytest.approx(data["nonzero_fraction"])
    assert doc["gates_near_chance"] is True and doc["gates_val_top1"] == pytest.approx(data["val_top1"])
    assert "did not reach its target" in (pipeline["logs"] / "prune.log").read_text()
    metrics = json.loads(Path(pipeline["pruned"]["metrics"]).read_text())
    assert metrics["target_met"] is False and metrics["gates_near_chance"] is True
    summary = pd.read_csv(pipeline["summary"]).set_index("method")
    assert summary.loc["pfs", "target_met"] == False  # noqa: E712 - read back from CSV
    assert summary.loc["pfs", "gates_near_chance"] == True and pd.isna(summary.loc["full", "gates_near_chance"])  # noqa: E712
    assert pd.isna(summary.loc["full", "target_met"])  # no learned gates: nothing to meet
    folder = Path(pipeline["summary"]).parent
    table = pd.read_csv(folder / "table.csv").set_index("method")
    assert table.loc["pfs", "target_met"] == False and pd.isna(table.loc["full", "target_met"])  # noqa: E712
    markdown = (folder / "table.md").read_text()
    assert "| gates at target |" in markdown
    assert table.loc["pfs", "gates_near_chance"] == True  # noqa: E712
    assert (f"| **no** (non-zero {data['nonzero_fraction']:.2f}), **near chance** (held-out top-1 "
            f"{100 * data['val_top1']:.2f}%) |") in markdown


def test_gates_that_meet_their_target_are_kept_as_the_best_sparse_evaluation_without_warning(scripts, pipeline,
                                                                                          tmp_path):
    """Large gate steps for a few epochs bring the non-zero fraction under r: target_met, and no warning."""
    config = make_config(tmp_path, pipeline["root"])
    config["gates"].update(epochs=4, lr=0.5)
    out = tmp_path / "results" / "cifar10" / "resnet20" / "e20_m1" / "s0.8" / "seed0"
    log = tmp_path / "learn_gates.log"
    gates = run_learn_gates(scripts, out, config, {**WILDCARDS, "sparsity": "0.8"}, log)
    data = io.load_artifact(gates["gates"], "pfs.gates")
    history = pd.read_csv(gates["history"])
    assert history["target_met"].tolist() == [False, False, True, True]  # non-zero fraction 1, 0.98, 0.70, 0.65
    assert data["target_met"] is True and data["nonzero_fraction"] <= 0.8
    kept = history[history["selected"]].iloc[0]
    assert bool(kept["target_met"]) and kept["nonzero_fraction"] == pytest.approx(data["nonzero_fraction"])
    assert data["min_nonzero_fraction"] == pytest.approx(history["nonzero_fraction"].min())
    text = log.read_text()
    assert "did NOT reach its target" not in text and "(target <= 0.8)" in text


def test_prune_writes_channels_within_tolerance_of_the_ratio(pipeline):
    doc = io.load_yaml_artifact(pipeline["channels"], "pfs.channels")
    assert doc["arch"] == "resnet20" and doc["expansion"] == 20 and doc["target_ratio"] == 0.5
    assert abs(doc["achieved_ratio"] - 0.5) / 0.5 <= doc["tolerance"] == 0.01
    assert doc["achieved_ratio"] == round(1 - doc["macs"] / doc["macs_baseline"], 6)
    assert doc["full_widths"] == [20] * 3 + [40] * 3 + [80] * 3
    assert all(1 <= w <= f for w, f in zip(doc["widths"], doc["full_widths"], strict=True))
    assert doc["kept_channels"] == sum(doc["widths"]) and doc["total_channels"] == 420
    assert doc["macs_expanded"] > doc["macs_baseline"] > doc["macs"]
    assert doc["gates_sha256"] == io.sha256_file(pipeline["gates"]["gates"])


def test_train_pruned_writes_model_metrics_and_history(pipeline):
    doc = yaml.safe_load(Path(pipeline["channels"]).read_text())
    metrics = json.loads(Path(pipeline["pruned"]["metrics"]).read_text())
    assert (metrics["method"], metrics["schedule"], metrics["ratio"], metrics["sparsity"]) == (
        "pfs", "scratch_e", 0.5, 0.5)
    assert metrics["widths"] == doc["widths"]
    assert metrics["macs"] == doc["macs"] and metrics["params"] == doc["params"]  # counted on the built model
    assert metrics["achieved_ratio"] == doc["achieved_ratio"]
    assert metrics["epochs"] == 1 and metrics["best_epoch"] == 1
    assert 0 <= metrics["top1"] <= metrics["top5"] <= 1
    assert set(metrics["versions"]) == VERSION_KEYS and metrics["versions"]["torch"] == torch.__version__
    assert metrics["device"] == "cpu" and metrics["settings"]["epochs"] == 1
    history = pd.read_csv(pipeline["pruned"]["history"])
    assert history["epoch"].tolist() == [1]
    assert history["lr"].tolist() == [0.1]
    assert history["test_top1"].iloc[-1] == pytest.approx(metrics["top1"])


def test_train_pruned_model_reloads_and_reproduces_its_test_accuracy(pipeline):
    saved = io.load_artifact(pipeline["pruned"]["model"], "pfs.model")
    metrics = json.loads(Path(pipeline["pruned"]["metrics"]).read_text())
    model = build_model("resnet20", widths=saved["widths"], expansion=20, num_classes=saved["num_classes"])
    model.load_state_dict(saved["state_dict"])  # strict: the widths in model.pt fit its weights
    _, test = training_sets(DataSettings("cifar10", root=str(pipeline["root"]), check_md5=False))
    got = evaluate(model, make_loader(test, 256, False, 0, torch.device("cpu")), torch.device("cpu"))
    assert got["top1"] == pytest.approx(metrics["top1"]) and got["top5"] == pytest.approx(metrics["top5"])
    assert saved["metrics"]["top1"] == metrics["top1"]


def test_finished_training_removes_its_checkpoint(pipeline):
    assert list(Path(pipeline["config"]["checkpoint_dir"]).glob("*.pt")) == []


def test_train_full_trains_the_standard_width_network(pipeline):
    doc = yaml.safe_load(Path(pipeline["channels"]).read_text())
    metrics = json.loads(Path(pipeline["full"]["metrics"]).read_text())
    assert (metrics["method"], metrics["expansion"], metrics["achieved_ratio"]) == ("full", 16, 0.0)
    assert metrics["widths"] == RESNET20_STANDARD
    assert metrics["macs"] == doc["macs_baseline"] and metrics["params"] == doc["params_baseline"]
    assert metrics["epochs"] == 1 and set(metrics["versions"]) == VERSION_KEYS
    assert len(pd.read_csv(pipeline["full"]["history"])) == 1
    assert io.load_artifact(pipeline["full"]["model"], "pfs.model")["widths"] == RESNET20_STANDARD


def test_summarize_writes_the_seed_table_with_the_drop_against_the_baseline(pipeline):
    folder = Path(pipeline["summary"]).parent
    table = pd.read_csv(folder / "table.csv")
    assert table["method"].tolist() == ["full", "pfs"] and table["n"].tolist() == [1, 1]
    full, pfs = table.iloc[0], table.iloc[1]
    assert pfs["top1_drop"] == pytest.approx(full["top1_mean"] - pfs["top1_mean"]) and full["top1_drop"] == 0
    markdown = (folder / "table.md").read_text()
    assert "## cifar10" in markdown and "| resnet20 | pfs | 20 | 0.5 | scratch_e |" in markdown


def test_summarize_writes_one_row_per_metrics_file(pipeline):
    summary = pd.read_csv(pipeline["summary"])
    assert list(summary.columns) == COLUMNS
    assert summary["method"].tolist() == ["full", "pfs"]
    pruned = json.loads(Path(pipeline["pruned"]["metrics"]).read_text())
    row = summary.set_index("method").loc["pfs"]
    # fractions to summary.csv's 4 decimals
    assert row["top1"] == pytest.approx(pruned["top1"], abs=5e-5) and row["macs"] == pruned["macs"]
    assert row["sparsity"] == 0.5 and row["achieved_ratio"] == round(pruned["achieved_ratio"], 6)


def _benchmark(path: Path, seconds: float) -> str:
    path.write_text("s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
                    f"{seconds:.2f}\t0:00:01\t1.0\t1.0\t1.0\t1.0\t0\t0\t90.0\t{2 * seconds:.2f}\n")
    return str(path)


def _chain_inputs(chains: dict) -> dict:
    """rules/targets.smk chain_inputs' shape: the metrics and chain_{i}, the i-th one's benchmark files."""
    return {"metrics": list(chains), **{f"chain_{i}": chain for i, chain in enumerate(chains.values())}}


def test_summarize_gives_each_row_the_cost_of_its_chain_from_its_chain_inputs(scripts, pipeline, tmp_path):
    pruned, full = pipeline["pruned"]["metrics"], pipeline["full"]["metrics"]
    gates, prune = _benchmark(tmp_path / "gates.tsv", 30.5), _benchmark(tmp_path / "prune.tsv", 2.25)
    chains = {pruned: [gates, prune, _benchmark(tmp_path / "train.tsv", 40.0)],
              full: [_benchmark(tmp_path / "full.tsv", 50.0)]}
    summary = tmp_path / "summary.csv"
    scripts["summarize"].main(_chain_inputs(chains),
                              {"summary": str(summary), **_tables(tmp_path)}, {}, {}, pipeline["config"],
                              str(tmp_path / "summarize.log"))
    rows = pd.read_csv(summary).set_index("method")
    # 30.5 + 2.25 + 40 = 72.75 s, written to summary.csv's 1 decimal of seconds
    assert rows.loc["pfs", "cost_s"] == pytest.approx(72.8) and rows.loc["pfs", "cost_cpu_s"] == pytest.approx(145.5)
    assert rows.loc["full", "cost_s"] == 50.0 and rows.loc["pfs", "shared_s"] == 0.0
    assert pd.read_csv(tmp_path / "table.csv").set_index("method").loc["pfs", "cost_s_mean"] == pytest.approx(72.8)
    assert "The whole grid took 2.0 min wall, 4.1 min CPU (4 jobs, each counted once)." in (
        tmp_path / "table.md").read_text()


def test_summarize_refuses_a_missing_benchmark_file(scripts, pipeline, tmp_path):
    summary, log = tmp_path / "summary.csv", tmp_path / "summarize.log"
    chains = {pipeline["pruned"]["metrics"]: [str(tmp_path / "gone.tsv")]}
    with pytest.raises(SystemExit) as exc:
        scripts["summarize"].main(_chain_inputs(chains),
                                  {"summary": str(summary), **_tables(tmp_path)}, {}, {}, pipeline["config"],
                                  str(log))
    _assert_refused(exc, log, [summary], f"benchmark file {tmp_path / 'gone.tsv'} does not exist")


def test_plot_results_writes_six_pngs_and_labels_the_curves_from_the_gates_file(scripts, pipeline, tmp_path,
                                                                                monkeypatch):
    from pfs.results import plots

    folder = Path(pipeline["summary"]).parent
    runs = [pipeline["pruned"], pipeline["full"]]
    inputs = {"table": str(folder / "table.csv"), "comparison": str(folder / "comparison.csv"),
              "channels": [pipeline["channels"]], "gates": [pipeline["gates"]["gates"]],
              "histories": [pipeline["gates"]["history"]], "metrics": [run["metrics"] for run in runs],
              "train_histories": [run["history"] for run in runs]}
    outputs = {name: str(tmp_path / f"{name}.png") for name in ("accuracy", "accuracy_cost", "widths",
                                                                "gate_histograms", "gate_learning",
                                                                "training_curves")}
    scripts["plot_results"].main(inputs, outputs, {}, {}, pipeline["config"], str(tmp_path / "plot_results.log"))
    for path in outputs.values():
        assert Path(path).read_bytes()[:4] == b"\x89PNG"
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, out, **_: figures.append(fig))
    scripts["plot_results"].main(inputs, outputs, {}, {}, pipeline["config"], str(tmp_path / "plot_results.log"))
    assert len(figures) == len(outputs)  # in the order written: gate_learning, then training_curves
    legend = [text.get_text() for text in figures[-2].axes[0].get_legend().get_texts()]
    data = io.load_artifact(pipeline["gates"]["gates"], "pfs.gates")
    # the tiny run misses r, and its gates are near chance on 8 held-out images
    assert legend == ["resnet20 e20 m1 r0.5 seed0: target r NOT met (x: fallback kept): kept gates near chance "
                      f"(x: held-out top-1 {100 * data['val_top1']:.2f}%)"]


def test_each_job_logs_its_progress_into_its_log_file_without_errors(pipeline):
    logs = {name: (pipeline["logs"] / f"{name}.log").read_text() for name in JOB_LOGS}
    assert all(" ERROR " not in text for text in logs.values())
    assert "selected evaluation 1 of 1" in logs["learn_gates"]
    assert "pruned resnet20 to" in logs["prune"]
    assert "epoch 1/1 lr 0.1 " in logs["train_pruned"] and "epoch 1/1 lr 0.1 " in logs["train_full"]


def test_scratch_b_trains_epochs_over_one_minus_ratio(scripts, pipeline, tmp_path):
    wildcards = {**WILDCARDS, "schedule": "scratch_b"}
    config = {**pipeline["config"], "checkpoint_dir": str(tmp_path / "checkpoints")}
    outputs = run_train_pruned(scripts, pipeline["channels"], tmp_path / "scratch_b", config, wildcards,
                               tmp_path / "train.log")
    metrics = json.loads(Path(outputs["metrics"]).read_text())
    assert metrics["epochs"] == 2 and metrics["schedule"] == "scratch_b"
    assert pd.read_csv(outputs["history"])["epoch"].tolist() == [1, 2]


# ---------------------------------------------------------------- bad input: exit 1, one error line, no output


def _assert_refused(exc_info, log: Path, outputs, *needles: str) -> str:
    assert exc_info.value.code == 1
    text = log.read_text()
    errors = [line for line in text.splitlines() if " ERROR " in line]
    assert len(errors) == 1, text
    assert "Traceback" not in text
    for needle in needles:
        assert needle in errors[0], errors[0]
    for path in map(Path, outputs):
        assert not path.exists(), path
        if path.parent.exists():
            assert list(path.parent.glob(f".{path.name}.*.tmp")) == []  # no half-written temp file either
    return errors[0]


def test_learn_gates_refuses_an_unknown_arch(scripts, pipeline, tmp_path):
    log = tmp_path / "learn_gates.log"
    with pytest.raises(SystemExit) as exc:
        run_learn_gates(scripts, tmp_path / "out", pipeline["config"], {**WILDCARDS, "arch": "resnet21"}, log)
    _assert_refused(exc, log, [tmp_path / "out" / "gates.pt", tmp_path / "out" / "gates_metrics.csv"],
                    "unknown arch 'resnet21'", "resnet20")


def test_train_full_refuses_an_unknown_arch(scripts, pipeline, tmp_path):
    log = tmp_path / "train_full.log"
    with pytest.raises(SystemExit) as exc:
        run_train_full(scripts, tmp_path / "out", pipeline["config"], {**FULL_WILDCARDS, "arch": "resnet21"}, log)
    _assert_refused(exc, log, run_files(tmp_path / "out").values(), "unknown arch 'resnet21'")


def test_train_pruned_refuses_channels_of_another_arch(scripts, pipeline, tmp_path):
    channels = tmp_path / "channels.yaml"
    io.write_yaml(channels, {"kind": "pfs.channels", "format_version": 1, "arch": "resnet32", "dataset": "cifar10",
                             "expansion": 20, "widths": default_widths("resnet32", 20), "achieved_ratio": 0.5})
    config = {**pipeline["config"], "checkpoint_dir": str(tmp_path / "checkpoints")}
    log = tmp_path / "train_pruned.log"
    with pytest.raises(SystemExit) as exc:
        run_train_pruned(scripts, str(channels), tmp_path / "out", config, WILDCARDS, log)
    _assert_refused(exc, log, run_files(tmp_path / "out").values(), str(channels),
                    "made for arch='resnet32', but this job needs arch='resnet20'")
    assert not (tmp_path / "checkpoints").exists() or list((tmp_path / "checkpoints").iterdir()) == []


def test_train_pruned_refuses_widths_wider_than_the_network(scripts, pipeline, tmp_path):
    doc = yaml.safe_load(Path(pipeline["channels"]).read_text())
    doc["widths"][3] = 41  # group 3 has 40 channels at expansion 20
    channels = tmp_path / "channels.yaml"
    io.write_yaml(channels, doc)
    log = tmp_path / "train_pruned.log"
    with pytest.raises(SystemExit) as exc:
        run_train_pruned(scripts, str(channels), tmp_path / "out", pipeline["config"], WILDCARDS, log)
    _assert_refused(exc, log, run_files(tmp_path / "out").values(), "width 41 of group 3 is outside 1..40")


@pytest.mark.parametrize("script", ["learn_gates", "train_full"])
def test_scripts_refuse_a_missing_cifar_folder(scripts, script, tmp_path):
    missing = tmp_path / "no_data"
    config = make_config(tmp_path, missing)
    log = tmp_path / f"{script}.log"
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        if script == "learn_gates":
            outputs = [out / "gates.pt", out / "gates_metrics.csv"]
            run_learn_gates(scripts, out, config, WILDCARDS, log)
        else:
            outputs = list(run_files(out).values())
            run_train_full(scripts, out, config, FULL_WILDCARDS, log)
    _assert_refused(exc, log, outputs, str(missing / "cifar-10-batches-py"), "dataset.root", "dataset.download")


def test_prune_refuses_a_truncated_gates_file(scripts, pipeline, tmp_path):
    gates = tmp_path / "gates.pt"
    data = Path(pipeline["gates"]["gates"]).read_bytes()
    gates.write_bytes(data[: len(data) // 2])
    log = tmp_path / "prune.log"
    with pytest.raises(SystemExit) as exc:
        run_prune(scripts, str(gates), tmp_path / "p0.5", pipeline["config"], WILDCARDS, log)
    _assert_refused(exc, log, [tmp_path / "p0.5" / "channels.yaml"], str(gates), "corrupt")


def test_prune_refuses_gates_of_another_expansion(scripts, pipeline, tmp_path):
    log = tmp_path / "prune.log"
    with pytest.raises(SystemExit) as exc:
        run_prune(scripts, pipeline["gates"]["gates"], tmp_path / "p0.5", pipeline["config"],
                  {**WILDCARDS, "expansion": "24"}, log)
    _assert_refused(exc, log, [tmp_path / "p0.5" / "channels.yaml"],
                    "made for expansion=20, but this job needs expansion=24")


def test_summarize_refuses_a_broken_metrics_file(scripts, pipeline, tmp_path):
    broken = tmp_path / "metrics.json"
    broken.write_text('{"top1": 0.')
    summary = tmp_path / "summary.csv"
    log = tmp_path / "summarize.log"
    with pytest.raises(SystemExit) as exc:
        scripts["summarize"].main({"metrics": [pipeline["pruned"]["metrics"], str(broken)]},
                                  {"summary": str(summary), **_tables(tmp_path)}, {}, {}, pipeline["config"], str(log))
    _assert_refused(exc, log, [summary], str(broken), "is not valid JSON")


@pytest.mark.slow
def test_a_failed_torchrun_job_is_one_error_naming_the_workers_reason(scripts, tmp_path):
    from pfs.stages.launch import launch
    from pfs.stages.train import TrainJob

    log = tmp_path / "train.log"
    job = TrainJob("imagenet", "resnet99", 0, {k: str(tmp_path / f"{k}.out") for k in ("model", "metrics", "history")},
                   device="cpu", log=str(log))  # imagenet: always under torchrun
    with pytest.raises(SystemExit), scripts["train"].run_stage(str(log), uses_torch=False):  # as the rule runs it
        launch(job, threads=1)
    lines = log.read_text().splitlines()
    side = tmp_path / "train.log.torchrun"
    assert "ERROR pfs.stage: training under torchrun failed (exit 1): unknown arch 'resnet99'" in lines[-1], lines
    assert lines[-1].endswith(f"[torchrun's output, with any traceback: {side}]")
    assert sum("unknown arch" in line for line in lines) == 1  # the reason once, last: torchrun's output is beside it
    assert not any("Traceback" in line or "ChildFailedError" in line or "*****" in line for line in lines)
    assert "error: unknown arch 'resnet99'" in side.read_text() and "ChildFailedError" in side.read_text()
    assert not list(tmp_path.glob("*.out"))


def test_training_on_device_data_writes_the_same_files(tmp_path):
    from pfs.stages.train import TrainJob, run_job

    out = {k: str(tmp_path / f) for k, f in (("model", "model.pt"), ("metrics", "metrics.json"),
                                             ("history", "history.csv"))}
    job = TrainJob("digits", "resnet20", 0, out, expansion=4, device="cpu", checkpoint_dir=str(tmp_path / "ck"),
                   train={"epochs": 1, "batch_size": 128, "device_data": "always"})
    metrics = run_job(TrainJob.from_json(job.to_json()))
    assert metrics["settings"]["device_data"] == "always" and 0 <= metrics["top1"] <= 1
    assert pd.read_csv(out["history"])["epoch"].tolist() == [1]
