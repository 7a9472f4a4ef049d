"""Collect metrics.json files into one table."""

from __future__ import annotations

import json

import pandas as pd

from pfs import io
from pfs.errors import PfsError

COLUMNS = ["dataset", "arch", "method", "expansion", "multiplier", "sparsity", "ratio", "achieved_ratio",
           "schedule", "seed", "macs", "params", "top1", "top5", "best_top1", "epochs", "train_time_s"]


def collect(paths: list[str]) -> pd.DataFrame:
    rows = []
    for path in paths:
        try:
            with open(path) as fh:
                rows.append(json.load(fh))
        except (OSError, json.JSONDecodeError) as exc:
            raise PfsError(f"{path} is not a readable metrics file ({exc}); delete it and rerun its training") from exc
    frame = pd.DataFrame(rows).reindex(columns=COLUMNS)
    return frame.sort_values(["dataset", "arch", "method", "ratio", "schedule", "seed"], ignore_index=True)


def write_summary(paths: list[str], out: str) -> pd.DataFrame:
    frame = collect(paths)
    io.write_csv(out, frame)
    return frame
