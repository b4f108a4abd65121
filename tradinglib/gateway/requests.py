"""Decoders of the client->server requests the gateway serves (field orders of
``../shared/reference/tws-protocol.md`` section 4 at the negotiated server version).
"""

from __future__ import annotations

from dataclasses import dataclass

from tradinglib.gateway.framing import UNSET_DOUBLE, ProtocolError

_UNSET = float(UNSET_DOUBLE)


@dataclass(frozen=True, slots=True)
class PlaceOrder:
    """The fields of a placeOrder (3) the gateway acts on.

    Attributes:
        order_id: the client's order id.
        contract: the 12 contract fields (C12 layout).
        action: ``"BUY"``/``"SELL"`` as sent.
        quantity: ``totalQuantity`` as sent (text, e.g. ``"5"`` or ``"5.0"``).
        order_type: e.g. ``"MKT"``, ``"LMT"``.
        limit_price: ``lmtPrice`` as sent (empty when unset).
        tif, account, order_ref: as sent.
        what_if: True for ``whatIfOrder`` (a margin and commission preview only).
    """

    order_id: int
    contract: list[str]
    action: str
    quantity: str
    order_type: str
    limit_price: str
    tif: str
    account: str
    order_ref: str
    what_if: bool


@dataclass(frozen=True, slots=True)
class HistoricalRequest:
    """The fields of a reqHistoricalData (20).

    Attributes:
        req_id: request id.
        contract: the 12 contract fields.
        end: ``endDateTime`` (empty: now).
        bar_size: e.g. ``"1 day"``, ``"5 mins"``.
        duration: e.g. ``"1 Y"``, ``"3600 S"``.
        format_date: 1 text dates, 2 epoch seconds.
        keep_up_to_date: send a historicalDataUpdate on each new bar.
    """

    req_id: int
    contract: list[str]
    end: str
    bar_size: str
    duration: str
    format_date: int
    keep_up_to_date: bool


def integer(fields: list[str], index: int, name: str) -> int:
    """``fields[index]`` as an int.

    Raises:
        ProtocolError: missing or not an integer.
    """
    try:
        return int(fields[index])
    except (IndexError, ValueError):
        value = fields[index] if index < len(fields) else "nothing"
        raise ProtocolError(f"message {fields[0]}: field {index} ({name}) must be an "
                            f"integer, got {value!r}") from None


def contract(fields: list[str], start: int) -> list[str]:
    """The 12 contract fields starting at ``start``.

    Raises:
        ProtocolError: the message is too short.
    """
    if len(fields) < start + 12:
        raise ProtocolError(f"message {fields[0]}: {len(fields)} fields, too few for a "
                            f"contract at field {start}")
    return fields[start:start + 12]


def place_order(version: int, f: list[str]) -> PlaceOrder:
    """Decode a placeOrder: the fixed head (fields 0-34) and, walking the variable tail,
    ``whatIf``. Combo (BAG) orders are not walked (the gateway refuses them first).

    Raises:
        ProtocolError: too few fields or a malformed count.
    """
    c12 = contract(f, 2)
    what_if = False
    if c12[2] != "BAG":
        what_if = _what_if(version, f)
    return PlaceOrder(order_id=integer(f, 1, "orderId"), contract=c12, action=f[16],
                      quantity=f[17], order_type=f[18], limit_price=f[19], tif=f[21],
                      account=f[23], order_ref=f[26], what_if=what_if)


def _what_if(version: int, f: list[str]) -> bool:
    """Walk the tail of a non-combo placeOrder to its ``whatIf`` field."""
    try:
        i = 42 + (1 if version < 177 else 0)  # after faPercentage (and faProfile)
        i += 24 + (8 if f[i + 22] else 0)  # .. deltaNeutralAuxPrice (+ its 8 fields)
        increment = float(f[i + 6] or 0)
        i += 7 + (7 if 0 < increment < _UNSET else 0)  # .. scale fields
        i += 4 + (1 if f[i + 3] else 0)  # scaleTable .. hedgeType (+ hedgeParam)
        i += 4  # optOutSmartRouting, clearingAccount, clearingIntent, notHeld
        i += 1 + (3 if int(f[i] or 0) else 0)  # deltaNeutralContract
        if f[i]:  # algoStrategy, then its parameters
            i += 1 + int(f[i + 1] or 0) * 2
        i += 1
        return f[i + 1] == "1"  # algoId, whatIf
    except (IndexError, ValueError):
        raise ProtocolError(f"placeOrder {f[1]}: malformed order tail ({len(f)} fields)"
                            ) from None


def historical(fields: list[str]) -> HistoricalRequest:
    """Decode a reqHistoricalData (no version field; combo legs are not served).

    Raises:
        ProtocolError: too few fields or a non-integer field where one is required.
    """
    c12 = contract(fields, 2)
    if len(fields) < 23:
        raise ProtocolError(f"reqHistoricalData: {len(fields)} fields, expected 23")
    return HistoricalRequest(
        req_id=integer(fields, 1, "reqId"), contract=c12, end=fields[15],
        bar_size=fields[16], duration=fields[17],
        format_date=integer(fields, 20, "formatDate"), keep_up_to_date=fields[21] == "1")
