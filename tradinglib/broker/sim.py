"""An in-process simulated broker: historical bars replayed by a clock, filled with the
backtest's fill and cost model.

Time: a bar becomes visible once the clock has reached its time (``time <= now``).
The broker catches up lazily: every call first goes through the bars that became
visible since the previous call, oldest first, and fills working orders against each.
A session therefore needs nothing sim-specific: it advances its clock and calls the
:class:`~tradinglib.broker.base.Broker` methods.

Fills (exactly :class:`~tradinglib.execution.Simulation`'s, with the same
:class:`~tradinglib.costs.Costs`):

- Market order placed while bar t is the latest: with ``fill_at="next_open"`` it fills
  at bar t+1's open plus slippage, at bar t+1's time, once bar t+1 is visible; with
  ``fill_at="close"`` it fills at once at bar t's close plus slippage, at bar t's time.
- Limit order: fills at the first base price (bar t's close with ``fill_at="close"``,
  then each later bar's open) that is at or through the limit, with slippage but never
  worse than the limit; else at the limit itself on the first later bar whose range
  reaches it (low <= limit for a buy, high >= limit for a sell). It works until filled
  or cancelled.
- Commission: :meth:`Costs.commission` of the fill.

Cash: a buy is rejected when its estimated cost (quantity x (the last close, or the
limit, plus slippage) plus commission, as the risk guard estimates it) exceeds the
cash not reserved by working buys. The fill itself is booked at its real price, so a
gap up at the next open can take cash slightly below that estimate, as in a backtest.
Account: the broker books fills into its own :class:`~tradinglib.portfolio.Portfolio`;
:meth:`SimBroker.account` reports it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from tradinglib.broker.base import (
    BrokerError,
    BrokerFill,
    BrokerUnavailable,
    OrderRequest,
    OrderState,
    check_fill_index,
)
from tradinglib.clock import Clock
from tradinglib.costs import Costs
from tradinglib.exceptions import DataError, InputError
from tradinglib.portfolio import Fill, Portfolio
from tradinglib.risk import AccountSnapshot

_PRICE_COLUMNS = ("open", "high", "low", "close")


@dataclass(slots=True)
class _Order:
    """An order the broker holds: the request, its latest state, the cash it reserves."""

    request: OrderRequest
    state: OrderState
    reserved: float = 0.0


class SimBroker:
    """A :class:`~tradinglib.broker.base.Broker` over historical bars of one symbol.

    Args:
        bars: OHLCV bars of ``symbol`` in the :func:`tradinglib.data.load_bars` layout
            (tz-aware, strictly increasing DatetimeIndex).
        clock: the clock that decides which bars are visible (a
            :class:`~tradinglib.clock.ReplayClock` over these bars, typically).
        costs: commission, slippage and fill timing; the backtest's default if None.
        cash: starting cash, USD (> 0).
        symbol: the only symbol this broker trades and has data for.

    Raises:
        DataError: bars without the price columns or a tz-aware increasing index.
        InputError: cash not a finite number > 0, or an empty symbol.
    """

    def __init__(self, bars: pd.DataFrame, clock: Clock, *, costs: Costs | None = None,
                 cash: float = 100_000.0, symbol: str = "GOOGL") -> None:
        _check_bars(bars)
        if isinstance(cash, bool) or not isinstance(cash, int | float) \
                or not math.isfinite(cash) or cash <= 0:
            raise InputError(f"SimBroker cash must be a finite number > 0 (USD), got {cash!r}")
        if not isinstance(symbol, str) or not symbol.strip():
            raise InputError(f"SimBroker symbol must be a non-empty string, got {symbol!r}")
        self.symbol = symbol
        self.costs = costs if costs is not None else Costs()
        self._clock = clock
        self._bars = bars
        self._times = pd.DatetimeIndex(bars.index)
        self._prices = {c: bars[c].to_numpy(dtype=np.float64) for c in _PRICE_COLUMNS}
        self._portfolio = Portfolio(cash=float(cash))
        self._orders: dict[str, _Order] = {}
        self._working: list[str] = []  # refs of submitted orders, oldest first
        self._fills: list[BrokerFill] = []
        self._seen = 0  # bars visible and processed
        self._connected = False

    # -- connection ---------------------------------------------------------------------

    def connect(self) -> None:
        """Start serving requests (no-op when connected)."""
        self._connected = True

    def close(self) -> None:
        """Stop serving requests; working orders stay and keep their state."""
        self._connected = False

    # -- the Broker protocol ------------------------------------------------------------

    def account(self) -> AccountSnapshot:
        """Cash, position and average cost (USD, shares) after the fills up to now;
        available funds exclude the cash reserved by working buys; net liquidation
        marks the position at the latest close.

        Raises:
            BrokerUnavailable: not connected.
        """
        self._ready()
        p = self._portfolio
        last = self._last_close()
        return AccountSnapshot(
            cash=p.cash, position=p.position, available_funds=p.cash - self._reserved(),
            net_liquidation=p.equity(last) if last is not None else p.cash,
            time=self._clock.now(), avg_cost=p.avg_cost,
        )

    def place_order(self, order: OrderRequest) -> OrderState:
        """Accept ``order`` (filling it at once with ``fill_at="close"`` when it can) or
        reject it: another symbol, no bar yet, or a buy over the available cash.

        A ref placed before returns the earlier order's state with a note in
        ``detail``; nothing is sent again.

        Raises:
            BrokerUnavailable: not connected.
            BrokerError: the ref was placed before for a different order.
        """
        self._ready()
        known = self._orders.get(order.ref)
        if known is not None:
            if known.request != order:
                raise BrokerError(
                    f"order ref {order.ref!r} was already used for {known.request}; "
                    f"each order needs a new ref")
            note = f"duplicate ref {order.ref!r}: not sent again"
            earlier = known.state.detail
            return replace(known.state, detail=f"{note}; {earlier}" if earlier else note)
        broker_id = str(len(self._orders) + 1)
        problem = self._problem(order)
        if problem is not None:
            return self._store(_Order(order, OrderState(order.ref, broker_id, "rejected",
                                                        detail=problem))).state
        held = self._store(_Order(order, OrderState(order.ref, broker_id, "submitted"),
                                  reserved=self._estimated_cost(order)))
        self._working.append(order.ref)
        if self.costs.fill_at == "close":
            self._try_fill(held, self._seen - 1, at_close=True)
        return held.state

    def cancel_order(self, ref: str) -> OrderState:
        """Cancel the working order ``ref``; a filled, cancelled or rejected order's
        state is returned unchanged.

        Raises:
            BrokerUnavailable: not connected.
            BrokerError: no order was placed under ``ref``.
        """
        held = self._placed(ref)
        if held.state.status == "submitted":
            self._finish(held, replace(held.state, status="cancelled",
                                       detail="cancelled on request"))
        return held.state

    def order_state(self, ref: str) -> OrderState:
        """The latest state of the order placed under ``ref``.

        Raises:
            BrokerUnavailable: not connected.
            BrokerError: no order was placed under ``ref``.
        """
        return self._placed(ref).state

    def _placed(self, ref: str) -> _Order:
        """The order placed under ``ref``; raises as :meth:`order_state`."""
        self._ready()
        held = self._orders.get(ref)
        if held is None:
            raise BrokerError(f"no order with ref {ref!r} was placed with this broker")
        return held

    def open_orders(self) -> list[OrderState]:
        """States of the working orders, oldest first.

        Raises:
            BrokerUnavailable: not connected.
        """
        self._ready()
        return [self._orders[ref].state for ref in self._working]

    def fills_since(self, n: int) -> list[BrokerFill]:
        """Fills from the ``n``-th on (0-based, in execution order).

        Raises:
            InputError: ``n`` is not an integer >= 0.
            BrokerUnavailable: not connected.
        """
        check_fill_index(n)
        self._ready()
        return self._fills[n:]

    def bars(self, symbol: str) -> pd.DataFrame:
        """A copy of the bars with time <= the clock's now.

        Raises:
            BrokerUnavailable: not connected.
            BrokerError: ``symbol`` is not this broker's.
        """
        self._ready()
        if symbol != self.symbol:
            raise BrokerError(f"no market data for {symbol!r}; this sim broker replays "
                              f"{self.symbol!r} only")
        return self._bars.iloc[:self._seen].copy()

    # -- internals ----------------------------------------------------------------------

    def _ready(self) -> None:
        """Raise unless connected; then process the bars that became visible."""
        if not self._connected:
            raise BrokerUnavailable("the sim broker is not connected; call connect() first")
        now = self._clock.now()
        if now.tzinfo is None:
            raise InputError(f"the clock gave a naive time {now}; clocks give tz-aware times")
        visible = int(self._times.searchsorted(now.tz_convert(self._times.tz), side="right"))
        while self._seen < visible:
            self._seen += 1
            for ref in list(self._working):
                self._try_fill(self._orders[ref], self._seen - 1, at_close=False)

    def _last_close(self) -> float | None:
        return float(self._prices["close"][self._seen - 1]) if self._seen else None

    def _reserved(self) -> float:
        return sum(self._orders[ref].reserved for ref in self._working)

    def _estimated_cost(self, order: OrderRequest) -> float:
        """USD a buy is expected to cost (0 for a sell): see the module docstring."""
        last = self._last_close()
        if order.quantity < 0 or last is None:
            return 0.0
        base = order.limit_price if order.limit_price is not None else last
        price = self.costs.fill_price(1, base)
        return order.quantity * price + self.costs.commission(order.quantity, price)

    def _problem(self, order: OrderRequest) -> str | None:
        """Why ``order`` is rejected, or None."""
        if order.symbol != self.symbol:
            return f"no market for {order.symbol!r}; this sim broker trades {self.symbol!r}"
        if self._seen == 0:
            return f"no bar yet at {self._clock.now()}; the first is at {self._times[0]}"
        cost = self._estimated_cost(order)
        available = self._portfolio.cash - self._reserved()
        if cost > available:
            return (f"insufficient cash: buying {order.quantity} costs about {cost:.2f} "
                    f"with commission, available {available:.2f}")
        return None

    def _store(self, held: _Order) -> _Order:
        self._orders[held.request.ref] = held
        return held

    def _finish(self, held: _Order, state: OrderState) -> None:
        """Give ``held`` its final ``state`` and release its reservation."""
        held.state, held.reserved = state, 0.0
        self._working.remove(held.request.ref)

    def _try_fill(self, held: _Order, bar: int, *, at_close: bool) -> None:
        """Fill ``held`` against bar ``bar`` if it can: at its close (``at_close``) or at
        its open, or at the limit within its range (see the module docstring)."""
        order, p = held.request, self._prices
        side = 1 if order.quantity > 0 else -1
        base = float(p["close" if at_close else "open"][bar])
        price = self.costs.fill_price(side, base)
        limit = order.limit_price
        if limit is not None:
            reached = float(p["low" if side > 0 else "high"][bar])
            if side * (limit - base) >= 0:  # base at or through the limit
                price = min(price, limit) if side > 0 else max(price, limit)
            elif not at_close and side * (limit - reached) >= 0:
                price = limit
            else:
                return
        fill = Fill(pd.Timestamp(self._times[bar]), order.quantity, price,
                    self.costs.commission(order.quantity, price))
        self._portfolio.apply(fill)
        self._fills.append(BrokerFill(order.ref, fill))
        self._finish(held, replace(held.state, status="filled", filled=abs(order.quantity)))


def _check_bars(bars: object) -> None:
    """Raise DataError unless ``bars`` has the price columns and a tz-aware, strictly
    increasing DatetimeIndex."""
    if not isinstance(bars, pd.DataFrame):
        raise DataError(f"SimBroker needs bars as a DataFrame (load_bars), "
                        f"got {type(bars).__name__}")
    missing = [c for c in _PRICE_COLUMNS if c not in bars.columns]
    if missing:
        raise DataError(f"SimBroker bars lack column(s) {missing}; use load_bars")
    index = bars.index
    if not isinstance(index, pd.DatetimeIndex) or index.tz is None:
        raise DataError("SimBroker bars need a tz-aware DatetimeIndex (load_bars gives one)")
    if not (index.is_monotonic_increasing and index.is_unique):
        raise DataError("SimBroker bar times must be strictly increasing")
