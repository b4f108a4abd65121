"""The shared decision path: scripted policies on real bars against hand-computed P&L."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from policies import Scripted

from tradinglib.costs import Costs
from tradinglib.exceptions import DataError, InputError
from tradinglib.execution import Simulation
from tradinglib.features import FEATURE_NAMES
from tradinglib.risk import Reason, RiskLimits
from tradinglib.types import Action


def run(sim: Simulation, policy: Scripted) -> list[float]:
    obs, equity = sim.reset(), []
    while not sim.done:
        assert obs.shape == (len(FEATURE_NAMES),) and obs.dtype == np.float32
        equity.append(sim.step(policy.predict(obs)).equity)
        obs = sim.observation()
    return equity


def _commission(qty: int, price: float) -> float:
    return min(max(qty * 0.005, 1.0), qty * price * 0.01)


@pytest.mark.parametrize(("buy", "sell"), [(0, 10), (100, 350), (1500, 1501)])
def test_buy_then_sell_at_next_open_matches_hand_pnl(googl: pd.DataFrame, buy: int,
                                                     sell: int) -> None:
    sim = Simulation(googl)
    run(sim, Scripted({buy: Action.BUY, sell: Action.SELL}))
    opens = googl["open"]
    b_in = googl.index.get_loc(sim.decision_times[buy]) + 1
    b_out = googl.index.get_loc(sim.decision_times[sell]) + 1
    p_in, p_out = float(opens.iloc[b_in]), float(opens.iloc[b_out])
    pnl = 5 * (p_out - p_in) - _commission(5, p_in) - _commission(5, p_out)
    assert round(sim.portfolio.cash, 2) == round(100_000 + pnl, 2)
    assert sim.portfolio.position == 0
    assert sim.portfolio.realized_pnl == pytest.approx(pnl, abs=1e-9)


def test_fill_at_close_with_slippage(googl: pd.DataFrame) -> None:
    sim = Simulation(googl, costs=Costs(fill_at="close", slippage_bps=5))
    run(sim, Scripted({20: Action.BUY, 40: Action.SELL}))
    close = googl["close"]
    p_in = float(close.loc[sim.decision_times[20]]) * 1.0005
    p_out = float(close.loc[sim.decision_times[40]]) * 0.9995
    pnl = 5 * (p_out - p_in) - _commission(5, p_in) - _commission(5, p_out)
    assert round(sim.portfolio.cash, 2) == round(100_000 + pnl, 2)


def test_equity_is_marked_at_next_close(googl: pd.DataFrame) -> None:
    sim = Simulation(googl)
    sim.reset()
    sim.step(Action.BUY)
    result = sim.step(Action.HOLD)
    b = googl.index.get_loc(result.time)
    fill = float(googl["open"].iloc[googl.index.get_loc(sim.decision_times[0]) + 1])
    expected = 100_000 - 5 * fill - 1.0 + 5 * float(googl["close"].iloc[b + 1])
    assert result.equity == pytest.approx(expected)
    assert result.mark_time == googl.index[b + 1]


def test_position_limit_caps_accumulation(googl: pd.DataFrame) -> None:
    limits = RiskLimits(max_position_value=3_000)
    sim = Simulation(googl, limits=limits)
    sim.reset()
    reasons = []
    for _ in range(10):
        result = sim.step(Action.BUY)
        assert result.verdict is not None
        reasons.append(result.verdict.reason)
    assert Reason.POSITION_VALUE in reasons
    assert sim.portfolio.position * sim.price <= 3_000 * 1.2  # bounded by the limit at entry
    assert sum(r == Reason.APPROVED for r in reasons) == sim.portfolio.position // 5


def test_selling_flat_is_rejected_not_shorted(googl: pd.DataFrame) -> None:
    sim = Simulation(googl)
    sim.reset()
    result = sim.step(Action.SELL)
    assert result.verdict is not None and result.verdict.reason == Reason.SHORT_NOT_ALLOWED
    assert result.fill is None and sim.portfolio.position == 0


def test_range_limits_decisions(googl: pd.DataFrame) -> None:
    sim = Simulation(googl, start="2017-01-01", end="2017-02-01")
    assert sim.decision_times[0] >= pd.Timestamp("2017-01-01", tz=googl.index.tz)
    assert sim.decision_times[-1] < pd.Timestamp("2017-02-01", tz=googl.index.tz)
    assert len(sim) == 20  # NYSE sessions in January 2017


def test_empty_range_is_a_clear_error(googl: pd.DataFrame) -> None:
    with pytest.raises(DataError, match="no bar to decide on"):
        Simulation(googl, start="2030-01-01")


def test_bad_range_text_is_a_clear_error(googl: pd.DataFrame) -> None:
    with pytest.raises(InputError, match="cannot read 'soon'"):
        Simulation(googl, start="soon")


def test_stepping_past_the_end_is_an_error(googl: pd.DataFrame) -> None:
    sim = Simulation(googl, start="2018-08-01")
    sim.reset()
    while not sim.done:
        sim.step(Action.HOLD)
    with pytest.raises(InputError, match="reset"):
        sim.step(Action.HOLD)


def test_check_decision_uses_the_clock_for_stale_data(googl: pd.DataFrame) -> None:
    from tradinglib.execution import check_decision
    from tradinglib.portfolio import Portfolio
    from tradinglib.risk import MarketState, RiskGuard

    guard = RiskGuard(RiskLimits(max_bar_age=60.0))
    bar_time = googl.index[100]
    market = MarketState(float(googl["close"].iloc[100]), bar_time)
    _, fresh = check_decision(Action.BUY, Portfolio(cash=100_000.0), guard, market)
    _, stale = check_decision(Action.BUY, Portfolio(cash=100_000.0), guard, market,
                              now=bar_time + pd.Timedelta(minutes=5))
    assert fresh is not None and fresh.approved
    assert stale is not None and stale.reason == Reason.STALE_DATA


@pytest.mark.parametrize("fill_at", ["next_open", "close"])
def test_step_times_are_the_bars_times(googl: pd.DataFrame, fill_at: str) -> None:
    # steps on consecutive bars reuse the previous step's next-bar Timestamp: regression
    # guard that every step, consecutive or not and after a reset, gets its own bars' times
    sim = Simulation(googl, costs=Costs(fill_at=fill_at))
    for first in (0, 7, 0):
        sim.reset(first)
        for action in (Action.BUY, Action.BUY, Action.HOLD, Action.SELL, Action.SELL):
            i = sim.index
            b = googl.index.get_loc(sim.decision_times[i])
            result = sim.step(action)
            assert result.time == googl.index[b] == sim.decision_times[i]
            assert result.mark_time == googl.index[b + 1]
            if result.fill is not None:
                expected = googl.index[b + 1] if fill_at == "next_open" else googl.index[b]
                assert result.fill.time == expected
        sim.hold(3)
