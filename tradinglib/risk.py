"""Risk limits and the pure pre-trade check every order intent goes through."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from enum import StrEnum

from tradinglib.config import Settings
from tradinglib.exceptions import InputError
from tradinglib.portfolio import Portfolio
from tradinglib.types import Action


@dataclass(frozen=True, slots=True)
class RiskLimits:
    """Limits in USD and shares. Defaults are the seed's.

    Attributes:
        max_daily_loss: once the trading day's P&L reaches ``-max_daily_loss`` only
            orders that reduce the position pass, until the next trading day.
        max_position_value: |position| x price may not exceed this after a buy or sell.
        trade_quantity: shares per order.
        allow_short: whether a sell may take the position below zero.

    Raises:
        InputError: a non-positive limit or quantity.
    """

    max_daily_loss: float = 500.0
    max_position_value: float = 10_000.0
    trade_quantity: int = 5
    allow_short: bool = False

    def __post_init__(self) -> None:
        for name in ("max_daily_loss", "max_position_value", "trade_quantity"):
            if not getattr(self, name) > 0:
                raise InputError(f"RiskLimits.{name} must be > 0, got {getattr(self, name)}")

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: object) -> RiskLimits:
        """Limits from configuration, with per-run ``overrides`` (e.g. notebook parameters)."""
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
    """Why a verdict was given; one code per rule."""

    APPROVED = "APPROVED"
    DAILY_LOSS = "DAILY_LOSS"
    POSITION_VALUE = "POSITION_VALUE"
    INSUFFICIENT_CASH = "INSUFFICIENT_CASH"
    SHORT_NOT_ALLOWED = "SHORT_NOT_ALLOWED"


@dataclass(frozen=True, slots=True)
class OrderIntent:
    """What the policy wants: ``quantity`` shares, signed (+ buy, - sell)."""

    quantity: int

    @classmethod
    def from_action(cls, action: Action, limits: RiskLimits) -> OrderIntent | None:
        """The intent for ``action``: None for HOLD, +/- ``trade_quantity`` otherwise."""
        if action == Action.BUY:
            return cls(limits.trade_quantity)
        if action == Action.SELL:
            return cls(-limits.trade_quantity)
        return None


@dataclass(frozen=True, slots=True)
class MarketState:
    """What the guard knows of the market: the last price (USD) and its bar's time."""

    price: float
    time: datetime


@dataclass(frozen=True, slots=True)
class Verdict:
    """The guard's answer to one intent."""

    approved: bool
    reason: Reason
    detail: str = ""


APPROVED = Verdict(True, Reason.APPROVED)


class RiskGuard:
    """Checks order intents against :class:`RiskLimits`.

    :meth:`check` is a pure function of its arguments and the limits: the clock is
    passed in, nothing is read from globals, so a backtest and a live session give the
    same verdicts for the same state.
    """

    def __init__(self, limits: RiskLimits) -> None:
        self.limits = limits

    def check(
        self, intent: OrderIntent, portfolio: Portfolio, market: MarketState, now: datetime
    ) -> Verdict:
        """Return the verdict for ``intent`` given the account and market at ``now``."""
        limits, price = self.limits, market.price
        new_position = portfolio.position + intent.quantity
        reduces = abs(new_position) < abs(portfolio.position)
        if not limits.allow_short and new_position < 0:
            return Verdict(False, Reason.SHORT_NOT_ALLOWED,
                           f"sell {-intent.quantity} with position {portfolio.position}")
        if not reduces:
            day_pnl = portfolio.day_pnl(price)
            if day_pnl <= -limits.max_daily_loss:
                return Verdict(False, Reason.DAILY_LOSS,
                               f"day P&L {day_pnl:.2f} <= -{limits.max_daily_loss:.2f}; "
                               "reducing orders only until the next trading day")
            value = abs(new_position) * price
            if value > limits.max_position_value:
                return Verdict(False, Reason.POSITION_VALUE,
                               f"position value {value:.2f} > {limits.max_position_value:.2f}")
        cost = intent.quantity * price
        if intent.quantity > 0 and cost > portfolio.cash:
            return Verdict(False, Reason.INSUFFICIENT_CASH,
                           f"buy costs {cost:.2f}, cash {portfolio.cash:.2f}")
        return APPROVED
