"""Before a run under ``--executor slurm`` submits its first job: can the plugin learn when a job has ended?

snakemake-executor-plugin-slurm asks SLURM for the state of its jobs with ``sacct`` (its default wherever the
``sacct`` command is installed) or ``squeue`` (``--slurm-status-command squeue``). On a cluster without an
accounting database ``sacct`` is installed but only answers "Slurm accounting storage is disabled"; the plugin
takes every such answer as "no news", so it never sees a job end and Snakemake waits forever (a SIGTERM only makes
it wait for those jobs to finish). The plugin also quietly goes back from squeue to sacct when SLURM's MinJobAge
is under 3 x ``--slurm-init-seconds-before-status-checks``. This module works out the command the plugin will
really use, runs that query once with a short timeout and, when it cannot work, stops the run with one line that
says what to pass. Torch-free: it runs in the Snakemake process (rules/config.smk, onstart).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import datetime, timedelta

from pfs.core.errors import PfsError

SACCT_TIMEOUT = 20.0  # seconds; a working sacct answers in well under a second
SCONTROL_TIMEOUT = 10.0
INIT_SECONDS_DEFAULT = 40  # the plugin's default --slurm-init-seconds-before-status-checks
FIX = "pass --slurm-status-command squeue (or put `slurm-status-command: squeue` in your profile)"


class SlurmStatusError(PfsError):
    """The plugin's job status command cannot work on this cluster."""


def min_job_age(timeout: float = SCONTROL_TIMEOUT) -> int | None:
    """SLURM's MinJobAge in seconds (how long squeue lists a finished job), from ``scontrol show config``."""
    try:
        out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r"^\s*MinJobAge\s*=\s*(\d+)\s*([a-zA-Z]*)", out.stdout, re.MULTILINE)
    if out.returncode != 0 or not match:
        return None
    return int(match[1]) * (3600 if match[2].lower() in ("h", "hour", "hours") else 1)


def effective_status_command(status_command: str | None, init_seconds: int, job_age: int | None,
                             sacct_installed: bool) -> str:
    """The command the plugin (2.x) will query: squeue goes back to sacct when sacct is installed and MinJobAge is
    unknown or under 3 x init_seconds; sacct goes to squeue when it is not installed."""
    command = status_command or ("sacct" if sacct_installed else "squeue")
    if command == "squeue" and sacct_installed and (job_age is None or job_age < 3 * init_seconds):
        return "sacct"
    if command == "sacct" and not sacct_installed:
        return "squeue"
    return command


def sacct_problem(timeout: float = SACCT_TIMEOUT) -> str | None:
    """Why the plugin's sacct query fails here (None: it works). The query is the plugin's own, for a job name no
    job has, so a working sacct answers with nothing at once."""
    start = f"{datetime.now() - timedelta(days=2):%Y-%m-%dT%H:00}"
    command = ["sacct", "-X", "--parsable2", "--clusters", "all", "--noheader", "--format=JobIdRaw,State",
               "--starttime", start, "--endtime", "now", "--name", "pfs-status-check"]
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"`sacct` did not answer within {timeout:g} s"
    except OSError as exc:
        return f"`sacct` could not be run ({exc})"
    if out.returncode != 0:
        said = " ".join((out.stderr or out.stdout).split()) or "nothing"
        return f"`sacct` fails here (exit {out.returncode}: {said})"
    return None


def status_command_problem(status_command: str | None, init_seconds: int | None,
                           timeout: float = SACCT_TIMEOUT) -> str | None:
    """One line saying why the plugin would never see its jobs end, and what to pass (None: nothing to fix)."""
    init_seconds = init_seconds or INIT_SECONDS_DEFAULT
    sacct_installed = shutil.which("sacct") is not None
    job_age = min_job_age() if status_command == "squeue" and sacct_installed else None
    if effective_status_command(status_command, init_seconds, job_age, sacct_installed) != "sacct":
        return None
    problem = sacct_problem(timeout)
    if problem is None:
        return None
    lead = ("SLURM job status: the executor plugin would ask `sacct` whether its jobs have ended, but "
            f"{problem}, so this run would wait forever for its first job")
    if status_command != "squeue":
        return f"{lead}: {FIX}"
    if job_age is not None and job_age >= 3:
        fix = (f"pass --slurm-init-seconds-before-status-checks {job_age // 3} (at most MinJobAge / 3) or ask your "
               "SLURM admin for a MinJobAge of a few minutes")
    else:
        fix = "ask your SLURM admin for a MinJobAge of a few minutes (or for job accounting)"
    age = "unknown" if job_age is None else f"{job_age} s"
    return (f"{lead}: --slurm-status-command squeue is set, but the plugin goes back to sacct because SLURM's "
            f"MinJobAge ({age}) is under 3 x --slurm-init-seconds-before-status-checks ({init_seconds} s): {fix}")


def check_workflow(workflow, timeout: float = SACCT_TIMEOUT) -> None:
    """Raise SlurmStatusError when ``workflow`` (Snakemake's, at onstart) runs under the slurm executor with a status
    command that cannot work here. Any other executor, and the jobs' own Snakemake processes, pass untouched."""
    plugin = getattr(workflow, "executor_plugin", None)
    if plugin is None or getattr(plugin, "name", None) != "slurm":
        return
    settings = getattr(workflow, "executor_settings", None)
    problem = status_command_problem(getattr(settings, "status_command", None),
                                     getattr(settings, "init_seconds_before_status_checks", None), timeout)
    if problem:
        raise SlurmStatusError(problem)

