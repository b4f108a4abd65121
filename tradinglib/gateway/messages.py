"""Encoders of the server->client messages, one function per message id, each giving
the fields in the order of ``../shared/reference/tws-protocol.md`` section 5 at the
negotiated server ``version`` (157..178).

Unset values are empty strings; counts the clients read with ``int()`` are ``0``.
Prices are USD, quantities shares, times replay times.
"""

from __future__ import annotations

import pandas as pd

from tradinglib.gateway.contract import Instrument
from tradinglib.gateway.framing import UNSET_DOUBLE, Field
from tradinglib.gateway.records import ExecutionRecord, OrderRecord

Fields = list[Field]


def ib_time(time: pd.Timestamp) -> str:
    """``YYYYMMDD HH:MM:SS Zone`` as the clients parse it (zone from the timestamp)."""
    return f"{time:%Y%m%d %H:%M:%S} {time.tz or 'UTC'}"


def error(version: int, req_id: int, code: int, text: str) -> Fields:
    """errMsg (4): ``req_id`` is the order id for order errors, -1 for general ones."""
    return [4, 2, req_id, code, text, *([""] if version >= 166 else [])]


def managed_accounts(account: str) -> Fields:
    """managedAccounts (15): exactly 3 fields."""
    return [15, 1, account]


def next_valid_id(order_id: int) -> Fields:
    """nextValidId (9): exactly 3 fields; also the answer to reqIds."""
    return [9, 1, order_id]


def current_time(time: pd.Timestamp) -> Fields:
    """currentTime (49): epoch seconds."""
    return [49, 1, int(time.timestamp())]


def position(account: str, inst: Instrument, shares: int, avg_cost: float) -> Fields:
    """position (61): strictly 16 fields."""
    return [61, 3, account, *inst.c11(), shares, avg_cost]


def position_end() -> Fields:
    """positionEnd (62)."""
    return [62, 1]


def account_value(key: str, value: str, currency: str, account: str) -> Fields:
    """updateAccountValue (6)."""
    return [6, 2, key, value, currency, account]


def portfolio(inst: Instrument, account: str, shares: int, price: float, avg_cost: float,
              unrealized: float, realized: float) -> Fields:
    """updatePortfolio (7): strictly 20 fields, every number non-empty."""
    return [7, 8, inst.con_id, inst.symbol, "STK", "", "0.0", "", "", inst.primary_exchange,
            inst.currency, inst.symbol, inst.symbol, shares, price, shares * price, avg_cost,
            unrealized, realized, account]


def account_time(time: pd.Timestamp) -> Fields:
    """updateAccountTime (8): ``HH:MM``."""
    return [8, 1, f"{time:%H:%M}"]


def account_download_end(account: str) -> Fields:
    """accountDownloadEnd (54)."""
    return [54, 1, account]


def account_update_multi(req_id: int, account: str, key: str, value: str,
                         currency: str) -> Fields:
    """accountUpdateMulti (73), model code empty."""
    return [73, 1, req_id, account, "", key, value, currency]


def account_update_multi_end(req_id: int) -> Fields:
    """accountUpdateMultiEnd (74)."""
    return [74, 1, req_id]


def account_summary(req_id: int, account: str, tag: str, value: str,
                    currency: str) -> Fields:
    """accountSummary (63)."""
    return [63, 1, req_id, account, tag, value, currency]


def account_summary_end(req_id: int) -> Fields:
    """accountSummaryEnd (64)."""
    return [64, 1, req_id]


def contract_data(version: int, req_id: int, inst: Instrument) -> Fields:
    """contractData (10): 40 fields at >= 164; below, a version field after the id and
    ``mdSizeMultiplier`` after ``minTick``; at exactly 163 ``suggestedSizeIncrement``."""
    head: Fields = [10, *([8] if version < 164 else []), req_id, inst.symbol, "STK", "", 0.0,
                    "", inst.exchange, inst.currency, inst.symbol, "NMS", inst.symbol,
                    inst.con_id, inst.min_tick, *([1] if version < 164 else [])]
    body: Fields = ["", "ACTIVETIM,LMT,MKT", f"{inst.exchange},{inst.primary_exchange}", 1, 0,
                    inst.symbol, inst.primary_exchange, "", "", "", "", inst.time_zone, "", "",
                    "", "", 0, 1, "", "", "26", "", "COMMON"]
    if version == 163:
        tail: Fields = [1]
    elif version >= 164:
        tail = [1, 1, 1]
    else:
        tail = []
    return [*head, *body, *tail]


def contract_data_end(req_id: int) -> Fields:
    """contractDataEnd (52)."""
    return [52, 1, req_id]


def _quantity(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _order_head(order: OrderRecord, inst: Instrument, account: str) -> Fields:
    """Contract (C11 layout with strike) plus the order fields both order messages share,
    from ``action`` to ``orderRef``."""
    limit = "" if order.limit_price is None else order.limit_price
    return [inst.con_id, inst.symbol, "STK", "", 0.0, "", "", inst.exchange, inst.currency,
            inst.symbol, inst.symbol, order.action, _quantity(order.quantity),
            order.order_type, limit, "", order.tif, "", account, "O", 0, order.order_ref]


def open_order(version: int, order: OrderRecord, inst: Instrument, account: str, *,
               what_if: tuple[str, ...] | None = None) -> Fields:
    """openOrder (5): 127 fields at 178 for a plain stock order (128 below 177, with
    faProfile). ``what_if``: the 9 margin fields and the commission, for a whatIf answer."""
    margins: tuple[str, ...] = what_if or ("",) * 9 + (UNSET_DOUBLE,)
    fields: Fields = [5, order.order_id, *_order_head(order, inst, account), order.client_id,
                      order.perm_id, 0, 0, 0, "", "", "", "", "",
                      *([""] if version < 177 else [])]
    fields += ["", "", "", "", "", 0, "", -1, 0, "", "", "", "", "", "", 0, 0, 0, "", 0,
               0, 0, "", 0, 0, "", 0, "", "",  # modelCode .. deltaNeutralAuxPrice
               0, 0, "", "", "", "", "",  # continuousUpdate .. comboLegsDescrip
               0, 0, 0, "", "", "", "", 0, "", "IB", 0, 0, "", 0,  # counts .. solicited
               int(what_if is not None), order.status, *margins[:9], margins[9],
               UNSET_DOUBLE, UNSET_DOUBLE, "USD", "", 0, 0, 0,  # .. conditionsCount
               "", "", "", "", "", "", "", 0, "", "", "", "", 0, 0, "", 0]
    if version >= 159:
        fields.append("")  # duration
    if version >= 160:
        fields.append("")  # postToAts
    if version >= 162:
        fields.append(0)  # autoCancelParent
    if version >= 170:
        fields += ["", "", "", "", ""]
    return fields


def open_order_end() -> Fields:
    """openOrderEnd (53)."""
    return [53, 1]


def completed_order(version: int, order: OrderRecord, inst: Instrument,
                    account: str) -> Fields:
    """completedOrder (101): 96 fields at >= 177, 97 below (faProfile); no order id, no
    client id and no sharesAllocation slot."""
    done = "" if order.completed is None else ib_time(order.completed)
    fields: Fields = [101, *_order_head(order, inst, account), order.perm_id, 0, 0, 0, "",
                      "", "", "", *([""] if version < 177 else [])]
    fields += ["", "", "", "", "", 0, "", -1, "", "", "", "", "", "", 0, 0, "", 0, 0, "",
               0, "", "",  # modelCode .. deltaNeutralAuxPrice
               0, 0, "", "", "", 0, 0, 0, "", "", "", "", "", "IB", 0, 0, "",  # .. algo
               0, order.status, 0, 0, 0,  # solicited .. conditionsCount
               "", "", "", 0, 0, "", _quantity(order.filled), 0, 0, "", 0, 0, "",
               done, order.reason or order.status]
    if version >= 170:
        fields += ["", "", "", "", ""]
    return fields


def completed_orders_end() -> Fields:
    """completedOrdersEnd (102): no version field."""
    return [102]


def order_status(order: OrderRecord, *, last_fill_price: float = 0.0) -> Fields:
    """orderStatus (3): no version field; carries the order's own client id."""
    return [3, order.order_id, order.status, _quantity(order.filled),
            _quantity(order.quantity - order.filled), order.avg_fill_price, order.perm_id, 0,
            last_fill_price, order.client_id, "", 0.0]


def exec_details(version: int, req_id: int, fill: ExecutionRecord, inst: Instrument,
                 account: str) -> Fields:
    """execDetails (11): 31 fields, 32 at >= 178 (pendingPriceRevision); live fills use
    ``req_id`` -1."""
    return [11, req_id, fill.order_id, *inst.c11(), fill.exec_id, ib_time(fill.time), account,
            "ISLAND", fill.side, fill.shares, fill.price, fill.perm_id, fill.client_id, 0,
            fill.shares, fill.price, fill.order_ref, "", "", "", 1,
            *([0] if version >= 178 else [])]


def exec_details_end(req_id: int) -> Fields:
    """execDetailsEnd (55)."""
    return [55, 1, req_id]


def commission_report(fill: ExecutionRecord) -> Fields:
    """commissionReport (59): strictly 8 fields."""
    return [59, 1, fill.exec_id, fill.commission, "USD", fill.realized_pnl, UNSET_DOUBLE, ""]


def historical_data(req_id: int, start: str, end: str, rows: list[Fields]) -> Fields:
    """historicalData (17): no version field; ``rows`` of (date, open, high, low, close,
    volume, wap, count)."""
    return [17, req_id, start, end, len(rows), *(v for row in rows for v in row)]


def historical_update(req_id: int, row: Fields) -> Fields:
    """historicalDataUpdate (90) from a historical row: note open, close, high, low."""
    date, o, h, low, c, volume, wap, count = row
    return [90, req_id, count, date, o, c, h, low, wap, volume]


def realtime_bar(req_id: int, time: pd.Timestamp, o: float, h: float, low: float, c: float,
                 volume: float) -> Fields:
    """realtimeBar (50): epoch seconds, OHLC, volume, wap (the close), count."""
    return [50, 3, req_id, int(time.timestamp()), o, h, low, c, volume, c, 1]


def tick_price(req_id: int, tick_type: int, price: float, size: float) -> Fields:
    """tickPrice (1): strictly 7 fields (1 bid, 2 ask, 4 last, 9 close)."""
    return [1, 6, req_id, tick_type, price, size, 0]


def tick_size(req_id: int, tick_type: int, size: float) -> Fields:
    """tickSize (2): 8 = volume."""
    return [2, 6, req_id, tick_type, size]


def tick_snapshot_end(req_id: int) -> Fields:
    """tickSnapshotEnd (57)."""
    return [57, 1, req_id]


def market_data_type(req_id: int) -> Fields:
    """marketDataType (58): 1 = live (replayed) data."""
    return [58, 1, req_id, 1]


def tick_req_params(req_id: int, inst: Instrument) -> Fields:
    """tickReqParams (81)."""
    return [81, req_id, inst.min_tick, "", 3]
