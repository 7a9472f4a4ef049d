"""What every workflow script shares: logging into the job log, threads, turning wildcards into an Experiment,
and one clear error line (no traceback) for problems the user can fix."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

_SRC = Path(__file__).resolve().parent.parent / "src"
try:
    import pfs  # noqa: F401
except ImportError:  # a rule env (--use-conda) without the package installed: use the checkout's src/
    sys.path.insert(0, str(_SRC))

# torch-free imports only: pfs.data and pfs.stages (torch, ~1.5 s) are imported where used, so summarize starts fast
from pfs.errors import PfsError  # noqa: E402 - after the sys.path fallback above
from pfs.gpu_slots import claim_gpus  # noqa: E402
from pfs.progress import setup_logging  # noqa: E402

if TYPE_CHECKING:
    from pfs.data import DataSettings
    from pfs.stages import Experiment

log = logging.getLogger("pfs.stage")


@contextlib.contextmanager
def run_stage(log_path: str | None, threads: int = 1, gpus: int = 0, device: str = "auto",
              uses_torch: bool = True) -> Iterator[TextIO]:
    """Set up logging and (``uses_torch``) torch's threads, claim ``gpus`` GPUs of this machine for the job (a local
    run: see pfs.gpu_slots), and turn a PfsError into one error line and exit status 1."""
    stream = setup_logging(log_path)
    if uses_torch:
        import torch

        torch.set_num_threads(max(1, int(threads)))
    try:
        with claim_gpus(0 if device == "cpu" else gpus):
            yield stream
    except PfsError as exc:
        log.error("%s", exc)
        raise SystemExit(1) from None


def gpu_count(resources) -> int:
    """The GPUs a job was given (its ``gpu`` resource; 0 when it has none)."""
    return int(getattr(resources, "gpu", 0) or 0) if resources is not None else 0


def experiment(wildcards) -> Experiment:
    from pfs.stages import Experiment

    wc = dict(wildcards)
    expansion = int(wc["expansion"]) if "expansion" in wc else None
    return Experiment(wc["dataset"], wc["arch"], int(wc.get("seed", 0)), expansion, float(wc.get("multiplier", 1)))


def data_fields(config: dict, inputs=None) -> dict:
    """Where to read the dataset: the config's location settings, and the ImageNet index tables among ``inputs``."""
    fields = {k: config["dataset"][k] for k in ("root", "download", "check_md5", "num_workers")}
    inputs = dict(inputs or {})
    if "train_list" in inputs:
        fields |= {"train_list": str(inputs["train_list"]), "val_list": str(inputs["val_list"])}
    return fields


def data_settings(config: dict, inputs=None) -> DataSettings:
    from pfs.data import DataSettings

    return DataSettings(config["dataset"]["name"], **data_fields(config, inputs))


def train_job(inputs, outputs, params, wildcards, config) -> dict:
    """The training job of a train_pruned / train_uniform / train_full rule as the dict pfs.stages.train_job (and
    ``python -m pfs train --job``) reads; ``params.method`` names a method other than pfs/full."""
    wc, inputs = dict(wildcards), dict(inputs)
    exp = experiment(wildcards)
    job = {"dataset": exp.dataset, "arch": exp.arch, "seed": exp.seed, "expansion": exp.expansion,
           "multiplier": exp.multiplier, "schedule": wc["schedule"], "ratio": float(wc.get("ratio", 0.0)),
           "train": dict(params["hp"]), "data": data_fields(config, inputs), "device": config["device"],
           "checkpoint_dir": config["checkpoint_dir"], "outputs": {k: str(v) for k, v in dict(outputs).items()}}
    job["method"] = dict(params).get("method", "pfs" if "channels" in inputs else "full")
    if "channels" in inputs:
        job["channels"] = str(inputs["channels"])
    if "sparsity" in wc:
        job["sparsity"] = float(wc["sparsity"])
    return job


def needs_torchrun(config: dict, gpus: int) -> bool:
    """ImageNet training always runs under torchrun (one process per GPU); other datasets only on several GPUs."""
    return config["dataset"]["name"] == "imagenet" or gpus > 1


def _last_error(log_path: str) -> str | None:
    lines = Path(log_path).read_text(errors="replace").splitlines() if Path(log_path).is_file() else []
    errors = [line for line in lines if line.startswith("error: ")]
    return errors[-1][len("error: "):] if errors else None


def run_torchrun(job: dict, gpus: int, threads: int, log_path: str) -> None:
    """Run ``job`` as ``torchrun --standalone --nproc_per_node=<gpus> -m pfs train --job <json>`` (one process on a
    CPU-only job), its output appended to the job log; SIGTERM/SIGUSR1 are passed on so every rank checkpoints."""
    nproc = max(1, gpus)
    # torchrun passes on only TERM, INT, HUP and QUIT unless told: SIGUSR1 (SLURM's usual warning) would kill it
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "--signals-to-handle=SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1",
           "-m", "pfs", "train", "--job", json.dumps({**job, "gpus": gpus})]
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, threads // nproc))}
    env.setdefault("PYTHONPATH", "")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_SRC), env["PYTHONPATH"]]))  # a rule env without pfs
    log.info("torchrun --standalone --nproc_per_node=%d -m pfs train (%s %s, schedule %s)", nproc, job["arch"],
             job["method"], job["schedule"])
    for handler in logging.getLogger().handlers:
        handler.flush()
    with open(log_path, "a") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        previous = {sig: signal.signal(sig, lambda signum, _frame: proc.send_signal(signum))
                    for sig in (signal.SIGTERM, signal.SIGUSR1)}
        try:
            code = proc.wait()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    if code != 0:
        reason = _last_error(log_path) or "see the log for the traceback"
        raise PfsError(f"training under torchrun failed (exit {code}): {reason} [log: {log_path}]")


def train_main(inputs, outputs, params, wildcards, config, log_path, threads=1, resources=None) -> None:
    """``main`` of the training scripts (train_pruned, train_uniform, train_full): one file per stage, so that
    editing one reruns only its stage, all running this."""
    with run_stage(log_path, threads, gpu_count(resources), config["device"]) as stream:
        run_training(inputs, outputs, params, wildcards, config, log_path, threads, resources, stream)


def run_training(inputs, outputs, params, wildcards, config, log_path, threads, resources, stream) -> None:
    """The body of the training rules: in this process, or under torchrun (ImageNet, or several GPUs)."""
    job = train_job(inputs, outputs, params, wildcards, config)
    gpus = gpu_count(resources)
    if needs_torchrun(config, gpus):
        run_torchrun(job, gpus, threads, log_path)
    else:
        from pfs.stages import train_job as stage_train_job

        stage_train_job(job, stream=stream)
