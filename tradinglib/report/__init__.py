"""Figures and tables for the notebooks and the management report.

Every function takes plain data (an equity Series, a decisions or trades DataFrame, a
model card, a manifest dict) and returns a matplotlib :class:`~matplotlib.figure.Figure`
or a pandas DataFrame, so it is tested without a kernel. Figures are built with
``Figure()`` rather than pyplot: nothing global, and a notebook shows one by making it
the cell's last expression (after ``%matplotlib inline``).

Tables of a run share the layouts of :class:`tradinglib.backtest.BacktestResult`:

- equity: USD Series indexed by time;
- decisions: time, action (HOLD/BUY/SELL), verdict (risk reason, empty for HOLD),
  fallback (why HOLD replaced the model's answer, empty otherwise), position (shares);
- trades: time, side, quantity (shares), price and commission (USD), realized_pnl (USD).

:func:`load_run` reads a paper run folder into :class:`RunData`;
:func:`backtest_like` replays the same model over the same bars for the comparison.
"""

from tradinglib.report.comparison import (
    Comparison,
    Headline,
    compare_runs,
    comparison_figure,
    headline,
)
from tradinglib.report.figures import (
    WIDTH,
    correlation_figure,
    equity_figure,
    position_figure,
    price_figure,
)
from tradinglib.report.formatting import drawdown, folder_files, show_table, style_table
from tradinglib.report.policies import TrendPolicy, load_policy
from tradinglib.report.rundata import (
    DECISION_COLUMNS,
    TRADE_COLUMNS,
    RunData,
    backtest_like,
    data_range_table,
    gaps_table,
    load_run,
    paper_vs_backtest,
    session_record_table,
    write_tables,
)
from tradinglib.report.tables import (
    card_metrics_table,
    card_table,
    fallback_table,
    file_hashes_table,
    metrics_table,
    provenance_table,
    rejection_table,
    trades_table,
)

__all__ = [
    "DECISION_COLUMNS",
    "TRADE_COLUMNS",
    "WIDTH",
    "Comparison",
    "Headline",
    "RunData",
    "TrendPolicy",
    "backtest_like",
    "card_metrics_table",
    "card_table",
    "compare_runs",
    "comparison_figure",
    "correlation_figure",
    "data_range_table",
    "drawdown",
    "equity_figure",
    "fallback_table",
    "file_hashes_table",
    "folder_files",
    "gaps_table",
    "headline",
    "load_policy",
    "load_run",
    "metrics_table",
    "paper_vs_backtest",
    "position_figure",
    "price_figure",
    "provenance_table",
    "rejection_table",
    "session_record_table",
    "show_table",
    "style_table",
    "trades_table",
    "write_tables",
]
