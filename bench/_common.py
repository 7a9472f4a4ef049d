"""What the bench scripts share: the device and thread options, and a CUDA-aware clock barrier."""

from __future__ import annotations

import argparse
import os

import torch


def add_device_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=os.cpu_count())


def setup_device(args: argparse.Namespace) -> torch.device:
    torch.set_num_threads(args.threads)
    return torch.device(args.device)


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so a timer measures it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
