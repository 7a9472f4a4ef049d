"""What every workflow script shares: logging into the job log, threads, turning wildcards into an Experiment,
and one clear error line (no traceback) for problems the user can fix."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

_SRC = Path(__file__).resolve().parent.parent / "src"
try:
    import pfs  # noqa: F401
except ImportError:  # a rule env (--use-conda) without the package installed: use the checkout's src/
    sys.path.insert(0, str(_SRC))

# torch-free imports only: pfs.data.datasets and pfs.stages.experiment (torch, ~1.5 s) are imported where used, so
# summarize starts fast
from pfs.core.errors import PfsError  # noqa: E402 - after the sys.path fallback above
from pfs.core.progress import setup_logging  # noqa: E402
from pfs.workflow.gpu_slots import claim_gpus  # noqa: E402
from pfs.workflow.joblog import end_run, separator, start_run  # noqa: E402

if TYPE_CHECKING:
    from pfs.data.settings import DataSettings
    from pfs.stages.experiment import Experiment

log = logging.getLogger("pfs.stage")


@contextlib.contextmanager
def run_stage(log_path: str | None, threads: int = 1, gpus: int = 0, device: str = "auto",
              uses_torch: bool = True, numerics: dict | None = None) -> Iterator[TextIO]:
    """Set up logging and (``uses_torch``) torch's numerics (``numerics``: the rule's numerics param, pfs.core.numerics;
    native with ``threads`` threads when None), claim ``gpus`` GPUs of this machine for the job (a local
    run: see pfs.workflow.gpu_slots), and turn a PfsError into one error line and exit status 1. The job's log keeps the
    lines of its earlier runs that did not finish (a retry, a resubmission, --rerun-incomplete; pfs.workflow.joblog),
    and
    each run starts with a separator line."""
    run = start_run(log_path) if log_path else 0
    stream = setup_logging(log_path)
    if run:
        log.info("%s", separator(run))
    finished = False
    try:
        if uses_torch:
            from pfs.core.numerics import apply

            numerics = dict(numerics or {})  # pinned: the thread count the param fixes, whatever cores were granted
            apply(numerics.get("mode", "native"), numerics.get("threads", threads))
        with claim_gpus(0 if device == "cpu" else gpus):
            yield stream
        finished = True
    except PfsError as exc:
        log.error("%s", exc)
        raise SystemExit(1) from None
    finally:
        if run:
            end_run(log_path, finished)


def gpu_count(resources) -> int:
    """The GPUs a job was given (its ``gpu`` resource; 0 when it has none)."""
    return int(getattr(resources, "gpu", 0) or 0) if resources is not None else 0


def experiment(wildcards) -> Experiment:
    from pfs.stages.experiment import Experiment

    wc = dict(wildcards)
    expansion = int(wc["expansion"]) if "expansion" in wc else None
    return Experiment(wc["dataset"], wc["arch"], int(wc.get("seed", 0)), expansion, float(wc.get("multiplier", 1)))


def data_settings(config: dict, inputs=None) -> DataSettings:
    from pfs.data.settings import DataSettings
    from pfs.stages.train import data_fields

    return DataSettings(config["dataset"]["name"], **data_fields(config, inputs))
