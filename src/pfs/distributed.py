"""Where a job runs: the device it asks for, and multi-process training under torchrun (process group set-up, the
GPU-count check, collective sums)."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as torch_dist

from pfs import numerics
from pfs.errors import PfsError


def resolve_device(name: str = "auto") -> torch.device:
    """The torch device named by a config's ``device`` (auto: CUDA when there is one), refused when absent."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise PfsError(f"device {name!r} requested but CUDA is not available; set device: auto or cpu")
    return torch.device(name)


@dataclass(frozen=True)
class Dist:
    """This process's place in the job (world_size 1: a plain single-process run)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device_name: str = "auto", expected_gpus: int | None = None) -> tuple[Dist, torch.device]:
    """Read torchrun's environment, check the GPUs, pick this rank's device, start the process group.

    NCCL on GPU, gloo on CPU. ``expected_gpus`` is what the job was given (resources.gpu): a job that sees
    fewer GPUs stops here, before any work, instead of silently sharing one.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    device = resolve_device(device_name)
    if device.type == "cuda":
        visible = torch.cuda.device_count()
        needed = max(local_world, expected_gpus or 0)
        if visible < needed:
            raise PfsError(f"this job was given {needed} GPU(s) (resources.gpu / --nproc_per_node) but sees {visible}"
                           " (CUDA_VISIBLE_DEVICES); lower resources.gpu or ask the scheduler for more GPUs")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if world > 1 and not torch_dist.is_initialized():
        torch_dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(rank, world, local_rank), device


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """Sum ``values`` over all ranks (identity in a single process)."""
    if not (torch_dist.is_available() and torch_dist.is_initialized()):
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    torch_dist.all_reduce(tensor)
    return tensor.tolist()


def cleanup() -> None:
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.destroy_process_group()


def launch(job, threads: int = 1, stream=None) -> dict | None:
    """Run a training job (pfs.jobs.TrainJob) the way it needs: under torchrun, one process per GPU (ImageNet, or
    several GPUs), its output appended to ``job.log``; otherwise in this process. Returns the metrics of an
    in-process run (None under torchrun: rank 0 wrote them)."""
    from pfs.jobs import run_job

    if not job.needs_torchrun:
        return run_job(job, stream=stream)
    _torchrun(job, threads)
    return None


def _torchrun(job, threads: int) -> None:
    """``torchrun --standalone --nproc_per_node=<gpus> -m pfs train --job <json>`` (one process on a CPU-only job),
    its output appended to the job log; SIGTERM/SIGUSR1 are passed on so every rank checkpoints."""
    nproc = max(1, job.gpus)
    ranks_job = dataclasses.replace(job, log=None)  # the ranks' output goes into job.log below: rank 0 logs to stderr
    # torchrun passes on only TERM, INT, HUP and QUIT unless told: SIGUSR1 (SLURM's usual warning) would kill it
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "--signals-to-handle=SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1", "-m", "pfs", "train", "--job",
           ranks_job.to_json()]
    src = str(Path(__file__).resolve().parent.parent)  # a rule env without pfs installed finds the checkout's
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
