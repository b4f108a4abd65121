"""Interactive Brokers through ib_async (or ib_insync): paper accounts only.

:class:`IBBroker` is the :class:`~tradinglib.broker.base.Broker`; the paper-only guard
(:mod:`~tradinglib.broker.ib.paper_only`) refuses live ports and non-``DU`` accounts.
This package imports neither torch nor stable-baselines3.
"""

from tradinglib.broker.ib.broker import IBBroker
from tradinglib.broker.ib.paper_only import LIVE_PORTS, LiveTradingRefused

__all__ = ["LIVE_PORTS", "IBBroker", "LiveTradingRefused"]
