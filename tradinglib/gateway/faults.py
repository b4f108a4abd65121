"""Fault injection for a running gateway: every setter is thread-safe and takes effect
at once (from a test thread, a notebook, or the CLI flags at start).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd

from tradinglib.exceptions import InputError

log = logging.getLogger("tradinglib.gateway")

DropAt = int | str | pd.Timestamp


def _count(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InputError(f"{name} must be an integer >= 0, got {value!r}")
    return value


def _seconds(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not math.isfinite(value) or value < 0:
        raise InputError(f"{name} must be a finite number of seconds >= 0, got {value!r}")
    return float(value)


@dataclass(slots=True)
class _Outage:
    """An IB link outage in progress: bars still withheld, whether 1101 ends it, and
    whether 1100 was sent."""

    bars_left: int
    data_lost: bool
    announced: bool = False


class Faults:
    """Faults a gateway injects.

    Args:
        drop_after_messages: close the client socket after this many more server->client
            messages (counted over all connections); None: never.
        drop_at: close every client socket when this bar is published: a bar index, or
            a time (the first bar at or after it); None: never.
        fill_delay_seconds: report fills this many wall seconds after they happen
            (the account changes at once; execDetails, commissionReport and the Filled
            status arrive late).
        reject_next: reject the next order with error 201 and this reason; None: no.
        stop_bars_after: publish this many more bars to clients, then none (the replay
            clock, the fills and the account still move on, so clients go stale);
            None: never stop.
        refuse_client_ids: client ids refused with error 326 as if already connected.
        lose_ib_link: IB's own connectivity lost (error 1100, the socket stays up) for
            this many published bars from the next one, then restored (1102);
            None: never.

    Raises:
        InputError: a negative count or delay, or a ``drop_at`` that is neither a bar
            index nor a time.
    """

    def __init__(self, *, drop_after_messages: int | None = None, drop_at: DropAt | None = None,
                 fill_delay_seconds: float = 0.0, reject_next: str | None = None,
                 stop_bars_after: int | None = None,
                 refuse_client_ids: Iterable[int] = (),
                 lose_ib_link: int | None = None) -> None:
        self._lock = threading.Lock()
        self._messages_left: int | None = None
        self._drop_at: int | pd.Timestamp | None = None
        self._fill_delay = 0.0
        self._reject: str | None = None
        self._bars_left: int | None = None
        self._refused: set[int] = set()
        self._outage: _Outage | None = None
        if drop_after_messages is not None:
            self.drop_after_messages(drop_after_messages)
        if drop_at is not None:
            self.drop_at(drop_at)
        self.fill_delay_seconds = fill_delay_seconds
        if reject_next is not None:
            self.reject_next(reject_next)
        if stop_bars_after is not None:
            self.stop_bars(after=stop_bars_after)
        for client_id in refuse_client_ids:
            self.refuse_client_id(client_id)
        if lose_ib_link is not None:
            self.lose_ib_link(lose_ib_link)

    # -- setters ---------------------------------------------------------------------

    def drop_after_messages(self, n: int) -> None:
        """Close the client socket after ``n`` more server->client messages.

        Raises:
            InputError: ``n`` not an integer >= 0.
        """
        n = _count("drop_after_messages", n)
        with self._lock:
            self._messages_left = n
        log.info("fault set: drop the connection after %d more messages", n)

    def drop_at(self, when: DropAt) -> None:
        """Close every client socket when bar ``when`` (index or time) is published.

        Raises:
            InputError: ``when`` is neither an integer >= 0 nor a time.
        """
        if isinstance(when, bool) or (isinstance(when, int) and when < 0):
            raise InputError(f"drop_at needs a bar index >= 0 or a time, got {when!r}")
        if not isinstance(when, int):
            try:
                when = pd.Timestamp(when)
            except ValueError:
                raise InputError(f"drop_at needs a bar index or a time such as "
                                 f"'2016-01-04', got {when!r}") from None
        with self._lock:
            self._drop_at = when
        log.info("fault set: drop every connection at bar %s", when)

    @property
    def fill_delay_seconds(self) -> float:
        """Wall seconds between a fill and its report (0: at once)."""
        with self._lock:
            return self._fill_delay

    @fill_delay_seconds.setter
    def fill_delay_seconds(self, seconds: float) -> None:
        value = _seconds("fill_delay_seconds", seconds)
        with self._lock:
            self._fill_delay = value
        if value:
            log.info("fault set: report fills %.3f s late", value)

    def reject_next(self, reason: str = "rejected by fault injection") -> None:
        """Reject the next order with error 201 and ``reason``."""
        with self._lock:
            self._reject = str(reason)
        log.info("fault set: reject the next order (%s)", reason)

    def stop_bars(self, after: int = 0) -> None:
        """Publish ``after`` more bars to clients, then none until :meth:`resume_bars`.

        Raises:
            InputError: ``after`` not an integer >= 0.
        """
        after = _count("stop_bars after", after)
        with self._lock:
            self._bars_left = after
        log.info("fault set: stop sending bars after %d more", after)

    def resume_bars(self) -> None:
        """Send bars to clients again (from the next published bar)."""
        with self._lock:
            self._bars_left = None
        log.info("fault cleared: bars flow again")

    def refuse_client_id(self, client_id: int) -> None:
        """Refuse ``client_id`` with error 326 (as if in use) until :meth:`allow_client_id`.

        Raises:
            InputError: ``client_id`` not an integer >= 0.
        """
        client_id = _count("client id", client_id)
        with self._lock:
            self._refused.add(client_id)
        log.info("fault set: refuse client id %d (326)", client_id)

    def allow_client_id(self, client_id: int) -> None:
        """Stop refusing ``client_id``."""
        with self._lock:
            self._refused.discard(client_id)

    def lose_ib_link(self, bars: int, *, data_lost: bool = False) -> None:
        """Play TWS losing its connection to IB's servers while the API socket stays up:
        error 1100 to every client with the next published bar, which and the following
        ``bars - 1`` bars clients do not get; with the bar after them, 1102 ("data
        maintained"), or with ``data_lost`` 1101 ("data lost": the clients' market data
        subscriptions are gone and must be made again).

        Raises:
            InputError: ``bars`` not an integer >= 1.
        """
        bars = _count("lose_ib_link bars", bars)
        if bars < 1:
            raise InputError("lose_ib_link needs at least 1 bar of outage, got 0")
        with self._lock:
            self._outage = _Outage(bars, data_lost)
        log.info("fault set: lose the IB link for %d bar(s) (%s)", bars,
                 "data lost" if data_lost else "data maintained")

    # -- used by the gateway ---------------------------------------------------------

    def drop_instead_of_sending(self) -> bool:
        """Count one server->client message about to be sent; True (once) when the
        budget is spent: drop the connection instead of sending it."""
        with self._lock:
            if self._messages_left is None:
                return False
            if self._messages_left > 0:
                self._messages_left -= 1
                return False
            self._messages_left = None
            return True

    def drop_due(self, index: int, time: pd.Timestamp) -> bool:
        """True (once) when bar ``index`` at ``time`` reaches the ``drop_at`` mark."""
        with self._lock:
            mark = self._drop_at
            if mark is None:
                return False
            if isinstance(mark, int):
                due = index >= mark
            else:
                due = time >= (mark.tz_localize(time.tz) if mark.tzinfo is None else mark)
            if due:
                self._drop_at = None
            return due

    def take_reject(self) -> str | None:
        """The reject reason for this order, once; None when no reject is pending."""
        with self._lock:
            reason, self._reject = self._reject, None
            return reason

    def bar_passes(self) -> bool:
        """Count one published bar; False when bars are stopped."""
        with self._lock:
            if self._bars_left is None:
                return True
            if self._bars_left > 0:
                self._bars_left -= 1
                return True
            return False

    def ib_link_step(self) -> tuple[bool, int | None]:
        """Count one published bar against the IB link outage: (whether clients get
        the bar, the notice to send them first: 1100 as the outage begins, 1101 or 1102
        as it ends, else None)."""
        with self._lock:
            outage = self._outage
            if outage is None:
                return True, None
            if not outage.announced:
                outage.announced = True
                outage.bars_left -= 1
                return False, 1100
            if outage.bars_left > 0:
                outage.bars_left -= 1
                return False, None
            self._outage = None
            return True, 1101 if outage.data_lost else 1102

    def refuses(self, client_id: int) -> bool:
        """True if ``client_id`` is to be refused with 326."""
        with self._lock:
            return client_id in self._refused
