"""IB's objects (camelCase, ib_async/ib_insync) mapped to tradinglib's records.

Nothing outside :mod:`tradinglib.broker.ib` sees an IB object: trades become
:class:`~tradinglib.broker.base.OrderState`, executions :class:`BrokerFill`, account
values :class:`~tradinglib.risk.AccountSnapshot`, bar lists DataFrames in the
:func:`tradinglib.data.load_bars` layout, and error codes our exceptions.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any

import pandas as pd

from tradinglib.broker.base import BrokerError, BrokerFill, BrokerUnavailable, OrderState
from tradinglib.exceptions import TradingLibError
from tradinglib.portfolio import Fill
from tradinglib.risk import AccountSnapshot

_DONE_CANCELLED = frozenset({"Cancelled", "ApiCancelled", "Inactive"})

RETRY_CODES: dict[int, str] = {
    502: "could not connect to TWS / IB Gateway",
    504: "not connected",
    1100: "connectivity between IB and TWS lost",
    1300: "TWS socket port was reset",
    2110: "connectivity between TWS and the server is broken",
    162: "historical data request failed (pacing or no data yet)",
    366: "no historical data query found",
}
"""IB error codes after which the request may succeed later: :class:`BrokerUnavailable`."""

STOP_CODES: dict[int, str] = {
    200: "no security definition: check the symbol, exchange and currency",
    326: "the client id is already in use: choose another ib_client_id",
    354: "no market data subscription for this instrument",
    10197: "market data is taken by a competing session",
    203: "the security is not available or allowed for this account",
}
"""IB error codes that will not go away by retrying: :class:`BrokerError`."""

REJECT_CODES: frozenset[int] = frozenset({201, 202, 203, 387, 10147, 10148})
"""Error codes about one order (rejected or cancelled): they end that order, not the
session."""


def error_for(code: int, message: str) -> TradingLibError:
    """The exception for IB error ``code``: :class:`BrokerUnavailable` (retry) for
    connectivity and pacing codes, :class:`BrokerError` (stop) for the rest."""
    if code in RETRY_CODES:
        return BrokerUnavailable(f"IB error {code} ({RETRY_CODES[code]}): {message}")
    hint = STOP_CODES.get(code)
    text = f"IB error {code}: {message}" + (f" ({hint})" if hint else "")
    return BrokerError(text)


def order_state(trade: Any, *, note: str = "") -> OrderState:
    """A :class:`OrderState` from an IB ``Trade``: Filled -> filled; Cancelled,
    ApiCancelled, Inactive -> cancelled, or rejected when IB said why (error 201);
    anything else -> submitted."""
    status = trade.orderStatus.status
    filled = round(sum(f.execution.shares for f in trade.fills)
                       or trade.orderStatus.filled)
    broker_id = str(trade.order.permId or trade.order.orderId)
    reasons = [e.message for e in trade.log if getattr(e, "errorCode", 0) in REJECT_CODES
               and e.message]
    detail = "; ".join(x for x in (note, *reasons) if x)
    if status == "Filled":
        return OrderState(trade.order.orderRef, broker_id, "filled", filled, detail)
    if status in _DONE_CANCELLED:
        rejected = any(getattr(e, "errorCode", 0) == 201 for e in trade.log)
        return OrderState(trade.order.orderRef, broker_id,
                          "rejected" if rejected else "cancelled", filled, detail)
    return OrderState(trade.order.orderRef, broker_id, "submitted", filled, detail)


def broker_fill(fill: Any) -> BrokerFill:
    """A :class:`BrokerFill` from an IB ``Fill``: signed shares (BOT +, SLD -), price
    and commission in USD, the execution's time (UTC)."""
    ex = fill.execution
    sign = 1 if ex.side == "BOT" else -1
    commission = fill.commissionReport.commission
    commission = float(commission) if commission and math.isfinite(commission) else 0.0
    return BrokerFill(ex.orderRef, Fill(_utc(ex.time), sign * round(ex.shares),
                                        float(ex.price), commission))


def account_snapshot(values: Iterable[Any], positions: Iterable[Any], con_id: int,
                     time: datetime | None) -> AccountSnapshot:
    """An :class:`AccountSnapshot` from IB account values (USD tags TotalCashValue,
    AvailableFunds, NetLiquidation) and the position in contract ``con_id``.

    Raises:
        BrokerUnavailable: the account values have not arrived yet.
    """
    tags = {v.tag: v.value for v in values if v.currency in ("USD", "BASE", "")}
    if "TotalCashValue" not in tags:
        raise BrokerUnavailable("IB has not sent the account values yet (TotalCashValue); "
                                "retry in a moment")
    position, avg_cost = 0, None
    for p in positions:
        if p.contract.conId == con_id:
            position, avg_cost = round(p.position), float(p.avgCost) or None
    return AccountSnapshot(cash=_number(tags["TotalCashValue"]), position=position,
                           available_funds=_optional(tags.get("AvailableFunds")),
                           net_liquidation=_optional(tags.get("NetLiquidation")),
                           time=time, avg_cost=avg_cost if position else None)


def bars_frame(bars: Sequence[Any], tz: str) -> pd.DataFrame:
    """IB ``BarData`` rows as a :func:`tradinglib.data.load_bars` frame: a tz-aware
    ``time`` index (dates are midnight in ``tz``; times are converted to ``tz``) and
    float open, high, low, close, volume."""
    index = pd.DatetimeIndex([bar_time(b.date, tz) for b in bars], name="time") if bars \
        else pd.DatetimeIndex([], tz=tz, name="time")
    index = index.as_unit("us")
    return pd.DataFrame({
        "open": [float(b.open) for b in bars], "high": [float(b.high) for b in bars],
        "low": [float(b.low) for b in bars], "close": [float(b.close) for b in bars],
        "volume": [float(b.volume) for b in bars],
    }, index=index)


def bar_time(t: datetime | date, tz: str) -> pd.Timestamp:
    """A bar's time in ``tz`` (a date is midnight there)."""
    stamp = pd.Timestamp(t)
    return stamp.tz_localize(tz) if stamp.tzinfo is None else stamp.tz_convert(tz)


def _utc(t: datetime | date) -> pd.Timestamp:
    stamp = pd.Timestamp(t)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise BrokerError(f"IB sent a non-numeric account value {text!r}") from None
    return value


def _optional(text: str | None) -> float | None:
    return None if text in (None, "") else _number(text)
