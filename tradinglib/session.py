"""A paper-trading session: every cycle the latest bar goes through the one decision path
to a broker, and everything is journaled as it happens.

Each cycle (DESIGN.md, "One decision path"):

1. Bring the account up to date: book the broker's new fills into the session's
   :class:`~tradinglib.portfolio.Portfolio`, let :meth:`RiskGuard.sync
   <tradinglib.risk.RiskGuard.sync>` adopt the broker's account where ours drifted, and
   mark the equity at the latest close.
2. Build the observation at the latest bar t of :meth:`Broker.bars
   <tradinglib.broker.base.Broker.bars>`: market features computed over every bar known
   so far (they are causal, so row t equals the backtest's row t, computed from the
   whole data set), account features from the portfolio, as
   :class:`~tradinglib.execution.Simulation` builds them.
3. ``policy.decide(obs)`` (HOLD, with the reason, when the model cannot answer), then
   :func:`~tradinglib.execution.check_decision` with the bar's close and time; an
   approved intent becomes a market order with ref ``f"{run_id}-{cycle}"``.
4. Journal the decision, the order and the account; log one line.
5. Wait for the next cycle (:meth:`Clock.advance <tradinglib.clock.Clock.advance>`).

Replay with the simulated broker: cycle i is bar b_i; its order fills at b_(i+1)'s open
(with the backtest's costs) and is booked, and the account marked at b_(i+1)'s close, at
the start of cycle i+1, which is exactly the backtest's step. After the last cycle the
clock moves one more bar to book the last order and mark the account; with
``flatten_at_end`` a market order for -position goes out there and fills on the bar
after. Those bars are reserved up front: when the data runs out, the session runs fewer
cycles. So a session over decision bars b_0 .. b_(n-1) without flattening takes the same
actions, fills and equity marks as ``run_backtest(bars, policy, start=b_0, end=b_n)``.
The guard is shown nothing between orders (no :meth:`RiskGuard.observe
<tradinglib.risk.RiskGuard.observe>`), as in the backtest, so its state matches too.

Interactive Brokers (``broker="ib"``, :mod:`tradinglib.broker.ib`): a
:class:`~tradinglib.clock.FeedClock` starts a cycle when a new bar arrives (at most
``cycle_seconds`` of waiting; a cycle without a new bar holds, "stale data", and is
journaled as a gap). A lost connection costs the cycle it happened in: no new order,
reconnect with backoff, book the executions made meanwhile, journal the gap, go on.
The account is not synced while an order is in flight. At the end working orders are
cancelled. ``stop_at`` ends the cycles early (then flatten). ``resume`` continues a
session whose process died, from its journal and the broker's executions.
"""

from __future__ import annotations

import functools
import gc
import json
import logging
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from datetime import date, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import pandas as pd

from tradinglib.broker.base import (
    Broker,
    BrokerError,
    BrokerFill,
    BrokerUnavailable,
    OrderRequest,
    OrderState,
)
from tradinglib.broker.sim import SimBroker
from tradinglib.clock import Clock, FeedClock, ReplayClock
from tradinglib.config import Settings
from tradinglib.costs import Costs
from tradinglib.data import load_bars, source_path
from tradinglib.exceptions import DataError, InputError, did_you_mean
from tradinglib.execution import check_decision
from tradinglib.features import account_features, build_observation, market_features
from tradinglib.inference import LockedPolicy
from tradinglib.journal import (
    DecisionRecord,
    Journal,
    JournalError,
    observation_sha256,
    read_journal,
    utc_text,
)
from tradinglib.logs import cycle_line, setup_logging, teardown_logging
from tradinglib.metrics import trading_metrics
from tradinglib.modelcard import ModelCard, read_card
from tradinglib.paths import resolve
from tradinglib.portfolio import Fill, Portfolio
from tradinglib.risk import MarketState, OrderIntent, RiskGuard, RiskLimits
from tradinglib.telemetry import SessionMetrics, serve_metrics
from tradinglib.types import Action, Decision, Observation

JOURNAL_FILE = "journal.sqlite"
"""The journal's file name inside the run folder."""

BROKERS = ("sim", "ib")
"""Brokers a session can use: ``"sim"``, the in-process simulated broker (replay), and
``"ib"``, an Interactive Brokers paper account (TWS, IB Gateway or ``tradinglib gateway``)."""

_RECONNECT_FIRST_DELAY_S = 0.25
_RECONNECT_MAX_DELAY_S = 8.0
_FILL_POLL_S = 0.02

log = logging.getLogger(__name__)

T = TypeVar("T")


class SessionPolicy(Protocol):
    """What a session needs of a policy: :class:`~tradinglib.inference.LockedPolicy`,
    or :class:`~tradinglib.remote.RemotePolicy` for the inference service."""

    @property
    def sha256(self) -> str:
        """sha256 of the model zip."""
        ...

    @property
    def backend(self) -> str:
        """How it infers (e.g. ``"numpy"``, ``"sb3"``, ``"remote"``)."""
        ...

    @property
    def card(self) -> ModelCard | None:
        """The model card, if known."""
        ...

    def decide(self, obs: object) -> Decision:
        """The action for ``obs``; HOLD with the reason when no answer can be had."""
        ...


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) \
        and math.isfinite(value)


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """What a session runs: the model, the data, the broker, the pace and the limits.

    Attributes:
        model_path: the model zip (its card beside it); relative paths start at the
            project root.
        data: a built-in data set name (e.g. ``"googl-daily"``) or a bars file path.
        symbol: the instrument traded.
        broker: ``"sim"`` (in-process simulated broker over ``data``) or ``"ib"``
            (Interactive Brokers paper account at ``ib_host:ib_port``; bars come from IB,
            ``data`` is not read).
        cycle_seconds: seconds per cycle (in replay, one cycle is one bar; with ``"ib"``
            a cycle starts on each new bar, and waits at most this long for one).
        session_minutes: session length; cycles = session_minutes x 60 / cycle_seconds
            (rounded down, at least 1).
        trade_quantity: shares per order.
        max_daily_loss, max_position_value: risk limits, USD.
        replay: play historical bars (required by ``"sim"``).
        speed: replay pace: one cycle per ``cycle_seconds / speed`` wall seconds; 0 is
            as fast as possible.
        start: first replay bar (the first at or after this date/time; naive times are
            in the data's timezone); None starts at the model card's held-out range.
        cash: starting cash, USD.
        slippage_bps: slippage on every fill, basis points.
        flatten_at_end: close the position with a market order after the last cycle.
        run_id: prefix of order refs (``f"{run_id}-{cycle}"``) and the journal's run id;
            None uses the output folder's name.
        ib_host, ib_port, ib_client_id: where TWS / IB Gateway listens (``"ib"``); the
            live ports 7496 and 4001 are refused.
        ib_bar_size, ib_history: IB bar size (``"1 day"``, ``"1 min"``, ...) and the
            history asked for at connect (``"2 Y"``, ``"2 D"``, ...) for feature warm-up.
        stop_at: ISO time with a UTC offset: no cycle starts after it, and the position
            is flattened then (``run paper --at-open`` sets the close minus a margin).
        metrics_port: serve Prometheus metrics on 127.0.0.1 at this port (0: a free
            port; None: none).
        inference_url: decide through the inference service at this URL
            (:class:`~tradinglib.remote.RemotePolicy`) instead of loading the model
            in-process; None loads ``model_path``.
        reconnect_timeout: seconds to keep reconnecting after a dropped connection
            before the session fails.

    Raises:
        InputError: a field of the wrong type or out of range; the message names it.
    """

    model_path: str | Path
    data: str | Path = "googl-daily"
    symbol: str = "GOOGL"
    broker: str = "sim"
    cycle_seconds: float = 30.0
    session_minutes: float = 30.0
    trade_quantity: int = 5
    max_daily_loss: float = 500.0
    max_position_value: float = 10_000.0
    replay: bool = True
    speed: float = 0.0
    start: str | date | None = None
    cash: float = 100_000.0
    slippage_bps: float = 0.0
    flatten_at_end: bool = True
    run_id: str | None = None
    ib_host: str = "127.0.0.1"
    ib_port: int = 4002
    ib_client_id: int = 1
    ib_bar_size: str = "1 day"
    ib_history: str = "2 Y"
    stop_at: str | None = None
    metrics_port: int | None = None
    inference_url: str | None = None
    reconnect_timeout: float = 60.0

    def __post_init__(self) -> None:
        for name in ("model_path", "data"):
            value = getattr(self, name)
            if not isinstance(value, str | Path) or not str(value).strip():
                raise InputError(f"SessionConfig.{name} must be a non-empty path or name, "
                                 f"got {value!r}")
        if not isinstance(self.symbol, str) or not self.symbol.strip():
            raise InputError(f"SessionConfig.symbol must be a ticker such as 'GOOGL', "
                             f"got {self.symbol!r}")
        if self.broker not in BROKERS:
            raise InputError(f"SessionConfig.broker must be one of {', '.join(BROKERS)}, "
                             f"got {self.broker!r}")
        for name, minimum, unit in (
                ("cycle_seconds", None, "seconds"), ("session_minutes", None, "minutes"),
                ("max_daily_loss", None, "USD"), ("max_position_value", None, "USD"),
                ("cash", None, "USD"), ("speed", 0, "cycles per cycle_seconds"),
                ("slippage_bps", 0, "basis points"),
                ("reconnect_timeout", None, "seconds")):
            value = getattr(self, name)
            if not _is_number(value) or (value < 0 if minimum == 0 else value <= 0):
                bound = ">= 0" if minimum == 0 else "> 0"
                raise InputError(f"SessionConfig.{name} must be a finite number {bound} "
                                 f"({unit}), got {value!r}")
        if isinstance(self.trade_quantity, bool) or not isinstance(self.trade_quantity, int) \
                or self.trade_quantity <= 0:
            raise InputError(f"SessionConfig.trade_quantity must be an integer > 0 (shares), "
                             f"got {self.trade_quantity!r}")
        for name in ("replay", "flatten_at_end"):
            if not isinstance(getattr(self, name), bool):
                raise InputError(f"SessionConfig.{name} must be True or False, "
                                 f"got {getattr(self, name)!r}")
        if self.broker == "sim" and not self.replay:
            raise InputError("SessionConfig.replay must be True with broker='sim': the "
                             "simulated broker replays historical bars")
        if self.cycles < 1:
            raise InputError(
                f"SessionConfig.session_minutes={self.session_minutes} is shorter than one "
                f"cycle of {self.cycle_seconds} s; make it at least {self.cycle_seconds / 60:g}")
        if self.start is not None:
            _parse_start(self.start)
        for name, low in (("ib_port", 1), ("ib_client_id", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) \
                    or not low <= value <= 2**31 - 1:
                raise InputError(f"SessionConfig.{name} must be an integer >= {low}, "
                                 f"got {value!r}")
        if self.metrics_port is not None and (
                isinstance(self.metrics_port, bool) or not isinstance(self.metrics_port, int)
                or not 0 <= self.metrics_port <= 65535):
            raise InputError(f"SessionConfig.metrics_port must be a port 0..65535 (0: a free "
                             f"port) or None, got {self.metrics_port!r}")
        if self.stop_at is not None:
            self.deadline()
        if self.run_id is not None and (not isinstance(self.run_id, str) or not self.run_id
                                        or any(c.isspace() for c in self.run_id)):
            raise InputError(f"SessionConfig.run_id must be a non-empty string without "
                             f"spaces (or None for the output folder's name), "
                             f"got {self.run_id!r}")

    @classmethod
    def from_settings(cls, settings: Settings, **params: Any) -> SessionConfig:
        """A config from :class:`~tradinglib.config.Settings` (the seed's environment
        variables: cycle, session length, quantity, limits), overridden by ``params``
        (e.g. notebook parameters), which must include ``model_path``.

        Raises:
            InputError: a name that is not a field (with the closest valid name), or a
                value :class:`SessionConfig` rejects.
        """
        valid = [f.name for f in fields(cls)]
        for name in params:
            if name not in valid:
                raise InputError(f"unknown session parameter {name!r}"
                                 f"{did_you_mean(name, valid)}; valid names: "
                                 f"{', '.join(valid)}")
        values: dict[str, Any] = {
            "cycle_seconds": settings.trading_cycle_seconds,
            "session_minutes": settings.trading_session_minutes,
            "trade_quantity": settings.trade_quantity,
            "max_daily_loss": settings.max_daily_loss,
            "max_position_value": settings.max_position_value,
            **params,
        }
        if "model_path" not in values:
            raise InputError("SessionConfig.model_path is required: the model zip to trade")
        return cls(**values)

    @property
    def cycles(self) -> int:
        """Planned cycles: ``session_minutes * 60 / cycle_seconds``, rounded down."""
        return int(self.session_minutes * 60 / self.cycle_seconds + 1e-9)

    def deadline(self) -> pd.Timestamp | None:
        """``stop_at`` as a UTC Timestamp, or None.

        Raises:
            InputError: ``stop_at`` is not a time with a UTC offset.
        """
        if self.stop_at is None:
            return None
        try:
            stamp = pd.Timestamp(self.stop_at)
        except (ValueError, TypeError):
            stamp = None
        if stamp is None or stamp.tzinfo is None:
            raise InputError(f"SessionConfig.stop_at must be an ISO time with a UTC offset, "
                             f"e.g. '2026-11-27T17:55:00+00:00', got {self.stop_at!r}")
        return stamp.tz_convert("UTC")

    def risk_limits(self) -> RiskLimits:
        """The :class:`~tradinglib.risk.RiskLimits` of this session (other limits default)."""
        return RiskLimits(max_daily_loss=self.max_daily_loss,
                          max_position_value=self.max_position_value,
                          trade_quantity=self.trade_quantity)

    def costs(self) -> Costs:
        """The :class:`~tradinglib.costs.Costs` of this session (the backtest's defaults
        with this slippage)."""
        return Costs(slippage_bps=self.slippage_bps)

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready dict (paths and dates as text)."""
        return {k: v if v is None or isinstance(v, bool | int | float) else str(v)
                for k, v in asdict(self).items()}


def _parse_start(value: object) -> pd.Timestamp:
    """``value`` as a Timestamp, or InputError naming SessionConfig.start."""
    if not isinstance(value, str | date):
        raise InputError(f"SessionConfig.start must be a date/time such as '2017-01-03' "
                         f"(or None for the model's held-out start), got {value!r}")
    try:
        return pd.Timestamp(value)
    except ValueError as exc:
        raise InputError(f"SessionConfig.start {value!r} is not a date/time, e.g. "
                         f"'2017-01-03' or '2017-01-03 09:30': {exc}") from None


@dataclass(frozen=True)
class SessionResult:
    """What a session did.

    Attributes:
        run_id: the run id (order refs are ``f"{run_id}-{cycle}"``).
        equity: account equity in USD, indexed by bar time: at the first decision bar,
            then marked at the close of every later bar the session saw (the bar after
            the last decision, and the flattening bar).
        trades: one row per fill, as :class:`~tradinglib.backtest.BacktestResult`:
            time, side, quantity (unsigned), price, commission, realized_pnl (USD).
        decisions: one row per cycle, as the backtest's: time (the bar), action,
            verdict (risk reason code, "" for HOLD), fallback, position (shares after
            the decision's order filled).
        risk_events: time, kind, detail of every risk event.
        metrics: the backtest's figures (see :func:`~tradinglib.backtest.run_backtest`)
            over this session's equity, trades and decisions.
        journal_path: the session's SQLite journal.
        first_bar, last_bar: times of the first and last decision bar.
        final_position: shares held at the end.
    """

    run_id: str
    equity: pd.Series
    trades: pd.DataFrame
    decisions: pd.DataFrame
    risk_events: pd.DataFrame
    metrics: dict[str, Any]
    journal_path: Path
    first_bar: pd.Timestamp
    last_bar: pd.Timestamp
    final_position: int

    def summary(self) -> dict[str, Any]:
        """Headline figures, JSON-ready: run id, cycles, bar range, trades, final equity
        and return, final position, rejections, fallbacks, journal path."""
        m = self.metrics
        return {
            "run_id": self.run_id,
            "cycles": len(self.decisions),
            "first_bar": self.first_bar.isoformat(),
            "last_bar": self.last_bar.isoformat(),
            "trades": m["trades"],
            "final_equity": m["final_equity"],
            "total_return": m["total_return"],
            "final_position": self.final_position,
            "rejections": m["rejections"],
            "hold_fallbacks": m["hold_fallbacks"],
            "journal": str(self.journal_path),
        }


def run_session(config: SessionConfig, output_dir: str | Path, *,
                resume: bool = False) -> SessionResult:
    """Run a paper session as ``config`` says; journal and log into ``output_dir``.

    With ``resume`` (broker ``"ib"`` only), continue the session whose journal is in
    ``output_dir`` after its process died: the portfolio is rebuilt from the journal,
    the broker's executions since are booked, cycles go on from the next number, and an
    order whose ref IB already has is never sent again.

    Writes ``output_dir``/journal.sqlite (see :mod:`tradinglib.journal`) and
    session.log.jsonl (see :mod:`tradinglib.logs`) and prints one line per cycle. On any
    error, or an interrupt, the journal's ``status`` says ``failed: ...`` and the error
    is raised again; the journal keeps every cycle completed before it.

    Raises:
        ModelError: the model or its card is missing or does not match.
        DataError: the data cannot be read, or has too few bars from ``start``.
        InputError: no held-out range in the model card and no ``start``.
        JournalError: ``output_dir`` holds a journal already (without ``resume``), or
            none (with it).
    """
    out = Path(output_dir)
    run_id = config.run_id or out.name
    if resume and config.broker == "sim":
        raise InputError("resume needs broker='ib': a replay with the sim broker keeps no "
                         "state outside the process; run it again in a new folder")
    out.mkdir(parents=True, exist_ok=True)
    setup_logging(out)
    try:
        with Journal(out / JOURNAL_FILE, resume=resume) as journal:
            previous = read_journal(journal.path) if resume else None
            if previous is not None:
                _check_resumable(previous, run_id)
                log.warning("resuming session %s after cycle %d", run_id,
                            len(previous["decisions"]) - 1)
            else:
                journal.set_meta("run_id", run_id)
                journal.set_meta("config", config.to_dict())
                journal.set_meta("started", utc_text(pd.Timestamp.now(tz="UTC")))
            journal.set_meta("status", "running")
            try:
                result = _run(config, run_id, journal, previous)
            except BaseException as exc:
                journal.set_meta("status", f"failed: {type(exc).__name__}: {exc}")
                journal.set_meta("finished", utc_text(pd.Timestamp.now(tz="UTC")))
                log.error("session %s failed: %s: %s", run_id, type(exc).__name__, exc)
                raise
            journal.set_meta("status", "completed")
            journal.set_meta("finished", utc_text(pd.Timestamp.now(tz="UTC")))
            journal.set_meta("summary", result.summary())
            return result
    finally:
        teardown_logging()


def _check_resumable(previous: dict[str, pd.DataFrame], run_id: str) -> None:
    """Raise JournalError unless ``previous`` is a journal of run ``run_id``."""
    meta = dict(zip(previous["meta"]["key"], previous["meta"]["value"], strict=True))
    if meta.get("run_id") != run_id:
        raise JournalError(f"the journal belongs to run {meta.get('run_id')!r}, not "
                           f"{run_id!r}; resume with the same run_id")
    if "start_account" not in meta:
        raise JournalError("the journal has no start_account: the session died before "
                           "its first cycle; start a new session instead")


def _run(config: SessionConfig, run_id: str, journal: Journal,
         previous: dict[str, pd.DataFrame] | None = None) -> SessionResult:
    """Load the model, connect the broker, serve metrics, run the cycles."""
    deadline = config.deadline()
    if deadline is not None and pd.Timestamp.now(tz="UTC") >= deadline:
        raise InputError(f"SessionConfig.stop_at {config.stop_at} has passed: there is no "
                         f"time left to trade; give a later stop_at (or None)")
    model_path = resolve(config.model_path)
    policy = _load_policy(config, model_path)
    metrics = SessionMetrics()
    if config.broker == "sim":
        broker, clock, cycles, first = _sim_broker(config, policy, journal)
    else:
        broker, clock, cycles, first = _ib_broker(config, run_id, metrics)
    journal.set_meta("model", {"path": str(model_path), "sha256": policy.sha256,
                               "backend": policy.backend})
    journal.set_meta("data", {"source": source_path(config.data) if config.broker == "sim" else
                              f"ib://{config.ib_host}:{config.ib_port}/{config.symbol}",
                              "first_bar": utc_text(first), "cycles": cycles})
    log.info("session %s: %d cycles of %s from %s, model %s (sha256 %s), %s broker, speed %g",
             run_id, cycles, config.symbol, first, model_path.name, policy.sha256[:12],
             config.broker, config.speed)
    server = None
    # what exists now (modules, the model, the history) lives as long as the session:
    # keep it out of the garbage collector's full passes, which would stall cycles
    gc.freeze()
    try:  # from here on the broker is closed whatever happens (a busy metrics port too)
        if config.metrics_port is not None:
            server = serve_metrics(metrics, port=config.metrics_port)
            journal.set_meta("metrics_url", server.url)
            log.info("metrics: %s", server.url)
        session = _Session(config, run_id, policy, broker, clock, journal, metrics)
        if previous is not None:
            session.restore(previous)
        return session.run(cycles)
    finally:
        gc.unfreeze()
        broker.close()
        if server is not None:
            server.close()


def _load_policy(config: SessionConfig, model_path: Path) -> SessionPolicy:
    """The in-process model, or the inference service at ``config.inference_url``."""
    if config.inference_url is None:
        return LockedPolicy.load(model_path)
    from tradinglib.config import load_settings
    from tradinglib.remote import RemotePolicy

    token = load_settings().ai_service_token  # AI_SERVICE_TOKEN, if the service needs one
    remote: SessionPolicy = RemotePolicy(config.inference_url, card=read_card(model_path),
                                         token=token)
    return remote


def _sim_broker(config: SessionConfig, policy: SessionPolicy, journal: Journal
                ) -> tuple[Broker, Clock, int, pd.Timestamp]:
    """The simulated broker over ``config.data``, its replay clock, the cycles."""
    bars = load_bars(source_path(config.data))
    times, cycles = _replay_times(config, policy, bars)
    clock = ReplayClock(times, cycle_seconds=config.cycle_seconds, speed=config.speed)
    broker = SimBroker(bars, clock, costs=config.costs(), cash=config.cash,
                       symbol=config.symbol)
    broker.connect()
    return broker, clock, cycles, pd.Timestamp(times[0])


def _ib_broker(config: SessionConfig, run_id: str, metrics: SessionMetrics
               ) -> tuple[Broker, Clock, int, pd.Timestamp]:
    """The IB paper account, connected; a clock following its bars; the cycles."""
    from tradinglib.broker.ib import IBBroker

    broker = IBBroker(host=config.ib_host, port=config.ib_port,
                      client_id=config.ib_client_id, symbol=config.symbol,
                      ref_prefix=f"{run_id}-", bar_size=config.ib_bar_size,
                      history=config.ib_history, on_connection=metrics.set_connected)
    broker.connect()
    try:
        clock = FeedClock(broker, wait_seconds=config.cycle_seconds)
        first = pd.Timestamp(broker.bars(config.symbol).index[-1])
    except BaseException:
        broker.close()
        raise
    return broker, clock, config.cycles, first


def _replay_times(config: SessionConfig, policy: SessionPolicy, bars: pd.DataFrame
                  ) -> tuple[pd.DatetimeIndex, int]:
    """The bar times the replay clock plays, and the number of decision cycles.

    After the last decision bar come one bar to fill and mark its order and, with
    ``flatten_at_end``, one to fill the flattening order; cycles are cut to fit.
    """
    index = pd.DatetimeIndex(bars.index)
    if config.start is not None:
        start = _parse_start(config.start)
    elif policy.card is not None and policy.card.holdout_data is not None:
        start = pd.Timestamp(policy.card.holdout_data.start)
    else:
        raise InputError("the model card has no held-out range to replay; set "
                         "SessionConfig.start, e.g. '2017-01-03'")
    start = start.tz_localize(index.tz) if start.tzinfo is None else start.tz_convert(index.tz)
    first = int(index.searchsorted(start, side="left"))
    earliest = market_features(bars).index[0]
    if first == len(index):
        raise DataError(f"replay start {start} is after the last bar ({index[-1]}); "
                        "choose an earlier start")
    if index[first] < earliest:
        raise DataError(f"replay start {index[first]} lacks history: the features need "
                        f"bars before it; start at {earliest} or later")
    reserve = 1 + int(config.flatten_at_end)
    cycles = min(config.cycles, len(index) - first - reserve)
    if cycles < 1:
        raise DataError(f"only {len(index) - first} bar(s) from {index[first]}; a session "
                        f"needs {reserve + 1} (a decision, its fill"
                        f"{', the flattening fill' if config.flatten_at_end else ''})")
    if cycles < config.cycles:
        log.warning("the data ends at %s: %d cycles instead of %d", index[-1], cycles,
                    config.cycles)
    return index[first:first + cycles + reserve], cycles


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows of ``frame`` as dicts (column -> value)."""
    return [{str(k): v for k, v in row.items()} for row in frame.to_dict("records")]


@dataclass(slots=True)
class _Mark:
    """The account marked at a bar's close."""

    time: pd.Timestamp
    close: float
    equity: float


class _Session:
    """The cycle loop's state: portfolio, guard, what happened so far."""

    def __init__(self, config: SessionConfig, run_id: str, policy: SessionPolicy,
                 broker: Broker, clock: Clock, journal: Journal,
                 metrics: SessionMetrics) -> None:
        self.config, self.run_id = config, run_id
        self.policy, self.broker, self.clock, self.journal = policy, broker, clock, journal
        self.metrics = metrics
        self.deadline = config.deadline()
        self.limits = config.risk_limits()
        self.guard = RiskGuard(self.limits, config.costs())
        account = broker.account()
        self.start_account: dict[str, Any] = {
            "cash": account.cash, "position": account.position,
            "avg_cost": account.avg_cost or 0.0}
        self.portfolio = Portfolio(**self.start_account)
        self.first_cycle = 0
        self.orders: dict[str, tuple[OrderRequest, OrderState]] = {}
        self.in_flight: set[str] = set()  # refs of orders sent and not final yet
        self.filled: Counter[str] = Counter()
        self.fills_seen = 0
        self.events_seen = 0
        self.marks: list[_Mark] = []
        self.times: list[pd.Timestamp] = []
        self.actions: list[Action] = []
        self.verdicts: list[str] = []
        self.fallbacks: list[str] = []
        self.positions: list[int] = []  # after each decision's order filled
        self.trades: list[dict[str, Any]] = []
        self.closing: list[bool] = []  # per fill: did it reduce the position?

    def run(self, cycles: int) -> SessionResult:
        """``cycles`` cycles (fewer when ``stop_at`` comes first), then book the last
        order, cancel working orders, flatten if asked; the result.

        A lost connection (:class:`BrokerUnavailable`) costs the cycle it happened in:
        no new order goes out, the broker is connected again and reconciled, and the
        next cycle goes on (see :meth:`_recover`).
        """
        if self.first_cycle == 0:
            self.journal.set_meta("start_account", self.start_account)
        for cycle in range(self.first_cycle, cycles):
            if self._past_deadline():
                break
            # a connection lost while waiting costs no cycle: reconnected, decide on
            if self.times and not self._guarded(self.clock.advance, True):
                break
            self._guarded(functools.partial(self._cycle, cycle, cycles), None)
        if self._guarded(self.clock.advance, True):
            self._guarded(self._update, None)
        if self.config.broker != "sim":
            self._guarded(lambda: self._await_fills(self.config.cycle_seconds), None)
        self._guarded(self._cancel_working, None)
        if self.config.flatten_at_end and self.portfolio.position:
            self._guarded(self._flatten, None)
        return self._result()

    def restore(self, journal: dict[str, pd.DataFrame]) -> None:
        """Continue from a dead process's journal: the starting account, the fills
        (re-applied in order), decisions, account marks and the orders' last states."""
        meta = dict(zip(journal["meta"]["key"], journal["meta"]["value"], strict=True))
        start = json.loads(meta["start_account"])
        self.start_account = start
        self.portfolio = Portfolio(**start)
        for f in _records(journal["fills"]):
            self._apply(BrokerFill(f["ref"], Fill(f["time"], int(f["quantity"]),
                                                  float(f["price"]), float(f["commission"]))))
        closes = self.broker.bars(self.config.symbol)["close"]
        tz = pd.DatetimeIndex(closes.index).tz  # the journal's UTC times in the bars' zone
        decisions = journal["decisions"]
        self.times = [pd.Timestamp(t).tz_convert(tz) for t in decisions["bar_time"]]
        self.actions = [Action[a] for a in decisions["action"]]
        self.verdicts = list(decisions["verdict"])
        self.fallbacks = list(decisions["fallback"])
        self.first_cycle = int(decisions["cycle"].max()) + 1 if len(decisions) else 0
        account = journal["account"]
        self.positions = [int(x) for x in account["position"].iloc[1:len(decisions) + 1]]
        for a in _records(account):
            at = int(closes.index.searchsorted(a["time"], side="right")) - 1
            self.marks.append(_Mark(a["time"].tz_convert(tz), float(closes.iloc[max(at, 0)]),
                                    float(a["equity"])))
        for o in _records(journal["orders"]):
            limit = None if pd.isna(o["limit_price"]) else float(o["limit_price"])
            request = OrderRequest(o["ref"], self.config.symbol, int(o["quantity"]), o["type"],
                                   limit)
            self._track(request, OrderState(o["ref"], o["broker_id"], o["state"],
                                            int(o["filled"]), o["detail"]))
        for ref, quantity in zip(journal["fills"]["ref"], journal["fills"]["quantity"],
                                 strict=True):
            self.filled[ref] += abs(int(quantity))
        log.info("restored from the journal: %d decisions, %d fills, position %d, cash %s",
                 len(decisions), self.fills_seen, self.portfolio.position,
                 f"{self.portfolio.cash:,.2f}")

    def _past_deadline(self) -> bool:
        """True (and logged) once the wall clock has reached ``stop_at``."""
        if self.deadline is None or pd.Timestamp.now(tz="UTC") < self.deadline:
            return False
        log.info("stop_at %s reached: no more cycles", self.deadline.isoformat())
        return True

    def _guarded(self, step: Callable[[], T], lost: T) -> T:
        """``step()``; if the broker connection is lost meanwhile, recover and return
        ``lost``."""
        try:
            return step()
        except BrokerUnavailable as exc:
            self._recover(exc)
            return lost

    def _recover(self, exc: BrokerUnavailable) -> None:
        """Reconnect with exponential backoff (at most ``reconnect_timeout`` seconds),
        journal the gap, then reconcile: book the fills made meanwhile and adopt the
        broker's account.

        Raises:
            BrokerUnavailable: not connected again within ``reconnect_timeout``.
        """
        began = pd.Timestamp.now(tz="UTC")
        log.warning("broker connection lost (%s): no new orders until reconnected", exc,
                    extra={"event": "connection", "connected": False})
        self.metrics.set_connected(False)
        give_up = time.monotonic() + self.config.reconnect_timeout
        delay = _RECONNECT_FIRST_DELAY_S
        while True:
            try:
                self.broker.connect()
                break
            except BrokerUnavailable as again:
                if time.monotonic() + delay > give_up:
                    self.journal.gap(began, pd.Timestamp.now(tz="UTC"),
                                     f"connection lost: {exc}; not reconnected: {again}")
                    raise BrokerUnavailable(
                        f"the broker connection was lost ({exc}) and could not be restored "
                        f"within {self.config.reconnect_timeout:g} s: {again}") from None
                time.sleep(delay)
                delay = min(2 * delay, _RECONNECT_MAX_DELAY_S)
        ended = pd.Timestamp.now(tz="UTC")
        self.journal.gap(began, ended, f"connection lost: {exc}")
        self.metrics.set_connected(True)
        booked = self._reconcile(self.clock.now())
        log.info("reconnected after %.2f s; reconciled: %d fill(s) booked, %d order(s) "
                 "working", (ended - began).total_seconds(), booked,
                 len(self.broker.open_orders()),
                 extra={"event": "connection", "connected": True})

    # -- steps --------------------------------------------------------------------------

    def _reconcile(self, now: datetime) -> int:
        """Book the broker's new fills, let the guard adopt the broker's account where
        ours drifted; the number of fills booked."""
        fills = self.broker.fills_since(self.fills_seen)
        for fill in fills:
            self._book(fill, now)
        for ref in list(self.in_flight):  # ended at the broker since (a fill ends in _book)
            try:
                state = self.broker.order_state(ref)
            except BrokerError:  # its answer was lost and it never arrived: keep waiting
                continue
            if state.final and state.status != "filled":
                request = self.orders[ref][0]
                self._track(request, state)
                self.journal.order(now, request, state)
                log.warning("order %s %s by the broker: %s", ref, state.status, state.detail,
                            extra={"event": "order", "ref": ref, "status": state.status,
                                   "detail": state.detail})
        # while an order is in flight the broker's position may already include a fill
        # whose report has not arrived: adopting it now would count that fill twice
        if not self.in_flight:
            self.guard.sync(self.broker.account(), self.portfolio, now)
        self._journal_events()
        return len(fills)

    def _track(self, request: OrderRequest, state: OrderState) -> None:
        """Record ``state`` as the latest of ``request``'s order."""
        self.orders[request.ref] = (request, state)
        if state.final:
            self.in_flight.discard(request.ref)
        else:
            self.in_flight.add(request.ref)

    def _await_fills(self, seconds: float) -> None:
        """Book fills until no order is in flight, for at most ``seconds`` (live brokers
        may report a fill a moment after the bar it happened on)."""
        give_up = time.monotonic() + seconds
        while self.in_flight and time.monotonic() < give_up:
            time.sleep(_FILL_POLL_S)
            self._reconcile(self.clock.now())

    def _update(self) -> pd.DataFrame:
        """Book new fills, sync with the broker, mark and journal the account; return the
        bars known now."""
        self._reconcile(self.clock.now())
        bars = self.broker.bars(self.config.symbol)
        t, close = pd.Timestamp(bars.index[-1]), float(bars["close"].iloc[-1])
        p = self.portfolio
        if len(self.positions) < len(self.actions):
            self.positions.append(p.position)
        self.marks.append(_Mark(t, close, p.equity(close)))
        day_pnl = p.day_pnl(close) if p.day == t.date() else 0.0
        self.journal.account(t, cash=p.cash, position=p.position, equity=p.equity(close),
                             day_pnl=day_pnl)
        self.metrics.set_account(daily_pnl=day_pnl, position=p.position, cash=p.cash,
                                 equity=p.equity(close))
        return bars

    def _cycle(self, cycle: int, cycles: int) -> None:
        """One decision: observe, decide, check, send, journal, log."""
        started = time.monotonic()
        bars = self._update()
        t, close = pd.Timestamp(bars.index[-1]), float(bars["close"].iloc[-1])
        obs = self._observation(bars, t, close)
        if self.times and t <= self.times[-1]:  # no new bar since the last decision
            decision = Decision(Action.HOLD, f"stale data: no bar after {t}", 0.0)
            self.journal.gap(self.times[-1], self.clock.now(), decision.reason)
        else:
            decision = self.policy.decide(obs)
        intent, verdict = check_decision(decision.action, self.portfolio, self.guard,
                                         MarketState(close, t))
        self._journal_events()
        fallback = decision.reason if decision.is_fallback else ""
        code = verdict.reason.value if verdict is not None else ""
        self.times.append(t)
        self.actions.append(decision.action)
        self.verdicts.append(code)
        self.fallbacks.append(fallback)
        now = self.clock.now()
        self.journal.decision(DecisionRecord(
            cycle=cycle, time=now, bar_time=t, obs_sha256=observation_sha256(obs),
            action=decision.action.name, verdict=code,
            reason=verdict.detail if verdict is not None else "",
            latency_ms=decision.latency * 1000.0, fallback=fallback))
        if verdict is not None and not verdict.approved:
            self.metrics.record_rejection(code)
        state = None
        if intent is not None and verdict is not None and verdict.approved:
            state = self._send(OrderRequest(f"{self.run_id}-{cycle}", self.config.symbol,
                                            intent.quantity), now)
        self.metrics.record_decision(time.monotonic() - started, decision.action,
                                     fallback or None)
        p = self.portfolio
        log.info(cycle_line(cycle, cycles, t, decision.action.name, self.limits.trade_quantity,
                            close, code, p.position, p.equity(close), fallback),
                 extra={"cycle": cycle, "bar_time": t.isoformat(),
                        "action": decision.action.name, "verdict": code,
                        "fallback": fallback, "latency_ms": decision.latency * 1000.0,
                        "position": p.position, "equity": p.equity(close),
                        "order": state.status if state is not None else None})

    def _observation(self, bars: pd.DataFrame, t: pd.Timestamp, close: float) -> Observation:
        """The 26 floats at bar ``t``, built as :class:`Simulation` builds them."""
        features = market_features(bars)
        if features.index[-1] != t:
            raise DataError(f"no market features at {t}: the bars before it are too few")
        p = self.portfolio
        account = account_features(
            position=p.position, price=close, avg_cost=p.avg_cost,
            day_realized_pnl=p.day_realized_pnl if p.day == t.date() else 0.0,
            cash=p.cash, max_position_value=self.limits.max_position_value,
            max_daily_loss=self.limits.max_daily_loss)
        return build_observation(features.iloc[-1].to_numpy(), account)

    def _send(self, request: OrderRequest, now: datetime) -> OrderState:
        """Place ``request``, journal its state, warn if the broker rejected it."""
        # known before it is sent: a fill arriving after a lost answer still finds it
        self._track(request, OrderState(request.ref, "", "submitted",
                                        detail="sent, no answer yet"))
        state = self.broker.place_order(request)
        self._track(request, state)
        self.journal.order(now, request, state)
        self.metrics.record_order(state.status)
        log.info("order %s: %+d %s %s -> %s", request.ref, request.quantity, request.symbol,
                 request.order_type, state.status,
                 extra={"event": "order", "ref": request.ref, "quantity": request.quantity,
                        "status": state.status, "detail": state.detail})
        if state.status == "rejected":
            log.warning("order %s (%+d) rejected by the broker: %s", request.ref,
                        request.quantity, state.detail)
        return state

    def _apply(self, fill: BrokerFill) -> None:
        """Apply ``fill`` to the portfolio and record it as a trade."""
        p, f = self.portfolio, fill.fill
        before, realized = p.position, p.realized_pnl
        p.apply(f)
        self.fills_seen += 1
        self.trades.append({"time": f.time, "side": f.side, "quantity": abs(f.quantity),
                            "price": f.price, "commission": f.commission,
                            "realized_pnl": p.realized_pnl - realized})
        self.closing.append(abs(p.position) < abs(before))

    def _book(self, fill: BrokerFill, now: datetime) -> None:
        """Apply ``fill``; journal, count and log it (and its order once complete)."""
        f = fill.fill
        self._apply(fill)
        self.journal.fill(fill)
        self.metrics.record_fill()
        log.info("fill %s: %+d at %.4f, commission %.2f", fill.ref, f.quantity, f.price,
                 f.commission, extra={"event": "fill", "ref": fill.ref,
                                      "quantity": f.quantity, "price": f.price,
                                      "commission": f.commission, "fill_time": str(f.time)})
        self.filled[fill.ref] += abs(f.quantity)
        known = self.orders.get(fill.ref)
        if known is not None and self.filled[fill.ref] >= abs(known[0].quantity):
            request, state = known
            done = replace(state, status="filled", filled=self.filled[fill.ref])
            self._track(request, done)
            self.journal.order(now, request, done)

    def _flatten(self) -> None:
        """Close the position with a market order through the guard; book its fill."""
        bars = self.broker.bars(self.config.symbol)
        t, close = pd.Timestamp(bars.index[-1]), float(bars["close"].iloc[-1])
        now, position = self.clock.now(), self.portfolio.position
        request = OrderRequest(f"{self.run_id}-flatten", self.config.symbol, -position)
        verdict = self.guard.submit(OrderIntent(-position), self.portfolio,
                                    MarketState(close, t), t)
        self._journal_events()
        if not verdict.approved:
            detail = f"risk guard: {verdict.reason.value}: {verdict.detail}"
            self.journal.order(now, request, OrderState(request.ref, "", "rejected",
                                                        detail=detail))
            log.warning("flattening %+d not sent: %s", -position, detail)
            return
        log.info("flattening: %+d %s at market", -position, self.config.symbol)
        self._send(request, now)
        if self.clock.advance():
            if self.config.broker != "sim":
                self._await_fills(self.config.cycle_seconds)
            self._update()
        if self.portfolio.position:
            log.warning("flattening order not filled by the end: position %d remains",
                        self.portfolio.position)

    def _journal_events(self) -> None:
        """Journal the guard's events not journaled yet."""
        for event in self.guard.events[self.events_seen:]:
            self.journal.risk_event(event)
            log.info("risk event %s: %s", event.kind, event.detail,
                     extra={"event": "risk", "kind": event.kind, "detail": event.detail})
        self.events_seen = len(self.guard.events)

    def _cancel_working(self) -> None:
        """Cancel this session's orders still working at the broker; journal each."""
        for state in self.broker.open_orders():
            done = self.broker.cancel_order(state.ref)
            known = self.orders.get(state.ref)
            if known is not None:
                self._track(known[0], done)
                self.journal.order(self.clock.now(), known[0], done)
            log.info("order %s %s at the session end", state.ref, done.status,
                     extra={"event": "order", "ref": state.ref, "status": done.status})

    # -- result -------------------------------------------------------------------------

    def _result(self) -> SessionResult:
        marks = self.marks
        equity = pd.Series([m.equity for m in marks],
                           index=pd.DatetimeIndex([m.time for m in marks], name="time"),
                           name="equity")
        n = len(self.actions)
        # a decision whose order had no later bar to fill on keeps the final position
        positions = self.positions + [self.portfolio.position] * (n - len(self.positions))
        decisions = pd.DataFrame({
            "time": pd.DatetimeIndex(self.times),
            "action": pd.Categorical.from_codes(np.array(self.actions, dtype=np.int8),
                                                categories=pd.Index([a.name for a in Action])),
            "verdict": np.array(self.verdicts, dtype=object),
            "fallback": np.array(self.fallbacks, dtype=object),
            "position": np.array(positions, dtype=np.int64),
        })
        trades = pd.DataFrame(self.trades, columns=["time", "side", "quantity", "price",
                                                    "commission", "realized_pnl"])
        events = pd.DataFrame([(e.time, e.kind, e.detail) for e in self.guard.events],
                              columns=["time", "kind", "detail"])
        metrics = trading_metrics(equity, trades, decisions,
                                  np.array(self.closing, dtype=bool),
                                  marks[-1].close / marks[0].close - 1.0)
        log.info("session %s done: %d cycles, %d fills, final equity %s (%+.2f%%), "
                 "position %d", self.run_id, n, len(trades), f"{equity.iloc[-1]:,.2f}",
                 100 * metrics["total_return"], self.portfolio.position)
        return SessionResult(self.run_id, equity, trades, decisions, events, metrics,
                             self.journal.path, self.times[0], self.times[-1],
                             self.portfolio.position)
