"""The paper-only guard: tradinglib never trades a live Interactive Brokers account.

Two independent checks, both before any order: the port is not one of IB's live ports
(TWS 7496, IB Gateway 4001), and every account the connection manages is a paper
account (IB paper account ids start with ``"DU"``). Nothing turns this off.
"""

from __future__ import annotations

from collections.abc import Iterable

from tradinglib.exceptions import StopError

LIVE_PORTS: frozenset[int] = frozenset({7496, 4001})
"""IB's default live-trading ports: TWS 7496, IB Gateway 4001."""

PAPER_ACCOUNT_PREFIX = "DU"
"""IB paper account ids start with this."""


class LiveTradingRefused(StopError):
    """The connection would reach a live account; tradinglib trades paper accounts only."""


def check_port(port: int) -> None:
    """Refuse IB's live ports.

    Raises:
        LiveTradingRefused: ``port`` is 7496 (TWS live) or 4001 (IB Gateway live).
    """
    if port in LIVE_PORTS:
        raise LiveTradingRefused(
            f"port {port} is a live-trading port (TWS live 7496, IB Gateway live 4001); "
            f"tradinglib trades paper accounts only: use TWS paper 7497 or IB Gateway "
            f"paper 4002 (or `tradinglib gateway`, which listens on 4002)")


def check_accounts(accounts: Iterable[str]) -> None:
    """Refuse unless there is at least one account and every one is a paper account.

    Raises:
        LiveTradingRefused: no managed account, or one not starting with ``"DU"``.
    """
    ids = [a for a in accounts if a]
    if not ids:
        raise LiveTradingRefused("the gateway reported no managed account; cannot confirm "
                                 "that it is a paper account, so nothing is traded")
    live = [a for a in ids if not a.startswith(PAPER_ACCOUNT_PREFIX)]
    if live:
        raise LiveTradingRefused(
            f"account(s) {', '.join(live)} are not paper accounts (paper ids start with "
            f"{PAPER_ACCOUNT_PREFIX!r}); tradinglib trades paper accounts only. Log in to "
            f"TWS / IB Gateway with your paper-trading user")
