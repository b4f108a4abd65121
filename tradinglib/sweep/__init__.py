"""Sweeps: many archived runs of one notebook (or a train-then-backtest pair) on Dask.

A sweep file (``params/sweeps/X.yaml``) names the notebook, the base parameter file(s)
and the points: a grid, an explicit list, or walk-forward windows. ``tradinglib sweep``
runs every point as an ordinary archived run (:func:`tradinglib.runs.run_notebook`) on a
Dask cluster, tagged with the sweep id, skips points already archived ok (resume), and
writes ``runs/sweeps/<id>/``: the resolved ``sweep.yaml``, ``summary.csv`` and
``report.html``.

One module per concept:

=============  ============================================================================
``spec``       the sweep file: loading and checking it (:func:`load_sweep`, :class:`Sweep`)
``points``     the points: grid, explicit list and walk-forward windows, with their ids
``identity``   which points are already archived ok (resume)
``tasks``      a point as the work a Dask worker does; runs its steps through run_notebook
``runner``     the Dask cluster (local or by address), bounded retries, progress
``summary``    ``summary.csv``: one row per point
``report``     the sweep report's tables and figures, and its notebook run
``progress``   the console progress bar of ``tradinglib sweep``
=============  ============================================================================
"""

from __future__ import annotations

from tradinglib.sweep.points import Point, Window, expand_points
from tradinglib.sweep.report import render_sweep_report
from tradinglib.sweep.runner import SweepOutcome, SweepProgress, run_sweep
from tradinglib.sweep.spec import PAIR, Sweep, load_sweep, sweep_folder
from tradinglib.sweep.summary import SUMMARY_FILE, read_summary, write_summary
from tradinglib.sweep.tasks import PointOutcome, StepOutcome

__all__ = [
    "PAIR",
    "SUMMARY_FILE",
    "Point",
    "PointOutcome",
    "StepOutcome",
    "Sweep",
    "SweepOutcome",
    "SweepProgress",
    "Window",
    "expand_points",
    "load_sweep",
    "read_summary",
    "render_sweep_report",
    "run_sweep",
    "sweep_folder",
    "write_summary",
]
