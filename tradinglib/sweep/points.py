"""A sweep's points: the grid's product, an explicit list, or walk-forward windows (each
combined with the grid or list when both are given), every one with a stable id."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import re
from collections.abc import Mapping
from typing import Any

import pandas as pd

from tradinglib.exceptions import InputError
from tradinglib.sweep.spec import PAIR, Sweep, WalkForward

_LENGTH_RE = re.compile(r"\s*(\d+)\s*([DWMY])\s*", re.IGNORECASE)
_ID_CHARS = 12


@dataclasses.dataclass(frozen=True)
class Window:
    """One walk-forward window: train on ``[train_start, train_end)``, backtest on
    ``[test_start, test_end)`` (dates as ``YYYY-MM-DD``, in the bars' own time zone)."""

    index: int
    train_start: str
    train_end: str
    test_start: str
    test_end: str


@dataclasses.dataclass(frozen=True)
class Point:
    """One point of a sweep.

    Attributes:
        id: 12 hex digits from the notebook, parameters and window: the same point has
            the same id in every invocation (resume).
        number: 1-based position in the sweep.
        values: what varies, for people and the summary (``seed``, ``window`` ...).
        params: kind -> that step's parameters (base, ``set``, then the point's values).
        window: the walk-forward window, or None.
    """

    id: str
    number: int
    values: Mapping[str, Any]
    params: Mapping[str, Mapping[str, Any]]
    window: Window | None

    def describe(self) -> str:
        """``point 3 (seed=1, slippage_bps=5)``."""
        shown = ", ".join(f"{k}={v}" for k, v in self.values.items())
        return f"point {self.number}" + (f" ({shown})" if shown else "")


def point_id(notebook: str, params: Mapping[str, Mapping[str, Any]],
             window: Window | None) -> str:
    """The id of a point: sha256 of its notebook, parameters and window, first 12 hex."""
    body = {"notebook": notebook, "params": params,
            "window": dataclasses.asdict(window) if window else None}
    text = json.dumps(body, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:_ID_CHARS]


def _length(text: str, what: str, where: str) -> pd.DateOffset:
    match = _LENGTH_RE.fullmatch(text)
    if match is None or int(match[1]) == 0:
        raise InputError(f"{where}: walk_forward {what} {text!r}: use a positive length "
                         "such as 90D, 12W, 6M or 2Y (days, weeks, months, years)")
    n = int(match[1])
    return {"D": pd.DateOffset(days=n), "W": pd.DateOffset(weeks=n),
            "M": pd.DateOffset(months=n), "Y": pd.DateOffset(years=n)}[match[2].upper()]


def _date(text: str, what: str, where: str) -> pd.Timestamp:
    try:
        moment: object = pd.Timestamp(text)
    except (ValueError, TypeError):
        moment = None
    if not isinstance(moment, pd.Timestamp) or moment.tzinfo is not None:
        raise InputError(f"{where}: walk_forward {what} {text!r}: use a date such as "
                         "2012-01-01")
    return moment


def windows(walk: WalkForward, *, where: str = "sweep") -> list[Window]:
    """The walk-forward windows, in time order.

    Raises:
        InputError: unparsable dates or lengths, ``start`` not before ``end``, or no
            training window plus its backtest fits between them.
    """
    start, end = _date(walk.start, "start", where), _date(walk.end, "end", where)
    window, step = _length(walk.window, "window", where), _length(walk.step, "step", where)
    if start >= end:
        raise InputError(f"{where}: walk_forward start {walk.start} is not before end "
                         f"{walk.end}")
    found: list[Window] = []
    while True:
        t = start + step * len(found)
        train_end = t + window
        test_end = train_end + step
        if test_end > end:
            break
        found.append(Window(len(found), *(f"{d:%Y-%m-%d}" for d in
                                          (t, train_end, train_end, test_end))))
    if not found:
        raise InputError(f"{where}: walk_forward: no window fits between {walk.start} and "
                         f"{walk.end}: a {walk.window} training window plus a {walk.step} "
                         "backtest is longer; widen the range or shorten the window")
    return found


def expand_points(sweep: Sweep) -> list[Point]:
    """Every point of ``sweep``, checked: parameters each step can validate now are
    validated (a pair's backtest waits for its model).

    Raises:
        InputError: a point's values are invalid (naming the point and the parameter), or
            two points are the same.
    """
    from tradinglib.params import validate_params

    if sweep.grid is not None:
        names = list(sweep.grid)
        combos = [dict(zip(names, values, strict=True))
                  for values in itertools.product(*sweep.grid.values())]
    elif sweep.points is not None:
        combos = [dict(point) for point in sweep.points]
    else:
        combos = [{}]
    spans = windows(sweep.walk_forward) if sweep.walk_forward else [None]
    points: list[Point] = []
    seen: dict[str, int] = {}
    for combo, window in itertools.product(combos, spans):
        params = {kind: dict(values) for kind, values in sweep.base.items()}
        for key, value in combo.items():
            for kind, param in sweep.targets(key):
                params[kind][param] = value
        values = dict(combo)
        if window is not None:
            params["backtest"].update(start=window.test_start, end=window.test_end)
            values.update(window=window.index, train_start=window.train_start,
                          train_end=window.train_end, test_start=window.test_start,
                          test_end=window.test_end)
        pid = point_id(sweep.notebook, params, window)
        point = Point(id=pid, number=len(points) + 1, values=values, params=params,
                      window=window)
        if pid in seen:
            raise InputError(f"{sweep.source}: {point.describe()} repeats point {seen[pid]}; "
                             "remove one of them")
        seen[pid] = point.number
        for kind in sweep.kinds:
            if kind == "backtest" and sweep.notebook == PAIR:
                continue  # its model_path is the model the point's train step writes
            try:
                validate_params(kind, params[kind])
            except InputError as exc:
                raise InputError(f"{sweep.source}: {point.describe()}: {exc}") from None
        points.append(point)
    return points
