"""Costs, fills and the risk check: hand-computed tables."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from tradinglib.costs import Costs
from tradinglib.exceptions import InputError
from tradinglib.portfolio import Fill, Portfolio
from tradinglib.risk import MarketState, OrderIntent, Reason, RiskGuard, RiskLimits
from tradinglib.types import Action

T0 = pd.Timestamp("2024-01-02 15:00", tz="America/New_York")


@pytest.mark.parametrize(
    ("quantity", "price", "expected"),
    [
        (5, 100.0, 1.00),  # 5 x 0.005 = 0.025, minimum 1.00
        (500, 100.0, 2.50),  # 500 x 0.005
        (1000, 100.0, 5.00),
        (5, 10.0, 0.50),  # minimum 1.00 capped at 1% of 50.00
        (-500, 100.0, 2.50),  # sells cost the same
        (1, 0.5, 0.005),  # 1% of 0.50
    ],
)
def test_ibkr_commission(quantity: int, price: float, expected: float) -> None:
    assert Costs().commission(quantity, price) == pytest.approx(expected)


def test_slippage_is_adverse() -> None:
    costs = Costs(slippage_bps=10)
    assert costs.fill_price(1, 100.0) == pytest.approx(100.10)
    assert costs.fill_price(-1, 100.0) == pytest.approx(99.90)


@pytest.mark.parametrize("field", ["commission_per_share", "commission_min", "slippage_bps"])
def test_negative_costs_rejected(field: str) -> None:
    with pytest.raises(InputError, match=field):
        Costs(**{field: -1.0})


def test_fill_accounting_round_trip() -> None:
    p = Portfolio(cash=10_000.0)
    p.apply(Fill(T0, 10, 100.0, 1.0))
    p.apply(Fill(T0, 10, 110.0, 1.0))
    assert (p.position, p.avg_cost) == (20, pytest.approx(105.0))
    assert p.cash == pytest.approx(10_000 - 1000 - 1100 - 2)
    p.apply(Fill(T0, -5, 120.0, 1.0))  # realize 5 x 15 - 1
    assert p.realized_pnl == pytest.approx(-2 + 74.0)
    assert (p.position, p.avg_cost) == (15, pytest.approx(105.0))
    p.apply(Fill(T0, -15, 100.0, 1.0))  # realize 15 x -5 - 1
    assert p.position == 0 and p.avg_cost == 0.0
    assert p.realized_pnl == pytest.approx(72 - 76)
    assert p.cash == pytest.approx(10_000 + p.realized_pnl)
    assert p.commissions == pytest.approx(4.0)


def test_flip_from_short_to_long_restarts_cost_basis() -> None:
    p = Portfolio(cash=1_000.0)
    p.apply(Fill(T0, -5, 50.0, 0.0))
    p.apply(Fill(T0, 8, 40.0, 0.0))
    assert p.position == 3
    assert p.avg_cost == pytest.approx(40.0)
    assert p.realized_pnl == pytest.approx(50.0)


def test_day_pnl_restarts_each_day() -> None:
    p = Portfolio(cash=1_000.0)
    p.start_day(date(2024, 1, 2), 10.0)
    p.apply(Fill(T0, 10, 10.0, 0.0))
    assert p.day_pnl(8.0) == pytest.approx(-20.0)
    p.start_day(date(2024, 1, 2), 8.0)  # same day: nothing resets
    assert p.day_pnl(8.0) == pytest.approx(-20.0)
    p.start_day(date(2024, 1, 3), 8.0)
    assert p.day_pnl(8.0) == 0.0


LIMITS = RiskLimits(max_daily_loss=100, max_position_value=1_000, trade_quantity=5)


def _portfolio(position: int, cash: float = 10_000.0, day_start: float | None = None,
               price: float = 50.0) -> Portfolio:
    p = Portfolio(cash=cash - position * price, position=position, avg_cost=price)
    p.day = T0.date()
    p.day_start_equity = p.equity(price) if day_start is None else day_start
    return p


@pytest.mark.parametrize(
    ("position", "quantity", "price", "cash", "day_start", "reason"),
    [
        (0, 5, 50.0, 10_000, None, Reason.APPROVED),
        (15, 5, 50.0, 10_000, None, Reason.APPROVED),  # exactly 1,000
        (20, 5, 50.0, 10_000, None, Reason.POSITION_VALUE),
        (0, 5, 250.0, 10_000, None, Reason.POSITION_VALUE),
        (0, 5, 50.0, 200, None, Reason.INSUFFICIENT_CASH),
        (0, -5, 50.0, 10_000, None, Reason.SHORT_NOT_ALLOWED),
        (3, -5, 50.0, 10_000, None, Reason.SHORT_NOT_ALLOWED),
        (5, -5, 50.0, 10_000, None, Reason.APPROVED),
        (5, 5, 50.0, 10_000, 10_100.0, Reason.DAILY_LOSS),  # down exactly 100
        (5, -5, 50.0, 10_000, 10_100.0, Reason.APPROVED),  # reducing passes
        (5, 5, 50.0, 10_000, 10_099.0, Reason.APPROVED),  # down 99
        (30, -5, 50.0, 10_000, None, Reason.APPROVED),  # reducing an oversize position
    ],
)
def test_guard_verdicts(position: int, quantity: int, price: float, cash: float,
                        day_start: float | None, reason: Reason) -> None:
    portfolio = _portfolio(position, cash, day_start, price)
    verdict = RiskGuard(LIMITS).check(OrderIntent(quantity), portfolio,
                                      MarketState(price, T0), T0)
    assert verdict.reason == reason, verdict.detail
    assert verdict.approved == (reason == Reason.APPROVED)


def test_intents_from_actions() -> None:
    assert OrderIntent.from_action(Action.HOLD, LIMITS) is None
    assert OrderIntent.from_action(Action.BUY, LIMITS) == OrderIntent(5)
    assert OrderIntent.from_action(Action.SELL, LIMITS) == OrderIntent(-5)


@pytest.mark.parametrize("field", ["max_daily_loss", "max_position_value", "trade_quantity"])
def test_non_positive_limits_rejected(field: str) -> None:
    with pytest.raises(InputError, match=field):
        RiskLimits(**{field: 0})
