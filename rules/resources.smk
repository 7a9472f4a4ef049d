# Resources of the GPU jobs (gpu, mem_mb, runtime, retries) and the memory check after a run: each job's peak
# memory from its benchmark file against the mem_mb it declared. No rules here.

import os
import time

from snakemake.logging import logger

from pfs.workflow.memory import DeclaredJob, job_mem_mb, overruns


def gpu_resources(max_gpu=None, stage="train"):
    """Resources of the GPU jobs of ``stage`` (gates or train; at most ``max_gpu`` GPUs); each retry
    (resources.retries) gets a longer wall-time limit. ``mem_mb: auto``: estimated per job from its arch, the
    dataset, workers, batch size and GPUs (pfs.workflow.memory: measured figures, torch-free)."""
    res = config["resources"]
    gpu = res["gpu"] if max_gpu is None else min(res["gpu"], max_gpu)
    mem_mb = res["mem_mb"]
    if mem_mb == "auto":
        mem_mb = lambda wildcards: job_mem_mb(config, wildcards.arch, stage, gpu)
    return {"gpu": gpu, "mem_mb": mem_mb, "runtime": lambda wildcards, attempt: res["runtime"] * attempt}


RUN_STARTED = time.time()  # benchmark files written since then are this run's


def warn_memory_overruns():
    """After a run (onsuccess, onerror): one WARNING line per job of this run whose benchmark file shows a peak
    memory (max_pss, pfs.workflow.memory.overruns) above the mem_mb it declared. A courtesy: it never fails a run."""
    try:
        ran = [
            job
            for job in workflow.dag.jobs
            if job.benchmark and os.path.isfile(job.benchmark) and os.path.getmtime(job.benchmark) >= RUN_STARTED
        ]
        found = overruns(
            DeclaredJob(job.benchmark, job.resources.get("mem_mb"), job.rule.name, job.resources.get("gpu") is not None)
            for job in ran
        )
    except Exception as exc:  # Snakemake's job objects moved: say so, and carry on
        logger.debug(f"memory check of the benchmark files skipped: {exc}")
        return
    for overrun in found:
        logger.warning(f"WARNING {overrun.message(config['resources']['mem_mb'])}")


onsuccess:
    warn_memory_overruns()


onerror:
    warn_memory_overruns()


def job_retries():
    """The retries: of the GPU rules (config resources.retries), counted by the main Snakemake process only. In a
    job's own Snakemake (in the sbatch job, or a local job's subprocess) Snakemake passes --retries 0, since the
    main process handles retries, but a retries: directive overrides that: a signalled training job would be
    restarted inside its allocation, under the same time limit, before the main process resubmits it."""
    return config["resources"]["retries"] if workflow.is_main_process else 0
