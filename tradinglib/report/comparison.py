"""A run's headline figures, and a paper session compared with a backtest."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
from matplotlib.figure import Figure

from tradinglib.exceptions import InputError
from tradinglib.report.figures import equity_figure
from tradinglib.report.formatting import _action_names, _utc


@dataclass(frozen=True, slots=True)
class Headline:
    """The figures a reader looks at first.

    Attributes:
        start_equity, final_equity, pnl: USD.
        total_return: fraction (0.01 = 1%).
        trades: number of fills. decisions: number of decision bars.
        first, last: times of the first and last equity points.
    """

    start_equity: float
    final_equity: float
    pnl: float
    total_return: float
    trades: int
    decisions: int
    first: pd.Timestamp | None
    last: pd.Timestamp | None

    def sentence(self, what: str = "The session") -> str:
        """One plain sentence, e.g. "The session made USD +123.45 (+0.12%) with 4 trades"."""
        verb = "made" if self.pnl >= 0 else "lost"
        span = ""
        if self.first is not None and self.last is not None:
            span = f" from {self.first:%Y-%m-%d %H:%M} to {self.last:%Y-%m-%d %H:%M}"
        trades = f"{self.trades} trade{'s' if self.trades != 1 else ''}"
        return (f"{what} {verb} USD {abs(self.pnl):,.2f} ({self.total_return:+.2%}) with "
                f"{trades} over {self.decisions} decisions{span}, ending at USD "
                f"{self.final_equity:,.2f}.")

    def table(self) -> pd.DataFrame:
        """(figure, value) rows of the headline."""
        rows = [("profit and loss", f"USD {self.pnl:+,.2f}"),
                ("return", f"{self.total_return:+.2%}"),
                ("starting equity", f"USD {self.start_equity:,.2f}"),
                ("final equity", f"USD {self.final_equity:,.2f}"),
                ("trades", str(self.trades)),
                ("decisions", str(self.decisions))]
        return pd.DataFrame(rows, columns=["figure", "value"])


def headline(equity: pd.Series, trades: pd.DataFrame, decisions: pd.DataFrame) -> Headline:
    """P&L and return from the first to the last point of ``equity``.

    Raises:
        InputError: ``equity`` is empty.
    """
    if equity.empty:
        raise InputError("no equity points: the run recorded no equity curve")
    start, final = float(equity.iloc[0]), float(equity.iloc[-1])
    index = pd.DatetimeIndex(equity.index) if isinstance(equity.index, pd.DatetimeIndex) \
        else None
    return Headline(start, final, final - start, final / start - 1.0, len(trades),
                    len(decisions), index[0] if index is not None else None,
                    index[-1] if index is not None else None)


@dataclass(frozen=True)
class Comparison:
    """A paper session against a backtest of the same model on the same bars.

    Attributes:
        compared: decision times present in both.
        agreement: share of those where both took the same action (None if none compared).
        disagreements: time, paper, backtest (actions) where they differ.
        paper_only, backtest_only: decision times present in one only.
        paper_equity, backtest_equity: the equity curves (USD), UTC-indexed.
    """

    compared: int
    agreement: float | None
    disagreements: pd.DataFrame
    paper_only: int
    backtest_only: int
    paper_equity: pd.Series = field(repr=False)
    backtest_equity: pd.Series = field(repr=False)

    def table(self) -> pd.DataFrame:
        """(figure, value) rows: agreement, bars compared, final equities and their gap."""
        rows = [("actions agreement",
                 "n/a" if self.agreement is None else f"{self.agreement:.1%}"),
                ("decisions compared", str(self.compared)),
                ("decisions differing", str(len(self.disagreements))),
                ("paper-only decisions", str(self.paper_only)),
                ("backtest-only decisions", str(self.backtest_only))]
        if not self.paper_equity.empty and not self.backtest_equity.empty:
            paper, back = float(self.paper_equity.iloc[-1]), float(self.backtest_equity.iloc[-1])
            rows += [("paper final equity", f"USD {paper:,.2f}"),
                     ("backtest final equity", f"USD {back:,.2f}"),
                     ("difference", f"USD {paper - back:+,.2f}")]
        return pd.DataFrame(rows, columns=["figure", "value"])


def compare_runs(paper_decisions: pd.DataFrame, backtest_decisions: pd.DataFrame,
                 paper_equity: pd.Series | None = None,
                 backtest_equity: pd.Series | None = None) -> Comparison:
    """Compare actions decision by decision (matched on time, in UTC; the first decision
    of a bar decided more than once) and the equity curves.

    Raises:
        InputError: a decisions table lacks the ``time`` or ``action`` column.
    """
    frames = []
    for name, frame in (("paper", paper_decisions), ("backtest", backtest_decisions)):
        if not {"time", "action"} <= set(frame.columns):
            raise InputError(f"{name} decisions need time and action columns, "
                             f"got {list(frame.columns)}")
        actions = _action_names(frame["action"]) if len(frame) else pd.Series(dtype=str)
        series = pd.Series(actions.to_numpy(), index=_utc(frame["time"]), name=name)
        # a live session holds again on a bar it decided on already (stale data): the
        # first decision per bar is the model's
        frames.append(series[~series.index.duplicated(keep="first")])
    paper, back = frames
    joined = pd.concat([paper, back], axis=1, join="inner")
    differ = joined[joined["paper"] != joined["backtest"]]
    disagreements = differ.rename_axis("time").reset_index()

    def utc_curve(curve: pd.Series | None) -> pd.Series:
        if curve is None or curve.empty:
            return pd.Series(dtype=float)
        return pd.Series(curve.to_numpy(dtype=float), index=_utc(curve.index))

    return Comparison(
        compared=len(joined),
        agreement=(1.0 - len(differ) / len(joined)) if len(joined) else None,
        disagreements=disagreements,
        paper_only=int((~paper.index.isin(back.index)).sum()),
        backtest_only=int((~back.index.isin(paper.index)).sum()),
        paper_equity=utc_curve(paper_equity),
        backtest_equity=utc_curve(backtest_equity),
    )


def comparison_figure(comparison: Comparison, *, title: str = "Paper session and backtest"
                      ) -> Figure:
    """The paper and backtest equity curves overlaid, with their drawdowns.

    Raises:
        InputError: the paper equity curve is empty.
    """
    others = {"backtest": comparison.backtest_equity} if not \
        comparison.backtest_equity.empty else {}
    return equity_figure(comparison.paper_equity, title=title, others=others, label="paper")
