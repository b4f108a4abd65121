"""Run folders: :class:`RunData` and :func:`load_run`, :func:`write_tables`, the run's
session, gaps and data-range tables, and its comparison with a backtest."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import pandas as pd
import yaml

from tradinglib.backtest import BacktestResult
from tradinglib.data import source_path
from tradinglib.exceptions import InputError, ModelError
from tradinglib.modelcard import ModelCard, read_card
from tradinglib.paths import resolve
from tradinglib.report.comparison import Comparison, compare_runs
from tradinglib.report.formatting import _short, _text, _utc

DECISION_COLUMNS: Final = ("time", "action", "verdict", "fallback", "position")
TRADE_COLUMNS: Final = ("time", "side", "quantity", "price", "commission", "realized_pnl")


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
