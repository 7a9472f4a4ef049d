"""End to end on a real SLURM cluster: the tiny grid through ``--executor slurm`` with profiles/slurm.

Needs a cluster that answers ``sinfo`` and takes jobs from this user: ``bash tests/slurm/start_cluster.sh``
(root) installs slurm-wlm and munge and starts a one-node cluster with two fake GPUs (.ci/run does it). The test is
skipped only where ``sbatch`` is absent; with sbatch but no working cluster it fails and says why.

The GPU rules (learn_gates, train_pruned, train_full) must be submitted with ``--gpus`` and the CPU rules (prune,
summarize) without any GPU request. Two independent records are checked: the sbatch command lines the plugin logs
(``--verbose``: ``sbatch call: ...``) and what SLURM recorded for each job (``squeue --states=all``: the job's
comment ``rule_<rule>...`` written by the plugin and its ``tres-per-job``/``tres-per-node``, e.g. ``gres:gpu:1``).
squeue lists a finished job for MinJobAge seconds only, so a thread polls it during the run.

Two more cases on the same cluster: a training job that SLURM's early TERM (``--signal``) stops is resubmitted once
by the main Snakemake with a longer time limit (never restarted inside its allocation) and resumes, its log keeping
both runs; and, the test cluster having no accounting database, a run left to the plugin's default status command
(sacct) stops before submitting anything, with one line saying to pass ``--slurm-status-command squeue``.
"""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml
from smk_run import ALL_JOBS, EXP, FULL, PRUNED, REPO, RUN_DIRS, copy_workflow, snakemake, tail, write_yaml

pytestmark = pytest.mark.slow

PROFILE = REPO / "profiles" / "slurm" / "config.yaml"
GPU_RULES = {"learn_gates", "train_pruned", "train_full"}
CPU_RULES = {"prune", "summarize", "plot_results"}
SUBMITTED = {rule: n for rule, n in ALL_JOBS.items() if rule != "all"}  # `all` has no job to submit
START = "bash tests/slurm/start_cluster.sh"
CLUSTER_LOGS = "/tmp/pfs-slurm/log"
SQUEUE_FIELDS = ("JobID", "Comment", "tres-per-job", "tres-per-node", "State", "TimeLimit", "WorkDir")
# Sizes of the tiny jobs: the test node may have 2 CPUs and a few GB; the profile sizes jobs for a GPU cluster.
TINY_SIZES = {"cpus_per_gpu": 1, "cpus_per_task": 1, "mem_mb": 1500, "runtime": 15}


def cluster_problem() -> str | None:
    """Why the cluster cannot take jobs (None: it can)."""
    try:
        out = subprocess.run(["sinfo", "--noheader", "--format", "%P %T"], capture_output=True, text=True,
                             timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"sinfo did not answer: {exc}"
    if out.returncode != 0:
        return f"sinfo failed (exit {out.returncode}): {out.stderr.strip()}"
    usable = [line for line in out.stdout.splitlines() if re.search(r"\b(idle|mixed|allocated|completing)", line)]
    if not usable:
        return f"no node takes jobs; sinfo says: {out.stdout.strip() or '(nothing)'}"
    return None


def require_cluster() -> None:
    """Skip where there is no SLURM (no sbatch); fail, saying why, where sbatch is here but the cluster is not up."""
    if shutil.which("sbatch") is None:
        pytest.skip(f"no SLURM here (sbatch not found); `{START}` (as root) installs and starts a one-node cluster")
    problem = cluster_problem()
    if problem:
        pytest.fail(f"sbatch is here but the cluster cannot take jobs: {problem}. Start it: `{START}` "
                    f"(its logs: {CLUSTER_LOGS})")


def test_profile_requests_gpus_only_for_the_gpu_rules():
    profile = yaml.safe_load(PROFILE.read_text())
    assert profile["executor"] == "slurm"
    assert isinstance(profile["jobs"], int)
    assert "gpu" not in profile["default-resources"]
    # the GPU jobs are sized by the config's resources (1 GPU for CIFAR, 8 for ImageNet), not by the profile
    for rule, resources in profile["set-resources"].items():
        assert not {"gpu", "mem_mb", "runtime", "cpus_per_gpu"} & set(resources), rule
    for rule in ("train_pruned", "train_full"):  # an early SIGTERM lets training checkpoint before the limit
        assert "--signal=TERM@" in profile["set-resources"][rule]["slurm_extra"], rule
    # account, partition and GPU model are the user's
    assert not {"slurm_account", "slurm_partition", "gpu_model"} & set(profile["default-resources"])


def tiny_profile(folder: Path, status_command: str | None = "squeue") -> Path:
    """profiles/slurm with the job sizes shrunk to fit a small node, status by squeue (a cluster without
    slurmdbd has no working sacct; None: the plugin's default), frequent status checks and the sbatch calls in the
    log (--verbose)."""
    profile = yaml.safe_load(PROFILE.read_text())
    for resources in [profile["default-resources"], *profile["set-resources"].values()]:
        resources.update({key: TINY_SIZES[key] for key in resources if key in TINY_SIZES})
    profile.update({
        "slurm-init-seconds-before-status-checks": 2,
        "verbose": True,
    })
    if status_command:
        profile["slurm-status-command"] = status_command
    folder.mkdir(parents=True)
    write_yaml(folder / "config.yaml", profile)
    return folder


class SqueuePoller(threading.Thread):
    """Records, every few seconds, the jobs squeue lists with the given working directory (job id -> fields)."""

    def __init__(self, workdir: Path, every: float = 2.0):
        super().__init__(daemon=True)
        self.workdir, self.every = str(workdir), every
        self.jobs: dict[str, dict[str, str]] = {}
        self.stop = threading.Event()

    def poll(self) -> None:
        fmt = ",".join(f"{field}:|" for field in SQUEUE_FIELDS)  # `:|`: "|" after each field, never cut short
        try:
            out = subprocess.run(["squeue", "--states=all", "--noheader", "-O", fmt], capture_output=True,
                                 text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return  # a missed poll; the next one sees the jobs again (MinJobAge keeps finished ones listed)
        for line in out.stdout.splitlines():
            fields = dict(zip(SQUEUE_FIELDS, (f.strip() for f in line.split("|")), strict=False))
            if fields.get("WorkDir") == self.workdir:
                self.jobs[fields["JobID"]] = fields

    def run(self) -> None:
        while not self.stop.wait(self.every):
            self.poll()


def rule_of(comment: str) -> str:
    """The rule of a job from the plugin's job comment: rule_<rule>_wildcards_<values> or rule_<rule>."""
    match = re.fullmatch(r"rule_(\w+?)(?:_wildcards_.*)?", comment)
    assert match, comment
    return match[1]


def test_tiny_grid_runs_through_slurm(tmp_path):
    require_cluster()

    workdir = copy_workflow(tmp_path / "wf")
    profile = tiny_profile(tmp_path / "profile")
    poller = SqueuePoller(workdir)
    poller.start()
    start = time.perf_counter()
    try:
        result = snakemake(workdir, "--workflow-profile", str(profile), "--configfile", "tiny.yaml", timeout=1500)
    finally:
        seconds = time.perf_counter() - start
        poller.stop.set()
        poller.join()
    poller.poll()
    slurm_logs = sorted((workdir / ".snakemake" / "slurm_logs").rglob("*.log"))  # kept for failed jobs
    assert result.returncode == 0, (
        f"snakemake --executor slurm failed (exit {result.returncode}):\n{tail(result.stdout)}\n"
        + "".join(f"--- {p}:\n{tail(p.read_text(errors='replace'), 30)}\n" for p in slurm_logs)
        + f"(cluster logs: {CLUSTER_LOGS})")
    print(f"tiny grid through SLURM: {sum(ALL_JOBS.values())} jobs in {seconds:.1f} s")

    # every job ran once, and every artifact is there
    # profiles/slurm's terminal (--logger pfs): one line per finished job, counting up to the run's total
    finished = re.findall(r"^✓ (\d+)/(\d+) (\w+) ", result.stdout, re.M)
    assert Counter(rule for _, _, rule in finished) == ALL_JOBS, tail(result.stdout)
    jobs = sum(ALL_JOBS.values())
    assert [(int(done), int(total)) for done, total, _ in finished] == [(i + 1, jobs) for i in range(jobs)]
    expected = [f"{EXP}/gates.pt", f"{EXP}/gates_metrics.csv", f"{PRUNED}/channels.yaml", "results/summary.csv"]
    expected += [f"{run_dir}/{name}" for run_dir in RUN_DIRS.values()
                 for name in ("model.pt", "metrics.json", "history.csv")]
    assert [p for p in expected if not (workdir / p).is_file() or (workdir / p).stat().st_size == 0] == []
    with open(workdir / "results/summary.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted((r["method"], r["schedule"]) for r in rows) == [
        ("full", "scratch_e"), ("pfs", "scratch_b"), ("pfs", "scratch_e")]

    # what Snakemake submitted: one sbatch call per job, --gpus exactly for the GPU rules
    calls = sbatch_calls(result.stdout)
    submitted = {}
    for call in calls:
        rule = rule_of(re.search(r"--comment (\S+)", call)[1])
        submitted.setdefault(rule, []).append(call)
    assert Counter({rule: len(c) for rule, c in submitted.items()}) == SUBMITTED, "\n".join(calls)
    for rule, rule_calls in submitted.items():
        for call in rule_calls:
            if rule in GPU_RULES:
                assert re.search(r"--gpus=1\b", call), call
            else:
                assert "--gpus" not in call and "--gres" not in call, call

    # what SLURM recorded: the same split, from the scheduler's side
    jobs = poller.jobs.values()
    assert Counter(rule_of(job["Comment"]) for job in jobs) == SUBMITTED, jobs
    for job in jobs:
        gpu_request = f"{job['tres-per-job']} {job['tres-per-node']}"
        assert job["State"] == "COMPLETED", job
        if rule_of(job["Comment"]) in GPU_RULES:
            assert "gres:gpu:1" in gpu_request or "gres/gpu:1" in gpu_request, job
        else:
            assert "gpu" not in gpu_request, job


def sbatch_calls(output: str) -> list[str]:
    """The sbatch command lines the plugin logged (--verbose), without the wrapped Snakemake command."""
    return [line.split("sbatch call: ", 1)[1].split(" --wrap=", 1)[0]
            for line in output.splitlines() if "sbatch call: " in line]


# resources.runtime 2 and --signal=TERM@30: SLURM sends the TERM 30 to 60 s before the 2-minute limit (it checks
# every 30 s), so 60 to 90 s into the job. 60 tiny epochs take 1.6 (idle 2-CPU node) to 3.5 s each (busy): more
# than the first allocation gives, and what is left fits into the second one (4 minutes, TERM after 3 to 3.5)
# unless the node is very busy; retries 3 leaves room for a third or fourth job then (each checked the same way).
SIGNALLED = {"train": {"epochs": 60, "batch_size": 128},
             "resources": {"runtime": 2, "retries": 3, "threads": 1, "mem_mb": TINY_SIZES["mem_mb"]}}


def test_a_signalled_training_job_is_resubmitted_with_a_longer_limit_and_resumes(tmp_path):
    """SLURM's early TERM stops training (checkpoint, exit 1); the job's Snakemake does not restart it inside the
    allocation, so the job ends FAILED and the main Snakemake resubmits it (resources.retries) with 2 x runtime; it
    resumes and finishes, and its log holds both runs."""
    require_cluster()
    workdir = copy_workflow(tmp_path / "wf", SIGNALLED)
    profile = tiny_profile(tmp_path / "profile")
    doc = yaml.safe_load((profile / "config.yaml").read_text())
    doc["set-resources"]["train_full"]["slurm_extra"] = "'--signal=TERM@30'"
    write_yaml(profile / "config.yaml", doc)
    poller = SqueuePoller(workdir)
    poller.start()
    start = time.perf_counter()
    try:
        result = snakemake(workdir, f"{FULL}/model.pt", "--workflow-profile", str(profile), "--configfile",
                           "tiny.yaml", timeout=900)
    finally:
        seconds = time.perf_counter() - start
        poller.stop.set()
        poller.join()
    poller.poll()
    slurm_logs = sorted((workdir / ".snakemake" / "slurm_logs").rglob("*.log"))  # kept for failed jobs
    log_path = workdir / FULL.replace("results/", "logs/", 1) / "train_full.log"
    log = log_path.read_text(errors="replace") if log_path.is_file() else "(no log)"
    assert result.returncode == 0, (
        f"snakemake --executor slurm failed (exit {result.returncode}):\n{tail(result.stdout)}\n"
        + "".join(f"--- {p}:\n{tail(p.read_text(errors='replace'), 30)}\n" for p in slurm_logs)
        + f"--- {log_path}:\n{tail(log, 30)}")
    calls = sbatch_calls(result.stdout)
    jobs = sorted(poller.jobs.values(), key=lambda job: int(job["JobID"]))
    print(f"signalled training through SLURM: {len(jobs)} sbatch jobs in {seconds:.1f} s")

    # the main Snakemake submitted one job per run, attempt n with n x 2 minutes; each job ended by itself
    # (FAILED after the signal, not TIMEOUT: nothing ran on to the limit) until the last one completed
    assert len(calls) >= 2, f"training finished before SLURM's TERM (raise SIGNALLED's epochs):\n{tail(log, 20)}"
    assert [re.search(r"\s-t (\d+)\s", call)[1] for call in calls] == [str(2 * n) for n in range(1, len(calls) + 1)]
    assert [job["TimeLimit"] for job in jobs] == [f"{2 * n}:00" for n in range(1, len(calls) + 1)], jobs
    assert [job["State"] for job in jobs] == ["FAILED"] * (len(jobs) - 1) + ["COMPLETED"], jobs
    assert result.stdout.count("Trying to restart job") == len(calls) - 1  # each resubmission counted once

    # nothing was restarted inside an allocation: one run per SLURM job, in the job's log and in SLURM's logs
    runs = re.findall(r"===== run (\d+) of this job: [^,\n]+, SLURM job (\d+)", log)
    assert runs == [(str(n), job["JobID"]) for n, job in enumerate(jobs, 1)], log
    assert [p for p in slurm_logs if "Trying to restart" in p.read_text(errors="replace")] == []

    # the log holds every run: the signal and checkpoint of the first, the resume and the last epoch of the last
    first, *_, last = re.split(r".*===== run \d+ of this job: .*\n", log)[1:]
    assert "training stopped by signal 15" in first and "saved checkpoints/" in first, first
    assert "resuming from checkpoints/" in last and "epoch 60/60" in last, last
    assert not log_path.with_name(log_path.name + ".unfinished").exists()  # finished: no record left beside it
    assert list((workdir / "checkpoints").glob("*.pt")) == []


def test_sacct_without_accounting_stops_the_run_before_any_job(tmp_path):
    """The test cluster has no accounting database: its sacct answers "Slurm accounting storage is disabled". With
    the plugin left to its default status command (sacct), Snakemake used to wait forever for the first job; now
    the run stops at once, before submitting anything, with one line naming the fix."""
    require_cluster()
    if shutil.which("sacct") is None:
        pytest.skip("no sacct here: the plugin uses squeue")
    probe = subprocess.run(["sacct", "-X", "--noheader", "--format=JobIdRaw", "--name", "pfs-none"],
                           capture_output=True, text=True, timeout=30)
    if probe.returncode == 0:
        pytest.skip("this cluster has job accounting (sacct works): there is nothing to refuse")
    workdir = copy_workflow(tmp_path / "wf")
    profile = tiny_profile(tmp_path / "profile", status_command=None)
    doc = yaml.safe_load((profile / "config.yaml").read_text())
    doc.pop("verbose")  # as a user runs it: the error without Snakemake's traceback
    write_yaml(profile / "config.yaml", doc)
    start = time.perf_counter()
    result = snakemake(workdir, "--workflow-profile", str(profile), "--configfile", "tiny.yaml", timeout=120)
    seconds = time.perf_counter() - start
    print(f"refused in {seconds:.1f} s")
    assert result.returncode != 0, tail(result.stdout)
    lines = [line for line in result.stdout.splitlines() if "--slurm-status-command squeue" in line]
    assert len(lines) == 1, tail(result.stdout)
    assert "sacct" in lines[0] and "accounting storage is disabled" in lines[0], lines[0]
    assert "slurm-status-command: squeue" in lines[0] and "profile" in lines[0], lines[0]
    assert seconds < 60, f"took {seconds:.0f} s"
    poller = SqueuePoller(workdir)
    poller.poll()
    assert poller.jobs == {}  # nothing was submitted
    assert not (workdir / "results").exists()
