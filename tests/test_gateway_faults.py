"""The gateway's fault injection with the real ib_async client, the paced replay, the
background thread's cleanup, and the ``tradinglib gateway`` command."""

from __future__ import annotations

import asyncio
import os
import selectors
import signal
import subprocess
import sys
import threading
import time

import pandas as pd
import pytest
from ib_async import IB
from test_gateway import START, connect, errors_of, order, qualified, run, serve, until

from tradinglib.gateway import Faults, Gateway, GatewayThread


def test_drop_after_messages_then_reconnect(googl: pd.DataFrame) -> None:
    """The socket closes after the message budget; a reconnect with the same client id
    finds the state, including a fill that happened while it was away."""
    async def body() -> None:
        with serve(googl) as gw:
            ib = await connect(gw.port)
            lost = asyncio.Event()
            ib.disconnectedEvent += lost.set
            try:
                contract = await qualified(ib)
                trade = ib.placeOrder(contract, order("MKT", "BUY", 4, "away"))
                await until(lambda: trade.orderStatus.status == "Submitted", "Submitted")
                gw.faults.drop_after_messages(1)
                await ib.reqCurrentTimeAsync()  # the one message still sent
                gw.advance()  # the fill's messages are not: the socket drops
                await asyncio.wait_for(lost.wait(), 5)
                assert not ib.isConnected() and trade.fills == []
                await connect(gw.port, ib=ib)
                assert [f.execution.orderRef for f in ib.fills()] == ["away"]
                assert ib.positions()[0].position == 4
            finally:
                ib.disconnect()
    run(body)


def test_drop_at_a_bar(googl: pd.DataFrame) -> None:
    async def body() -> None:
        faults = Faults(drop_at=googl.index[START + 2])  # a time: that bar drops everyone
        with serve(googl, faults=faults) as gw:
            first, second = await connect(gw.port, 1), await connect(gw.port, 2)
            try:
                gw.advance()
                await asyncio.sleep(0.05)
                assert first.isConnected() and second.isConnected()
                gw.advance()
                await until(lambda: not first.isConnected() and not second.isConnected(),
                            "both clients to be dropped")
                gw.advance()  # one-shot: a reconnect is not dropped again
                await connect(gw.port, 1, ib=first)
                gw.advance()
                await asyncio.sleep(0.05)
                assert first.isConnected()
            finally:
                first.disconnect()
                second.disconnect()
    run(body)


@pytest.mark.parametrize("mark", [START + 2, "2010-08-11",
                                  pd.Timestamp("2010-08-11", tz="UTC")])
def test_drop_due_fires_once_at_its_bar(googl: pd.DataFrame,
                                        mark: int | str | pd.Timestamp) -> None:
    """An index, a naive time (in the bars' zone) or an aware time: due at the first
    bar at or after it, and only once."""
    faults = Faults(drop_at=mark)
    if isinstance(mark, int):
        bar = mark
    else:
        stamp = pd.Timestamp(mark)
        stamp = stamp if stamp.tzinfo else stamp.tz_localize(googl.index.tz)
        bar = int(googl.index.searchsorted(stamp))
    due = [i for i in range(bar - 3, bar + 3) if faults.drop_due(i, googl.index[i])]
    assert due == [bar]


def test_fill_delay_reports_late(googl: pd.DataFrame) -> None:
    """Set while running: the account changes at once, the client hears of the fill
    only after the delay."""
    async def body() -> None:
        with serve(googl, fill="close") as gw:
            ib = await connect(gw.port)
            try:
                contract = await qualified(ib)
                gw.faults.fill_delay_seconds = 0.3
                trade = ib.placeOrder(contract, order("MKT", "BUY", 1, "late"))
                placed = time.monotonic()
                # Submitted was reported (the log keeps it, even if the late Filled came
                # already on a stalled machine)
                await until(lambda: "Submitted" in {e.status for e in trade.log}, "Submitted")
                assert len(gw.executions()) == 1  # filled at the gateway already
                assert gw.account().position == 1
                await until(trade.isDone, "the late report")
                assert time.monotonic() - placed >= 0.3
                assert trade.fills[0].execution.orderRef == "late"
            finally:
                ib.disconnect()
    run(body)


def test_reject_next_hits_one_order(googl: pd.DataFrame) -> None:
    async def body() -> None:
        with serve(googl, fill="close") as gw:
            ib = await connect(gw.port)
            try:
                contract = await qualified(ib)
                gw.faults.reject_next("risk desk says no")
                stop = order("MKT", "BUY", 1, "invalid")
                stop.orderType = "STP"
                invalid = ib.placeOrder(contract, stop)  # refused (387) without the fault
                rejected = ib.placeOrder(contract, order("MKT", "BUY", 1, "a"))
                accepted = ib.placeOrder(contract, order("MKT", "BUY", 1, "b"))
                await until(lambda: rejected.isDone() and accepted.isDone(), "both orders")
                assert invalid.log[-1].errorCode == 387
                assert rejected.orderStatus.status == "Cancelled"
                assert rejected.log[-1].errorCode == 201
                assert "risk desk says no" in rejected.log[-1].message
                assert accepted.orderStatus.status == "Filled"
            finally:
                ib.disconnect()
    run(body)


def test_stop_bars_leaves_the_client_stale(googl: pd.DataFrame) -> None:
    """Bars stop reaching clients (history too) while the replay clock, fills and the
    account go on; resume_bars lets them flow again."""
    async def body() -> None:
        with serve(googl, faults=Faults(stop_bars_after=1)) as gw:
            ib = await connect(gw.port)
            try:
                contract = await qualified(ib)
                bars = await ib.reqHistoricalDataAsync(contract, "", "1 M", "1 day", "TRADES",
                                                       True, keepUpToDate=True)
                count = len(bars)
                trade = ib.placeOrder(contract, order("MKT", "BUY", 1, "stale"))
                await until(lambda: trade.orderStatus.status == "Submitted", "Submitted")
                assert gw.advance(3) == 3
                await until(lambda: trade.isDone() and len(bars) == count + 1,
                            "the fill and the one bar let through")
                await asyncio.sleep(0.05)
                assert len(bars) == count + 1  # and no more
                assert pd.Timestamp(await ib.reqCurrentTimeAsync()) == googl.index[START + 3]
                again = await ib.reqHistoricalDataAsync(contract, "", "1 M", "1 day",
                                                        "TRADES", True)
                assert again[-1].date == googl.index[START + 1].date()
                gw.faults.resume_bars()
                gw.advance()
                await until(lambda: bars[-1].date == googl.index[START + 4].date(),
                            "bars after resume")
            finally:
                ib.disconnect()
    run(body)


@pytest.mark.parametrize(("data_lost", "restored"), [(False, 1102), (True, 1101)])
def test_lose_ib_link_withholds_bars_between_its_notices(data_lost: bool,
                                                          restored: int) -> None:
    faults = Faults()
    assert faults.ib_link_step() == (True, None)
    faults.lose_ib_link(3, data_lost=data_lost)
    steps = [faults.ib_link_step() for _ in range(5)]
    assert steps == [(False, 1100), (False, None), (False, None), (True, restored),
                     (True, None)]


def test_refused_client_id_fault(googl: pd.DataFrame) -> None:
    async def body() -> None:
        with serve(googl, faults=Faults(refuse_client_ids=[9])) as gw:
            ib = IB()
            errors = errors_of(ib)
            try:
                with pytest.raises(TimeoutError):
                    await connect(gw.port, 9, ib=ib, timeout=1)
                assert [code for _, code, _ in errors] == [326]
                gw.faults.allow_client_id(9)
                await connect(gw.port, 9, ib=ib)
                assert ib.isConnected()
            finally:
                ib.disconnect()
    run(body)


def test_paced_replay_ends_with_the_data_and_the_thread_cleans_up(googl: pd.DataFrame
                                                                  ) -> None:
    """bar_seconds > 0 publishes bars by itself and stops at the last bar; stop() ends
    the thread and closes every connection."""
    async def body() -> None:
        gateway = Gateway(googl, bar_seconds=0.01, start=len(googl) - 4)
        with GatewayThread(gateway) as gw:
            ib = await connect(gw.port)
            try:
                contract = await qualified(ib)
                bars = await ib.reqHistoricalDataAsync(contract, "", "1 W", "1 day", "TRADES",
                                                       True, keepUpToDate=True)
                await until(lambda: bars[-1].date == googl.index[-1].date(), "the last bar")
                await asyncio.sleep(0.05)
                assert gw.advance(5) == 0
                assert bars[-1].date == googl.index[-1].date()
            finally:
                ib.disconnect()
        assert not [t for t in threading.enumerate() if t.name.startswith("gateway-")]
    run(body)


def test_wait_for_client_holds_the_replay_until_a_client_connects(googl: pd.DataFrame
                                                                  ) -> None:
    async def body() -> None:
        with serve(googl, bar_seconds=0.01, wait_for_client=True) as gw:
            await asyncio.sleep(0.3)  # 30 bars' time
            assert gw.gateway.replay.latest == START
            ib = await connect(gw.port)
            try:
                await until(lambda: gw.gateway.replay.latest > START + 3, "the replay")
            finally:
                ib.disconnect()
    run(body)


def _first_line(process: subprocess.Popen[str], timeout: float) -> str:
    """The first stdout line of ``process``, waiting at most ``timeout`` s."""
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            pytest.fail(f"no output from the gateway command in {timeout} s")
    return process.stdout.readline()


def test_cli_serves_until_sigterm(googl: pd.DataFrame) -> None:
    command = [sys.executable, "-m", "tradinglib.cli", "gateway", "--data", "googl-daily",
               "--port", "0", "--bar-seconds", "0.05", "--start", str(START),
               "--slippage-bps", "5"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=env) as process:
        try:
            line = _first_line(process, 30)
            assert "gateway GOOGL on 127.0.0.1:" in line
            assert f"({googl.index[START]})" in line
            port = int(line.split("127.0.0.1:")[1].split()[0])

            async def body() -> None:
                ib = await connect(port)
                try:
                    contract = await qualified(ib)
                    bars = await ib.reqHistoricalDataAsync(contract, "", "1 M", "1 day",
                                                           "TRADES", True, keepUpToDate=True)
                    count = len(bars)
                    trade = ib.placeOrder(contract, order("MKT", "BUY", 2, "cli"))
                    await until(lambda: len(bars) > count and trade.isDone(), "paced bars")
                    fill = trade.fills[0].execution
                    bar = googl[googl.index.date == fill.time.astimezone(
                        googl.index.tz).date()].iloc[0]
                    assert fill.price == pytest.approx(bar.open * 1.0005)
                finally:
                    ib.disconnect()
            run(body)
        finally:
            process.send_signal(signal.SIGTERM)
            _, err = process.communicate(timeout=15)
        assert process.returncode == 0, err
        assert "of client 1: BUY 2 MKT ref 'cli'" in err  # one log line per order


def test_cli_refuses_a_remote_host_without_the_flag() -> None:
    done = subprocess.run([sys.executable, "-m", "tradinglib.cli", "gateway", "--data",
                           "googl-daily", "--host", "0.0.0.0", "--port", "0"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "not a loopback address" in done.stderr and "--allow-remote" in done.stderr
