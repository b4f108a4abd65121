"""The IB broker adapter and IB paper sessions: the real ib_async client over real
sockets to tradinglib's gateway simulator on 127.0.0.1 (every wait bounded)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tradinglib.broker.base import BrokerError, BrokerUnavailable, OrderRequest
from tradinglib.broker.ib import IBBroker, LiveTradingRefused
from tradinglib.exceptions import InputError
from tradinglib.gateway import Gateway, GatewayThread
from tradinglib.inference import LockedPolicy
from tradinglib.journal import JournalError, read_journal
from tradinglib.modelcard import ModelCard
from tradinglib.session import SessionConfig, run_session
from tradinglib.types import Action, Decision

Model = tuple[Path, ModelCard]


@pytest.fixture
def gateway(googl: pd.DataFrame) -> Iterator[GatewayThread]:
    """A gateway over GOOGL daily bars that moves only on advance()."""
    with GatewayThread(Gateway(googl, bar_seconds=0)) as g:
        yield g


@pytest.fixture
def broker(gateway: GatewayThread) -> Iterator[IBBroker]:
    b = IBBroker(port=gateway.port, client_id=3, ref_prefix="run-", timeout=3.0)
    b.connect()
    yield b
    b.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- paper only ------------------------------------------------------------------------

@pytest.mark.parametrize("port", [7496, 4001])
def test_live_ports_are_refused(port: int) -> None:
    with pytest.raises(LiveTradingRefused, match="paper accounts only"):
        IBBroker(port=port)


def test_a_live_account_is_refused(googl: pd.DataFrame) -> None:
    with GatewayThread(Gateway(googl, account="U7654321", bar_seconds=0)) as g:
        b = IBBroker(port=g.port, timeout=3.0)
        with pytest.raises(LiveTradingRefused, match="U7654321 are not paper accounts"):
            b.connect()
        assert not b.connected
        b.close()
        assert g.orders() == []


def test_nothing_listening_is_a_clear_retryable_error() -> None:
    port = _free_port()
    b = IBBroker(port=port, timeout=1.0)
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable, match=rf"127\.0\.0\.1:{port}.*tradinglib gateway"):
        b.connect()
    assert time.monotonic() - started < 5
    b.close()


def test_a_client_id_in_use_is_refused_with_326(gateway: GatewayThread,
                                                broker: IBBroker) -> None:
    second = IBBroker(port=gateway.port, client_id=broker.client_id, timeout=1.0)
    with pytest.raises(BrokerError, match=r"326.*choose another ib_client_id"):
        second.connect()
    second.close()
    assert broker.account().cash == 100_000.0  # the first connection is unharmed


# -- the Broker protocol -----------------------------------------------------------------

@pytest.mark.parametrize(("change", "word"), [({"bar_size": "7 fortnights"}, "bar size"),
                                              ({"history": "2 eons"}, "duration")])
def test_a_bad_bar_size_or_history_is_a_clear_stop(gateway: GatewayThread,
                                                   change: dict[str, str], word: str) -> None:
    b = IBBroker(port=gateway.port, client_id=6, timeout=3.0, **change)
    with pytest.raises(BrokerError, match=f"IB refused .*invalid {word}.*check ib_bar_size"):
        b.connect()
    assert not b.connected
    b.close()


def test_account_bars_and_server_time(gateway: GatewayThread, broker: IBBroker,
                                      googl: pd.DataFrame) -> None:
    account = broker.account()
    assert (account.cash, account.position) == (100_000.0, 0)
    bars = broker.bars("GOOGL")
    latest = gateway.account()  # the gateway's view agrees
    assert latest.cash == account.cash
    assert len(bars) > 49 and bars.index.tz is not None
    expected = googl.loc[:bars.index[-1]].tail(len(bars))
    pd.testing.assert_frame_equal(bars, expected[bars.columns], check_freq=False,
                                  check_names=False, check_index_type=False)
    assert broker.server_time() == bars.index[-1].tz_convert("UTC")
    with pytest.raises(BrokerError, match="subscribed 'GOOGL' only"):
        broker.bars("MSFT")


def test_market_order_fills_at_the_next_open_and_is_never_sent_twice(
        gateway: GatewayThread, broker: IBBroker, googl: pd.DataFrame) -> None:
    state = broker.place_order(OrderRequest("run-1", "GOOGL", 5))
    assert state.status == "submitted" and broker.fills_since(0) == []
    assert [o.ref for o in broker.open_orders()] == ["run-1"]
    gateway.advance()
    assert broker.wait_for_bar(3.0)
    (fill,) = broker.fills_since(0)
    nxt = googl.loc[googl.index > broker.bars("GOOGL").index[-2]].iloc[0]
    assert (fill.ref, fill.fill.quantity) == ("run-1", 5)
    assert fill.fill.price == pytest.approx(float(nxt["open"]))
    assert fill.fill.commission == pytest.approx(1.0)  # IBKR minimum
    assert broker.account().position == 5
    again = broker.place_order(OrderRequest("run-1", "GOOGL", 5))
    assert again.status == "filled" and "not sent again" in again.detail
    assert len(gateway.orders()) == 1 and len(gateway.executions()) == 1


def test_rejection_limit_order_and_cancel(gateway: GatewayThread, broker: IBBroker) -> None:
    rejected = broker.place_order(OrderRequest("run-big", "GOOGL", 9_000))
    assert rejected.status == "rejected" and "201" in rejected.detail
    working = broker.place_order(OrderRequest("run-lmt", "GOOGL", 5, "LMT", 1.0))
    assert working.status == "submitted"
    cancelled = broker.cancel_order("run-lmt")
    assert cancelled.status == "cancelled" and broker.open_orders() == []
    with pytest.raises(BrokerError, match="no order with ref 'run-none'"):
        broker.cancel_order("run-none")
    assert gateway.executions() == []
    assert [broker.order_state(r).status for r in ("run-big", "run-lmt")] == [
        "rejected", "cancelled"]
    with pytest.raises(BrokerError, match="no order with ref 'run-none'"):
        broker.order_state("run-none")


def test_reconnect_restores_fills_and_refs(gateway: GatewayThread, broker: IBBroker) -> None:
    broker.place_order(OrderRequest("run-1", "GOOGL", 5))
    gateway.faults.drop_after_messages(0)
    gateway.advance()  # the fill happens while the connection drops
    deadline = time.monotonic() + 3
    while broker.connected and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not broker.connected
    with pytest.raises(BrokerUnavailable, match="not connected"):
        broker.account()
    broker.connect()
    assert [f.ref for f in broker.fills_since(0)] == ["run-1"]
    assert broker.account().position == 5
    assert broker.place_order(OrderRequest("run-1", "GOOGL", 5)).status == "filled"
    assert len(gateway.orders()) == 1


def test_a_late_fill_that_sorts_first_is_still_listed_after_the_ones_seen() -> None:
    """fills_since(n) is read by count: a fill IB reports later must never move before
    one already listed, even when its time and execution id sort first."""
    from types import SimpleNamespace

    def fill(ref: str, exec_id: str) -> Any:
        when = pd.Timestamp("2026-11-25 15:00:00", tz="UTC")
        return SimpleNamespace(execution=SimpleNamespace(orderRef=ref, time=when,
                                                         execId=exec_id))

    fills = [fill("r-2", "0002.01"), fill("r-1", "0001.01"), fill("other", "0000.01")]
    b = IBBroker(ref_prefix="r-")
    b._ib = SimpleNamespace(trades=list, fills=lambda: fills)
    # read back at connect: in execution order
    assert [f.execution.execId for f in b._index().our_fills] == ["0001.01", "0002.01"]
    fills.append(fill("r-3", "0000.02"))  # arrives later, sorts first
    assert [f.execution.execId for f in b._index().our_fills] == [
        "0001.01", "0002.01", "0000.02"]


def _until(condition: Any, seconds: float = 3.0) -> bool:
    """Poll ``condition()`` every 10 ms for at most ``seconds``; its last value."""
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return bool(condition())


@pytest.mark.parametrize("data_lost", [False, True], ids=["1102", "1101"])
def test_tws_losing_ib_is_a_drop_until_restored(gateway: GatewayThread, googl: pd.DataFrame,
                                                data_lost: bool) -> None:
    """1100 with the socket up: every call raises BrokerUnavailable and connect() keeps
    refusing until TWS restores the link; after 1101 connect() subscribes the bars again
    and gets the bars it missed."""
    changes: list[bool] = []
    b = IBBroker(port=gateway.port, client_id=4, ref_prefix="run-", timeout=3.0,
                 on_connection=changes.append)
    try:
        b.connect()
        latest = b.bars("GOOGL").index[-1]
        gateway.faults.lose_ib_link(2, data_lost=data_lost)
        gateway.advance()  # 1100; the bar is withheld
        assert _until(lambda: not b.connected)
        assert gateway.clients() == [4]  # the socket stays up
        assert not b.wait_for_bar(1.0)
        for call in (lambda: b.place_order(OrderRequest("run-1", "GOOGL", 5)), b.connect):
            with pytest.raises(BrokerUnavailable, match=r"lost its connection to IB .*1100"):
                call()
        gateway.advance(2)  # one more withheld, then 1101/1102 with the next bar
        if data_lost:
            def bars_dropped() -> bool:
                try:
                    b.bars("GOOGL")
                except BrokerUnavailable as exc:
                    return "dropped the GOOGL bars" in str(exc)
                return False

            assert _until(bars_dropped)
            assert not b.connected
            b.connect()  # subscribes again
        assert _until(lambda: b.connected)
        bars = b.bars("GOOGL")
        newest = googl.index[googl.index.get_loc(latest) + 3]
        assert _until(lambda: b.latest_bar_time() == newest)
        if data_lost:  # the fresh history has no hole
            assert bars.index[-1] == newest and googl.loc[:newest].index[-4] == latest
            assert list(bars.index) == list(googl.loc[:newest].index[-len(bars):])
        else:  # the withheld bars never came
            assert latest in bars.index and googl.index[googl.index.get_loc(latest) + 1] \
                not in bars.index
        assert b.place_order(OrderRequest("run-1", "GOOGL", 5)).status == "submitted"
        assert changes == [True, False, True]
    finally:
        b.close()
    assert changes == [True, False, True, False]


# -- sessions --------------------------------------------------------------------------

def _alternate(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the model buy on even and sell on odd decisions (orders every cycle)."""
    calls = {"n": 0}

    def decide(self: LockedPolicy, obs: object) -> Decision:
        n = calls["n"]
        calls["n"] += 1
        return Decision(Action.BUY if n % 2 == 0 else Action.SELL, "model", 0.0)

    monkeypatch.setattr(LockedPolicy, "decide", decide)


def _session(model: Path, port: int, **changes: Any) -> SessionConfig:
    values: dict[str, Any] = {"model_path": model, "broker": "ib", "ib_port": port,
                              "cycle_seconds": 2.0, "session_minutes": 0.5,
                              "run_id": "s", "reconnect_timeout": 10.0}
    values.update(changes)
    return SessionConfig(**values)


def _check_journal_equals_gateway(journal_path: Path, gateway: GatewayThread,
                                  prefix: str = "s-") -> None:
    journal = read_journal(journal_path)
    executions = [e for e in gateway.executions() if e.order_ref.startswith(prefix)]
    assert sorted(journal["fills"]["ref"]) == sorted(e.order_ref for e in executions)
    refs = [o.order_ref for o in gateway.orders()]
    assert len(refs) == len(set(refs))  # no order sent twice


@pytest.mark.slow
def test_session_through_the_gateway(tiny_model: Model, tmp_path: Path, googl: pd.DataFrame,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    _alternate(monkeypatch)
    with GatewayThread(Gateway(googl, bar_seconds=0.05)) as g:
        result = run_session(_session(tiny_model[0], g.port, metrics_port=0), tmp_path / "s")
        _check_journal_equals_gateway(result.journal_path, g)
        assert g.account().position == 0 == result.final_position  # flattened at the end
    assert len(result.decisions) == 15
    assert len(result.trades) >= 10
    assert result.metrics["rejections"] == {} or all(
        k != "POSITION_VALUE" for k in result.metrics["rejections"])


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["drop", "reject", "delay", "stale", "ib_link"])
def test_session_survives_faults(fault: str, tiny_model: Model, tmp_path: Path,
                                 googl: pd.DataFrame, monkeypatch: pytest.MonkeyPatch) -> None:
    _alternate(monkeypatch)
    with GatewayThread(Gateway(googl, bar_seconds=0.05)) as g:
        f = g.faults
        if fault == "drop":
            f.drop_after_messages(300)
        elif fault == "reject":
            f.reject_next("fault injection: no")
        elif fault == "delay":
            f.fill_delay_seconds = 0.08
        elif fault == "ib_link":
            def lose_link() -> None:
                journal = tmp_path / "s" / "journal.sqlite"
                deadline = time.monotonic() + 30
                while _decisions(journal) < 4 and time.monotonic() < deadline:
                    time.sleep(0.01)
                f.lose_ib_link(10, data_lost=True)

            import threading
            threading.Thread(target=lose_link, daemon=True).start()
        else:
            f.stop_bars(after=5)

            def resume() -> None:  # once the session has held on stale data
                journal = tmp_path / "s" / "journal.sqlite"
                deadline = time.monotonic() + 60
                while not _stale_gap(journal) and time.monotonic() < deadline:
                    time.sleep(0.05)
                f.resume_bars()

            import threading
            threading.Thread(target=resume, daemon=True).start()
        result = run_session(_session(tiny_model[0], g.port), tmp_path / "s")
        _check_journal_equals_gateway(result.journal_path, g)
        assert g.account().position == result.final_position == 0
    journal = read_journal(result.journal_path)
    if fault == "drop":
        assert any("connection lost" in r for r in journal["gaps"]["reason"])
    if fault == "ib_link":
        assert any("1100" in r for r in journal["gaps"]["reason"])
    if fault == "reject":
        assert "rejected" in set(journal["orders"]["state"])
    if fault == "stale":
        assert any("stale data" in r for r in journal["gaps"]["reason"])
        assert any(x.startswith("stale data") for x in result.decisions["fallback"])


def test_a_busy_metrics_port_stops_the_session_and_frees_the_client_id(
        tiny_model: Model, tmp_path: Path, gateway: GatewayThread) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        config = _session(tiny_model[0], gateway.port, metrics_port=busy.getsockname()[1])
        with pytest.raises(InputError, match="metrics_port"):
            run_session(config, tmp_path / "s")
    assert _until(lambda: gateway.clients() == [])  # the broker was closed


_KILLABLE = """
import os, signal, sys
from tradinglib.inference import LockedPolicy
from tradinglib.session import SessionConfig, run_session
from tradinglib.types import Action, Decision

calls = {"n": 0}
def decide(self, obs):
    calls["n"] += 1
    if calls["n"] == 7 and sys.argv[4] == "new":  # die mid-session, at a known point
        os.kill(os.getpid(), signal.SIGKILL)
    return Decision(Action.BUY if calls["n"] % 2 else Action.SELL, "model", 0.0)
LockedPolicy.decide = decide
config = SessionConfig(model_path=sys.argv[1], broker="ib", ib_port=int(sys.argv[2]),
                       cycle_seconds=2.0, session_minutes=0.5, run_id="k")
run_session(config, sys.argv[3], resume=sys.argv[4] == "resume")
"""


def _stale_gap(path: Path) -> bool:
    """True once the journal at ``path`` holds a stale-data gap."""
    try:
        return any("stale data" in r for r in read_journal(path)["gaps"]["reason"])
    except (InputError, JournalError):
        return False


def _decisions(path: Path) -> int:
    """Decisions journaled so far at ``path`` (0 while the journal is being created)."""
    try:
        return len(read_journal(path)["decisions"])
    except (InputError, JournalError):
        return 0


@pytest.mark.slow
def test_a_killed_session_resumes_without_sending_an_order_twice(
        tiny_model: Model, tmp_path: Path, googl: pd.DataFrame) -> None:
    import signal
    import subprocess
    import sys

    script = tmp_path / "session.py"
    script.write_text(_KILLABLE)
    out = tmp_path / "run"
    with GatewayThread(Gateway(googl, bar_seconds=0.1)) as g:
        args = [sys.executable, str(script), str(tiny_model[0]), str(g.port), str(out)]
        first = subprocess.Popen([*args, "new"], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        try:
            assert first.wait(120) == -signal.SIGKILL  # killed itself at decision 7
        finally:
            first.kill()
        before = read_journal(out / "journal.sqlite")
        assert 6 <= len(before["decisions"]) < 15
        assert before["meta"].set_index("key").loc["status", "value"] == "running"
        second = subprocess.run([*args, "resume"], capture_output=True, text=True,
                                timeout=120)
        assert second.returncode == 0, second.stderr[-2000:]
        journal = read_journal(out / "journal.sqlite")
        _check_journal_equals_gateway(out / "journal.sqlite", g, prefix="k-")
        assert g.account().position == 0  # flattened by the resumed process
    cycles = list(journal["decisions"]["cycle"])
    assert cycles == sorted(set(cycles)) and cycles[0] == 0  # each cycle once, in order
    assert len(cycles) <= 15
    assert journal["meta"].set_index("key").loc["status", "value"] == "completed"
    assert "resuming session k" in second.stdout


@pytest.mark.slow
def test_paper_notebook_against_the_gateway_and_its_report(
        tiny_model: Model, tmp_path: Path, googl: pd.DataFrame) -> None:
    """papermill runs the paper notebook with broker 'ib' against the gateway, which
    drops the connection mid-session; then the report notebook renders the gap."""
    from tradinglib.runs import HTML_FILE, notebook_for, run_notebook

    runs_dir = tmp_path / "runs"
    with GatewayThread(Gateway(googl, bar_seconds=0.05)) as g:
        g.faults.drop_after_messages(200)
        params = {"model_path": str(tiny_model[0]), "broker": "ib", "ib_port": g.port,
                  "cycle_seconds": 2.0, "session_minutes": 1.0}
        paper = run_notebook(notebook_for("paper"), params, kind="paper", label="ib",
                             runs_dir=runs_dir, timeout=120)
        assert paper.ok, paper.error
        _check_journal_equals_gateway(paper.path / "journal.sqlite", g,
                                      prefix=f"{paper.run_id}-")
    gaps = read_journal(paper.path / "journal.sqlite")["gaps"]
    assert any("connection lost" in r for r in gaps["reason"])
    report = run_notebook(notebook_for("report"), {"run_dir": str(paper.path)},
                          kind="report", label="ib", runs_dir=runs_dir, timeout=120)
    assert report.ok, report.error
    html = (report.path / HTML_FILE).read_text()
    assert "connection lost" in html and html.count("<img") >= 3


@pytest.mark.slow
def test_metrics_are_served_during_the_session(tiny_model: Model, tmp_path: Path,
                                               googl: pd.DataFrame,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import threading
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    _alternate(monkeypatch)
    samples: dict[str, float] = {}
    with GatewayThread(Gateway(googl, bar_seconds=0.1)) as g:
        config = _session(tiny_model[0], g.port, metrics_port=0, session_minutes=1.0)
        done = threading.Event()
        runner = threading.Thread(
            target=lambda: (run_session(config, tmp_path / "s"), done.set()), daemon=True)
        runner.start()
        deadline = time.monotonic() + 30
        while not done.is_set() and time.monotonic() < deadline:
            try:
                meta = read_journal(tmp_path / "s" / "journal.sqlite")["meta"]
                url = dict(zip(meta["key"], meta["value"], strict=True)).get("metrics_url")
                if url:
                    with urllib.request.urlopen(url, timeout=2) as answer:
                        text = answer.read().decode()
                    samples = {s.name + str(sorted(s.labels.items())): s.value
                               for f in text_string_to_metric_families(text)
                               for s in f.samples}
                    if samples.get("ai_paper_fills_total[]", 0) >= 2:
                        break
            except (InputError, JournalError, OSError):
                pass
            time.sleep(0.1)
        runner.join(60)
    assert samples.get("ai_paper_connected[]") == 1.0
    assert samples.get("ai_paper_fills_total[]", 0) >= 2
    assert samples.get("ai_paper_decision_latency_seconds_count[]", 0) >= 2
    assert "ai_paper_daily_pnl[]" in samples and "ai_paper_position[]" in samples
