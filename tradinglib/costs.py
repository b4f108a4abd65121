"""Trading costs: IBKR-style per-share commission and slippage in basis points."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from tradinglib.exceptions import InputError

FillAt = Literal["next_open", "close"]


@dataclass(frozen=True, slots=True)
class Costs:
    """How orders fill and what they cost.

    Attributes:
        commission_per_share: USD per share (IBKR fixed pricing: 0.005).
        commission_min: minimum commission per order, USD.
        commission_max_pct: maximum commission as a fraction of trade value (0.01 = 1%).
        slippage_bps: adverse price move on every fill, in basis points (1 bp = 0.01%).
        fill_at: ``"next_open"`` fills a decision taken at bar t at bar t+1's open;
            ``"close"`` fills it at bar t's close.

    Raises:
        InputError: a negative cost or an unknown ``fill_at``.
    """

    commission_per_share: float = 0.005
    commission_min: float = 1.0
    commission_max_pct: float = 0.01
    slippage_bps: float = 0.0
    fill_at: FillAt = "next_open"

    def __post_init__(self) -> None:
        for name in ("commission_per_share", "commission_min", "commission_max_pct",
                     "slippage_bps"):
            if getattr(self, name) < 0:
                raise InputError(f"Costs.{name} must be >= 0, got {getattr(self, name)}")
        if self.fill_at not in ("next_open", "close"):
            raise InputError(f"Costs.fill_at must be 'next_open' or 'close', got {self.fill_at!r}")

    def commission(self, quantity: float, price: float) -> float:
        """Commission in USD for one order of ``quantity`` shares at ``price``."""
        value = abs(quantity) * price
        fee = max(abs(quantity) * self.commission_per_share, self.commission_min)
        return min(fee, value * self.commission_max_pct)

    def fill_price(self, side: int, price: float) -> float:
        """Price after slippage: higher for a buy (``side`` +1), lower for a sell (-1)."""
        return price * (1.0 + side * self.slippage_bps / 10_000.0)

    def to_dict(self) -> dict[str, object]:
        """Plain dict for model cards and run manifests."""
        return asdict(self)
