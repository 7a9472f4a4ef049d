"""The run's terminal (pfs.workflow.terminal, ``--logger pfs``): one short line per finished job with progress and
time left, params changes by name, a failed job's log tail, no overlong line; and the plugin as Snakemake loads it."""

from __future__ import annotations

import io
import logging
import subprocess
import textwrap

import pytest
from rich.console import Console
from rich.live import Live
from rich.progress import Progress
from smk_run import SNAKEMAKE
from snakemake.persistence import ParamsChange
from snakemake_interface_logger_plugins.common import LogEvent

from pfs.workflow import terminal


def _reason(before: dict, now: dict) -> str:
    """A job's reason as Snakemake 9 words it (jobs.py: Reason.__str__ with a ParamsChange)."""
    change = ParamsChange(only_old={repr(before)}, only_new={repr(now)})
    return f"Missing output files: a.txt; Params have changed since last execution: {change}"


def test_a_params_change_is_named_by_key_not_dumped():
    before = {"epochs": 1, "lr": 0.1, "aug": {"flip": True, "crop": 4}, "names": list(range(300))}
    now = {**before, "epochs": 7, "aug": {"flip": False, "crop": 4}}
    reason = _reason(before, now)
    assert len(reason) > 1000
    short = terminal.shorten_reason(reason)
    assert short == "Missing output files: a.txt; params changed: epochs 1 -> 7, aug.flip True -> False"


def test_a_params_change_that_does_not_parse_points_to_snakemake_and_stays_short():
    reason = "Params have changed since last execution: Union ... before: <object at 0x1> now: {'a': 1}"
    assert terminal.shorten_reason(reason) == "params changed: see snakemake --list-params-changes"


def test_shorten_cuts_each_line_and_says_how_much():
    text = terminal.shorten("x" * 1000 + "\nshort", 100)
    first, second = text.splitlines()
    assert len(first) <= 100 and first.endswith("(930 chars cut)") and second == "short"


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_time_left_is_the_jobs_left_at_their_rules_mean_time_over_the_parallelism_seen():
    clock = FakeClock()
    jobs = terminal.JobClock(clock)
    jobs.plan({"learn_gates": 1, "train": 3, "summarize": 1})
    assert jobs.seconds_left() is None and jobs.total == 5
    jobs.start(1, "learn_gates")
    jobs.start(2, "train")
    clock.now = 10.0
    assert jobs.finish(1) == 10.0
    # left: 3 train (at the all-job mean, 10 s: no train finished yet) + 1 summarize = 40 s of work, 10 s of it
    # already run by job 2; parallelism so far: 10 job-s / 10 s = 1
    assert jobs.seconds_left() == pytest.approx(30.0)
    clock.now = 30.0
    assert jobs.finish(2) == 30.0
    # left: 2 train at 30 s + 1 summarize at the all-job mean 20 s = 80 s; parallelism 40 job-s / 30 s
    assert jobs.seconds_left() == pytest.approx(80.0 / (40.0 / 30.0))
    assert jobs.status() == "0 running, 3 left, ~1 min 00 s to go"
    assert (jobs.done, jobs.total) == (2, 5)


def test_a_job_no_plan_announced_grows_the_total():
    jobs = terminal.JobClock(FakeClock())
    jobs.plan({"a": 1})
    jobs.start(1, "a")
    jobs.start(2, "b")
    assert jobs.total == 2


def _handler(verbose: bool = False) -> tuple[terminal.PfsEventHandler, io.StringIO]:
    out = io.StringIO()
    console = Console(file=out, width=200, force_terminal=False, color_system=None)
    progress = Progress(console=console, disable=True)
    live = Live(console=console, transient=True)
    return terminal.PfsEventHandler(console=console, progress=progress, live_display=live, verbose=verbose), out


def _record(event: LogEvent, **fields) -> logging.LogRecord:
    record = logging.LogRecord("snakemake", logging.INFO, __file__, 1, "", (), None)
    record.event = event
    record.__dict__.update(fields)
    return record


def test_each_finished_job_is_one_line_with_its_path_time_and_the_runs_progress(tmp_path):
    handler, out = _handler()
    handler.clock = terminal.JobClock(FakeClock())
    handler.handle(_record(LogEvent.RUN_INFO, stats={"train_pruned": 2, "total": 2}))
    wildcards = {"dataset": "digits", "arch": "resnet20", "expansion": "20", "ratio": "0.5", "seed": "0"}
    for jobid in (1, 2):
        handler.handle(_record(LogEvent.JOB_INFO, jobid=jobid, rule_name="train_pruned", wildcards=wildcards))
    handler.clock.clock.now = 12.5
    handler.handle(_record(LogEvent.JOB_FINISHED, job_id=1))
    line = out.getvalue().splitlines()[-1]
    assert line == "✓ 1/2 train_pruned digits/resnet20/e20/p0.5/seed0 12.5 s | 1 running, 0 left, ~0.0 s to go"
    tasks = {name: handler.progress.tasks[task_id] for name, task_id in handler.progress_display.rule_tasks.items()}
    assert tasks[terminal.TOTAL].description == "all jobs: 1 running, 0 left, ~0.0 s to go"  # the live panel
    assert tasks["train_pruned"].fields["active"] == 1  # two started, one finished
    handler.handle(_record(LogEvent.JOB_INFO, jobid=3, rule_name="export", wildcards={}))  # a rule not announced
    tasks = {name: handler.progress.tasks[task_id] for name, task_id in handler.progress_display.rule_tasks.items()}
    assert (tasks["export"].fields["active"], tasks[terminal.TOTAL].fields["active"]) == (1, 2)


def test_a_failed_job_gives_one_line_and_its_logs_tail(tmp_path):
    log = tmp_path / "job.log"
    log.write_text("".join(f"line {i}\n" for i in range(40)) + "ERROR pfs.stage: gates.pt is corrupt; delete it\n")
    handler, out = _handler()
    handler.handle(_record(LogEvent.JOB_INFO, jobid=3, rule_name="prune", wildcards={}, log=[str(log)]))
    handler.handle(_record(LogEvent.JOB_ERROR, jobid=3))
    lines = out.getvalue().splitlines()
    assert lines[0] == "✗ prune failed"
    assert lines[1] == f"  last {terminal.TAIL_LINES} of 41 lines of {log}:"
    assert lines[-1] == "  | ERROR pfs.stage: gates.pt is corrupt; delete it"
    assert len(lines) == 2 + terminal.TAIL_LINES


def test_snakemakes_long_messages_are_cut_on_the_terminal_but_errors_are_kept_whole():
    handler, out = _handler()
    handler.handle(logging.LogRecord("snakemake", logging.INFO, __file__, 1, "y" * 5000, (), None))
    handler.handle(logging.LogRecord("snakemake", logging.ERROR, __file__, 1, "e" * 400, (), None))
    lines = out.getvalue().splitlines()
    assert len(lines[0]) <= terminal.MAX_LINE and lines[0].endswith("chars cut)")
    assert lines[1] == "e" * 400
    verbose, out = _handler(verbose=True)  # --verbose asks for everything: the plugin's sbatch calls, say
    verbose.handle(logging.LogRecord("snakemake", logging.DEBUG, __file__, 1, "sbatch call: " + "z" * 600, (), None))
    assert out.getvalue().splitlines() == ["sbatch call: " + "z" * 600]


SNAKEFILE = textwrap.dedent("""
    rule all:
        input: "a.txt", "b.txt"
    rule make:
        output: "{name}.txt"
        log: "logs/{name}.log"
        shell: "echo made {wildcards.name} > {log}; test {wildcards.name} = a; touch {output}"
""")


def test_snakemake_loads_the_plugin_and_prints_a_line_per_job_and_the_failed_ones_log(tmp_path):
    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    run = subprocess.run([str(SNAKEMAKE), "--cores", "1", "--logger", "pfs", "--keep-going"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    lines = run.stderr.splitlines()
    assert any(line.startswith("✓ 1/3 make a ") and "| 0 running, 2 left" in line for line in lines), run.stderr
    failed = lines.index("✗ make b failed")
    assert lines[failed + 1:failed + 3] == ["  last 1 of 1 lines of logs/b.log:", "  | made b"]
    assert not any("CalledProcessError" in line for line in lines)
