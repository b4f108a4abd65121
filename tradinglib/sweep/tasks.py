"""A point as the work one Dask worker does: its steps run one after the other through
:func:`tradinglib.runs.run_notebook`, exactly as ``tradinglib run`` runs them.

:func:`prepare_tasks` (on the client) gives each point of a train-then-backtest sweep its
own model path under the sweep folder and writes walk-forward training windows as Parquet
files there, so workers need nothing but the project and the shared ``runs/`` folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from tradinglib.exceptions import InputError, TradingLibError
from tradinglib.paths import ROOT_ENV
from tradinglib.results import read_results
from tradinglib.runs import RunResult, RunStatus, load_params, read_manifest
from tradinglib.sweep.identity import run_label, tags_for
from tradinglib.sweep.points import Point, Window
from tradinglib.sweep.spec import PAIR, Sweep, sweep_folder

MODELS_DIR = "models"
DATA_DIR = "data"


@dataclasses.dataclass(frozen=True)
class StepTask:
    """One notebook run of a point.

    Attributes:
        kind: ``train`` or ``backtest``.
        params: the run's parameters.
        params_file: the base parameter file (recorded in the manifest).
        overrides: the values that differ from the base file (recorded as overrides).
        done: the folder of this step's run archived ok before (then it is not run), or
            None.
    """

    kind: str
    params: Mapping[str, Any]
    params_file: str
    overrides: Mapping[str, Any]
    done: str | None


@dataclasses.dataclass(frozen=True)
class PointTask:
    """Everything a worker needs to run one point (plain data: it is pickled)."""

    sweep: str
    point_id: str
    steps: tuple[StepTask, ...]
    root: str
    runs_dir: str
    timeout: int | None

    @property
    def label(self) -> str:
        """The runs' label: ``<sweep>-<point id>``."""
        return run_label(self.sweep, self.point_id)


@dataclasses.dataclass(frozen=True)
class StepOutcome:
    """One archived run of a point: its folder, status, time, error and results."""

    kind: str
    run_id: str
    path: str
    status: str
    duration_s: float
    error: str | None
    results: Mapping[str, Any]

    @classmethod
    def from_result(cls, result: RunResult) -> StepOutcome:
        """From a run just made."""
        return cls(kind=result.kind, run_id=result.run_id, path=str(result.path),
                   status=str(result.status), duration_s=result.duration_s,
                   error=result.error.summary() if result.error else None,
                   results=result.results)

    @classmethod
    def from_archive(cls, folder: Path) -> StepOutcome:
        """From a run archived before.

        Raises:
            InputError, StopError: the folder has no readable manifest.
        """
        manifest = read_manifest(folder)
        try:
            results = read_results(folder)
        except TradingLibError:
            results = {}
        return cls(kind=str(manifest.get("kind")), run_id=folder.name, path=str(folder),
                   status=str(manifest.get("status")),
                   duration_s=float(manifest.get("duration_s") or 0.0), error=None,
                   results=results)


@dataclasses.dataclass(frozen=True)
class PointOutcome:
    """What became of a point: its runs, or why it could not run.

    Attributes:
        point_id: the point.
        steps: its runs, in order (the steps after a failed one are not run).
        error: a failure outside any run (the worker died too often), or None.
        skipped: every step was archived ok before; nothing ran.
    """

    point_id: str
    steps: tuple[StepOutcome, ...]
    error: str | None = None
    skipped: bool = False

    def ok(self, kinds: int) -> bool:
        """True when all ``kinds`` steps ran (or ran before) with status ok."""
        return (self.error is None and len(self.steps) == kinds
                and all(s.status == RunStatus.OK for s in self.steps))

    @property
    def error_text(self) -> str | None:
        """The first error: the point's own, else the failed run's."""
        return self.error or next((s.error for s in self.steps if s.error), None)


def run_point(task: PointTask) -> PointOutcome:
    """Run a point's steps (on a worker); a failed step ends the point.

    The project root is ``task.root`` for the runs and their kernels (``TRADINGLIB_ROOT``
    while the point runs). Failures of the runs are archived and returned, not raised.

    Raises:
        InputError: a notebook is missing on this worker (the project is not where the
            client has it).
    """
    from tradinglib.runs import notebook_for, run_notebook, validate_with_params

    root = Path(task.root)
    steps: list[StepOutcome] = []
    with _project_root(root):
        for step in task.steps:
            if step.done is not None:
                steps.append(StepOutcome.from_archive(Path(step.done)))
                continue
            result = run_notebook(
                notebook_for(step.kind, root), step.params, kind=step.kind,
                label=task.label, runs_dir=task.runs_dir, timeout=task.timeout,
                validate=validate_with_params, params_file=step.params_file,
                overrides=step.overrides, root=root,
                tags=tags_for(task.sweep, task.point_id, step.kind))
            steps.append(StepOutcome.from_result(result))
            if not result.ok:
                break
    return PointOutcome(point_id=task.point_id, steps=tuple(steps))


@contextlib.contextmanager
def _project_root(root: Path) -> Iterator[None]:
    """``$TRADINGLIB_ROOT`` = ``root`` meanwhile (kernels inherit it); then as before."""
    before = os.environ.get(ROOT_ENV)
    os.environ[ROOT_ENV] = str(root)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(ROOT_ENV, None)
        else:
            os.environ[ROOT_ENV] = before


def prepare_tasks(sweep: Sweep, points: list[Point], done: Mapping[tuple[str, str], Path], *,
                  root: Path, runs_dir: Path, timeout: int | None) -> list[PointTask]:
    """The tasks of the points not archived ok in full; each step archived ok before is
    marked ``done``. Writes walk-forward training windows (Parquet) into the sweep folder.

    Raises:
        InputError: a walk-forward training window holds no bars.
    """
    folder = sweep_folder(runs_dir, sweep.name)
    tasks = []
    for point in points:
        finished = {kind: done.get((point.id, kind)) for kind in sweep.kinds}
        if all(finished.values()):
            continue
        params = {kind: dict(values) for kind, values in point.params.items()}
        if sweep.notebook == PAIR:
            model = folder / MODELS_DIR / f"{point.id}.zip"
            params["train"]["model_path"] = params["backtest"]["model_path"] = str(model)
        if point.window is not None:
            params["train"]["data"] = str(_window_bars(params["train"].get("data"),
                                                       point.window, folder / DATA_DIR, root))
        steps = []
        for kind in sweep.kinds:
            base = load_params(sweep.base_files[kind])
            changed = {k: v for k, v in params[kind].items() if k not in base or base[k] != v}
            path = finished[kind]
            steps.append(StepTask(kind=kind, params=params[kind],
                                  params_file=str(sweep.base_files[kind]), overrides=changed,
                                  done=str(path) if path else None))
        tasks.append(PointTask(sweep=sweep.name, point_id=point.id, steps=tuple(steps),
                               root=str(root), runs_dir=str(runs_dir), timeout=timeout))
    return tasks


def _window_bars(source: object, window: Window, folder: Path, root: Path) -> Path:
    """The training bars of ``window`` as a Parquet file in ``folder`` (written once per
    source file version: its name carries the file's path, size and modification time,
    so an edited or replaced source is cut again on a rerun)."""
    import pandas as pd

    from tradinglib.data import BUILTIN_SOURCES, load_bars, source_path
    from tradinglib.params import DEFAULT_DATA

    name = str(source or DEFAULT_DATA)
    path = source_path(name, root)
    stem = name if name in BUILTIN_SOURCES else Path(name).stem
    try:
        stat = Path(path).stat()
        version = f"{Path(path).resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    except OSError:  # a built-in source, or a missing file (load_bars says so below)
        version = str(path)
    digest = hashlib.sha256(version.encode()).hexdigest()[:10]
    target = folder / f"{stem}-{digest}-{window.train_start}-{window.train_end}.parquet"
    if target.is_file():
        return target
    bars = load_bars(path)
    zone = pd.DatetimeIndex(bars.index).tz
    start = pd.Timestamp(window.train_start).tz_localize(zone)
    end = pd.Timestamp(window.train_end).tz_localize(zone)
    part = bars[(bars.index >= start) & (bars.index < end)]
    if part.empty:
        raise InputError(f"walk_forward window {window.index} ({window.train_start}.."
                         f"{window.train_end}) holds no bars of {name} "
                         f"({bars.index[0]:%Y-%m-%d}..{bars.index[-1]:%Y-%m-%d}); move "
                         "start and end inside the data")
    folder.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    part.to_parquet(tmp)
    os.replace(tmp, target)
    return target
