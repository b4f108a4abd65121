"""The replay of historical bars a gateway serves, and bar aggregation for
reqHistoricalData.

Time: bar ``latest`` is the newest published bar and its time is "now"; nothing later
is ever served. :meth:`Replay.step` publishes the next bar. Bars keep their own times.
Bar sizes (``barSizeSetting``) at the data's own frequency return the bars as they
are; coarser ones aggregate them (first open, highest high, lowest low, last close,
summed volume), in bins of the data's time zone; finer ones are refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from tradinglib.data import BAR_COLUMNS, describe_bars
from tradinglib.exceptions import DataError, InputError
from tradinglib.gateway.framing import Field

DEFAULT_START_BAR = 250
"""Default first "now" bar: about a year of daily bars of history, far more than the
features' warm-up (49 bars)."""
MAX_HISTORY_ROWS = 10_000
"""Most bars one reqHistoricalData answer holds (the latest ones)."""

_UNITS = {"sec": "s", "secs": "s", "min": "min", "mins": "min", "hour": "h", "hours": "h",
          "day": "D", "days": "D", "week": "W", "weeks": "W", "month": "MS", "months": "MS"}
_SPANS = {"s": pd.Timedelta(seconds=1), "min": pd.Timedelta(minutes=1),
          "h": pd.Timedelta(hours=1), "D": pd.Timedelta(days=1), "W": pd.Timedelta(days=7),
          "MS": pd.Timedelta(days=31)}
_DURATIONS = {"S": pd.Timedelta(seconds=1), "D": pd.Timedelta(days=1),
              "W": pd.Timedelta(days=7), "M": pd.Timedelta(days=30),
              "Y": pd.Timedelta(days=365)}
_END = re.compile(r"(\d{8})(?:([ -])(\d\d:\d\d:\d\d))?(?: (\S+))?$")
_AGG = {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}


class HistoryError(InputError):
    """A market data request that cannot be served (answered with error 162 or 321)."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code

    def __reduce__(self) -> tuple[type[HistoryError], tuple[int, str]]:
        return HistoryError, (self.code, str(self))


@dataclass(frozen=True, slots=True)
class BarSize:
    """A parsed ``barSizeSetting``: ``count`` units of ``unit`` (a pandas rule unit),
    ``span`` the longest wall time one bar covers."""

    count: int
    unit: str
    span: pd.Timedelta

    @property
    def rule(self) -> str:
        """The pandas resample rule (weeks start on Monday)."""
        return f"{self.count}W-MON" if self.unit == "W" else f"{self.count}{self.unit}"

    @property
    def daily(self) -> bool:
        """True for bars of a day or longer (dated ``YYYYMMDD``)."""
        return self.unit in ("D", "W", "MS")


def parse_bar_size(text: str) -> BarSize:
    """Parse ``"5 mins"``, ``"1 hour"``, ``"1 day"``, ...

    Raises:
        HistoryError: (code 162) an unknown bar size.
    """
    parts = text.split()
    unit = _UNITS.get(parts[1].lower()) if len(parts) == 2 and parts[0].isdigit() else None
    if unit is None or int(parts[0]) <= 0:
        raise HistoryError(162, f"Historical Market Data Service error message:invalid bar "
                                f"size {text!r}; use e.g. '5 secs', '1 min', '1 hour', '1 day'")
    return BarSize(int(parts[0]), unit, int(parts[0]) * _SPANS[unit])


def parse_duration(text: str) -> pd.Timedelta:
    """Parse a ``durationStr`` (``"N S|D|W|M|Y"``; a month is 30 days, a year 365).

    Raises:
        HistoryError: (code 162) an unknown duration.
    """
    parts = text.split()
    if len(parts) != 2 or not parts[0].isdigit() or parts[1].upper() not in _DURATIONS:
        raise HistoryError(162, f"Historical Market Data Service error message:invalid "
                                f"duration {text!r}; use e.g. '3600 S', '5 D', '1 Y'")
    return int(parts[0]) * _DURATIONS[parts[1].upper()]


class Replay:
    """Historical bars published one at a time.

    Args:
        bars: OHLCV bars as :func:`tradinglib.data.load_bars` returns them.
        start: the first "now" bar: a bar index (negative counts from the end), a time
            (the first bar at or after it) or None for :data:`DEFAULT_START_BAR` (or the
            last bar of a shorter series).

    Raises:
        DataError: bars without the OHLCV columns or a tz-aware, increasing index.
        InputError: ``start`` outside the bars.
    """

    def __init__(self, bars: pd.DataFrame, start: int | str | pd.Timestamp | None) -> None:
        if not isinstance(bars, pd.DataFrame) or not isinstance(bars.index, pd.DatetimeIndex):
            raise DataError("the gateway needs bars as a DataFrame with a DatetimeIndex; "
                            "use tradinglib.data.load_bars")
        missing = [c for c in BAR_COLUMNS if c not in bars.columns]
        if missing:
            raise DataError(f"the gateway's bars lack column(s) {', '.join(missing)}; "
                            "use tradinglib.data.load_bars")
        if bars.index.tz is None or not (bars.index.is_monotonic_increasing
                                         and bars.index.is_unique) or len(bars) == 0:
            raise DataError("the gateway's bars need a non-empty, tz-aware, strictly "
                            "increasing DatetimeIndex (load_bars gives one)")
        self.bars = bars.loc[:, list(BAR_COLUMNS)]
        self._values = self.bars.to_numpy(dtype=np.float64)
        self.times = pd.DatetimeIndex(bars.index)
        info = describe_bars(bars)
        self.frequency = info.frequency or pd.Timedelta(days=1)
        self._frequency_label = info.frequency_label
        self.latest = self._start(start)

    def _start(self, start: int | str | pd.Timestamp | None) -> int:
        if start is None:
            return min(DEFAULT_START_BAR, len(self.times) - 1)
        return self.position(start, what="start")

    def position(self, when: int | str | pd.Timestamp, *, what: str) -> int:
        """The bar index of ``when``: an index (negative from the end) or the first bar
        at or after a time (naive times are in the bars' zone).

        Raises:
            InputError: out of range, unparseable, or after the last bar.
        """
        n = len(self.times)
        if isinstance(when, bool):
            raise InputError(f"{what} must be a bar index or a time, got {when!r}")
        if isinstance(when, int | np.integer):
            if not -n <= when < n:
                raise InputError(f"{what} bar index {when} is outside the {n} bars "
                                 f"(0..{n - 1}, or negative from the end)")
            return int(when) % n
        try:
            stamp = pd.Timestamp(when)
        except ValueError:
            raise InputError(f"{what} {when!r} is neither a bar index nor a time such as "
                             f"'2016-01-04'") from None
        stamp = stamp.tz_localize(self.times.tz) if stamp.tzinfo is None else stamp
        index = int(self.times.searchsorted(stamp))
        if index >= n:
            raise InputError(f"{what} {when} is after the last bar ({self.times[-1]})")
        return index

    @property
    def now(self) -> pd.Timestamp:
        """The time of the latest published bar."""
        return pd.Timestamp(self.times[self.latest])

    @property
    def finished(self) -> bool:
        """True when the last bar is published."""
        return self.latest + 1 >= len(self.times)

    def step(self) -> bool:
        """Publish the next bar; False (nothing changes) when the data has run out."""
        if self.finished:
            return False
        self.latest += 1
        return True

    def close(self, index: int) -> float:
        """Close of bar ``index``, USD."""
        return float(self._values[index, 3])

    def ohlcv(self, index: int) -> tuple[float, float, float, float, float]:
        """Open, high, low, close (USD) and volume of bar ``index``."""
        o, h, low, c, v = (float(x) for x in self._values[index])
        return o, h, low, c, v

    def history(self, bar_size: str, duration: str, end: str, format_date: int,
                shown: int) -> list[list[Field]]:
        """Rows (date, open, high, low, close, volume, wap, count) of a reqHistoricalData
        answer: ``bar_size`` bars over ``duration`` up to ``end`` (empty: bar
        ``shown``; never later), at most :data:`MAX_HISTORY_ROWS` (the latest).

        Raises:
            HistoryError: a bad bar size, duration or end, or no bars in the range.
        """
        size = self._bar_size(bar_size)
        last = self._end_index(end, shown)
        if last < 0:
            raise HistoryError(162, "Historical Market Data Service error message:HMDS "
                                    f"query returned no data: {end!r} is before the first bar")
        first = int(self.times.searchsorted(self.times[last] - parse_duration(duration),
                                            side="right"))
        first = self._bin_start(min(first, last), size)  # whole bars only
        frame = self._aggregate(self.bars.iloc[first:last + 1], size)
        if frame.empty:
            raise HistoryError(162, "Historical Market Data Service error message:HMDS "
                                    f"query returned no data up to {self.times[last]}")
        return self._rows(frame.iloc[-MAX_HISTORY_ROWS:], size, format_date)

    def bar_row(self, bar_size: str, index: int, format_date: int) -> list[Field]:
        """The ``bar_size`` bar that holds bar ``index``, built from bars up to it (for
        historicalDataUpdate).

        Raises:
            HistoryError: a bad bar size.
        """
        size = self._bar_size(bar_size)
        frame = self._aggregate(self.bars.iloc[self._bin_start(index, size):index + 1], size)
        return self._rows(frame.iloc[-1:], size, format_date)[0]

    def _bar_size(self, text: str) -> BarSize:
        size = parse_bar_size(text)
        if size.span < self.frequency:
            raise HistoryError(162, f"Historical Market Data Service error message:bar size "
                                    f"{text!r} is finer than the replayed data "
                                    f"({self._frequency_label} bars); ask for at least that")
        return size

    def _end_index(self, end: str, shown: int) -> int:
        if not end:
            return shown
        found = _END.match(end.strip())
        if found is None:
            raise HistoryError(162, f"Historical Market Data Service error message:bad end "
                                    f"date/time {end!r}; use 'YYYYMMDD HH:MM:SS UTC' or ''")
        day, sep, clock, zone = found.groups()
        zone = "UTC" if sep == "-" else zone or str(self.times.tz)
        try:
            stamp = pd.Timestamp(f"{day} {clock or '23:59:59'}").tz_localize(zone)
        except (ValueError, KeyError):
            raise HistoryError(162, f"Historical Market Data Service error message:unknown "
                                    f"time zone in end date/time {end!r}") from None
        return min(shown, int(self.times.searchsorted(stamp, side="right")) - 1)

    def _bin_start(self, index: int, size: BarSize) -> int:
        """Index of the first bar in the ``size`` bin that holds bar ``index``."""
        if size.span == self.frequency:
            return index
        one = pd.Series(0, index=self.times[index:index + 1])
        label = one.resample(size.rule, label="left", closed="left").sum().index[0]
        return int(self.times.searchsorted(label))

    def _aggregate(self, frame: pd.DataFrame, size: BarSize) -> pd.DataFrame:
        if size.span == self.frequency:
            return frame
        binned = frame.resample(size.rule, label="left", closed="left")
        out = binned.agg(_AGG)
        out["count"] = binned["close"].count()
        return out.dropna(subset=["open"])

    def _rows(self, frame: pd.DataFrame, size: BarSize, format_date: int) -> list[list[Field]]:
        counts = frame["count"].to_numpy() if "count" in frame else np.ones(len(frame), int)
        rows: list[list[Field]] = []
        prices = frame.loc[:, list(BAR_COLUMNS)].itertuples(name=None)
        for i, (time, o, h, low, c, v) in enumerate(prices):
            stamp = pd.Timestamp(time)
            if size.daily:
                date = f"{stamp:%Y%m%d}"
            elif format_date == 2:
                date = str(int(stamp.timestamp()))
            else:
                date = f"{stamp:%Y%m%d %H:%M:%S} {stamp.tz}"
            rows.append([date, o, h, low, c, v, round((h + low + c) / 3, 6), int(counts[i])])
        return rows
