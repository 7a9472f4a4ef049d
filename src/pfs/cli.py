"""``python -m pfs``: inspect networks from the command line.

    python -m pfs summary --arch resnet56 --dataset cifar10 [--expansion 20] [--channels channels.yaml]
    python -m pfs list-models
"""

from __future__ import annotations

import argparse
import json
import sys

from pfs.errors import PfsError


def _summary(args: argparse.Namespace) -> dict:
    from pfs.data import dataset_info
    from pfs.macs import network_cost
    from pfs.models import get_spec
    from pfs.stages import Experiment, load_channels

    info = dataset_info(args.dataset)
    spec = get_spec(args.arch)
    expansion = spec.base_expansion if args.expansion is None else args.expansion
    widths = None
    if args.channels:
        if args.expansion is None:  # take it from the file, then check the file against it
            from pfs.io import load_yaml_artifact

            expansion = load_yaml_artifact(args.channels, "pfs.channels").get("expansion", expansion)
        widths = load_channels(args.channels, Experiment(args.dataset, args.arch, 0, expansion))["widths"]
    cost = network_cost(args.arch, info.image_size, info.num_classes, widths=widths, expansion=expansion)
    full_widths = spec.widths_fn(expansion)
    return {"arch": args.arch, "dataset": args.dataset, "expansion": expansion, "image_size": info.image_size,
            "widths": widths or full_widths, **cost}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pfs", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    summary = sub.add_parser("summary", help="print MACs and params of a network as JSON")
    summary.add_argument("--arch", required=True, help="architecture name (see list-models)")
    summary.add_argument("--dataset", default="cifar10", help="dataset (sets resolution and classes)")
    summary.add_argument("--expansion", type=int, default=None, help="width setting (default: the standard width)")
    summary.add_argument("--channels", default=None, help="a channels.yaml written by the prune stage")
    sub.add_parser("list-models", help="print the known architectures as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "summary":
            answer = _summary(args)
        else:
            from pfs.models import list_models

            answer = list_models()
    except (PfsError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(answer))
    return 0
