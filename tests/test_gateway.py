"""The gateway simulator with the real ib_async client over 127.0.0.1: connect, account,
contract details, market data, orders with the backtest's cost model, cancel, reject,
reconnect, duplicate client ids and every negotiated server version."""

from __future__ import annotations

import asyncio
import pickle
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any

import pandas as pd
import pytest
from ib_async import IB, Contract, LimitOrder, MarketOrder, Stock, Trade

from tradinglib.costs import Costs
from tradinglib.exceptions import InputError, RetryableError
from tradinglib.gateway import Faults, Gateway, GatewayThread, ProtocolError
from tradinglib.gateway.framing import Hello, negotiate, parse_hello
from tradinglib.gateway.market import HistoryError

START = 300  # first "now" bar of the test gateways
CASH = 100_000.0
GOOGL = Stock("GOOGL", "SMART", "USD")


# -- helpers shared with test_gateway_faults ------------------------------------------


@contextmanager
def serve(bars: pd.DataFrame, **kwargs: Any) -> Iterator[GatewayThread]:
    """A gateway over ``bars`` from bar START, advanced only on request, in a thread."""
    options: dict[str, Any] = {"bar_seconds": 0, "start": START, **kwargs}
    with GatewayThread(Gateway(bars, **options), timeout=10) as gw:
        yield gw


def run(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run an async test body in a fresh event loop, bounded to 30 s."""
    asyncio.run(asyncio.wait_for(test(), 30))


async def connect(port: int, client_id: int = 1, *, version: int | None = None,
                  ib: IB | None = None, timeout: float = 5) -> IB:
    """A connected ib_async client; ``version`` caps the client's API version."""
    ib = ib or IB()
    if version is not None:
        ib.client.MaxClientVersion = version
    await ib.connectAsync("127.0.0.1", port, clientId=client_id, timeout=timeout)
    return ib


async def until(condition: Callable[[], object], what: str, timeout: float = 5.0) -> None:
    """Wait (polling every 10 ms, at most ``timeout`` s) until ``condition()`` is true."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.01)


async def qualified(ib: IB) -> Contract:
    """GOOGL qualified through reqContractDetails."""
    contract = Stock("GOOGL", "SMART", "USD")
    await ib.qualifyContractsAsync(contract)
    return contract


def order(kind: str, action: str, quantity: int, ref: str, limit: float = 0.0) -> Any:
    """An ib_async MKT or LMT order with ``orderRef`` ``ref``."""
    made = MarketOrder(action, quantity) if kind == "MKT" else LimitOrder(action, quantity,
                                                                         limit)
    made.orderRef = ref
    return made


def errors_of(ib: IB) -> list[tuple[int, int, str]]:
    """A list that collects (reqId, code, text) of every errorEvent of ``ib``."""
    seen: list[tuple[int, int, str]] = []
    ib.errorEvent += lambda req_id, code, text, *rest: seen.append((req_id, code, text))
    return seen


def commission(quantity: int, price: float) -> float:
    """IBKR fixed pricing, computed here independently of tradinglib.costs."""
    return min(max(quantity * 0.005, 1.0), quantity * price * 0.01)


# -- protocol units ---------------------------------------------------------------------


@pytest.mark.parametrize(("hello", "expected"), [
    ("v157..178", 178), ("v157..176", 176), ("v100..200", 178), ("v160..165 +PACEAPI", 165),
    ("v157", 157),
])
def test_version_negotiation(hello: str, expected: int) -> None:
    assert negotiate(parse_hello(hello)) == expected


@pytest.mark.parametrize("hello", ["v100..156", "v179..190"])
def test_versions_without_overlap_are_refused(hello: str) -> None:
    with pytest.raises(ProtocolError, match="do not overlap"):
        negotiate(parse_hello(hello))


@pytest.mark.parametrize(("version", "sizes"), [
    (178, {"open": 127, "completed": 96, "exec": 32, "contract": 40, "error": 6}),
    (176, {"open": 128, "completed": 97, "exec": 31, "contract": 40, "error": 6}),
    (163, {"open": 123, "completed": 92, "exec": 31, "contract": 40, "error": 5}),
])
def test_message_sizes_follow_the_reference(version: int, sizes: dict[str, int]) -> None:
    """Field counts of a plain stock order's messages as tws-protocol.md states them (at
    163: no faProfile removal, no 170 extras, contractData with its version field and
    mdSizeMultiplier but one size field, errMsg without the JSON field)."""
    from tradinglib.gateway import messages
    from tradinglib.gateway.contract import Instrument
    from tradinglib.gateway.records import ExecutionRecord, OrderRecord

    inst = Instrument("GOOGL")
    placed = OrderRecord(1, 1, 1_000_001, "ref", "BUY", 5, "MKT", None, "DAY", "Filled", 5,
                         100.0, completed=pd.Timestamp("2024-01-02", tz="UTC"))
    fill = ExecutionRecord("1.1.01.01", 1, 1, 1_000_001, "ref", "BOT", 5, 100.0, 1.0, 0.0,
                           pd.Timestamp("2024-01-02", tz="UTC"))
    got = {"open": messages.open_order(version, placed, inst, "DU1"),
           "completed": messages.completed_order(version, placed, inst, "DU1"),
           "exec": messages.exec_details(version, -1, fill, inst, "DU1"),
           "contract": messages.contract_data(version, 1, inst),
           "error": messages.error(version, 1, 201, "no")}
    assert {name: len(fields) for name, fields in got.items()} == sizes


def test_bad_hello_and_pickling() -> None:
    with pytest.raises(ProtocolError, match="bad API hello"):
        parse_hello("GET / HTTP/1.1")
    assert parse_hello("v157..178 +PACEAPI") == Hello(157, 178, "+PACEAPI")
    error = pickle.loads(pickle.dumps(HistoryError(162, "no data")))
    assert (error.code, str(error)) == (162, "no data")


def _frame(*fields: str) -> bytes:
    body = "".join(f"{f}\0" for f in fields).encode()
    return struct.pack(">I", len(body)) + body


def _read(raw: socket.socket) -> list[str]:
    """One message from the gateway, split into fields."""
    head = b""
    while len(head) < 4:
        head += raw.recv(4 - len(head))
    size, body = struct.unpack(">I", head)[0], b""
    while len(body) < size:
        body += raw.recv(size - len(body))
    return body.decode().split("\0")[:-1]


def test_raw_handshake_malformed_request_and_garbage(googl: pd.DataFrame) -> None:
    """The handshake reply is exactly 2 fields and nextValidId / managedAccounts exactly
    3; a malformed request gets error 320 and the connection goes on; a client that is
    not an API client is disconnected and the gateway keeps serving."""
    with serve(googl) as gw, socket.create_connection(("127.0.0.1", gw.port), 5) as raw:
        raw.settimeout(5)
        version = b"v157..176"
        raw.sendall(b"API\0" + struct.pack(">I", len(version)) + version)
        reply = _read(raw)
        assert len(reply) == 2 and reply[0] == "176"
        raw.sendall(_frame("71", "2", "3", ""))
        first = [_read(raw), _read(raw)]
        assert sorted(first) == [["15", "1", "DU1234567"], ["9", "1", "1"]]
        notices = [_read(raw) for _ in range(3)]
        assert [n[3] for n in notices] == ["2104", "2106", "2158"]
        assert all(len(n) == 6 for n in notices)  # with advancedOrderRejectJson at >= 166
        raw.sendall(_frame("3", "1") + _frame("3", "1", *[""] * 30) + _frame("49", "1"))
        for problem in ("too few for a contract", "malformed order tail"):
            error = _read(raw)
            assert error[:4] == ["4", "2", "-1", "320"] and problem in error[4]
        assert _read(raw) == ["49", "1", str(int(googl.index[START].timestamp()))]
        with socket.create_connection(("127.0.0.1", gw.port), 5) as junk:
            junk.settimeout(5)
            junk.sendall(b"GET / HTTP/1.1\r\n\r\n")
            assert junk.recv(100) == b""  # closed by the gateway
        assert gw.advance() == 1


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"account": "bad account"}, "account must be"),
    ({"bar_seconds": -1}, "bar_seconds"),
    ({"fill": "open"}, "fill must be"),
    ({"cash": 0}, "cash must be"),
    ({"start": 99_999}, "outside the"),
    ({"start": "2030-01-01"}, "after the last bar"),
    ({"start": "not a time"}, "neither a bar index"),
    ({"symbol": "GO OG"}, "symbol must be"),
    ({"max_order_quantity": 0}, "max_order_quantity"),
    ({"costs": {"slippage_bps": 5}}, "costs must be a tradinglib.costs.Costs"),
])
def test_bad_parameters_are_named(googl: pd.DataFrame, kwargs: dict[str, Any],
                                  message: str) -> None:
    with pytest.raises(InputError, match=message):
        Gateway(googl, **kwargs)


def test_non_loopback_host_needs_permission(googl: pd.DataFrame) -> None:
    with pytest.raises(InputError, match="not a loopback address"):
        GatewayThread(Gateway(googl), host="0.0.0.0").start()
    with GatewayThread(Gateway(googl, bar_seconds=0)) as gw, pytest.raises(
            RetryableError, match="cannot listen"):
        GatewayThread(Gateway(googl), port=gw.port).start()


# -- the client's view ------------------------------------------------------------------


def test_connect_account_contract_and_time(googl: pd.DataFrame) -> None:
    async def body() -> None:
        with serve(googl, cash=CASH, account="DU7654321") as gw:
            ib = await connect(gw.port)
            try:
                assert ib.managedAccounts() == ["DU7654321"]
                values = {v.tag: v.value for v in ib.accountValues()}
                assert float(values["NetLiquidation"]) == CASH
                assert float(values["AvailableFunds"]) == CASH
                summary = {v.tag: v.value for v in await ib.accountSummaryAsync()}
                assert float(summary["TotalCashValue"]) == CASH
                assert ib.positions() == []
                contract = await qualified(ib)
                assert contract.conId == gw.gateway.account.instrument.con_id
                assert contract.primaryExchange == "NASDAQ"
                errors = errors_of(ib)
                assert await ib.qualifyContractsAsync(Stock("ZZZZ", "SMART", "USD")) == [None]
                assert [code for _, code, _ in errors] == [200]
                now = await ib.reqCurrentTimeAsync()
                assert pd.Timestamp(now) == googl.index[START]
            finally:
                ib.disconnect()
    run(body)


def test_history_and_keep_up_to_date(googl: pd.DataFrame) -> None:
    """History ends at "now" with the data's values; each advance appends the next bar;
    weekly bars aggregate the daily ones; a finer bar size is refused (162)."""
    async def body() -> None:
        with serve(googl) as gw:
            ib = await connect(gw.port)
            try:
                contract = await qualified(ib)
                bars = await ib.reqHistoricalDataAsync(contract, "", "1 M", "1 day", "TRADES",
                                                       True, keepUpToDate=True)
                month = googl.iloc[:START + 1]
                month = month[month.index > googl.index[START] - pd.Timedelta(days=30)]
                assert [b.date for b in bars] == [t.date() for t in month.index]
                assert [b.close for b in bars] == month["close"].tolist()
                assert gw.advance(2) == 2
                await until(lambda: len(bars) == len(month) + 2, "two bar updates")
                for bar, (_, row) in zip(bars[-2:], googl.iloc[START + 1:START + 3].iterrows(),
                                         strict=True):
                    assert (bar.open, bar.high, bar.low, bar.close, bar.volume) == (
                        row.open, row.high, row.low, row.close, row.volume)
                weeks = await ib.reqHistoricalDataAsync(contract, "", "2 M", "1 week",
                                                        "TRADES", True)
                assert len(weeks) >= 8
                for week in weeks:
                    first = pd.Timestamp(week.date).tz_localize(googl.index.tz)
                    days = googl[(googl.index >= first)
                                 & (googl.index < first + pd.Timedelta(days=7))
                                 & (googl.index <= googl.index[START + 2])]
                    assert first.day_of_week == 0
                    assert week.open == days["open"].iloc[0]
                    assert week.high == days["high"].max()
                    assert week.low == days["low"].min()
                    assert week.close == days["close"].iloc[-1]
                    assert week.volume == pytest.approx(days["volume"].sum())
                for end, last in ((googl.index[START - 10], START - 10),
                                  (googl.index[-1], START + 2)):  # never after "now"
                    upto = await ib.reqHistoricalDataAsync(contract, end.to_pydatetime(),
                                                           "1 M", "1 day", "TRADES", True)
                    assert upto[-1].date == googl.index[last].date()
                errors = errors_of(ib)
                assert len(await ib.reqHistoricalDataAsync(contract, "", "1 D", "1 min",
                                                           "TRADES", True)) == 0
                before = googl.index[0] - pd.Timedelta(days=3)
                assert len(await ib.reqHistoricalDataAsync(contract, before.to_pydatetime(),
                                                           "1 M", "1 day", "TRADES", True)) == 0
                assert [code for _, code, _ in errors] == [162, 162]
            finally:
                ib.disconnect()
    run(body)


def test_intraday_bins_update_in_place() -> None:
    """Hourly EURUSD bars served as 4-hour bars: each new hour updates the open 4-hour
    bar in place until its bin is full, then a new bar starts; dates keep the zone."""
    from tradinglib.data import load_bars

    hourly = load_bars("eurusd-hourly").iloc[:200]

    def expected(now: int) -> tuple[pd.Timestamp, float, float, float]:
        """(bin start, high, low, close) of the 4-hour bin holding bar ``now``."""
        start = hourly.index[now].floor("4h")
        rows = hourly[(hourly.index >= start) & (hourly.index <= hourly.index[now])]
        return start, rows["high"].max(), rows["low"].min(), rows["close"].iloc[-1]

    async def body() -> None:
        with serve(hourly, symbol="EURUSD", start=100) as gw:
            ib = await connect(gw.port)
            try:
                contract = Stock("EURUSD", "SMART", "USD")
                await ib.qualifyContractsAsync(contract)
                bars = await ib.reqHistoricalDataAsync(contract, "", "2 D", "4 hours",
                                                       "TRADES", True, keepUpToDate=True)
                for now in range(100, 106):
                    if now > 100:
                        gw.advance()
                        await until(lambda n=now: (bars[-1].date, bars[-1].close) == (
                            expected(n)[0].to_pydatetime(), expected(n)[3]), f"bar {now}")
                    start, high, low, _ = expected(now)
                    assert bars[-1].date == start.to_pydatetime()
                    assert (bars[-1].high, bars[-1].low) == (high, low)
                    assert bars[-2].date == (start - pd.Timedelta(hours=4)).to_pydatetime()
            finally:
                ib.disconnect()
    run(body)


def test_realtime_bars_and_ticks(googl: pd.DataFrame) -> None:
    async def body() -> None:
        with serve(googl) as gw:
            ib = await connect(gw.port)
            try:
                contract = await qualified(ib)
                bars = ib.reqRealTimeBars(contract, 5, "TRADES", False)
                ticker = ib.reqMktData(contract)
                await until(lambda: ticker.last == googl["close"].iloc[START], "first ticks")
                assert ticker.close == googl["close"].iloc[START - 1]
                gw.advance()
                await until(lambda: len(bars) == 1, "a real-time bar")
                assert bars[0].close == googl["close"].iloc[START + 1]
                assert pd.Timestamp(bars[0].time) == googl.index[START + 1]
                await until(lambda: ticker.last == googl["close"].iloc[START + 1], "new ticks")
            finally:
                ib.disconnect()
    run(body)


def test_market_order_fills_at_next_open_with_costs(googl: pd.DataFrame) -> None:
    """The backtest's default: a market order fills at the next bar's open plus slippage,
    with IBKR commission; orderRef comes back everywhere; the account books it."""
    async def body() -> None:
        with serve(googl, costs=Costs(slippage_bps=10.0)) as gw:
            ib = await connect(gw.port)
            try:
                contract = await qualified(ib)
                reports: list[object] = []
                ib.commissionReportEvent += lambda trade, fill, report: reports.append(report)
                trade = ib.placeOrder(contract, order("MKT", "BUY", 5, "run-1-7"))
                await until(lambda: trade.orderStatus.status == "Submitted", "Submitted")
                await asyncio.sleep(0.05)
                assert trade.fills == []  # nothing fills before the next bar
                gw.advance()
                await until(trade.isDone, "the fill")
                price = googl["open"].iloc[START + 1] * 1.001
                fee = commission(5, price)
                assert trade.orderStatus.status == "Filled"
                assert trade.orderStatus.avgFillPrice == pytest.approx(price)
                (fill,) = trade.fills
                assert fill.execution.orderRef == trade.order.orderRef == "run-1-7"
                assert fill.commissionReport.commission == pytest.approx(fee)
                assert len(reports) == 1
                (record,) = gw.executions()
                assert (record.order_ref, record.side, record.shares) == ("run-1-7", "BOT", 5)
                assert record.time == googl.index[START + 1]
                account = gw.account()
                assert account.cash == pytest.approx(CASH - 5 * price - fee)
                assert account.position == 5
                await until(lambda: ib.positions() and ib.positions()[0].position == 5,
                            "the position update")
                assert ib.positions()[0].avgCost == pytest.approx(price)
                (line,) = ib.portfolio()
                close = googl["close"].iloc[START + 1]
                assert (line.position, line.marketPrice) == (5, close)
                assert line.unrealizedPNL == pytest.approx(5 * (close - price))
                values = {v.tag: float(v.value) for v in ib.accountValues()
                          if v.tag == "TotalCashValue"}
                assert values["TotalCashValue"] == pytest.approx(account.cash, abs=0.01)
            finally:
                ib.disconnect()
    run(body)


def test_fill_at_close_and_limit_orders(googl: pd.DataFrame) -> None:
    """fill="close": a market order fills at once at the latest close; a buy limit fills
    only when a later bar trades through it, at the limit."""
    bar = googl.iloc[START + 1]
    limit = round((bar.low + bar.open) / 2, 2)  # below the next open, above its low
    assert bar.low < limit < bar.open and limit < googl["close"].iloc[START]

    async def body() -> None:
        with serve(googl, fill="close") as gw:
            ib = await connect(gw.port)
            try:
                contract = await qualified(ib)
                market = ib.placeOrder(contract, order("MKT", "BUY", 3, "now"))
                await until(market.isDone, "the market fill")
                assert market.orderStatus.avgFillPrice == googl["close"].iloc[START]
                resting = ib.placeOrder(contract, order("LMT", "BUY", 2, "lmt", limit))
                far = ib.placeOrder(contract, order("LMT", "BUY", 2, "far", 1.0))
                await until(lambda: far.orderStatus.status == "Submitted", "Submitted")
                assert not resting.isDone()
                gw.advance()
                await until(resting.isDone, "the limit fill")
                assert resting.fills[0].execution.price == limit
                assert resting.fills[0].execution.orderRef == "lmt"
                assert far.orderStatus.status == "Submitted"
                assert [o.status for o in gw.orders()] == ["Filled", "Filled", "Submitted"]
            finally:
                ib.disconnect()
    run(body)


def test_cancel_and_its_errors(googl: pd.DataFrame) -> None:
    async def body() -> None:
        with serve(googl) as gw:
            ib = await connect(gw.port)
            try:
                contract = await qualified(ib)
                errors = errors_of(ib)
                trade = ib.placeOrder(contract, order("LMT", "BUY", 2, "c", 1.0))
                await until(lambda: trade.orderStatus.status == "Submitted", "Submitted")
                ib.cancelOrder(trade.order)
                await until(trade.isDone, "the cancel")
                assert trade.orderStatus.status == "Cancelled"
                ib.client.cancelOrder(trade.order.orderId)  # again: already done
                ib.client.cancelOrder(99_999)  # unknown
                await until(lambda: len(errors) >= 3, "three errors")
                assert [(r, c) for r, c, _ in errors] == [
                    (trade.order.orderId, 202), (trade.order.orderId, 10148), (99_999, 10147)]
                assert gw.orders()[0].reason == "Cancelled by the client"
                working = [ib.placeOrder(contract, order("LMT", "BUY", 1, f"g{i}", 1.0))
                           for i in range(2)]
                await until(lambda: all(t.orderStatus.status == "Submitted" for t in working),
                            "two working orders")
                ib.reqGlobalCancel()
                await until(lambda: all(t.isDone() for t in working), "the global cancel")
                assert [o.status for o in gw.orders()] == ["Cancelled"] * 3
            finally:
                ib.disconnect()
    run(body)


def test_rejects_end_cancelled_with_201(googl: pd.DataFrame) -> None:
    """Over the available funds, over the quantity limit, an unknown contract (200) and
    an unsupported order type (387): each trade ends Cancelled with its error."""
    price = googl["close"].iloc[START]
    cash = 4 * price  # enough for 3 shares with commission, not for 5

    async def body() -> None:
        with serve(googl, cash=cash, max_order_quantity=100) as gw:
            ib = await connect(gw.port)
            try:
                contract = await qualified(ib)
                trades: list[Trade] = [
                    ib.placeOrder(contract, order("MKT", "BUY", 5, "too-dear")),
                    ib.placeOrder(contract, order("MKT", "SELL", 101, "too-big")),
                    ib.placeOrder(Stock("ZZZZ", "SMART", "USD"), order("MKT", "BUY", 1, "z")),
                ]
                stop = MarketOrder("BUY", 1)
                stop.orderType = "STP"
                trades.append(ib.placeOrder(contract, stop))
                ok = ib.placeOrder(contract, order("MKT", "BUY", 3, "fits"))
                await until(lambda: all(t.isDone() for t in trades), "the rejects")
                codes = [t.log[-1].errorCode for t in trades]
                assert codes == [201, 201, 200, 387]
                assert all(t.orderStatus.status == "Cancelled" for t in trades)
                assert "insufficient cash" in trades[0].log[-1].message
                assert "exceeds the limit of 100" in trades[1].log[-1].message
                assert ok.orderStatus.status == "Submitted"
                assert [o.reason.startswith("Rejected") for o in gw.orders()] == [
                    True, True, False]
            finally:
                ib.disconnect()
    run(body)


def test_what_if_previews_commission(googl: pd.DataFrame) -> None:
    async def body() -> None:
        with serve(googl) as gw:
            ib = await connect(gw.port)
            try:
                contract = await qualified(ib)
                state = await ib.whatIfOrderAsync(contract, MarketOrder("BUY", 400))
                expected = commission(400, googl["close"].iloc[START])
                assert state.commission == pytest.approx(expected, abs=0.005)
                assert float(state.equityWithLoanChange) == pytest.approx(-expected, abs=0.005)
                assert gw.orders() == []  # a preview places nothing
            finally:
                ib.disconnect()
    run(body)


def test_odd_input_from_a_client_gets_answers_not_a_dead_connection(googl: pd.DataFrame
                                                                    ) -> None:
    """A negative client id trades like any other; a what-if preview of an absurd
    quantity is answered (no shares) instead of killing the connection."""
    async def body() -> None:
        with serve(googl) as gw:
            ib = await connect(gw.port, client_id=-1)
            try:
                contract = await qualified(ib)
                await ib.whatIfOrderAsync(contract, MarketOrder("BUY", float("inf")))
                trade = ib.placeOrder(contract, order("MKT", "BUY", 2, "neg"))
                await until(lambda: trade.orderStatus.status == "Submitted", "Submitted")
                gw.advance()
                await until(lambda: trade.isDone(), "the fill")
                assert [(e.client_id, e.shares) for e in gw.executions()] == [(-1, 2)]
                assert ib.isConnected()
            finally:
                ib.disconnect()
    run(body)


def test_reconnect_restores_trades_fills_and_positions(googl: pd.DataFrame) -> None:
    async def body() -> None:
        with serve(googl) as gw:
            ib = await connect(gw.port, client_id=4)
            try:
                contract = await qualified(ib)
                filled = ib.placeOrder(contract, order("MKT", "BUY", 5, "keep-1"))
                working = ib.placeOrder(contract, order("LMT", "BUY", 1, "keep-2", 1.0))
                await until(lambda: working.orderStatus.status == "Submitted", "Submitted")
                gw.advance()
                await until(filled.isDone, "the fill")
                ib.disconnect()
                gw.advance()  # time goes on while the client is away
                await connect(gw.port, client_id=4, ib=ib)  # the same IB object again
                fills = ib.fills()
                assert [f.execution.orderRef for f in fills] == ["keep-1"]
                assert fills[0].commissionReport.commission == pytest.approx(1.0)
                by_ref = {t.order.orderRef: t for t in ib.trades()}
                assert by_ref["keep-1"].orderStatus.status == "Filled"
                assert by_ref["keep-1"].fills == fills
                assert [t.order.orderRef for t in ib.openTrades()] == ["keep-2"]
                assert ib.positions()[0].position == 5
                assert ib.client.getReqId() > working.order.orderId  # nextValidId
                ib.cancelOrder(by_ref["keep-2"].order)
                await until(by_ref["keep-2"].isDone, "the cancel after reconnect")
            finally:
                ib.disconnect()
    run(body)


def test_duplicate_client_id_is_refused_with_326(googl: pd.DataFrame) -> None:
    async def body() -> None:
        with serve(googl) as gw:
            first = await connect(gw.port, client_id=7)
            second = IB()
            errors = errors_of(second)
            try:
                with pytest.raises(TimeoutError):
                    await connect(gw.port, client_id=7, ib=second, timeout=1)
                assert [code for _, code, _ in errors] == [326]
                assert first.isConnected()
                assert gw.clients() == [7]
                first.disconnect()
                await until(lambda: gw.clients() == [], "the server to see it")
                await connect(gw.port, client_id=7, ib=second)
                assert second.isConnected()
            finally:
                first.disconnect()
                second.disconnect()
    run(body)


@pytest.mark.parametrize("version", [157, 162, 163, 166, 170, 176, 177, 178])
def test_every_version_gate_round_trips(googl: pd.DataFrame, version: int) -> None:
    """At each negotiated version the client decodes contract details, openOrder,
    execDetails, commissionReport, errMsg and completedOrder (on reconnect)."""
    async def body() -> None:
        with serve(googl, fill="close") as gw:
            ib = await connect(gw.port, version=version)
            try:
                assert ib.client.serverVersion() == version
                contract = await qualified(ib)
                assert contract.conId > 0
                trade = ib.placeOrder(contract, order("MKT", "BUY", 2, f"v{version}"))
                rejected = ib.placeOrder(contract, order("MKT", "BUY", 10**6, "no"))
                await until(lambda: trade.isDone() and rejected.isDone(), "fill and reject")
                assert trade.fills[0].commissionReport.commission == 1.0
                assert trade.order.permId > 0
                assert rejected.log[-1].errorCode == 201
                ib.disconnect()
                await connect(gw.port, version=version, ib=ib)
                statuses = sorted(t.orderStatus.status for t in ib.trades())
                assert statuses == ["Cancelled", "Filled"]
                assert [f.execution.orderRef for f in ib.fills()] == [f"v{version}"]
            finally:
                ib.disconnect()
    run(body)


def test_gateway_records_pickle_and_faults_validate(googl: pd.DataFrame) -> None:
    with pytest.raises(InputError, match="drop_after_messages"):
        Faults(drop_after_messages=-1)
    with pytest.raises(InputError, match="fill_delay_seconds"):
        Faults(fill_delay_seconds=float("nan"))
    with pytest.raises(InputError, match="drop_at"):
        Faults(drop_at="soon")
    for bars in (0, -1, 1.5):
        with pytest.raises(InputError, match="lose_ib_link"):
            Faults(lose_ib_link=bars)  # type: ignore[arg-type]

    async def body() -> None:
        with serve(googl, fill="close") as gw:
            ib = await connect(gw.port)
            try:
                trade = ib.placeOrder(await qualified(ib), order("MKT", "SELL", 1, "p"))
                await until(trade.isDone, "the fill")
            finally:
                ib.disconnect()
            records = [*gw.orders(), *gw.executions()]
            assert pickle.loads(pickle.dumps(records)) == records
            assert gw.account().position == -1
    run(body)



def test_gateway_imports_stay_light() -> None:
    """The gateway never imports torch or stable-baselines3 (directly or through
    tradinglib modules)."""
    code = ("import sys, tradinglib.gateway, tradinglib.gateway.serve; "
            "print(sorted(m for m in ('torch', 'stable_baselines3', 'gymnasium') "
            "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
