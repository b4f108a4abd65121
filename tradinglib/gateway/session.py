"""One API client connection: the handshake, the requests it sends, and what it
subscribed to (market data, account updates, positions).

Everything a connection answers comes from its :class:`~tradinglib.gateway.server.Gateway`;
the connection holds no account or order state, so a reconnect sees all of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pandas as pd

from tradinglib.gateway import messages as msg
from tradinglib.gateway import requests
from tradinglib.gateway.framing import ProtocolError, encode, negotiate, read_hello, read_message
from tradinglib.gateway.market import HistoryError
from tradinglib.gateway.records import OrderRecord

if TYPE_CHECKING:
    from tradinglib.gateway.server import Gateway

log = logging.getLogger("tradinglib.gateway")

HANDSHAKE_TIMEOUT = 10.0
"""Seconds a client has for its hello and startApi."""
_FARM_NOTICES = ((2104, "Market data farm connection is OK:usfarm"),
                 (2106, "HMDS data farm connection is OK:ushmds"),
                 (2158, "Sec-def data farm connection is OK:secdefnj"))
_LINK_NOTICES = {1100: "Connectivity between IB and Trader Workstation has been lost.",
                 1101: "Connectivity between IB and Trader Workstation has been restored - "
                       "data lost.",
                 1102: "Connectivity between IB and Trader Workstation has been restored - "
                       "data maintained."}


@dataclass
class _Subscriptions:
    """What a connection asked to be kept up to date on, by request id."""

    bars: dict[int, tuple[str, int]] = field(default_factory=dict)  # bar size, formatDate
    realtime: set[int] = field(default_factory=set)
    ticks: set[int] = field(default_factory=set)
    summary: dict[int, set[str]] = field(default_factory=dict)  # tags
    multi: set[int] = field(default_factory=set)
    account: bool = False
    positions: bool = False


class Connection:
    """An API client connected to a gateway (created per accepted socket)."""

    def __init__(self, gateway: Gateway, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.gateway = gateway
        self.client_id = -1
        self.version = 0
        self.closed = False
        self.subs = _Subscriptions()
        self._reader = reader
        self._writer = writer
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self._handlers: dict[int, Callable[[list[str]], None]] = {
            1: self._req_mkt_data, 2: self._cancel(self.subs.ticks),
            3: self._place_order, 4: self._cancel_order, 5: self._open_orders,
            6: self._account_updates, 7: self._executions, 8: self._req_ids,
            9: self._contract_details, 15: _ignore, 16: self._open_orders,
            17: self._managed_accounts, 20: self._historical,
            25: self._cancel(self.subs.bars), 49: self._current_time,
            50: self._realtime_bars, 51: self._cancel(self.subs.realtime),
            58: self._global_cancel, 59: _ignore, 61: self._positions,
            62: self._account_summary, 63: self._cancel(self.subs.summary),
            64: self._cancel_positions, 71: _ignore, 76: self._account_multi,
            77: self._cancel(self.subs.multi), 99: self._completed_orders,
        }
        self._unknown: set[str] = set()

    # -- sending -----------------------------------------------------------------------

    def send(self, fields: msg.Fields) -> None:
        """Send one message, unless closed; the drop fault may close the socket instead."""
        if self.closed:
            return
        if self.gateway.faults.drop_instead_of_sending():
            log.info("fault: dropping client %s after the message budget", self.client_id)
            self.drop("message budget of the drop fault spent")
            return
        self._writer.write(encode(fields))

    def error(self, req_id: int, code: int, text: str) -> None:
        """Send errMsg ``code`` for ``req_id`` (an order id, a request id or -1)."""
        self.send(msg.error(self.version, req_id, code, text))

    def ib_link_notice(self, code: int) -> None:
        """Send TWS's notice about its own link to IB: 1100 lost, 1101 restored with
        the market data subscriptions gone (they are dropped here), 1102 restored."""
        if code == 1101:
            self.subs.bars.clear()
            self.subs.realtime.clear()
            self.subs.ticks.clear()
        self.error(-1, code, _LINK_NOTICES[code])

    def drop(self, reason: str) -> None:
        """Close the socket (the client sees the peer close the connection)."""
        if not self.closed:
            self.closed = True
            self._writer.close()
            log.info("client %s (%s) disconnected by the gateway: %s", self.client_id,
                     self.peer, reason)

    # -- lifecycle ---------------------------------------------------------------------

    async def run(self) -> None:
        """Serve the connection until the client or the gateway closes it."""
        try:
            if await self._handshake():
                while not self.closed:
                    self._dispatch(await read_message(self._reader))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except (ProtocolError, TimeoutError) as exc:
            log.warning("client %s (%s): %s; closing the connection", self.client_id,
                        self.peer, str(exc) or "no hello or startApi in time")
        finally:
            if not self.closed:
                log.info("client %s (%s) disconnected", self.client_id, self.peer)
            self.closed = True
            self._writer.close()
            with contextlib.suppress(ConnectionError, TimeoutError):
                await asyncio.wait_for(self._writer.wait_closed(), HANDSHAKE_TIMEOUT)

    async def _handshake(self) -> bool:
        """Hello, version, startApi; False when the client id is refused (326)."""
        hello = await asyncio.wait_for(read_hello(self._reader), HANDSHAKE_TIMEOUT)
        self.version = negotiate(hello)
        stamp = pd.Timestamp.now(tz="UTC")
        self._writer.write(encode([self.version, f"{stamp:%Y%m%d %H:%M:%S} UTC"]))
        start = await asyncio.wait_for(read_message(self._reader), HANDSHAKE_TIMEOUT)
        if start[0] != "71":
            raise ProtocolError(f"expected startApi (71) after the hello, got message "
                                f"{start[0]!r}")
        client_id = requests.integer(start, 2, "clientId")
        if not self.gateway.admit(self, client_id):
            self.error(-1, 326, f"Unable to connect as the client id {client_id} is already "
                                "in use. Retry with a unique client id.")
            self.drop(f"client id {client_id} refused (326)")
            return False
        self.client_id = client_id
        log.info("client %s connected from %s (server version %d)", client_id, self.peer,
                 self.version)
        self.send(msg.managed_accounts(self.gateway.account.code))
        self.send(msg.next_valid_id(self.gateway.account.next_order_id(client_id)))
        for code, text in _FARM_NOTICES:
            self.error(-1, code, text)
        return True

    def _dispatch(self, fields: list[str]) -> None:
        handler = self._handlers.get(int(fields[0]) if fields[0].isdigit() else -1)
        if handler is None:
            if fields[0] not in self._unknown:
                self._unknown.add(fields[0])
                log.warning("client %s: message id %r is not served by this gateway; "
                            "ignored", self.client_id, fields[0])
            return
        try:
            handler(fields)
        except (ProtocolError, IndexError, ValueError) as exc:  # a malformed request
            text = str(exc) if isinstance(exc, ProtocolError) else (
                f"message {fields[0]} with {len(fields)} fields is malformed ({exc})")
            log.warning("client %s: %s", self.client_id, text)
            self.error(-1, 320, f"Server error when reading an API client request: {text}")

    # -- orders ------------------------------------------------------------------------

    def _place_order(self, f: list[str]) -> None:
        self.gateway.place_order(self, requests.place_order(self.version, f))

    def _cancel_order(self, f: list[str]) -> None:
        self.gateway.cancel_order(self, requests.integer(f, 2, "orderId"))

    def _global_cancel(self, f: list[str]) -> None:
        for order in self.gateway.account.orders():
            if not order.done and order.client_id == self.client_id:
                self.gateway.cancel_order(self, order.order_id)

    def _open_orders(self, f: list[str]) -> None:
        every = f[0] == "16"
        for order in self.gateway.account.orders():
            if not order.done and (every or order.client_id == self.client_id):
                self.send_order(order)
        self.send(msg.open_order_end())

    def _completed_orders(self, f: list[str]) -> None:
        account = self.gateway.account
        for order in account.orders():
            if order.done:
                self.send(msg.completed_order(self.version, order, account.instrument,
                                              account.code))
        self.send(msg.completed_orders_end())

    def _executions(self, f: list[str]) -> None:
        req_id = requests.integer(f, 2, "reqId")
        client = int(f[3] or 0) if len(f) > 3 and f[3].lstrip("-").isdigit() else 0
        symbol = f[6].upper() if len(f) > 6 else ""
        side = f[9][:1].upper() if len(f) > 9 else ""
        account = self.gateway.account
        chosen = [e for e in account.executions()
                  if (not client or e.client_id == client)
                  and symbol in ("", account.instrument.symbol)
                  and (not side or (side == "B") == (e.side == "BOT"))]
        for fill in chosen:
            self.send(msg.exec_details(self.version, req_id, fill, account.instrument,
                                       account.code))
        for fill in chosen:
            self.send(msg.commission_report(fill))
        self.send(msg.exec_details_end(req_id))

    def _req_ids(self, f: list[str]) -> None:
        self.send(msg.next_valid_id(self.gateway.account.next_order_id(self.client_id)))

    def send_order(self, order: OrderRecord) -> None:
        """openOrder and orderStatus of ``order``."""
        account = self.gateway.account
        self.send(msg.open_order(self.version, order, account.instrument, account.code))
        self.send(msg.order_status(order, last_fill_price=order.avg_fill_price))

    # -- contract and time -------------------------------------------------------------

    def _contract_details(self, f: list[str]) -> None:
        req_id = requests.integer(f, 2, "reqId")
        inst = self.gateway.account.instrument
        if not inst.matches(requests.contract(f, 3)):
            self.error(req_id, 200, "No security definition has been found for the request")
            return
        self.send(msg.contract_data(self.version, req_id, inst))
        self.send(msg.contract_data_end(req_id))

    def _managed_accounts(self, f: list[str]) -> None:
        self.send(msg.managed_accounts(self.gateway.account.code))

    def _current_time(self, f: list[str]) -> None:
        self.send(msg.current_time(self.gateway.replay.now))

    # -- market data -------------------------------------------------------------------

    def _known(self, req_id: int, c12: list[str]) -> bool:
        """True if ``c12`` is the gateway's instrument; else error 200 for ``req_id``."""
        if self.gateway.account.instrument.matches(c12):
            return True
        self.error(req_id, 200, "No security definition has been found for the request; "
                                f"this gateway serves {self.gateway.account.instrument.symbol}")
        return False

    def _historical(self, f: list[str]) -> None:
        req = requests.historical(f)
        if not self._known(req.req_id, req.contract):
            return
        if req.keep_up_to_date and req.end:
            self.error(req.req_id, 321, "Error validating request: keepUpToDate needs an "
                                        "empty endDateTime")
            return
        try:
            rows = self.gateway.replay.history(req.bar_size, req.duration, req.end,
                                               req.format_date, self.gateway.shown)
        except HistoryError as exc:
            self.error(req.req_id, exc.code, str(exc))
            return
        self.send(msg.historical_data(req.req_id, str(rows[0][0]), str(rows[-1][0]), rows))
        if req.keep_up_to_date:
            self.subs.bars[req.req_id] = (req.bar_size, req.format_date)

    def _realtime_bars(self, f: list[str]) -> None:
        req_id = requests.integer(f, 2, "reqId")
        if not self._known(req_id, requests.contract(f, 3)):
            return
        if len(f) < 16 or f[15] != "5":
            self.error(req_id, 321, "Error validating request: real time bars need a bar "
                                    "size of 5 (seconds)")
            return
        self.subs.realtime.add(req_id)

    def _req_mkt_data(self, f: list[str]) -> None:
        req_id = requests.integer(f, 2, "reqId")
        if not self._known(req_id, requests.contract(f, 3)):
            return
        at = 16 + (3 if len(f) > 15 and f[15] == "1" else 0)  # after the delta-neutral part
        snapshot = len(f) > at + 1 and f[at + 1] == "1"
        self.send(msg.tick_req_params(req_id, self.gateway.account.instrument))
        self.send(msg.market_data_type(req_id))
        self.send_ticks(req_id, self.gateway.shown)
        if snapshot:
            self.send(msg.tick_snapshot_end(req_id))
        else:
            self.subs.ticks.add(req_id)

    def send_ticks(self, req_id: int, index: int) -> None:
        """Bid, ask and last at bar ``index``'s close, the previous close, the volume."""
        replay = self.gateway.replay
        price, volume = replay.ohlcv(index)[3:]
        for tick_type, size in ((1, 100.0), (2, 100.0), (4, 100.0)):
            self.send(msg.tick_price(req_id, tick_type, price, size))
        self.send(msg.tick_price(req_id, 9, replay.close(max(index - 1, 0)), 0.0))
        self.send(msg.tick_size(req_id, 8, volume))

    def push_bar(self, index: int) -> None:
        """Send bar ``index`` to the bar, real-time bar and tick subscriptions."""
        replay = self.gateway.replay
        for req_id, (bar_size, format_date) in list(self.subs.bars.items()):
            self.send(msg.historical_update(req_id, replay.bar_row(bar_size, index,
                                                                   format_date)))
        o, h, low, c, v = replay.ohlcv(index)
        for req_id in list(self.subs.realtime):
            self.send(msg.realtime_bar(req_id, replay.now, o, h, low, c, v))
        for req_id in list(self.subs.ticks):
            self.send_ticks(req_id, index)

    # -- account -----------------------------------------------------------------------

    def _positions(self, f: list[str]) -> None:
        self.subs.positions = True
        self.push_position()
        self.send(msg.position_end())

    def _cancel_positions(self, f: list[str]) -> None:
        self.subs.positions = False

    def push_position(self) -> None:
        """The position message (once the account has traded) to a positions subscriber."""
        account = self.gateway.account
        if self.subs.positions and account.traded:
            snap = account.snapshot()
            self.send(msg.position(account.code, account.instrument, snap.position,
                                   snap.avg_cost or 0.0))

    def _account_updates(self, f: list[str]) -> None:
        self.subs.account = len(f) > 2 and f[2] == "1"
        if self.subs.account:
            self.push_account()
            self.send(msg.account_download_end(self.gateway.account.code))

    def _account_summary(self, f: list[str]) -> None:
        req_id = requests.integer(f, 2, "reqId")
        tags = set((f[4] if len(f) > 4 else "").split(","))
        self.subs.summary[req_id] = tags
        self._send_summary(req_id, tags)
        self.send(msg.account_summary_end(req_id))

    def _send_summary(self, req_id: int, tags: set[str]) -> None:
        account = self.gateway.account
        for key, value, currency in account.values():
            if key in tags:
                self.send(msg.account_summary(req_id, account.code, key, value, currency))

    def _account_multi(self, f: list[str]) -> None:
        req_id = requests.integer(f, 2, "reqId")
        self.subs.multi.add(req_id)
        self._send_multi(req_id)
        self.send(msg.account_update_multi_end(req_id))

    def _send_multi(self, req_id: int) -> None:
        account = self.gateway.account
        for key, value, currency in account.values():
            self.send(msg.account_update_multi(req_id, account.code, key, value, currency))

    def push_account(self) -> None:
        """Account values, the portfolio line and the time to every account
        subscription of this connection."""
        account = self.gateway.account
        if self.subs.account:
            for key, value, currency in account.values():
                self.send(msg.account_value(key, value, currency, account.code))
            if account.traded:
                self.send(msg.portfolio(account.instrument, account.code,
                                        *account.portfolio()))
            self.send(msg.account_time(self.gateway.replay.now))
        for req_id, tags in self.subs.summary.items():
            self._send_summary(req_id, tags)
        for req_id in self.subs.multi:
            self._send_multi(req_id)

    @staticmethod
    def _cancel(subs: dict[int, tuple[str, int]] | dict[int, set[str]] | set[int]
                ) -> Callable[[list[str]], None]:
        """A handler that ends subscription ``reqId`` (field 2) in ``subs``."""
        def cancel(f: list[str]) -> None:
            req_id = requests.integer(f, 2, "reqId")
            if isinstance(subs, set):
                subs.discard(req_id)
            else:
                subs.pop(req_id, None)
        return cancel


def _ignore(fields: list[str]) -> None:
    """Requests acknowledged by doing nothing (reqAutoOpenOrders, reqMarketDataType, a
    repeated startApi)."""
