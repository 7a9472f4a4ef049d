"""End to end on a real SLURM cluster: the tiny grid through ``--executor slurm`` with profiles/slurm.

Needs a cluster that answers ``sinfo`` and takes jobs from this user: ``bash tests/slurm/start_cluster.sh``
(root) installs slurm-wlm and munge and starts a one-node cluster with two fake GPUs (.ci/run does it). The test is
skipped only where ``sbatch`` is absent; with sbatch but no working cluster it fails and says why.

The GPU rules (learn_gates, train_pruned, train_full) must be submitted with ``--gpus`` and the CPU rules (prune,
summarize) without any GPU request. Two independent records are checked: the sbatch command lines the plugin logs
(``--verbose``: ``sbatch call: ...``) and what SLURM recorded for each job (``squeue --states=all``: the job's
comment ``rule_<rule>...`` written by the plugin and its ``tres-per-job``/``tres-per-node``, e.g. ``gres:gpu:1``).
squeue lists a finished job for MinJobAge seconds only, so a thread polls it during the run.
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
from smk_run import ALL_JOBS, EXP, PRUNED, REPO, RUN_DIRS, copy_workflow, snakemake, tail, write_yaml

pytestmark = pytest.mark.slow

PROFILE = REPO / "profiles" / "slurm" / "config.yaml"
GPU_RULES = {"learn_gates", "train_pruned", "train_full"}
CPU_RULES = {"prune", "summarize", "plot_results"}
SUBMITTED = {rule: n for rule, n in ALL_JOBS.items() if rule != "all"}  # `all` has no job to submit
START = "bash tests/slurm/start_cluster.sh"
CLUSTER_LOGS = "/tmp/pfs-slurm/log"
SQUEUE_FIELDS = ("JobID", "Comment", "tres-per-job", "tres-per-node", "State", "WorkDir")
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


def tiny_profile(folder: Path) -> Path:
    """profiles/slurm with the job sizes shrunk to fit a small node, status by squeue (a cluster without
    slurmdbd has no working sacct), frequent status checks and the sbatch calls in the log (--verbose)."""
    profile = yaml.safe_load(PROFILE.read_text())
    for resources in [profile["default-resources"], *profile["set-resources"].values()]:
        resources.update({key: TINY_SIZES[key] for key in resources if key in TINY_SIZES})
    profile.update({
        "slurm-status-command": "squeue",
        "slurm-init-seconds-before-status-checks": 2,
        "verbose": True,
    })
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
    if shutil.which("sbatch") is None:
        pytest.skip(f"no SLURM here (sbatch not found); `{START}` (as root) installs and starts a one-node cluster")
    problem = cluster_problem()
    if problem:
        pytest.fail(f"sbatch is here but the cluster cannot take jobs: {problem}. Start it: `{START}` "
                    f"(its logs: {CLUSTER_LOGS})")

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
    finished = Counter(re.findall(r"Finished jobid: \d+ \(Rule: (\w+)\)", result.stdout))
    assert finished == ALL_JOBS, tail(result.stdout)
    expected = [f"{EXP}/gates.pt", f"{EXP}/gates_metrics.csv", f"{PRUNED}/channels.yaml", "results/summary.csv"]
    expected += [f"{run_dir}/{name}" for run_dir in RUN_DIRS.values()
                 for name in ("model.pt", "metrics.json", "history.csv")]
    assert [p for p in expected if not (workdir / p).is_file() or (workdir / p).stat().st_size == 0] == []
    with open(workdir / "results/summary.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted((r["method"], r["schedule"]) for r in rows) == [
        ("full", "scratch_e"), ("pfs", "scratch_b"), ("pfs", "scratch_e")]

    # what Snakemake submitted: one sbatch call per job, --gpus exactly for the GPU rules
    calls = [line.split("sbatch call: ", 1)[1].split(" --wrap=", 1)[0]
             for line in result.stdout.splitlines() if "sbatch call: " in line]
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
