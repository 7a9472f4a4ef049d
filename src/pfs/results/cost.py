"""The compute each trained network took, from Snakemake's benchmark files (benchmarks/<job>.tsv).

A network's chain is every job its training needed, its own training last (rules/targets.smk ``run_chains``): for
PFS gate learning + pruning + training, for the classic L1 baseline pretraining (the full network's training) +
L1 pruning + fine-tuning or training from scratch, for network slimming its sparsity training + BN-scale pruning +
fine-tuning or training from scratch, for the uniform and random baselines their pruning (and random gates) +
training. A job in several chains (one gate learning serving several ratios and schedules, one pretraining
serving several ratios) is *shared*.

Columns of :func:`chain_costs`, per trained network (metrics.json):

- ``cost_s``: wall seconds of every job this network needed, shared jobs included in full (what reproducing this
  one network alone would take);
- ``cost_cpu_s``: the same in CPU seconds (user + system of the job's processes, Snakemake's ``cpu_time``), empty
  when some job of the chain has none recorded (a job that ended before Snakemake's first sample). Snakemake
  samples it (every 0.5 s for the first 30 samples, then every 30 s), so it is a lower bound: the CPU a job used
  after its last sample is not counted. The wall seconds are exact;
- ``shared_s``: the part of ``cost_s`` from jobs shared with other rows (in the grid they run once:
  :func:`grid_total` counts every job once);
- ``cost_jobs``: the number of jobs in the chain;
- ``shared_with``: how many rows (this one included) share the heaviest shared job of the chain; 1 when nothing
  is shared.

Torch-free: the summarize job reads these without importing torch.
"""

from __future__ import annotations

import csv
import math
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import pandas as pd

from pfs.core.errors import PfsError

COST_COLUMNS = ["cost_s", "cost_cpu_s", "shared_s", "cost_jobs", "shared_with"]
_REMEDY = "delete it and rerun: Snakemake reruns the job that writes it (a benchmark file is one of its outputs)"
_DECIMALS = 4  # of the sums (Snakemake writes seconds with 2 decimals; a mean over repeats may have more)
_MISSING = {"", "NA", "-", "nan", "NaN", "None"}  # Snakemake writes NA (not sampled) or - (None)


def _number(text: str | None, path: str | os.PathLike, column: str, row: int) -> float | None:
    if text is None or text.strip() in _MISSING:
        return None
    try:
        value = float(text)
    except ValueError:
        raise PfsError(f"benchmark file {path}: row {row} has {column} = {text!r}, not a number; {_REMEDY}") from None
    if not math.isfinite(value) or value < 0:
        raise PfsError(f"benchmark file {path}: row {row} has {column} = {text!r}, not a duration; {_REMEDY}")
    return value


def read_benchmark(path: str | os.PathLike) -> dict:
    """A Snakemake benchmark TSV (header ``s  h:m:s  max_rss ... cpu_time``, one row per repeat) as
    ``{"path", "s", "cpu_time", "repeats"}``: wall seconds ``s`` and CPU seconds ``cpu_time`` (None when a row has
    none: NA or -, a job that ended before Snakemake's first sample). A job benchmarked with ``repeat()`` ran
    ``repeats`` times for one result: its cost is the mean over the rows, not their sum.

    Raises PfsError naming the file when it is missing, empty, has no ``s`` column or a row without a number there.
    """
    path = str(path)
    if not Path(path).is_file():
        raise PfsError(f"benchmark file {path} does not exist: the cost of a run is read from its jobs' benchmark "
                       "files; rerun the job that writes it (snakemake <that file> or --forcerun its rule), or run "
                       "the whole workflow (snakemake --cores all)")
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh, delimiter="\t"))
    rows = [row for row in rows if any(cell.strip() for cell in row)]
    if not rows or "s" not in rows[0]:
        raise PfsError(f"benchmark file {path} is not a Snakemake benchmark table (no header with an 's' column); "
                       f"{_REMEDY}")
    header, body = rows[0], rows[1:]
    if not body:
        raise PfsError(f"benchmark file {path} has a header but no measurement; {_REMEDY}")
    wall, cpu = [], []
    needed = 1 + max(header.index(c) for c in ("s", "cpu_time") if c in header)
    for n, row in enumerate(body, start=2):
        if len(row) < needed:  # (extended benchmarks add columns after these: their text is not read)
            raise PfsError(f"benchmark file {path}: row {n} has {len(row)} fields, the header {len(header)}; "
                           f"{_REMEDY}")
        record = dict(zip(header, row, strict=False))
        s = _number(record["s"], path, "s", n)
        if s is None:
            raise PfsError(f"benchmark file {path}: row {n} has no wall time (s = {record['s']!r}); {_REMEDY}")
        wall.append(s)
        cpu.append(_number(record.get("cpu_time"), path, "cpu_time", n))
    known_cpu = None if any(c is None for c in cpu) else sum(cpu) / len(cpu)
    return {"path": path, "s": sum(wall) / len(wall), "cpu_time": known_cpu, "repeats": len(wall)}


def _norm(path: str) -> str:
    return os.path.normpath(str(path))


def _read_all(paths: Iterable[str]) -> dict[str, dict]:
    return {p: read_benchmark(p) for p in dict.fromkeys(_norm(p) for p in paths)}


def chain_costs(chains: Mapping[str, Sequence[str]]) -> pd.DataFrame:
    """One row per metrics.json of ``chains`` (metrics path -> the benchmark files of its chain), indexed by the
    metrics path as given, with the columns COST_COLUMNS (see the module's docstring). A benchmark file listed
    twice in one chain counts once; one in several chains is shared."""
    normalised = {metrics: list(dict.fromkeys(_norm(b) for b in chain)) for metrics, chain in chains.items()}
    for metrics, chain in normalised.items():
        if not chain:
            raise ValueError(f"{metrics} has an empty chain: every trained network has at least its own training")
    bench = _read_all(b for chain in normalised.values() for b in chain)
    users = Counter(b for chain in normalised.values() for b in chain)
    rows = {}
    for metrics, chain in normalised.items():
        shared = [b for b in chain if users[b] > 1]
        cpu = [bench[b]["cpu_time"] for b in chain]
        heaviest = max(shared, key=lambda b: bench[b]["s"], default=None)
        rows[metrics] = {  # rounded: the files have 2 decimals, a sum's float noise is not information
            "cost_s": round(sum(bench[b]["s"] for b in chain), _DECIMALS),
            "cost_cpu_s": float("nan") if any(c is None for c in cpu) else round(sum(cpu), _DECIMALS),
            "shared_s": round(sum(bench[b]["s"] for b in shared), _DECIMALS),
            "cost_jobs": len(chain),
            "shared_with": users[heaviest] if heaviest else 1,
        }
    return pd.DataFrame.from_dict(rows, orient="index", columns=COST_COLUMNS).astype(
        {"cost_jobs": int, "shared_with": int})


def grid_total(chains: Mapping[str, Sequence[str]]) -> dict:
    """The compute of the whole grid, every benchmark file of ``chains`` once however many chains share it:
    ``{"s", "cpu_s", "jobs", "cpu_missing"}`` (cpu_s None when ``cpu_missing`` jobs have no CPU time recorded)."""
    bench = _read_all(b for chain in chains.values() for b in chain)
    missing = sum(b["cpu_time"] is None for b in bench.values())
    cpu = None if missing else round(sum(b["cpu_time"] for b in bench.values()), _DECIMALS)
    return {"s": round(sum(b["s"] for b in bench.values()), _DECIMALS), "cpu_s": cpu, "jobs": len(bench),
            "cpu_missing": missing}


def duration(seconds: float) -> str:
    """'4.2 s', '42 s', '12.5 min', '3.4 h': seconds below 2 minutes, minutes below 2 hours, else hours."""
    value, unit = scale(seconds)
    return f"{_fmt(value)} {unit}"


def scale(seconds: float) -> tuple[float, str]:
    """``seconds`` in the unit :func:`duration` picks for it."""
    if seconds < 120:
        return seconds, "s"
    if seconds < 7200:
        return seconds / 60, "min"
    return seconds / 3600, "h"


def in_unit(seconds: float, unit: str) -> float:
    return seconds / {"s": 1, "min": 60, "h": 3600}[unit]


def _fmt(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def cost_cell(mean: float, std: float | None, shared: float, n: int) -> str:
    """A table.md cost cell: mean (± std over n > 1 seeds) in one unit, and the shared part, e.g.
    ``12.5 ± 0.3 min (4.1 shared)``; empty when the cost is unknown."""
    if mean is None or pd.isna(mean):
        return ""
    _, unit = scale(mean)
    text = _fmt(in_unit(mean, unit))
    if n > 1 and std is not None and pd.notna(std):
        text += f" ± {_fmt(in_unit(std, unit))}"
    text += f" {unit}"
    if shared is not None and pd.notna(shared) and shared > 0:
        text += f" ({_fmt(in_unit(shared, unit))} shared)"
    return text
