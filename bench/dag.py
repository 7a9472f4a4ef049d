"""Benchmark: the workflow's DAG-building cost (Snakefile parse, config checks, DAG) against Snakemake's own fixed
cost, measured in one run.

    python bench/dag.py [--repeats 3] [--keep] [--dir PARENT]

Every measurement is the wall-clock time of a ``snakemake`` subprocess (the one next to ``sys.executable``), best of
``--repeats`` with the commands interleaved:
- ``baseline``: ``snakemake -n`` on a trivial one-rule Snakefile (interpreter start, Snakemake and plugin imports);
- ``paper_cifar10_dryrun``: ``snakemake -n paper_cifar10 --configfile configs/paper_cifar10.yaml`` on a copy of the
  workflow (without profiles/, so no workflow profile is picked up), dataset.root an empty stand-in folder;
- ``paper_imagenet_dryrun``: the same for ``paper_imagenet`` (prepare_imagenet_list has not run: the whole grid);
- ``noop_rerun``: ``snakemake -n`` on a second copy where the default grid (embedded digits, tiny budget) has
  finished; ``noop_rerun_cores2``: the real ``snakemake --cores 2`` there, which finds nothing to do. Finishing that
  grid (one real ``snakemake --cores 2``, about 1-2 min on 2 CPUs) is setup, reported but not timed.
Prints one JSON object: seconds, jobs in each DAG (the ``total`` of Snakemake's ``Job stats:`` table, 0 when there
is nothing to do), each time divided by ``baseline``'s, and whether importing pfs.workflow.config and pfs.core.grid
(what
rules/config.smk imports at parse time) pulls in torch.

Numbers are only meaningful when ``scontrol`` answers quickly or is absent: the installed SLURM executor plugin calls
it when Snakemake imports it (every run, ``baseline`` included), and it stalls ~9 s when no SLURM controller answers.
Start the local test cluster first if needed (``bash tests/slurm/start_cluster.sh``, idempotent). The JSON reports
``scontrol_s``, the time of ``scontrol show config`` (null when scontrol is not installed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

WORKFLOW_FILES = ("Snakefile", "config.yaml", "rules", "workflow_scripts", "schemas", "envs", "configs", "report")
TINY = {"gates": {"epochs": 1, "batch_size": 128}, "train": {"epochs": 1, "batch_size": 128},
        "prune": {"tolerance": 0.01}, "resources": {"threads": 1}}
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")  # the venv's, even when its bin/ is not on PATH
ENV = {k: v for k, v in os.environ.items() if k != "SNAKEMAKE_PROFILE"}  # no global profile either


def snakemake(args: list[str], cwd: Path) -> tuple[float, str]:
    """Runs ``snakemake *args`` in ``cwd``; returns (wall seconds, stdout + stderr). Raises when it fails."""
    start = time.perf_counter()
    proc = subprocess.run([SNAKEMAKE, *args], cwd=cwd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"snakemake {' '.join(args)} (in {cwd}) exited {proc.returncode}:\n{proc.stdout}")
    return seconds, proc.stdout


def job_count(output: str) -> int:
    """The ``total`` of the ``Job stats:`` table (rows ``rule count``); 0 when Snakemake has nothing to do."""
    lines = output.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Job stats:")
    except StopIteration:
        if "Nothing to be done" in output:
            return 0
        raise ValueError(f"no 'Job stats:' table and not 'Nothing to be done' in:\n{output}") from None
    for line in lines[start + 1:]:
        match = re.fullmatch(r"\s*total\s+(\d+)\s*", line)
        if match:
            return int(match.group(1))
    raise ValueError(f"no 'total' row after 'Job stats:' in:\n{output}")


def copy_workflow(dest: Path) -> Path:
    dest.mkdir(parents=True)
    for name in WORKFLOW_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest / name)
    return dest


def scontrol_seconds() -> float | None:
    exe = shutil.which("scontrol")
    if exe is None:
        return None
    start = time.perf_counter()
    subprocess.run([exe, "show", "config"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def imports_torch() -> bool:
    """Whether ``import pfs.workflow.config, pfs.core.grid`` (done by rules/config.smk while Snakemake parses the
    workflow)
    imports torch."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")])))
    code = "import sys, pfs.workflow.config, pfs.core.grid; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True,
                         text=True).stdout.split()
    return out[-1] == "True"


def best_times(commands: dict[str, tuple[list[str], Path]], repeats: int) -> tuple[dict[str, float], dict[str, int]]:
    best = dict.fromkeys(commands, float("inf"))
    jobs: dict[str, int] = {}
    for _ in range(repeats):  # interleaved, so drift in machine load hits every command alike
        for name, (args, cwd) in commands.items():
            seconds, output = snakemake(args, cwd)
            best[name] = min(best[name], seconds)
            found = job_count(output)
            assert jobs.setdefault(name, found) == found, f"{name}: {found} jobs, earlier {jobs[name]}"
    return best, jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the temp folder (its path is printed)")
    parser.add_argument("--dir", default=None, help="parent of the temp folder (default: the system temp folder)")
    args = parser.parse_args()

    scontrol_s = scontrol_seconds()
    tmp = Path(tempfile.mkdtemp(prefix="pfs_bench_dag_", dir=args.dir))
    try:
        trivial = tmp / "trivial"
        trivial.mkdir()
        (trivial / "Snakefile").write_text('rule all:\n    output: "x"\n    shell: "touch {output}"\n')
        (tmp / "cifar" / "cifar-10-batches-py").mkdir(parents=True)  # the config check wants it to exist, no more
        for split in ("train", "val"):
            (tmp / "imagenet" / split).mkdir(parents=True)
        dry, done = copy_workflow(tmp / "workflow_dry"), copy_workflow(tmp / "workflow_done")
        (done / "tiny.yaml").write_text(json.dumps(TINY))  # JSON is YAML
        tiny = ["--configfile", "tiny.yaml"]

        # setup: finish the default grid with a tiny budget, so that the reruns below find nothing to do
        setup_s, output = snakemake(["--cores", "2", *tiny], done)
        setup_jobs = job_count(output)

        # targets before --configfile / --config: both take several values. --config parses nested values with
        # YAML's BaseLoader (all strings: "download: false" would fail the schema); the paper configs already
        # have download: false, and the root is deep-merged into their dataset section
        commands = {
            "baseline": (["-n"], trivial),
            "paper_cifar10_dryrun": (["-n", "paper_cifar10", "--configfile", "configs/paper_cifar10.yaml",
                                      "--config", f"dataset={{root: {tmp / 'cifar'}}}"], dry),
            "paper_imagenet_dryrun": (["-n", "paper_imagenet", "--configfile", "configs/paper_imagenet.yaml",
                                       "--config", f"dataset={{root: {tmp / 'imagenet'}}}"], dry),
            "noop_rerun": (["-n", *tiny], done),
            "noop_rerun_cores2": (["--cores", "2", *tiny], done),
        }
        best, jobs = best_times(commands, args.repeats)
        assert jobs["noop_rerun"] == jobs["noop_rerun_cores2"] == 0, f"the finished grid reran jobs: {jobs}"
        version = subprocess.run([SNAKEMAKE, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    finally:
        if not args.keep:
            shutil.rmtree(tmp)
    result = {
        "repeats": args.repeats,
        "seconds": {k: round(v, 3) for k, v in best.items()},
        "jobs": jobs,
        "ratio_vs_baseline": {k: round(v / best["baseline"], 2) for k, v in best.items() if k != "baseline"},
        "setup_run_s": round(setup_s, 1), "setup_jobs": setup_jobs,
        "import_torch_at_parse": imports_torch(),
        "scontrol_s": None if scontrol_s is None else round(scontrol_s, 3),
        "snakemake": version, "python": platform.python_version(), "cpus": os.cpu_count(),
    }
    if args.keep:
        result["dir"] = str(tmp)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
