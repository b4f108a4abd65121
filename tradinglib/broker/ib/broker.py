"""The Interactive Brokers :class:`~tradinglib.broker.base.Broker`, paper accounts only.

Layers (DESIGN.md style 7): :class:`~tradinglib.broker.ib.connection.IBThread` runs the
client library (:mod:`~tradinglib.broker.ib.client`) on its own loop;
:mod:`~tradinglib.broker.ib.mapping` turns IB's objects into ours; this module is the
:class:`Broker` protocol on top.

Order refs: every order carries ``orderRef = ref`` (a session uses ``run_id-cycle``).
Before an order is sent, the trades and executions IB reports (open, completed, and
after a reconnect or restart the ones read back from the gateway) are searched for that
ref: an order placed once is never sent again, whatever was lost in between.

Market data: historical bars of ``bar_size`` over ``history`` with ``keepUpToDate``, so
the first answer carries the feature warm-up and every new bar arrives as an update;
:meth:`IBBroker.wait_for_bar` wakes on it. Delayed data is asked for where the account
has no subscription (``market_data_type``).

Disconnects: a drop marks the broker disconnected at once (every call raises
:class:`BrokerUnavailable` until :meth:`IBBroker.connect` succeeds again); connecting
again re-reads account, positions, open and completed orders and executions, and
subscribes the bars again. TWS losing its own link to IB while the socket stays up
(error 1100) counts as a drop until TWS reports it restored (1102, or 1101, after which
:meth:`IBBroker.connect` subscribes the bars again: IB dropped them).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from tradinglib.broker.base import (
    BrokerError,
    BrokerFill,
    BrokerUnavailable,
    OrderRequest,
    OrderState,
    check_fill_index,
)
from tradinglib.broker.ib import client, mapping
from tradinglib.broker.ib.connection import IBThread
from tradinglib.broker.ib.paper_only import check_accounts, check_port
from tradinglib.exceptions import InputError
from tradinglib.risk import AccountSnapshot

log = logging.getLogger(__name__)

_ACK_TIMEOUT_S = 2.0
"""How long place_order and cancel_order wait for IB to acknowledge (seconds)."""

_ACK_POLL_S = 0.001

_HISTORY_CODES = frozenset({162, 321})
"""IB's errors for a historical data request: 162 (the HMDS's message), 321 (invalid)."""

_TRANSIENT = ("pacing", "no data")
"""Words in a 162 message that mean "later may work" rather than "this request is wrong"."""

_LINK_CODES = frozenset({1100, 1101, 1102})
"""TWS's notices about its own link to IB's servers (lost, restored data lost, restored)."""


class IBBroker:
    """A :class:`~tradinglib.broker.base.Broker` on an IB paper account (TWS, IB
    Gateway or ``tradinglib gateway``).

    Args:
        host, port: where TWS / IB Gateway listens; the live ports 7496 and 4001 are
            refused.
        client_id: the API client id (one connection per id).
        symbol: the stock traded (SMART-routed, ``currency``).
        ref_prefix: the prefix of this session's order refs (``f"{run_id}-"``):
            :meth:`fills_since` and :meth:`open_orders` report those orders only.
        bar_size, history: IB bar size (``"1 day"``, ``"1 min"``, ...) and duration of
            the history asked for at connect (``"1 Y"``, ``"2 D"``, ...).
        tz: timezone of the bars' index (daily bars are midnight in it).
        market_data_type: 1 live, 3 delayed (no subscription needed), 4 delayed-frozen.
        timeout: seconds any single request may take.
        on_connection: called with True/False whenever the connection comes up or drops.

    Raises:
        LiveTradingRefused: a live port.
        InputError: a bad port, client id or timeout.
        ConfigError: neither ib_async nor ib_insync is installed.
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 4002, client_id: int = 1,
                 symbol: str = "GOOGL", ref_prefix: str = "", exchange: str = "SMART",
                 currency: str = "USD", bar_size: str = "1 day", history: str = "2 Y",
                 tz: str = "America/New_York", market_data_type: int = 3,
                 timeout: float = 5.0,
                 on_connection: Callable[[bool], None] | None = None) -> None:
        for name, value, low, high in (("port", port, 1, 65535),
                                       ("client_id", client_id, 0, 2**31 - 1)):
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise InputError(f"IBBroker {name} must be an integer in {low}..{high}, "
                                 f"got {value!r}")
        if not isinstance(timeout, int | float) or timeout <= 0:
            raise InputError(f"IBBroker timeout must be seconds > 0, got {timeout!r}")
        check_port(port)
        self._ib_module = client.require()
        # this adapter logs every IB error and connection change itself (tradinglib logger)
        logging.getLogger(client.LIBRARY).setLevel(logging.CRITICAL)
        self.host, self.port, self.client_id = host, port, client_id
        self.symbol, self.ref_prefix = symbol, ref_prefix
        self.bar_size, self.history, self.tz = bar_size, history, tz
        self.market_data_type = market_data_type
        self.timeout = float(timeout)
        self.account_id = ""
        self._contract = self._ib_module.Stock(symbol, exchange, currency)
        self._on_connection = on_connection
        self._reported = False  # what on_connection was last told
        self._report_lock = threading.Lock()
        self._thread: IBThread | None = None
        self._ib: Any = None
        self._bars: Any = None
        self._refs = _RefIndex()
        self._frame = pd.DataFrame()
        self._connected = False
        self._bar_event = threading.Event()
        self._latest_bar: pd.Timestamp | None = None
        self._errors: list[tuple[int, int, str]] = []  # (reqId, code, message)
        self._link_lost = False  # TWS lost IB (1100) with the socket up
        self._bars_lost = False  # IB dropped the market data (1101)

    # -- connection ---------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while the connection is up: the socket to TWS, TWS's link to IB and the
        market data subscription."""
        return self._connected and not (self._link_lost or self._bars_lost)

    def connect(self) -> None:
        """Connect (no-op when connected): sync account, positions, orders and
        executions, check that the account is a paper account, qualify the contract and
        subscribe the bars. With the socket up after IB restored its link with data lost
        (1101), only the bars are subscribed again.

        Raises:
            BrokerUnavailable: nothing listens at host:port, or it did not answer in time,
                or TWS is still without its link to IB (1100).
            BrokerError: IB refused (e.g. error 326: the client id is in use).
            LiveTradingRefused: a managed account is not a paper (``DU``) account.
        """
        if self._connected:
            self._check_link()
            if self._bars_lost:
                self._resubscribe_bars()
            return
        if self._thread is None:
            self._thread = IBThread(self.timeout)
            self._ib = self._thread.call(self._make_client)
        self._errors.clear()
        self._refs = _RefIndex()  # a connect re-reads everything from IB
        self._link_lost = self._bars_lost = False
        try:
            self._thread.call(lambda: self._ib.connectAsync(
                self.host, self.port, clientId=self.client_id, timeout=self.timeout),
                timeout=self.timeout * 3)
        except (OSError, TimeoutError, BrokerUnavailable) as exc:
            self._drop_socket()
            refused = [c for _, c, _ in self._errors if c in mapping.STOP_CODES]
            if refused:
                code = refused[0]
                message = next(m for _, c, m in self._errors if c == code)
                raise mapping.error_for(code, message) from None
            raise BrokerUnavailable(
                f"cannot connect to IB at {self.host}:{self.port} (client id "
                f"{self.client_id}): {type(exc).__name__}: {exc or 'timed out'}. Start TWS "
                f"or IB Gateway in paper mode with the API enabled on that port, or the "
                f"simulator: tradinglib gateway --data googl-daily --port {self.port}"
            ) from None
        try:
            accounts = self._thread.call(self._ib.managedAccounts)
            check_accounts(accounts)
            self.account_id = accounts[0]
            qualified = self._thread.call(self._ib.qualifyContractsAsync, self._contract)
            if not qualified or not getattr(qualified[0], "conId", 0):
                raise BrokerError(f"IB does not know {self.symbol!r} "
                                  f"({self._contract.exchange}, {self._contract.currency})")
            self._thread.call(self._ib.reqMarketDataType, self.market_data_type)
            self._subscribe_bars()
        except BaseException:
            self._drop_socket()
            raise
        self._connected = True
        log.info("connected to IB at %s:%d as client %d, paper account %s, %d bars of %s",
                 self.host, self.port, self.client_id, self.account_id,
                 len(self._bars), self.symbol,
                 extra={"event": "connection", "connected": True})
        self._report_connection()

    def close(self) -> None:
        """Disconnect and stop the client thread; working orders stay at IB."""
        self._connected = False
        if self._thread is not None:
            self._drop_socket()
            self._thread.stop()
            self._thread = None
            self._ib = None
        self._report_connection()

    # -- the Broker protocol ------------------------------------------------------------

    def account(self) -> AccountSnapshot:
        """Cash, available funds, net liquidation (USD) and the position in ``symbol``
        as IB last reported them.

        Raises:
            BrokerUnavailable: not connected, or no account values yet.
        """
        thread = self._ready()
        values, positions = thread.call(
            lambda: (self._ib.accountValues(self.account_id), self._ib.positions()))
        return mapping.account_snapshot(values, positions, self._contract.conId,
                                        pd.Timestamp.now(tz="UTC"))

    def place_order(self, order: OrderRequest) -> OrderState:
        """Send ``order`` with ``orderRef = order.ref`` unless an order with that ref is
        known to IB already (then its state is returned and nothing is sent); wait
        (at most 2 s) for IB to acknowledge. A rejection (error 201) comes back as
        status ``"rejected"`` with IB's reason.

        Raises:
            BrokerUnavailable: not connected.
            BrokerError: the order is for another symbol.
        """
        thread = self._ready()
        if order.symbol != self.symbol:
            raise BrokerError(f"this IB broker trades {self.symbol!r}, not {order.symbol!r}")
        ib = self._ib_module
        side, quantity = ("BUY" if order.quantity > 0 else "SELL"), abs(order.quantity)
        ib_order = (ib.MarketOrder(side, quantity) if order.order_type == "MKT"
                    else ib.LimitOrder(side, quantity, order.limit_price))
        ib_order.orderRef = order.ref
        ib_order.account = self.account_id
        ib_order.tif = "DAY"

        def send_unless_known() -> tuple[Any, OrderState | None]:
            """(on the loop: the search and the send are one step) The trade sent, or
            the state of the order already known under this ref."""
            trade, fill = self._find(order.ref)
            if trade is not None or fill is not None:
                return None, _state(trade, fill, f"duplicate ref {order.ref!r}: not sent "
                                                 "again")
            return self._ib.placeOrder(self._contract, ib_order), None

        sent: tuple[Any, OrderState | None] = thread.call(send_unless_known)
        trade, known = sent
        if known is not None:
            return known
        log.info("order %s sent: %s %d %s %s", order.ref, side, quantity, self.symbol,
                 order.order_type, extra={"event": "order", "ref": order.ref,
                                          "quantity": order.quantity})
        return self._acknowledged(trade)

    def cancel_order(self, ref: str) -> OrderState:
        """Cancel the working order ``ref`` and wait (at most 2 s) for IB to confirm; a
        final order's state is returned unchanged.

        Raises:
            BrokerUnavailable: not connected.
            BrokerError: no order with this ref is known to IB.
        """
        thread, trade, fill = self._known(ref)
        if trade is None:
            final: OrderState = thread.call(_state, None, fill, "")
            return final
        if not trade.isDone():
            thread.call(self._ib.cancelOrder, trade.order)
        return self._acknowledged(trade, done=True)

    def order_state(self, ref: str) -> OrderState:
        """The latest state IB reports of the order placed under ``ref``.

        Raises:
            BrokerUnavailable: not connected.
            BrokerError: no order with this ref is known to IB.
        """
        thread, trade, fill = self._known(ref)
        state: OrderState = thread.call(_state, trade, fill, "")
        return state

    def _known(self, ref: str) -> tuple[IBThread, Any, Any]:
        """(caller's thread) The client thread, and the trade and fill IB knows under
        ``ref`` (one may be None); raises as :meth:`order_state`."""
        thread = self._ready()
        trade, fill = thread.call(self._find, ref)
        if trade is None and fill is None:
            raise BrokerError(f"no order with ref {ref!r} is known to IB")
        return thread, trade, fill

    def open_orders(self) -> list[OrderState]:
        """This session's working orders (ref starting with ``ref_prefix``), oldest
        first.

        Raises:
            BrokerUnavailable: not connected.
        """
        thread = self._ready()
        trades = thread.call(self._ib.openTrades)
        return [mapping.order_state(t) for t in trades
                if t.order.orderRef.startswith(self.ref_prefix)]

    def fills_since(self, n: int) -> list[BrokerFill]:
        """This session's fills (ref starting with ``ref_prefix``) from the ``n``-th on:
        those IB reported at connect in execution order (time, then execution id), then
        the later ones in arrival order (a fill never moves before one already listed).

        Raises:
            InputError: ``n`` is not an integer >= 0.
            BrokerUnavailable: not connected.
        """
        check_fill_index(n)
        thread = self._ready()
        fills = thread.call(lambda: self._index().our_fills[n:])
        return [mapping.broker_fill(f) for f in fills]

    def bars(self, symbol: str) -> pd.DataFrame:
        """The bars of ``symbol`` received so far (history, then updates); only rows new
        since the last call (and the last one, which IB may update) are converted.

        Raises:
            BrokerUnavailable: not connected.
            BrokerError: ``symbol`` is not this broker's.
        """
        thread = self._ready()
        if symbol != self.symbol:
            raise BrokerError(f"no market data for {symbol!r}; this IB broker subscribed "
                              f"{self.symbol!r} only")
        kept = max(len(self._frame) - 1, 0)  # the last row may have been updated since
        fresh = thread.call(lambda: list(self._bars[kept:]))
        self._frame = pd.concat([self._frame.iloc[:kept], mapping.bars_frame(fresh, self.tz)])
        return self._frame.copy()

    # -- for the session's clock --------------------------------------------------------

    def wait_for_bar(self, timeout: float) -> bool:
        """Wait at most ``timeout`` seconds for a bar newer than the last one returned
        by this call; True if one arrived. Returns False at once while disconnected."""
        if not self.connected:
            return False
        arrived = self._bar_event.wait(timeout)
        self._bar_event.clear()
        return arrived and self.connected

    def latest_bar_time(self) -> pd.Timestamp | None:
        """Time of the newest bar received (tz-aware, in ``tz``); None before any."""
        return self._latest_bar

    def server_time(self) -> pd.Timestamp:
        """IB's current time (UTC; the replay time under ``tradinglib gateway``).

        Raises:
            BrokerUnavailable: not connected or no answer in time.
        """
        thread = self._ready()
        return pd.Timestamp(thread.call(self._ib.reqCurrentTimeAsync)).tz_convert("UTC")

    # -- internals (run on the client's loop unless said otherwise) ---------------------

    def _make_client(self) -> Any:
        ib = self._ib_module.IB()
        ib.errorEvent += self._on_error
        ib.disconnectedEvent += self._on_disconnected
        return ib

    def _on_error(self, req_id: int, code: int, message: str, *_: Any) -> None:
        self._errors.append((req_id, code, message))
        if 2100 <= code < 2200:  # farm status notices
            log.debug("IB notice %d: %s", code, message)
        elif code in _LINK_CODES:
            self._on_link(code, message)
        else:
            log.warning("IB error %d (request %d): %s", code, req_id, message,
                        extra={"event": "ib_error", "code": code})

    def _on_link(self, code: int, message: str) -> None:
        """TWS's link to IB: 1100 lost (a drop, socket kept), 1101 restored with the
        market data lost, 1102 restored."""
        self._link_lost = code == 1100
        self._bars_lost = self._bars_lost or code == 1101
        up = code != 1100
        log.log(logging.INFO if up else logging.WARNING, "IB %d: %s", code, message,
                extra={"event": "connection", "connected": up, "code": code})
        if code == 1100:
            self._bar_event.set()  # wake a waiting session at once
        self._report_connection()

    def _on_disconnected(self) -> None:
        if self._connected:
            self._connected = False
            log.warning("connection to IB at %s:%d lost", self.host, self.port,
                        extra={"event": "connection", "connected": False})
            self._bar_event.set()  # wake a waiting session at once
            self._report_connection()

    def _report_connection(self) -> None:
        """(any thread) Call ``on_connection`` if :attr:`connected` changed since the
        last call."""
        with self._report_lock:
            now = self.connected
            if now != self._reported:
                self._reported = now
                if self._on_connection is not None:
                    self._on_connection(now)

    def _on_bars(self, bars: Any, has_new_bar: bool) -> None:
        if has_new_bar:
            self._latest_bar = mapping.bar_time(bars[-1].date, self.tz)
            self._bar_event.set()

    def _subscribe_bars(self) -> None:
        """(caller's thread) Ask for history with updates; wake waiters on new bars.

        Raises:
            BrokerError: IB refused the request itself (an invalid bar size or duration).
            BrokerUnavailable: no bars for another reason (pacing, no data yet).
        """
        assert self._thread is not None
        seen = len(self._errors)
        bars = self._thread.call(lambda: self._ib.reqHistoricalDataAsync(
            self._contract, endDateTime="", durationStr=self.history,
            barSizeSetting=self.bar_size, whatToShow="TRADES", useRTH=True, formatDate=2,
            keepUpToDate=True, timeout=self.timeout), timeout=self.timeout + 1)
        if not bars:
            said = [m for _, c, m in self._errors[seen:] if c in _HISTORY_CODES]
            refused = [m for m in said if not any(t in m.lower() for t in _TRANSIENT)]
            if refused:
                raise BrokerError(f"IB refused {self.bar_size!r} bars of {self.symbol} over "
                                  f"{self.history!r}: {refused[0]}; check ib_bar_size (e.g. "
                                  f"'1 day', '5 mins') and ib_history (e.g. '2 Y', '5 D')")
            raise BrokerUnavailable(f"IB sent no {self.bar_size} bars of {self.symbol} "
                                    f"over {self.history}"
                                    + (f" ({said[0]})" if said else "")
                                    + "; check the market data permissions or try again "
                                      "later")
        bars.updateEvent += self._on_bars
        self._bars = bars
        self._frame = mapping.bars_frame([], self.tz)  # converted rows, grown by bars()
        self._latest_bar = mapping.bar_time(bars[-1].date, self.tz)
        self._bar_event.clear()

    def _find(self, ref: str) -> tuple[Any, Any]:
        """The IB trade placed under ``ref`` (open or completed), else an execution of
        it (read back after a restart), else (None, None)."""
        index = self._index()
        return index.trades.get(ref), index.fills.get(ref)

    def _index(self) -> _RefIndex:
        """Take in the trades and fills IB reported since the last call (IB keeps them
        in arrival order); the index. Each call looks at the new ones only.

        This session's fills are only ever appended, so that :meth:`fills_since` counts
        stay valid: those read back at a connect in execution order, later ones as they
        arrive."""
        index = self._refs
        trades, fills = self._ib.trades(), self._ib.fills()
        for trade in trades[index.trades_seen:]:
            index.trades.setdefault(trade.order.orderRef, trade)
        ours = []
        for fill in fills[index.fills_seen:]:
            ref = fill.execution.orderRef
            index.fills.setdefault(ref, fill)
            if ref.startswith(self.ref_prefix):
                ours.append(fill)
        if index.fills_seen == 0:  # the executions read back at connect
            ours.sort(key=_execution_order)
        index.our_fills.extend(ours)
        index.trades_seen, index.fills_seen = len(trades), len(fills)
        return index

    def _acknowledged(self, trade: Any, *, done: bool = False) -> OrderState:
        """(caller's thread) Poll until IB has acknowledged ``trade`` (or it is done,
        with ``done``), at most 2 s; its state then."""
        assert self._thread is not None
        waiting = {"PendingSubmit", "ApiPending", "PendingCancel"} if not done else None
        deadline = time.monotonic() + _ACK_TIMEOUT_S
        while time.monotonic() < deadline and self._connected:
            status = trade.orderStatus.status
            if (trade.isDone() if done else status not in (waiting or ())):
                break
            time.sleep(_ACK_POLL_S)
        state: OrderState = self._thread.call(mapping.order_state, trade)
        return state

    def _ready(self) -> IBThread:
        if not self._connected or self._thread is None:
            raise BrokerUnavailable(f"not connected to IB at {self.host}:{self.port}; "
                                    f"connect() first")
        self._check_link()
        if self._bars_lost:
            raise BrokerUnavailable(f"IB dropped the {self.symbol} bars when it restored "
                                    f"its link (1101); connect() subscribes them again")
        return self._thread

    def _check_link(self) -> None:
        """(any thread) Raise BrokerUnavailable while TWS is without IB (1100)."""
        if self._link_lost:
            raise BrokerUnavailable(f"TWS at {self.host}:{self.port} has lost its "
                                    f"connection to IB (error 1100); waiting for it to "
                                    f"come back (1101/1102)")

    def _resubscribe_bars(self) -> None:
        """(caller's thread) Cancel the dropped bar subscription, subscribe again."""
        assert self._thread is not None
        old = self._bars
        if old is not None:
            old.updateEvent -= self._on_bars
            self._thread.call(self._ib.cancelHistoricalData, old)
        self._subscribe_bars()
        self._bars_lost = False
        self._report_connection()
        log.info("%s bars subscribed again after IB's data loss (1101): %d bars",
                 self.symbol, len(self._bars),
                 extra={"event": "connection", "connected": True})

    def _drop_socket(self) -> None:
        """(caller's thread) Disconnect the client, bounded; errors are logged only."""
        if self._thread is None or self._ib is None:
            return
        try:
            self._thread.call(self._ib.disconnect, timeout=2.0)
        except Exception as exc:  # best effort while tearing down
            log.debug("disconnect: %s", exc)


@dataclass(slots=True)
class _RefIndex:
    """Trades and fills by order ref, and this session's fills in the order of
    :meth:`IBBroker.fills_since`, as far as IB's lists have been looked at
    (``trades_seen``, ``fills_seen``)."""

    trades: dict[str, Any] = field(default_factory=dict)
    fills: dict[str, Any] = field(default_factory=dict)
    our_fills: list[Any] = field(default_factory=list)
    trades_seen: int = 0
    fills_seen: int = 0


def _execution_order(fill: Any) -> tuple[Any, str]:
    return fill.execution.time, fill.execution.execId


def _state(trade: Any, fill: Any, note: str) -> OrderState:
    """The state of an order known as an IB trade, or else only by its execution."""
    if trade is not None:
        return mapping.order_state(trade, note=note)
    ex = fill.execution
    return OrderState(ex.orderRef, str(ex.permId or ex.orderId), "filled",
                      round(ex.shares), note)
