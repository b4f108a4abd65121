"""The one instrument a gateway trades and replays, and how requests name it."""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from tradinglib.exceptions import InputError


@dataclass(frozen=True, slots=True)
class Instrument:
    """A US stock as the gateway describes it in contract messages.

    Attributes:
        symbol: ticker, upper case (e.g. ``"GOOGL"``).
        time_zone: IANA zone of the bar times (e.g. ``"America/New_York"``).
        con_id: IB contract id; derived from the symbol when 0.
        exchange, primary_exchange, currency: routing and quote currency.
        min_tick: price increment, USD.

    Raises:
        InputError: an empty or non-alphanumeric symbol.
    """

    symbol: str
    time_zone: str = "America/New_York"
    con_id: int = 0
    exchange: str = "SMART"
    primary_exchange: str = "NASDAQ"
    currency: str = "USD"
    min_tick: float = 0.01

    def __post_init__(self) -> None:
        if not isinstance(self.symbol, str) or not self.symbol.replace(".", "").isalnum():
            raise InputError(f"symbol must be a ticker such as 'GOOGL' (letters, digits, "
                             f"dots), got {self.symbol!r}")
        object.__setattr__(self, "symbol", self.symbol.upper())
        if self.con_id == 0:
            object.__setattr__(self, "con_id", 1 + zlib.crc32(self.symbol.encode()) % 10**8)

    def c11(self) -> list[str | int]:
        """The 11 contract fields of position and execDetails messages."""
        return [self.con_id, self.symbol, "STK", "", "0.0", "", "", self.exchange,
                self.currency, self.symbol, self.symbol]

    def matches(self, c12: list[str]) -> bool:
        """True if the 12 contract fields of a request (conId, symbol, secType, ...,
        currency at 9) name this instrument: its conId, or its symbol as a stock."""
        con_id, symbol, sec_type = c12[0], c12[1], c12[2]
        if con_id not in ("", "0"):
            return con_id == str(self.con_id)
        return (symbol.upper() == self.symbol and sec_type in ("", "STK")
                and c12[9] in ("", self.currency))
