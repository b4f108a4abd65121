"""Brokers a session trades through: the :class:`Broker` protocol and its records
(:mod:`tradinglib.broker.base`) and the simulated broker (:mod:`tradinglib.broker.sim`).
"""

from tradinglib.broker.base import (
    Broker,
    BrokerError,
    BrokerFill,
    BrokerUnavailable,
    OrderRequest,
    OrderState,
    OrderStatus,
    OrderType,
)
from tradinglib.broker.sim import SimBroker

__all__ = [
    "Broker",
    "BrokerError",
    "BrokerFill",
    "BrokerUnavailable",
    "OrderRequest",
    "OrderState",
    "OrderStatus",
    "OrderType",
    "SimBroker",
]
