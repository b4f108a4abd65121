"""The sweep report: tables and figures of ``notebooks/sweep_report.ipynb``, and its run.

:func:`load_sweep_results` reads a sweep folder (``sweep.yaml`` and ``summary.csv``); the
other functions take that :class:`SweepResults` and return a DataFrame or a matplotlib
Figure (None where the sweep has no such dimension). "Best" is the highest value of the
sweep's metric (drawdowns are negative, so the shallowest wins).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd
import yaml
from matplotlib.figure import Figure

from tradinglib.exceptions import InputError
from tradinglib.report import WIDTH
from tradinglib.runs import HTML_FILE, KEY_METRICS, RunResult, run_notebook, validate_with_params
from tradinglib.sweep.identity import STEP_TAG, SWEEP_TAG
from tradinglib.sweep.spec import SWEEP_FILE, Sweep
from tradinglib.sweep.summary import FIXED_COLUMNS, PAIR_COLUMNS, read_summary

REPORT_KIND: Final = "sweep_report"
REPORT_NOTEBOOK: Final = "sweep_report.ipynb"
REPORT_FILE: Final = HTML_FILE
_WINDOW_COLUMNS: Final = ("window", "train_start", "train_end", "test_start", "test_end")


@dataclasses.dataclass(frozen=True)
class SweepResults:
    """A sweep folder read back.

    Attributes:
        folder: ``runs/sweeps/<name>``.
        name, notebook: as in the sweep file.
        metric: the figure points are ranked by.
        varied: the summary columns that vary between points (the swept values).
        summary: ``summary.csv``.
    """

    folder: Path
    name: str
    notebook: str
    metric: str
    varied: tuple[str, ...]
    summary: pd.DataFrame

    @property
    def ok(self) -> pd.DataFrame:
        """The rows of points with status ok."""
        return self.summary[self.summary["status"] == "ok"]


def load_sweep_results(folder: str | os.PathLike[str], metric: str | None = None
                       ) -> SweepResults:
    """Read a sweep folder.

    Raises:
        InputError: no ``summary.csv`` or ``sweep.yaml``, or ``metric`` is not a column of
            the summary while some point is ok (the metrics there are listed).
    """
    path = Path(folder)
    summary = read_summary(path)
    try:
        resolved = yaml.safe_load((path / SWEEP_FILE).read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"{path}: cannot read {SWEEP_FILE} ({exc}); run the sweep again"
                         ) from None
    chosen = metric or str(resolved.get("metric"))
    fixed = {*FIXED_COLUMNS, *PAIR_COLUMNS}
    values = [c for p in resolved.get("points", []) for c in p.get("values", {})]
    varied = tuple(dict.fromkeys(c for c in values if c in summary and c not in fixed))
    if chosen not in summary and not (summary["status"] == "ok").any():
        summary = summary.assign(**{chosen: np.nan})  # no point has metrics: report failures
    if chosen not in summary:
        known = [c for c in summary.columns if c not in fixed and c not in varied
                 and pd.api.types.is_numeric_dtype(summary[c])]
        raise InputError(f"metric {chosen!r} is not in {path / 'summary.csv'}; metrics there: "
                         f"{', '.join(known) or 'none (no point finished ok)'}")
    return SweepResults(folder=path, name=str(resolved.get("name")),
                        notebook=str(resolved.get("notebook")), metric=chosen,
                        varied=varied, summary=summary)


def overview_table(results: SweepResults) -> pd.DataFrame:
    """Counts: points, ok, failed, resumed (archived before), and run time in seconds."""
    table = results.summary
    return pd.DataFrame([{
        "sweep": results.name, "notebook": results.notebook, "points": len(table),
        "ok": int((table["status"] == "ok").sum()),
        "failed": int((table["status"] != "ok").sum()),
        "resumed": int(table["resumed"].astype(bool).sum()),
        "run time, s": round(float(table["duration_s"].sum()), 1),
    }])


def points_table(results: SweepResults) -> pd.DataFrame:
    """One row per point: number, varied values, status, key metrics, error."""
    metrics = [m for m in dict.fromkeys((results.metric, *KEY_METRICS))
               if m in results.summary]
    columns = ["point", *results.varied, "status", *metrics, "error"]
    return results.summary[columns].reset_index(drop=True)


def best_point(results: SweepResults) -> pd.DataFrame:
    """The point with the highest metric among those ok, as a one-row table (empty when
    none is ok)."""
    ok = results.ok.dropna(subset=[results.metric])
    if ok.empty:
        return ok
    best = ok.loc[[ok[results.metric].astype(float).idxmax()]]
    return best[["point", *results.varied, results.metric, "run"]].reset_index(drop=True)


def _grid_axes(results: SweepResults) -> list[str]:
    """The varied columns with more than one value, walk-forward columns excluded."""
    return [c for c in results.varied if c not in _WINDOW_COLUMNS
            and results.summary[c].nunique() > 1]


def heatmap_figure(results: SweepResults) -> Figure | None:
    """The metric over a two-dimensional grid (mean where points repeat), or None when
    the sweep does not vary exactly two values."""
    axes = _grid_axes(results)
    if len(axes) != 2 or results.ok.empty:
        return None
    rows, cols = axes
    table = results.ok.pivot_table(index=rows, columns=cols, values=results.metric,
                                   aggfunc="mean")
    fig = Figure(figsize=(WIDTH * 0.6, 4.0), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(table.to_numpy(dtype=float), cmap="RdYlGn", aspect="auto")
    ax.set_xticks(range(table.shape[1]), [str(c) for c in table.columns])
    ax.set_yticks(range(table.shape[0]), [str(i) for i in table.index])
    ax.set_xlabel(cols)
    ax.set_ylabel(rows)
    for (i, j), value in np.ndenumerate(table.to_numpy(dtype=float)):
        ax.text(j, i, "n/a" if np.isnan(value) else f"{value:.3g}", ha="center",
                va="center")
    fig.colorbar(image, ax=ax, label=results.metric)
    ax.set_title(f"{results.metric} by {rows} and {cols}")
    return fig


def _seed_column(results: SweepResults) -> str | None:
    seeds = [c for c in results.varied if c.split(".")[-1] == "seed"
             and results.summary[c].nunique() > 1]
    return seeds[0] if seeds and not results.ok.empty else None


def dispersion_table(results: SweepResults) -> pd.DataFrame | None:
    """The metric across seeds: count, mean, std, min and max per combination of the
    other varied values; None when the sweep does not vary a seed."""
    seed = _seed_column(results)
    if seed is None:
        return None
    groups = [c for c in results.varied if c != seed and c not in _WINDOW_COLUMNS[1:]]
    values = results.ok[[*groups, results.metric]]
    if groups:
        stats = values.groupby(groups)[results.metric].agg(
            ["count", "mean", "std", "min", "max"]).reset_index()
    else:
        stats = values[results.metric].agg(["count", "mean", "std", "min", "max"]
                                           ).to_frame().T
    return stats.round(4)


def dispersion_figure(results: SweepResults) -> Figure | None:
    """The metric of each seed (dots) per combination of the other varied values; None
    when the sweep does not vary a seed."""
    seed = _seed_column(results)
    if seed is None:
        return None
    groups = [c for c in results.varied if c != seed and c not in _WINDOW_COLUMNS[1:]]
    ok = results.ok
    labels = (ok[groups].astype(str).agg(", ".join, axis=1) if groups
              else pd.Series("all", index=ok.index))
    names = list(dict.fromkeys(labels))
    fig = Figure(figsize=(WIDTH * 0.6, 3.5), layout="constrained")
    ax = fig.subplots()
    positions = labels.map({name: i for i, name in enumerate(names)}).to_numpy(dtype=float)
    ax.scatter(positions, ok[results.metric].to_numpy(dtype=float), alpha=0.7)
    ax.set_xticks(range(len(names)), names, rotation=20, ha="right")
    ax.set_ylabel(results.metric)
    ax.set_title(f"{results.metric} across seeds ({seed})")
    ax.grid(alpha=0.3)
    return fig


def stitched_equity(results: SweepResults) -> dict[str, pd.Series]:
    """Walk-forward: each backtest window's equity (``equity.csv`` of the run) chained
    after the previous one, so returns compound across windows; one curve (USD, from the
    first window's starting equity) per combination of the other varied values. Empty
    when the sweep has no windows or no ok window."""
    if "window" not in results.varied:
        return {}
    groups = [c for c in results.varied if c not in _WINDOW_COLUMNS]
    ok = results.ok.sort_values("window")
    keys = ok[groups].astype(str).agg(", ".join, axis=1) if groups else pd.Series(
        "walk-forward", index=ok.index)
    curves: dict[str, pd.Series] = {}
    for key, rows in ok.groupby(keys, sort=False):
        parts: list[pd.Series] = []
        level: float | None = None  # equity where the previous window ended
        for run in rows["run"]:
            equity = _equity(Path(str(run)))
            start = float(equity.iloc[0])
            parts.append(equity / start * (start if level is None else level))
            level = float(parts[-1].iloc[-1])
        curves[str(key)] = pd.concat(parts)
    return curves


def _equity(run: Path) -> pd.Series:
    """A backtest run's ``equity.csv`` as USD by UTC time.

    Raises:
        InputError: the run has no equity table.
    """
    path = run / "equity.csv"
    if not path.is_file():
        raise InputError(f"{run}: no equity.csv; was it a backtest run?")
    frame = pd.read_csv(path)
    return pd.Series(frame["equity"].to_numpy(dtype=float),
                     index=pd.DatetimeIndex(pd.to_datetime(frame["time"], utc=True)),
                     name="equity")


def render_sweep_report(folder: Path, sweep: Sweep, *, runs_dir: Path, root: Path,
                        timeout: int | None) -> RunResult:
    """Run ``notebooks/sweep_report.ipynb`` on the sweep folder as an archived run (kind
    ``sweep_report``, label the sweep's name) and copy its ``report.html`` into the folder.

    Raises:
        InputError: the notebook is missing.
    """
    result = run_notebook(
        root / "notebooks" / REPORT_NOTEBOOK, {"sweep_dir": str(folder), "metric": sweep.metric},
        kind=REPORT_KIND, label=sweep.name, runs_dir=runs_dir, timeout=timeout,
        validate=validate_with_params, html=True, root=root,
        tags={SWEEP_TAG: sweep.name, STEP_TAG: REPORT_KIND})
    if result.ok:
        shutil.copyfile(result.path / HTML_FILE, folder / REPORT_FILE)
    return result



def walk_forward_figure(results: SweepResults) -> Figure | None:
    """The stitched walk-forward equity (:func:`stitched_equity`) and its drawdown, one
    curve per combination of the other varied values; None without ok windows."""
    from tradinglib.report import equity_figure

    curves = stitched_equity(results)
    if not curves:
        return None
    first, *rest = curves
    return equity_figure(curves[first], label=first, others={k: curves[k] for k in rest},
                         title="Walk-forward: backtest windows stitched (returns compound)")
