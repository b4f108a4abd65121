"""Report figures: equity and drawdown, position, close price, feature correlations."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import pandas as pd
from matplotlib.figure import Figure

from tradinglib.exceptions import InputError
from tradinglib.report.formatting import _utc, drawdown

WIDTH: Final = 10.0
"""Figure width in inches (fits a report page at the notebook's default DPI)."""


def equity_figure(equity: pd.Series, *, title: str = "Equity",
                  others: Mapping[str, pd.Series] | None = None,
                  label: str = "equity") -> Figure:
    """Equity (USD, top) and its drawdown (percent, bottom) over time.

    Args:
        equity: USD indexed by time.
        title: figure title.
        others: more curves to overlay, by label (e.g. ``{"backtest": ...}``).
        label: legend label of ``equity``.

    Raises:
        InputError: ``equity`` is empty.
    """
    if equity.empty:
        raise InputError("no equity points to plot; the run recorded no equity curve")
    fig = Figure(figsize=(WIDTH, 5.5), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    curves = {label: equity, **(others or {})}
    for i, (name, curve) in enumerate(curves.items()):
        top.plot(curve.index, curve.to_numpy(dtype=float), label=name, linewidth=1.2,
                 linestyle="-" if i == 0 else "--")
        bottom.fill_between(curve.index, drawdown(curve).to_numpy() * 100.0, 0.0,
                            alpha=0.35, label=name, step="post")
    top.set_title(title)
    top.set_ylabel("equity, USD")
    top.grid(alpha=0.3)
    if len(curves) > 1:
        top.legend(loc="best")
    bottom.set_ylabel("drawdown, %")
    bottom.grid(alpha=0.3)
    return fig


def position_figure(decisions: pd.DataFrame, *, title: str = "Position") -> Figure:
    """Shares held after each decision, as a step line, with BUY/SELL fills marked.

    Raises:
        InputError: ``decisions`` has no ``time``/``position`` columns or no rows.
    """
    if decisions.empty or not {"time", "position"} <= set(decisions.columns):
        raise InputError("no decisions with a position to plot")
    times = pd.to_datetime(decisions["time"], utc=True)
    position = decisions["position"].astype(float)
    fig = Figure(figsize=(WIDTH, 3.0), layout="constrained")
    ax = fig.subplots()
    ax.step(times, position, where="post", linewidth=1.2, color="tab:blue")
    change = position.diff().fillna(position.iloc[0])
    for mask, marker, color, name in ((change > 0, "^", "tab:green", "bought"),
                                      (change < 0, "v", "tab:red", "sold")):
        if mask.any():
            ax.scatter(times[mask], position[mask], marker=marker, color=color, s=18,
                       label=name, zorder=3)
    ax.set_title(title)
    ax.set_ylabel("shares")
    ax.grid(alpha=0.3)
    if (change != 0).any():
        ax.legend(loc="best")
    return fig


def price_figure(bars: pd.DataFrame, *, title: str = "Close price",
                 trades: pd.DataFrame | None = None) -> Figure:
    """Close price of ``bars``, with the fills of ``trades`` marked (side BUY/SELL)."""
    fig = Figure(figsize=(WIDTH, 3.5), layout="constrained")
    ax = fig.subplots()
    zone = pd.DatetimeIndex(bars.index).tz
    ax.plot(bars.index, bars["close"].to_numpy(dtype=float), linewidth=1.0, label="close")
    if trades is not None and not trades.empty:
        sides = trades["side"].astype(str).str.upper()
        for side, marker, color in (("BUY", "^", "tab:green"), ("SELL", "v", "tab:red")):
            rows = trades[sides.str.startswith(side[0])]
            if not rows.empty:
                ax.scatter(_utc(rows["time"]).tz_convert(zone),
                           rows["price"], marker=marker, color=color, s=18, label=side.lower(),
                           zorder=3)
        ax.legend(loc="best")
    ax.set_title(title)
    ax.set_ylabel("price")
    ax.grid(alpha=0.3)
    return fig


def correlation_figure(features: pd.DataFrame, *, title: str = "Feature correlations"
                       ) -> Figure:
    """Heatmap of the Pearson correlations between the columns of ``features``."""
    corr = features.astype(float).corr().fillna(0.0)
    n = len(corr)
    size = max(4.0, 0.32 * n + 2.0)
    fig = Figure(figsize=(size + 1.0, size), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(corr.to_numpy(), cmap="RdBu_r", vmin=-1.0, vmax=1.0)
    ax.set_xticks(range(n), list(corr.columns), rotation=90, fontsize=8)
    ax.set_yticks(range(n), list(corr.index), fontsize=8)
    ax.set_title(title)
    fig.colorbar(image, ax=ax, shrink=0.8, label="correlation")
    return fig
