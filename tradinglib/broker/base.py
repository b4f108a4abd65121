"""The :class:`Broker` protocol a session trades through, its records and its errors.

A session only ever talks to this protocol, so the simulated broker
(:class:`~tradinglib.broker.sim.SimBroker`) and the Interactive Brokers adapter are
interchangeable without touching the session loop. Names here are ours; a broker
adapter maps its own objects (and IB's camelCase) to these records.

Order references: every order carries a caller-chosen ``ref``; a session uses
``f"{run_id}-{cycle}"``. A broker must never place two orders under one ref: placing a
ref again returns the state of the order already placed under it and sends nothing
(see :meth:`Broker.place_order`), so a request retried after a lost answer cannot
trade twice.

Errors: :class:`BrokerUnavailable` (retry later: not connected, connection lost,
timeout) and :class:`BrokerError` (stop: the broker refused a request that cannot
succeed as it stands). A rejected order is not an error: it is an :class:`OrderState`
with status ``"rejected"`` and the reason in ``detail``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Literal, Protocol, runtime_checkable

import pandas as pd

from tradinglib.exceptions import InputError, RetryableError, StopError
from tradinglib.portfolio import Fill
from tradinglib.risk import AccountSnapshot

OrderType = Literal["MKT", "LMT"]
"""``"MKT"``: fill at the market; ``"LMT"``: fill at ``limit_price`` or better."""

OrderStatus = Literal["submitted", "filled", "cancelled", "rejected"]
"""``"submitted"``: working at the broker; the other three are final."""

FINAL_STATUSES: frozenset[str] = frozenset({"filled", "cancelled", "rejected"})
"""Statuses after which an order never changes again."""


class BrokerError(StopError):
    """The broker refused a request that cannot succeed as it stands (e.g. an unknown
    order ref, a ref reused for a different order); stop and fix the caller."""


class BrokerUnavailable(RetryableError):
    """The broker cannot be reached right now (not connected, connection lost, timeout);
    connect again and retry."""


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """An order to send.

    Attributes:
        ref: the caller's unique reference (a session uses ``f"{run_id}-{cycle}"``).
        symbol: the instrument, e.g. ``"GOOGL"``.
        quantity: signed shares, + buy, - sell; never 0.
        order_type: ``"MKT"`` or ``"LMT"``.
        limit_price: USD for ``"LMT"``; None for ``"MKT"``.

    Raises:
        InputError: an empty ref or symbol, a zero or non-integer quantity, an unknown
            order type, or a limit price missing (LMT), given (MKT) or not a finite
            number > 0.
    """

    ref: str
    symbol: str
    quantity: int
    order_type: OrderType = "MKT"
    limit_price: float | None = None

    def __post_init__(self) -> None:
        for name in ("ref", "symbol"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise InputError(f"OrderRequest.{name} must be a non-empty string, "
                                 f"got {value!r}")
        if isinstance(self.quantity, bool) or not isinstance(self.quantity, Integral) \
                or self.quantity == 0:
            raise InputError(f"OrderRequest.quantity must be a non-zero integer of shares "
                             f"(+ buy, - sell), got {self.quantity!r}")
        object.__setattr__(self, "quantity", int(self.quantity))  # numpy ints -> int
        if self.order_type not in ("MKT", "LMT"):
            raise InputError(f"OrderRequest.order_type must be 'MKT' or 'LMT', "
                             f"got {self.order_type!r}")
        price = self.limit_price
        if self.order_type == "MKT" and price is not None:
            raise InputError(f"OrderRequest {self.ref}: a MKT order takes no limit_price "
                             f"(got {price!r}); use order_type='LMT'")
        if self.order_type == "LMT":
            if isinstance(price, bool) or not isinstance(price, Real) \
                    or not math.isfinite(price) or price <= 0:
                raise InputError(f"OrderRequest {self.ref}: a LMT order needs a limit_price "
                                 f"that is a finite number > 0 (USD), got {price!r}")
            object.__setattr__(self, "limit_price", float(price))


@dataclass(frozen=True, slots=True)
class OrderState:
    """What the broker says about an order.

    Attributes:
        ref: the order's :attr:`OrderRequest.ref`.
        broker_id: the broker's own id of the order ("" if it never reached the book).
        status: ``"submitted"``, ``"filled"``, ``"cancelled"`` or ``"rejected"``.
        filled: shares filled so far (unsigned, 0 .. |quantity|).
        detail: why it was rejected or cancelled, or another note; "" otherwise.
    """

    ref: str
    broker_id: str
    status: OrderStatus
    filled: int = 0
    detail: str = ""

    @property
    def final(self) -> bool:
        """True once the order can no longer change (filled, cancelled or rejected)."""
        return self.status in FINAL_STATUSES


@dataclass(frozen=True, slots=True)
class BrokerFill:
    """An execution reported by the broker: the order's ``ref`` and the :class:`Fill`
    (signed quantity, USD price and commission, the broker's execution time)."""

    ref: str
    fill: Fill


def check_fill_index(n: object) -> None:
    """Raise InputError unless ``n`` (for :meth:`Broker.fills_since`) is an int >= 0."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise InputError(f"fills_since needs the number of fills already seen "
                         f"(an integer >= 0), got {n!r}")


@runtime_checkable
class Broker(Protocol):
    """What a session needs from a broker: account, orders, fills and market data.

    Every method but :meth:`connect` and :meth:`close` raises :class:`BrokerUnavailable`
    while not connected.
    """

    def connect(self) -> None:
        """Open the connection (no-op when connected).

        Raises:
            BrokerUnavailable: the broker cannot be reached.
        """
        ...

    def close(self) -> None:
        """Close the connection (no-op when closed); working orders stay at the broker."""
        ...

    def account(self) -> AccountSnapshot:
        """The account as the broker sees it now: cash (USD), position (shares), etc."""
        ...

    def place_order(self, order: OrderRequest) -> OrderState:
        """Send ``order``; return its state (``"rejected"`` with the reason when refused).

        A ``ref`` placed before is not sent again: the state of the order already
        placed under it is returned.

        Raises:
            BrokerError: the ref was placed before for a different order.
        """
        ...

    def cancel_order(self, ref: str) -> OrderState:
        """Cancel the working order ``ref``; a final order's state is returned unchanged.

        Raises:
            BrokerError: no order was placed under ``ref``.
        """
        ...

    def open_orders(self) -> list[OrderState]:
        """States of the orders still working (status ``"submitted"``), oldest first."""
        ...

    def order_state(self, ref: str) -> OrderState:
        """The latest state of the order placed under ``ref`` (the broker may have
        cancelled or rejected it since it was acknowledged).

        Raises:
            BrokerError: no order was placed under ``ref``.
        """
        ...

    def fills_since(self, n: int) -> list[BrokerFill]:
        """Fills of this broker object's orders from the ``n``-th on (0-based, in
        execution order): pass the number of fills already seen to get the new ones.
        Reading does not consume, so a caller that lost an answer asks again with the
        same ``n``.

        Raises:
            InputError: ``n`` is negative.
        """
        ...

    def bars(self, symbol: str) -> pd.DataFrame:
        """Bars of ``symbol`` known up to now, in the :func:`tradinglib.data.load_bars`
        layout; the last row is the latest bar.

        Raises:
            BrokerError: no market data for ``symbol``.
        """
        ...
