"""Costs and fill accounting: hand-computed tables (risk checks: test_risk.py)."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from tradinglib.costs import Costs
from tradinglib.exceptions import InputError
from tradinglib.portfolio import Fill, Portfolio

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
