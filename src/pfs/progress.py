"""Logging set-up for stage jobs and progress bars that write into the job's log."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from tqdm import tqdm

_FORMAT = "[%(asctime)s] %(levelname)s %(name)s: %(message)s"


def setup_logging(log_path: str | Path | None = None, level: int = logging.INFO) -> TextIO:
    """Log to stderr and, if given, to ``log_path``; returns the stream progress bars should write to."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    stream: TextIO = sys.stderr
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        stream = open(log_path, "a", buffering=1)  # noqa: SIM115 - lives as long as the job
        handlers.append(logging.StreamHandler(stream))
    logging.basicConfig(level=level, format=_FORMAT, handlers=handlers, force=True)
    return stream


def progress(iterable: Iterable, desc: str, total: int | None = None, stream: TextIO | None = None) -> tqdm:
    """A per-epoch progress bar (ASCII, at most one refresh every 2 s, so log files stay readable)."""
    return tqdm(iterable, desc=desc, total=total, file=stream or sys.stderr, ascii=True, mininterval=2.0,
                leave=True, dynamic_ncols=False, ncols=100)
