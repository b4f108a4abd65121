"""The session journal: one SQLite file per run, written as things happen, read by the report.

Tables (times are ISO-8601 UTC text, money USD, quantities signed shares):

- ``decisions``: one row per cycle: ``cycle``, ``time`` (the clock), ``bar_time``,
  ``obs_sha256`` (sha256 of the observation's float32 bytes), ``action`` (HOLD, BUY,
  SELL), ``verdict`` (the risk reason code, "" for HOLD), ``reason`` (the verdict's
  detail), ``latency_ms`` (inference), ``fallback`` (why HOLD replaced the model's
  answer, "" when it did not).
- ``orders``: one row per order state the session learns of (placed, filled,
  cancelled, rejected): ``ref``, ``time``, ``quantity``, ``type``, ``limit_price``,
  ``state``, ``filled`` (unsigned shares), ``broker_id``, ``detail``.
- ``fills``: ``ref``, ``time``, ``quantity``, ``price``, ``commission``.
- ``account``: ``time``, ``cash``, ``position``, ``equity``, ``day_pnl``.
- ``risk_events``: ``time``, ``kind``, ``detail``.
- ``gaps``: ``start``, ``end``, ``reason``: stretches without a broker connection.
- ``meta``: ``key``, ``value`` (text; dicts and lists as JSON).

Durability: WAL mode and one transaction per write, so a crashed or killed process
loses at most the write in flight (a power cut may lose the last few: ``synchronous``
is NORMAL); :func:`read_journal` reads a journal whose writer died. :meth:`Journal.close`
checkpoints and leaves one self-contained file.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import astuple, dataclass, fields
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from tradinglib.broker.base import BrokerFill, OrderRequest, OrderState
from tradinglib.exceptions import InputError, StopError
from tradinglib.risk import RiskEvent

TABLES: dict[str, str] = {
    "decisions": "cycle INTEGER PRIMARY KEY, time TEXT NOT NULL, bar_time TEXT NOT NULL, "
                 "obs_sha256 TEXT NOT NULL, action TEXT NOT NULL, verdict TEXT NOT NULL, "
                 "reason TEXT NOT NULL, latency_ms REAL NOT NULL, fallback TEXT NOT NULL",
    "orders": "id INTEGER PRIMARY KEY, ref TEXT NOT NULL, time TEXT NOT NULL, "
              "quantity INTEGER NOT NULL, type TEXT NOT NULL, limit_price REAL, "
              "state TEXT NOT NULL, filled INTEGER NOT NULL, broker_id TEXT NOT NULL, "
              "detail TEXT NOT NULL",
    "fills": "id INTEGER PRIMARY KEY, ref TEXT NOT NULL, time TEXT NOT NULL, "
             "quantity INTEGER NOT NULL, price REAL NOT NULL, commission REAL NOT NULL",
    "account": "id INTEGER PRIMARY KEY, time TEXT NOT NULL, cash REAL NOT NULL, "
               "position INTEGER NOT NULL, equity REAL NOT NULL, day_pnl REAL NOT NULL",
    "risk_events": "id INTEGER PRIMARY KEY, time TEXT NOT NULL, kind TEXT NOT NULL, "
                   "detail TEXT NOT NULL",
    "gaps": 'id INTEGER PRIMARY KEY, start TEXT NOT NULL, "end" TEXT NOT NULL, '
            "reason TEXT NOT NULL",
    "meta": "key TEXT PRIMARY KEY, value TEXT NOT NULL",
}
"""Column definitions of every journal table (``id`` keeps the order of writing)."""

_TIME_COLUMNS = {"decisions": ("time", "bar_time"), "orders": ("time",), "fills": ("time",),
                 "account": ("time",), "risk_events": ("time",), "gaps": ("start", "end")}


class JournalError(StopError):
    """A journal cannot be created, written or read as it stands."""


def observation_sha256(obs: npt.ArrayLike) -> str:
    """Hex sha256 of ``obs`` as float32 bytes (C order): the journal's ``obs_sha256``."""
    return hashlib.sha256(np.ascontiguousarray(obs, dtype=np.float32).tobytes()).hexdigest()


def utc_text(t: datetime) -> str:
    """``t`` as ISO-8601 text in UTC, e.g. ``2017-03-02T05:00:00+00:00``.

    Raises:
        InputError: ``t`` is naive (no timezone).
    """
    ts = pd.Timestamp(t)
    if ts.tzinfo is None:
        raise InputError(f"journal times must be tz-aware, got naive {t!r}")
    return ts.tz_convert("UTC").isoformat()


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """One cycle's decision, as journaled (see the ``decisions`` table).

    Attributes:
        cycle: 0-based cycle number.
        time: the clock's time of the decision.
        bar_time: the decision bar's time.
        obs_sha256: :func:`observation_sha256` of the observation.
        action: ``"HOLD"``, ``"BUY"`` or ``"SELL"``.
        verdict: the risk reason code (e.g. ``"APPROVED"``), "" for HOLD.
        reason: the verdict's detail, "" when there is none.
        latency_ms: inference wall time, milliseconds.
        fallback: why HOLD replaced the model's answer, "" when it did not.
    """

    cycle: int
    time: datetime
    bar_time: datetime
    obs_sha256: str
    action: str
    verdict: str
    reason: str
    latency_ms: float
    fallback: str


class Journal:
    """Writer of a new journal file at ``path`` (the session's ``journal.sqlite``).

    Each method writes one row in its own transaction. Use as a context manager or
    call :meth:`close`.

    Raises:
        JournalError: ``path`` exists already (a journal is written once) or cannot be
            created.
    """

    def __init__(self, path: str | Path, *, resume: bool = False) -> None:
        self.path = Path(path)
        if self.path.exists() and not resume:
            raise JournalError(f"{self.path} exists already; a journal is written once, "
                               "use a new run folder (or resume the run it belongs to)")
        if resume and not self.path.is_file():
            raise JournalError(f"no journal at {self.path} to resume; start a new session")
        try:
            self._conn: sqlite3.Connection | None = sqlite3.connect(
                self.path, isolation_level=None)  # autocommit: each statement commits
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            if not resume:
                for table, columns in TABLES.items():
                    self._conn.execute(f"CREATE TABLE {table} ({columns})")
        except sqlite3.Error as exc:
            raise JournalError(f"cannot {'open' if resume else 'create'} the journal "
                               f"{self.path}: {exc}") from None

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def decision(self, record: DecisionRecord) -> None:
        """Write one cycle's decision."""
        values = [utc_text(v) if isinstance(v, datetime) else v for v in astuple(record)]
        self._write("decisions", [f.name for f in fields(record)], values)

    def order(self, time: datetime, request: OrderRequest, state: OrderState) -> None:
        """Write an order's state as learned at ``time``."""
        self._write("orders", ["ref", "time", "quantity", "type", "limit_price", "state",
                               "filled", "broker_id", "detail"],
                    [request.ref, utc_text(time), request.quantity, request.order_type,
                     request.limit_price, state.status, state.filled, state.broker_id,
                     state.detail])

    def fill(self, fill: BrokerFill) -> None:
        """Write a fill (its own execution time)."""
        f = fill.fill
        self._write("fills", ["ref", "time", "quantity", "price", "commission"],
                    [fill.ref, utc_text(f.time), f.quantity, f.price, f.commission])

    def account(self, time: datetime, *, cash: float, position: int, equity: float,
                day_pnl: float) -> None:
        """Write the account at ``time``: cash, equity and day P&L in USD, position in
        shares."""
        self._write("account", ["time", "cash", "position", "equity", "day_pnl"],
                    [utc_text(time), cash, position, equity, day_pnl])

    def risk_event(self, event: RiskEvent) -> None:
        """Write a risk event (halt, resume, sync, daily loss reached)."""
        self._write("risk_events", ["time", "kind", "detail"],
                    [utc_text(event.time), str(event.kind), event.detail])

    def gap(self, start: datetime, end: datetime, reason: str) -> None:
        """Write a stretch from ``start`` to ``end`` without a broker connection."""
        self._write("gaps", ["start", "end", "reason"],
                    [utc_text(start), utc_text(end), reason])

    def set_meta(self, key: str, value: object) -> None:
        """Set ``key`` to ``value`` (str as is, anything else as JSON), replacing it."""
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        self._write("meta", ["key", "value"], [key, text], replace=True)

    def close(self) -> None:
        """Checkpoint into one self-contained file and close (no-op when closed)."""
        if self._conn is None:
            return
        try:
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._conn.execute("PRAGMA journal_mode=DELETE")
        finally:
            self._conn.close()
            self._conn = None

    def _write(self, table: str, columns: list[str], values: list[Any], *,
               replace: bool = False) -> None:
        if self._conn is None:
            raise JournalError(f"the journal {self.path} is closed; nothing more is written")
        verb = "INSERT OR REPLACE" if replace else "INSERT"
        names = ", ".join(f'"{c}"' for c in columns)
        marks = ", ".join("?" * len(columns))
        try:
            self._conn.execute(f"{verb} INTO {table} ({names}) VALUES ({marks})", values)
        except sqlite3.Error as exc:
            raise JournalError(f"cannot write to the journal {self.path} ({table}): "
                               f"{exc}") from None


def read_journal(path: str | Path) -> dict[str, pd.DataFrame]:
    """Every table of the journal at ``path`` as a DataFrame, by table name.

    Opens read-only and never changes the file; works while the writer runs and after it
    crashed (rows written before the crash are all there). Time columns are tz-aware UTC
    timestamps; rows are in the order written (``id``, where a table has one, is dropped).

    Raises:
        InputError: no file at ``path``.
        JournalError: the file is not a readable journal.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no journal at {path}; a session writes <run folder>/journal.sqlite")
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise JournalError(f"cannot open the journal {path}: {exc}") from None
    try:
        tables = {table: _read_table(conn, table) for table in TABLES}
    except (sqlite3.Error, pd.errors.DatabaseError) as exc:
        raise JournalError(f"{path} is not a readable journal: {exc}") from None
    finally:
        conn.close()
    return tables


def _read_table(conn: sqlite3.Connection, table: str) -> pd.DataFrame:
    order = "cycle" if table == "decisions" else "key" if table == "meta" else "id"
    frame = pd.read_sql_query(f"SELECT * FROM {table} ORDER BY {order}", conn)
    frame = frame.drop(columns="id", errors="ignore")
    for column in _TIME_COLUMNS.get(table, ()):
        frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
    return frame
