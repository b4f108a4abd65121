"""The gateway's paper account: an IB-style order book over the simulated broker.

Matching, cash checks and accounting are :class:`~tradinglib.broker.sim.SimBroker`'s,
i.e. the backtest's fill and cost model (:class:`~tradinglib.costs.Costs`): a market
order fills at the next published bar's open (``fill_at="next_open"``) or at once at
the latest close (``"close"``), a limit order when a later bar trades through it, and
a buy over the available funds is rejected. This module adds what TWS has on top:
order ids per API client, permIds, order refs, execution ids, reasons for error 201,
and the account values of reqAccountUpdates and reqAccountSummary.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import pandas as pd

from tradinglib.broker.base import OrderRequest
from tradinglib.broker.sim import SimBroker
from tradinglib.costs import Costs
from tradinglib.exceptions import InputError
from tradinglib.gateway.contract import Instrument
from tradinglib.gateway.market import Replay
from tradinglib.gateway.records import ExecutionRecord, OrderRecord
from tradinglib.gateway.requests import PlaceOrder
from tradinglib.portfolio import Portfolio
from tradinglib.risk import AccountSnapshot

log = logging.getLogger("tradinglib.gateway")

FIRST_PERM_ID = 1_000_001
"""permIds count up from here, gateway-wide."""


@dataclass(frozen=True, slots=True)
class OrderError:
    """An order error to send as errMsg: the TWS ``code`` and its ``text``."""

    code: int
    text: str


class _ReplayClock:
    """The :class:`~tradinglib.clock.Clock` the simulated broker reads: replay time."""

    def __init__(self, replay: Replay) -> None:
        self._replay = replay

    def now(self) -> pd.Timestamp:
        return self._replay.now

    def advance(self) -> bool:
        return self._replay.step()


class PaperAccount:
    """Cash, one position and an order book, for one account code.

    Args:
        replay: the bars being replayed (fills and marks use them).
        instrument: the one instrument traded.
        account: the account code (``DU...``).
        cash: starting cash, USD.
        costs: commission, slippage and fill timing.
        max_order_quantity: largest order accepted, shares.

    Raises:
        InputError: cash not a finite number > 0, or max_order_quantity not an integer > 0.
    """

    def __init__(self, replay: Replay, instrument: Instrument, *, account: str, cash: float,
                 costs: Costs, max_order_quantity: int) -> None:
        if isinstance(max_order_quantity, bool) or not isinstance(max_order_quantity, int) \
                or max_order_quantity <= 0:
            raise InputError(f"max_order_quantity must be an integer > 0 (shares), "
                             f"got {max_order_quantity!r}")
        self.code = account
        self.instrument = instrument
        self.costs = costs
        self.max_order_quantity = max_order_quantity
        self._replay = replay
        self._sim = SimBroker(replay.bars, _ReplayClock(replay), costs=costs, cash=cash,
                              symbol=instrument.symbol)
        self._sim.connect()
        self._books = Portfolio(cash=float(cash))  # the same fills, for realized P&L
        self._orders: dict[tuple[int, int], OrderRecord] = {}
        self._executions: list[ExecutionRecord] = []
        self._fills_seen = 0

    # -- orders ------------------------------------------------------------------------

    def next_order_id(self, client_id: int) -> int:
        """1 + the highest order id ``client_id`` has used (1 when none)."""
        used = [oid for cid, oid in self._orders if cid == client_id]
        return max(used, default=0) + 1

    def place(self, client_id: int, req: PlaceOrder, reject: Callable[[], str | None]
              ) -> tuple[OrderRecord | None, OrderError | None]:
        """Accept or reject an order; ``reject()`` gives a fault-injected reason (asked
        only for an order that passes the gateway's own checks).

        Returns the stored order (None when the request never became an order) and the
        error to send (None when accepted). Fills are collected by :meth:`new_fills`.
        """
        key = (client_id, req.order_id)
        if key in self._orders:
            return None, OrderError(103, f"Duplicate order id {req.order_id}; this gateway "
                                         "does not modify orders: cancel and place anew")
        if not self.instrument.matches(req.contract):
            return None, OrderError(200, "No security definition has been found for the "
                                         f"request; this gateway trades "
                                         f"{self.instrument.symbol} only")
        if req.order_type not in ("MKT", "LMT"):
            return None, OrderError(387, f"Unsupported order type {req.order_type!r} for "
                                         "this exchange and security type; use MKT or LMT")
        problem, request = self._request(client_id, req)
        injected = reject() if problem is None else None
        if injected is not None:
            problem = injected
            log.info("fault: rejecting order %s of client %s: %s", req.order_id, client_id,
                     injected)
        order = OrderRecord(
            order_id=req.order_id, client_id=client_id,
            perm_id=FIRST_PERM_ID + len(self._orders), order_ref=req.order_ref,
            action=req.action, quantity=parse_shares(req.quantity) or 0, order_type=req.order_type,
            limit_price=request.limit_price if request is not None else None, tif=req.tif,
            status="Submitted", placed=self._replay.now)
        if problem is None and request is not None:
            state = self._sim.place_order(request)
            if state.status == "rejected":
                problem = state.detail
        if problem is not None:
            order = replace(order, status="Cancelled", completed=self._replay.now,
                            reason=f"Rejected: {problem}")
            self._orders[key] = order
            log.info("order %s of client %s rejected: %s", req.order_id, client_id, problem)
            return order, OrderError(201, f"Order rejected - reason:{problem}")
        self._orders[key] = order
        log.info("order %s of client %s: %s %s %s%s ref %r", req.order_id, client_id,
                 order.action, order.quantity, order.order_type,
                 f" @ {order.limit_price}" if order.limit_price is not None else "",
                 order.order_ref)
        return order, None

    def _request(self, client_id: int, req: PlaceOrder
                 ) -> tuple[str | None, OrderRequest | None]:
        """The simulated broker's order for ``req``, or why it is rejected."""
        shares = parse_shares(req.quantity)
        if req.action not in ("BUY", "SELL"):
            return f"action {req.action!r} is not BUY or SELL", None
        if shares is None:
            return f"quantity {req.quantity!r} is not a whole number of shares > 0", None
        if shares > self.max_order_quantity:
            return (f"quantity {shares} exceeds the limit of {self.max_order_quantity} shares "
                    "per order"), None
        if req.account and req.account != self.code:
            return f"unknown account {req.account!r}; this gateway holds {self.code}", None
        try:
            limit = float(req.limit_price) if req.order_type == "LMT" else None
            request = OrderRequest(f"{client_id}-{req.order_id}", self.instrument.symbol,
                                   shares if req.action == "BUY" else -shares,
                                   "LMT" if limit is not None else "MKT", limit)
        except (ValueError, InputError):
            return f"limit price {req.limit_price!r} is not a number > 0", None
        return None, request

    def cancel(self, client_id: int, order_id: int) -> tuple[OrderRecord | None, OrderError]:
        """Cancel a working order: the cancelled order and error 202, or None and
        10147 (unknown order) or 10148 (already done)."""
        order = self._orders.get((client_id, order_id))
        if order is None:
            return None, OrderError(10147, f"OrderId {order_id} that needs to be cancelled "
                                           "is not found.")
        if order.done or self._sim.cancel_order(f"{client_id}-{order_id}").status != "cancelled":
            return None, OrderError(10148, f"OrderId {order_id} that needs to be cancelled "
                                           f"cannot be cancelled, state: {order.status}.")
        order = replace(order, status="Cancelled", completed=self._replay.now,
                        reason="Cancelled by the client")
        self._orders[(client_id, order_id)] = order
        log.info("order %s of client %s cancelled", order_id, client_id)
        return order, OrderError(202, "Order Canceled - reason:")

    def new_fills(self) -> list[ExecutionRecord]:
        """Fills since the last call (the simulated broker catches up on the bars
        published since), booked into the order book."""
        fills = self._sim.fills_since(self._fills_seen)
        self._fills_seen += len(fills)
        out = []
        for broker_fill in fills:
            client, order_id = (int(x) for x in broker_fill.ref.rsplit("-", 1))  # ids may be < 0
            order = self._orders[(client, order_id)]
            fill = broker_fill.fill
            before, position = self._books.realized_pnl, self._books.position
            self._books.apply(fill)
            closing = position != 0 and (position > 0) != (fill.quantity > 0)
            record = ExecutionRecord(
                exec_id=f"{len(self._executions) + 1:08x}.{order.perm_id:08x}.01.01",
                order_id=order_id, client_id=client, perm_id=order.perm_id,
                order_ref=order.order_ref, side="BOT" if fill.quantity > 0 else "SLD",
                shares=abs(fill.quantity), price=fill.price, commission=fill.commission,
                realized_pnl=self._books.realized_pnl - before if closing else 0.0,
                time=fill.time)
            self._executions.append(record)
            self._orders[(client, order_id)] = replace(
                order, status="Filled", filled=record.shares, avg_fill_price=record.price,
                completed=fill.time)
            log.info("fill %s: order %s of client %s %s %d @ %.4f commission %.2f",
                     record.exec_id, order_id, client, record.side, record.shares,
                     record.price, record.commission)
            out.append(record)
        return out

    def what_if(self, req: PlaceOrder) -> tuple[str, ...]:
        """The margin fields (9) and commission of a whatIf answer for ``req``: a cash
        account has no margin; the equity change is minus the estimated commission."""
        shares = parse_shares(req.quantity) or 0
        commission = self.costs.commission(shares, self._replay.close(self._replay.latest))
        equity = self.snapshot().net_liquidation or 0.0
        return ("0", "0", f"{equity:.2f}", "0", "0", f"{-commission:.2f}", "0", "0",
                f"{equity - commission:.2f}", f"{commission:.2f}")

    # -- queries -----------------------------------------------------------------------

    def order(self, client_id: int, order_id: int) -> OrderRecord:
        """The stored order ``order_id`` of ``client_id`` (KeyError when unknown)."""
        return self._orders[(client_id, order_id)]

    def orders(self) -> list[OrderRecord]:
        """Every order, in the order placed."""
        return list(self._orders.values())

    def executions(self) -> list[ExecutionRecord]:
        """Every fill, oldest first."""
        return list(self._executions)

    def snapshot(self) -> AccountSnapshot:
        """Cash, position, average cost, available funds (cash not reserved by working
        buys) and net liquidation (marked at the latest close), USD and shares."""
        return self._sim.account()

    @property
    def traded(self) -> bool:
        """True once any order has filled."""
        return bool(self._executions)

    def portfolio(self) -> tuple[int, float, float, float, float]:
        """The position line: shares, latest close, average cost, unrealized P&L and
        realized P&L net of commissions (USD)."""
        snap = self.snapshot()
        last = self._replay.close(self._replay.latest)
        avg = snap.avg_cost or 0.0
        return snap.position, last, avg, snap.position * (last - avg), self._books.realized_pnl

    def values(self) -> list[tuple[str, str, str]]:
        """(key, value, currency) of the account values and summary tags."""
        snap = self.snapshot()
        shares, last, _, unrealized, realized = self.portfolio()
        net = snap.net_liquidation if snap.net_liquidation is not None else snap.cash
        available = snap.available_funds if snap.available_funds is not None else snap.cash
        gross = abs(shares) * last
        money = {"NetLiquidation": net, "TotalCashValue": snap.cash, "SettledCash": snap.cash,
                 "CashBalance": snap.cash, "AvailableFunds": available,
                 "ExcessLiquidity": available, "BuyingPower": available,
                 "EquityWithLoanValue": net, "GrossPositionValue": gross,
                 "InitMarginReq": 0.0, "MaintMarginReq": 0.0, "UnrealizedPnL": unrealized,
                 "RealizedPnL": realized}
        return [("AccountCode", self.code, ""), ("AccountType", "INDIVIDUAL", ""),
                ("Currency", "USD", "USD"),
                *((k, f"{v:.2f}", "USD") for k, v in money.items())]


def parse_shares(text: str) -> int | None:
    """Whole shares > 0 from a quantity as sent (``"5"``, ``"5.0"``), else None."""
    try:
        value = float(text)
    except ValueError:
        return None
    return int(value) if math.isfinite(value) and value.is_integer() and value > 0 else None
