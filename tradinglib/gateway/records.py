"""Records of the gateway's order book and executions, as tests and notebooks read them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pandas as pd

IBStatus = Literal["Submitted", "Filled", "Cancelled"]
"""Order status as TWS reports it; a rejected order ends ``"Cancelled"`` (error 201)."""


@dataclass(frozen=True, slots=True)
class OrderRecord:
    """One order as the gateway holds it.

    Attributes:
        order_id, client_id: the client's order id and API client id (the order's key).
        perm_id: the gateway-wide permanent id.
        order_ref: the client's ``Order.orderRef`` (echoed in every order message).
        action: ``"BUY"`` or ``"SELL"``.
        quantity: shares ordered (> 0).
        order_type: ``"MKT"`` or ``"LMT"``.
        limit_price: USD for LMT, None for MKT.
        tif: time in force as sent (e.g. ``"DAY"``).
        status: ``"Submitted"`` while working, then ``"Filled"`` or ``"Cancelled"``.
        filled: shares filled.
        avg_fill_price: USD per share of the fill, 0 before it.
        placed: replay time ("now") when the order arrived.
        completed: replay time when it was filled, cancelled or rejected.
        reason: why it was cancelled or rejected (``"Rejected: ..."`` for rejects).
    """

    order_id: int
    client_id: int
    perm_id: int
    order_ref: str
    action: str
    quantity: int
    order_type: str
    limit_price: float | None
    tif: str
    status: IBStatus
    filled: int = 0
    avg_fill_price: float = 0.0
    placed: pd.Timestamp | None = None
    completed: pd.Timestamp | None = None
    reason: str = ""

    @property
    def done(self) -> bool:
        """True once filled, cancelled or rejected."""
        return self.status != "Submitted"


@dataclass(frozen=True, slots=True)
class ExecutionRecord:
    """One fill.

    Attributes:
        exec_id: unique execution id.
        order_id, client_id, perm_id, order_ref: the order it fills.
        side: ``"BOT"`` or ``"SLD"``.
        shares: shares filled (> 0).
        price: USD per share, slippage included.
        commission: USD, from :meth:`tradinglib.costs.Costs.commission`.
        realized_pnl: USD realized by this fill, net of its commission.
        time: the bar time the fill happened at (replay time).
    """

    exec_id: str
    order_id: int
    client_id: int
    perm_id: int
    order_ref: str
    side: str
    shares: int
    price: float
    commission: float
    realized_pnl: float
    time: pd.Timestamp
