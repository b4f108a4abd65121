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

from __future__ import annotations

import json
import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import pandas as pd
import yaml
from matplotlib.figure import Figure

from tradinglib.backtest import BacktestResult, summary_rows
from tradinglib.data import source_path
from tradinglib.exceptions import InputError, ModelError
from tradinglib.features import FEATURE_NAMES
from tradinglib.modelcard import ModelCard, read_card
from tradinglib.paths import resolve
from tradinglib.types import Action, Policy

if TYPE_CHECKING:
    from pandas.io.formats.style import Styler

__all__ = [
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

WIDTH: Final = 10.0
"""Figure width in inches (fits a report page at the notebook's default DPI)."""

_NO_REASON: Final = {"", "APPROVED", "nan", "None"}
_HEX = frozenset("0123456789abcdef")
DECISION_COLUMNS: Final = ("time", "action", "verdict", "fallback", "position")
TRADE_COLUMNS: Final = ("time", "side", "quantity", "price", "commission", "realized_pnl")


# ------------------------------------------------------------------ small helpers


def _utc(values: Any) -> pd.DatetimeIndex:
    """Times (strings, naive or aware) as a UTC DatetimeIndex (naive means UTC)."""
    return pd.DatetimeIndex(pd.to_datetime(values, utc=True))


def _text(value: object) -> str:
    """A table cell's text: "" for missing values."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def _short(value: object, keep: int = 12) -> str:
    """A 64-hex sha256 shortened to ``keep`` characters plus an ellipsis; others as text."""
    text = _text(value)
    if len(text) == 64 and set(text) <= _HEX:
        return text[:keep] + "…"
    return text


def _money(value: float) -> str:
    return f"{value:,.2f}"


def _action_names(values: pd.Series) -> pd.Series:
    """Actions as names (HOLD/BUY/SELL), whether given as names or ids."""
    def name(value: object) -> str:
        if isinstance(value, int | np.integer) and not isinstance(value, bool):
            return Action(int(value)).name
        text = _text(value)
        return Action(int(text)).name if text.isdigit() else text.upper()

    return values.map(name).astype(str)


def drawdown(equity: pd.Series) -> pd.Series:
    """Drawdown of an equity curve: equity / running peak - 1 (0 at a peak, e.g. -0.05)."""
    values = equity.astype(float)
    return values / values.cummax() - 1.0


def style_table(table: pd.DataFrame, *, caption: str | None = None) -> Styler:
    """``table`` as a pandas Styler without the index, text columns left-aligned, for
    HTML output in notebooks."""
    text: list[Hashable] = [c for c in table.columns
                            if not pd.api.types.is_numeric_dtype(table[c])]
    styler = table.style.hide(axis="index").set_properties(subset=text,
                                                           **{"text-align": "left"})
    return styler.set_caption(caption) if caption else styler


def show_table(table: pd.DataFrame, *, empty: str = "None.") -> Any:
    """What a notebook displays for ``table``: the styled table, or the sentence ``empty``
    (as Markdown) when it has no rows."""
    from IPython.display import Markdown

    return Markdown(empty) if table.empty else style_table(table)  # type: ignore[no-untyped-call]


def folder_files(folder: str | Path, *, exclude: Sequence[str] = ("results.json",)
                 ) -> list[str]:
    """Names of the files directly in ``folder``, sorted, without ``exclude``."""
    return sorted(p.name for p in Path(folder).iterdir() if p.is_file() and p.name not in exclude)


# ------------------------------------------------------------------ figures


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


# ------------------------------------------------------------------ tables


def metrics_table(metrics: Mapping[str, Any]) -> pd.DataFrame:
    """Figures of a backtest or session as (figure, value) rows, formatted for reading."""
    return pd.DataFrame(summary_rows(dict(metrics)), columns=["figure", "value"])


_CARD_FIGURES: Final = ("total_return", "buy_and_hold_return", "sharpe", "max_drawdown",
                        "trades", "final_equity")


def card_metrics_table(card: ModelCard) -> pd.DataFrame:
    """The card's evaluation figures: one row per figure, one column per range."""
    ranges = [("train", card.training_data), ("holdout", card.holdout_data)]
    columns: dict[str, list[str]] = {"figure": list(_CARD_FIGURES)}
    for name, info in ranges:
        if info is None or name not in card.metrics:
            continue
        values = dict(summary_rows({k: card.metrics[name].get(k) for k in _CARD_FIGURES}))
        columns[f"{name} {info.start[:10]}..{info.end[:10]}"] = [values[k]
                                                                  for k in _CARD_FIGURES]
    return pd.DataFrame(columns)


def card_table(card: ModelCard) -> pd.DataFrame:
    """What a reader needs to know about a model: file, hash, training and holdout ranges."""
    rows = [
        ("model file", card.model_file),
        ("sha256", _short(card.sha256)),
        ("trained", card.created),
        ("algorithm", f"{card.algorithm} ({card.policy})"),
        ("training steps", f"{card.total_timesteps:,}"),
        ("seed", str(card.seed)),
        ("training data", f"{card.training_data.source}: {card.training_data.start[:10]} .. "
                          f"{card.training_data.end[:10]} ({card.training_data.rows:,} bars)"),
    ]
    if card.holdout_data is not None:
        info = card.holdout_data
        rows.append(("held-out data", f"{info.source}: {info.start[:10]} .. {info.end[:10]} "
                                      f"({info.rows:,} bars)"))
    holdout = card.metrics.get("holdout", {})
    for key, label in (("total_return", "held-out return"), ("sharpe", "held-out Sharpe"),
                       ("max_drawdown", "held-out max drawdown")):
        if key in holdout:
            rows.append((label, dict(summary_rows({key: holdout[key]}))[key]))
    rows.append(("features", f"{len(card.feature_names)} (version {card.feature_version})"))
    return pd.DataFrame(rows, columns=["item", "value"])


def trades_table(trades: pd.DataFrame) -> pd.DataFrame:
    """Fills formatted for reading: time, side, shares, price, commission, realized P&L."""
    if trades.empty:
        return pd.DataFrame(columns=["time", "side", "shares", "price", "commission",
                                     "realized P&L"])
    return pd.DataFrame({
        "time": [_text(t) for t in trades["time"]],
        "side": trades["side"].astype(str).str.upper(),
        "shares": trades["quantity"].abs().astype(int),
        "price": trades["price"].astype(float).map(_money),
        "commission": trades["commission"].astype(float).map(_money),
        "realized P&L": trades["realized_pnl"].astype(float).map(lambda v: f"{v:+,.2f}"),
    })


def rejection_table(decisions: pd.DataFrame) -> pd.DataFrame:
    """Orders the risk guard rejected, counted by reason (most frequent first).

    Columns: reason, rejected (count), share (of all order intents, percent text).
    """
    if decisions.empty or "verdict" not in decisions:
        return pd.DataFrame(columns=["reason", "rejected", "share"])
    verdicts = decisions["verdict"].map(_text)
    intents = int((verdicts != "").sum())
    rejected = verdicts[~verdicts.isin(_NO_REASON)]
    counts = rejected.value_counts()
    return pd.DataFrame({
        "reason": [str(r) for r in counts.index],
        "rejected": [int(c) for c in counts.to_numpy()],
        "share": [f"{c / intents:.1%}" for c in counts.to_numpy()],
    })


def fallback_table(decisions: pd.DataFrame) -> pd.DataFrame:
    """HOLD fallbacks (the model could not answer) counted by kind.

    The kind is the reason up to its first colon (``"timeout"``, ``"invalid observation"``,
    ``"model error"``). Columns: kind, count, first (time), example (one full reason).
    """
    columns = ["kind", "count", "first", "example"]
    if decisions.empty or "fallback" not in decisions:
        return pd.DataFrame(columns=columns)
    reasons = decisions["fallback"].map(_text)
    rows = decisions[reasons != ""]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    kinds = reasons[reasons != ""].str.split(":", n=1).str[0].str.strip()
    out = []
    for kind, group in rows.groupby(kinds, sort=False):
        out.append((str(kind), len(group), _text(group["time"].iloc[0]),
                    _text(group["fallback"].iloc[0])))
    return pd.DataFrame(out, columns=columns).sort_values("count", ascending=False,
                                                          kind="stable")


def provenance_table(manifest: Mapping[str, Any]) -> pd.DataFrame:
    """A run manifest as (item, value) rows: status, times, git commit, versions, hashes.

    Nested mappings become ``parent.child`` items; the per-file fingerprints (``files``:
    file -> {sha256, bytes}) are summarized as a count (:func:`file_hashes_table` lists
    them); sha256 values are shortened to 12 characters.
    """
    rows: list[tuple[str, str]] = []

    def walk(prefix: str, value: object) -> None:
        if isinstance(value, Mapping):
            if prefix == "files" and value and all(
                    isinstance(v, Mapping) and _is_sha(v.get("sha256")) for v in value.values()):
                rows.append((prefix, f"{len(value)} files (fingerprints listed below)"))
                return
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), item)
        elif isinstance(value, list | tuple):
            if all(not isinstance(v, Mapping | list | tuple) for v in value) and len(value) <= 6:
                rows.append((prefix, ", ".join(_short(v) for v in value)))
            else:
                rows.append((prefix, f"{len(value)} entries"))
        else:
            rows.append((prefix, _short(value)))

    walk("", manifest)
    return pd.DataFrame(rows, columns=["item", "value"])


def _is_sha(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and set(value) <= _HEX


def file_hashes_table(manifest: Mapping[str, Any]) -> pd.DataFrame:
    """The per-file sha256 list of a manifest: file, sha256 (full), size if given.

    Reads ``manifest["files"]`` where present, else the first mapping (at any depth) whose
    values are sha256 strings or records with a ``sha256`` key.
    """
    found: list[tuple[str, str, str]] = []
    is_sha = _is_sha

    def walk(value: object) -> bool:
        if isinstance(value, Mapping):
            if value and all(is_sha(v) for v in value.values()) and len(value) > 1:
                found.extend((str(k), str(v), "") for k, v in value.items())
                return True
            if value and all(isinstance(v, Mapping) and is_sha(v.get("sha256"))
                             for v in value.values()):
                found.extend((str(k), str(v["sha256"]), _text(v.get("size", v.get("bytes"))))
                             for k, v in value.items())
                return True
            return any(walk(v) for v in value.values())
        if isinstance(value, list) and value and all(
                isinstance(v, Mapping) and is_sha(v.get("sha256")) for v in value):
            found.extend((_text(v.get("path", v.get("file", v.get("name")))), str(v["sha256"]),
                          _text(v.get("size", v.get("bytes")))) for v in value)
            return True
        return False

    if "files" not in manifest or not walk({"files": manifest["files"]}):
        walk(manifest)
    return pd.DataFrame(found, columns=["file", "sha256", "size"])


# ------------------------------------------------------------------ headline, comparison


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


# ------------------------------------------------------------------ run folders


@dataclass(frozen=True)
class RunData:
    """What the report needs from a paper run folder (see :func:`load_run`).

    Attributes:
        path: the run folder.
        params: the run's parameters (``params.yaml``, else ``results.json["params"]``).
        results: ``results.json``.
        manifest: ``manifest.json`` ({} if absent: a run made in JupyterLab).
        journal: tables of ``journal.sqlite`` by name ({} if absent).
        equity, decisions, trades, risk_events: the run's tables (empty if not recorded).
        card: the model card of ``params["model_path"]`` (None if it cannot be read).
        card_problem: why ``card`` is None, else "".
    """

    path: Path
    params: dict[str, Any]
    results: dict[str, Any]
    manifest: dict[str, Any]
    journal: dict[str, pd.DataFrame] = field(repr=False)
    equity: pd.Series = field(repr=False)
    decisions: pd.DataFrame = field(repr=False)
    trades: pd.DataFrame = field(repr=False)
    risk_events: pd.DataFrame = field(repr=False)
    card: ModelCard | None = field(repr=False)
    card_problem: str = ""

    @property
    def model_path(self) -> Path | None:
        """The model zip the run used, as an absolute path (None if not recorded)."""
        value = self.params.get("model_path") or self.results.get("model_path")
        return resolve(str(value)) if value else None

    @property
    def data_source(self) -> str | None:
        """The bars the run used, as :func:`tradinglib.data.load_bars` takes them."""
        value = self.params.get("data") or self.results.get("data")
        if not value:
            return None
        return source_path(value)


def _read_mapping(path: Path) -> dict[str, Any]:
    """A JSON or YAML file holding a mapping; {} when absent."""
    if not path.is_file():
        return {}
    text = path.read_text()
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise InputError(f"{path} is not valid {path.suffix[1:].upper()}: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(f"{path} should hold a mapping, got {type(data).__name__}")
    return data


def _zone(results: Mapping[str, Any]) -> str:
    """The run's time zone (``results["timezone"]``, see :func:`write_tables`), else UTC."""
    zone = results.get("timezone")
    if not zone:
        return "UTC"
    try:
        pd.Timestamp("2000-01-01", tz=str(zone))
    except (KeyError, ValueError, TypeError):
        return "UTC"
    return str(zone)


def _read_table(path: Path, columns: Sequence[str], zone: str = "UTC") -> pd.DataFrame | None:
    if not path.is_file():
        return None
    frame = pd.read_csv(path, keep_default_na=False, na_values=[""])
    if "time" in frame:
        frame["time"] = _utc(frame["time"]).tz_convert(zone)
    for name in ("verdict", "fallback", "detail"):
        if name in frame:
            frame[name] = frame[name].map(_text)
    missing = [c for c in columns if c not in frame]
    if missing:
        raise InputError(f"{path} lacks columns {missing}; expected {list(columns)}")
    return frame


def _journal_table(journal: Mapping[str, pd.DataFrame], name: str,
                   columns: Sequence[str]) -> pd.DataFrame | None:
    table = journal.get(name)
    if table is None or not set(columns) <= set(table.columns):
        return None
    return table


def load_run(run_dir: str | Path) -> RunData:
    """Read a paper run folder: results, parameters, manifest, journal and tables.

    Tables come from the CSV files the paper notebook writes (:func:`write_tables`:
    ``equity.csv``, ``decisions.csv``, ``trades.csv``), else from the journal
    (``journal.sqlite`` through :func:`tradinglib.journal.read_journal`). Times from the
    CSV files are in ``results["timezone"]`` (UTC when not recorded).

    Raises:
        InputError: no such folder, no ``results.json``, or a file that cannot be read.
    """
    path = resolve(run_dir)
    if not (path / "results.json").is_file():
        raise InputError(f"{path} holds no results.json: not a finished run folder")
    results = _read_mapping(path / "results.json")
    params = {**dict(results.get("params") or {}), **_read_mapping(path / "params.yaml")}
    manifest = _read_mapping(path / "manifest.json")
    journal: dict[str, pd.DataFrame] = {}
    if (path / "journal.sqlite").is_file():
        from tradinglib.journal import read_journal

        journal = dict(read_journal(path / "journal.sqlite"))

    zone = _zone(results)
    equity_table = _read_table(path / "equity.csv", ("time", "equity"), zone)
    if equity_table is None:
        equity_table = _journal_table(journal, "account", ("time", "equity"))
    equity = (pd.Series(equity_table["equity"].to_numpy(dtype=float),
                        index=pd.DatetimeIndex(equity_table["time"], name="time"),
                        name="equity")
              if equity_table is not None else pd.Series(dtype=float, name="equity"))
    decisions = _read_table(path / "decisions.csv", ("time", "action"), zone)
    if decisions is None:
        decisions = _journal_table(journal, "decisions", ("bar_time", "action"))
        if decisions is not None:  # the journal's time is the clock's; compare bars
            decisions = decisions.assign(time=decisions["bar_time"])
    trades = _read_table(path / "trades.csv", TRADE_COLUMNS, zone)
    if trades is None:
        trades = _journal_table(journal, "fills", TRADE_COLUMNS)
    events = _journal_table(journal, "risk_events", ())
    if events is None:
        events = _read_table(path / "risk_events.csv", (), zone)

    card, problem = None, ""
    model = params.get("model_path") or results.get("model_path")
    if model:
        try:
            card = read_card(resolve(str(model)))
        except ModelError as exc:
            problem = str(exc)
    else:
        problem = "the run records no model_path"
    return RunData(
        path=path, params=params, results=results, manifest=manifest, journal=journal,
        equity=equity,
        decisions=decisions if decisions is not None else pd.DataFrame(
            columns=list(DECISION_COLUMNS)),
        trades=trades if trades is not None else pd.DataFrame(columns=list(TRADE_COLUMNS)),
        risk_events=events if events is not None else pd.DataFrame(
            columns=["time", "kind", "detail"]),
        card=card, card_problem=problem,
    )


def write_tables(folder: str | Path, *, equity: pd.Series, trades: pd.DataFrame,
                 decisions: pd.DataFrame, risk_events: pd.DataFrame | None = None
                 ) -> dict[str, Any]:
    """Write ``equity.csv``, ``trades.csv``, ``decisions.csv`` (and ``risk_events.csv``
    when given) into ``folder``.

    The layouts are those of :meth:`BacktestResult.save
    <tradinglib.backtest.BacktestResult.save>`. Returns what to record in results.json:
    ``{"files": [names], "timezone": the equity index's zone name or None}``, so that
    :func:`load_run` shows times in the market's zone.
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    equity.rename("equity").to_csv(out / "equity.csv", index_label="time")
    trades.to_csv(out / "trades.csv", index=False)
    decisions.to_csv(out / "decisions.csv", index=False)
    files = ["equity.csv", "trades.csv", "decisions.csv"]
    if risk_events is not None:
        risk_events.to_csv(out / "risk_events.csv", index=False)
        files.append("risk_events.csv")
    zone = getattr(equity.index, "tz", None)
    return {"files": files, "timezone": str(zone) if zone is not None else None}


def session_record_table(run: RunData) -> pd.DataFrame:
    """The journal's record of the session (status, start and end, run id, model), as
    (item, value) rows; empty without a journal."""
    meta = run.journal.get("meta")
    if meta is None or meta.empty or not {"key", "value"} <= set(meta.columns):
        return pd.DataFrame(columns=["item", "value"])
    values = dict(zip(meta["key"].astype(str), meta["value"], strict=True))
    rows: list[tuple[str, str]] = []
    for key in ("run_id", "status", "started", "finished", "model", "data"):
        if key not in values:
            continue
        try:
            value = json.loads(str(values[key]))
        except ValueError:
            value = values[key]
        if isinstance(value, Mapping):
            rows += [(f"{key}.{k}", _short(v)) for k, v in value.items()]
        else:
            rows.append((key, _short(value)))
    return pd.DataFrame(rows, columns=["item", "value"])


def gaps_table(run: RunData) -> pd.DataFrame:
    """Stretches without a broker connection (journal ``gaps``): start, end, minutes,
    reason; empty when there were none or there is no journal."""
    gaps = run.journal.get("gaps")
    columns = ["start", "end", "minutes", "reason"]
    if gaps is None or gaps.empty or not {"start", "end"} <= set(gaps.columns):
        return pd.DataFrame(columns=columns)
    start, end = _utc(gaps["start"]), _utc(gaps["end"])
    return pd.DataFrame({
        "start": [_text(t) for t in start], "end": [_text(t) for t in end],
        "minutes": [f"{(b - a).total_seconds() / 60:.1f}" for a, b in zip(start, end,
                                                                          strict=True)],
        "reason": [_text(r) for r in gaps.get("reason", pd.Series([""] * len(gaps)))],
    })


def data_range_table(run: RunData) -> pd.DataFrame:
    """Where the run's bars came from and which range it decided on."""
    times = pd.DatetimeIndex(run.decisions["time"]) if len(run.decisions) \
        else pd.DatetimeIndex([])
    rows = [("data", _text(run.params.get("data") or run.results.get("data"))),
            ("symbol", _text(run.params.get("symbol"))),
            ("first decision", _text(times.min()) if len(times) else "n/a"),
            ("last decision", _text(times.max()) if len(times) else "n/a"),
            ("decisions", str(len(times)))]
    for key, label in (("replay", "replayed bars"), ("speed", "replay speed (0 = fastest)"),
                       ("cycle_seconds", "seconds between decisions"),
                       ("session_minutes", "session length, minutes")):
        if key in run.params:
            rows.append((label, _text(run.params[key])))
    return pd.DataFrame(rows, columns=["item", "value"])


def backtest_like(run: RunData) -> BacktestResult:
    """Backtest the run's model over the same bars and decision range, with its cash,
    costs (slippage) and risk limits: what the paper session should have done.

    Raises:
        InputError: the run lacks decisions, a model path or a data source.
        ModelError: the model cannot be loaded. DataError: the bars cannot be read.
    """
    from tradinglib.backtest import run_backtest
    from tradinglib.costs import Costs
    from tradinglib.data import load_bars
    from tradinglib.inference import LockedPolicy
    from tradinglib.risk import RiskLimits

    if run.decisions.empty:
        raise InputError(f"{run.path}: the run recorded no decisions to compare with")
    if run.model_path is None or run.data_source is None:
        raise InputError(f"{run.path}: the run records no model_path or data")
    times = _utc(run.decisions["time"])
    p = run.params
    limits: dict[str, Any] = {k: p[k] for k in ("max_daily_loss", "max_position_value",
                                                "trade_quantity") if p.get(k) is not None}
    return run_backtest(
        load_bars(run.data_source), LockedPolicy.load(run.model_path),
        limits=RiskLimits(**limits), costs=Costs(slippage_bps=float(p.get("slippage_bps", 0.0))),
        cash=float(p.get("cash", 100_000.0)), start=times.min(),
        end=times.max() + pd.Timedelta(microseconds=1),
    )


def paper_vs_backtest(run: RunData) -> Comparison:
    """:func:`backtest_like` the run, then :func:`compare_runs` the two.

    Raises:
        as :func:`backtest_like`.
    """
    result = backtest_like(run)
    return compare_runs(run.decisions, result.decisions, run.equity, result.equity)


# ------------------------------------------------------------------ policies


def load_policy(model_path: str | Path | None) -> Policy:
    """The trained model at ``model_path`` behind :class:`LockedPolicy
    <tradinglib.inference.LockedPolicy>`, or :class:`TrendPolicy` when it is None.

    Raises:
        ModelError: the model or its card cannot be used.
    """
    if model_path is None:
        return TrendPolicy()
    from tradinglib.inference import LockedPolicy

    return LockedPolicy.load(resolve(model_path))


class TrendPolicy:
    """A scripted baseline: BUY while the close is above its 50-bar average and the
    10-bar return is positive, SELL while both point down, else HOLD.

    Deterministic, and it reads the same 26-float observation as a trained model, so
    it runs through :func:`tradinglib.backtest.run_backtest` unchanged.
    """

    def __init__(self) -> None:
        self._sma = FEATURE_NAMES.index("dist_sma_50")
        self._ret = FEATURE_NAMES.index("ret_10")

    def predict(self, obs: object) -> Action:
        """The action for one observation (26 numbers)."""
        row = np.asarray(obs, dtype=np.float64)
        if row[self._sma] > 0 and row[self._ret] > 0:
            return Action.BUY
        if row[self._sma] < 0 and row[self._ret] < 0:
            return Action.SELL
        return Action.HOLD
