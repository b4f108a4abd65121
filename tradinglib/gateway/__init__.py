"""A TWS / IB Gateway simulator: the real ib_async (or ib_insync) client connects to it on
127.0.0.1, reads a paper account, replays historical bars and trades with the
backtest's fill and cost model.

- :class:`Gateway` (:mod:`~tradinglib.gateway.server`): the asyncio server and its state.
- :class:`GatewayThread` (:mod:`~tradinglib.gateway.handle`): a gateway in a background
  thread, for tests and notebooks.
- :class:`Faults` (:mod:`~tradinglib.gateway.faults`): drops, delays, rejects, stale bars,
  refused client ids.
- ``tradinglib gateway --data SOURCE`` (:mod:`~tradinglib.gateway.serve`): the CLI.

The protocol facts are in ``../shared/reference/tws-protocol.md``; server versions
157..178 are negotiated (ib_async 2.1 runs at 178, ib_insync 0.9.86 at 176).
"""

from tradinglib.gateway.faults import Faults
from tradinglib.gateway.framing import MAX_VERSION, MIN_VERSION, ProtocolError
from tradinglib.gateway.handle import GatewayThread
from tradinglib.gateway.market import DEFAULT_START_BAR
from tradinglib.gateway.records import ExecutionRecord, OrderRecord
from tradinglib.gateway.serve import serve_forever
from tradinglib.gateway.server import Gateway

__all__ = [
    "DEFAULT_START_BAR",
    "MAX_VERSION",
    "MIN_VERSION",
    "ExecutionRecord",
    "Faults",
    "Gateway",
    "GatewayThread",
    "OrderRecord",
    "ProtocolError",
    "serve_forever",
]
