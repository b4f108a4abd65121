"""Clocks that pace a session's cycles: the wall clock, or a replay of historical bars.

A session asks its clock for the time (:meth:`Clock.now`, tz-aware) and, after each
cycle, to wait for the next one (:meth:`Clock.advance`). Nothing else in the decision
path reads the time: the clock is passed in, never taken from a global.

- :class:`WallClock`: real time; a cycle starts every ``cycle_seconds``.
- :class:`FeedClock`: a live feed's time; a cycle starts when a new bar arrives.
- :class:`ReplayClock`: historical time; each cycle is one bar. ``now()`` is the time
  of the current bar; :meth:`ReplayClock.advance` moves to the next bar after a wall
  pause of ``cycle_seconds / speed`` per cycle (``speed`` 1 = real time, 10 = ten times
  faster, 0 = no pause at all).

Every wait is bounded by one cycle period: a clock that falls behind (a cycle that
took longer than its period) starts the next cycle at once and never bursts to catch up.
"""

from __future__ import annotations

import math
import time
from typing import Protocol, runtime_checkable

import pandas as pd

from tradinglib.exceptions import InputError


@runtime_checkable
class Clock(Protocol):
    """The time source and pacer of a session."""

    def now(self) -> pd.Timestamp:
        """The current time, tz-aware."""
        ...

    def advance(self) -> bool:
        """Wait (at most one cycle period of wall time) until the next cycle starts.

        Returns False, without waiting, when there is no next cycle (a replay at its
        last bar); True otherwise.
        """
        ...


def _positive_seconds(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not math.isfinite(value) or value <= 0:
        raise InputError(f"{name} must be a finite number of seconds > 0, got {value!r}")
    return float(value)


class _Pacer:
    """Starts a cycle every ``period`` wall seconds (monotonic), without catching up."""

    def __init__(self, period: float) -> None:
        self.period = period
        self._due = time.monotonic() + period

    def wait(self) -> None:
        """Sleep until the next cycle is due (at most ``period`` seconds)."""
        delay = self._due - time.monotonic()
        if delay > 0:
            time.sleep(min(delay, self.period))
        self._due = max(self._due, time.monotonic()) + self.period


class WallClock:
    """Real time in UTC; a cycle every ``cycle_seconds`` of wall time.

    The first cycle starts when the clock is made; :meth:`advance` sleeps until
    ``cycle_seconds`` after the previous cycle started (at once if that has passed).

    Raises:
        InputError: ``cycle_seconds`` is not a finite number > 0.
    """

    def __init__(self, cycle_seconds: float) -> None:
        self._pacer = _Pacer(_positive_seconds("cycle_seconds", cycle_seconds))

    def now(self) -> pd.Timestamp:
        """The current UTC time."""
        return pd.Timestamp.now(tz="UTC")

    def advance(self) -> bool:
        """Sleep until the next cycle (at most ``cycle_seconds``); always True."""
        self._pacer.wait()
        return True


class ReplayClock:
    """Historical time: cycle ``i`` is at ``times[i]``.

    Args:
        times: the bar times to replay, tz-aware and strictly increasing; the first is
            the first cycle's time.
        cycle_seconds: wall seconds one cycle stands for (> 0).
        speed: cycles are paced at ``cycle_seconds / speed`` wall seconds each (the
            pause includes the cycle's own work); 0 plays as fast as possible.

    Raises:
        InputError: no times, naive or unordered times, a bad ``cycle_seconds`` or a
            ``speed`` that is not a finite number >= 0.
    """

    def __init__(self, times: pd.DatetimeIndex, *, cycle_seconds: float,
                 speed: float = 0.0) -> None:
        if not isinstance(times, pd.DatetimeIndex) or len(times) == 0:
            raise InputError("ReplayClock needs a non-empty DatetimeIndex of bar times")
        if times.tz is None:
            raise InputError("ReplayClock needs tz-aware bar times (load_bars gives them)")
        if not (times.is_monotonic_increasing and times.is_unique):
            raise InputError("ReplayClock bar times must be strictly increasing")
        cycle = _positive_seconds("cycle_seconds", cycle_seconds)
        if isinstance(speed, bool) or not isinstance(speed, int | float) \
                or not math.isfinite(speed) or speed < 0:
            raise InputError(f"speed must be a finite number >= 0 (0 = as fast as possible), "
                             f"got {speed!r}")
        self._times = times
        self._i = 0
        self._pacer = _Pacer(cycle / speed) if speed > 0 else None

    def now(self) -> pd.Timestamp:
        """The current bar's time."""
        return pd.Timestamp(self._times[self._i])

    def advance(self) -> bool:
        """Pause (``cycle_seconds / speed`` per cycle, none at speed 0) and move to the
        next bar; False, without pausing, at the last bar."""
        if self._i + 1 >= len(self._times):
            return False
        if self._pacer is not None:
            self._pacer.wait()
        self._i += 1
        return True


class BarFeed(Protocol):
    """A market data feed that a :class:`FeedClock` follows (e.g. the IB broker)."""

    def wait_for_bar(self, timeout: float) -> bool:
        """Wait at most ``timeout`` seconds for a new bar; True if one arrived."""
        ...

    def server_time(self) -> pd.Timestamp:
        """The feed's current time, tz-aware (its replay time under a simulator)."""
        ...

    def latest_bar_time(self) -> pd.Timestamp | None:
        """The time of the newest bar received, tz-aware; None before any."""
        ...


class FeedClock:
    """Live time: a cycle starts when the feed delivers a new bar.

    :meth:`advance` waits for the next bar, at most ``wait_seconds`` (then the cycle
    starts anyway, on stale data, and the session holds). :meth:`now` is the feed's
    server time (read once, at the start) plus the wall time elapsed since, or the
    newest bar's time if that is later: a real gateway's time runs with the wall clock,
    a simulator's replay time jumps with its bars. No request per cycle.

    Args:
        feed: what delivers the bars and the time.
        wait_seconds: the longest wait for a bar, seconds (> 0).

    Raises:
        InputError: ``wait_seconds`` is not a finite number > 0.
    """

    def __init__(self, feed: BarFeed, wait_seconds: float) -> None:
        self._feed = feed
        self.wait_seconds = _positive_seconds("wait_seconds", wait_seconds)

        self._base, self._at = feed.server_time(), time.monotonic()

    def now(self) -> pd.Timestamp:
        """The feed's time, in UTC: its server time plus the wall time since it was read,
        or the newest bar's time if later."""
        running = self._base + pd.Timedelta(seconds=time.monotonic() - self._at)
        bar = self._feed.latest_bar_time()
        return running if bar is None or bar <= running else bar.tz_convert(running.tz)

    def advance(self) -> bool:
        """Wait for the next bar (at most ``wait_seconds``); always True."""
        self._feed.wait_for_bar(self.wait_seconds)
        return True
