"""What a run prints on the terminal: Snakemake's rich logger (snakemake-logger-plugin-rich) with one short line per
finished job, the run's progress and time left, params changes by name and a failed job's log tail.

The rich plugin shows a live panel of the jobs done per rule on a terminal, and nothing per job unless --verbose.
The handler here (``--logger pfs``, set in profiles/default and profiles/slurm, through the thin plugin module
``snakemake_logger_plugin_pfs``) adds, on any stream (terminal, CI log, SLURM output):

- for every finished job one line: ``✓ 3/19 train_pruned arch=resnet20 ... 12.3 s | 1 running, 15 left, ~2 min``;
- the time left: the jobs left, each at the mean time of its rule's finished jobs (of all finished jobs where its
  rule has none yet), divided by the parallelism seen so far (job seconds per wall second);
- a failed job: one line with its log's path and the log's last lines (the log keeps everything);
- a job's reason with the params that changed named (``params changed: epochs 1 -> 7``), never their dicts;
- no line of Snakemake's over ``MAX_LINE`` characters (errors and --verbose excepted): the rest is in its own log
  (.snakemake/log/), which keeps all.

Torch-free; imported by Snakemake's logger registry only.
"""

from __future__ import annotations

import ast
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path

from snakemake_logger_plugin_rich import events
from snakemake_logger_plugin_rich.event_handler import EventHandler

from pfs.core.progress import duration

MAX_LINE = 300  # characters of one message on the terminal (Snakemake's log file keeps the whole message)
TAIL_LINES = 12  # lines of a failed job's log shown on the terminal
TOTAL = "Total Progress"  # the rich plugin's name of the panel's bar over all jobs
_FAILED_SCRIPT = re.compile(r"RuleException:\s*CalledProcessError in file .*returned non-zero exit status", re.S)
_PARAMS = re.compile(r"Params have changed since last execution: .*?before: (.*) now: (.*?)\s*$", re.S)


def _flat(value, prefix: str = "") -> dict[str, object]:
    if isinstance(value, dict):
        out: dict[str, object] = {}
        for key, item in value.items():
            out.update(_flat(item, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): value}


def _params(text: str) -> list | None:
    try:
        return ast.literal_eval(f"[{text}]")
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None


def changed_params(before: list, now: list) -> list[str]:
    """``key old -> new`` for every key whose value differs between the params before and now (each a list of the
    job's params that changed: dicts are compared key by key, with dotted names for nested keys)."""
    old, new = {}, {}
    for i, value in enumerate(before):
        old.update(_flat(value, "" if isinstance(value, dict) else f"param{i}"))
    for i, value in enumerate(now):
        new.update(_flat(value, "" if isinstance(value, dict) else f"param{i}"))
    keys = [k for k in new if old.get(k, "<unset>") != new[k]] + [k for k in old if k not in new]
    return [f"{k or 'value'} {shorten(repr(old.get(k, '<unset>')), 40)} -> {shorten(repr(new.get(k, '<unset>')), 40)}"
            for k in keys]


def shorten_reason(reason: str) -> str:
    """A job's reason with a params change given as the keys that changed instead of Snakemake's two dumps."""
    parts = []
    for part in reason.split("; "):
        match = _PARAMS.match(part)
        if match:
            before, now = _params(match.group(1)), _params(match.group(2))
            names = changed_params(before, now) if before is not None and now is not None else []
            part = "params changed: " + (", ".join(names) if names else "see snakemake --list-params-changes")
        parts.append(part)
    return shorten("; ".join(parts))


def shorten(text: str, limit: int = MAX_LINE) -> str:
    """``text`` on at most ``limit`` characters per line (the rest marked as cut)."""
    lines = [line if len(line) <= limit else line[: limit - 30] + f" ... ({len(line) - limit + 30} chars cut)"
             for line in str(text).splitlines() or [""]]
    return "\n".join(lines)


_SHORT = {"expansion": "e", "multiplier": "m", "sparsity": "s", "ratio": "p", "seed": "seed"}  # as results/ paths


def wildcard_text(wildcards: dict | None) -> str:
    """A job's wildcards in the results path grammar: ``digits/resnet20/e20/m1/s0.5/seed0/p0.5/scratch_b``."""
    return "/".join(f"{_SHORT.get(k, '')}{v}" for k, v in (wildcards or {}).items())


def log_tail(paths: list[str], lines: int = TAIL_LINES) -> list[str]:
    """The last ``lines`` lines of each readable log (each line shortened), after a line naming it."""
    out = []
    for path in paths:
        try:
            text = Path(path).read_text(errors="replace").splitlines()
        except OSError:
            out.append(f"  (no log at {path})")
            continue
        out.append(f"  last {min(lines, len(text))} of {len(text)} lines of {path}:")
        out.extend("  | " + shorten(line, MAX_LINE - 4) for line in text[-lines:])
    return out


class JobClock:
    """The run's jobs done, running and left, and the time left (see the module docstring)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.begun = clock()
        self.left: dict[str, int] = {}  # rule -> jobs not finished (running included)
        self.running: dict[int, tuple[str, float]] = {}  # jobid -> (rule, start)
        self.times: dict[str, list[float]] = {}  # rule -> seconds of its finished jobs
        self.done = 0

    def plan(self, per_rule: dict[str, int]) -> None:
        self.left = {rule: count for rule, count in per_rule.items() if count > 0}

    def start(self, jobid: int, rule: str) -> None:
        self.running[jobid] = (rule, self.clock())
        if self.left.get(rule, 0) <= sum(r == rule for r, _ in self.running.values()) - 1:
            self.left[rule] = self.left.get(rule, 0) + 1  # a job the plan did not announce (checkpoints)

    def finish(self, jobid: int) -> float | None:
        """Count ``jobid`` as finished; its seconds (None for a job that was never started here)."""
        rule, start = self.running.pop(jobid, (None, None))
        if rule is None:
            return None
        seconds = self.clock() - start
        self.times.setdefault(rule, []).append(seconds)
        self.left[rule] = max(self.left.get(rule, 1) - 1, 0)
        self.done += 1
        return seconds

    @property
    def total(self) -> int:
        return self.done + sum(self.left.values())

    def seconds_left(self) -> float | None:
        """Seconds until the last job ends, estimated; None before the first job finished."""
        finished = [s for times in self.times.values() for s in times]
        if not finished:
            return None
        mean_all = sum(finished) / len(finished)
        work = 0.0
        for rule, count in self.left.items():
            times = self.times.get(rule)
            work += count * (sum(times) / len(times) if times else mean_all)
        now = self.clock()
        work -= sum(min(now - start, work) for _, start in self.running.values()) if work else 0.0
        parallel = sum(finished) / max(now - self.begun, 1e-9)
        return max(work, 0.0) / max(parallel, 1.0)

    def status(self) -> str:
        left = sum(self.left.values()) - len(self.running)
        eta = self.seconds_left()
        text = f"{len(self.running)} running, {left} left"
        return text + (f", ~{duration(eta)} to go" if eta is not None and self.total > self.done else "")


class PfsEventHandler(EventHandler):
    """The rich plugin's events, plus the lines described in the module docstring."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.clock = JobClock()

    def handle_run_info(self, event_data: events.RunInfo, **kwargs) -> None:
        super().handle_run_info(event_data, **kwargs)
        if not self.dryrun and not self.clock.left:
            self.clock.plan(event_data.per_rule_job_counts)
        self._panel_status()

    def _panel_status(self) -> None:
        """The live panel: each bar's running jobs as the clock counts them (the plugin creates a bar with one
        running and then counts the job that made it again), the total bar named with the jobs running and left
        and the time left."""
        running = [rule for rule, _ in self.clock.running.values()]
        for rule, task_id in self.progress_display.rule_tasks.items():
            if isinstance(self.progress.tasks[task_id].fields.get("active"), int):  # else: finished, styled
                self.progress.update(task_id, active=len(running) if rule == TOTAL else running.count(rule))
        task_id = self.progress_display.rule_tasks.get(TOTAL)
        if task_id is not None and self.clock.done < self.clock.total:
            self.progress.update(task_id, description=f"all jobs: {self.clock.status()}")

    def handle_job_info(self, event_data: events.JobInfo, **kwargs) -> None:
        if event_data.reason:
            event_data.reason = shorten_reason(event_data.reason)
        super().handle_job_info(event_data, **kwargs)
        if not self.dryrun:
            self.clock.start(event_data.jobid, event_data.rule_name)
            self._panel_status()

    def handle_job_finished(self, event_data: events.JobFinished, **kwargs) -> None:
        super().handle_job_finished(event_data, **kwargs)
        info = self.jobs_info.get(event_data.job_id, {})
        seconds = self.clock.finish(event_data.job_id)
        if seconds is None:
            return
        self._panel_status()
        done = f"{self.clock.done}/{self.clock.total}"
        job = " ".join(filter(None, [info.get("rule", "?"), wildcard_text(info.get("wildcards"))]))
        self.console.print(shorten(f"✓ {done} {job} {duration(seconds)} | {self.clock.status()}"),
                           highlight=False, markup=False, soft_wrap=True)

    def handle_job_error(self, event_data: events.JobError, **kwargs) -> None:
        info = self.jobs_info.get(event_data.jobid)
        self.clock.running.pop(event_data.jobid, None)
        self._panel_status()
        if info is None:
            self.console.print(f"✗ job {event_data.jobid} failed", highlight=False, markup=False)
            return
        self.progress_display.mark_rule_failed(info["rule"])
        job = " ".join(filter(None, [info["rule"], wildcard_text(info.get("wildcards"))]))
        lines = [f"✗ {job} failed", *log_tail(list(info.get("log") or []))]
        self.console.print("\n".join(lines), style="red", highlight=False, markup=False, soft_wrap=True)

    def handle_error(self, event_data: events.Error, **kwargs) -> None:
        if event_data.message and _FAILED_SCRIPT.match(event_data.message):
            return  # a job's command exited non-zero: its ✗ line and log tail say which job and why
        if event_data.message:
            event_data.message = shorten(event_data.message, 2 * MAX_LINE)
        super().handle_error(event_data, **kwargs)

    def handle_generic_record(self, record, **kwargs) -> None:
        message = record.getMessage()
        if _FAILED_SCRIPT.match(message):
            return  # a job's script exited non-zero: its ✗ line and log tail say which job and why
        long = max(map(len, message.splitlines() or [""])) > MAX_LINE
        if long and not self.verbose and record.levelno < logging.ERROR:  # --verbose and errors: whole
            record.msg, record.args = shorten(message), ()
        super().handle_generic_record(record, **kwargs)
