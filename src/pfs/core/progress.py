"""Logging set-up for stage jobs, progress bars that write into the job's log, and the ETA of per-epoch lines."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TextIO

from tqdm import tqdm

_FORMAT = "[%(asctime)s] %(levelname)s %(name)s: %(message)s"


def setup_logging(log_path: str | Path | None = None, level: int = logging.INFO) -> TextIO:
    """Log to stderr and, if given, to ``log_path``; returns the stream progress bars should write to. With a log
    file, stderr (the terminal of a run, beside one line per finished job) gets warnings and errors only: the log
    keeps every line."""
    terminal = logging.StreamHandler(sys.stderr)
    handlers: list[logging.Handler] = [terminal]
    stream: TextIO = sys.stderr
    if log_path:
        terminal.setLevel(max(level, logging.WARNING))
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        stream = open(log_path, "a", buffering=1)  # noqa: SIM115 - lives as long as the job
        handlers.append(logging.StreamHandler(stream))
    logging.basicConfig(level=level, format=_FORMAT, handlers=handlers, force=True)
    return stream


def progress(iterable: Iterable, desc: str, total: int | None = None, stream: TextIO | None = None) -> tqdm:
    """A per-epoch progress bar (ASCII, at most one refresh every 2 s, so log files stay readable)."""
    return tqdm(iterable, desc=desc, total=total, file=stream or sys.stderr, ascii=True, mininterval=2.0,
                leave=True, dynamic_ncols=False, ncols=100)


def duration(seconds: float) -> str:
    """A duration as a person reads it: ``12.3 s``, ``4 min 05 s``, ``2 h 03 min``."""
    if seconds < 59.95:
        return f"{max(seconds, 0.0):.1f} s"
    if seconds < 3599.5:
        minutes, secs = divmod(round(seconds), 60)
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes:02d} min"


_clock: Callable[[], float] = time.perf_counter  # Eta's default clock (tests replace it)


class Eta:
    """The timing part of a job's per-epoch (or per-evaluation) log line: ``12.3 s elapsed, ~24.6 s left, 1840 img/s``.

    The job is ``total`` units of work (epochs, steps). A resumed job starts at ``done`` units with ``elapsed``
    seconds already spent: the line's elapsed time includes them, but the time left is extrapolated from this
    session's pace alone (seconds per unit since the Eta was made), so the epochs trained before a restart neither
    shorten nor stretch the estimate. img/s: training images per wall-clock second of this session (evaluation
    included), over every process of the job when ``update`` is given their sum.
    """

    def __init__(self, total: float, done: float = 0.0, elapsed: float = 0.0,
                 clock: Callable[[], float] | None = None) -> None:
        self.total, self.done = total, done
        self._done0, self._elapsed0 = done, elapsed
        self._clock = clock or _clock
        self._t0 = self._now = self._clock()
        self.images = 0

    def update(self, done: float, images: int = 0) -> Eta:
        """``done`` units finished so far (resumed ones included); ``images`` more trained on since the last call."""
        self.done = done
        self.images += int(images)
        self._now = self._clock()
        return self

    @property
    def session_s(self) -> float:
        return self._now - self._t0

    @property
    def elapsed(self) -> float:
        return self._elapsed0 + self.session_s

    @property
    def left(self) -> float | None:
        """Seconds left at this session's pace; None before this session finished any work."""
        done = self.done - self._done0
        if done <= 0 or self.session_s <= 0:
            return None
        return self.session_s / done * max(self.total - self.done, 0)

    @property
    def images_per_s(self) -> float | None:
        return self.images / self.session_s if self.images and self.session_s > 0 else None

    def __str__(self) -> str:
        left, rate = self.left, self.images_per_s
        text = f"{duration(self.elapsed)} elapsed, ~{'?' if left is None else duration(left)} left"
        return text if rate is None else f"{text}, {rate:.0f} img/s" if rate >= 10 else f"{text}, {rate:.1f} img/s"
