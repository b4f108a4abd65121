"""Observation features: the table, market features on real data, no look-ahead, golden
figures computed independently (plain Python), account features and the observation."""

from __future__ import annotations

import dataclasses
import math
import re
import statistics
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradinglib.exceptions import DataError, InputError, ObservationError
from tradinglib.features import (
    ACCOUNT_FEATURE_NAMES,
    FEATURE_CLIP,
    FEATURE_NAMES,
    FEATURE_VERSION,
    FEATURES,
    MARKET_FEATURE_NAMES,
    WARMUP_BARS,
    FeatureSpec,
    _raw_market_features,
    _wall_clock,
    account_features,
    account_features_ahead,
    build_observation,
    describe_features,
    market_features,
)
from tradinglib.validation import validate_observation

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
NVDA = SHARED_DATA / "nvda-1999-2014.txt"
COLUMNS = ["open", "high", "low", "close", "volume"]


def read_daily_bars(path: Path) -> pd.DataFrame:
    """Bars in load_bars' shape from a Date,Open,High,Low,Close,Adj Close,Volume file."""
    if not path.is_file():
        pytest.skip(f"{path} not found: the shared real-data folder is absent")
    raw = pd.read_csv(path)
    index = pd.DatetimeIndex(pd.to_datetime(raw["Date"]), name="time").tz_localize(
        "America/New_York"
    )
    return pd.DataFrame(
        {c: raw[c.capitalize()].to_numpy(dtype=np.float64) for c in COLUMNS}, index=index
    )


@pytest.fixture(scope="module")
def nvda() -> pd.DataFrame:
    return read_daily_bars(NVDA)


@pytest.fixture(scope="module")
def nvda_features(nvda: pd.DataFrame) -> pd.DataFrame:
    return market_features(nvda)


def make_bars(
    close: Sequence[float],
    *,
    high: Sequence[float] | None = None,
    low: Sequence[float] | None = None,
    volume: Sequence[float] | None = None,
    end: str = "2024-01-03 06:00",
    freq: str = "D",
    tz: str | None = "America/New_York",
) -> pd.DataFrame:
    """Synthetic bars ending at ``end`` (wall time in ``tz``)."""
    n = len(close)
    c = np.asarray(close, dtype=np.float64)
    return pd.DataFrame(
        {
            "open": c,
            "high": c + 1.0 if high is None else np.asarray(high, dtype=np.float64),
            "low": c - 0.5 if low is None else np.asarray(low, dtype=np.float64),
            "close": c,
            "volume": np.full(n, 1000.0) if volume is None else np.asarray(volume, float),
        },
        index=pd.date_range(end=end, periods=n, freq=freq, tz=tz),
    )


# ------------------------------------------------------------------------ the table


def test_26_unique_names_match_features() -> None:
    assert len(FEATURES) == 26
    assert tuple(f.name for f in FEATURES) == FEATURE_NAMES
    assert len(set(FEATURE_NAMES)) == 26
    assert len(MARKET_FEATURE_NAMES) == 22
    assert len(ACCOUNT_FEATURE_NAMES) == 4
    assert FEATURE_NAMES == MARKET_FEATURE_NAMES + ACCOUNT_FEATURE_NAMES
    assert FEATURE_NAMES == (
        "ret_1", "ret_5", "ret_10", "ret_20", "vol_10", "vol_20", "rsi_14",
        "macd", "macd_signal", "macd_hist", "bb_pos_20", "bb_width_20",
        "dist_sma_10", "dist_sma_50", "atr_14", "volume_z_20", "bar_range", "close_loc",
        "tod_sin", "tod_cos", "dow_sin", "dow_cos",
        "position_value", "unrealized_pnl", "realized_pnl", "cash_fraction",
    )  # fmt: skip
    assert [f.group for f in FEATURES] == ["market"] * 18 + ["time"] * 4 + ["account"] * 4
    assert FEATURE_VERSION == "1"
    assert FEATURE_CLIP == 100.0


def test_feature_spec_is_frozen_and_documented() -> None:
    spec = FEATURES[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.name = "x"  # type: ignore[misc]
    for f in FEATURES:
        assert isinstance(f, FeatureSpec)
        assert f.meaning and f.scaling
        assert (f.window == 0) == (f.group == "account")


def test_describe_features_lists_every_feature() -> None:
    text = describe_features()
    for f in FEATURES:
        assert f.name in text
    assert f"v{FEATURE_VERSION}" in text
    assert "window" in text and "scaling" in text


def test_warmup_is_derived_from_the_windows() -> None:
    assert WARMUP_BARS == max(f.window for f in FEATURES) - 1 == 49


def test_each_window_is_where_the_feature_first_has_a_value(nvda: pd.DataFrame) -> None:
    raw = _raw_market_features(nvda)
    for k, name in enumerate(MARKET_FEATURE_NAMES):
        first_valid = int(np.flatnonzero(~np.isnan(raw[k]))[0])
        assert first_valid == FEATURES[k].window - 1, name
        assert not np.isnan(raw[k, first_valid:]).any(), name


# ------------------------------------------------------------ market features (real)


def test_market_features_shape_dtype_columns(
    nvda: pd.DataFrame, nvda_features: pd.DataFrame
) -> None:
    m = nvda_features
    assert list(m.columns) == list(MARKET_FEATURE_NAMES)
    assert all(dtype == np.float32 for dtype in m.dtypes)
    assert m.shape == (len(nvda) - WARMUP_BARS, 22)
    assert m.index[0] == nvda.index[WARMUP_BARS]
    assert m.index.equals(nvda.index[WARMUP_BARS:])


def test_market_features_finite_and_within_clip(nvda_features: pd.DataFrame) -> None:
    values = nvda_features.to_numpy()
    assert np.isfinite(values).all()
    assert (np.abs(values) <= FEATURE_CLIP).all()
    assert ((values[:, 6] >= -1) & (values[:, 6] <= 1)).all()  # rsi_14
    assert ((values[:, 17] >= 0) & (values[:, 17] <= 1)).all()  # close_loc


def test_market_features_do_not_change_the_input(nvda: pd.DataFrame) -> None:
    before = nvda.copy()
    market_features(nvda)
    pd.testing.assert_frame_equal(nvda, before)


def _wild_after(bars: pd.DataFrame, t: int, seed: int) -> pd.DataFrame:
    """``bars`` with every bar after position ``t`` replaced by wild random values."""
    rng = np.random.default_rng(seed)
    wild = bars.copy()
    n = len(bars) - t - 1
    prices = 10.0 ** rng.uniform(-3, 6, size=(n, 4))
    wild.iloc[t + 1 :, :4] = prices
    wild.iloc[t + 1 :, 4] = 10.0 ** rng.uniform(0, 12, size=n) * rng.integers(0, 2, size=n)
    return wild


@pytest.mark.parametrize("t", [WARMUP_BARS, WARMUP_BARS + 1, 60, 500, 2000, 4010])
def test_no_look_ahead(nvda: pd.DataFrame, nvda_features: pd.DataFrame, t: int) -> None:
    """Rows up to t are identical whether later bars are absent, real or garbage."""
    upto = nvda_features.loc[: nvda.index[t]]
    assert len(upto) == t - WARMUP_BARS + 1
    truncated = market_features(nvda.iloc[: t + 1])
    assert truncated.index.equals(upto.index)
    np.testing.assert_array_equal(truncated.to_numpy(), upto.to_numpy())
    for seed in (1, 2):
        wild = market_features(_wild_after(nvda, t, seed)).loc[: nvda.index[t]]
        assert wild.index.equals(upto.index)
        np.testing.assert_array_equal(wild.to_numpy(), upto.to_numpy())


# ----------------------------------------------------- golden figures (plain Python)


def _ema(values: Sequence[float], span: int, alpha: float) -> list[float | None]:
    """EMA seeded with the SMA of the first ``span`` values (None before that)."""
    out: list[float | None] = [None] * len(values)
    avg = sum(values[:span]) / span
    out[span - 1] = avg
    for i in range(span, len(values)):
        avg += alpha * (values[i] - avg)
        out[i] = avg
    return out


def _hand_rsi(closes: Sequence[float], t: int) -> float:
    changes = [closes[i] - closes[i - 1] for i in range(1, t + 1)]
    gain = _ema([max(c, 0.0) for c in changes], 14, 1 / 14)[-1]
    loss = _ema([max(-c, 0.0) for c in changes], 14, 1 / 14)[-1]
    assert gain is not None and loss is not None
    if gain + loss == 0:
        return 0.0
    rsi = 100.0 - 100.0 / (1.0 + gain / loss) if loss else 100.0
    return (rsi - 50.0) / 50.0


def _hand_macd(closes: Sequence[float], t: int) -> tuple[float, float]:
    c = list(closes[: t + 1])
    e12, e26 = _ema(c, 12, 2 / 13), _ema(c, 26, 2 / 27)
    line = [(a - b) / x * 100 for a, b, x in zip(e12[25:], e26[25:], c[25:], strict=True)
            if a is not None and b is not None]
    signal = _ema(line, 9, 2 / 10)[-1]
    assert signal is not None
    return line[-1], signal


def _hand_atr(h: Sequence[float], lo: Sequence[float], c: Sequence[float], t: int) -> float:
    tr = [max(h[i] - lo[i], abs(h[i] - c[i - 1]), abs(lo[i] - c[i - 1])) for i in range(1, t + 1)]
    atr = _ema(tr, 14, 1 / 14)[-1]
    assert atr is not None
    return atr / c[t] * 100


@pytest.mark.parametrize("t", [WARMUP_BARS, 1000, 3500])
def test_golden_figures_at_one_row(
    nvda: pd.DataFrame, nvda_features: pd.DataFrame, t: int
) -> None:
    c = nvda["close"].tolist()
    h = nvda["high"].tolist()
    lo = nvda["low"].tolist()
    v = nvda["volume"].tolist()
    row = nvda_features.loc[nvda.index[t]]
    logret = [math.log(c[i] / c[i - 1]) for i in range(t - 19, t + 1)]
    sma20 = statistics.fmean(c[t - 19 : t + 1])
    std20 = statistics.pstdev(c[t - 19 : t + 1])
    macd, signal = _hand_macd(c, t)
    expected = {
        "ret_1": math.log(c[t] / c[t - 1]) * 100,
        "ret_5": math.log(c[t] / c[t - 5]) * 100,
        "ret_10": math.log(c[t] / c[t - 10]) * 100,
        "ret_20": math.log(c[t] / c[t - 20]) * 100,
        "vol_10": statistics.pstdev(logret[-10:]) * 100,
        "vol_20": statistics.pstdev(logret) * 100,
        "rsi_14": _hand_rsi(c, t),
        "macd": macd,
        "macd_signal": signal,
        "macd_hist": macd - signal,
        "bb_pos_20": (c[t] - sma20) / (2 * std20),
        "bb_width_20": 4 * std20 / sma20 * 100,
        "dist_sma_10": (c[t] / statistics.fmean(c[t - 9 : t + 1]) - 1) * 100,
        "dist_sma_50": (c[t] / statistics.fmean(c[t - 49 : t + 1]) - 1) * 100,
        "atr_14": _hand_atr(h, lo, c, t),
        "volume_z_20": (v[t] - statistics.fmean(v[t - 19 : t + 1]))
        / statistics.pstdev(v[t - 19 : t + 1]),
        "bar_range": (h[t] - lo[t]) / c[t] * 100,
        "close_loc": (c[t] - lo[t]) / (h[t] - lo[t]),
    }
    for name, value in expected.items():
        clipped = max(-FEATURE_CLIP, min(FEATURE_CLIP, value))
        assert float(row[name]) == pytest.approx(clipped, rel=1e-5, abs=1e-5), name


def test_rsi_is_plus_one_on_rising_minus_one_on_falling_zero_on_flat() -> None:
    n = WARMUP_BARS + 10
    rising = market_features(make_bars([10.0 + i for i in range(n)]))
    falling = market_features(make_bars([200.0 - i for i in range(n)]))
    flat = market_features(make_bars([50.0] * n))
    assert (rising["rsi_14"] == 1.0).all()
    assert (falling["rsi_14"] == -1.0).all()
    assert (flat["rsi_14"] == 0.0).all()


def test_flat_prices_give_zero_bollinger_position_and_width() -> None:
    flat = market_features(make_bars([50.0] * (WARMUP_BARS + 5)))
    for name in ("ret_1", "ret_20", "vol_20", "macd", "macd_signal", "bb_pos_20",
                 "bb_width_20", "dist_sma_50"):
        assert (flat[name] == 0.0).all(), name


@pytest.mark.parametrize("volume", [0.0, 1234.5, 0.1])
def test_volume_z_is_zero_on_constant_volume(volume: float) -> None:
    n = WARMUP_BARS + 30
    bars = make_bars([10.0 + math.sin(i) for i in range(n)], volume=[volume] * n)
    assert (market_features(bars)["volume_z_20"] == 0.0).all()


def test_close_loc_is_half_when_high_equals_low() -> None:
    n = WARMUP_BARS + 3
    close = [10.0 + i for i in range(n)]
    bars = make_bars(close, high=close, low=close)
    m = market_features(bars)
    assert (m["close_loc"] == 0.5).all()
    assert (m["bar_range"] == 0.0).all()


def test_extreme_moves_are_clipped() -> None:
    n = WARMUP_BARS + 2
    close = [1.0] * (n - 1) + [1e9]
    m = market_features(make_bars(close, high=close, low=[c * 0.5 for c in close]))
    last = m.iloc[-1]
    assert last["ret_1"] == FEATURE_CLIP  # 100 * ln(1e9) = 2072
    assert last["dist_sma_50"] == FEATURE_CLIP
    assert np.isfinite(m.to_numpy()).all()


def test_time_features_of_a_known_timestamp() -> None:
    # Wednesday 2024-01-03 06:00 in New York (11:00 UTC): a quarter of the day.
    m = market_features(make_bars([10.0 + i for i in range(WARMUP_BARS + 1)]))
    assert m.index[-1] == pd.Timestamp("2024-01-03 06:00", tz="America/New_York")
    last = m.iloc[-1]
    assert float(last["tod_sin"]) == pytest.approx(1.0, abs=1e-6)
    assert float(last["tod_cos"]) == pytest.approx(0.0, abs=1e-6)
    assert float(last["dow_sin"]) == pytest.approx(math.sin(2 * math.pi * 2 / 7), abs=1e-6)
    assert float(last["dow_cos"]) == pytest.approx(math.cos(2 * math.pi * 2 / 7), abs=1e-6)


def test_time_features_use_the_bars_own_timezone() -> None:
    close = [10.0 + i for i in range(WARMUP_BARS + 1)]
    # 18:00 UTC on a Sunday is 03:00 Monday in Tokyo.
    utc = make_bars(close, end="2024-01-07 18:00", tz="UTC", freq="h")
    tokyo = utc.tz_convert("Asia/Tokyo")
    a, b = market_features(utc).iloc[-1], market_features(tokyo).iloc[-1]
    assert float(a["tod_sin"]) == pytest.approx(math.sin(2 * math.pi * 18 / 24), abs=1e-6)
    assert float(b["tod_sin"]) == pytest.approx(math.sin(2 * math.pi * 3 / 24), abs=1e-6)
    assert float(a["dow_cos"]) == pytest.approx(math.cos(2 * math.pi * 6 / 7), abs=1e-6)
    assert float(b["dow_cos"]) == pytest.approx(1.0, abs=1e-6)


def test_naive_index_and_extra_columns_are_accepted() -> None:
    bars = make_bars([10.0 + math.sin(i) for i in range(WARMUP_BARS + 5)], tz=None)
    bars["adj_close"] = bars["close"] * 0.9
    m = market_features(bars)
    assert list(m.columns) == list(MARKET_FEATURE_NAMES)
    assert len(m) == 5


# ------------------------------------------------------------------- bad bar input


def _bad_bars() -> list[tuple[str, object, str]]:
    good = make_bars([10.0 + math.sin(i) for i in range(WARMUP_BARS + 5)])
    cases: list[tuple[str, object, str]] = [
        ("not-a-frame", good.to_numpy(), "DataFrame"),
        ("missing-volume", good.drop(columns="volume"), "volume"),
        ("upper-case", good.rename(columns=str.capitalize), "lack column"),
        ("too-few-rows", good.iloc[:WARMUP_BARS], f"at least {WARMUP_BARS + 1}"),
        ("empty", good.iloc[:0], "0 row"),
        ("range-index", good.reset_index(drop=True), "DatetimeIndex"),
        ("unsorted", good.iloc[::-1], "increasing"),
        ("duplicate-time", pd.concat([good.iloc[:1], good]), "increasing"),
    ]
    for column, value, message in [
        ("close", math.nan, "'close' must be finite"),
        ("high", math.inf, "'high' must be finite"),
        ("low", 0.0, "'low' must be finite and > 0"),
        ("open", -1.0, "'open'"),
        ("volume", -5.0, "'volume' must be finite and >= 0"),
        ("volume", math.nan, "'volume'"),
    ]:
        bad = good.copy()
        bad.loc[bad.index[7], column] = value
        cases.append((f"{column}-{value}", bad, message))
    text = good.copy()
    text["close"] = text["close"].astype(str) + "x"
    cases.append(("non-numeric", text, "not numeric"))
    return cases


@pytest.mark.parametrize(("bars", "message"), [(b, m) for _, b, m in _bad_bars()],
                         ids=[i for i, _, _ in _bad_bars()])
def test_bad_bars_raise_data_error(bars: object, message: str) -> None:
    with pytest.raises(DataError) as info:
        market_features(bars)  # type: ignore[arg-type]
    assert message in str(info.value)


def test_bad_value_message_names_the_row() -> None:
    bars = make_bars([10.0] * (WARMUP_BARS + 5))
    bars.loc[bars.index[7], "close"] = math.nan
    with pytest.raises(DataError, match=r"row 7"):
        market_features(bars)


# ---------------------------------------------------------------- account features


ACCOUNT = {"max_position_value": 10_000.0, "max_daily_loss": 500.0}


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        # long 10 @ 50, bought @ 45: exposure 500, unrealized 50, equity 1500
        ({"position": 10, "price": 50.0, "avg_cost": 45.0, "day_realized_pnl": -100.0,
          "cash": 1000.0}, [0.05, 0.1, -0.2, 1000.0 / 1500.0]),
        # flat: all cash
        ({"position": 0, "price": 50.0, "avg_cost": 0.0, "day_realized_pnl": 250.0,
          "cash": 2000.0}, [0.0, 0.0, 0.5, 1.0]),
        # short 20 @ 30, sold @ 40: exposure -600, unrealized +200, equity 1400
        ({"position": -20, "price": 30.0, "avg_cost": 40.0, "day_realized_pnl": 0.0,
          "cash": 2000.0}, [-0.06, 0.4, 0.0, 2000.0 / 1400.0]),
        # equity <= 0 gives cash_fraction 0
        ({"position": -100, "price": 20.0, "avg_cost": 10.0, "day_realized_pnl": -50.0,
          "cash": 1000.0}, [-0.2, -2.0, -0.1, 0.0]),
        ({"position": -50, "price": 20.0, "avg_cost": 20.0, "day_realized_pnl": 0.0,
          "cash": 1000.0}, [-0.1, 0.0, 0.0, 0.0]),
        # clipping
        ({"position": 1e6, "price": 100.0, "avg_cost": 0.0, "day_realized_pnl": -1e9,
          "cash": 1.0}, [FEATURE_CLIP, FEATURE_CLIP, -FEATURE_CLIP, 1.0 / (1.0 + 1e8)]),
        ({"position": 1.0, "price": 1.0, "avg_cost": 1.0, "day_realized_pnl": 0.0,
          "cash": 1e6}, [1e-4, 0.0, 0.0, 1e6 / (1e6 + 1)]),
        ({"position": 1.0, "price": 100.0, "avg_cost": 100.0, "day_realized_pnl": 0.0,
          "cash": -99.5}, [0.01, 0.0, 0.0, -FEATURE_CLIP]),  # -99.5 / 0.5 = -199
    ],
)
def test_account_features(state: dict[str, float], expected: list[float]) -> None:
    out = account_features(**state, **ACCOUNT)
    assert out.dtype == np.float32
    assert out.shape == (4,)
    np.testing.assert_allclose(out, np.array(expected, dtype=np.float32), rtol=1e-6, atol=1e-7)


_NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-1e6, max_value=1e6),
    st.sampled_from([0.0, -0.0, 1e-300, 1e300, 5.0, -5.0]),
    st.integers(min_value=-10**9, max_value=10**9),
)


@settings(max_examples=1000, deadline=None)
@given(position=st.integers(min_value=-10**7, max_value=10**7) | _NUMBERS, price=_NUMBERS,
       avg_cost=_NUMBERS, day_realized_pnl=_NUMBERS, cash=_NUMBERS,
       max_position_value=_NUMBERS, max_daily_loss=_NUMBERS)
def test_account_features_of_one_bar_equal_the_array_path(**state: float) -> None:
    """The one-bar function (Python arithmetic) answers, clips and raises bit for bit as
    the array function it shortcuts."""
    rows = dict(state, prices=np.array([state["price"]], dtype=np.float64),
                day_realized_pnl=np.array([state["day_realized_pnl"]], dtype=np.float64))
    del rows["price"]
    try:
        expected = account_features_ahead(**rows)[0]
    except (ObservationError, InputError) as exc:
        with pytest.raises(type(exc), match=re.escape(str(exc))):
            account_features(**state)
        return
    assert account_features(**state).tobytes() == expected.tobytes()


def test_account_features_reject_non_finite_and_bad_limits() -> None:
    state = {"position": 1.0, "price": 10.0, "avg_cost": 9.0, "day_realized_pnl": 0.0,
             "cash": 100.0}
    with pytest.raises(ObservationError, match=r"price=nan"):
        account_features(**{**state, "price": math.nan}, **ACCOUNT)
    with pytest.raises(ObservationError, match=r"cash=inf"):
        account_features(**{**state, "cash": math.inf}, **ACCOUNT)
    with pytest.raises(InputError, match="max_daily_loss=0"):
        account_features(**state, max_position_value=1.0, max_daily_loss=0.0)
    with pytest.raises(InputError, match="max_position_value=-1"):
        account_features(**state, max_position_value=-1.0, max_daily_loss=1.0)


# --------------------------------------------------------------------- observation


def test_build_observation_passes_validation_on_every_real_row(
    nvda_features: pd.DataFrame,
) -> None:
    account = account_features(position=5, price=20.0, avg_cost=19.0, day_realized_pnl=-3.0,
                               cash=9000.0, **ACCOUNT)
    rows = nvda_features.to_numpy()
    for i in range(0, len(rows), 97):
        obs = build_observation(rows[i], account)
        assert obs.dtype == np.float32
        assert obs.shape == (26,)
        np.testing.assert_array_equal(obs[:22], rows[i])
        np.testing.assert_array_equal(obs[22:], account)
        np.testing.assert_array_equal(validate_observation(obs), obs)


def test_build_observation_rejects_wrong_shapes() -> None:
    with pytest.raises(ObservationError, match=r"\(21,\)"):
        build_observation(np.zeros(21), np.zeros(4))
    with pytest.raises(ObservationError, match=r"\(2, 2\)"):
        build_observation(np.zeros(22), np.zeros((2, 2)))


@pytest.mark.parametrize("tz", ["UTC", "America/New_York", "Asia/Kolkata", None])
@pytest.mark.parametrize("unit", ["s", "us", "ns"])
def test_wall_clock_has_the_bits_of_the_index_fields(tz: str | None, unit: str) -> None:
    # irregular times with sub-second parts, before and after 1970, across DST changes
    steps = pd.to_timedelta(np.arange(3000) * 98_765_432_123 + 7, unit="ns")
    utc = pd.DatetimeIndex(pd.Timestamp("1969-03-01", tz="UTC") + steps)
    index = (utc.tz_convert(tz) if tz else utc.tz_localize(None)).as_unit(unit)
    seconds, weekday = _wall_clock(index)
    expected = (index.hour.to_numpy(np.float64) * 3600.0 + index.minute.to_numpy(np.float64)
                * 60.0 + index.second.to_numpy(np.float64)
                + index.microsecond.to_numpy(np.float64) / 1e6)
    assert seconds.tobytes() == expected.tobytes()
    assert weekday.tobytes() == index.day_of_week.to_numpy(np.float64).tobytes()
