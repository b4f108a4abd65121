"""Market data: load OHLCV bars from a built-in set, a CSV or a Parquet file, and describe them.

Every loader returns the same layout: a frame indexed by a tz-aware, strictly increasing,
unique ``DatetimeIndex`` named ``time`` (microsecond resolution) with float64 columns
``open, high, low, close, volume`` and, where the source has one, ``adj_close``. Prices are
in the quote currency of the source, volume in units traded. Any problem in the input
raises :class:`~tradinglib.exceptions.DataError` naming the file, the line or column, what
is wrong and how to fix it.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from types import MappingProxyType
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa

from tradinglib.exceptions import DataError

__all__ = [
    "BAR_COLUMNS",
    "BUILTIN_SOURCES",
    "BarsInfo",
    "bars_sha256",
    "describe_bars",
    "format_bars_info",
    "load_bars",
    "local_days",
]

_BUILTINS = (  # name, file in gym_anytrading/datasets/data, time zone, description
    ("googl-daily", "STOCKS_GOOGL.csv", "America/New_York", "GOOGL daily 2009-2018, Adj Close"),
    ("eurusd-hourly", "FOREX_EURUSD_1H_ASK.csv", "UTC", "EURUSD hourly ask bars, 2017"),
)
BUILTIN_SOURCES: Mapping[str, str] = MappingProxyType({b[0]: b[3] for b in _BUILTINS})
BAR_COLUMNS = ("open", "high", "low", "close", "volume")
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()  # datetime64[D] counts days from here
Duplicates = Literal["error", "merge"]
_POSITIVE = ("open", "high", "low", "close", "adj_close")
_CSV_SUFFIXES = (".csv", ".txt")
_PARQUET_SUFFIXES = (".parquet", ".pq")
# Time columns, most specific first; a lone "Time" column holds full stamps (gym-anytrading).
_TIME_LAYOUTS = (("datetime",), ("timestamp",), ("date", "time"), ("date",), ("time",))
_TIME_FORMATS = ("ISO8601", "%d.%m.%Y %H:%M:%S.%f", "%d.%m.%Y %H:%M:%S", "%d.%m.%Y")
_TIME_HINT = "expected e.g. 2024-01-31, 2024-01-31 09:30:00 or 31.01.2024 09:30:00.000"
_FIELDS = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")


def source_path(source: str | Path, root: Path | None = None) -> str:
    """``source`` as :func:`load_bars` takes it from anywhere: a built-in name as it is,
    a file path made absolute (a relative one is taken from the project root, or
    ``root``)."""
    from tradinglib.paths import resolve

    text = str(source)
    return text if text in BUILTIN_SOURCES else str(resolve(text, root))


def _key(name: object) -> str:
    """Column name for matching: lower case without spaces, ``_`` and ``-``."""
    return re.sub(r"[\s_\-]", "", str(name)).lower()


def load_bars(
    source: str | os.PathLike[str], *, tz: str = "UTC", duplicates: Duplicates = "error"
) -> pd.DataFrame:
    """Load OHLCV bars from a built-in name (see ``BUILTIN_SOURCES``) or a file path.

    Files: ``.csv``/``.txt`` (comma-separated, header on line 1) or ``.parquet``. Time comes
    from a ``Datetime``/``Timestamp`` column, ``Date`` plus ``Time``, ``Date`` alone, ``Time``
    alone, or (Parquet) a DatetimeIndex; names match case-insensitively. Naive stamps are
    localized to ``tz`` (an IANA zone name); aware ones are kept. Built-ins use their own zone.

    Rows sharing a timestamp are an error, unless ``duplicates="merge"`` (tick data with
    several trades in one millisecond): then they become one bar (first open, highest
    high, lowest low, last close, summed volume).

    Raises:
        DataError: unknown source or zone, unreadable file, missing columns, or bad rows.
    """
    if duplicates not in ("error", "merge"):
        raise DataError(f"duplicates must be 'error' or 'merge', got {duplicates!r}")
    try:
        pd.Timestamp("2000-01-01").tz_localize(tz)
    except (KeyError, ValueError, TypeError):
        raise DataError(f"unknown time zone {tz!r}; use an IANA name such as 'UTC'") from None
    if isinstance(source, str) and source in BUILTIN_SOURCES:
        return _load_builtin(source)
    path = Path(source)
    if not path.exists():
        if not path.suffix and len(path.parts) == 1:
            raise DataError(
                f"unknown data source {str(source)!r}: no such file and not a built-in name; "
                f"built-in names are: {', '.join(BUILTIN_SOURCES)}"
            )
        raise DataError(f"{path}: file not found (relative paths start at {Path.cwd()})")
    if path.is_dir():
        raise DataError(f"{path}: is a directory; give a .csv, .txt or .parquet file")
    suffix = path.suffix.lower()
    if suffix in _CSV_SUFFIXES:
        frame, index, problems = _read_csv(path), None, _Problems("line", 2)
    elif suffix in _PARQUET_SUFFIXES:
        (frame, index), problems = _read_parquet(path), _Problems("row", 1)
    else:
        raise DataError(
            f"{path}: unknown file extension {path.suffix!r}; use .csv or .txt "
            "(comma-separated with a header line) or .parquet"
        )
    if frame.empty:
        raise DataError(f"{path}: no data rows; expected a header line followed by bars")
    return _to_bars(frame, index, str(path), tz, problems, merge=duplicates == "merge")


def _load_builtin(name: str) -> pd.DataFrame:
    """Read a built-in data set from the installed gym-anytrading package."""
    file_name, zone = next((b[1], b[2]) for b in _BUILTINS if b[0] == name)
    try:
        resource = importlib.resources.files("gym_anytrading.datasets") / "data" / file_name
    except ModuleNotFoundError:
        raise DataError(f"built-in {name!r} needs the gym-anytrading package installed") from None
    with importlib.resources.as_file(resource) as path:
        return _to_bars(_read_csv(path), None, f"{name} ({path})", zone, _Problems("line", 2))


def _read_csv(path: Path) -> pd.DataFrame:
    """Read a CSV file as text columns for time and inferred types for the rest."""
    try:
        if path.stat().st_size == 0:
            raise DataError(f"{path}: file is empty (0 bytes); expected a header line and bars")
        names = [str(c) for c in pd.read_csv(path, nrows=0).columns]
        text_columns = {
            c: "str" for c in names if _key(c) in {"datetime", "timestamp", "date", "time"}
        }
        frame = pd.read_csv(path, dtype=text_columns, skip_blank_lines=False)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: file is empty; expected a header line and bars") from None
    except pd.errors.ParserError as exc:
        found = _FIELDS.search(str(exc))
        if found is None:
            raise DataError(f"{path}: not a readable CSV file: {exc}") from None
        expected, line, saw = found.groups()
        raise DataError(
            f"{path}: line {line} has {saw} fields but the header (line 1) names {expected} "
            "columns; give every row as many fields as the header has names"
        ) from None
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: not UTF-8 text (bad byte at offset {exc.start}); save it as UTF-8 CSV"
        ) from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read the file: {exc.strerror or exc}") from None
    if not isinstance(frame.index, pd.RangeIndex):  # pandas moved the extra field(s) to the index
        raise DataError(
            f"{path}: the header (line 1) names {len(names)} columns ({', '.join(names)}) but "
            f"line 2 has {len(names) + frame.index.nlevels} fields, so values would shift by "
            "a column; add the missing name(s) to the header (e.g. Date,Time,... when date "
            "and time are separate fields)"
        )
    filled = frame.notna().any(axis=1).to_numpy()
    frame = frame.iloc[: np.flatnonzero(filled)[-1] + 1] if filled.any() else frame.iloc[:0]
    blank = np.flatnonzero(~filled[: len(frame)])  # blank lines before the last bar
    if blank.size:
        raise DataError(f"{path}: line {blank[0] + 2} is blank ({blank.size} in all); delete it")
    return frame


def _read_parquet(path: Path) -> tuple[pd.DataFrame, pd.DatetimeIndex | None]:
    """Read a Parquet file; return its frame and its DatetimeIndex if it has one."""
    try:
        frame = pd.read_parquet(path)
    except (ValueError, OSError, pa.ArrowException) as exc:
        raise DataError(f"{path}: not a readable Parquet file: {exc}") from None
    if isinstance(frame.index, pd.DatetimeIndex):
        return frame.reset_index(drop=True), frame.index
    return frame.reset_index(drop=frame.index.name is None), None


@dataclass
class _Problems:
    """Collects the first offending row of each kind of problem, with the number of rows."""

    unit: str  # "line" (CSV, header is line 1) or "row" (Parquet)
    offset: int  # added to a 0-based row position to give the number shown
    found: list[str] = field(default_factory=list)

    def add(self, mask: npt.NDArray[np.bool_], what: Callable[[int], str]) -> None:
        """Record a problem at the first True position of ``mask``; ``what(i)`` describes it."""
        hits = np.flatnonzero(mask)
        if hits.size:
            i = int(hits[0])
            count = f" ({hits.size} rows have this problem)" if hits.size > 1 else ""
            self.found.append(f"{self.unit} {i + self.offset}: {what(i)}{count}")


def _to_bars(
    frame: pd.DataFrame,
    index: pd.DatetimeIndex | None,
    name: str,
    tz: str,
    problems: _Problems,
    *,
    merge: bool = False,
) -> pd.DataFrame:
    """Map columns, parse and check time and values; return bars in the standard layout."""
    columns: dict[str, str] = {}
    for column in map(str, frame.columns):
        key = "adj_close" if _key(column) == "adjclose" else _key(column)
        if key in columns:
            raise DataError(f"{name}: columns {columns[key]!r} and {column!r} both mean {key}")
        columns[key] = column
    layout = next((lay for lay in _TIME_LAYOUTS if all(k in columns for k in lay)), ())
    missing = [c for c in BAR_COLUMNS if c not in columns]
    if index is None and not layout:
        missing.insert(0, "time (Datetime, Date, Date+Time or Time)")
    if missing:
        hint = " (is the separator a comma?)" if len(columns) == 1 else ""
        raise DataError(
            f"{name}: missing column(s) {', '.join(missing)}; found: "
            f"{', '.join(map(str, frame.columns))}{hint}. Names match case-insensitively."
        )
    if index is None:
        index = _parse_time(frame, [columns[k] for k in layout], name, tz, problems)
    else:
        if index.tz is None:
            index = index.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
        problems.add(np.asarray(index.isna()), lambda i: f"index: no time, or none in {tz}")
    _check_order(index, problems, duplicates_allowed=merge)
    out = [*BAR_COLUMNS, *(["adj_close"] if "adj_close" in columns else [])]
    values = {c: _numbers(frame[columns[c]], c, problems) for c in out}
    _check_values(values, problems)
    if problems.found:
        raise DataError(
            f"{name}: {len(problems.found)} problem(s) in the data; fix or remove these rows:"
            + "".join(f"\n  {p}" for p in problems.found)
        )
    bars = pd.DataFrame(values, index=pd.DatetimeIndex(index, name="time").as_unit("us"))
    if merge and bars.index.has_duplicates:
        how = {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum",
               "adj_close": "last"}
        bars = bars.groupby(level=0).agg({c: how[c] for c in out})
    return bars


def _parse_time(
    frame: pd.DataFrame, sources: list[str], name: str, tz: str, problems: _Problems
) -> pd.DatetimeIndex:
    """Parse time column(s) with the first known format that fits; bad stamps become NaT."""
    label, raw = "+".join(sources), frame[sources[0]]
    text = raw.astype("str")
    if isinstance(raw.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(raw.dtype):
        parsed = pd.Series(pd.to_datetime(raw))
    else:
        for other in sources[1:]:
            text = text.str.cat(frame[other].astype("str"), sep=" ")
        first = next(iter(text.dropna()), "")
        fmt = next((f for f in _TIME_FORMATS if _fits(first, f)), _TIME_FORMATS[0])
        try:
            parsed = pd.to_datetime(text, format=fmt, errors="coerce")
        except ValueError:  # mixed UTC offsets
            raise DataError(
                f"{name}: column {label}: timestamps carry different UTC offsets; "
                "convert them to one zone (e.g. UTC)"
            ) from None
    bad = parsed.isna().to_numpy()
    what = "is not a timestamp in a known format"
    problems.add(bad, lambda i: f"column {label}: {_cell(text, i, what)}; {_TIME_HINT}")
    if parsed.dt.tz is None:
        parsed = parsed.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
        dst = f"is a local time skipped or repeated by a daylight-saving change in {tz}; use UTC"
        problems.add(
            parsed.isna().to_numpy() & ~bad, lambda i: f"column {label}: {_cell(text, i, dst)}"
        )
    return pd.DatetimeIndex(parsed)


def _cell(column: pd.Series, i: int, problem: str) -> str:
    """Message for a bad cell: its text and ``problem``, or that it is missing."""
    value = column.iloc[i]
    return "missing value (empty or NaN)" if pd.isna(value) else f"{str(value)!r} {problem}"


def _fits(text: str, fmt: str) -> bool:
    """True if ``text`` parses with ``fmt``."""
    try:
        pd.to_datetime(text, format=fmt)
    except ValueError:
        return False
    return True


def _check_order(
    index: pd.DatetimeIndex, problems: _Problems, *, duplicates_allowed: bool = False
) -> None:
    """Report duplicate and backward timestamps (NaT rows are reported elsewhere)."""
    valid = ~np.asarray(index.isna())
    if not duplicates_allowed:
        merge = "; for tick data, load with duplicates='merge' (CLI: --merge-duplicates)"
        problems.add(index.duplicated() & valid,
                     lambda i: f"duplicate timestamp {index[i]}{merge}")
    positions = np.flatnonzero(valid)
    stamps = index.asi8[positions]
    back = np.zeros(len(index), dtype=np.bool_)
    back[positions[1:][stamps[1:] < stamps[:-1]]] = True
    earlier = "is earlier than the bar before it; sort the rows by time"
    problems.add(back, lambda i: f"timestamp {index[i]} {earlier}")


def _numbers(raw: pd.Series, column: str, problems: _Problems) -> npt.NDArray[np.float64]:
    """Convert one column to float64; report missing, non-numeric, infinite, non-positive."""
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    col = f"column {raw.name}"
    problems.add(np.isnan(values), lambda i: f"{col}: {_cell(raw, i, 'is not a number')}")
    problems.add(np.isinf(values), lambda i: f"{col}: infinite value")
    if column in _POSITIVE:
        problems.add(values <= 0, lambda i: f"{col}: price {values[i]:g} is not > 0")
    return values


def _check_values(v: dict[str, npt.NDArray[np.float64]], problems: _Problems) -> None:
    """Report OHLC rule violations and negative volume."""
    high, low, volume = v["high"], v["low"], v["volume"]
    problems.add(high < low, lambda i: f"high {high[i]:g} < low {low[i]:g}")
    for column in ("open", "close"):  # only where high >= low, else the message is noise
        outside = ((v[column] < low) | (v[column] > high)) & (high >= low)
        problems.add(outside, _outside(column, v))
    problems.add(volume < 0, lambda i: f"volume must be >= 0, got {volume[i]:g}")


def _outside(column: str, v: dict[str, npt.NDArray[np.float64]]) -> Callable[[int], str]:
    """Message maker for ``column`` outside [low, high]."""
    x, low, high = v[column], v["low"], v["high"]
    return lambda i: f"{column} {x[i]:g} outside [low {low[i]:g}, high {high[i]:g}]"


@dataclass(frozen=True, slots=True)
class BarsInfo:
    """A summary of a bar series, from :func:`describe_bars`.

    Attributes:
        rows: number of bars.
        start, end: first and last bar time (None when there are no bars).
        frequency: median spacing between bars in wall-clock time (None for < 2 bars).
        frequency_label: e.g. ``"1 day"``, ``"5 minutes"``; ``"irregular"`` when fewer than
            half the spacings equal the median; ``"unknown"`` for < 2 bars.
        gap_threshold: spacing above which a step counts as a gap (None: not assessed).
        gaps: (bar before, bar after) pairs where the spacing exceeds ``gap_threshold``;
            for intraday bars only steps within one calendar day count.
        sessions: intraday only: runs of bars split by breaks across calendar days.
    """

    rows: int
    start: pd.Timestamp | None
    end: pd.Timestamp | None
    frequency: pd.Timedelta | None
    frequency_label: str
    gap_threshold: pd.Timedelta | None
    gaps: tuple[tuple[pd.Timestamp, pd.Timestamp], ...]
    sessions: int | None


_DAY = pd.Timedelta(days=1)
_UNITS = (
    ("day", _DAY),
    ("hour", pd.Timedelta(hours=1)),
    ("minute", pd.Timedelta(minutes=1)),
    ("second", pd.Timedelta(seconds=1)),
    ("millisecond", pd.Timedelta(milliseconds=1)),
)


def _label(step: pd.Timedelta) -> str:
    """Human label of a spacing: ``"1 day"``, ``"5 minutes"``, ..."""
    for unit_name, unit in _UNITS:
        if step >= unit and step % unit == pd.Timedelta(0):
            count = step // unit
            return f"{count} {unit_name}{'' if count == 1 else 's'}"
    return str(step)  # sub-millisecond or zero


def describe_bars(bars: pd.DataFrame) -> BarsInfo:
    """Summarize bars from :func:`load_bars`: size, range, frequency, gaps and sessions.

    Daily or slower bars: a gap is spacing > max(4 days, 1.5 x frequency), so weekends and
    holidays are not gaps. Intraday bars: a gap is spacing > 1.5 x frequency within one
    calendar day; longer breaks across days separate sessions. Irregular intraday data
    (ticks) gets no gap list.

    Raises:
        DataError: ``bars`` is not indexed by a DatetimeIndex.
    """
    index = bars.index
    if not isinstance(index, pd.DatetimeIndex):
        raise DataError(f"bars need a DatetimeIndex, got {type(index).__name__}; use load_bars")
    rows = len(index)
    if rows < 2:
        first = index[0] if rows else None
        return BarsInfo(rows, first, first, None, "unknown", None, (), None)
    wall = (index.tz_localize(None) if index.tz is not None else index).as_unit("ns")
    steps = np.diff(wall.asi8)
    median = int(np.median(steps))
    frequency = pd.Timedelta(median)
    regular = float(np.mean(steps == median)) >= 0.5
    label = _label(frequency) if regular else "irregular"
    sessions: int | None = None
    threshold: pd.Timedelta | None = None
    if frequency >= _DAY:
        threshold = max(4 * _DAY, 1.5 * frequency)
        is_gap = steps > threshold.value
    else:
        days = wall.normalize().asi8
        same_day = days[1:] == days[:-1]
        long_step = steps > 1.5 * median
        sessions = 1 + int(np.count_nonzero(long_step & ~same_day))
        if regular:
            threshold = 1.5 * frequency
        is_gap = long_step & same_day & regular
    hits = np.flatnonzero(is_gap)
    gaps = tuple((index[int(i)], index[int(i) + 1]) for i in hits)
    return BarsInfo(rows, index[0], index[-1], frequency, label, threshold, gaps, sessions)


def format_bars_info(info: BarsInfo, source: str | os.PathLike[str], *, shown: int = 5) -> str:
    """Readable multi-line summary of ``info`` for ``source``, listing the first ``shown`` gaps."""
    lines = [f"source:    {os.fspath(source)}", f"rows:      {info.rows}"]
    if info.start is not None:
        lines.append(f"range:     {info.start} .. {info.end}")
    median = "" if info.frequency is None else f" (median spacing {_label(info.frequency)})"
    lines.append(f"frequency: {info.frequency_label}{median}")
    if info.sessions is not None:
        lines.append(f"sessions:  {info.sessions}")
    if info.gap_threshold is None:
        lines.append("gaps:      not assessed (irregular spacing or too few bars)")
        return "\n".join(lines)
    lines.append(f"gaps:      {len(info.gaps)} (spacing > {_label(info.gap_threshold)})")
    lines += [f"  {before} -> {after}" for before, after in info.gaps[:shown]]
    if len(info.gaps) > shown:
        lines.append(f"  ... and {len(info.gaps) - shown} more")
    return "\n".join(lines)


def bars_sha256(bars: pd.DataFrame) -> str:
    """sha256 of the bars' timestamps and values, independent of the file layout."""
    digest = hashlib.sha256(pd.DatetimeIndex(bars.index).asi8.tobytes())
    digest.update(np.ascontiguousarray(bars.to_numpy(dtype=np.float64)).tobytes())
    return digest.hexdigest()


def local_days(index: pd.DatetimeIndex) -> npt.NDArray[np.int64]:
    """Proleptic ordinal (``date.toordinal()``) of each time's date on the wall clock of
    its own timezone: the ``Timestamp.date()`` a trading day is keyed by, vectorized."""
    wall = index.tz_localize(None) if index.tz is not None else index
    days: npt.NDArray[np.int64] = wall.to_numpy().astype("datetime64[D]").astype(np.int64)
    return days + _EPOCH_ORDINAL
