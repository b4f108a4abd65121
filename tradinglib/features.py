"""The 26-float observation: every feature named, computed and documented here, once.

An observation is 22 market features (18 computed from OHLCV bars, 4 from the bar's
timestamp) followed by 4 account features (position and P&L). :data:`FEATURES` is the
single source of truth; :data:`FEATURE_NAMES` and the group lists derive from it, and
:func:`describe_features` renders it for the docs and the CLI.

Market features are computed once per data set by :func:`market_features`, vectorized and
causal: row ``t`` uses bars up to and including ``t`` only (trailing windows, recursive
EWMs seeded from their first full window, nothing centred, back-filled or normalised with
whole-series statistics). Rows without full history for every feature (the first
:data:`WARMUP_BARS`) are dropped, never filled. Account features are computed per step by
:func:`account_features` with plain float arithmetic. Every value is clipped to
``[-FEATURE_CLIP, FEATURE_CLIP]`` so a built observation always passes
:func:`tradinglib.validation.validate_observation`.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from tradinglib.data import BAR_COLUMNS
from tradinglib.exceptions import DataError, InputError, ObservationError
from tradinglib.types import Observation

FEATURE_VERSION: Final = "1"
"""Bumped whenever a feature's name, order, formula, window or scaling changes."""

FEATURE_CLIP: Final = 100.0
"""Every feature value is clipped to ``[-FEATURE_CLIP, FEATURE_CLIP]``."""

_CLIPPED = f"clip +/-{FEATURE_CLIP:g}"


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    """One observation feature.

    Attributes:
        name: column / feature name, unique, snake_case.
        group: ``"market"`` (from OHLCV), ``"time"`` (from the bar timestamp) or
            ``"account"`` (from the portfolio state).
        meaning: what the value measures and how it is computed.
        window: bars of history, including the current bar, that the first valid value
            needs (1 for single-bar features, 0 for account features).
        scaling: units and scaling of the value, including the clip.
    """

    name: str
    group: str
    meaning: str
    window: int
    scaling: str


def _ret(n: int) -> FeatureSpec:
    return FeatureSpec(
        f"ret_{n}", "market", f"log return of close over {n} bar{'s' if n > 1 else ''}: "
        f"ln(close_t / close_t-{n})", n + 1, f"percent (x100), {_CLIPPED}",
    )


def _vol(n: int) -> FeatureSpec:
    return FeatureSpec(
        f"vol_{n}", "market", f"population std (ddof=0) of the last {n} 1-bar log returns",
        n + 1, f"percent (x100), {_CLIPPED}",
    )


FEATURES: Final[tuple[FeatureSpec, ...]] = (
    _ret(1),
    _ret(5),
    _ret(10),
    _ret(20),
    _vol(10),
    _vol(20),
    FeatureSpec(
        "rsi_14", "market",
        "Wilder RSI of close changes over 14 bars (Wilder averages seeded with the mean of "
        "the first 14 gains/losses); 0 when there was no change at all",
        15, f"(RSI - 50) / 50 in [-1, 1], {_CLIPPED}",
    ),
    FeatureSpec(
        "macd", "market",
        "MACD line: EMA12(close) - EMA26(close), divided by close (EMAs seeded with the SMA "
        "of their first window)",
        26, f"percent of close (x100), {_CLIPPED}",
    ),
    FeatureSpec(
        "macd_signal", "market", "EMA9 of the macd feature (seeded with its first SMA9)",
        34, f"percent of close (x100), {_CLIPPED}",
    ),
    FeatureSpec(
        "macd_hist", "market", "macd - macd_signal",
        34, f"percent of close (x100), {_CLIPPED}",
    ),
    FeatureSpec(
        "bb_pos_20", "market",
        "Bollinger position: (close - SMA20) / (2 * std20), std ddof=0; 0 when std20 is 0",
        20, f"ratio, +/-1 at the bands, {_CLIPPED}",
    ),
    FeatureSpec(
        "bb_width_20", "market", "Bollinger width: 4 * std20 / SMA20 (std ddof=0)",
        20, f"percent (x100), {_CLIPPED}",
    ),
    FeatureSpec(
        "dist_sma_10", "market", "distance of close from its SMA10: close / SMA10 - 1",
        10, f"percent (x100), {_CLIPPED}",
    ),
    FeatureSpec(
        "dist_sma_50", "market", "distance of close from its SMA50: close / SMA50 - 1",
        50, f"percent (x100), {_CLIPPED}",
    ),
    FeatureSpec(
        "atr_14", "market",
        "Wilder ATR14 / close; true range max(high-low, |high-close_t-1|, |low-close_t-1|), "
        "Wilder average seeded with the mean of the first 14 true ranges",
        15, f"percent of close (x100), {_CLIPPED}",
    ),
    FeatureSpec(
        "volume_z_20", "market",
        "z-score of volume over the last 20 bars: (volume - mean20) / std20, std ddof=0; "
        "0 when std20 is 0 (e.g. volume always 0)",
        20, f"standard deviations, {_CLIPPED}",
    ),
    FeatureSpec(
        "bar_range", "market", "range of the bar: (high - low) / close",
        1, f"percent (x100), {_CLIPPED}",
    ),
    FeatureSpec(
        "close_loc", "market",
        "where close sits in the bar: (close - low) / (high - low); 0.5 when high == low",
        1, "ratio in [0, 1] (clipped to it)",
    ),
    FeatureSpec(
        "tod_sin", "time", "sine of the time of day of the bar timestamp, in its own "
        "timezone, as an angle over 24 h", 1, "[-1, 1]",
    ),
    FeatureSpec(
        "tod_cos", "time", "cosine of the time of day (as tod_sin); 1 at midnight", 1, "[-1, 1]",
    ),
    FeatureSpec(
        "dow_sin", "time", "sine of the weekday (Monday = 0) as an angle over 7 days",
        1, "[-1, 1]",
    ),
    FeatureSpec(
        "dow_cos", "time", "cosine of the weekday (as dow_sin); 1 on Monday", 1, "[-1, 1]",
    ),
    FeatureSpec(
        "position_value", "account", "signed position (shares) x price / max_position_value",
        0, f"fraction of the position limit, {_CLIPPED}",
    ),
    FeatureSpec(
        "unrealized_pnl", "account", "position x (price - avg_cost) / max_daily_loss",
        0, f"fraction of the daily loss limit, {_CLIPPED}",
    ),
    FeatureSpec(
        "realized_pnl", "account", "the trading day's realized P&L / max_daily_loss",
        0, f"fraction of the daily loss limit, {_CLIPPED}",
    ),
    FeatureSpec(
        "cash_fraction", "account",
        "cash / equity with equity = cash + position x price; 0 when equity <= 0",
        0, f"ratio, {_CLIPPED}",
    ),
)
"""The observation, in order: 18 market, 4 time and 4 account features."""

FEATURE_NAMES: Final[tuple[str, ...]] = tuple(f.name for f in FEATURES)
"""Names of the 26 observation features, in observation order."""

MARKET_FEATURE_NAMES: Final[tuple[str, ...]] = tuple(
    f.name for f in FEATURES if f.group in ("market", "time")
)
"""The first 22 features (18 market + 4 time): the columns of :func:`market_features`."""

ACCOUNT_FEATURE_NAMES: Final[tuple[str, ...]] = tuple(
    f.name for f in FEATURES if f.group == "account"
)
"""The last 4 features: the output of :func:`account_features`."""

WARMUP_BARS: Final[int] = max(f.window for f in FEATURES) - 1
"""Leading bars dropped by :func:`market_features`: the longest feature window minus one."""

if (
    len(FEATURE_NAMES) != 26
    or len(set(FEATURE_NAMES)) != 26
    or FEATURE_NAMES != MARKET_FEATURE_NAMES + ACCOUNT_FEATURE_NAMES
    or len(ACCOUNT_FEATURE_NAMES) != 4
):  # pragma: no cover - guards edits of the table above
    raise RuntimeError("FEATURES must hold 26 unique names: 22 market/time then 4 account")

_N_MARKET: Final = len(MARKET_FEATURE_NAMES)
_N_ACCOUNT: Final = len(ACCOUNT_FEATURE_NAMES)
_ROLLING_CHUNK: Final = 1 << 13  # windows per chunk: its ~10 work arrays stay in cache
_MICROS_PER_DAY: Final = 86_400_000_000

_F64 = npt.NDArray[np.float64]


# --------------------------------------------------------------------------- market


def _check_bars(bars: object) -> tuple[pd.DatetimeIndex, dict[str, _F64]]:
    """Return the index and the OHLCV columns as float64 arrays, or raise DataError."""
    if not isinstance(bars, pd.DataFrame):
        raise DataError(
            f"bars must be a pandas DataFrame with columns {list(BAR_COLUMNS)}, "
            f"got {type(bars).__name__}; read files with tradinglib.data.load_bars"
        )
    missing = [c for c in BAR_COLUMNS if c not in bars.columns]
    if missing:
        raise DataError(
            f"bars lack column(s) {missing}; need {list(BAR_COLUMNS)} (lower case), "
            f"got {[str(c) for c in bars.columns]}"
        )
    index = bars.index
    if not isinstance(index, pd.DatetimeIndex):
        raise DataError(
            f"bars need a DatetimeIndex (bar timestamps), got {type(index).__name__}"
        )
    needed = WARMUP_BARS + 1
    if len(bars) < needed:
        raise DataError(
            f"bars have {len(bars)} row(s); market features need at least {needed} "
            f"({WARMUP_BARS} warm-up bars + 1), supply a longer history"
        )
    if not (index.is_monotonic_increasing and index.is_unique):
        raise DataError("bar timestamps must be strictly increasing (sorted, no duplicates)")
    cols: dict[str, _F64] = {}
    for name in BAR_COLUMNS:
        try:
            values = bars[name].to_numpy(dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise DataError(f"bars column {name!r} is not numeric: {exc}") from None
        bad = ~np.isfinite(values)
        if name == "volume":
            bad |= values < 0
            rule = "finite and >= 0"
        else:
            bad |= values <= 0
            rule = "finite and > 0"
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"bars column {name!r} must be {rule}: {int(bad.sum())} bad value(s), "
                f"first {values[i]!r} at {index[i]} (row {i}); clean the data first"
            )
        cols[name] = values
    return index, cols


def _shift(x: _F64, n: int) -> _F64:
    """``x`` delayed by ``n`` bars, NaN for the first ``n``."""
    out = np.full_like(x, np.nan)
    out[n:] = x[:-n]
    return out


def _rolling_mean_std(x: _F64, window: int, *, with_std: bool = True) -> tuple[_F64, _F64]:
    """Trailing mean and population std (ddof=0) over ``window`` values, NaN before.

    Each window is reduced on its own (no running sums), so a value depends on exactly
    its window; a window whose values are all equal has std exactly 0. With
    ``with_std=False`` the std is left NaN (cheaper when only the mean is needed).

    The values are those of ``sliding_window_view(x, window).mean(axis=1)`` and
    ``.std(axis=1)``, bit for bit, computed across all windows at once (see
    :func:`_window_sum`) rather than window by window.
    """
    n = len(x)
    mean = np.full(n, np.nan)
    std = np.full(n, np.nan)
    if n < window:
        return mean, std
    flat_all = _flat_windows(x, window) if with_std else None
    count = n - window + 1
    for start in range(0, count, _ROLLING_CHUNK):  # chunks bound memory and fit the cache
        stop = min(start + _ROLLING_CHUNK, count)
        s = slice(window - 1 + start, window - 1 + stop)

        def value(k: int, start: int = start, stop: int = stop) -> _F64:
            return x[start + k:stop + k]  # the k-th value of each window in the chunk

        m = _window_sum(value, window) / window
        mean[s] = m
        if flat_all is not None:
            scratch = np.empty(stop - start)

            def square(k: int, start: int = start, stop: int = stop, m: _F64 = m,
                       d: _F64 = scratch) -> _F64:
                np.subtract(x[start + k:stop + k], m, out=d)
                return np.multiply(d, d, out=d)

            var = _window_sum(square, window) / window
            std[s] = np.where(flat_all[start:stop], 0.0, np.sqrt(var))
    return mean, std


def _flat_windows(x: _F64, window: int) -> npt.NDArray[np.bool_]:
    """Per full window of ``x``: True when its values are all equal and not NaN (exact,
    as max == min), counted from the running number of changes between neighbours."""
    n = len(x)
    changes = np.concatenate(([0], np.cumsum(x[1:] != x[:-1])))
    flat: npt.NDArray[np.bool_] = ((changes[window - 1:] == changes[:n - window + 1])
                                   & ~np.isnan(x[window - 1:]))
    return flat


def _window_sum(term: Callable[[int], _F64], window: int) -> _F64:
    """``sum(term(k) for k in range(window))``, element-wise, added in the order numpy's
    ``add.reduce`` adds ``window`` contiguous values (its pairwise summation: below 8
    values one running sum; up to 128, 8 interleaved partial sums combined as a tree,
    then the rest one by one; beyond, the two halves recursively; all started from 0.0),
    so each element has the bits of ``np.sum`` over its window. Column by column over
    all windows, this is several times faster than reducing each short window.
    ``term`` may return the same buffer each time: a term is added before the next.
    """

    def pairwise(first: int, n: int) -> _F64:
        if n < 8:
            total = term(first) + 0.0
            for k in range(first + 1, first + n):
                total += term(k)
            return total
        if n <= 128:
            partial = [term(first + k).copy() for k in range(8)]
            stop = first + n - n % 8
            for block in range(first + 8, stop, 8):
                for k in range(8):
                    partial[k] += term(block + k)
            total = (partial[0] + partial[1]) + (partial[2] + partial[3])
            total += (partial[4] + partial[5]) + (partial[6] + partial[7])
            for k in range(stop, first + n):
                total += term(k)
            return total
        half = n // 2
        half -= half % 8
        total = pairwise(first, half)
        total += pairwise(first + half, n - half)
        return total

    result = pairwise(0, window)
    result += 0.0  # numpy adds the sum to an initial 0.0 (turns -0.0 into 0.0)
    return result


def _seeded_ewm(x: _F64, alpha: float, span: int) -> _F64:
    """Recursive EWM ``y_t = y_t-1 + alpha * (x_t - y_t-1)`` seeded with an SMA.

    The first value sits where ``span`` values are available (counted from the first
    non-NaN of ``x``) and equals their mean; earlier values are NaN. Leading NaNs only.
    """
    valid = np.flatnonzero(~np.isnan(x))
    if len(valid) < span:
        return np.full(len(x), np.nan)
    first = int(valid[0])
    seed_at = first + span - 1
    seeded = x.copy()
    seeded[:seed_at] = np.nan
    seeded[seed_at] = x[first : seed_at + 1].mean()
    # NaN until the seed, as the EWM of leading NaNs is NaN
    ewm = pd.Series(seeded, copy=False).ewm(alpha=alpha, adjust=False).mean()
    result: _F64 = ewm.to_numpy(np.float64)
    return result


def _safe_div(num: _F64, den: _F64, where_zero: float) -> _F64:
    """``num / den`` with ``where_zero`` where ``den == 0`` (NaN stays NaN)."""
    out = np.full_like(num, where_zero)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _wall_clock(index: pd.DatetimeIndex) -> tuple[_F64, _F64]:
    """Seconds since midnight (with microseconds) and weekday (Monday = 0) of each time
    on its own timezone's wall clock: the ``hour * 3600 + minute * 60 + second +
    microsecond / 1e6`` and ``day_of_week`` of the index, bit for bit, from its integers
    in one pass instead of one pass per field."""
    wall = index.tz_localize(None) if index.tz is not None else index
    micros = wall.to_numpy().astype("datetime64[us]").astype(np.int64)
    days, in_day = np.divmod(micros, _MICROS_PER_DAY)
    whole, fraction = np.divmod(in_day, 1_000_000)
    seconds = whole.astype(np.float64) + fraction.astype(np.float64) / 1e6
    return seconds, ((days + 3) % 7).astype(np.float64)  # 1970-01-01 was a Thursday


def _raw_market_features(bars: pd.DataFrame) -> _F64:
    """All market/time features of every bar: float64 of shape (22, bars), clipped, NaN
    where history is short; rows in :data:`MARKET_FEATURE_NAMES` order.

    Raises:
        DataError: as :func:`market_features`.
    """
    index, c = _check_bars(bars)
    close, high, low, volume = c["close"], c["high"], c["low"], c["volume"]
    log_close = np.log(close)
    prev_close = _shift(close, 1)
    r1 = log_close - _shift(log_close, 1)
    f: dict[str, _F64] = {}

    for n in (1, 5, 10, 20):
        f[f"ret_{n}"] = (log_close - _shift(log_close, n)) * 100.0
    for n in (10, 20):
        vol = _rolling_mean_std(r1[1:], n)[1]
        f[f"vol_{n}"] = np.concatenate(([np.nan], vol)) * 100.0

    change = close - prev_close
    gain = _seeded_ewm(np.maximum(change, 0.0), 1 / 14, 14)  # NaN stays NaN
    loss = _seeded_ewm(np.maximum(-change, 0.0), 1 / 14, 14)
    f["rsi_14"] = _safe_div(gain - loss, gain + loss, 0.0)  # == (RSI - 50) / 50

    ema12 = _seeded_ewm(close, 2 / 13, 12)
    ema26 = _seeded_ewm(close, 2 / 27, 26)
    macd = (ema12 - ema26) / close * 100.0
    signal = _seeded_ewm(macd, 2 / 10, 9)
    f["macd"], f["macd_signal"], f["macd_hist"] = macd, signal, macd - signal

    sma20, std20 = _rolling_mean_std(close, 20)
    f["bb_pos_20"] = _safe_div(close - sma20, 2.0 * std20, 0.0)
    f["bb_width_20"] = 4.0 * std20 / sma20 * 100.0
    for n in (10, 50):
        sma = _rolling_mean_std(close, n, with_std=False)[0]
        f[f"dist_sma_{n}"] = (close / sma - 1.0) * 100.0

    true_range = np.fmax(high - low, np.fmax(np.abs(high - prev_close), np.abs(low - prev_close)))
    true_range[0] = np.nan  # needs the previous close
    f["atr_14"] = _seeded_ewm(true_range, 1 / 14, 14) / close * 100.0

    vmean, vstd = _rolling_mean_std(volume, 20)
    f["volume_z_20"] = _safe_div(volume - vmean, vstd, 0.0)
    f["bar_range"] = (high - low) / close * 100.0
    f["close_loc"] = np.clip(_safe_div(close - low, high - low, 0.5), 0.0, 1.0)

    seconds, weekday = _wall_clock(index)
    tod = 2.0 * np.pi * seconds / 86400.0
    dow = 2.0 * np.pi * weekday / 7.0
    f["tod_sin"], f["tod_cos"] = np.sin(tod), np.cos(tod)
    f["dow_sin"], f["dow_cos"] = np.sin(dow), np.cos(dow)

    raw = np.empty((_N_MARKET, len(close)))
    for k, name in enumerate(MARKET_FEATURE_NAMES):
        raw[k] = f[name]
    return np.clip(raw, -FEATURE_CLIP, FEATURE_CLIP, out=raw)


def market_features(bars: pd.DataFrame) -> pd.DataFrame:
    """The 22 market and time features of every bar with full history.

    Args:
        bars: OHLCV bars as returned by :func:`tradinglib.data.load_bars`: a strictly
            increasing DatetimeIndex (tz-aware or naive; time features use its own
            timezone) and float columns ``open, high, low, close, volume`` (prices > 0,
            volume >= 0, all finite). Extra columns are ignored.

    Returns:
        float32 DataFrame with columns :data:`MARKET_FEATURE_NAMES` in order, indexed like
        ``bars`` minus the first :data:`WARMUP_BARS` rows (rows lacking history for any
        feature are dropped, never filled). Row ``t`` depends only on bars up to ``t``.

    Raises:
        DataError: ``bars`` is not a DataFrame, lacks a column, has no DatetimeIndex,
            unsorted or duplicate timestamps, a non-numeric, non-finite or non-positive
            price, negative volume, or fewer than ``WARMUP_BARS + 1`` rows.
    """
    raw = _raw_market_features(bars)
    complete = np.flatnonzero(~np.isnan(raw).any(axis=0))
    return pd.DataFrame(
        raw[:, _as_slice(complete)].astype(np.float32).T,
        index=bars.index[complete],
        columns=list(MARKET_FEATURE_NAMES),
        copy=False,  # the float32 array is new and ours: no second copy
    )


def _as_slice(positions: npt.NDArray[np.intp]) -> slice | npt.NDArray[np.intp]:
    """``positions`` as a slice when they are one contiguous run (selecting with a slice
    makes a view, not a copy), else unchanged."""
    if len(positions) and positions[-1] - positions[0] + 1 == len(positions):
        return slice(int(positions[0]), int(positions[-1]) + 1)
    return positions


# -------------------------------------------------------------------------- account


def account_features(
    *,
    position: float,
    price: float,
    avg_cost: float,
    day_realized_pnl: float,
    cash: float,
    max_position_value: float,
    max_daily_loss: float,
) -> npt.NDArray[np.float32]:
    """The 4 account features, in :data:`ACCOUNT_FEATURE_NAMES` order, as float32.

    Args:
        position: signed position in shares (negative when short).
        price: current price per share (account currency).
        avg_cost: average cost per share of the open position (any value when flat).
        day_realized_pnl: realized P&L of the current trading day (account currency).
        cash: cash balance (account currency).
        max_position_value: position limit (account currency, > 0).
        max_daily_loss: daily loss limit (account currency, > 0).

    Returns:
        ``[position_value, unrealized_pnl, realized_pnl, cash_fraction]``, each clipped to
        ``[-FEATURE_CLIP, FEATURE_CLIP]``; unrealized P&L is ``position * (price -
        avg_cost)``, equity ``cash + position * price`` (cash_fraction 0 if equity <= 0).

    Raises:
        ObservationError: an argument is NaN or infinite (named in the message).
        InputError: a limit is not > 0.
    """
    # the same float64 arithmetic as account_features_ahead on Python numbers (a few
    # times cheaper for one bar); anything unusual (another type, a limit <= 0, a
    # non-finite input or result) takes the array path, which raises or clips as
    # documented
    args = (position, price, avg_cost, day_realized_pnl, cash, max_position_value,
            max_daily_loss)
    usual = all(type(a) is float or type(a) is int for a in args) \
        and max_position_value > 0 and max_daily_loss > 0
    if usual:  # as floats, as numpy takes them (int arithmetic would lose a zero's sign)
        pos, px, avg, pnl, cash_, limit, loss = (float(a) for a in args)
        exposure = px * pos
        equity = exposure + cash_
        values = (exposure / limit, (px - avg) * pos / loss, pnl / loss,
                  cash_ / equity if equity > 0 else 0.0)
        usual = math.isfinite(sum(values) + pos + px + avg + cash_ + limit + loss)
    if usual:
        return np.array([min(max(v, -FEATURE_CLIP), FEATURE_CLIP) for v in values],
                        dtype=np.float32)
    rows = account_features_ahead(
        position=position, prices=np.array([price], dtype=np.float64), avg_cost=avg_cost,
        day_realized_pnl=np.array([day_realized_pnl], dtype=np.float64), cash=cash,
        max_position_value=max_position_value, max_daily_loss=max_daily_loss,
    )
    first: npt.NDArray[np.float32] = rows[0]
    return first


def account_features_ahead(
    *,
    position: float,
    prices: npt.NDArray[np.float64],
    avg_cost: float,
    day_realized_pnl: npt.NDArray[np.float64],
    cash: float,
    max_position_value: float,
    max_daily_loss: float,
) -> npt.NDArray[np.float32]:
    """:func:`account_features` for a run of bars over which the account does not trade.

    ``prices`` and ``day_realized_pnl`` hold one value per bar; the position, average
    cost and cash stay as given. Returns float32 of shape ``(len(prices), 4)``. This is
    the one implementation of the account features; :func:`account_features` is the
    single-bar case. Raises as :func:`account_features`.
    """
    if not (max_position_value > 0 and max_daily_loss > 0):
        raise InputError(
            f"limits must be > 0: max_position_value={max_position_value!r}, "
            f"max_daily_loss={max_daily_loss!r}"
        )
    out = np.empty((_N_ACCOUNT, len(prices)))  # a row per feature, transposed at the end
    with np.errstate(over="ignore", invalid="ignore"):  # huge values: the clip bounds them
        exposure = prices * position
        equity = exposure + cash
        np.divide(exposure, max_position_value, out=out[0])
        unrealized = np.subtract(prices, avg_cost, out=out[1])
        unrealized *= position
        unrealized /= max_daily_loss
        np.divide(day_realized_pnl, max_daily_loss, out=out[2])
        out[3] = 0.0  # cash_fraction where equity <= 0
        np.divide(cash, equity, out=out[3], where=equity > 0)
        total = float(np.add.reduce(out, axis=None))
    # a non-finite input leaves a non-finite value (or sum) behind: one check for all
    if not math.isfinite(total + position + avg_cost + cash + max_position_value
                         + max_daily_loss):
        _raise_non_finite(position, prices, avg_cost, day_realized_pnl, cash,
                          max_position_value, max_daily_loss)
    np.maximum(out, -FEATURE_CLIP, out=out)  # the clip, as two ufuncs (np.clip's wrapper
    np.minimum(out, FEATURE_CLIP, out=out)   # costs more than the work at a few rows)
    return np.ascontiguousarray(out.T, dtype=np.float32)


_ACCOUNT_ARGS: Final = ("position", "price", "avg_cost", "day_realized_pnl", "cash",
                        "max_position_value", "max_daily_loss")


def _raise_non_finite(*args: float | npt.NDArray[np.float64]) -> None:
    for name, value in zip(_ACCOUNT_ARGS, args, strict=True):
        bad = np.flatnonzero(~np.isfinite(np.atleast_1d(value)))
        if bad.size:
            shown = np.atleast_1d(value)[bad[0]]
            raise ObservationError(f"account_features: {name}={float(shown)!r} is not finite")
    # finite arguments whose sum overflows: let the arithmetic and the clip handle them


def build_observation(market_row: npt.ArrayLike, account: npt.ArrayLike) -> Observation:
    """Concatenate 22 market/time features and 4 account features into float32 (26,).

    Args:
        market_row: one row of :func:`market_features` (``.to_numpy()`` of it), 22 values.
        account: the output of :func:`account_features`, 4 values.

    Raises:
        ObservationError: a part has the wrong shape.
    """
    market = np.asarray(market_row)
    acct = np.asarray(account)
    if market.shape != (_N_MARKET,) or acct.shape != (_N_ACCOUNT,):
        raise ObservationError(
            f"build_observation needs {_N_MARKET} market and {_N_ACCOUNT} account values, "
            f"got shapes {market.shape} and {acct.shape}"
        )
    out = np.empty(_N_MARKET + _N_ACCOUNT, dtype=np.float32)
    out[:_N_MARKET] = market
    out[_N_MARKET:] = acct
    return out


# ------------------------------------------------------------------------------ docs


def describe_features(width: int = 100) -> str:
    """A plain-text table of :data:`FEATURES` (name, group, window, meaning, scaling).

    Long meanings and scalings wrap inside their column so lines stay near ``width``
    characters.
    """
    header = ("#", "name", "group", "window", "meaning", "scaling")
    cells = [
        (str(i), f.name, f.group, str(f.window) if f.window else "-", f.meaning, f.scaling)
        for i, f in enumerate(FEATURES)
    ]
    fixed = [max(len(r[k]) for r in [header, *cells]) for k in range(4)]
    free = max(width - sum(fixed) - 2 * (len(header) - 1), 40)
    scaling_w = min(max(len(r[5]) for r in cells), max(free // 3, 28))
    widths = [*fixed, free - scaling_w, scaling_w]

    def render(row: tuple[str, ...]) -> list[str]:
        wrapped = [textwrap.wrap(v, w) or [""] for v, w in zip(row, widths, strict=True)]
        height = max(len(c) for c in wrapped)
        return [
            "  ".join(
                (c[j] if j < len(c) else "").ljust(w) for c, w in zip(wrapped, widths, strict=True)
            ).rstrip()
            for j in range(height)
        ]

    lines = [
        f"Observation v{FEATURE_VERSION}: {len(FEATURES)} float32 features. window = bars of "
        f"history incl. the current bar; the first {WARMUP_BARS} bars are warm-up; every "
        f"value is clipped to [-{FEATURE_CLIP:g}, {FEATURE_CLIP:g}].",
        *render(header),
        "  ".join("-" * w for w in widths),
    ]
    for row in cells:
        lines += render(row)
    return "\n".join(lines)


__all__ = [
    "ACCOUNT_FEATURE_NAMES",
    "FEATURES",
    "FEATURE_CLIP",
    "FEATURE_NAMES",
    "FEATURE_VERSION",
    "MARKET_FEATURE_NAMES",
    "WARMUP_BARS",
    "FeatureSpec",
    "account_features",
    "account_features_ahead",
    "build_observation",
    "describe_features",
    "market_features",
]
