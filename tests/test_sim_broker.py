"""SimBroker and the clocks: the backtest's fill model on hand-made bars, order refs,
cash, visibility by the clock, errors; replay and wall-clock pacing."""

from __future__ import annotations

import pickle
import time

import pandas as pd
import pytest

from tradinglib.broker import (
    Broker,
    BrokerError,
    BrokerFill,
    BrokerUnavailable,
    OrderRequest,
    SimBroker,
)
from tradinglib.clock import Clock, FeedClock, ReplayClock, WallClock
from tradinglib.costs import Costs
from tradinglib.exceptions import DataError, InputError, RetryableError, StopError
from tradinglib.portfolio import Fill

TIMES = pd.date_range("2024-01-02", periods=6, freq="D", tz="America/New_York", unit="us",
                      name="time")
BARS = pd.DataFrame({
    "open": [100.0, 102.0, 98.0, 105.0, 110.0, 108.0],
    "high": [101.0, 104.0, 100.0, 107.0, 112.0, 109.0],
    "low": [99.0, 101.0, 96.0, 103.0, 108.0, 106.0],
    "close": [100.5, 103.0, 99.0, 106.0, 111.0, 107.0],
    "volume": [1000.0] * 6,
}, index=TIMES)


def make(costs: Costs | None = None, cash: float = 100_000.0
         ) -> tuple[SimBroker, ReplayClock]:
    """A connected broker over BARS whose clock stands at the first bar."""
    clock = ReplayClock(TIMES, cycle_seconds=1.0)
    broker = SimBroker(BARS, clock, costs=costs or Costs(), cash=cash, symbol="XYZ")
    broker.connect()
    return broker, clock


def mkt(ref: str, quantity: int) -> OrderRequest:
    return OrderRequest(ref, "XYZ", quantity)


def lmt(ref: str, quantity: int, limit: float) -> OrderRequest:
    return OrderRequest(ref, "XYZ", quantity, "LMT", limit)


def test_sim_broker_and_clocks_meet_their_protocols() -> None:
    broker, clock = make()
    assert isinstance(broker, Broker)
    assert isinstance(clock, Clock) and isinstance(WallClock(1.0), Clock)


def test_market_order_fills_at_next_open_with_slippage_and_commission() -> None:
    costs = Costs(slippage_bps=10)
    broker, clock = make(costs)
    state = broker.place_order(mkt("r-0", 5))
    assert (state.status, state.filled, state.final) == ("submitted", 0, False)
    assert broker.fills_since(0) == []  # bar 1 not visible yet
    assert [s.ref for s in broker.open_orders()] == ["r-0"]
    assert clock.advance()
    price = 102.0 * 1.001
    assert broker.fills_since(0) == [BrokerFill("r-0", Fill(TIMES[1], 5, price, 1.0))]
    assert broker.open_orders() == []
    account = broker.account()
    assert account.cash == 100_000.0 - 5 * price - 1.0
    assert (account.position, account.avg_cost) == (5, price)
    assert account.net_liquidation == account.cash + 5 * 103.0
    assert account.time == TIMES[1]


def test_fill_at_close_fills_at_once_at_the_bar_close() -> None:
    broker, _ = make(Costs(fill_at="close", slippage_bps=10))
    state = broker.place_order(mkt("r-0", -5))
    price = 100.5 * 0.999
    assert state.status == "filled" and state.filled == 5
    assert broker.fills_since(0) == [BrokerFill("r-0", Fill(TIMES[0], -5, price, 1.0))]
    assert broker.account().position == -5


@pytest.mark.parametrize(("quantity", "limit", "slippage", "expected"), [
    (5, 103.0, 0, 102.0),      # buy: bar 1 opens below the limit, fills at the open
    (5, 102.05, 10, 102.05),   # ... but slippage never takes it over the limit
    (5, 101.5, 0, 101.5),      # buy: opens above, low 101 reaches the limit
    (5, 100.0, 0, None),       # buy: low 101 never reaches 100
    (-5, 101.0, 0, 102.0),     # sell: opens above the limit, fills at the open
    (-5, 103.5, 0, 103.5),     # sell: high 104 reaches the limit
    (-5, 105.0, 0, None),      # sell: high 104 never reaches 105
])
def test_limit_orders_fill_on_the_next_bar_at_or_through_the_limit(
        quantity: int, limit: float, slippage: float, expected: float | None) -> None:
    broker, clock = make(Costs(slippage_bps=slippage))
    broker.place_order(lmt("r-0", quantity, limit))
    clock.advance()
    fills = broker.fills_since(0)
    if expected is None:
        assert fills == [] and broker.open_orders()[0].status == "submitted"
        assert broker.cancel_order("r-0").status == "cancelled"
        assert broker.open_orders() == []
    else:
        assert [(f.fill.time, f.fill.quantity, f.fill.price) for f in fills] == [
            (TIMES[1], quantity, pytest.approx(expected))]


def test_limit_order_with_fill_at_close_waits_when_the_close_is_not_through() -> None:
    broker, clock = make(Costs(fill_at="close"))
    assert broker.place_order(lmt("r-0", 5, 100.0)).status == "submitted"  # close 100.5
    clock.advance()  # bar 1: open 102, low 101
    assert broker.fills_since(0) == []
    clock.advance()  # bar 2: opens at 98, through the limit
    assert [(f.fill.time, f.fill.price) for f in broker.fills_since(0)] == [(TIMES[2], 98.0)]


def test_duplicate_ref_is_not_sent_again() -> None:
    broker, clock = make()
    first = broker.place_order(mkt("run-3", 5))
    again = broker.place_order(mkt("run-3", 5))
    assert (again.broker_id, again.status) == (first.broker_id, "submitted")
    assert "duplicate ref" in again.detail
    assert len(broker.open_orders()) == 1
    clock.advance()
    assert len(broker.fills_since(0)) == 1 and broker.account().position == 5
    assert broker.place_order(mkt("run-3", 5)).status == "filled"
    clock.advance()
    assert len(broker.fills_since(0)) == 1 and broker.account().position == 5
    with pytest.raises(BrokerError, match="already used"):
        broker.place_order(mkt("run-3", -5))


def test_buys_over_available_cash_are_rejected_counting_working_buys() -> None:
    broker, clock = make(cash=1_000.0)
    assert broker.place_order(mkt("a", 5)).status == "submitted"  # about 503.50
    second = broker.place_order(mkt("b", 5))
    assert second.status == "rejected" and second.final
    assert "insufficient cash" in second.detail and "available 496.50" in second.detail
    assert broker.account().available_funds == pytest.approx(496.5)
    assert broker.place_order(mkt("c", -5)).status == "submitted"  # sells need no cash
    assert broker.place_order(mkt("b", 5)).status == "rejected"  # a rejected ref stays used
    clock.advance()
    assert [f.ref for f in broker.fills_since(0)] == ["a", "c"]


def test_orders_for_another_symbol_are_rejected() -> None:
    broker, _ = make()
    state = broker.place_order(OrderRequest("x", "ABC", 5))
    assert state.status == "rejected" and "'ABC'" in state.detail


def test_only_bars_up_to_the_clock_are_visible() -> None:
    broker, clock = make()
    assert list(broker.bars("XYZ").index) == [TIMES[0]]
    clock.advance()
    clock.advance()
    seen = broker.bars("XYZ")
    pd.testing.assert_frame_equal(seen, BARS.iloc[:3])
    seen.iloc[0, 0] = -1.0  # a copy: the broker's data is untouched
    assert broker.bars("XYZ").iloc[0, 0] == 100.0
    with pytest.raises(BrokerError, match="no market data for 'ABC'"):
        broker.bars("ABC")


def test_fills_since_reads_without_consuming() -> None:
    broker, clock = make()
    broker.place_order(mkt("a", 5))
    clock.advance()
    broker.place_order(mkt("b", -5))
    clock.advance()
    every = broker.fills_since(0)
    assert [f.ref for f in every] == ["a", "b"]
    assert broker.fills_since(1) == every[1:] and broker.fills_since(2) == []
    with pytest.raises(InputError, match="integer >= 0"):
        broker.fills_since(-1)


def test_cancel_unknown_ref_raises_and_final_orders_stay() -> None:
    broker, clock = make()
    with pytest.raises(BrokerError, match="no order with ref 'nope'"):
        broker.cancel_order("nope")
    broker.place_order(mkt("a", 5))
    assert broker.order_state("a").status == "submitted"
    clock.advance()
    assert broker.cancel_order("a").status == "filled"
    assert broker.order_state("a").status == "filled"
    with pytest.raises(BrokerError, match="no order with ref 'nope'"):
        broker.order_state("nope")


def test_calls_need_a_connection() -> None:
    broker, _ = make()
    broker.close()
    for call in (broker.account, lambda: broker.bars("XYZ"), broker.open_orders,
                 lambda: broker.place_order(mkt("a", 5))):
        with pytest.raises(BrokerUnavailable, match="connect"):
            call()
    broker.connect()
    assert broker.account().cash == 100_000.0


@pytest.mark.parametrize("error", [BrokerError("ref reused"), BrokerUnavailable("lost")])
def test_broker_errors_pickle_and_say_what_to_do(error: Exception) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error) and str(copy) == str(error)
    assert isinstance(BrokerError("x"), StopError)
    assert isinstance(BrokerUnavailable("x"), RetryableError)


@pytest.mark.parametrize(("args", "message"), [
    (("", "XYZ", 5), "ref must be a non-empty string"),
    (("a", "XYZ", 0), "non-zero integer"),
    (("a", "XYZ", 2.5), "non-zero integer"),
    (("a", "XYZ", 5, "STP"), "'MKT' or 'LMT'"),
    (("a", "XYZ", 5, "MKT", 100.0), "takes no limit_price"),
    (("a", "XYZ", 5, "LMT"), "needs a limit_price"),
    (("a", "XYZ", 5, "LMT", -1.0), "needs a limit_price"),
])
def test_order_request_checks_its_fields(args: tuple[object, ...], message: str) -> None:
    with pytest.raises(InputError, match=message):
        OrderRequest(*args)  # type: ignore[arg-type]


def test_sim_broker_checks_its_input() -> None:
    clock = ReplayClock(TIMES, cycle_seconds=1.0)
    with pytest.raises(DataError, match="tz-aware"):
        SimBroker(BARS.tz_localize(None), clock)
    with pytest.raises(DataError, match="lack column"):
        SimBroker(BARS.drop(columns="low"), clock)
    with pytest.raises(InputError, match="cash must be"):
        SimBroker(BARS, clock, cash=0)


# -- clocks ---------------------------------------------------------------------------


def test_replay_clock_steps_bar_by_bar_and_stops_at_the_end() -> None:
    clock = ReplayClock(TIMES[:3], cycle_seconds=30)
    seen = [clock.now()]
    while clock.advance():
        seen.append(clock.now())
    assert seen == list(TIMES[:3])
    assert not clock.advance() and clock.now() == TIMES[2]


def test_replay_clock_paces_cycles_by_speed() -> None:
    started = time.monotonic()
    clock = ReplayClock(TIMES[:5], cycle_seconds=0.1, speed=2)  # 0.05 s per cycle
    while clock.advance():
        pass
    assert time.monotonic() - started >= 0.2


def test_wall_clock_tells_utc_and_waits_a_cycle() -> None:
    started = time.monotonic()
    clock = WallClock(0.02)
    assert clock.advance() and clock.advance()
    assert time.monotonic() - started >= 0.04
    now = clock.now()
    assert str(now.tz) == "UTC"
    assert abs((pd.Timestamp.now(tz="UTC") - now).total_seconds()) < 60


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"times": TIMES[:0]}, "non-empty"),
    ({"times": TIMES.tz_localize(None)}, "tz-aware"),
    ({"times": TIMES[::-1]}, "strictly increasing"),
    ({"cycle_seconds": 0}, "cycle_seconds must be"),
    ({"speed": -1}, "speed must be"),
    ({"speed": float("inf")}, "speed must be"),
])
def test_replay_clock_checks_its_input(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"times": TIMES, "cycle_seconds": 1.0, "speed": 0.0, **kwargs}
    with pytest.raises(InputError, match=message):
        ReplayClock(**args)  # type: ignore[arg-type]


class _Feed:
    """A feed whose server time and newest bar are set by the test."""

    def __init__(self, server: pd.Timestamp, bar: pd.Timestamp | None) -> None:
        self.server, self.bar = server, bar

    def wait_for_bar(self, timeout: float) -> bool:
        return False

    def server_time(self) -> pd.Timestamp:
        return self.server

    def latest_bar_time(self) -> pd.Timestamp | None:
        return self.bar


def test_feed_clock_runs_from_the_server_time_and_jumps_to_newer_bars_in_utc() -> None:
    server = pd.Timestamp("2026-11-25 14:30", tz="UTC")
    feed = _Feed(server, pd.Timestamp("2026-11-25 09:00", tz="America/New_York"))
    clock = FeedClock(feed, wait_seconds=1.0)
    assert server <= clock.now() < server + pd.Timedelta(seconds=5)  # the bar is older
    feed.bar = pd.Timestamp("2026-11-25 10:00", tz="America/New_York")  # 15:00 UTC
    now = clock.now()
    assert now == feed.bar and str(now.tz) == "UTC"
