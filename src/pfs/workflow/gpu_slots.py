"""Local multi-GPU runs: give every job GPUs of its own.

Snakemake counts GPUs (``--resources gpu=N``) but assigns none, so without this every job on one machine would
run on GPU 0. A job claims the first free GPUs by locking one file per GPU (``fcntl.flock``: the OS frees the lock
when the job ends, even on SIGKILL) and sets ``CUDA_VISIBLE_DEVICES`` to them before CUDA starts. Under a
scheduler that already set ``CUDA_VISIBLE_DEVICES`` (SLURM does for ``--gpus``) nothing is claimed.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from pfs.core.errors import PfsError

log = logging.getLogger(__name__)

ENV = "CUDA_VISIBLE_DEVICES"
DEFAULT_LOCK_DIR = Path(tempfile.gettempdir()) / "pfs-gpu-locks"


def machine_gpu_count() -> int:
    """GPUs of this machine by ``nvidia-smi -L`` (0 without an NVIDIA driver); CUDA itself is not started."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return 0
    try:
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(line.startswith("GPU ") for line in out.splitlines())


def _try_lock(path: Path) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _release(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)  # closing the descriptor drops the flock


@contextlib.contextmanager
def claim_gpus(n: int, total: int | None = None, lock_dir: str | os.PathLike = DEFAULT_LOCK_DIR,
               wait_s: float = 3600.0, poll_s: float = 2.0) -> Iterator[list[int] | None]:
    """Hold ``n`` GPUs of this machine for the block, with ``CUDA_VISIBLE_DEVICES`` set to them.

    Yields the claimed GPU indices, or None when there is nothing to claim (n = 0, no GPU, or the scheduler set
    ``CUDA_VISIBLE_DEVICES``). Waits up to ``wait_s`` seconds for GPUs held by other jobs (or programs using
    this module), then raises PfsError.
    """
    if n <= 0 or ENV in os.environ:
        yield None
        return
    total = machine_gpu_count() if total is None else total
    if total == 0:
        yield None
        return
    if n > total:
        raise PfsError(f"this job needs {n} GPUs (resources.gpu) but this machine has {total}; lower resources.gpu")
    lock_dir = Path(lock_dir)
    lock_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        lock_dir.chmod(0o1777)  # every user's jobs share the folder (sticky: nobody deletes another's file)
    deadline = time.monotonic() + wait_s
    while True:
        held: dict[int, int] = {}
        for gpu in range(total):
            if (fd := _try_lock(lock_dir / f"gpu{gpu}.lock")) is not None:
                held[gpu] = fd
                if len(held) == n:
                    break
        if len(held) == n:
            break
        _release(list(held.values()))  # all or nothing: two jobs holding half of what each needs never deadlock
        if time.monotonic() >= deadline:
            raise PfsError(f"no {n} free GPU(s) of {total} after {wait_s:.0f} s: other jobs hold their locks in "
                           f"{lock_dir}; run fewer GPU jobs at once (--resources gpu=...)")
        time.sleep(poll_s)
    ids = sorted(held)
    os.environ[ENV] = ",".join(map(str, ids))
    log.info("claimed GPU(s) %s of %d (CUDA_VISIBLE_DEVICES=%s)", ids, total, os.environ[ENV])
    try:
        yield ids
    finally:
        os.environ.pop(ENV, None)
        _release(list(held.values()))
