"""Performance statistics of an equity curve, computed by empyrical-reloaded."""

from __future__ import annotations

import math
from typing import Any

import empyrical as ep
import numpy as np
import numpy.typing as npt
import pandas as pd

from tradinglib.data import local_days
from tradinglib.exceptions import InputError

TRADING_DAYS_PER_YEAR = 252


def periods_per_year(index: pd.DatetimeIndex) -> float:
    """Bars per year for annualization: 252 trading days x the median bars per day.

    Daily (or slower) bars give 252 x bars-per-day where that is below one, e.g. weekly
    bars give about 52. Raises InputError for fewer than two timestamps.
    """
    if len(index) < 2:
        raise InputError("need at least two bars to infer the bar frequency")
    # the median spacing as pandas' Series.diff().median() gives it (truncated to the
    # index's unit), from the integers: several times faster
    spacing = pd.Timedelta(int(np.median(np.diff(index.asi8))), unit=index.unit)
    if spacing >= pd.Timedelta(days=1):
        return TRADING_DAYS_PER_YEAR * pd.Timedelta(days=1) / min(spacing, pd.Timedelta(days=7))
    _, per_day = np.unique(local_days(index), return_counts=True)
    return float(TRADING_DAYS_PER_YEAR * np.median(per_day))


def performance_metrics(equity: pd.Series) -> dict[str, float | None]:
    """Return, risk and drawdown figures of an equity curve (USD, indexed by bar time).

    Keys: total_return, cagr, annual_volatility, sharpe, sortino, max_drawdown, calmar
    (fractions, e.g. 0.05 = 5%; ratios annualized by :func:`periods_per_year`).
    A figure that is undefined (e.g. Sharpe of a flat curve) is None.
    """
    if len(equity) < 2:
        raise InputError(f"need at least two equity points, got {len(equity)}")
    returns = equity.pct_change().dropna()
    ann = periods_per_year(pd.DatetimeIndex(equity.index))
    figures = {
        "total_return": float(equity.iloc[-1] / equity.iloc[0] - 1.0),
        "cagr": ep.annual_return(returns, annualization=ann),
        "annual_volatility": ep.annual_volatility(returns, annualization=ann),
        "sharpe": ep.sharpe_ratio(returns, annualization=ann),
        "sortino": ep.sortino_ratio(returns, annualization=ann),
        "max_drawdown": ep.max_drawdown(returns),
        "calmar": ep.calmar_ratio(returns, annualization=ann),
    }
    return {k: _finite_or_none(v) for k, v in figures.items()}


def _finite_or_none(value: object) -> float | None:
    """``value`` as a float, or None where it is NaN or infinite."""
    x = float(np.asarray(value))
    return x if math.isfinite(x) else None


def trading_metrics(
    equity: pd.Series,
    trades: pd.DataFrame,
    decisions: pd.DataFrame,
    closing: npt.NDArray[np.bool_],
    buy_and_hold_return: float,
) -> dict[str, Any]:
    """The figures of a backtest or a paper session.

    Args:
        equity: account equity (USD) by bar time.
        trades: one row per fill with quantity, price, commission, realized_pnl.
        decisions: one row per decision with verdict ("" for HOLD), fallback ("" when the
            model answered) and position (shares after the step).
        closing: per fill, whether it reduced the position.
        buy_and_hold_return: the instrument's return over the same bars.

    Returns :func:`performance_metrics` plus bars, trades, win_rate (share of reducing
    fills with positive realized P&L), exposure (share of decisions ending with a
    position), turnover (traded value / mean equity), commissions and final_equity (USD),
    buy_and_hold_return, rejections (count by reason) and hold_fallbacks.
    """
    closed = trades[closing]
    n = len(decisions)
    counts = decisions["verdict"].value_counts(sort=False)  # in order of first appearance
    return {
        **performance_metrics(equity),
        "bars": n,
        "trades": len(trades),
        "win_rate": float((closed["realized_pnl"] > 0).mean()) if len(closed) else None,
        "exposure": float(np.count_nonzero(decisions["position"]) / n) if n else None,
        "turnover": float((trades["quantity"] * trades["price"]).sum()) / float(equity.mean()),
        "commissions": round(float(trades["commission"].sum()), 2),
        "final_equity": round(float(equity.iloc[-1]), 2),
        "buy_and_hold_return": float(buy_and_hold_return),
        "rejections": {str(reason): int(count) for reason, count in counts.items()
                       if count and reason not in ("", "APPROVED")},
        "hold_fallbacks": int((decisions["fallback"] != "").sum()),
    }
