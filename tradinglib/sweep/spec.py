"""The sweep file: which notebook, which base parameters, which points; checked on load.

A sweep file is YAML::

    name: seeds                    # the sweep id (default: the file's name)
    notebook: train+backtest       # train, backtest, or train+backtest (a pair per point)
    params:                        # base parameter file(s), from the project root
      train: params/train.yaml
      backtest: params/backtest.yaml
    set: {train.steps: 512}        # on top of the base file(s), for every point
    grid: {train.seed: [0, 1, 2]}  # or points: [{...}, ...]; and/or walk_forward: {...}
    metric: sharpe                 # the report's "best point" figure

For a single notebook ``params`` is one file and names are plain (``seed``). For a pair,
``train.NAME`` and ``backtest.NAME`` name one step's parameter, a plain ``NAME`` every
step that has it (``data``). The sweep sets some parameters itself: ``output_dir``
(the runner), the pair's ``model_path`` (each point trains its own model under the sweep
folder), and with ``walk_forward`` the training ``data`` window and the backtest's
``start`` and ``end``.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from tradinglib.exceptions import InputError, did_you_mean
from tradinglib.paths import project_root, resolve

PAIR: Final = "train+backtest"
NOTEBOOKS: Final = {"train": ("train",), "backtest": ("backtest",), PAIR: ("train", "backtest")}
"""``notebook`` value -> the kinds run for each point, in order."""
SWEEPS_DIR: Final = "sweeps"
SWEEP_FILE: Final = "sweep.yaml"
"""The resolved sweep file in the sweep's folder."""
DEFAULT_METRIC: Final = "sharpe"
_KEYS: Final = ("name", "notebook", "params", "set", "grid", "points", "walk_forward", "metric")
_WALK_KEYS: Final = ("start", "end", "window", "step")
_NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,39}")


@dataclasses.dataclass(frozen=True)
class WalkForward:
    """Walk-forward windows: train on ``[t, t + window)``, backtest on the ``step`` after
    it, for ``t = start, start + step, ...`` while the backtest window ends by ``end``.
    Lengths are ``<n>D``, ``<n>W``, ``<n>M`` or ``<n>Y`` (days, weeks, months, years)."""

    start: str
    end: str
    window: str
    step: str


@dataclasses.dataclass(frozen=True)
class Sweep:
    """A checked sweep file.

    Attributes:
        name: the sweep id: its folder ``runs/sweeps/<name>/`` and its runs' label prefix.
        source: the sweep file.
        notebook: ``train``, ``backtest`` or ``train+backtest``.
        base: kind -> base parameter values (the file, then ``set``).
        base_files: kind -> the base parameter file.
        grid: swept name -> its values (the product is run), or None.
        points: explicit points (name -> value), or None.
        walk_forward: the windows, or None.
        metric: the figure the report ranks points by.
        document: the file's content as loaded (for the resolved ``sweep.yaml``).
    """

    name: str
    source: Path
    notebook: str
    base: Mapping[str, Mapping[str, Any]]
    base_files: Mapping[str, Path]
    grid: Mapping[str, tuple[Any, ...]] | None
    points: tuple[Mapping[str, Any], ...] | None
    walk_forward: WalkForward | None
    metric: str
    document: Mapping[str, Any]

    @property
    def kinds(self) -> tuple[str, ...]:
        """The notebook kinds each point runs, in order."""
        return NOTEBOOKS[self.notebook]

    def targets(self, name: str) -> list[tuple[str, str]]:
        """The ``(kind, parameter)`` pairs a swept or set ``name`` sets.

        Raises:
            InputError: unknown name (with the closest valid one), or a name the sweep sets.
        """
        return _targets(name, self.kinds, walk_forward=self.walk_forward is not None)


def sweep_folder(runs_dir: str | os.PathLike[str], name: str) -> Path:
    """``<runs_dir>/sweeps/<name>``: the sweep's own folder."""
    return Path(runs_dir) / SWEEPS_DIR / name


def load_sweep(path: str | os.PathLike[str], root: Path | None = None) -> Sweep:
    """Read and check a sweep file; nothing runs.

    Args:
        path: the YAML file; relative paths inside it start at the project root.
        root: the project root; default :func:`~tradinglib.paths.project_root`.

    Raises:
        InputError: the file is missing or not YAML, an unknown key or parameter name, an
            empty grid or list, a parameter the sweep sets itself, a bad walk-forward spec.
    """
    from tradinglib.runs import load_params

    file = Path(path)
    if not file.is_file():
        raise InputError(f"{file}: sweep file not found (examples: params/sweeps/*.yaml)")
    document = load_params(file)
    where = str(file)
    unknown = [k for k in document if k not in _KEYS]
    if unknown:
        raise InputError(f"{where}: unknown key {unknown[0]!r}{did_you_mean(unknown[0], _KEYS)};"
                         f" a sweep file has: {', '.join(_KEYS)}")
    root = root or project_root()
    name = document.get("name", file.stem)
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name) or ".." in name:
        raise InputError(f"{where}: name {name!r}: use 1 to 40 letters, digits, '.', '_' or "
                         "'-', starting with a letter or digit")
    notebook = document.get("notebook")
    if notebook not in NOTEBOOKS:
        raise InputError(f"{where}: notebook {notebook!r}"
                         f"{did_you_mean(str(notebook), NOTEBOOKS)}; use one of: "
                         f"{', '.join(NOTEBOOKS)}")
    kinds = NOTEBOOKS[notebook]
    walk = _walk_forward(document.get("walk_forward"), where, notebook)
    files = _base_files(document.get("params"), kinds, where, root)
    base: dict[str, dict[str, Any]] = {}
    for kind, base_file in files.items():
        base[kind] = load_params(base_file)
        for key in base[kind]:  # what the sweep sets itself is replaced, not an error
            _targets(key, (kind,), walk_forward=walk is not None, where=f"{base_file}",
                     replaced_ok=True)
    for key, value in _mapping(document.get("set", {}), "set", where).items():
        for kind, param in _targets(key, kinds, walk_forward=walk is not None,
                                    where=f"{where}: set"):
            base[kind][param] = value
    grid, points = _grid_and_points(document, kinds, where, walk_forward=walk is not None)
    if grid is None and points is None and walk is None:
        raise InputError(f"{where}: no points: give a grid, a list of points, or "
                         "walk_forward windows")
    metric = document.get("metric", DEFAULT_METRIC)
    if not isinstance(metric, str) or not metric.isidentifier():
        raise InputError(f"{where}: metric {metric!r} is a metric name such as sharpe, "
                         "total_return or max_drawdown")
    return Sweep(name=name, source=file.resolve(), notebook=notebook, base=base,
                 base_files=files, grid=grid, points=points, walk_forward=walk,
                 metric=metric, document=document)


def _mapping(value: object, what: str, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InputError(f"{where}: {what} is a mapping of parameter names to values, "
                         f"found {type(value).__name__}")
    return value


def _base_files(value: object, kinds: tuple[str, ...], where: str, root: Path
                ) -> dict[str, Path]:
    """kind -> base parameter file; default ``params/<kind>.yaml``."""
    if value is None:
        value = {kind: f"params/{kind}.yaml" for kind in kinds}
    if isinstance(value, str) and len(kinds) == 1:
        value = {kinds[0]: value}
    if not isinstance(value, dict) or set(value) != set(kinds):
        shape = (f"one file (params: params/{kinds[0]}.yaml)" if len(kinds) == 1 else
                 "one file per step (params: {train: params/train.yaml, backtest: "
                 "params/backtest.yaml})")
        raise InputError(f"{where}: params names the base parameter file(s): {shape}")
    files = {}
    for kind in kinds:
        file = resolve(str(value[kind]), root)
        if not file.is_file():
            raise InputError(f"{where}: base parameter file {file} not found (paths start "
                             f"at the project root {root})")
        files[kind] = file
    return files


def _sweep_sets(kind: str, *, pair: bool, walk_forward: bool) -> dict[str, str]:
    """Parameters of ``kind`` that the sweep sets itself -> why."""
    sets = {"output_dir": "the runner sets it (the run folder)"}
    if pair:
        sets["model_path"] = ("each point trains its own model under the sweep folder and "
                              "backtests that")
    if walk_forward and kind == "backtest":
        sets.update(start="walk_forward sets the backtest window",
                    end="walk_forward sets the backtest window")
    return sets


def _targets(name: object, kinds: tuple[str, ...], *, walk_forward: bool,
             where: str = "sweep", replaced_ok: bool = False) -> list[tuple[str, str]]:
    from tradinglib.params import PARAMS_MODELS

    if not isinstance(name, str):
        raise InputError(f"{where}: parameter name {name!r} is not text")
    pair = len(kinds) > 1
    fields = {kind: list(PARAMS_MODELS[kind].model_fields) for kind in kinds}
    prefix, dot, param = name.partition(".")
    if dot and prefix in kinds:
        found = [(prefix, param)] if param in fields[prefix] else []
    elif dot:
        found = []
    else:
        found = [(kind, name) for kind in kinds if name in fields[kind]]
    if not found:
        valid = sorted({f"{k}.{f}" if pair else f for k in kinds for f in fields[k]
                        if f not in _sweep_sets(k, pair=pair, walk_forward=walk_forward)})
        raise InputError(f"{where}: unknown parameter {name!r}{did_you_mean(name, valid)}; "
                         f"valid: {', '.join(valid)}")
    for kind, param in [] if replaced_ok else found:
        why = _sweep_sets(kind, pair=pair, walk_forward=walk_forward).get(param)
        if why is not None:
            raise InputError(f"{where}: parameter {name!r} cannot be given: {why}")
    return found


def _grid_and_points(document: Mapping[str, Any], kinds: tuple[str, ...], where: str, *,
                     walk_forward: bool
                     ) -> tuple[dict[str, tuple[Any, ...]] | None,
                                tuple[dict[str, Any], ...] | None]:
    grid_value, points_value = document.get("grid"), document.get("points")
    if grid_value is not None and points_value is not None:
        raise InputError(f"{where}: give a grid or a list of points, not both")
    grid = None
    if grid_value is not None:
        values = _mapping(grid_value, "grid", where)
        if not values:
            raise InputError(f"{where}: the grid is empty; give at least one parameter "
                             "with a list of values, e.g. grid: {seed: [0, 1]}")
        grid = {}
        for key, options in values.items():
            _targets(key, kinds, walk_forward=walk_forward, where=f"{where}: grid")
            if not isinstance(options, list) or not options:
                raise InputError(f"{where}: grid: {key!r} needs a non-empty list of values, "
                                 f"e.g. {key}: [0, 1]; found {options!r}")
            grid[key] = tuple(options)
    points = None
    if points_value is not None:
        if not isinstance(points_value, list) or not points_value:
            raise InputError(f"{where}: points is a non-empty list of mappings, e.g. "
                             "points: [{seed: 0}, {seed: 1}]")
        checked = []
        for n, point in enumerate(points_value, start=1):
            entry = _mapping(point, f"point {n}", where)
            for key in entry:
                _targets(key, kinds, walk_forward=walk_forward, where=f"{where}: point {n}")
            checked.append(entry)
        points = tuple(checked)
    return grid, points


def _walk_forward(value: object, where: str, notebook: str) -> WalkForward | None:
    if value is None:
        return None
    if notebook != PAIR:
        raise InputError(f"{where}: walk_forward trains on one window and backtests the "
                         f"next: use notebook: {PAIR}")
    given = _mapping(value, "walk_forward", where)
    missing = [k for k in _WALK_KEYS if k not in given]
    extra = [k for k in given if k not in _WALK_KEYS]
    if missing or extra:
        raise InputError(f"{where}: walk_forward has exactly {', '.join(_WALK_KEYS)} "
                         f"(e.g. start: 2010-01-01, end: 2018-01-01, window: 2Y, step: 1Y); "
                         + (f"missing {missing}" if missing else f"unknown {extra}"))
    walk = WalkForward(**{k: str(given[k]) for k in _WALK_KEYS})
    from tradinglib.sweep.points import windows

    windows(walk, where=where)  # checks dates and lengths, and that a window fits
    return walk
