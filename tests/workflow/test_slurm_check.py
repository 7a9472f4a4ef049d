"""pfs.workflow.slurm_check without SLURM: fake `sacct`, `scontrol` and `sinfo` commands on PATH play the cluster.

The real case (the test cluster has no accounting database) is in tests/workflow/test_slurm.py."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from pfs.workflow.slurm_check import (
    FIX,
    SlurmStatusError,
    check_workflow,
    effective_status_command,
    status_command_problem,
)

NO_ACCOUNTING = "echo 'Slurm accounting storage is disabled' >&2; exit 1"


@pytest.fixture
def fake_bin(tmp_path, monkeypatch):
    """A folder of fake commands as the whole PATH (no real SLURM command of this machine can leak in); ``calls``
    lists every call as "<command> <args>"."""
    folder = tmp_path / "bin"
    folder.mkdir()
    calls = tmp_path / "calls"
    calls.touch()
    monkeypatch.setenv("PATH", str(folder))

    def add(name: str, body: str) -> None:
        script = folder / name
        script.write_text(f'#!/bin/sh\necho "{name} $*" >> {calls}\n{body}\n')
        script.chmod(0o755)

    add.calls = lambda: calls.read_text().splitlines()
    return add


def slurm_workflow(status_command=None, init_seconds=40, name="slurm"):
    return SimpleNamespace(executor_plugin=SimpleNamespace(name=name),
                           executor_settings=SimpleNamespace(status_command=status_command,
                                                             init_seconds_before_status_checks=init_seconds))


def test_sacct_without_accounting_stops_the_run_with_one_line(fake_bin):
    fake_bin("sacct", NO_ACCOUNTING)
    with pytest.raises(SlurmStatusError) as exc:
        check_workflow(slurm_workflow("sacct"))
    message = str(exc.value)
    assert "\n" not in message
    assert "Slurm accounting storage is disabled" in message and message.endswith(FIX)
    assert "--slurm-status-command squeue" in message and "slurm-status-command: squeue" in message


def test_the_plugin_default_is_checked_too(fake_bin):
    """No --slurm-status-command: the plugin picks sacct wherever it is installed."""
    fake_bin("sacct", NO_ACCOUNTING)
    with pytest.raises(SlurmStatusError, match="Slurm accounting storage is disabled"):
        check_workflow(slurm_workflow(None))


def test_a_working_sacct_passes(fake_bin):
    fake_bin("sacct", "exit 0")
    check_workflow(slurm_workflow("sacct"))
    assert [call.split()[0] for call in fake_bin.calls()] == ["sacct"]
    assert "--name pfs-status-check" in fake_bin.calls()[0]  # the plugin's query, for a name no job has


def test_a_hanging_sacct_stops_the_run_after_the_timeout(fake_bin):
    fake_bin("sacct", "exec /bin/sleep 30")
    with pytest.raises(SlurmStatusError, match=r"`sacct` did not answer within 0.5 s.*--slurm-status-command squeue"):
        check_workflow(slurm_workflow("sacct"), timeout=0.5)


def test_squeue_with_a_long_min_job_age_does_not_run_sacct(fake_bin):
    fake_bin("sacct", NO_ACCOUNTING)
    fake_bin("scontrol", "echo 'MinJobAge               = 300 sec'")
    check_workflow(slurm_workflow("squeue"))
    assert [call.split()[0] for call in fake_bin.calls()] == ["scontrol"]


def test_squeue_with_a_short_min_job_age_falls_back_to_sacct_and_says_so(fake_bin):
    """The plugin goes back to sacct when MinJobAge < 3 x init seconds: the fix is a shorter initial wait."""
    fake_bin("sacct", NO_ACCOUNTING)
    fake_bin("scontrol", "echo 'MinJobAge               = 60 sec'")
    with pytest.raises(SlurmStatusError) as exc:
        check_workflow(slurm_workflow("squeue", init_seconds=40))
    message = str(exc.value)
    assert "MinJobAge (60 s) is under 3 x --slurm-init-seconds-before-status-checks (40 s)" in message
    assert "pass --slurm-init-seconds-before-status-checks 20" in message
    fake_bin("scontrol", "echo 'MinJobAge               = 60 sec'")
    check_workflow(slurm_workflow("squeue", init_seconds=20))  # 60 >= 3 x 20: squeue it is


def test_squeue_without_sacct_installed_needs_no_check(fake_bin):
    check_workflow(slurm_workflow("squeue"))
    check_workflow(slurm_workflow(None))  # the plugin picks squeue when sacct is missing
    assert fake_bin.calls() == []


@pytest.mark.parametrize("workflow", [SimpleNamespace(executor_plugin=None),  # local run, dry run, onstart unused
                                      slurm_workflow("sacct", name="local"),
                                      slurm_workflow("sacct", name="slurm-jobstep")])
def test_other_executors_are_not_checked(fake_bin, workflow):
    fake_bin("sacct", NO_ACCOUNTING)
    check_workflow(workflow)
    assert fake_bin.calls() == []


@pytest.mark.parametrize(("command", "age", "sacct", "expected"), [
    ("sacct", None, True, "sacct"), ("sacct", None, False, "squeue"), (None, None, True, "sacct"),
    (None, None, False, "squeue"), ("squeue", 300, True, "squeue"), ("squeue", 119, True, "sacct"),
    ("squeue", None, True, "sacct"), ("squeue", 10, False, "squeue"),
])
def test_effective_status_command_mirrors_the_plugin(command, age, sacct, expected):
    assert effective_status_command(command, 40, age, sacct) == expected


def test_no_problem_means_none(fake_bin):
    fake_bin("sacct", "exit 0")
    assert status_command_problem("sacct", None) is None
