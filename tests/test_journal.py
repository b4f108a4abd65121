"""The journal: every table round-trips, times in UTC, durable across a killed writer."""

from __future__ import annotations

import hashlib
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tradinglib.broker import BrokerFill, OrderRequest, OrderState
from tradinglib.exceptions import InputError
from tradinglib.journal import (
    TABLES,
    DecisionRecord,
    Journal,
    JournalError,
    observation_sha256,
    read_journal,
)
from tradinglib.portfolio import Fill
from tradinglib.risk import EventKind, RiskEvent

NY = "America/New_York"
T0 = pd.Timestamp("2017-03-02 16:00", tz=NY)


def decision(cycle: int, **changes: object) -> DecisionRecord:
    values: dict[str, object] = {
        "cycle": cycle, "time": T0 + pd.Timedelta(days=cycle),
        "bar_time": T0 + pd.Timedelta(days=cycle), "obs_sha256": "ab" * 32, "action": "BUY",
        "verdict": "APPROVED", "reason": "", "latency_ms": 0.25, "fallback": "", **changes}
    return DecisionRecord(**values)  # type: ignore[arg-type]


def test_every_table_round_trips_with_utc_times(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    request = OrderRequest("run-0", "GOOGL", 5, "LMT", 845.5)
    with Journal(path) as journal:
        journal.decision(decision(0))
        journal.decision(decision(1, action="HOLD", verdict="", latency_ms=1000.0,
                                  fallback="timeout: model busy for over 1.0s"))
        journal.order(T0, request, OrderState("run-0", "7", "submitted"))
        journal.order(T0 + pd.Timedelta(days=1), request,
                      OrderState("run-0", "7", "filled", filled=5))
        journal.fill(BrokerFill("run-0", Fill(T0 + pd.Timedelta(days=1), 5, 845.2, 1.0)))
        journal.account(T0, cash=95_000.5, position=5, equity=99_226.5, day_pnl=-12.25)
        journal.risk_event(RiskEvent(T0, EventKind.CASH_SYNC, "adopted the broker's"))
        journal.gap(T0, T0 + pd.Timedelta(minutes=3), "connection lost")
        journal.set_meta("run_id", "run")
        journal.set_meta("config", {"cash": 100_000.0})
        journal.set_meta("run_id", "run-2")  # replaces
    tables = read_journal(path)
    assert set(tables) == set(TABLES)
    d = tables["decisions"]
    assert list(d["cycle"]) == [0, 1] and list(d["action"]) == ["BUY", "HOLD"]
    assert d["bar_time"].iloc[0] == T0 and str(d["bar_time"].dt.tz) == "UTC"
    assert d["fallback"].iloc[1].startswith("timeout") and d["latency_ms"].iloc[1] == 1000.0
    o = tables["orders"]
    assert list(o["state"]) == ["submitted", "filled"] and list(o["filled"]) == [0, 5]
    assert (o["type"].iloc[0], o["limit_price"].iloc[0], o["broker_id"].iloc[0]) == (
        "LMT", 845.5, "7")
    f = tables["fills"].iloc[0]
    assert (f["ref"], f["quantity"], f["price"], f["commission"]) == ("run-0", 5, 845.2, 1.0)
    a = tables["account"].iloc[0]
    assert (a["time"], a["cash"], a["position"], a["day_pnl"]) == (T0, 95_000.5, 5, -12.25)
    assert tables["risk_events"].iloc[0]["kind"] == "CASH_SYNC"
    assert tables["gaps"].iloc[0]["end"] - tables["gaps"].iloc[0]["start"] == pd.Timedelta(
        minutes=3)
    assert dict(zip(tables["meta"]["key"], tables["meta"]["value"], strict=True)) == {
        "run_id": "run-2", "config": '{"cash": 100000.0}'}


def test_closing_leaves_one_self_contained_file(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    with Journal(path) as journal:
        journal.decision(decision(0))
        assert path.with_name("journal.sqlite-wal").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["journal.sqlite"]
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    conn.close()
    with pytest.raises(JournalError, match="is closed"):
        journal.decision(decision(1))
    journal.close()  # a second close does nothing


WRITER = textwrap.dedent("""
    import os, signal, sys
    import pandas as pd
    from tradinglib.journal import DecisionRecord, Journal
    journal = Journal(sys.argv[1])
    t = pd.Timestamp("2017-03-02", tz="UTC")
    for cycle in range(int(sys.argv[2])):
        journal.decision(DecisionRecord(cycle, t, t, "0" * 64, "HOLD", "", "", 0.1, ""))
        journal.account(t, cash=1.0, position=0, equity=1.0, day_pnl=0.0)
    os.kill(os.getpid(), signal.SIGKILL)  # dies with the connection open, mid-session
""")


def test_a_killed_writer_leaves_a_readable_journal(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    done = subprocess.run([sys.executable, "-c", WRITER, str(path), "7"], check=False,
                          capture_output=True, timeout=60)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert path.with_name("journal.sqlite-wal").stat().st_size > 0  # never checkpointed
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    tables = read_journal(path)
    assert list(tables["decisions"]["cycle"]) == list(range(7))
    assert len(tables["account"]) == 7
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest  # read-only


def test_journal_is_written_once(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    Journal(path).close()
    with pytest.raises(JournalError, match="exists already"):
        Journal(path)
    with pytest.raises(JournalError, match="cannot create"):
        Journal(tmp_path / "missing-folder" / "journal.sqlite")


def test_naive_times_are_refused(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite") as journal, pytest.raises(InputError,
                                                                   match="tz-aware"):
        journal.account(pd.Timestamp("2017-03-02"), cash=1.0, position=0, equity=1.0,
                        day_pnl=0.0)


def test_reading_what_is_not_a_journal_says_so(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no journal at"):
        read_journal(tmp_path / "none.sqlite")
    text = tmp_path / "notes.sqlite"
    text.write_text("not a database\n" * 100)
    with pytest.raises(JournalError, match="not a readable journal"):
        read_journal(text)


def test_observation_hash_is_of_the_float32_bytes() -> None:
    obs = np.linspace(-1, 1, 26)
    expected = hashlib.sha256(obs.astype(np.float32).tobytes()).hexdigest()
    assert observation_sha256(obs) == expected
    assert observation_sha256(obs.astype(np.float32)) == expected
    assert observation_sha256(obs + 1e-3) != expected
