"""A job's log across its runs: the lines of the runs that did not finish stay in it.

Snakemake deletes a job's log before each run of the job (a retry, a resubmission under SLURM, a
``--rerun-incomplete``), so the lines of a preempted or timed-out run, which say where it stopped, would be gone
with the next one. Here the job's log is a hard link to ``<log>.unfinished``, a file Snakemake does not know: every
line written to the log is in both (one file), Snakemake's delete removes only the log's name, the next run links
the log to the record again and appends, and a finished run removes the record. Every run starts with a separator
line naming the run, its host and its SLURM job. Where the file system has no hard links, the record is a copy made
when a run fails (so only a run killed outright, with no chance to copy, loses its lines). Torch-free.
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

RECORD_SUFFIX = ".unfinished"
SEPARATOR = "===== run "  # every run's first line: "===== run <n> of this job ..."


def record_path(log_path: str | Path) -> Path:
    log = Path(log_path)
    return log.with_name(log.name + RECORD_SUFFIX)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def start_run(log_path: str | Path) -> int:
    """Make ``log_path`` hold the lines of the job's earlier unfinished runs (and, linked, go on recording this one);
    returns the number of this run (1: no unfinished run before it)."""
    log, record = Path(log_path), record_path(log_path)
    log.parent.mkdir(parents=True, exist_ok=True)
    if record.exists() and not log.exists():  # the usual case after a failed run: Snakemake deleted the log
        try:
            os.link(record, log)
        except OSError:  # no hard links here: carry the earlier lines over as a copy
            shutil.copyfile(record, log)
    elif not _same_file(log, record):  # a first run, or a log Snakemake left alone (a script run by hand)
        log.touch()
        record.unlink(missing_ok=True)
        try:
            os.link(log, record)
        except OSError:
            pass  # end_run copies the log if this run fails
    with open(log, errors="replace") as fh:
        runs = sum(line.startswith(SEPARATOR) or f" {SEPARATOR}" in line for line in fh)
    return runs + 1


def separator(run: int) -> str:
    """The first line of run ``run``: which run, on which host, in which SLURM job."""
    job = os.environ.get("SLURM_JOB_ID")
    where = f"{socket.gethostname()}" + (f", SLURM job {job}" if job else "") + f", pid {os.getpid()}"
    earlier = " (the lines above are from the earlier runs, which did not finish)" if run > 1 else ""
    return f"{SEPARATOR}{run} of this job: {where}{earlier}"


def end_run(log_path: str | Path, finished: bool) -> None:
    """A finished run removes the record (the log stays, with every run's lines); a failed one keeps it for the
    next run (a copy where there are no hard links)."""
    log, record = Path(log_path), record_path(log_path)
    if finished:
        record.unlink(missing_ok=True)
    elif log.exists() and not _same_file(log, record):
        shutil.copyfile(log, record)
