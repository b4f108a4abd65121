"""Account state and fill accounting, shared by the training env, backtest and sessions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import pandas as pd


@dataclass(frozen=True, slots=True)
class Fill:
    """An executed order. ``quantity`` is signed: + bought, - sold; prices in USD."""

    time: pd.Timestamp
    quantity: int
    price: float
    commission: float

    @property
    def side(self) -> str:
        """``"BUY"`` or ``"SELL"``."""
        return "BUY" if self.quantity > 0 else "SELL"


@dataclass(slots=True)
class Portfolio:
    """Cash, one position and P&L, in USD and shares.

    ``avg_cost`` is the average entry price of the open position; realized P&L is
    booked when the position shrinks, net of commissions. The trading-day fields feed
    the daily-loss rule: :meth:`start_day` resets them when a new trading day begins.
    """

    cash: float
    position: int = 0
    avg_cost: float = 0.0
    realized_pnl: float = 0.0
    commissions: float = 0.0
    day: date | None = None
    day_start_equity: float = 0.0
    day_realized_pnl: float = 0.0

    def equity(self, price: float) -> float:
        """Cash plus the position marked at ``price``."""
        return self.cash + self.position * price

    def unrealized_pnl(self, price: float) -> float:
        """P&L of the open position marked at ``price`` (before exit costs)."""
        return self.position * (price - self.avg_cost)

    def day_pnl(self, price: float) -> float:
        """Equity change since the trading day started (realized plus unrealized)."""
        return self.equity(price) - self.day_start_equity

    def start_day(self, day: date, price: float) -> None:
        """Begin trading day ``day`` if it is new: its P&L is measured from here."""
        if day != self.day:
            self.day = day
            self.day_start_equity = self.equity(price)
            self.day_realized_pnl = 0.0

    def apply(self, fill: Fill) -> None:
        """Book ``fill``: cash, position, average cost, realized P&L and commission."""
        qty, price = fill.quantity, fill.price
        self.cash -= qty * price + fill.commission
        self.commissions += fill.commission
        realized = -fill.commission
        pos = self.position
        if pos == 0 or (pos > 0) == (qty > 0):  # opening or adding
            self.avg_cost = (pos * self.avg_cost + qty * price) / (pos + qty)
        else:  # reducing, closing or flipping
            closed = min(abs(qty), abs(pos))
            direction = 1 if pos > 0 else -1
            realized += closed * (price - self.avg_cost) * direction
            if abs(qty) > abs(pos):
                self.avg_cost = price
            elif abs(qty) == abs(pos):
                self.avg_cost = 0.0
        self.position = pos + qty
        self.realized_pnl += realized
        self.day_realized_pnl += realized
