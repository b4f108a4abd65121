"""Exchange sessions: when a market is open, its next open, and when trading must stop.

Calendars are pandas_market_calendars' (holidays, early closes and daylight-saving
changes are in its rules; nothing is downloaded). Every function that depends on the time
takes ``now`` (tz-aware) as a parameter, so it can be asked about any date; session
times are UTC :class:`pandas.Timestamp` values, shown in the exchange's timezone.

``tradinglib run paper --at-open`` uses :func:`plan_at_open`: run now (inside a
session, until :func:`session_deadline`), wait for today's open, or skip and name the
next open. A replay session (the simulated broker replaying history) ignores market hours.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

import pandas as pd

from tradinglib.exceptions import InputError, did_you_mean

__all__ = [
    "DEFAULT_CALENDAR",
    "DEFAULT_FLATTEN_MARGIN",
    "DEFAULT_WAIT_LIMIT",
    "AtOpenPlan",
    "MarketSession",
    "PlanAction",
    "calendar_names",
    "next_open",
    "parse_time",
    "plan_at_open",
    "session_at",
    "session_deadline",
    "wait_until",
]

DEFAULT_CALENDAR: Final = "XNYS"
"""The New York Stock Exchange (pandas_market_calendars' name)."""
DEFAULT_WAIT_LIMIT: Final = pd.Timedelta(hours=18)
"""The longest wait for today's open: a job started at midnight still waits for 09:30."""
DEFAULT_FLATTEN_MARGIN: Final = pd.Timedelta(minutes=5)
"""How long before the close a session stops trading and flattens."""
_HORIZON_DAYS: Final = 370  # next_open searches this far ahead (any exchange opens yearly)
_WAIT_STEP_S: Final = 60.0  # wait_until re-reads the clock at least this often


@dataclass(frozen=True, slots=True)
class MarketSession:
    """One regular trading session of an exchange.

    Attributes:
        calendar: the pandas_market_calendars name, e.g. ``"XNYS"``.
        open, close: session open and close, tz-aware UTC.
        early_close: True when the exchange closes earlier than on a regular day
            (e.g. the day after Thanksgiving at 13:00 New York time).
        timezone: the exchange's IANA timezone, for display (``America/New_York``).
    """

    calendar: str
    open: pd.Timestamp
    close: pd.Timestamp
    early_close: bool
    timezone: str

    def local(self, t: pd.Timestamp) -> pd.Timestamp:
        """``t`` in the exchange's timezone."""
        return t.tz_convert(self.timezone)

    def describe(self) -> str:
        """``2026-11-27 09:30 America/New_York (early close 13:00)``: the open, local time."""
        text = f"{self.local(self.open):%Y-%m-%d %H:%M} {self.timezone}"
        return text + (f" (early close {self.local(self.close):%H:%M})"
                       if self.early_close else "")


def calendar_names() -> list[str]:
    """Every calendar name pandas_market_calendars knows (``XNYS``, ``NYSE``, ``LSE``...)."""
    import pandas_market_calendars as mcal

    return list(mcal.get_calendar_names())


def _calendar(name: str) -> Any:
    """The pandas_market_calendars calendar ``name`` (any letter case).

    Raises:
        InputError: an unknown name, with the closest known one.
    """
    names = calendar_names()
    by_lower = {n.lower(): n for n in names}
    if not isinstance(name, str) or name.lower() not in by_lower:
        raise InputError(f"unknown exchange calendar {name!r}{did_you_mean(str(name), names)}; "
                         f"use a pandas_market_calendars name such as XNYS (New York Stock "
                         f"Exchange), XNAS or LSE (all {len(names)}: "
                         "pandas_market_calendars.get_calendar_names())")
    return _load(by_lower[name.lower()])


@functools.cache
def _load(name: str) -> Any:
    """Calendar ``name``, made once per process: its holiday table takes ~0.1 s to build."""
    import pandas_market_calendars as mcal

    return mcal.get_calendar(name)


def parse_time(value: object, what: str = "time") -> pd.Timestamp:
    """``value`` (ISO text, datetime or Timestamp) as a tz-aware UTC Timestamp.

    Raises:
        InputError: not a time, or a time without a UTC offset (ambiguous).
    """
    try:
        t = pd.Timestamp(value)  # type: ignore[arg-type]
        unparsable = pd.isna(t)
    except (ValueError, TypeError):
        unparsable = True
    if unparsable:
        raise InputError(f"{what} {value!r} is not a time; use ISO 8601 with a UTC offset, "
                         "e.g. 2026-11-27T09:00-05:00 or 2026-11-27T14:00Z")
    if t.tzinfo is None:
        raise InputError(f"{what} {value!r} has no UTC offset, so it is ambiguous; add one, "
                         "e.g. 2026-11-27T09:00-05:00 (New York) or 2026-11-27T14:00Z (UTC)")
    return t.tz_convert("UTC")


def _sessions(cal: Any, now: pd.Timestamp, days_ahead: int) -> list[MarketSession]:
    """The sessions of ``cal`` on exchange dates from 3 days before ``now`` to
    ``days_ahead`` days after it, in order."""
    tz = str(cal.tz)
    today = now.tz_convert(tz).date()
    table = cal.schedule(start_date=today - dt.timedelta(days=3),
                         end_date=today + dt.timedelta(days=days_ahead))
    early = set(cal.early_closes(table).index)
    return [MarketSession(cal.name, pd.Timestamp(row.market_open).tz_convert("UTC"),
                          pd.Timestamp(row.market_close).tz_convert("UTC"), day in early, tz)
            for day, row in zip(table.index, table.itertuples(), strict=True)]


def session_at(now: pd.Timestamp | dt.datetime, calendar: str = DEFAULT_CALENDAR
               ) -> MarketSession | None:
    """The regular session of ``calendar`` that contains ``now`` (open <= now < close).

    Returns:
        The session, or None when the exchange is closed (before the open, after the
        close, a weekend or a holiday).

    Raises:
        InputError: an unknown calendar or a ``now`` without timezone.
    """
    t = parse_time(now, "now")
    return next((s for s in _sessions(_calendar(calendar), t, 2) if s.open <= t < s.close),
                None)


def next_open(now: pd.Timestamp | dt.datetime, calendar: str = DEFAULT_CALENDAR
              ) -> MarketSession:
    """The first session of ``calendar`` whose open is at or after ``now`` (holidays and
    weekends skipped; a session already open at ``now`` is not it).

    Raises:
        InputError: an unknown calendar, a ``now`` without timezone, or no session within
            a year of ``now`` (beyond the calendar's rules).
    """
    t = parse_time(now, "now")
    found = next((s for s in _sessions(_calendar(calendar), t, _HORIZON_DAYS) if s.open >= t),
                 None)
    if found is None:
        raise InputError(f"the {calendar} calendar has no session within {_HORIZON_DAYS} days "
                         f"after {t.isoformat()}; use a date the calendar covers")
    return found


def session_deadline(session: MarketSession, flatten_margin: pd.Timedelta
                     = DEFAULT_FLATTEN_MARGIN) -> pd.Timestamp:
    """When a paper session in ``session`` must stop trading and flatten: the close minus
    ``flatten_margin`` (UTC; early closes included).

    Raises:
        InputError: a negative margin, or one as long as the session itself.
    """
    margin = pd.Timedelta(flatten_margin)
    if margin < pd.Timedelta(0) or margin >= session.close - session.open:
        raise InputError(f"flatten margin {margin} must be >= 0 and shorter than the session "
                         f"({session.close - session.open}); e.g. 5 minutes")
    return session.close - margin


def wait_until(t: pd.Timestamp, *, now: Callable[[], pd.Timestamp],
               sleep: Callable[[float], None] = time.sleep,
               max_wait: pd.Timedelta = DEFAULT_WAIT_LIMIT) -> bool:
    """Sleep until the clock ``now()`` reaches ``t``, re-reading it at least every minute.

    The total requested sleep never exceeds ``max_wait``, whatever the clock does.
    Ctrl-C (KeyboardInterrupt from ``sleep``) passes through.

    Returns:
        True when ``now() >= t``; False when ``max_wait`` of sleep was used up first
        (a clock that moved back or stalled).

    Raises:
        InputError: ``t`` without timezone, ``max_wait`` not > 0, or ``t`` further than
            ``max_wait`` ahead.
    """
    target = parse_time(t, "wait target")
    budget = pd.Timedelta(max_wait).total_seconds()
    if not math.isfinite(budget) or budget <= 0:
        raise InputError(f"max_wait must be a positive duration, got {max_wait!r}")
    ahead = (target - now()).total_seconds()
    if ahead > budget:
        raise InputError(f"{target.isoformat()} is {pd.Timedelta(seconds=round(ahead))} "
                         f"ahead, more than the wait limit {pd.Timedelta(max_wait)}; "
                         "start closer to the time or raise the limit")
    slept = 0.0
    while ahead > 0:
        if slept >= budget:
            return False
        step = min(ahead, _WAIT_STEP_S, budget - slept)
        sleep(step)
        slept += step
        ahead = (target - now()).total_seconds()
    return True


class PlanAction(StrEnum):
    """What ``--at-open`` does now."""

    RUN = "run"  # trade now (inside a session, or a replay)
    WAIT = "wait"  # wait for today's open, then trade
    SKIP = "skip"  # do not trade; the plan names the next open


@dataclass(frozen=True, slots=True)
class AtOpenPlan:
    """The decision of :func:`plan_at_open`.

    Attributes:
        action: run, wait or skip.
        now: the time the plan was made, UTC.
        session: the session to trade (run, wait) or the next one (skip); None for a
            replay.
        start_at: when to start trading, UTC: ``now`` (run), the open (wait) or None
            (skip).
        deadline: when trading must stop and the position be flat (the close minus the
            flatten margin), UTC; None for a replay.
        message: one line for people saying what happens and why.
    """

    action: PlanAction
    now: pd.Timestamp
    session: MarketSession | None
    start_at: pd.Timestamp | None
    deadline: pd.Timestamp | None
    message: str


def _why_closed(now: pd.Timestamp, cal: Any) -> str:
    """Why ``cal`` has no session at ``now``: after the close, a weekend or a holiday."""
    local = now.tz_convert(str(cal.tz))
    day = f"{local:%a %Y-%m-%d}"
    if any(s.open.tz_convert(str(cal.tz)).date() == local.date() for s in _sessions(cal, now, 1)):
        return f"{cal.name} has closed for {day}"
    weekday = f"{local:%a}" in str(cal.weekmask).split()
    return f"{day} is {'a holiday' if weekday else 'a weekend day'} for {cal.name}"


def plan_at_open(now: pd.Timestamp | dt.datetime, calendar: str = DEFAULT_CALENDAR, *,
                 replay: bool, wait_limit: pd.Timedelta = DEFAULT_WAIT_LIMIT,
                 flatten_margin: pd.Timedelta = DEFAULT_FLATTEN_MARGIN) -> AtOpenPlan:
    """Decide what ``run paper --at-open`` does at ``now``.

    - ``replay``: run now; market hours do not apply to replayed history.
    - inside a session, before its deadline (close minus ``flatten_margin``): run now,
      until the deadline.
    - today's open (exchange date) is ahead by at most ``wait_limit``: wait, then run
      until that session's deadline.
    - otherwise (weekend, holiday, after the close, inside the flatten margin, today's
      open too far ahead): skip, naming the next open.

    Raises:
        InputError: an unknown calendar, a ``now`` without timezone or a bad margin.
    """
    t = parse_time(now, "now")
    cal = _calendar(calendar)
    name = cal.name
    if replay:
        return AtOpenPlan(PlanAction.RUN, t, None, t, None,
                          "replay session: market hours do not apply (the simulated broker "
                          "replays recorded bars); running now")
    current = session_at(t, name)
    if current is not None:
        deadline = session_deadline(current, flatten_margin)
        close = f"{current.local(current.close):%H:%M}"
        if t < deadline:
            kind = "early close" if current.early_close else "close"
            return AtOpenPlan(PlanAction.RUN, t, current, t, deadline,
                              f"{name} is open: trading now until "
                              f"{current.local(deadline):%H:%M} {current.timezone} ({kind} "
                              f"{close} minus {_minutes(flatten_margin)} to flatten)")
        upcoming = next_open(current.close, name)
        why = f"{name} closes at {close}, within the {_minutes(flatten_margin)} flatten margin"
    else:
        upcoming = next_open(t, name)
        same_day = upcoming.local(t).date() == upcoming.local(upcoming.open).date()
        if same_day and upcoming.open - t <= pd.Timedelta(wait_limit):
            deadline = session_deadline(upcoming, flatten_margin)
            return AtOpenPlan(PlanAction.WAIT, t, upcoming, upcoming.open, deadline,
                              f"waiting {_duration(upcoming.open - t)} for the {name} open: "
                              f"{upcoming.describe()}; then trading until "
                              f"{upcoming.local(deadline):%H:%M} (Ctrl-C stops)")
        why = _why_closed(t, cal) if not same_day else \
            f"today's open is {_duration(upcoming.open - t)} away, more than the wait " \
            f"limit {_duration(pd.Timedelta(wait_limit))}"
    return AtOpenPlan(PlanAction.SKIP, t, upcoming, None, None,
                      f"next {name} open: {upcoming.describe()}; not trading now ({why})")


def _minutes(delta: pd.Timedelta) -> str:
    return f"{pd.Timedelta(delta).total_seconds() / 60:g} min"


def _duration(delta: pd.Timedelta) -> str:
    """``2h05m`` or ``35s``: a wait for people."""
    seconds = max(0, round(pd.Timedelta(delta).total_seconds()))
    hours, rest = divmod(seconds, 3600)
    if hours == 0 and rest < 60:
        return f"{rest}s"
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m"
