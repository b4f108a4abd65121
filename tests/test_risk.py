"""Risk guard: one table per rule, the kill switch, daily-loss mode, order rate, stale
data, price collar, broker sync, the verdict journal, purity of ``check``, and
hypothesis properties over random price paths, orders and limits."""

from __future__ import annotations

import copy
import math
import pickle
from dataclasses import FrozenInstanceError, dataclass, fields, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tradinglib.config import Settings
from tradinglib.costs import Costs
from tradinglib.exceptions import InputError
from tradinglib.portfolio import Fill, Portfolio
from tradinglib.risk import (
    APPROVED,
    AccountSnapshot,
    EventKind,
    GuardMode,
    MarketState,
    OrderIntent,
    Reason,
    RiskEvent,
    RiskGuard,
    RiskLimits,
    Verdict,
    VerdictRecord,
    reduces,
)
from tradinglib.types import Action

T0 = pd.Timestamp("2024-01-02 15:00", tz="America/New_York")
LIMITS = RiskLimits(max_daily_loss=100, max_position_value=1_000, trade_quantity=5)


def _portfolio(position: int, cash: float = 10_000.0, day_start: float | None = None,
               price: float = 50.0) -> Portfolio:
    p = Portfolio(cash=cash - position * price, position=position, avg_cost=price)
    p.day = T0.date()
    p.day_start_equity = p.equity(price) if day_start is None else day_start
    return p


def _check(limits: RiskLimits, position: int, intent: OrderIntent, *, price: float = 50.0,
           cash: float = 10_000.0, day_start: float | None = None,
           costs: Costs | None = None, bar_age: float = 0.0) -> Verdict:
    """Verdict of a fresh guard for ``intent`` on a portfolio holding ``position``."""
    portfolio = _portfolio(position, cash, day_start, price)
    market = MarketState(price, T0 - pd.Timedelta(seconds=bar_age))
    return RiskGuard(limits, costs).check(intent, portfolio, market, T0)


def _assert_reason(verdict: Verdict, reason: Reason) -> None:
    assert verdict.reason == reason, verdict.detail
    assert verdict.approved == (reason == Reason.APPROVED)
    assert verdict.detail or verdict.approved


# -- the seed's rules (moved from test_accounting.py) ----------------------------------


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


# -- one table per rule ----------------------------------------------------------------

SHORT = replace(LIMITS, allow_short=True)


@pytest.mark.parametrize(
    ("position", "intent", "price", "reason"),
    [
        (0, OrderIntent(0), 50.0, Reason.INVALID_ORDER),
        (0, OrderIntent(2.5), 50.0, Reason.INVALID_ORDER),  # type: ignore[arg-type]
        (0, OrderIntent(True), 50.0, Reason.INVALID_ORDER),
        (0, OrderIntent(5, 0.0), 50.0, Reason.INVALID_ORDER),
        (0, OrderIntent(5, -50.0), 50.0, Reason.INVALID_ORDER),
        (0, OrderIntent(5, math.nan), 50.0, Reason.INVALID_ORDER),
        (0, OrderIntent(5, math.inf), 50.0, Reason.INVALID_ORDER),
        (0, OrderIntent(5), 0.0, Reason.INVALID_ORDER),
        (0, OrderIntent(5), math.nan, Reason.INVALID_ORDER),
        (0, OrderIntent(5), -1.0, Reason.INVALID_ORDER),
        (10, OrderIntent(0), 50.0, Reason.INVALID_ORDER),  # before any other rule
        (0, OrderIntent(np.int64(5)), 50.0, Reason.APPROVED),  # numpy integers are fine
        (0, OrderIntent(5), np.float64(50.0), Reason.APPROVED),
        (0, OrderIntent(5, 50.0), 50.0, Reason.APPROVED),
    ],
)
def test_invalid_orders(position: int, intent: OrderIntent, price: float,
                        reason: Reason) -> None:
    _assert_reason(_check(LIMITS, position, intent, price=price), reason)


@pytest.mark.parametrize(
    ("limits", "position", "quantity", "reason"),
    [
        (LIMITS, 0, -5, Reason.SHORT_NOT_ALLOWED),
        (LIMITS, 5, -6, Reason.SHORT_NOT_ALLOWED),
        (LIMITS, 5, -5, Reason.APPROVED),  # exactly flat
        (SHORT, 0, -5, Reason.APPROVED),
        (SHORT, 3, -5, Reason.APPROVED),  # crossing through zero when shorting is on
        (SHORT, -15, -5, Reason.APPROVED),  # short position value exactly 1,000
        (SHORT, -20, -5, Reason.POSITION_VALUE),
        (SHORT, -30, 5, Reason.APPROVED),  # covering an oversize short reduces
    ],
)
def test_short_rule(limits: RiskLimits, position: int, quantity: int, reason: Reason) -> None:
    _assert_reason(_check(limits, position, OrderIntent(quantity)), reason)


@pytest.mark.parametrize(
    ("position", "quantity", "costs", "reason"),
    [
        (15, 5, None, Reason.APPROVED),  # 20 x 50 = 1,000
        (15, 5, Costs(slippage_bps=10), Reason.POSITION_VALUE),  # 20 x 50.05 = 1,001
        (16, 4, None, Reason.APPROVED),
        (16, 5, None, Reason.POSITION_VALUE),  # 21 x 50 = 1,050
        (40, -5, Costs(slippage_bps=10), Reason.APPROVED),  # reducing is never capped
        (40, 5, None, Reason.POSITION_VALUE),
    ],
)
def test_position_value_rule(position: int, quantity: int, costs: Costs | None,
                             reason: Reason) -> None:
    _assert_reason(_check(LIMITS, position, OrderIntent(quantity), costs=costs), reason)


@pytest.mark.parametrize(
    ("cash", "intent", "costs", "reason"),
    [
        (250.0, OrderIntent(5), None, Reason.APPROVED),  # exactly the cost
        (249.99, OrderIntent(5), None, Reason.INSUFFICIENT_CASH),
        (250.0, OrderIntent(5), Costs(), Reason.INSUFFICIENT_CASH),  # + 1.00 commission
        (251.0, OrderIntent(5), Costs(), Reason.APPROVED),
        (251.0, OrderIntent(5), Costs(slippage_bps=10), Reason.INSUFFICIENT_CASH),
        (245.0, OrderIntent(5, 49.0), None, Reason.APPROVED),  # priced at the limit
        (244.99, OrderIntent(5, 49.0), None, Reason.INSUFFICIENT_CASH),
        (0.0, OrderIntent(-5), Costs(), Reason.APPROVED),  # sells need no cash
    ],
)
def test_cash_rule(cash: float, intent: OrderIntent, costs: Costs | None,
                   reason: Reason) -> None:
    # position 5 so the sell reduces; cash is what remains after holding it
    _assert_reason(_check(LIMITS, 5, intent, cash=cash + 250.0, costs=costs), reason)


@pytest.mark.parametrize(
    ("max_order_value", "position", "intent", "reason"),
    [
        (250.0, 0, OrderIntent(5), Reason.APPROVED),  # exactly 5 x 50
        (249.99, 0, OrderIntent(5), Reason.ORDER_VALUE),
        (250.0, 0, OrderIntent(5, 50.02), Reason.ORDER_VALUE),  # valued at the limit price
        (250.0, 0, OrderIntent(5, 49.0), Reason.APPROVED),
        (249.99, 10, OrderIntent(-5), Reason.ORDER_VALUE),  # applies to every order
        (None, 0, OrderIntent(5), Reason.APPROVED),  # off
    ],
)
def test_order_value_rule(max_order_value: float | None, position: int, intent: OrderIntent,
                          reason: Reason) -> None:
    limits = replace(LIMITS, max_order_value=max_order_value)
    _assert_reason(_check(limits, position, intent), reason)


@pytest.mark.parametrize(
    ("position", "intent", "reason"),
    [
        (0, OrderIntent(5, 52.5), Reason.APPROVED),  # exactly 5% above
        (0, OrderIntent(5, 52.51), Reason.PRICE_COLLAR),
        (0, OrderIntent(5, 47.5), Reason.APPROVED),  # exactly 5% below
        (0, OrderIntent(5, 47.49), Reason.PRICE_COLLAR),
        (10, OrderIntent(-5, 40.0), Reason.PRICE_COLLAR),  # applies to reducing limits too
        (10, OrderIntent(-5), Reason.APPROVED),  # market orders have no collar
        (0, OrderIntent(5), Reason.APPROVED),
    ],
)
def test_price_collar_rule(position: int, intent: OrderIntent, reason: Reason) -> None:
    _assert_reason(_check(LIMITS, position, intent), reason)


def test_price_collar_width_is_a_limit() -> None:
    wide = replace(LIMITS, price_collar_pct=0.2)
    _assert_reason(_check(wide, 0, OrderIntent(5, 40.0)), Reason.APPROVED)
    _assert_reason(_check(wide, 0, OrderIntent(5, 39.99)), Reason.PRICE_COLLAR)


@pytest.mark.parametrize(
    ("max_bar_age", "bar_age", "position", "quantity", "reason"),
    [
        (60.0, 0.0, 0, 5, Reason.APPROVED),
        (60.0, 60.0, 0, 5, Reason.APPROVED),  # exactly the limit
        (60.0, 61.0, 0, 5, Reason.STALE_DATA),
        (60.0, 3600.0, 10, -5, Reason.APPROVED),  # reducing passes on stale data
        (60.0, 3600.0, 10, -10, Reason.APPROVED),  # flattening too
        (60.0, 3600.0, 10, 5, Reason.STALE_DATA),
        (60.0, -30.0, 0, 5, Reason.APPROVED),  # bar time after now is not stale
        (None, 10 * 86_400.0, 0, 5, Reason.APPROVED),  # off
    ],
)
def test_stale_data_rule(max_bar_age: float | None, bar_age: float, position: int,
                         quantity: int, reason: Reason) -> None:
    limits = replace(LIMITS, max_bar_age=max_bar_age)
    _assert_reason(_check(limits, position, OrderIntent(quantity), bar_age=bar_age), reason)


def test_mixed_naive_and_aware_times_are_an_input_error() -> None:
    guard = RiskGuard(replace(LIMITS, max_bar_age=60.0))
    market = MarketState(50.0, datetime(2024, 1, 2, 15))
    with pytest.raises(InputError, match="timezone-aware"):
        guard.check(OrderIntent(5), _portfolio(0), market, T0)


@pytest.mark.parametrize(
    ("limits", "position", "quantity", "bar_age", "day_start", "reason"),
    [
        # halted comes before stale data and daily loss; those before the rate rule
        (replace(LIMITS, max_bar_age=1.0), 0, 5, 10.0, 10_100.0, Reason.STALE_DATA),
        (LIMITS, 0, 5, 10.0, 10_100.0, Reason.DAILY_LOSS),
        (replace(LIMITS, max_order_value=1.0), 0, 5, 0.0, 10_100.0, Reason.DAILY_LOSS),
        (replace(LIMITS, max_order_value=1.0), 0, 50, 0.0, None, Reason.ORDER_VALUE),
        (replace(LIMITS, max_order_value=1.0), 0, -5, 0.0, None, Reason.SHORT_NOT_ALLOWED),
        (replace(SHORT, max_bar_age=1.0), 3, -5, 10.0, None, Reason.STALE_DATA),  # crossing
        (SHORT, 3, -5, 0.0, 10_100.0, Reason.DAILY_LOSS),  # crossing zero adds risk
        (LIMITS, 0, 500, 0.0, None, Reason.POSITION_VALUE),  # before cash (cash too low)
    ],
)
def test_rule_order(limits: RiskLimits, position: int, quantity: int, bar_age: float,
                    day_start: float | None, reason: Reason) -> None:
    verdict = _check(limits, position, OrderIntent(quantity), bar_age=bar_age,
                     day_start=day_start)
    _assert_reason(verdict, reason)


def test_every_reason_code_is_covered_by_the_tables() -> None:
    covered = {Reason.APPROVED, Reason.INVALID_ORDER, Reason.SHORT_NOT_ALLOWED,
               Reason.HALTED, Reason.STALE_DATA, Reason.DAILY_LOSS, Reason.ORDER_RATE,
               Reason.ORDER_VALUE, Reason.PRICE_COLLAR, Reason.POSITION_VALUE,
               Reason.INSUFFICIENT_CASH}
    assert covered == set(Reason)


@pytest.mark.parametrize(
    ("position", "quantity", "expected"),
    [(10, -5, True), (10, -10, True), (10, -11, False), (10, -20, False), (10, 1, False),
     (-10, 5, True), (-10, 10, True), (-10, 15, False), (0, 5, False), (0, -5, False)],
)
def test_reduces(position: int, quantity: int, expected: bool) -> None:
    assert reduces(position, quantity) is expected


# -- kill switch -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limits", "position", "quantity", "reason"),
    [
        (LIMITS, 10, -10, Reason.APPROVED),  # flatten
        (LIMITS, 10, -5, Reason.APPROVED),  # partial reduce
        (LIMITS, 10, 5, Reason.HALTED),  # increase
        (LIMITS, 0, 5, Reason.HALTED),  # open
        (SHORT, 3, -5, Reason.HALTED),  # crossing through zero
        (SHORT, -10, 20, Reason.HALTED),
        (SHORT, 0, -5, Reason.HALTED),
        (SHORT, -10, 10, Reason.APPROVED),  # cover
        (LIMITS, 0, -5, Reason.SHORT_NOT_ALLOWED),  # short rule comes first
    ],
)
def test_halt_lets_only_reducing_orders_through(limits: RiskLimits, position: int,
                                                quantity: int, reason: Reason) -> None:
    guard = RiskGuard(limits)
    guard.halt("broker disconnected", T0)
    portfolio, market = _portfolio(position), MarketState(50.0, T0)
    _assert_reason(guard.check(OrderIntent(quantity), portfolio, market, T0), reason)
    assert guard.mode(portfolio, market) == GuardMode.HALTED


def test_halt_and_resume_are_recorded() -> None:
    guard = RiskGuard(LIMITS)
    portfolio, market = _portfolio(0), MarketState(50.0, T0)
    assert not guard.halted and guard.halt_reason is None
    guard.halt("manual stop", T0)
    assert guard.halted and guard.halt_reason == "manual stop"
    assert guard.check(OrderIntent(5), portfolio, market, T0).reason == Reason.HALTED
    later = T0 + pd.Timedelta(minutes=5)
    guard.resume(later)
    guard.resume(later)  # already running: nothing recorded
    assert not guard.halted
    assert guard.check(OrderIntent(5), portfolio, market, later) == APPROVED
    assert guard.mode(portfolio, market) == GuardMode.NORMAL
    assert [(e.time, e.kind) for e in guard.events] == [
        (T0, EventKind.HALT), (later, EventKind.RESUME)]
    assert guard.events[0].detail == "manual stop"
    assert "manual stop" in guard.events[1].detail


@pytest.mark.parametrize("reason", ["", "   "])
def test_halt_needs_a_reason(reason: str) -> None:
    with pytest.raises(InputError, match="reason"):
        RiskGuard(LIMITS).halt(reason, T0)


# -- daily loss: REDUCING until the next trading day --------------------------------------


def test_reducing_until_the_next_trading_day() -> None:
    guard = RiskGuard(LIMITS)
    p = Portfolio(cash=10_000.0)
    p.start_day(date(2024, 1, 2), 50.0)
    p.apply(Fill(T0, 10, 50.0, 0.0))
    down, up = MarketState(40.0, T0), MarketState(50.0, T0)  # 10 x -10 = -100
    assert guard.mode(p, up) == GuardMode.NORMAL
    assert guard.mode(p, down) == GuardMode.REDUCING
    assert guard.submit(OrderIntent(5), p, down, T0).reason == Reason.DAILY_LOSS
    assert guard.submit(OrderIntent(-5), p, down, T0).reason == Reason.APPROVED
    # prices recover the same day: still reducing only (the guard saw the loss)
    later = T0 + pd.Timedelta(hours=1)
    assert guard.mode(p, up) == GuardMode.REDUCING
    assert guard.submit(OrderIntent(5), p, up, later).reason == Reason.DAILY_LOSS
    assert guard.submit(OrderIntent(-5), p, up, later).approved
    # the next trading day starts afresh
    p.start_day(date(2024, 1, 3), 50.0)
    assert guard.mode(p, up) == GuardMode.NORMAL
    assert guard.submit(OrderIntent(5), p, up, later + pd.Timedelta(days=1)).approved
    reached = [e for e in guard.events if e.kind == EventKind.DAILY_LOSS_REACHED]
    assert len(reached) == 1 and reached[0].time == T0 and "2024-01-02" in reached[0].detail


def test_daily_loss_event_once_per_trading_day() -> None:
    guard = RiskGuard(LIMITS)
    p = _portfolio(10, day_start=10_100.0)  # down exactly 100
    market = MarketState(50.0, T0)
    for k in range(3):
        guard.submit(OrderIntent(5), p, market, T0 + pd.Timedelta(minutes=k))
    guard.observe(p, market, T0 + pd.Timedelta(minutes=5))
    assert [e.kind for e in guard.events] == [EventKind.DAILY_LOSS_REACHED]
    p.start_day(date(2024, 1, 3), 50.0)
    p.day_start_equity += 100.0
    assert guard.observe(p, market, T0 + pd.Timedelta(days=1)) == GuardMode.REDUCING
    assert [e.kind for e in guard.events] == [EventKind.DAILY_LOSS_REACHED] * 2


def test_check_alone_does_not_remember_the_loss() -> None:
    """Without submit/observe the guard has seen nothing: the rule is today's P&L."""
    guard = RiskGuard(LIMITS)
    p = _portfolio(10, day_start=10_000.0)
    assert guard.check(OrderIntent(5), p, MarketState(40.0, T0), T0).reason == Reason.DAILY_LOSS
    assert guard.check(OrderIntent(5), p, MarketState(50.0, T0), T0).approved
    assert guard.events == []


# -- order rate --------------------------------------------------------------------------


def test_order_rate_window_moves() -> None:
    guard = RiskGuard(replace(LIMITS, max_orders_per_minute=3, max_position_value=1e9))
    p, market = _portfolio(0, cash=1e6), MarketState(50.0, T0)

    def at(seconds: float, quantity: int = 5) -> Verdict:
        return guard.submit(OrderIntent(quantity), p, market, T0 + pd.Timedelta(seconds=seconds))

    assert all(at(s).approved for s in (0, 10, 20))
    assert at(30).reason == Reason.ORDER_RATE
    assert at(59.999).reason == Reason.ORDER_RATE
    p.position = 15
    assert at(30, -5).approved  # reducing orders are never throttled, and count
    assert at(60).reason == Reason.ORDER_RATE  # 0 s drops out; 10, 20, 30 remain
    assert at(69).reason == Reason.ORDER_RATE
    assert at(70).approved  # 20, 30 remain: the third is allowed
    assert guard.orders_in_window(T0 + pd.Timedelta(seconds=70)) == 3
    assert guard.orders_in_window(T0 + pd.Timedelta(seconds=200)) == 0
    assert at(200).approved
    assert len(guard._order_times) <= 3  # bounded memory


def test_rejected_orders_do_not_count_toward_the_rate() -> None:
    guard = RiskGuard(replace(LIMITS, max_orders_per_minute=1))
    p, market = _portfolio(0, cash=100.0), MarketState(50.0, T0)
    assert guard.submit(OrderIntent(5), p, market, T0).reason == Reason.INSUFFICIENT_CASH
    p.cash = 1_000.0
    assert guard.submit(OrderIntent(5), p, market, T0).approved
    assert guard.submit(OrderIntent(5), p, market, T0).reason == Reason.ORDER_RATE


def test_order_rate_off() -> None:
    guard = RiskGuard(replace(LIMITS, max_orders_per_minute=None, max_position_value=1e12))
    p, market = _portfolio(0, cash=1e9), MarketState(50.0, T0)
    assert all(guard.submit(OrderIntent(5), p, market, T0).approved for _ in range(100))
    assert guard.orders_in_window(T0) == 0


# -- broker sync -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ours", "broker", "adopted"),
    [
        (10_000.0, 10_000.0, False),
        (10_000.0, 11_000.0, False),  # exactly the threshold
        (10_000.0, 9_000.0, False),
        (10_000.0, 11_000.01, True),
        (10_000.0, 8_999.99, True),
        (10_000.0, 0.0, True),
    ],
)
def test_cash_sync_threshold(ours: float, broker: float, adopted: bool) -> None:
    guard = RiskGuard(LIMITS)
    p = Portfolio(cash=ours)
    event = guard.sync(AccountSnapshot(cash=broker, position=0), p, T0)
    assert p.cash == (broker if adopted else ours)
    if adopted:
        assert event is not None and event.kind == EventKind.CASH_SYNC and event.time == T0
        assert f"{broker:.2f}" in event.detail and f"{ours:.2f}" in event.detail
        assert guard.events == [event]
    else:
        assert event is None and guard.events == []


def test_cash_sync_threshold_is_a_limit() -> None:
    guard = RiskGuard(replace(LIMITS, cash_sync_threshold=0.0))
    p = Portfolio(cash=100.0)
    assert guard.sync(AccountSnapshot(cash=100.01, position=0), p, T0) is not None
    assert p.cash == 100.01


@pytest.mark.parametrize(
    ("ours", "avg_cost", "broker", "broker_cost", "expected_cost"),
    [
        (10, 50.0, 15, None, 50.0),  # same side: keep the average cost
        (10, 50.0, 0, None, 0.0),  # flat
        (10, 50.0, -5, None, 0.0),  # other side: unknown entry
        (0, 0.0, 5, None, 0.0),  # from flat: unknown entry
        (0, 0.0, 5, 48.0, 48.0),  # the broker's average cost wins when given
        (-10, 50.0, -4, None, 50.0),
    ],
)
def test_position_sync(ours: int, avg_cost: float, broker: int, broker_cost: float | None,
                       expected_cost: float) -> None:
    guard = RiskGuard(LIMITS)
    p = Portfolio(cash=10_000.0, position=ours, avg_cost=avg_cost)
    event = guard.sync(AccountSnapshot(10_000.0, broker, avg_cost=broker_cost), p, T0)
    assert (p.position, p.avg_cost, p.cash) == (broker, expected_cost, 10_000.0)
    assert event is not None and event.kind == EventKind.POSITION_SYNC
    assert f"broker position {broker}, ours {ours}" in event.detail
    assert guard.events == [event]


def test_sync_of_cash_and_position_records_both() -> None:
    guard = RiskGuard(LIMITS)
    p = Portfolio(cash=10_000.0, position=10, avg_cost=50.0)
    event = guard.sync(AccountSnapshot(cash=5_000.0, position=20, available_funds=4_000.0,
                                       net_liquidation=6_000.0, time=T0), p, T0)
    assert event is not None and event.kind == EventKind.CASH_SYNC
    assert [e.kind for e in guard.events] == [EventKind.CASH_SYNC, EventKind.POSITION_SYNC]
    assert (p.cash, p.position) == (5_000.0, 20)
    assert guard.sync(AccountSnapshot(cash=5_000.0, position=20), p, T0) is None
    assert len(guard.events) == 2


@pytest.mark.parametrize(
    "kwargs",
    [{"cash": math.nan, "position": 0}, {"cash": "1000", "position": 0},
     {"cash": 1.0, "position": 1.5}, {"cash": 1.0, "position": 0, "avg_cost": math.inf}],
)
def test_bad_account_snapshot(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InputError, match="AccountSnapshot"):
        AccountSnapshot(**kwargs)


# -- journal and purity ------------------------------------------------------------------


def test_submit_records_every_verdict() -> None:
    guard = RiskGuard(LIMITS)
    p, market = _portfolio(0, cash=300.0), MarketState(50.0, T0)
    intents = [OrderIntent(5), OrderIntent(5), OrderIntent(-5), OrderIntent(0),
               OrderIntent(5, 60.0)]
    times = [T0 + pd.Timedelta(seconds=k) for k in range(len(intents))]
    verdicts = [guard.submit(i, p, market, t) for i, t in zip(intents, times, strict=True)]
    assert [v.reason for v in verdicts] == [
        Reason.APPROVED, Reason.APPROVED, Reason.SHORT_NOT_ALLOWED, Reason.INVALID_ORDER,
        Reason.PRICE_COLLAR]  # the guard does not fill: the portfolio stays flat
    assert guard.verdicts == [VerdictRecord(t, i, v)
                              for t, i, v in zip(times, intents, verdicts, strict=True)]
    assert guard.verdicts[2].reason == Reason.SHORT_NOT_ALLOWED


def test_records_are_frozen() -> None:
    record = VerdictRecord(T0, OrderIntent(5), APPROVED)
    event = RiskEvent(T0, EventKind.HALT, "x")
    with pytest.raises(FrozenInstanceError):
        record.time = T0  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError):
        event.detail = "y"  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError):
        LIMITS.max_daily_loss = 1.0  # type: ignore[misc]


def _state(guard: RiskGuard) -> dict[str, Any]:
    return copy.deepcopy(vars(guard))


@pytest.mark.parametrize("halted", [False, True])
def test_check_mutates_nothing(halted: bool) -> None:
    limits = replace(LIMITS, max_orders_per_minute=2, max_bar_age=60.0, max_order_value=500.0)
    guard = RiskGuard(limits, Costs(slippage_bps=5))
    p = _portfolio(10, day_start=10_050.0)
    market = MarketState(50.0, T0)
    guard.submit(OrderIntent(5), p, market, T0)  # some recorded state
    if halted:
        guard.halt("test", T0)
    before_guard, before_portfolio = _state(guard), replace(p)
    intents = [OrderIntent(q, lp) for q in (-20, -10, -5, 0, 1, 5, 50)
               for lp in (None, 49.0, 60.0, math.nan)]
    for now in (T0, T0 + pd.Timedelta(seconds=30), T0 + pd.Timedelta(hours=1)):
        for price in (40.0, 50.0, 60.0):
            m = MarketState(price, T0)
            first = [guard.check(i, p, m, now) for i in intents]
            again = [guard.check(i, p, m, now) for i in intents]
            assert first == again  # deterministic
            guard.mode(p, m)
    assert _state(guard) == before_guard
    assert p == before_portfolio


# -- limits ------------------------------------------------------------------------------


def test_new_limits_have_documented_defaults() -> None:
    limits = RiskLimits()
    assert (limits.max_daily_loss, limits.max_position_value, limits.trade_quantity) == (
        500.0, 10_000.0, 5)
    assert (limits.max_orders_per_minute, limits.max_order_value, limits.price_collar_pct,
            limits.max_bar_age, limits.cash_sync_threshold, limits.allow_short) == (
        30, None, 0.05, None, 1_000.0, False)
    assert set(limits.to_dict()) == {f.name for f in fields(RiskLimits)}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_daily_loss", -1.0), ("max_daily_loss", math.nan), ("max_daily_loss", math.inf),
        ("max_daily_loss", "500"), ("max_daily_loss", None),
        ("max_position_value", -5), ("max_position_value", math.inf),
        ("trade_quantity", 2.5), ("trade_quantity", True), ("trade_quantity", -1),
        ("max_orders_per_minute", 0), ("max_orders_per_minute", 1.5),
        ("max_order_value", 0.0), ("max_order_value", math.nan),
        ("price_collar_pct", 0.0), ("price_collar_pct", 1.0), ("price_collar_pct", 5.0),
        ("price_collar_pct", -0.05), ("price_collar_pct", math.nan),
        ("max_bar_age", 0.0), ("max_bar_age", -60.0),
        ("cash_sync_threshold", -1.0), ("cash_sync_threshold", math.inf),
        ("allow_short", "yes"), ("allow_short", 1),
    ],
)
def test_invalid_limit_values(field: str, value: object) -> None:
    with pytest.raises(InputError, match=field):
        RiskLimits(**{field: value})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [{"max_orders_per_minute": None}, {"max_order_value": 1.0}, {"max_bar_age": 0.5},
     {"cash_sync_threshold": 0.0}, {"price_collar_pct": 0.999}, {"max_daily_loss": 1}],
)
def test_valid_limit_edges(kwargs: dict[str, Any]) -> None:
    limits = RiskLimits(**kwargs)  # raises InputError if the edge were refused
    assert {name: getattr(limits, name) for name in kwargs} == kwargs


def test_from_settings_with_overrides() -> None:
    limits = RiskLimits.from_settings(Settings(max_daily_loss=100, trade_quantity=2),
                                      max_bar_age=120.0, allow_short=True)
    assert (limits.max_daily_loss, limits.trade_quantity, limits.max_position_value) == (
        100, 2, 10_000)
    assert (limits.max_bar_age, limits.allow_short) == (120.0, True)


def test_from_settings_unknown_override_suggests_the_closest() -> None:
    with pytest.raises(InputError) as info:
        RiskLimits.from_settings(Settings(), max_dayly_loss=100)
    message = str(info.value)
    assert "'max_dayly_loss' (did you mean 'max_daily_loss'?)" in message
    assert all(f.name in message for f in fields(RiskLimits))
    with pytest.raises(InputError, match=r"unknown risk limit 'zzz'; valid names"):
        RiskLimits.from_settings(Settings(), zzz=1)


def test_from_settings_checks_override_values() -> None:
    with pytest.raises(InputError, match="price_collar_pct"):
        RiskLimits.from_settings(Settings(), price_collar_pct=5)


def test_errors_pickle() -> None:
    with pytest.raises(InputError) as info:
        RiskLimits.from_settings(Settings(), max_dayly_loss=100)
    again = pickle.loads(pickle.dumps(info.value))
    assert type(again) is InputError and str(again) == str(info.value)


# -- properties over random price paths, orders and limits --------------------------------

START = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)


@dataclass(frozen=True)
class Scenario:
    """A random price path with orders, kill-switch toggles, limits and costs."""

    prices: list[float]
    gaps: list[int]  # seconds from one bar to the next
    lags: list[int]  # seconds from the bar's time to the decision's ``now``
    quantities: list[int]  # 0 = HOLD
    limit_offsets: list[float | None]  # None: market order, else limit = price x (1 + x)
    switches: list[str | None]  # "halt", "resume" or nothing before the decision
    limits: RiskLimits
    costs: Costs
    cash: float
    mark_every_bar: bool  # also show the guard HOLD bars (observe)


@dataclass(frozen=True)
class Step:
    """What happened at one decision of :func:`drive`."""

    intent: OrderIntent | None
    verdict: Verdict | None
    fill: Fill | None
    position_before: int
    position_after: int
    cash_after: float
    loss_reached: bool  # the guard has seen day P&L <= -max_daily_loss this trading day
    halted: bool
    mode: GuardMode  # before the decision
    seen: bool  # the guard was shown this decision (an order, or observe on HOLD)


def _shrinks(position: int, quantity: int) -> bool:
    """The test's own oracle for "reduces": same side or flat, and smaller."""
    new = position + quantity
    return (position > 0 and 0 <= new < position) or (position < 0 and position < new <= 0)


def _optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    n = draw(st.integers(5, 40))

    def per_bar(strategy: st.SearchStrategy[Any]) -> list[Any]:
        return draw(st.lists(strategy, min_size=n, max_size=n))

    price = draw(st.floats(1.0, 500.0))
    prices = []
    for r in per_bar(st.floats(-0.25, 0.25)):
        price *= math.exp(r)
        prices.append(price)
    limits = RiskLimits(
        max_daily_loss=draw(st.floats(1.0, 2_000.0)),
        max_position_value=draw(st.floats(10.0, 20_000.0)),
        trade_quantity=draw(st.integers(1, 50)),
        allow_short=draw(st.booleans()),
        max_orders_per_minute=draw(_optional(st.integers(1, 5))),
        max_order_value=draw(_optional(st.floats(10.0, 20_000.0))),
        price_collar_pct=draw(st.floats(0.01, 0.5)),
        max_bar_age=draw(_optional(st.floats(1.0, 600.0))),
    )
    costs = Costs(commission_per_share=draw(st.floats(0.0, 0.05)),
                  commission_min=draw(st.floats(0.0, 5.0)),
                  commission_max_pct=draw(st.floats(0.0, 0.02)),
                  slippage_bps=draw(st.floats(0.0, 50.0)))
    tq = limits.trade_quantity
    first_buy = tq * costs.fill_price(1, prices[0])  # tight cash: a buy at bar 0 just fits
    cash = draw(st.one_of(st.floats(0.0, 50_000.0), st.floats(0.0, 6.0).map(
        lambda extra: first_buy + extra)))
    quantity = st.one_of(st.just(0), st.sampled_from([tq, -tq]), st.integers(-3 * tq, 3 * tq))
    return Scenario(
        prices=prices,
        gaps=per_bar(st.one_of(st.integers(1, 90), st.integers(3_600, 2 * 86_400))),
        lags=per_bar(st.one_of(st.just(0), st.integers(0, 900))),
        quantities=per_bar(quantity),
        limit_offsets=per_bar(_optional(st.one_of(st.floats(-0.1, 0.1),
                                                   st.floats(-0.6, 0.6)))),
        switches=per_bar(st.sampled_from([None] * 12 + ["halt"] + ["resume"] * 3)),
        limits=limits,
        costs=costs,
        cash=cash,
        mark_every_bar=draw(st.booleans()),
    )


def drive(s: Scenario) -> list[Step]:
    """Run the scenario through Portfolio + RiskGuard.submit, filling approved orders at
    their order price (the limit, or the bar's last trade) plus slippage, with commission.
    """
    guard, p = RiskGuard(s.limits, s.costs), Portfolio(cash=s.cash)
    steps, time = [], START
    loss_day: date | None = None  # the trading day on which the guard saw the loss
    for k, price in enumerate(s.prices):
        time += timedelta(seconds=s.gaps[k])
        now, market = time + timedelta(seconds=s.lags[k]), MarketState(price, time)
        p.start_day(time.date(), price)
        if s.switches[k] == "halt":
            guard.halt("property test", now)
        elif s.switches[k] == "resume":
            guard.resume(now)
        qty = s.quantities[k]
        intent = verdict = fill = None
        position_before = p.position
        mode = guard.mode(p, market)
        seen = qty != 0 or s.mark_every_bar
        if seen and p.day_pnl(price) <= -s.limits.max_daily_loss:
            loss_day = p.day
        if qty == 0:
            if s.mark_every_bar:
                guard.observe(p, market, now)
        else:
            offset = s.limit_offsets[k]
            limit = None if offset is None else price * (1.0 + offset)
            intent = OrderIntent(qty, limit)
            verdict = guard.submit(intent, p, market, now)
            if verdict.approved:
                fill_price = s.costs.fill_price(1 if qty > 0 else -1,
                                                price if limit is None else limit)
                fill = Fill(pd.Timestamp(now), qty, fill_price,
                            s.costs.commission(qty, fill_price))
                p.apply(fill)
        steps.append(Step(intent, verdict, fill, position_before, p.position, p.cash,
                          loss_day == p.day, guard.halted, mode, seen))
    assert len(guard.verdicts) == sum(q != 0 for q in s.quantities)
    return steps


PROPERTY = settings(max_examples=1_000, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(scenarios())
def test_property_position_value_after_every_fill(s: Scenario) -> None:
    """After every fill of a risk-increasing order, |position| x fill price is at most
    max_position_value; after every reducing fill |position| shrank (a reducing fill may
    leave an oversize position when prices rose, and is allowed to)."""
    for step in drive(s):
        if step.fill is None:
            continue
        if _shrinks(step.position_before, step.fill.quantity):
            assert abs(step.position_after) < abs(step.position_before)
        else:
            value = abs(step.position_after) * step.fill.price
            assert value <= s.limits.max_position_value, step


@PROPERTY
@given(scenarios())
def test_property_no_risk_increase_once_daily_loss_reached(s: Scenario) -> None:
    """Once the guard has seen the trading day's P&L at or below -max_daily_loss (at a
    decision it was shown, this one included), no risk-increasing order is approved
    until the next trading day; nor while halted. The mode says so beforehand."""
    for step in drive(s):
        if step.seen and step.mode != GuardMode.HALTED:
            assert (step.mode == GuardMode.REDUCING) == step.loss_reached, step
        if step.verdict is None or step.intent is None or not step.verdict.approved:
            continue
        increasing = not _shrinks(step.position_before, step.intent.quantity)
        assert not (increasing and step.loss_reached), step
        assert not (increasing and step.halted), step


@PROPERTY
@given(scenarios())
def test_property_cash_never_negative_without_shorting(s: Scenario) -> None:
    """With shorting off, cash (net of commissions) and the position stay >= 0 after
    every decision."""
    if s.limits.allow_short:
        s = replace(s, limits=replace(s.limits, allow_short=False))
    for step in drive(s):
        assert step.cash_after >= 0.0, step
        assert step.position_after >= 0, step
