"""``summary.csv``: one row per point of a sweep, its values, status, metrics and runs."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import pandas as pd

from tradinglib.exceptions import InputError
from tradinglib.sweep.points import Point
from tradinglib.sweep.spec import Sweep
from tradinglib.sweep.tasks import PointOutcome

SUMMARY_FILE: Final = "summary.csv"
FIXED_COLUMNS: Final = ("point", "id", "status", "resumed", "duration_s", "run", "error")
"""Columns of every summary; the point's values and its metrics come between them."""
PAIR_COLUMNS: Final = ("train_run",)
"""Columns a train-then-backtest sweep adds: the training run's folder."""


def point_metrics(outcome: PointOutcome) -> dict[str, Any]:
    """The scalar metrics of a point's last run: a backtest's ``metrics``, a training
    run's held-out figures; empty when it has none."""
    if not outcome.steps:
        return {}
    last = outcome.steps[-1]
    metrics = last.results.get("metrics")
    if not isinstance(metrics, Mapping):
        return {}
    if last.kind == "train" and isinstance(metrics.get("holdout"), Mapping):
        metrics = metrics["holdout"]
    return {k: v for k, v in metrics.items()
            if isinstance(v, int | float | bool | str) or v is None}


def write_summary(folder: str | os.PathLike[str], sweep: Sweep, points: Sequence[Point],
                  outcomes: Sequence[PointOutcome]) -> Path:
    """Write ``summary.csv`` into ``folder``: per point its number and id, the values that
    vary, status (ok/failed), whether it was archived before (resumed), its metrics,
    seconds of its runs, its run folder(s) (``run``; a pair adds ``train_run``) and the
    first error. Returns the file."""
    rows = []
    kinds = len(sweep.kinds)
    for point, outcome in zip(points, outcomes, strict=True):
        runs = {s.kind: s.path for s in outcome.steps}
        row: dict[str, Any] = {"point": point.number, "id": point.id, **point.values,
                               "status": "ok" if outcome.ok(kinds) else "failed",
                               "resumed": outcome.skipped}
        row.update(point_metrics(outcome))
        row.update(duration_s=round(sum(s.duration_s for s in outcome.steps), 3),
                   run=runs.get(sweep.kinds[-1], ""), error=outcome.error_text or "")
        if kinds > 1:
            row[PAIR_COLUMNS[0]] = runs.get("train", "")
        rows.append(row)
    table = pd.DataFrame(rows)
    target = Path(folder) / SUMMARY_FILE
    tmp = target.with_name(f".{target.name}.tmp")
    table.to_csv(tmp, index=False)
    os.replace(tmp, target)
    return target


def read_summary(folder: str | os.PathLike[str]) -> pd.DataFrame:
    """A sweep folder's ``summary.csv``.

    Raises:
        InputError: the folder has no summary (not a sweep folder, or never run).
    """
    path = Path(folder) / SUMMARY_FILE
    if not path.is_file():
        raise InputError(f"{folder}: no {SUMMARY_FILE}; run the sweep first with "
                         "`tradinglib sweep params/sweeps/NAME.yaml`")
    return pd.read_csv(path, keep_default_na=False, na_values=[""])
