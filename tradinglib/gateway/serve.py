"""Serve a gateway in the foreground until Ctrl-C or SIGTERM (the CLI command)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

from tradinglib.gateway.framing import MAX_VERSION, MIN_VERSION
from tradinglib.gateway.server import Gateway


def describe(gateway: Gateway, host: str) -> str:
    """One line: where the gateway listens, the account and the replay range."""
    replay, account = gateway.replay, gateway.account
    pace = (f"one bar every {gateway.bar_seconds:g} s" if gateway.bar_seconds
            else "bars only on advance()")
    return (f"gateway {account.instrument.symbol} on {host}:{gateway.port} "
            f"(API v{MIN_VERSION}..{MAX_VERSION}), account {account.code}, cash "
            f"{account.snapshot().cash:,.2f} USD; replay {replay.times[0]} .. "
            f"{replay.times[-1]} from bar {replay.latest} ({replay.now}) of "
            f"{len(replay.times)}, {pace}; Ctrl-C stops")


def serve_forever(gateway: Gateway, *, host: str = "127.0.0.1", port: int = 4002,
                  allow_remote: bool = False, announce: Callable[[str], None] = print) -> None:
    """Start ``gateway`` on ``host:port``, ``announce`` :func:`describe`'s line, serve
    until SIGINT or SIGTERM, then close every connection and return.

    Raises:
        InputError: a non-loopback host without ``allow_remote``, a bad port.
        RetryableError: the port is in use.
    """
    asyncio.run(_serve(gateway, host, port, allow_remote, announce))


async def _serve(gateway: Gateway, host: str, port: int, allow_remote: bool,
                 announce: Callable[[str], None]) -> None:
    await gateway.start(host, port, allow_remote=allow_remote)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        announce(describe(gateway, host))
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await gateway.close()
