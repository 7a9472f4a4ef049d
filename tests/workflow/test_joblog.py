"""pfs.workflow.joblog: a job's log keeps the lines of its earlier runs that did not finish, although Snakemake deletes
the
log before each run; a finished run leaves the log alone and no record behind."""

from __future__ import annotations

import os

import pytest

from pfs.workflow import joblog


def run(log, lines, finished, delete_first=True):
    """One run of a job as Snakemake runs it: the log deleted first, then the script appends to it."""
    if delete_first:
        log.unlink(missing_ok=True)
    number = joblog.start_run(log)
    with open(log, "a") as fh:
        fh.write(joblog.separator(number) + "\n")
        fh.writelines(f"{line}\n" for line in lines)
    joblog.end_run(log, finished)
    return number


def test_a_failed_run_is_kept_and_the_next_run_appends_after_a_separator(tmp_path, monkeypatch):
    log = tmp_path / "logs" / "train_full.log"
    monkeypatch.setenv("SLURM_JOB_ID", "43")
    assert run(log, ["epoch 1", "stopped by signal 15"], finished=False) == 1
    assert joblog.record_path(log).exists()
    monkeypatch.setenv("SLURM_JOB_ID", "44")
    assert run(log, ["resuming", "epoch 2"], finished=True) == 2
    lines = log.read_text().splitlines()
    assert lines[0].startswith("===== run 1 of this job: ") and "SLURM job 43" in lines[0]
    assert lines[1:3] == ["epoch 1", "stopped by signal 15"]
    assert lines[3].startswith("===== run 2 of this job: ") and "SLURM job 44" in lines[3]
    assert "earlier runs, which did not finish" in lines[3]
    assert lines[4:] == ["resuming", "epoch 2"]
    assert not joblog.record_path(log).exists()  # finished: nothing left beside the log


def test_a_run_killed_outright_keeps_its_lines(tmp_path):
    """SIGKILL: no end_run at all, yet every line written reached the record (the same file)."""
    log = tmp_path / "job.log"
    assert joblog.start_run(log) == 1
    with open(log, "a") as fh:
        fh.write(f"{joblog.separator(1)}\nepoch 1 of a run that was killed\n")
    log.unlink()  # Snakemake, before the next run
    assert run(log, ["epoch 2"], finished=True, delete_first=False) == 2
    assert log.read_text().splitlines()[1:3] == ["epoch 1 of a run that was killed", joblog.separator(2)]


def test_a_finished_job_run_again_starts_a_fresh_log(tmp_path):
    log = tmp_path / "job.log"
    run(log, ["first"], finished=True)
    assert run(log, ["second"], finished=True) == 1
    assert "first" not in log.read_text()


def test_a_log_that_was_not_deleted_goes_on(tmp_path):
    """A script run by hand (no Snakemake to delete the log) appends, and numbers its runs on."""
    log = tmp_path / "job.log"
    run(log, ["first"], finished=False, delete_first=False)
    assert run(log, ["second"], finished=False, delete_first=False) == 2
    assert os.path.samefile(log, joblog.record_path(log))
    assert log.read_text().count("===== run ") == 2


def test_without_hard_links_a_failed_run_is_copied(tmp_path, monkeypatch):
    def no_link(*_):
        raise OSError("hard links not supported")

    monkeypatch.setattr(joblog.os, "link", no_link)
    log = tmp_path / "job.log"
    run(log, ["stopped"], finished=False)
    assert joblog.record_path(log).read_text() == log.read_text()
    assert run(log, ["resumed"], finished=True) == 2
    assert log.read_text().splitlines()[1:3] == ["stopped", joblog.separator(2)]
    assert not joblog.record_path(log).exists()


@pytest.mark.parametrize("slurm", [None, "123"])
def test_the_separator_names_the_run_host_and_slurm_job(monkeypatch, slurm):
    if slurm:
        monkeypatch.setenv("SLURM_JOB_ID", slurm)
    else:
        monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    line = joblog.separator(1)
    assert line.startswith("===== run 1 of this job: ") and ("SLURM job 123" in line) == bool(slurm)
    assert "did not finish" not in line
