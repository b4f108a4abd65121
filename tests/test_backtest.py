"""run_backtest: hand-computed P&L, empyrical metrics, batched path == per-bar path."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import empyrical as ep
import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest
from policies import Scripted

from tradinglib.backtest import BacktestResult, _text_column, run_backtest
from tradinglib.costs import Costs
from tradinglib.data import local_days
from tradinglib.execution import Simulation
from tradinglib.features import _ROLLING_CHUNK, _rolling_mean_std, account_features_ahead
from tradinglib.inference import BatchDecision, LockedPolicy
from tradinglib.metrics import periods_per_year, trading_metrics
from tradinglib.modelcard import ModelCard
from tradinglib.risk import RiskLimits
from tradinglib.types import Action


class Linear:
    """A busy deterministic policy: argmax of a fixed random linear map of the observation.

    It trades often and reacts to the account features, so batches are cut short by
    fills again and again: a stress test for the batched path.
    """

    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.w = rng.standard_normal((26, 3)).astype(np.float32) * 0.1
        self.w[0] += [0.0, -1.0, 1.0]  # ret_1: buy dips, sell rallies
        self.w[22] += [0.0, -2.0, 2.0]  # position_value: lean against inventory
        self.w[25] += [0.5, 0.0, 0.0]  # cash_fraction (about 1): a bias to HOLD

    def _act(self, obs: npt.NDArray[np.float32]) -> npt.NDArray[np.int64]:
        return np.asarray(np.argmax(obs @ self.w, axis=-1), dtype=np.int64)

    def predict(self, obs: Any) -> Action:
        return Action(int(self._act(np.asarray(obs, dtype=np.float32))))

    def decide_batch(self, batch: npt.NDArray[np.float32]) -> BatchDecision:
        return BatchDecision(self._act(batch), {}, 0.0)


def _commission(qty: int, price: float) -> float:
    return min(max(qty * 0.005, 1.0), qty * price * 0.01)


def test_scripted_round_trip_matches_hand_pnl_to_the_cent(googl: pd.DataFrame) -> None:
    result = run_backtest(googl, Scripted({30: Action.BUY, 31: Action.BUY, 90: Action.SELL,
                                           91: Action.SELL}))
    times = result.decisions["time"]
    opens = googl["open"]
    fill = [float(opens.iloc[googl.index.get_loc(times[i]) + 1]) for i in (30, 31, 90, 91)]
    pnl = 5 * (fill[2] + fill[3] - fill[0] - fill[1]) - sum(_commission(5, p) for p in fill)
    assert round(result.metrics["final_equity"] - 100_000, 2) == round(pnl, 2)
    assert list(result.trades["side"]) == ["BUY", "BUY", "SELL", "SELL"]
    assert result.trades["price"].tolist() == fill
    assert result.trades["commission"].sum() == pytest.approx(4.0)
    assert result.trades["realized_pnl"].sum() == pytest.approx(pnl)
    assert result.metrics["trades"] == 4
    assert result.metrics["win_rate"] == (1.0 if pnl > 0 else 0.0)
    assert result.metrics["exposure"] == pytest.approx(61 / len(times))  # after 30..90


def test_metrics_equal_empyrical_on_the_equity_returns(googl: pd.DataFrame) -> None:
    result = run_backtest(googl, Linear(1), start="2012-01-01", end="2014-01-01")
    returns = result.equity.pct_change().dropna()
    m = result.metrics
    assert result.metrics["trades"] > 20
    assert m["sharpe"] == pytest.approx(ep.sharpe_ratio(returns, annualization=252))
    assert m["sortino"] == pytest.approx(ep.sortino_ratio(returns, annualization=252))
    assert m["max_drawdown"] == pytest.approx(ep.max_drawdown(returns))
    assert m["cagr"] == pytest.approx(ep.annual_return(returns, annualization=252))
    assert m["annual_volatility"] == pytest.approx(ep.annual_volatility(returns,
                                                                        annualization=252))
    assert m["calmar"] == pytest.approx(ep.calmar_ratio(returns, annualization=252))
    assert m["total_return"] == pytest.approx(ep.cum_returns_final(returns))


def test_hourly_bars_annualize_by_bars_per_day() -> None:
    from tradinglib.data import load_bars

    bars = load_bars("eurusd-hourly")
    result = run_backtest(bars, Linear(2), limits=RiskLimits(max_position_value=50))
    returns = result.equity.pct_change().dropna()
    assert result.metrics["sharpe"] == pytest.approx(ep.sharpe_ratio(returns,
                                                                     annualization=252 * 24))


def _same(a: BacktestResult, b: BacktestResult) -> None:
    pd.testing.assert_frame_equal(a.decisions, b.decisions)
    pd.testing.assert_frame_equal(a.trades, b.trades)
    pd.testing.assert_series_equal(a.equity, b.equity)
    assert a.metrics == b.metrics


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_batched_path_equals_per_bar_path(googl: pd.DataFrame, seed: int) -> None:
    policy = Linear(seed)
    limits = RiskLimits(max_daily_loss=50, max_position_value=3_000)
    costs = Costs(slippage_bps=3)
    batched = run_backtest(googl, policy, limits=limits, costs=costs, batched=True)
    per_bar = run_backtest(googl, policy, limits=limits, costs=costs, batched=False)
    assert batched.metrics["trades"] > 50
    _same(batched, per_bar)


def test_locked_policy_batched_equals_per_bar(googl: pd.DataFrame,
                                              tiny_model: tuple[Path, ModelCard]) -> None:
    policy = LockedPolicy.load(tiny_model[0])
    _same(run_backtest(googl, policy), run_backtest(googl, policy, batched=False))


def test_every_decision_is_recorded(googl: pd.DataFrame) -> None:
    result = run_backtest(googl, Linear(4), limits=RiskLimits(max_position_value=2_000),
                          start="2016-01-01")
    d = result.decisions
    assert len(d) == result.metrics["bars"] == len(result.equity) - 1
    assert set(d["action"]) <= {"HOLD", "BUY", "SELL"}
    assert (d.loc[d["action"] == "HOLD", "verdict"] == "").all()
    assert (d.loc[d["action"] != "HOLD", "verdict"] != "").all()
    rejected = d[(d["verdict"] != "") & (d["verdict"] != "APPROVED")]
    assert result.metrics["rejections"] == rejected["verdict"].value_counts().to_dict()
    assert "POSITION_VALUE" in result.metrics["rejections"]
    assert (d["action"] != "HOLD").sum() == result.metrics["trades"] + len(rejected)


def test_hold_fallbacks_are_counted(googl: pd.DataFrame) -> None:
    class Flaky(Linear):
        def decide_batch(self, batch: npt.NDArray[np.float32]) -> BatchDecision:
            answer = super().decide_batch(batch)
            answer.actions[::3] = 0
            return BatchDecision(answer.actions,
                                 {i: "timeout: test" for i in range(0, len(batch), 3)}, 0.0)

    result = run_backtest(googl, Flaky(5), start="2017-01-01")
    fallbacks = result.decisions["fallback"]
    assert result.metrics["hold_fallbacks"] == (fallbacks != "").sum() > 0
    assert (result.decisions.loc[fallbacks != "", "action"] == "HOLD").all()


def test_save_writes_the_tables(googl: pd.DataFrame, tmp_path: Path) -> None:
    result = run_backtest(googl, Linear(6), start="2018-01-01")
    folder = result.save(tmp_path / "bt")
    assert json.loads((folder / "metrics.json").read_text())["trades"] == len(result.trades)
    trades = pd.read_csv(folder / "trades.csv")
    assert list(trades.columns) == ["time", "side", "quantity", "price", "commission",
                                    "realized_pnl"]
    equity = pd.read_csv(folder / "equity.csv", index_col="time")
    assert equity["equity"].tolist() == pytest.approx(result.equity.tolist())
    assert len(pd.read_csv(folder / "decisions.csv")) == len(result.decisions)


# --- the fast path's mechanisms -----------------------------------------------------------


class Unprepared:
    """A LockedPolicy seen without ``prepare``: the backtest builds whole observations."""

    def __init__(self, policy: LockedPolicy) -> None:
        self.policy = policy

    def predict(self, obs: Any) -> Action:
        return self.policy.predict(obs)

    def decide_batch(self, batch: npt.NDArray[np.float32]) -> BatchDecision:
        return self.policy.decide_batch(batch)


def test_prepared_path_equals_plain_and_per_bar_paths(
        googl: pd.DataFrame, tiny_model: tuple[Path, ModelCard]) -> None:
    policy = LockedPolicy.load(tiny_model[0])
    limits = RiskLimits(max_daily_loss=50, max_position_value=3_000)
    prepared = run_backtest(googl, policy, limits=limits)
    assert prepared.metrics["trades"] > 0
    _same(prepared, run_backtest(googl, Unprepared(policy), limits=limits))
    _same(prepared, run_backtest(googl, policy, limits=limits, batched=False))


def test_prepared_rows_answer_as_decide_batch(googl: pd.DataFrame,
                                              tiny_model: tuple[Path, ModelCard]) -> None:
    policy = LockedPolicy.load(tiny_model[0])
    sim = Simulation(googl)
    prepared = policy.prepare(sim.market_rows)
    assert prepared is not None
    rng = np.random.default_rng(3)
    for first, n in ((0, 1), (5, 2), (100, 300), (len(sim) - 40, 40)):
        # accounts from flat to beyond the clip, so the model answers with a mix
        account = (rng.standard_normal((n, 4)) * rng.choice([0.1, 3.0, 150.0], (n, 1))
                   ).clip(-100, 100).astype(np.float32)
        whole = np.concatenate((sim.market_rows[first:first + n], account), axis=1)
        got = prepared.decide_rows(first, account)
        assert got.actions.tolist() == policy.decide_batch(whole).actions.tolist()
        assert got.actions.tolist() == [int(policy.decide(row).action) for row in whole]
        assert got.fallbacks == {}
    bad = np.zeros((3, 4), dtype=np.float32)
    bad[1, 2] = np.nan
    answer = prepared.decide_rows(10, bad)  # handed to decide_batch, which names the row
    assert list(answer.fallbacks) == [1] and "realized_pnl" in answer.fallbacks[1]
    assert prepared.decide_rows(len(sim) - 1, np.zeros((2, 4))).fallbacks.keys() == {0, 1}


def test_prepare_declines_where_it_cannot_help(googl: pd.DataFrame,
                                               tiny_model: tuple[Path, ModelCard]) -> None:
    market = Simulation(googl).market_rows
    assert LockedPolicy.load(tiny_model[0], fast=False).prepare(market) is None  # sb3
    policy = LockedPolicy.load(tiny_model[0])
    assert policy.prepare(np.full((3, 22), np.nan)) is None
    assert policy.prepare(market[:, :22].astype(bool)) is None


@pytest.mark.slow
def test_sb3_backend_batched_equals_per_bar(googl: pd.DataFrame,
                                            tiny_model: tuple[Path, ModelCard]) -> None:
    policy = LockedPolicy.load(tiny_model[0], fast=False)  # no prepare: plain batches
    _same(run_backtest(googl, policy, start="2017-01-01"),
          run_backtest(googl, policy, start="2017-01-01", batched=False))


@pytest.mark.parametrize("tz", ["America/New_York", "America/Havana", "Australia/Lord_Howe",
                                "UTC", None])
def test_trading_days_follow_the_local_wall_clock(tz: str | None) -> None:
    # hourly bars through both DST changes of 2017 (Havana changes at midnight, Lord Howe
    # by half an hour), in the bars' own timezone or naive
    utc = pd.date_range("2017-03-01", "2017-11-30", freq="h", tz="UTC")
    index = utc.tz_convert(tz) if tz is not None else utc.tz_localize(None)
    expected = [t.date().toordinal() for t in index]
    assert local_days(pd.DatetimeIndex(index)).tolist() == expected


def test_daily_loss_resets_on_local_days_across_dst() -> None:
    from tradinglib.data import load_bars

    bars = load_bars("eurusd-hourly")
    bars.index = bars.index.tz_convert("America/New_York")  # 2017: both DST changes
    limits = RiskLimits(max_daily_loss=10, max_position_value=20_000, trade_quantity=4_000)
    batched = run_backtest(bars, Linear(7), limits=limits)
    assert len(batched.risk_events) > 100 and batched.metrics["rejections"]["DAILY_LOSS"] > 100
    _same(batched, run_backtest(bars, Linear(7), limits=limits, batched=False))


@pytest.mark.parametrize(("window", "n"), [
    *[(w, 3_000) for w in (1, 2, 7, 8, 10, 17, 20, 50, 128, 129, 300)],
    (20, 2 * _ROLLING_CHUNK + 37), (50, _ROLLING_CHUNK + 49),  # windows across chunks
])
def test_rolling_mean_std_are_numpys_bit_for_bit(window: int, n: int) -> None:
    rng = np.random.default_rng(window)
    x = rng.standard_normal(n) * rng.choice([1e-6, 1.0, 1e6], n)
    x[100:160] = 2.5  # flat windows: std exactly 0
    x[400:420] = -0.0
    x[900] = np.nan
    mean, std = _rolling_mean_std(x, window)
    view = np.lib.stride_tricks.sliding_window_view(x, window)
    flat = view.max(axis=1) == view.min(axis=1)
    expected_std = np.where(flat, 0.0, view.std(axis=1))
    assert np.isnan(mean[:window - 1]).all() and np.isnan(std[:window - 1]).all()
    assert mean[window - 1:].tobytes() == view.mean(axis=1).tobytes()
    assert std[window - 1:].tobytes() == expected_std.tobytes()


def test_account_features_ahead_match_the_plain_formula() -> None:
    rng = np.random.default_rng(11)
    edge = np.array([0.0, 1.0, -1.0, 1e-300, 1e300, 5.0, 123.456])
    for trial in range(200):
        n = int(rng.integers(1, 12))
        prices = rng.choice(edge, n) if trial % 2 else rng.uniform(1, 500, n)
        realized = rng.standard_normal(n) * 1_000
        state = {"position": int(rng.choice([0, 5, -5, 10**6])),
                 "avg_cost": float(rng.choice(edge)),
                 "cash": float(rng.choice([1e5, -1e5, 0.0, 1e300]))}
        limits = {"max_position_value": float(rng.choice([1e4, 1e-300])),
                  "max_daily_loss": float(rng.choice([500.0, 1.0]))}
        got = account_features_ahead(prices=prices, day_realized_pnl=realized, **state,
                                     **limits)
        with np.errstate(over="ignore", invalid="ignore"):
            pos, exposure = state["position"], state["position"] * prices
            equity = state["cash"] + exposure
            plain = np.stack([
                exposure / limits["max_position_value"],
                pos * (prices - state["avg_cost"]) / limits["max_daily_loss"],
                realized / limits["max_daily_loss"],
                np.where(equity > 0, state["cash"] / np.where(equity > 0, equity, 1.0), 0.0),
            ], axis=1)
        expected = np.clip(plain, -100.0, 100.0).astype(np.float32)
        assert got.tobytes() == expected.tobytes()


@pytest.mark.parametrize("enabled", [True, False])
def test_backtest_pauses_the_garbage_collector_and_restores_it(
        googl: pd.DataFrame, enabled: bool) -> None:
    import gc

    seen: list[bool] = []

    class Watching(Linear):
        def decide_batch(self, batch: npt.NDArray[np.float32]) -> BatchDecision:
            seen.append(gc.isenabled())
            return super().decide_batch(batch)

    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        run_backtest(googl, Watching(8), start="2018-01-01")
        assert seen and not any(seen)  # off during the run
        assert gc.isenabled() is enabled  # and back as it was
        with pytest.raises(ValueError):  # also after an error
            run_backtest(googl, Watching(8), start="2018-01-01", cash=math.nan)
        assert gc.isenabled() is enabled
    finally:
        gc.enable() if was else gc.disable()


def test_bar_positions_of_features_off_the_tail() -> None:
    from tradinglib.execution import _positions

    index = pd.date_range("2020-01-01", periods=10, freq="h", tz="UTC")
    assert _positions(index, index[3:]).tolist() == list(range(3, 10))  # the usual tail
    assert _positions(index, index[2:8]).tolist() == list(range(2, 8))  # not the tail
    assert _positions(index, index[[1, 4, 9]]).tolist() == [1, 4, 9]


@pytest.mark.parametrize("texts", [{}, {0: "APPROVED"}, {3: "POSITION_VALUE", 1: "APPROVED",
                                                          4: "APPROVED"}])
def test_text_columns_are_the_inferred_string_columns(texts: dict[int, str]) -> None:
    plain = np.full(6, "", dtype=object)
    plain[list(texts)] = list(texts.values())
    pd.testing.assert_frame_equal(pd.DataFrame({"verdict": _text_column(6, texts)}),
                                  pd.DataFrame({"verdict": plain}))


def test_buy_and_hold_and_mark_times_follow_the_decision_bars(googl: pd.DataFrame) -> None:
    sim = Simulation(googl, start="2012-01-01", end="2013-01-01")
    first = googl.index.get_loc(sim.decision_times[0])
    last = googl.index.get_loc(sim.decision_times[-1])
    assert sim.mark_times.equals(googl.index[first + 1:last + 2])
    close = googl["close"]
    assert sim.buy_and_hold_return == float(close.iloc[last + 1] / close.iloc[first] - 1.0)


@pytest.mark.parametrize(("times", "expected"), [
    (pd.date_range("2020-01-06", periods=30, freq="B"), 252.0),  # daily: 252 / year
    (pd.date_range("2020-01-06", periods=30, freq="W"), 36.0),  # weekly: 252 / 7 days
    (pd.date_range("2020-01-06", periods=240, freq="h", tz="UTC"), 252.0 * 24),
    (pd.DatetimeIndex(["2020-01-01", "2020-01-02", "2020-01-04", "2020-01-07"]), 126.0),
])
def test_periods_per_year(times: pd.DatetimeIndex, expected: float) -> None:
    assert periods_per_year(times) == pytest.approx(expected)


@pytest.mark.parametrize("unit", ["s", "us", "ns"])
def test_periods_per_year_takes_pandas_median_spacing(unit: str) -> None:
    # irregular daily-or-slower bars: the annualization depends on the exact median
    # spacing, which must be pandas' Series.diff().median() (a mean of two middle
    # spacings, truncated to the index's unit)
    rng = np.random.default_rng(3)
    for n in (2, 3, 10, 11):
        steps = rng.integers(86_400, 3 * 86_400, n - 1) * 10**9 + rng.integers(0, 7, n - 1)
        times = pd.DatetimeIndex(np.cumsum([1_600_000_000 * 10**9, *steps])
                                 .astype("datetime64[ns]")).as_unit(unit)
        spacing = pd.Series(times).diff().dropna().median()
        expected = 252 * pd.Timedelta(days=1) / min(spacing, pd.Timedelta(days=7))
        assert periods_per_year(times) == expected


@pytest.mark.parametrize("dtype", [object, "str"])
def test_trading_metrics_count_rejections_by_first_appearance(dtype: Any) -> None:
    times = pd.date_range("2020-01-06", periods=8, freq="h", tz="UTC")
    verdicts = ["", "APPROVED", "ORDER_RATE", "", "POSITION_VALUE", "ORDER_RATE",
                "DAILY_LOSS", "APPROVED"]
    decisions = pd.DataFrame({
        "time": times, "verdict": pd.Series(verdicts, dtype=dtype),
        "fallback": pd.Series(["", "timeout: x", "", "", "", "", "", ""], dtype=dtype),
        "position": [0, 5, 5, 5, 5, 5, 5, 10],
    })
    trades = pd.DataFrame({"quantity": [5, 5], "price": [10.0, 11.0],
                           "commission": [1.0, 1.0], "realized_pnl": [-1.0, -1.0]})
    equity = pd.Series(np.linspace(1000.0, 1010.0, 8), index=times)
    metrics = trading_metrics(equity, trades, decisions, np.array([False, False]), 0.01)
    assert list(metrics["rejections"].items()) == [
        ("ORDER_RATE", 2), ("POSITION_VALUE", 1), ("DAILY_LOSS", 1)]
    assert metrics["hold_fallbacks"] == 1 and metrics["trades"] == 2
    none = decisions.assign(verdict=pd.Series([""] * 8, dtype=dtype))
    assert trading_metrics(equity, trades, none, np.array([False, False]), 0.0)[
        "rejections"] == {}


@pytest.mark.parametrize("batched", [True, False])
def test_equity_and_position_are_the_steps_marks_bit_for_bit(googl: pd.DataFrame,
                                                             batched: bool) -> None:
    # the backtest spreads the account after each step over the HOLD bars at the end;
    # regression guard: every bar's equity and position are what stepping every bar
    # (StepResult.equity, Portfolio.position) gives, to the bit
    policy = Linear(4)
    result = run_backtest(googl, policy, start="2011-01-01", end="2013-06-01",
                          batched=batched)
    sim = Simulation(googl, start="2011-01-01", end="2013-06-01")
    obs, marks, positions = sim.reset(), [], []
    while not sim.done:
        marks.append(sim.step(policy.predict(obs)).equity)
        positions.append(sim.portfolio.position)
        obs = sim.observation()
    assert result.metrics["trades"] > 20 and (np.array(positions) == 0).any()
    assert result.equity.to_numpy()[1:].tobytes() == np.array(marks).tobytes()
    assert result.equity.iloc[0] == 100_000.0
    assert result.decisions["position"].tolist() == positions
