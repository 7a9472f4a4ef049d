"""What every workflow script shares: logging into the job log, threads, turning wildcards into an Experiment,
and one clear error line (no traceback) for problems the user can fix."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

try:
    import pfs  # noqa: F401
except ImportError:  # a rule env (--use-conda) without the package installed: use the checkout's src/
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from pfs.data import DataSettings
from pfs.errors import PfsError
from pfs.progress import setup_logging
from pfs.stages import Experiment

log = logging.getLogger("pfs.stage")


@contextlib.contextmanager
def run_stage(log_path: str | None, threads: int = 1) -> Iterator[TextIO]:
    """Set up logging and threads; turn a PfsError into one error line and exit status 1."""
    import torch

    stream = setup_logging(log_path)
    torch.set_num_threads(max(1, int(threads)))
    try:
        yield stream
    except PfsError as exc:
        log.error("%s", exc)
        raise SystemExit(1) from None


def experiment(wildcards) -> Experiment:
    wc = dict(wildcards)
    expansion = int(wc["expansion"]) if "expansion" in wc else None
    return Experiment(wc["dataset"], wc["arch"], int(wc["seed"]), expansion, float(wc.get("multiplier", 1)))


def data_settings(config: dict) -> DataSettings:
    keys = ("root", "download", "check_md5", "num_workers")
    return DataSettings(config["dataset"]["name"], **{k: config["dataset"][k] for k in keys})
