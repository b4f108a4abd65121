"""Risk limits and the pre-trade guard every order intent goes through.

:meth:`RiskGuard.check` is a pure function: the clock is passed in as ``now``, nothing
is read from globals or mutated, so a backtest and a live session give the same
verdicts for the same state. :meth:`RiskGuard.submit` is what the decision path calls:
``check`` plus the journal (every verdict with its time and intent) and the state the
rules remember (approved order times for the rate rule, the trading day on which the
daily loss limit was reached). The kill switch (:meth:`RiskGuard.halt`) and the account
sync with the broker (:meth:`RiskGuard.sync`) are recorded as :class:`RiskEvent`.

Rules, in the order :meth:`RiskGuard.check` applies them (the first that fails gives
the verdict's reason):

1. ``INVALID_ORDER``: quantity 0 or not an integer; limit or market price not a
   positive finite number.
2. ``SHORT_NOT_ALLOWED``: the position would go below zero while shorting is off.
3. ``HALTED``: the kill switch is on; only reducing orders pass.
4. ``STALE_DATA``: the bar is older than ``max_bar_age`` at ``now`` (risk-increasing
   orders only).
5. ``DAILY_LOSS``: the trading day's loss reached ``max_daily_loss`` (risk-increasing
   orders only, until the next trading day).
6. ``ORDER_RATE``: ``max_orders_per_minute`` orders were approved in the 60 s before
   ``now`` (risk-increasing orders only, so flattening is never throttled).
7. ``ORDER_VALUE``: quantity x order price over ``max_order_value`` (every order).
8. ``PRICE_COLLAR``: a limit price more than ``price_collar_pct`` away from the last
   trade (every limit order).
9. ``POSITION_VALUE``: |new position| x expected fill price over
   ``max_position_value`` (risk-increasing orders only).
10. ``INSUFFICIENT_CASH``: a buy whose expected cost (notional plus commission) is
    more than the cash (every buy).

An order *reduces* when the new position is smaller in size and on the same side or
flat: ``|new| < |position|`` and no crossing through zero. Every other order is
*risk-increasing*.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import asdict, dataclass, fields
from datetime import date, datetime, timedelta
from enum import StrEnum
from numbers import Integral, Real

from tradinglib.config import Settings
from tradinglib.costs import Costs
from tradinglib.exceptions import InputError, did_you_mean
from tradinglib.portfolio import Portfolio
from tradinglib.types import Action

RATE_WINDOW = timedelta(seconds=60)
"""The window of the order-rate rule: approved orders in ``(now - 60 s, now]`` count."""


def _is_real(value: object) -> bool:
    # exact float/int first: an isinstance check against the numbers ABCs is slow
    return type(value) is float or type(value) is int or (
        isinstance(value, Real) and not isinstance(value, bool))


def _is_integer(value: object) -> bool:
    return type(value) is int or (isinstance(value, Integral) and not isinstance(value, bool))


@dataclass(frozen=True, slots=True)
class RiskLimits:
    """Risk limits in USD, shares and seconds. Defaults are the seed's.

    Attributes:
        max_daily_loss: USD; once the trading day's P&L (realized plus unrealized)
            reaches ``-max_daily_loss`` only reducing orders pass, until the next
            trading day.
        max_position_value: USD; a risk-increasing order may not take
            |position| x price over this.
        trade_quantity: shares per order.
        allow_short: whether a sell may take the position below zero.
        max_orders_per_minute: approved orders per 60 s before risk-increasing orders
            are rejected; None turns the rule off.
        max_order_value: USD per order (quantity x order price); None turns it off.
        price_collar_pct: fraction in (0, 1); a limit order priced further than this
            from the last trade is rejected (0.05 = 5%).
        max_bar_age: seconds; when the market's bar is older than this at ``now``,
            risk-increasing orders are rejected; None turns it off.
        cash_sync_threshold: USD; :meth:`RiskGuard.sync` adopts the broker's cash when
            it differs from ours by more than this.

    Raises:
        InputError: a limit that is not a number, not finite, or out of range; the
            message names the field.
    """

    max_daily_loss: float = 500.0
    max_position_value: float = 10_000.0
    trade_quantity: int = 5
    allow_short: bool = False
    max_orders_per_minute: int | None = 30
    max_order_value: float | None = None
    price_collar_pct: float = 0.05
    max_bar_age: float | None = None
    cash_sync_threshold: float = 1_000.0

    def __post_init__(self) -> None:
        for name in ("max_daily_loss", "max_position_value", "max_order_value",
                     "max_bar_age"):
            value = getattr(self, name)
            if value is None and name in ("max_order_value", "max_bar_age"):
                continue
            if not _is_real(value) or not math.isfinite(value) or not value > 0:
                off = " (or None to turn the rule off)" if name in (
                    "max_order_value", "max_bar_age") else ""
                raise InputError(
                    f"RiskLimits.{name} must be a finite number > 0{off}, got {value!r}")
        for name in ("trade_quantity", "max_orders_per_minute"):
            value = getattr(self, name)
            if value is None and name == "max_orders_per_minute":
                continue
            if not _is_integer(value) or not value > 0:
                off = " (or None to turn the rule off)" if name != "trade_quantity" else ""
                raise InputError(f"RiskLimits.{name} must be an integer > 0{off}, "
                                 f"got {value!r}")
        collar = self.price_collar_pct
        if not _is_real(collar) or not 0 < collar < 1:
            raise InputError(f"RiskLimits.price_collar_pct must be a fraction in (0, 1), "
                             f"e.g. 0.05 for 5%; got {collar!r}")
        threshold = self.cash_sync_threshold
        if not _is_real(threshold) or not math.isfinite(threshold) or threshold < 0:
            raise InputError(f"RiskLimits.cash_sync_threshold must be a finite number "
                             f">= 0 (USD), got {threshold!r}")
        if not isinstance(self.allow_short, bool):
            raise InputError(f"RiskLimits.allow_short must be True or False, "
                             f"got {self.allow_short!r}")

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: object) -> RiskLimits:
        """Limits from configuration, with per-run ``overrides`` (e.g. notebook parameters).

        Raises:
            InputError: an override name that is not a field (the message lists the
                valid names and suggests the closest), or an invalid value.
        """
        valid = [f.name for f in fields(cls)]
        unknown = [name for name in overrides if name not in valid]
        if unknown:
            hints = [f"{name!r}{did_you_mean(name, valid)}" for name in unknown]
            raise InputError(f"unknown risk limit {', '.join(hints)}; "
                             f"valid names: {', '.join(valid)}")
        values: dict[str, object] = {
            "max_daily_loss": settings.max_daily_loss,
            "max_position_value": settings.max_position_value,
            "trade_quantity": settings.trade_quantity,
        }
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, object]:
        """Plain dict for model cards and run manifests."""
        return asdict(self)


class Reason(StrEnum):
    """Why a verdict was given; one code per rule (see the module docstring for order)."""

    APPROVED = "APPROVED"
    INVALID_ORDER = "INVALID_ORDER"
    SHORT_NOT_ALLOWED = "SHORT_NOT_ALLOWED"
    HALTED = "HALTED"
    STALE_DATA = "STALE_DATA"
    DAILY_LOSS = "DAILY_LOSS"
    ORDER_RATE = "ORDER_RATE"
    ORDER_VALUE = "ORDER_VALUE"
    PRICE_COLLAR = "PRICE_COLLAR"
    POSITION_VALUE = "POSITION_VALUE"
    INSUFFICIENT_CASH = "INSUFFICIENT_CASH"


class GuardMode(StrEnum):
    """What the guard lets through.

    NORMAL: every order the rules allow. REDUCING: the daily loss limit is reached;
    only reducing orders until the next trading day. HALTED: the kill switch is on;
    only reducing orders (flattening) until :meth:`RiskGuard.resume`.
    """

    NORMAL = "NORMAL"
    REDUCING = "REDUCING"
    HALTED = "HALTED"


class EventKind(StrEnum):
    """Kinds of :class:`RiskEvent`."""

    HALT = "HALT"
    RESUME = "RESUME"
    DAILY_LOSS_REACHED = "DAILY_LOSS_REACHED"
    CASH_SYNC = "CASH_SYNC"
    POSITION_SYNC = "POSITION_SYNC"


@dataclass(frozen=True, slots=True)
class OrderIntent:
    """What the policy wants: ``quantity`` shares, signed (+ buy, - sell).

    ``limit_price`` is the limit in USD, None for a market order. The guard rejects a
    zero quantity or a bad price with :attr:`Reason.INVALID_ORDER` rather than raising.
    """

    quantity: int
    limit_price: float | None = None

    @classmethod
    def from_action(cls, action: Action, limits: RiskLimits) -> OrderIntent | None:
        """The market-order intent for ``action``: None for HOLD, +/- ``trade_quantity``."""
        if action == Action.BUY:
            return cls(limits.trade_quantity)
        if action == Action.SELL:
            return cls(-limits.trade_quantity)
        return None


@dataclass(frozen=True, slots=True)
class MarketState:
    """What the guard knows of the market: the last trade price (USD) and its bar's time."""

    price: float
    time: datetime


@dataclass(frozen=True, slots=True)
class Verdict:
    """The guard's answer to one intent: approved or not, the rule's code, and why."""

    approved: bool
    reason: Reason
    detail: str = ""


APPROVED = Verdict(True, Reason.APPROVED)


@dataclass(frozen=True, slots=True)
class VerdictRecord:
    """One journaled verdict: the clock ``time`` it was given at, the intent, the verdict."""

    time: datetime
    intent: OrderIntent
    verdict: Verdict

    @property
    def reason(self) -> Reason:
        """The verdict's reason code."""
        return self.verdict.reason


@dataclass(frozen=True, slots=True)
class RiskEvent:
    """Something the guard did besides a verdict: halt, resume, sync, daily loss reached.

    ``kind`` is an :class:`EventKind` value; ``detail`` says what happened, with figures.
    """

    time: datetime
    kind: str
    detail: str


@dataclass(frozen=True, slots=True)
class AccountSnapshot:
    """The broker's view of the account, for :meth:`RiskGuard.sync`.

    Attributes:
        cash: USD cash balance.
        position: signed shares held.
        available_funds: USD available for trading (informational).
        net_liquidation: USD account value (informational).
        time: when the broker reported it.
        avg_cost: USD average cost of the position, if the broker reports it; used when
            the position is adopted.

    Raises:
        InputError: cash or avg_cost not a finite number, position not an integer.
    """

    cash: float
    position: int
    available_funds: float | None = None
    net_liquidation: float | None = None
    time: datetime | None = None
    avg_cost: float | None = None

    def __post_init__(self) -> None:
        if not _is_real(self.cash) or not math.isfinite(self.cash):
            raise InputError(f"AccountSnapshot.cash must be a finite number, got {self.cash!r}")
        if not _is_integer(self.position):
            raise InputError(f"AccountSnapshot.position must be an integer number of shares, "
                             f"got {self.position!r}")
        if self.avg_cost is not None and (
                not _is_real(self.avg_cost) or not math.isfinite(self.avg_cost)):
            raise InputError(f"AccountSnapshot.avg_cost must be a finite number or None, "
                             f"got {self.avg_cost!r}")


def reduces(position: int, quantity: int) -> bool:
    """True when trading ``quantity`` shrinks ``position`` without crossing through zero."""
    new = position + quantity
    return abs(new) < abs(position) and (new == 0 or (new > 0) == (position > 0))


def _price_problem(name: str, value: object) -> str | None:
    if type(value) is float and math.isfinite(value) and value > 0:  # the usual case, cheaply
        return None
    if (isinstance(value, bool) or not isinstance(value, Real)
            or not math.isfinite(value) or not float(value) > 0):
        return f"{name} must be a finite price > 0, got {value!r}"
    return None


class RiskGuard:
    """Checks order intents against :class:`RiskLimits`, journals verdicts and events.

    Args:
        limits: the limits; defaults to :class:`RiskLimits` ().
        costs: the cost model used to estimate an order's fill price (slippage) and
            commission for the position-value and cash rules; None estimates the fill
            at the order price with no commission.

    Attributes:
        verdicts: every verdict given by :meth:`submit`, in order.
        events: every :class:`RiskEvent`, in order.
    """

    def __init__(self, limits: RiskLimits | None = None, costs: Costs | None = None) -> None:
        self.limits = limits if limits is not None else RiskLimits()
        self.costs = costs
        self.verdicts: list[VerdictRecord] = []
        self.events: list[RiskEvent] = []
        self._halt_reason: str | None = None
        self._order_times: deque[datetime] = deque(maxlen=self.limits.max_orders_per_minute)
        self._loss_day: date | None = None

    # -- state ------------------------------------------------------------------------

    @property
    def halted(self) -> bool:
        """True while the kill switch is on."""
        return self._halt_reason is not None

    @property
    def halt_reason(self) -> str | None:
        """Why the guard was halted, None when it is not."""
        return self._halt_reason

    def halt(self, reason: str, now: datetime) -> None:
        """Turn the kill switch on: only reducing (flattening) orders pass until resumed.

        Raises:
            InputError: an empty ``reason``.
        """
        if not isinstance(reason, str) or not reason.strip():
            raise InputError("halt() needs a reason, e.g. guard.halt('broker disconnected', now)")
        self._halt_reason = reason
        self.events.append(RiskEvent(now, EventKind.HALT, reason))

    def resume(self, now: datetime) -> None:
        """Turn the kill switch off (nothing happens, and nothing is recorded, if it is off)."""
        if self._halt_reason is None:
            return
        self.events.append(RiskEvent(now, EventKind.RESUME, f"resumed after: {self._halt_reason}"))
        self._halt_reason = None

    def daily_loss_reached(self, portfolio: Portfolio, market: MarketState) -> bool:
        """True when the trading day's P&L at ``market.price`` is <= ``-max_daily_loss``,
        or was so when the guard last saw this trading day (:meth:`submit`, :meth:`observe`).
        """
        if portfolio.day is not None and portfolio.day == self._loss_day:
            return True
        return portfolio.day_pnl(market.price) <= -self.limits.max_daily_loss

    def mode(self, portfolio: Portfolio, market: MarketState) -> GuardMode:
        """HALTED if the kill switch is on, REDUCING if the daily loss is reached, else NORMAL."""
        if self.halted:
            return GuardMode.HALTED
        if self.daily_loss_reached(portfolio, market):
            return GuardMode.REDUCING
        return GuardMode.NORMAL

    def observe(self, portfolio: Portfolio, market: MarketState, now: datetime) -> GuardMode:
        """Show the guard the account without an order (e.g. every bar) and return the mode.

        If the daily loss is reached, the guard remembers it for the rest of the trading
        day (so REDUCING holds even if prices recover) and records one
        ``DAILY_LOSS_REACHED`` event per trading day. :meth:`submit` does the same.
        """
        self._note_daily_loss(portfolio, market, now)
        return self.mode(portfolio, market)

    def _note_daily_loss(self, portfolio: Portfolio, market: MarketState, now: datetime) -> None:
        """Remember (and record once) that the trading day's loss limit is reached."""
        day = portfolio.day
        if (day is not None and day != self._loss_day
                and portfolio.day_pnl(market.price) <= -self.limits.max_daily_loss):
            self._loss_day = day
            self.events.append(RiskEvent(
                now, EventKind.DAILY_LOSS_REACHED,
                f"trading day {day}: P&L {portfolio.day_pnl(market.price):.2f} <= "
                f"-{self.limits.max_daily_loss:.2f}; reducing orders only until the next "
                "trading day"))

    # -- the rules --------------------------------------------------------------------

    def check(
        self, intent: OrderIntent, portfolio: Portfolio, market: MarketState, now: datetime
    ) -> Verdict:
        """Return the verdict for ``intent`` given the account and market at ``now``.

        Pure: nothing is mutated or recorded, no clock is read. The result depends on
        the arguments, the limits, the cost model and the recorded state (halt switch,
        approved order times, the day the daily loss was reached).

        Raises:
            InputError: ``now`` and ``market.time`` (or earlier order times) mix
                timezone-aware and naive datetimes.
        """
        return self._check(intent, portfolio, market, now, None)

    def _check(self, intent: OrderIntent, portfolio: Portfolio, market: MarketState,
               now: datetime, window_start: datetime | None) -> Verdict:
        """:meth:`check`; ``window_start`` is ``now - RATE_WINDOW`` if the caller has it
        (submit needs it too, and Timestamp arithmetic costs microseconds)."""
        limits = self.limits
        problem = self._invalid(intent, market)
        if problem is not None:
            return Verdict(False, Reason.INVALID_ORDER, problem)
        qty, pos = int(intent.quantity), int(portfolio.position)
        new = pos + qty
        reducing = reduces(pos, qty)
        if not limits.allow_short and new < 0:
            return Verdict(False, Reason.SHORT_NOT_ALLOWED,
                           f"{qty:+d} with position {pos} would be short {new}; "
                           "shorting is off")
        if self._halt_reason is not None and not reducing:
            return Verdict(False, Reason.HALTED,
                           f"halted ({self._halt_reason}); only orders that reduce the "
                           f"position pass, {qty:+d} with position {pos} does not")
        if not reducing:
            if limits.max_bar_age is not None:
                age = _seconds_between(market.time, now)
                if age > limits.max_bar_age:
                    return Verdict(False, Reason.STALE_DATA,
                                   f"bar at {market.time} is {age:.0f} s old at {now} "
                                   f"> {limits.max_bar_age:g} s")
            if self.daily_loss_reached(portfolio, market):
                return Verdict(False, Reason.DAILY_LOSS,
                               f"day P&L {portfolio.day_pnl(market.price):.2f}, limit "
                               f"-{limits.max_daily_loss:.2f} reached; reducing orders "
                               "only until the next trading day")
            if limits.max_orders_per_minute is not None:
                if window_start is None:
                    window_start = now - RATE_WINDOW
                recent = self._orders_since(window_start, now)
                if recent >= limits.max_orders_per_minute:
                    return Verdict(False, Reason.ORDER_RATE,
                                   f"{recent} orders approved in the 60 s before {now}, "
                                   f"limit {limits.max_orders_per_minute}")
        order_price = float(intent.limit_price if intent.limit_price is not None
                            else market.price)
        if limits.max_order_value is not None:
            value = abs(qty) * order_price
            if value > limits.max_order_value:
                return Verdict(False, Reason.ORDER_VALUE,
                               f"order value {value:.2f} > {limits.max_order_value:.2f}")
        if intent.limit_price is not None:
            distance = abs(order_price - market.price)
            if distance > limits.price_collar_pct * market.price:
                return Verdict(False, Reason.PRICE_COLLAR,
                               f"limit {order_price:.4f} is {distance / market.price:.2%} "
                               f"from the last trade {market.price:.4f}, collar "
                               f"{limits.price_collar_pct:.2%}")
        fill_price = self.expected_fill_price(qty, order_price)
        if not reducing:
            value = abs(new) * fill_price
            if value > limits.max_position_value:
                return Verdict(False, Reason.POSITION_VALUE,
                               f"position value {abs(new)} x {fill_price:.4f} = {value:.2f} "
                               f"> {limits.max_position_value:.2f}")
        if qty > 0:
            commission = self.costs.commission(qty, fill_price) if self.costs else 0.0
            cost = qty * fill_price + commission
            if cost > portfolio.cash:
                return Verdict(False, Reason.INSUFFICIENT_CASH,
                               f"buy costs {cost:.2f} (commission {commission:.2f}), "
                               f"cash {portfolio.cash:.2f}")
        return APPROVED

    def expected_fill_price(self, quantity: int, order_price: float) -> float:
        """USD price the guard assumes ``quantity`` fills at: ``order_price`` plus slippage."""
        if self.costs is None:
            return order_price
        return self.costs.fill_price(1 if quantity > 0 else -1, order_price)

    def orders_in_window(self, now: datetime) -> int:
        """Approved orders recorded in ``(now - 60 s, now]``."""
        return self._orders_since(now - RATE_WINDOW, now)

    def _orders_since(self, start: datetime, now: datetime) -> int:
        """Approved orders recorded in ``(start, now]``."""
        try:
            return sum(1 for t in self._order_times if start < t <= now)
        except TypeError as exc:
            raise InputError(f"cannot compare order times with now={now!r}: {exc}; pass "
                             "timezone-aware times throughout") from None

    @staticmethod
    def _invalid(intent: OrderIntent, market: MarketState) -> str | None:
        if not _is_integer(intent.quantity) or intent.quantity == 0:
            return f"quantity must be a non-zero integer of shares, got {intent.quantity!r}"
        if intent.limit_price is not None:
            problem = _price_problem("limit price", intent.limit_price)
            if problem:
                return problem
        return _price_problem("market price", market.price)

    # -- recording --------------------------------------------------------------------

    def submit(
        self, intent: OrderIntent, portfolio: Portfolio, market: MarketState, now: datetime
    ) -> Verdict:
        """:meth:`check` ``intent``, then record: the verdict in :attr:`verdicts`, the
        approval time for the rate rule, and the daily-loss state (see :meth:`observe`).

        Raises:
            InputError: as :meth:`check`.
        """
        rate_rule = self.limits.max_orders_per_minute is not None
        start = now - RATE_WINDOW if rate_rule else None
        verdict = self._check(intent, portfolio, market, now, start)
        self._note_daily_loss(portfolio, market, now)
        self.verdicts.append(VerdictRecord(now, intent, verdict))
        if verdict.approved and start is not None:
            times = self._order_times
            while times and times[0] <= start:
                times.popleft()
            times.append(now)
        return verdict

    def sync(self, account: AccountSnapshot, portfolio: Portfolio,
             now: datetime) -> RiskEvent | None:
        """Adopt the broker's cash and position where ours has drifted.

        Cash: when ``|account.cash - portfolio.cash| > cash_sync_threshold`` the broker's
        cash is adopted and a ``CASH_SYNC`` event recorded; at or below it nothing
        changes. Position: any difference is adopted and recorded as ``POSITION_SYNC``;
        the average cost becomes ``account.avg_cost`` if given, else stays when the
        position keeps its side, else 0.0 when flat, else 0.0 too (the entry price is
        unknown here, so unrealized P&L is meaningless until the next fill; pass
        ``avg_cost``). The day's starting equity is left alone, so an adopted difference
        shows in the day's P&L.

        Returns:
            The ``CASH_SYNC`` event if cash was adopted, else the ``POSITION_SYNC`` event
            if the position was, else None. Both are in :attr:`events`.
        """
        first: RiskEvent | None = None
        diff = account.cash - portfolio.cash
        if abs(diff) > self.limits.cash_sync_threshold:
            first = RiskEvent(now, EventKind.CASH_SYNC,
                              f"broker cash {account.cash:.2f}, ours {portfolio.cash:.2f} "
                              f"(difference {diff:+.2f} > "
                              f"{self.limits.cash_sync_threshold:.2f}); adopted the broker's")
            portfolio.cash = float(account.cash)
            self.events.append(first)
        ours, theirs = portfolio.position, int(account.position)
        if theirs != ours:
            old_cost = portfolio.avg_cost
            if account.avg_cost is not None:
                portfolio.avg_cost = float(account.avg_cost)
            elif theirs == 0 or ours == 0 or (theirs > 0) != (ours > 0):
                portfolio.avg_cost = 0.0
            portfolio.position = theirs
            event = RiskEvent(now, EventKind.POSITION_SYNC,
                              f"broker position {theirs}, ours {ours}; adopted the broker's "
                              f"(avg cost {old_cost:.4f} -> {portfolio.avg_cost:.4f})")
            self.events.append(event)
            first = first or event
        return first


def _seconds_between(earlier: datetime, later: datetime) -> float:
    """``later - earlier`` in seconds; InputError when naive and aware times are mixed."""
    try:
        return (later - earlier).total_seconds()
    except TypeError as exc:
        raise InputError(f"cannot compare bar time {earlier!r} with now={later!r}: {exc}; "
                         "pass timezone-aware times throughout") from None
