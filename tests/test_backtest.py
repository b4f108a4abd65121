"""run_backtest: hand-computed P&L, empyrical metrics, batched path == per-bar path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import empyrical as ep
import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest

from tradinglib.backtest import BacktestResult, run_backtest
from tradinglib.costs import Costs
from tradinglib.inference import BatchDecision, LockedPolicy
from tradinglib.modelcard import ModelCard
from tradinglib.risk import RiskLimits
from tradinglib.types import Action


class Scripted:
    """Acts by decision number; HOLD otherwise (per-bar only: no decide_batch)."""

    def __init__(self, script: dict[int, Action]) -> None:
        self.script, self.calls = script, 0

    def predict(self, obs: object) -> Action:
        action = self.script.get(self.calls, Action.HOLD)
        self.calls += 1
        return action


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
