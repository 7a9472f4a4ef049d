"""Starting a training job (pfs.stages.train.TrainJob) the way it needs: in this process, or under torchrun with one
process per GPU, each running ``python -m pfs train --job`` (pfs.cli -> pfs.stages.train.run_job)."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from pfs.core import numerics
from pfs.core.errors import PfsError
from pfs.stages.train import TrainJob, run_job


def launch(job: TrainJob, threads: int = 1, stream=None) -> dict | None:
    """Run a training job (pfs.stages.train.TrainJob) the way it needs: under torchrun, one process per GPU (ImageNet,
    or several GPUs), rank 0 logging to ``job.log`` and torchrun's own output in a side file (torchrun_log);
    otherwise in this process. Returns the metrics of an in-process run (None under torchrun: rank 0 wrote them)."""
    if not job.needs_torchrun:
        return run_job(job, stream=stream)
    _torchrun(job, threads)
    return None


def torchrun_log(log_path: str | None) -> str:
    """Where torchrun's own output goes: ``<job log>.torchrun`` beside the job log (os.devnull without one)."""
    return f"{log_path}.torchrun" if log_path else os.devnull


def _torchrun(job: TrainJob, threads: int) -> None:
    """``torchrun --standalone --nproc_per_node=<gpus> -m pfs train --job <json>`` (one process on a CPU-only job);
    SIGTERM/SIGUSR1 are passed on so every rank checkpoints.

    Rank 0 logs into the job log itself (as an in-process job does); the processes' stdout and stderr (torchrun's
    banner and, on a failure, its ChildFailedError traceback, the ranks' warnings, ``error:`` lines and any
    traceback) are appended to torchrun_log. So a failed job's log ends with one ERROR line, the rank's reason, and
    nothing above it repeats it; the side file keeps the rest."""
    nproc = max(1, job.gpus)
    # torchrun passes on only TERM, INT, HUP and QUIT unless told: SIGUSR1 (SLURM's usual warning) would kill it
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "--signals-to-handle=SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1", "-m", "pfs", "train", "--job", job.to_json()]
    src = str(Path(__file__).resolve().parents[2])  # a rule env without pfs installed finds the checkout's
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, threads // nproc)),
           "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH", "")]))}
    if numerics.MODE_ENV in os.environ:  # each rank applies the job's numerics mode, with its share of the threads
        env[numerics.THREADS_ENV] = str(max(1, int(os.environ.get(numerics.THREADS_ENV, threads)) // nproc))
    log = logging.getLogger(__name__)
    side = torchrun_log(job.log)
    log.info("torchrun --standalone --nproc_per_node=%d -m pfs train (%s %s, schedule %s); torchrun's output: %s",
             nproc, job.arch, job.method, job.schedule, side)
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(ValueError):  # a handler of a stream already closed has nothing left to flush
            handler.flush()
    with open(side, "a") as out:
        start = out.tell()  # this launch's part of the side file (a resumed job appends to it)
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        previous = {sig: signal.signal(sig, lambda signum, _frame: proc.send_signal(signum))
                    for sig in (signal.SIGTERM, signal.SIGUSR1)}
        try:
            code = proc.wait()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    if code != 0:
        raise PfsError(f"training under torchrun failed (exit {code}): {failure_reason(side, start)} "
                       f"[torchrun's output, with any traceback: {side}]")


def failure_reason(side: str, start: int) -> str:
    """Why the ranks failed, from this launch's part of the side file: the last ``error: ...`` line a rank wrote
    (pfs.cli's answer to a PfsError), else the last exception line of a rank's traceback (torchrun's own
    ChildFailedError aside), else a pointer to the file."""
    if side == os.devnull or not Path(side).is_file():
        return "no log to read the reason from"
    with open(side, errors="replace") as fh:
        fh.seek(start)
        lines = fh.read().splitlines()
    errors = [line[len("error: "):] for line in lines if line.startswith("error: ")]
    if errors:
        return errors[-1]
    raised = [line for line in lines if _EXCEPTION.match(line) and "ChildFailedError" not in line]
    return f"a rank raised {raised[-1]}" if raised else "no rank gave a reason (killed? out of memory?)"


_EXCEPTION = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt)\b")  # a traceback's last line: KeyError: 'x'
