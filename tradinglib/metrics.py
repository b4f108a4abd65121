"""Performance statistics of an equity curve, computed by empyrical-reloaded."""

from __future__ import annotations

import math

import empyrical as ep
import numpy as np
import pandas as pd

from tradinglib.exceptions import InputError

TRADING_DAYS_PER_YEAR = 252


def periods_per_year(index: pd.DatetimeIndex) -> float:
    """Bars per year for annualization: 252 trading days x the median bars per day.

    Daily (or slower) bars give 252 x bars-per-day where that is below one, e.g. weekly
    bars give about 52. Raises InputError for fewer than two timestamps.
    """
    if len(index) < 2:
        raise InputError("need at least two bars to infer the bar frequency")
    spacing = pd.Series(index).diff().dropna().median()
    if spacing >= pd.Timedelta(days=1):
        return TRADING_DAYS_PER_YEAR * pd.Timedelta(days=1) / min(spacing, pd.Timedelta(days=7))
    per_day = pd.Series(1, index=index).groupby(index.date).size().median()
    return float(TRADING_DAYS_PER_YEAR * per_day)


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
