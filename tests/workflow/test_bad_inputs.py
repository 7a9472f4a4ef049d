"""The bad-input matrix: for every bad config value, data folder or hand-edited file, a real Snakemake run exits
non-zero with one line naming the bad thing and the fix, and leaves no output Snakemake would take as complete
(the failed job's outputs are absent and a dry run plans that job again).

The config-level cases of test_snakemake_errors.py belong to the same matrix. Cases that need learned gates start
from a copy of one module-wide run (learn_gates at e20 and e8, prune at ratio 0.5); each runs one targeted job.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml
from pfs_testkit import flip_bytes
from smk_run import (
    EXP,
    FULL,
    PRUNED,
    copy_workflow,
    deep_merge,
    error_lines,
    job_counts,
    snakemake,
    tail,
    write_jpeg_tree,
    write_yaml,
)

pytestmark = pytest.mark.slow

GATES = f"{EXP}/gates.pt"
CHANNELS = f"{PRUNED}/channels.yaml"
LEARN_OUTPUTS = (GATES, f"{EXP}/gates_metrics.csv")
TRAIN_OUTPUTS = tuple(f"{PRUNED}/scratch_e/{name}" for name in ("model.pt", "metrics.json", "history.csv"))
E8 = EXP.replace("/e20_", "/e8_")  # narrower than the standard width 16: every ratio below ~0.75 is unreachable
E24 = EXP.replace("/e20_", "/e24_")
R32 = EXP.replace("/resnet20/", "/resnet32/")
CIFAR = {"dataset": {"name": "cifar10", "root": "../data", "check_md5": False, "val_size": 20}}  # tiny_cifar10
IMAGENET = {"dataset": {"name": "imagenet", "root": "data/imagenet", "val_per_class": 1},
            "grid": {"archs": ["mobilenet_v2"], "expansions": {"mobilenet_v2": [8]},
                     "multipliers": {"mobilenet_v2": [0.5]},
                     "ratios": [0.9]}}  # unpruned it is 0.86 smaller than the standard network: 0.5 is refused
IMAGENET_LISTS = "results/imagenet/lists"
IMAGENET_GATES = "results/imagenet/mobilenet_v2/e8_m0.5/s0.5/seed0/gates.pt"


@dataclasses.dataclass(frozen=True)
class Case:
    """One bad input. ``says``: one line of the output holds all of these (the bad key, value or file and the fix).
    ``target`` None: the config is refused while the DAG is built, before any job."""

    says: tuple[str, ...]
    config: dict = dataclasses.field(default_factory=dict)  # layered over the tiny config (a second --configfile)
    spoil: Callable[[Path], None] | None = None  # edits the workflow copy before the run
    start: str = "fresh"  # fresh: nothing run yet; pruned: a copy of the module's run (gates learned, pruned)
    fixture: str | None = None  # a fixture the case needs (it writes under tmp_path, beside the copy wf/)
    target: str | None = None
    rule: str | None = None  # the job that must fail, and be planned again by a dry run afterwards
    outputs: tuple[str, ...] = ()  # that job's outputs, none of which may be left behind
    first: bool = False  # the error is the first line of the job's log: checked before any work


# ---------------------------------------------------------------- spoilers (run in the workflow copy)


def truncate(path: str, size: int = 1000) -> Callable[[Path], None]:
    def spoil(workdir: Path) -> None:
        with open(workdir / path, "r+b") as fh:
            fh.truncate(size)
    return spoil


def flip(path: str) -> Callable[[Path], None]:
    """64 bytes of the file's largest tensor inverted: a damaged copy that torch.load alone reads without error."""
    def spoil(workdir: Path) -> None:
        flip_bytes(workdir / path)
    return spoil


def gates_at(folder: str) -> Callable[[Path], None]:
    """Put the e20 resnet20 gates (and their history) where another job's gates belong."""
    def spoil(workdir: Path) -> None:
        (workdir / folder).mkdir(parents=True)
        for name in ("gates.pt", "gates_metrics.csv"):
            shutil.copy(workdir / EXP / name, workdir / folder / name)
    return spoil


def edit_first_width(width: int) -> Callable[[Path], None]:
    def spoil(workdir: Path) -> None:
        doc = yaml.safe_load((workdir / CHANNELS).read_text())
        doc["widths"][0] = width
        write_yaml(workdir / CHANNELS, doc)
    return spoil


def not_yaml(workdir: Path) -> None:
    (workdir / CHANNELS).write_text("widths: [8, 8, 11\n")


def empty_class_folder(workdir: Path) -> None:
    folder = write_jpeg_tree(workdir / "data/imagenet", train=2, val=1) / "train" / "n01"
    for image in folder.iterdir():
        image.unlink()


def index_without_class_name(workdir: Path) -> None:
    import pandas as pd

    from pfs.data.index import prepare_lists

    prepare_lists(write_jpeg_tree(workdir / "data/imagenet", train=2, val=1), workdir / IMAGENET_LISTS)
    table = workdir / IMAGENET_LISTS / "train.csv"
    pd.read_csv(table).drop(columns="class_name").to_csv(table, index=False)


def results_is_a_file(workdir: Path) -> None:
    (workdir / "results").write_text("not a folder\n")


def read_only_results(workdir: Path) -> None:
    (workdir / "results").mkdir()
    (workdir / "results").chmod(0o555)


def _full_run_key(workdir: Path, arch: str) -> str:
    """The checkpoint key stage_train gives the tiny config's train_full job (of ``arch``); if this drifted from
    stage_train, the job below would find no checkpoint, train, and succeed, failing the test."""
    from snakemake.utils import validate

    from pfs.models import default_widths
    from pfs.stages.experiment import settings_from
    from pfs.stages.train import checkpoint_key
    from pfs.training.loop import TrainConfig, budget_epochs
    from pfs.workflow.config import train_settings

    config = deep_merge(yaml.safe_load((workdir / "config.yaml").read_text()),
                        yaml.safe_load((workdir / "tiny.yaml").read_text()))
    validate(config, str(workdir / "schemas/config.schema.yaml"), set_default=True)
    cfg = settings_from(TrainConfig, train_settings(config, "resnet20"), "train")
    identity = {"dataset": "digits", "arch": arch, "method": "full", "expansion": 16, "multiplier": 1.0,
                "ratio": 0.0, "schedule": "scratch_e", "seed": 0}
    return checkpoint_key(identity, default_widths(arch, 16), cfg,
                          budget_epochs(cfg.epochs, "scratch_e", 0.0, cfg.scratch_b_epochs), f"{FULL}/model.pt", 1)


def checkpoint_of_resnet32(workdir: Path) -> None:
    """A resnet32 resume checkpoint at the path of the resnet20 train_full job's."""
    from pfs.core import io
    from pfs.models import build_model

    io.save_artifact(workdir / "checkpoints" / f"{_full_run_key(workdir, 'resnet20')}.pt", "pfs.checkpoint", {
        "key": _full_run_key(workdir, "resnet32"), "epoch": 1, "elapsed": 1.0, "history": [], "partial": {},
        "model": build_model("resnet32", expansion=16).state_dict(), "optimizer": {}, "scheduler": {},
    })


# ---------------------------------------------------------------- the matrix

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
AS_ROOT = pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders ('results is a file' "
                             "checks the same guard)")

CASES = {
    # config values: refused while the DAG is built
    "milestone 1.5": Case(("config train.milestones.1", "1.5 is greater than or equal to the maximum of 1"),
                          {"train": {"milestones": [0.5, 1.5]}}),
    "unknown schedule": Case(("config grid.schedules.1", "'scratch_c' is not one of ['scratch_e', 'scratch_b']"),
                             {"grid": {"schedules": ["scratch_e", "scratch_c"]}}),
    "negative gates.lambda": Case(("config gates.lambda", "-0.5 is less than the minimum of 0"),
                                  {"gates": {"lambda": -0.5}}),
    "negative resources.gpu": Case(("config resources.gpu", "-1 is less than the minimum of 0"),
                                   {"resources": {"gpu": -1}}),
    "train_by_arch lr 0": Case(("config train_by_arch.resnet20.lr", "0 is less than or equal to the minimum of 0"),
                               {"train_by_arch": {"resnet20": {"lr": 0}}}),
    "mobilenet_v1 multiplier": Case(("grid.multipliers.mobilenet_v1", "only 1 is valid, got 0.75"),
                                    {"dataset": {"name": "imagenet"}, "grid": {
                                        "archs": ["mobilenet_v1"], "expansions": {"mobilenet_v1": [40]},
                                        "multipliers": {"mobilenet_v1": [0.75]}}}),
    "ImageNet arch on digits": Case(("grid.archs: mobilenet_v2 is an ImageNet network", "needs a CIFAR arch"),
                                    {"grid": {"archs": ["mobilenet_v2"], "expansions": {"mobilenet_v2": [40]}}}),
    "val_size over the dataset": Case(("dataset.val_size=1500", "use < 1437"), {"dataset": {"val_size": 1500}}),
    # the place of the outputs: refused before the first job
    "results is a file": Case(("results is a file", "move or rename that file"), spoil=results_is_a_file,
                              target=GATES, rule="learn_gates", outputs=LEARN_OUTPUTS),
    "read-only results": pytest.param(Case(("results/ is not writable", "chmod u+w results"), spoil=read_only_results,
                                           target=GATES, rule="learn_gates", outputs=LEARN_OUTPUTS), marks=AS_ROOT),
    # data folders
    "truncated CIFAR batch": Case(("corrupt batch file ../data/cifar-10-batches-py/data_batch_1", "Re-extract"),
                                  CIFAR, truncate("../data/cifar-10-batches-py/data_batch_1"),
                                  fixture="tiny_cifar10", target=GATES.replace("/digits/", "/cifar10/"),
                                  rule="learn_gates"),
    "empty ImageNet class folder": Case(("class folder data/imagenet/train/n01 holds no images",
                                         "remove it or fill it"), IMAGENET, empty_class_folder,
                                        target=f"{IMAGENET_LISTS}/train.csv", rule="prepare_imagenet_list",
                                        outputs=(f"{IMAGENET_LISTS}/train.csv", f"{IMAGENET_LISTS}/val.csv")),
    "ImageNet index without a column": Case((f"{IMAGENET_LISTS}/train.csv has columns ['path', 'label']",
                                             "rerun prepare_imagenet_list"), IMAGENET, index_without_class_name,
                                            target=IMAGENET_GATES, rule="learn_gates"),
    "device cuda without CUDA": pytest.param(Case(("device 'cuda' requested but CUDA is not available",
                                                   "set device: auto or cpu"), {"device": "cuda"}, target=GATES,
                                                  rule="learn_gates", outputs=LEARN_OUTPUTS, first=True),
                                             marks=NO_CUDA),
    # gates files
    "truncated gates": Case((f"{GATES} is corrupt", "delete it and rerun"), spoil=truncate(GATES), start="pruned",
                            target=CHANNELS, rule="prune"),
    "gates with flipped bytes": Case((f"{GATES} is corrupt", "fails its CRC32 check", "delete it and rerun"),
                                     spoil=flip(GATES), start="pruned", target=CHANNELS, rule="prune"),
    "gates of another expansion": Case((f"{E24}/gates.pt was made for expansion=20", "needs expansion=24",
                                        "delete it and rerun"), spoil=gates_at(E24), start="pruned",
                                       target=f"{E24}/p0.5/channels.yaml", rule="prune"),
    "gates of another arch": Case((f"{R32}/gates.pt was made for arch='resnet20'", "needs arch='resnet32'",
                                   "delete it and rerun"), spoil=gates_at(R32), start="pruned",
                                  target=f"{R32}/p0.5/channels.yaml", rule="prune"),
    # prune settings and ratios the search cannot reach
    "min_width over the narrowest group": Case(("prune.min_width=30", "narrowest group (20 channels)",
                                                "set prune.min_width to at most 20"), {"prune": {"min_width": 30}}),
    "ratio 0.95 in the grid": Case(("grid.ratios: 0.95 cannot be reached by resnet20 at expansion 20",
                                    "prune.min_width=1", "by 0.9306 at most", "lower the ratio"),
                                   {"grid": {"ratios": [0.5, 0.95]}, "prune": {"max_layer_ratio": 1}}),
    "ratio 0.99 under min_width": Case(("ratio 0.99 cannot be reached", "prune.min_width=1", "lower the ratio"),
                                       start="pruned", target=f"{EXP}/p0.99/channels.yaml", rule="prune"),
    "ratio 0.1 at expansion 8": Case(("ratio 0.1 cannot be reached", "already", "raise the expansion or the ratio"),
                                     start="pruned", target=f"{E8}/p0.1/channels.yaml", rule="prune"),
    "tolerance out of reach": Case(("cannot be met within prune.tolerance=1e-06", "Raise prune.tolerance"),
                                   {"prune": {"tolerance": 1e-6, "max_fill": 0}}, start="pruned", target=CHANNELS,
                                   rule="prune"),
    # channels files edited by hand
    "channels wider than the net": Case((f"{CHANNELS}: width 99 of group 0 is outside 1..20", "rerun prune"),
                                        spoil=edit_first_width(99), start="pruned", target=TRAIN_OUTPUTS[0],
                                        rule="train_pruned", outputs=TRAIN_OUTPUTS),
    "channels width 0": Case((f"{CHANNELS}: width 0 of group 0 is outside 1..20", "rerun prune"),
                             spoil=edit_first_width(0), start="pruned", target=TRAIN_OUTPUTS[0], rule="train_pruned",
                             outputs=TRAIN_OUTPUTS),
    "channels not YAML": Case((f"{CHANNELS} is not valid YAML (line 2, column 1", "delete it and rerun"),
                              spoil=not_yaml, start="pruned", target=TRAIN_OUTPUTS[0], rule="train_pruned",
                              outputs=TRAIN_OUTPUTS),
    # resume checkpoints
    "checkpoint of another arch": Case(("checkpoints/", ".pt belongs to another training job",
                                        "delete it to start afresh"), spoil=checkpoint_of_resnet32,
                                       target=f"{FULL}/model.pt", rule="train_full",
                                       outputs=tuple(f"{FULL}/{n}" for n in ("model.pt", "metrics.json",
                                                                             "history.csv"))),
}


@pytest.fixture(scope="module")
def pruned_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Gates learned at e20 and e8 and pruned at ratio 0.5 (copied per test with .snakemake/: its metadata)."""
    workdir = copy_workflow(tmp_path_factory.mktemp("pruned_run"))
    result = snakemake(workdir, CHANNELS, f"{E8}/gates.pt", "--cores", "2", "--configfile", "tiny.yaml")
    if result.returncode != 0:
        pytest.fail(f"learning the gates failed (exit {result.returncode}):\n{tail(result.stdout)}")
    return workdir


def says(text: str, fragments: tuple[str, ...]) -> bool:
    return any(all(f in line for f in fragments) for line in text.splitlines())


def job_log(output: str) -> Path | None:
    """The log file Snakemake names in the error report of the failed job."""
    match = re.search(r"^\s+log: (\S+) \(check log file", output, re.MULTILINE)
    return Path(match[1]) if match else None


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_bad_input_stops_with_the_fix_and_leaves_no_output(request, tmp_path, case):
    if case.start == "pruned":
        workdir = tmp_path / "wf"
        shutil.copytree(request.getfixturevalue("pruned_run"), workdir, symlinks=True)  # mtimes and metadata too
    else:
        workdir = copy_workflow(tmp_path / "wf")
    if case.fixture:
        request.getfixturevalue(case.fixture)
    if case.spoil:
        case.spoil(workdir)
    write_yaml(workdir / "change.yaml", case.config)
    targets = [case.target] if case.target else []
    # the targets come first: --configfile takes every argument after it
    result = snakemake(workdir, *targets, "--cores", "1", "--configfile", "tiny.yaml", "change.yaml")
    assert result.returncode != 0, tail(result.stdout)
    assert says(result.stdout, case.says), tail(result.stdout)
    assert "Traceback" not in result.stdout, tail(result.stdout)

    if case.target is None:  # refused while the Snakefile was read: one line, the error alone
        lines = error_lines(result.stdout)
        assert len(lines) == 1 and lines[0].startswith("error: ") and says(lines[0], case.says), result.stdout
        assert not (workdir / "results").exists()
        return
    if (log := job_log(result.stdout)) is not None:  # the job's log holds the same line
        text = (workdir / log).read_text()
        assert says(text, case.says) and "Traceback" not in text, text
        work = [line for line in text.splitlines() if "===== run " not in line]  # after the run's separator
        assert not case.first or says(work[0], case.says), text
    for output in case.outputs or (case.target,):
        assert not (workdir / output).exists(), output
    planned = snakemake(workdir, "-n", *targets, "--configfile", "tiny.yaml", "change.yaml")
    assert planned.returncode == 0, tail(planned.stdout)
    assert case.rule in job_counts(planned.stdout), tail(planned.stdout)
