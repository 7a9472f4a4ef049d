"""Inspect networks, train one under torchrun, check ImageNet trees, write README's results, export to ONNX.

    python -m pfs summary --arch resnet56 --dataset cifar10 [--expansion 20] [--multiplier 1] [--channels FILE]
                          [--folder-stats results/folder/lists/stats.yaml]   (--dataset folder: its size, classes)
    python -m pfs summary --arch torchvision:resnet18 --dataset cifar10   (a library network: also its groups)
    python -m pfs list-models
    python -m pfs digits-folder --out DIR   (the embedded digits as a folder dataset: DIR/{train,val}/<digit>/*.png)
    python -m pfs verify-images --root DIR [--workers N]   (decode every image of an ImageNet or folder tree)
    python -m pfs readme [--check] [--spread | --example] [--results DIR] [--readme FILE]   (generated sections)
    python -m pfs export RUN_DIR_OR_MODEL [--format onnx] [--out FILE]   (gates merged, BatchNorm folded)
    torchrun --standalone --nproc_per_node=N -m pfs train --job JOB.json   (multi-process training)
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from pfs.core.errors import PfsError

CHANNELS_MISSING = "give the path of a channels.yaml that a pruning stage wrote (results/.../channels.yaml)"


def _flag_advice(exc, given: bool) -> PfsError:
    """A channels file made for another arch, dataset, expansion or multiplier than the flags ask for: the file is
    fine, so say which flag to change (or which file to use) instead of the workflow's "delete it and rerun"."""
    from pfs.core.grid import fmt

    def text(value) -> str:
        return fmt(value) if isinstance(value, int | float) and not isinstance(value, bool) else str(value)

    found, asked = text(exc.found), text(exc.expected)
    default = "" if given else f" (the default of --{exc.key})"
    return PfsError(f"channels file {exc.path} was made for {exc.key} {found}, but this run asks for {exc.key} "
                    f"{asked}{default}: pass --{exc.key} {found} (or use a channels file made for {exc.key} {asked})")


def _dataset_facts(dataset: str, folder_stats: str | None):
    """The catalog's facts of ``dataset``; a folder dataset's from its stats.yaml (--folder-stats)."""
    from pathlib import Path

    from pfs.core.catalog import FOLDER, dataset_info, use_folder_stats
    from pfs.core.io import require_file

    if folder_stats:
        require_file(Path(folder_stats), "give the stats.yaml prepare_folder_list wrote (results/folder/lists/)")
        use_folder_stats(folder_stats)
    info = dataset_info(dataset)
    if dataset == FOLDER and not info.num_classes:
        raise PfsError("--dataset folder: its image size and classes come from its index: pass --folder-stats "
                       "results/folder/lists/stats.yaml (written by prepare_folder_list)")
    return info


def _summary(args: argparse.Namespace) -> dict:
    from pfs.core.io import IdentityMismatch
    from pfs.method.macs import network_cost
    from pfs.models import get_spec
    from pfs.stages.artifacts import load_channels
    from pfs.stages.experiment import Experiment

    dataset_given, args.dataset = args.dataset is not None, args.dataset or "cifar10"
    info = _dataset_facts(args.dataset, args.folder_stats)
    spec = get_spec(args.arch)
    expansion = spec.base_expansion if args.expansion is None else args.expansion
    multiplier, classes = args.multiplier, info.num_classes
    widths = None
    # unless given, expansion and multiplier come from the file, which is then checked against the flags: a
    # mismatch names the flag to change (arch, dataset and any expansion or multiplier given come from the flags)
    if args.channels:
        from pfs.core.io import load_yaml_artifact

        doc = load_yaml_artifact(args.channels, "pfs.channels", missing=CHANNELS_MISSING)
        expansion = doc.get("expansion", expansion) if args.expansion is None else expansion
        multiplier = doc.get("multiplier", multiplier) if args.multiplier is None else multiplier
        exp = Experiment(args.dataset, args.arch, 0, expansion, float(multiplier or 1.0))
        try:
            doc = load_channels(args.channels, exp)
        except IdentityMismatch as exc:
            if exc.found is None:  # the file does not record it: the file is at fault, not the flag
                raise
            raise _flag_advice(exc, given=exc.key != "dataset" or dataset_given) from None
        widths, classes = doc["widths"], int(doc.get("num_classes", classes))
    multiplier = float(multiplier or 1.0)
    size = args.image_size or info.image_size
    cost = network_cost(args.arch, size, classes, widths=widths, expansion=expansion, multiplier=multiplier)
    full_widths = spec.widths_fn(expansion)
    answer = {"arch": args.arch, "dataset": args.dataset, "expansion": expansion, "multiplier": multiplier,
              "num_classes": classes, "image_size": size, "widths": widths or full_widths, **cost}
    from pfs.core.catalog import is_library_arch

    if is_library_arch(args.arch):
        from pfs.models.summary import group_table

        answer["groups"] = group_table(args.arch, size, classes, widths or full_widths)
    return answer


def _job_text(job: str) -> str:
    """--job's JSON: the text itself when it is a JSON object, else the file it names (refused if there is none)."""
    from pathlib import Path

    from pfs.core.io import require_file

    if job.lstrip().startswith("{"):
        return job
    require_file(Path(job), "give the job (pfs.stages.train.TrainJob) as a JSON object or the path of a file "
                 "holding one")
    return Path(job).read_text()


def _train(args: argparse.Namespace) -> dict:
    """One training job (a JSON spec, inline or a file), on every torchrun rank; rank 0 logs and writes."""
    import logging

    from pfs.core import numerics
    from pfs.core.progress import setup_logging
    from pfs.stages.train import TrainJob, run_job
    from pfs.training import distributed

    numerics.apply_from_env()  # the launching job's numerics mode, before this rank's first tensor operation
    job = TrainJob.from_json(_job_text(args.job))
    dist, device = distributed.setup(job.device, job.gpus)
    stream = setup_logging(job.log if dist.is_main else None, logging.INFO if dist.is_main else logging.WARNING)
    try:
        metrics = run_job(job, dist, device, stream)
    finally:
        distributed.cleanup()
    return {k: metrics[k] for k in ("top1", "top5", "epochs", "world_size")} if dist.is_main else {}


def _readme(args: argparse.Namespace) -> dict | None:
    """Rewrite a generated section (README.md's results; --spread, --example: a docs page's) from the run under
    ``--results``, or (``--check``) compare README.md's results with it: None (after saying why, with a diff) when
    they differ."""
    from pfs.results import readme

    # --check compares README.md's results section; writing goes to the file of the section asked for
    section = {} if args.check else {"spread": args.spread, "example": args.example}
    path = args.readme or readme.section_file(**section)
    if args.check:
        try:
            note = readme.check(path, args.results)
        except readme.ReadmeOutOfDate as exc:  # a finding, not a usage error: exit 1, not 2
            print(exc, file=sys.stderr)
            return None
        if note:  # another CPU kind: the figures agree as far as they must
            print(note, file=sys.stderr)
        return {"readme": path, "results": args.results, "up_to_date": note is None, "agrees": True}
    changed = readme.write(path, args.results, spread=args.spread, example=args.example)
    return {"readme": path, "results": args.results, "spread": args.spread, "example": args.example,
            "changed": changed}


def _verify_images(args: argparse.Namespace) -> dict:
    """Decode every image of an ImageNet-style tree (as list preparation indexes it: train/ and val/, or train/ alone
    for a folder dataset without val/); an error names the bad ones."""
    import logging

    from pfs.core.progress import setup_logging
    from pfs.data.index import index_tree, verify_images

    if not os.path.isdir(args.root):  # index_tree's advice names the config key (dataset.root), not the flag
        what = "is a file, not a folder" if os.path.exists(args.root) else "does not exist"
        raise PfsError(f"--root {args.root} {what}; give the folder that holds train/ and val/")
    setup_logging(None, logging.INFO)  # the count, files/s and every unreadable file, on stderr
    has_val = os.path.isdir(os.path.join(args.root, "val"))  # a folder dataset may hold train/ alone (val_fraction)
    frames = index_tree(args.root, ("train", "val") if has_val else ("train",))
    verify_images(args.root, frames, args.workers)
    return {"root": args.root, "images": sum(len(f) for f in frames.values()), "unreadable": 0}


def _export(args: argparse.Namespace) -> dict:
    """A trained model.pt as a deployable network: gates merged, BatchNorm folded, checked, written atomically."""
    import logging

    from pfs.core.progress import setup_logging
    from pfs.stages.export import export_onnx

    setup_logging(None, logging.INFO)  # what was folded and the check's difference, on stderr
    return export_onnx(args.model, args.out)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pfs", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    summary = sub.add_parser("summary", help="print MACs and params of a network as JSON")
    summary.add_argument("--arch", required=True, help="architecture name (see list-models)")
    summary.add_argument("--dataset", default=None, help="dataset (sets resolution and classes; default cifar10)")
    summary.add_argument("--expansion", type=int, default=None, help="width setting (default: the standard width)")
    summary.add_argument("--multiplier", type=float, default=None,
                         help="backbone width multiplier (resnet50, mobilenet_v2; default 1)")
    summary.add_argument("--channels", default=None, help="a channels.yaml written by the prune stage")
    summary.add_argument("--folder-stats", default=None, help="--dataset folder: the stats.yaml of its list "
                         "preparation (results/folder/lists/stats.yaml), which gives its image size and classes")
    summary.add_argument("--image-size", type=int, default=None, help="input size (default: the dataset's)")
    sub.add_parser("list-models", help="print the known architectures as JSON: pfs's own, torchvision's CNNs "
                   "(torchvision:<name>) and timm's CNN families (timm:<name>, when timm is installed)")
    digits = sub.add_parser("digits-folder", help="write the embedded digits as a folder dataset of PNGs "
                            "(train/ and val/, one folder per digit) to try dataset.name: folder without a download")
    digits.add_argument("--out", required=True, help="a new folder (e.g. data/digits_images)")
    train = sub.add_parser("train", help="train one network (run under torchrun for several processes)")
    train.add_argument("--job", required=True, help="the job (pfs.stages.train.TrainJob) as JSON, or a JSON file: "
                       "dataset, arch, seed, outputs, [method, schedule, ratio, expansion, multiplier, sparsity, "
                       "channels, train, data, device, checkpoint_dir, gpus, log]")
    verify = sub.add_parser("verify-images", help="decode every image of an ImageNet-style tree (root/train, "
                            "root/val if there) and name the ones that cannot be read (exit 2)")
    verify.add_argument("--root", required=True, help="the folder holding train/ and val/ (dataset.root; a folder "
                        "dataset's train/ alone)")
    verify.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="decoding processes (default: "
                        "all CPUs)")
    readme = sub.add_parser("readme", help="write README.md's results section from what snakemake --cores all "
                            "wrote under results/ (--check: exit 1 when they differ)")
    readme.add_argument("--check", action="store_true", help="compare instead of writing; exit 1 with a diff (on "
                        "another CPU kind: a one-line note, and exit 1 only where what must agree differs)")
    readme.add_argument("--spread", action="store_true", help="write the seed-spread section instead, from a run of "
                        "several seeds (snakemake --cores all --config grid='{seeds: [0, 1, 2, 3, 4]}')")
    readme.add_argument("--example", action="store_true", help="write the section of the example run of a "
                        "torchvision network on a folder dataset (configs/example_torchvision.yaml) instead")
    readme.add_argument("--results", default="results", help="the run's results folder (default: results)")
    readme.add_argument("--readme", default=None, help="the file holding the section (default: README.md; --spread: "
                        "docs/results.md; --example: docs/your-own.md)")
    export = sub.add_parser("export", help="write a trained network (gates merged, BatchNorm folded into the "
                            "convs) as ONNX, checked against the PyTorch model on random inputs")
    export.add_argument("model", help="a training run's folder (holding model.pt) or a model.pt")
    export.add_argument("--format", choices=["onnx"], default="onnx", help="output format (default: onnx)")
    export.add_argument("--out", default=None, help="output file (default: model.onnx beside the model)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "summary":
            answer = _summary(args)
        elif args.command == "train":
            answer = _train(args)
            if not answer:  # not rank 0: rank 0 answers
                return 0
        elif args.command == "export":
            answer = _export(args)
        elif args.command == "digits-folder":
            from pfs.data.datasets import write_digits_folder

            answer = {"out": args.out, **write_digits_folder(args.out)}
        elif args.command == "verify-images":
            answer = _verify_images(args)
        elif args.command == "readme":
            answer = _readme(args)
            if answer is None:  # --check: the README's section is stale
                return 1
        else:
            from pfs.models import list_models
            from pfs.models.library import timm_cnns, torchvision_cnns

            answer = {"pfs": list_models(), "torchvision": [f"torchvision:{n}" for n in torchvision_cnns()],
                      "timm": [f"timm:{n}" for n in timm_cnns()]}
    except (PfsError, ValueError, OSError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(answer))
    return 0
