"""pfs.core.progress: the ETA part of the per-epoch lines (a fake clock: no test depends on real time)."""

from __future__ import annotations

import pytest

from pfs.core.progress import Eta, duration


class FakeClock:
    """Starts at 1000 s and advances ``step`` seconds on every reading."""

    def __init__(self, step: float = 10.0) -> None:
        self.now, self.step = 1000.0, step

    def __call__(self) -> float:
        value = self.now
        self.now += self.step
        return value


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0.0 s"), (12.34, "12.3 s"), (59.9, "59.9 s"), (60, "1 min 00 s"), (245.4, "4 min 05 s"),
    (3599, "59 min 59 s"), (3600, "1 h 00 min"), (7380, "2 h 03 min"), (-1, "0.0 s"),
])
def test_duration_reads_as_seconds_minutes_or_hours(seconds, text):
    assert duration(seconds) == text


def test_eta_extrapolates_the_pace_to_the_units_left():
    eta = Eta(6, clock=FakeClock(12.3))  # read when made and at each update: 12.3 s for the first 3 epochs
    assert str(eta.update(3, images=22632)) == "12.3 s elapsed, ~12.3 s left, 1840 img/s"


def test_eta_of_the_spec_example():
    clock = FakeClock(0.0)
    eta = Eta(6, clock=clock)
    clock.now += 12.3
    assert str(eta.update(2, images=22632)) == "12.3 s elapsed, ~24.6 s left, 1840 img/s"


def test_a_resumed_job_counts_earlier_time_as_elapsed_but_takes_its_pace_from_this_session():
    clock = FakeClock(0.0)
    eta = Eta(10, done=4, elapsed=400.0, clock=clock)  # 4 epochs of 100 s before a restart on a faster machine
    clock.now += 10.0
    eta.update(5, images=500)
    assert (eta.elapsed, eta.left, eta.images_per_s) == (410.0, 50.0, 50.0)  # 5 epochs left at 10 s, not 82 s
    assert str(eta) == "6 min 50 s elapsed, ~50.0 s left, 50 img/s"


def test_a_resumed_part_epoch_counts_as_done():
    clock = FakeClock(0.0)
    eta = Eta(4, done=1.5, elapsed=30.0, clock=clock)  # restarted half-way through epoch 2
    clock.now += 5.0
    eta.update(2, images=10)
    assert eta.left == pytest.approx(20.0)  # half an epoch took 5 s: 2 epochs left take 20 s
    assert str(eta) == "35.0 s elapsed, ~20.0 s left, 2.0 img/s"


def test_before_any_work_the_time_left_is_unknown_and_no_rate_is_shown():
    eta = Eta(5, done=2, elapsed=7.0, clock=FakeClock(1.0))
    assert str(eta.update(2)) == "8.0 s elapsed, ~? left"
