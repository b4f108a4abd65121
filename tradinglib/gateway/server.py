"""The gateway: an asyncio TCP server on 127.0.0.1 speaking the TWS socket protocol,
holding the replay, the paper account and the faults for every connection.

All methods run on the server's event loop thread; :class:`~tradinglib.gateway.handle.GatewayThread`
calls them from other threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
from dataclasses import replace

import pandas as pd

from tradinglib.costs import Costs, FillAt
from tradinglib.exceptions import InputError, RetryableError
from tradinglib.gateway import messages as msg
from tradinglib.gateway.account import PaperAccount, parse_shares
from tradinglib.gateway.contract import Instrument
from tradinglib.gateway.faults import Faults
from tradinglib.gateway.market import Replay
from tradinglib.gateway.records import ExecutionRecord, OrderRecord
from tradinglib.gateway.requests import PlaceOrder
from tradinglib.gateway.session import Connection
from tradinglib.loopback import is_loopback
from tradinglib.risk import AccountSnapshot

log = logging.getLogger("tradinglib.gateway")

CLOSE_TIMEOUT = 5.0
"""Seconds :meth:`Gateway.close` waits for connections to finish."""
_ACCOUNT = re.compile(r"[A-Z]{1,3}\d{1,12}$")


class Gateway:
    """A TWS / IB Gateway simulator over historical bars of one symbol.

    Args:
        bars: OHLCV bars (:func:`tradinglib.data.load_bars` layout).
        symbol: the stock the bars are of; the only contract served.
        account: the paper account code, e.g. ``"DU1234567"``.
        cash: starting cash, USD.
        costs: commission and slippage (:class:`~tradinglib.costs.Costs`, the backtest's
            model; its ``fill_at`` is replaced by ``fill``). Default ``Costs()``.
        bar_seconds: wall seconds between published bars; 0: only on :meth:`advance`.
        wait_for_client: hold the paced replay at ``start`` until the first API client
            connects (so a session that takes a while to boot still starts at ``start``).
        start: the first "now" bar: index (negative from the end) or time; default
            :data:`~tradinglib.gateway.market.DEFAULT_START_BAR` (history for warm-up).
        fill: ``"next_open"`` (market orders fill at the next bar's open, the backtest's
            default) or ``"close"`` (at once at the latest close).
        faults: fault injection (default: none).
        max_order_quantity: larger orders are rejected with error 201, shares.

    Raises:
        InputError: a bad parameter (the message names it).
        DataError: unusable bars.
    """

    def __init__(self, bars: pd.DataFrame, *, symbol: str = "GOOGL",
                 account: str = "DU1234567", cash: float = 100_000.0,
                 costs: Costs | None = None, bar_seconds: float = 1.0,
                 start: int | str | pd.Timestamp | None = None,
                 fill: FillAt = "next_open",
                 faults: Faults | None = None, max_order_quantity: int = 10_000,
                 wait_for_client: bool = False) -> None:
        if not isinstance(account, str) or not _ACCOUNT.match(account):
            raise InputError(f"account must be an IB account code such as 'DU1234567', "
                             f"got {account!r}")
        if isinstance(bar_seconds, bool) or not isinstance(bar_seconds, int | float) \
                or not math.isfinite(bar_seconds) or bar_seconds < 0:
            raise InputError(f"bar_seconds must be a number of seconds >= 0 (0: advance only "
                             f"on request), got {bar_seconds!r}")
        if fill not in ("next_open", "close"):
            raise InputError(f"fill must be 'next_open' or 'close', got {fill!r}")
        if costs is not None and not isinstance(costs, Costs):
            raise InputError(f"costs must be a tradinglib.costs.Costs, got "
                             f"{type(costs).__name__}")
        self.replay = Replay(bars, start)
        self.bar_seconds = float(bar_seconds)
        self.wait_for_client = bool(wait_for_client)
        self._first_client = asyncio.Event()
        self.faults = faults if faults is not None else Faults()
        instrument = Instrument(symbol, time_zone=str(self.replay.times.tz))
        self.account = PaperAccount(self.replay, instrument, account=account, cash=cash,
                                    costs=replace(costs or Costs(), fill_at=fill),
                                    max_order_quantity=max_order_quantity)
        self.shown = self.replay.latest
        """Index of the latest bar clients were sent (behind ``replay.latest`` while the
        stop-bars fault holds them back)."""
        self._connections: set[Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._timers: set[asyncio.TimerHandle] = set()
        self._server: asyncio.Server | None = None
        self._ticker: asyncio.Task[None] | None = None
        self.port = 0

    # -- server ------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0, *,
                    allow_remote: bool = False) -> int:
        """Listen on ``host:port`` (0: a free port) and start the replay; the port.

        Raises:
            InputError: a non-loopback ``host`` without ``allow_remote``, or a bad port.
            RetryableError: the port is in use.
        """
        if not allow_remote and not is_loopback(host):
            raise InputError(f"host {host!r} is not a loopback address; the gateway has no "
                             "authentication, so it listens on 127.0.0.1 unless allowed "
                             "explicitly (allow_remote=True, CLI --allow-remote)")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise InputError(f"port must be an integer 0..65535 (0: any free port), "
                             f"got {port!r}")
        try:
            self._server = await asyncio.start_server(self._serve, host, port)
        except OSError as exc:
            raise RetryableError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; "
                                 "is another gateway or TWS running there?") from None
        self.port = int(self._server.sockets[0].getsockname()[1])
        if self.bar_seconds > 0:
            self._ticker = asyncio.create_task(self._tick())
        log.info("gateway %s listening on %s:%d, account %s, replay at bar %d (%s) of %d",
                 self.account.instrument.symbol, host, self.port, self.account.code,
                 self.replay.latest, self.replay.now, len(self.replay.times))
        return self.port

    async def close(self) -> None:
        """Stop the replay, close every connection and the server (bounded waits)."""
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        if self._server is not None:
            self._server.close()
        for conn in list(self._connections):
            conn.drop("gateway shutting down")
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=CLOSE_TIMEOUT)
        if self._server is not None:
            await asyncio.wait_for(self._server.wait_closed(), CLOSE_TIMEOUT)
            self._server = None
            log.info("gateway on port %d closed", self.port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = Connection(self, reader, writer)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self._connections.add(conn)
        try:
            await conn.run()
        finally:
            self._connections.discard(conn)
            if task is not None:
                self._tasks.discard(task)

    def admit(self, conn: Connection, client_id: int) -> bool:
        """True if ``client_id`` may connect: not in use by an open connection and not
        refused by the faults."""
        in_use = any(c.client_id == client_id and not c.closed and c is not conn
                     for c in self._connections)
        if in_use or self.faults.refuses(client_id):
            log.info("client id %d refused (%s)", client_id,
                     "in use" if in_use else "fault")
            return False
        self._first_client.set()
        return True

    # -- replay ------------------------------------------------------------------------

    async def _tick(self) -> None:
        """Publish one bar every ``bar_seconds`` until the data runs out (from the first
        client's connection with ``wait_for_client``)."""
        if self.wait_for_client:
            log.info("replay held at bar %d until the first client connects",
                     self.replay.latest)
            await self._first_client.wait()
        while not self.replay.finished:
            await asyncio.sleep(self.bar_seconds)
            try:
                self.advance()
            except Exception:  # keep serving connections; the paced replay stops
                log.exception("the paced replay stopped at bar %d", self.replay.latest)
                return

    def advance(self, n: int = 1) -> int:
        """Publish the next ``n`` bars: fills first, then bars (unless stopped) and
        account updates to subscribers. Returns the number published (fewer at the end
        of the data).

        Raises:
            InputError: ``n`` not an integer >= 0.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise InputError(f"advance needs a number of bars >= 0, got {n!r}")
        for done in range(n):
            if not self.replay.step():
                log.info("replay finished at bar %d (%s): no more bars",
                         self.replay.latest, self.replay.now)
                return done
            index, now = self.replay.latest, self.replay.now
            if self.faults.drop_due(index, now):
                log.info("fault: dropping every connection at bar %d (%s)", index, now)
                for conn in list(self._connections):
                    conn.drop(f"drop_at bar {index}")
            self._collect_fills()
            linked, notice = self.faults.ib_link_step()
            if notice is not None:
                log.info("fault: IB link notice %d to every client at bar %d", notice, index)
                for conn in list(self._connections):
                    conn.ib_link_notice(notice)
            if linked and self.faults.bar_passes():
                self.shown = index
                for conn in list(self._connections):
                    conn.push_bar(index)
            for conn in list(self._connections):
                conn.push_account()
        return n

    # -- orders ------------------------------------------------------------------------

    def place_order(self, conn: Connection, req: PlaceOrder) -> None:
        """Handle a placeOrder from ``conn``: a whatIf preview, an error, or an accepted
        order (openOrder + orderStatus Submitted, then any immediate fill)."""
        if req.what_if:
            if not self.account.instrument.matches(req.contract):
                conn.error(req.order_id, 200, "No security definition has been found for "
                                              "the request")
                return
            preview = OrderRecord(req.order_id, conn.client_id, 0, req.order_ref, req.action,
                                  parse_shares(req.quantity) or 0, req.order_type, None,
                                  req.tif, "Submitted")
            conn.send(msg.open_order(conn.version, preview, self.account.instrument,
                                     self.account.code, what_if=self.account.what_if(req)))
            return
        order, problem = self.account.place(conn.client_id, req, self.faults.take_reject)
        if problem is not None:
            conn.error(req.order_id, problem.code, problem.text)
            return
        if order is not None:
            conn.send_order(order)
        self._collect_fills()

    def cancel_order(self, conn: Connection, order_id: int) -> None:
        """Handle a cancelOrder: orderStatus Cancelled + 202, or 10147 / 10148."""
        order, problem = self.account.cancel(conn.client_id, order_id)
        if order is not None:
            conn.send(msg.order_status(order))
        conn.error(order_id, problem.code, problem.text)

    def _collect_fills(self) -> None:
        """Book new fills and report them now, or later under the fill-delay fault."""
        fills = self.account.new_fills()
        if not fills:
            return
        delay = self.faults.fill_delay_seconds
        if delay > 0:
            log.info("fault: reporting %d fill(s) %.3f s late", len(fills), delay)
            timer: list[asyncio.TimerHandle] = []
            timer.append(asyncio.get_running_loop().call_later(
                delay, self._report_fills, fills, timer))
            self._timers.add(timer[0])
        else:
            self._report_fills(fills, [])

    def _report_fills(self, fills: list[ExecutionRecord],
                      timer: list[asyncio.TimerHandle]) -> None:
        """execDetails, commissionReport, openOrder and orderStatus Filled to the order's
        client, then positions and account values to every subscriber; ``timer`` holds
        the handle of a delayed report."""
        self._timers.difference_update(timer)
        inst, code = self.account.instrument, self.account.code
        for fill in fills:
            order = self.account.order(fill.client_id, fill.order_id)
            for conn in list(self._connections):
                if conn.client_id == fill.client_id and not conn.closed:
                    conn.send(msg.exec_details(conn.version, -1, fill, inst, code))
                    conn.send(msg.commission_report(fill))
                    conn.send(msg.open_order(conn.version, order, inst, code))
                    conn.send(msg.order_status(order, last_fill_price=fill.price))
        for conn in list(self._connections):
            conn.push_position()
            conn.push_account()

    # -- snapshots ---------------------------------------------------------------------

    def clients(self) -> list[int]:
        """Client ids of the open API connections, ascending."""
        return sorted(c.client_id for c in self._connections
                      if not c.closed and c.client_id >= 0)

    def orders(self) -> list[OrderRecord]:
        """Every order placed, in order."""
        return self.account.orders()

    def executions(self) -> list[ExecutionRecord]:
        """Every fill, oldest first."""
        return self.account.executions()

    def snapshot(self) -> AccountSnapshot:
        """The account now: cash, position, avg cost, available funds, net liquidation."""
        return self.account.snapshot()
