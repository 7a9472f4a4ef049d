"""Starting a training job (pfs.stages.train.TrainJob) the way it needs: in this process, or under torchrun with one
process per GPU, each running ``python -m pfs train --job`` (pfs.cli -> pfs.stages.train.run_job)."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

from pfs.core import numerics
from pfs.core.errors import PfsError
from pfs.stages.train import TrainJob, run_job


def launch(job: TrainJob, threads: int = 1, stream=None) -> dict | None:
    """Run a training job (pfs.stages.train.TrainJob) the way it needs: under torchrun, one process per GPU (ImageNet,
    or
    several GPUs), its output appended to ``job.log``; otherwise in this process. Returns the metrics of an
    in-process run (None under torchrun: rank 0 wrote them)."""
    if not job.needs_torchrun:
        return run_job(job, stream=stream)
    _torchrun(job, threads)
    return None


def _torchrun(job: TrainJob, threads: int) -> None:
    """``torchrun --standalone --nproc_per_node=<gpus> -m pfs train --job <json>`` (one process on a CPU-only job),
    its output appended to the job log; SIGTERM/SIGUSR1 are passed on so every rank checkpoints."""
    nproc = max(1, job.gpus)
    ranks_job = dataclasses.replace(job, log=None)  # the ranks' output goes into job.log below: rank 0 logs to stderr
    # torchrun passes on only TERM, INT, HUP and QUIT unless told: SIGUSR1 (SLURM's usual warning) would kill it
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "--signals-to-handle=SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1", "-m", "pfs", "train", "--job",
           ranks_job.to_json()]
    src = str(Path(__file__).resolve().parents[2])  # a rule env without pfs installed finds the checkout's
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, threads // nproc)),
           "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH", "")]))}
    if numerics.MODE_ENV in os.environ:  # each rank applies the job's numerics mode, with its share of the threads
        env[numerics.THREADS_ENV] = str(max(1, int(os.environ.get(numerics.THREADS_ENV, threads)) // nproc))
    log = logging.getLogger(__name__)
    log.info("torchrun --standalone --nproc_per_node=%d -m pfs train (%s %s, schedule %s)", nproc, job.arch,
             job.method, job.schedule)
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(ValueError):  # a handler of a stream already closed has nothing left to flush
            handler.flush()
    with open(job.log or os.devnull, "a") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        previous = {sig: signal.signal(sig, lambda signum, _frame: proc.send_signal(signum))
                    for sig in (signal.SIGTERM, signal.SIGUSR1)}
        try:
            code = proc.wait()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    if code != 0:
        reason = _last_error(job.log) or "see the log for the traceback"
        raise PfsError(f"training under torchrun failed (exit {code}): {reason} [log: {job.log}]")


def _last_error(log_path: str | None) -> str | None:
    """The last ``error: ...`` line a rank wrote into the job log."""
    if not log_path or not Path(log_path).is_file():
        return None
    errors = [line for line in Path(log_path).read_text(errors="replace").splitlines() if line.startswith("error: ")]
    return errors[-1][len("error: "):] if errors else None
