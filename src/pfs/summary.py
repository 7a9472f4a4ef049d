"""Collect metrics.json files into one table."""

from __future__ import annotations

import pandas as pd

from pfs import io

COLUMNS = ["dataset", "arch", "method", "expansion", "multiplier", "sparsity", "ratio", "achieved_ratio",
           "schedule", "seed", "macs", "params", "top1", "top5", "best_top1", "epochs", "train_time_s"]


def collect(paths: list[str]) -> pd.DataFrame:
    rows = [io.load_json_artifact(path, "pfs.metrics", remedy="delete it and rerun its training") for path in paths]
    frame = pd.DataFrame(rows).reindex(columns=COLUMNS)
    return frame.sort_values(["dataset", "arch", "method", "ratio", "schedule", "seed"], ignore_index=True)


def write_summary(paths: list[str], out: str) -> pd.DataFrame:
    frame = collect(paths)
    io.write_csv(out, frame)
    return frame
