"""Report figures and tables, tested without a kernel on synthetic and real inputs."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
import yaml

from tradinglib.backtest import BacktestResult, run_backtest
from tradinglib.exceptions import InputError
from tradinglib.features import FEATURE_NAMES, market_features
from tradinglib.inference import LockedPolicy
from tradinglib.modelcard import ModelCard
from tradinglib.report import (
    RunData,
    TrendPolicy,
    backtest_like,
    card_metrics_table,
    card_table,
    compare_runs,
    comparison_figure,
    correlation_figure,
    data_range_table,
    drawdown,
    equity_figure,
    fallback_table,
    file_hashes_table,
    folder_files,
    gaps_table,
    headline,
    load_policy,
    load_run,
    metrics_table,
    paper_vs_backtest,
    position_figure,
    price_figure,
    provenance_table,
    rejection_table,
    session_record_table,
    show_table,
    style_table,
    trades_table,
    write_tables,
)
from tradinglib.types import Action

NY = "America/New_York"


def _times(n: int, tz: str = NY) -> pd.DatetimeIndex:
    return pd.date_range("2017-01-02", periods=n, freq="B", tz=tz, name="time")


def _decisions(actions: list[str], verdicts: list[str] | None = None,
               fallbacks: list[str] | None = None, tz: str = NY) -> pd.DataFrame:
    n = len(actions)
    return pd.DataFrame({
        "time": _times(n, tz), "action": actions,
        "verdict": verdicts or ["" if a == "HOLD" else "APPROVED" for a in actions],
        "fallback": fallbacks or [""] * n,
        "position": np.cumsum([5 if a == "BUY" else -5 if a == "SELL" else 0
                               for a in actions]),
    })


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


# ------------------------------------------------------------------ numbers


@pytest.mark.parametrize(
    ("equity", "expected"),
    [
        ([100.0, 110.0, 99.0, 121.0], [0.0, 0.0, -0.1, 0.0]),
        ([100.0, 90.0, 80.0, 100.0], [0.0, -0.1, -0.2, 0.0]),
        ([50.0], [0.0]),
    ],
)
def test_drawdown_by_hand(equity: list[float], expected: list[float]) -> None:
    result = drawdown(pd.Series(equity, index=_times(len(equity))))
    np.testing.assert_allclose(result.to_numpy(), expected)


def test_headline_numbers_and_sentence() -> None:
    equity = pd.Series([100_000.0, 100_050.0, 99_900.0], index=_times(3))
    trades = pd.DataFrame({"time": _times(2), "side": ["BUY", "SELL"]})
    h = headline(equity, trades, _decisions(["BUY", "SELL", "HOLD"]))
    assert (h.pnl, h.trades, h.decisions) == (-100.0, 2, 3)
    assert h.total_return == pytest.approx(-0.001)
    sentence = h.sentence()
    assert sentence.startswith("The session lost USD 100.00 (-0.10%) with 2 trades over 3 "
                               "decisions from 2017-01-02 00:00 to 2017-01-04 00:00")
    assert dict(h.table().itertuples(index=False))["profit and loss"] == "USD -100.00"
    up = headline(equity.iloc[:2], trades.iloc[:1], _decisions(["BUY"]))
    assert "made USD 50.00 (+0.05%) with 1 trade " in up.sentence("The backtest")
    with pytest.raises(InputError, match="no equity"):
        headline(pd.Series(dtype=float), trades, _decisions([]))


def test_rejections_counted_by_reason() -> None:
    decisions = _decisions(["BUY", "BUY", "BUY", "SELL", "HOLD", "SELL"],
                           ["APPROVED", "POSITION_VALUE", "POSITION_VALUE",
                            "SHORT_NOT_ALLOWED", "", "APPROVED"])
    table = rejection_table(decisions)
    assert table.to_dict("list") == {"reason": ["POSITION_VALUE", "SHORT_NOT_ALLOWED"],
                                     "rejected": [2, 1], "share": ["40.0%", "20.0%"]}
    assert rejection_table(_decisions(["HOLD"])).empty
    assert rejection_table(pd.DataFrame()).empty


def test_fallbacks_grouped_by_kind() -> None:
    decisions = _decisions(
        ["HOLD"] * 4,
        fallbacks=["timeout: model busy for over 1.0s", "",
                   "invalid observation: index 3 is nan", "timeout: answer took 2.0s"])
    table = fallback_table(decisions)
    assert table["kind"].tolist() == ["timeout", "invalid observation"]
    assert table["count"].tolist() == [2, 1]
    assert table["example"].iloc[0] == "timeout: model busy for over 1.0s"
    assert fallback_table(_decisions(["HOLD"])).empty


def test_trades_table_formats() -> None:
    trades = pd.DataFrame({"time": _times(2), "side": ["buy", "SELL"], "quantity": [5, 5],
                           "price": [1234.5, 1240.0], "commission": [1.0, 1.0],
                           "realized_pnl": [-1.0, 26.5]})
    table = trades_table(trades)
    assert table["side"].tolist() == ["BUY", "SELL"]
    assert table["price"].tolist() == ["1,234.50", "1,240.00"]
    assert table["realized P&L"].tolist() == ["-1.00", "+26.50"]
    assert trades_table(trades.iloc[:0]).empty


def test_metrics_table_uses_the_summary_format() -> None:
    table = metrics_table({"total_return": 0.0123, "trades": 4, "sharpe": None,
                           "rejections": {"POSITION_VALUE": 2}})
    assert dict(table.itertuples(index=False)) == {
        "total_return": "+1.23%", "trades": "4", "sharpe": "n/a",
        "rejections": "POSITION_VALUE 2"}


# ------------------------------------------------------------------ comparison


def test_compare_runs_matches_times_across_zones_and_action_codes() -> None:
    paper = _decisions(["BUY", "HOLD", "SELL", "HOLD"], tz=NY)
    backtest = _decisions(["BUY", "HOLD", "HOLD", "HOLD", "BUY"], tz=NY)
    backtest["time"] = backtest["time"].dt.tz_convert("UTC")
    backtest["action"] = [int(Action[a]) for a in backtest["action"]]
    comparison = compare_runs(paper, backtest)
    assert (comparison.compared, comparison.paper_only, comparison.backtest_only) == (4, 0, 1)
    assert comparison.agreement == pytest.approx(0.75)
    row = comparison.disagreements.iloc[0]
    assert (row["paper"], row["backtest"]) == ("SELL", "HOLD")
    assert row["time"] == _times(4)[2]
    table = dict(comparison.table().itertuples(index=False))
    assert table["actions agreement"] == "75.0%" and table["decisions differing"] == "1"


def test_compare_runs_with_nothing_in_common() -> None:
    comparison = compare_runs(_decisions(["BUY"]), _decisions([]))
    assert comparison.agreement is None and comparison.compared == 0
    assert dict(comparison.table().itertuples(index=False))["actions agreement"] == "n/a"
    with pytest.raises(InputError, match="time and action"):
        compare_runs(pd.DataFrame({"time": []}), _decisions([]))


# ------------------------------------------------------------------ figures


def test_equity_figure_plots_the_curve_and_its_drawdown() -> None:
    equity = pd.Series([100.0, 110.0, 99.0, 121.0], index=_times(4))
    other = equity * 1.01
    fig = equity_figure(equity, others={"backtest": other})
    top, bottom = fig.axes
    lines = top.get_lines()
    assert [line.get_label() for line in lines] == ["equity", "backtest"]
    np.testing.assert_allclose(np.asarray(lines[0].get_ydata(), dtype=float), equity)
    np.testing.assert_allclose(np.asarray(lines[1].get_ydata(), dtype=float), other)
    assert bottom.get_ylabel() == "drawdown, %"
    assert _png(fig).startswith(b"\x89PNG")
    with pytest.raises(InputError):
        equity_figure(pd.Series(dtype=float))


def test_position_figure_marks_buys_and_sells() -> None:
    fig = position_figure(_decisions(["BUY", "BUY", "HOLD", "SELL"]))
    (ax,) = fig.axes
    labels = [c.get_label() for c in ax.collections]
    assert labels == ["bought", "sold"]
    assert len(ax.collections[0].get_offsets()) == 2
    assert _png(fig).startswith(b"\x89PNG")
    with pytest.raises(InputError):
        position_figure(pd.DataFrame())


def test_correlation_figure_shows_the_correlation_matrix(googl: pd.DataFrame) -> None:
    features = market_features(googl.iloc[:300])
    fig = correlation_figure(features)
    image = fig.axes[0].get_images()[0]
    expected = features.astype(float).corr().fillna(0.0).to_numpy()
    np.testing.assert_allclose(np.asarray(image.get_array()), expected)
    assert _png(fig).startswith(b"\x89PNG")


def test_price_and_comparison_figures(googl: pd.DataFrame) -> None:
    bars = googl.iloc[-100:]
    trades = pd.DataFrame({"time": bars.index[[10, 20]], "side": ["BUY", "SELL"],
                           "price": bars["close"].iloc[[10, 20]].to_numpy()})
    fig = price_figure(bars, trades=trades)
    assert [c.get_label() for c in fig.axes[0].collections] == ["buy", "sell"]
    equity = pd.Series(np.linspace(100.0, 110.0, 5), index=_times(5))
    comparison = compare_runs(_decisions(["HOLD"] * 5), _decisions(["HOLD"] * 5),
                              equity, equity + 1.0)
    fig = comparison_figure(comparison)
    assert [line.get_label() for line in fig.axes[0].get_lines()] == ["paper", "backtest"]
    assert _png(fig).startswith(b"\x89PNG")


# ------------------------------------------------------------------ cards, manifests


def test_card_tables(tiny_model: tuple[Path, ModelCard]) -> None:
    card = tiny_model[1]
    summary = dict(card_table(card).itertuples(index=False))
    assert summary["sha256"] == card.sha256[:12] + "…"
    assert summary["training steps"] == f"{card.total_timesteps:,}"
    assert summary["training data"].startswith("googl-daily: 2009-05-22 .. ")
    metrics = card_metrics_table(card)
    assert metrics.columns[0] == "figure" and len(metrics.columns) == 3
    assert metrics.columns[2].startswith("holdout ")
    assert metrics["figure"].tolist()[0] == "total_return"


MANIFEST: dict[str, Any] = {
    "id": "20250101T000000Z-paper-a", "kind": "paper", "status": "ok", "error": None,
    "git": {"commit": "0123456789abcdef0123456789abcdef01234567", "dirty": False},
    "packages": {f"pkg{i}": f"1.{i}" for i in range(15)},
    "artifacts": {"model": {"path": "models/m.zip", "sha256": "a" * 64}},
    "files": {f"f{i}.csv": {"sha256": f"{i:x}" * 64, "bytes": i} for i in range(3)},
    "overrides": {}, "tags": ["x", "y"],
}


def test_provenance_table_flattens_and_shortens() -> None:
    rows = dict(provenance_table(MANIFEST).itertuples(index=False))
    assert rows["git.commit"] == "0123456789abcdef0123456789abcdef01234567"
    assert rows["packages.pkg14"] == "1.14"
    assert rows["artifacts.model.sha256"] == "a" * 12 + "…"
    assert rows["files"] == "3 files (fingerprints listed below)"
    assert rows["error"] == "" and rows["tags"] == "x, y"


@pytest.mark.parametrize(
    ("manifest", "files"),
    [
        (MANIFEST, ["f0.csv", "f1.csv", "f2.csv"]),
        ({"hashes": {"a.csv": "b" * 64, "c.csv": "c" * 64}}, ["a.csv", "c.csv"]),
        ({"files": [{"path": "x.csv", "sha256": "d" * 64, "size": 3}]}, ["x.csv"]),
        ({"status": "ok"}, []),
    ],
)
def test_file_hashes_table(manifest: dict[str, Any], files: list[str]) -> None:
    table = file_hashes_table(manifest)
    assert table["file"].tolist() == files
    assert all(len(s) == 64 for s in table["sha256"])


# ------------------------------------------------------------------ run folders


@pytest.fixture
def tiny_backtest(tiny_model: tuple[Path, ModelCard], googl: pd.DataFrame) -> BacktestResult:
    return run_backtest(googl, LockedPolicy.load(tiny_model[0]), start="2017-03-01",
                        end="2017-05-01")


def _paper_folder(folder: Path, result: BacktestResult, model: Path, *,
                  with_params_yaml: bool = True) -> Path:
    """A run folder laid out as the paper notebook leaves it, from a backtest."""
    tables = write_tables(folder, equity=result.equity, trades=result.trades,
                          decisions=result.decisions, risk_events=result.risk_events)
    params = {"model_path": str(model), "data": "googl-daily", "symbol": "GOOGL",
              "cash": 100_000.0, "slippage_bps": 0.0, "trade_quantity": 5,
              "max_daily_loss": 500.0, "max_position_value": 10_000.0, "replay": True}
    (folder / "results.json").write_text(json.dumps({"kind": "paper", "params": params,
                                                     **tables}))
    if with_params_yaml:
        (folder / "params.yaml").write_text(yaml.safe_dump(params))
    (folder / "manifest.json").write_text(json.dumps(MANIFEST))
    return folder


def test_write_tables_then_load_run(tmp_path: Path, tiny_backtest: BacktestResult,
                                    tiny_model: tuple[Path, ModelCard]) -> None:
    folder = _paper_folder(tmp_path / "paper", tiny_backtest, tiny_model[0])
    assert folder_files(folder) == ["decisions.csv", "equity.csv", "manifest.json",
                                    "params.yaml", "risk_events.csv", "trades.csv"]
    run = load_run(folder)
    assert isinstance(run, RunData) and run.path == folder
    pd.testing.assert_series_equal(run.equity, tiny_backtest.equity, check_freq=False)
    assert str(pd.DatetimeIndex(run.equity.index).tz) == NY
    assert run.decisions["action"].tolist() == tiny_backtest.decisions["action"].tolist()
    assert run.decisions["verdict"].tolist() == tiny_backtest.decisions["verdict"].tolist()
    assert len(run.trades) == len(tiny_backtest.trades)
    assert run.card is not None and run.card.sha256 == tiny_model[1].sha256
    assert run.manifest["id"] == MANIFEST["id"] and run.journal == {}
    assert run.data_source == "googl-daily" and run.model_path == tiny_model[0]
    rows = dict(data_range_table(run).itertuples(index=False))
    assert rows["first decision"].startswith("2017-03-01 00:00:00-05:00")
    assert rows["replayed bars"] == "True"
    assert session_record_table(run).empty and gaps_table(run).empty


def test_paper_vs_backtest_of_a_backtest_agrees_fully(
        tmp_path: Path, tiny_backtest: BacktestResult,
        tiny_model: tuple[Path, ModelCard]) -> None:
    run = load_run(_paper_folder(tmp_path / "paper", tiny_backtest, tiny_model[0],
                                 with_params_yaml=False))
    again = backtest_like(run)
    assert again.decisions["action"].tolist() == tiny_backtest.decisions["action"].tolist()
    comparison = paper_vs_backtest(run)
    assert comparison.agreement == 1.0
    assert comparison.compared == len(tiny_backtest.decisions)
    np.testing.assert_allclose(comparison.paper_equity.to_numpy(),
                               comparison.backtest_equity.to_numpy())


def test_load_run_problems(tmp_path: Path, tiny_backtest: BacktestResult,
                           tiny_model: tuple[Path, ModelCard]) -> None:
    with pytest.raises(InputError, match=r"no results\.json"):
        load_run(tmp_path)
    folder = _paper_folder(tmp_path / "paper", tiny_backtest, tiny_model[0])
    (folder / "params.yaml").write_text("model_path: [unclosed\n")
    with pytest.raises(InputError, match=r"params\.yaml is not valid YAML"):
        load_run(folder)
    (folder / "params.yaml").write_text("model_path: models/none.zip\n")
    run = load_run(folder)
    assert run.card is None and "not found" in run.card_problem
    (folder / "params.yaml").write_text("- a list\n")
    with pytest.raises(InputError, match="should hold a mapping"):
        load_run(folder)


def test_load_run_reads_the_session_journal(tmp_path: Path,
                                            tiny_model: tuple[Path, ModelCard]) -> None:
    session = pytest.importorskip("tradinglib.session",
                                  reason="tradinglib.session not available yet")
    folder = tmp_path / "paper"
    config = session.SessionConfig(model_path=tiny_model[0], session_minutes=5.0,
                                   flatten_at_end=False)
    result = session.run_session(config, folder)
    (folder / "results.json").write_text(json.dumps({
        "kind": "paper", "params": {"model_path": str(tiny_model[0]), "data": "googl-daily"}}))
    run = load_run(folder)  # no CSV tables: everything comes from the journal
    assert set(run.journal) >= {"decisions", "account", "meta", "gaps", "risk_events"}
    assert len(run.decisions) == len(result.decisions)
    assert dict(session_record_table(run).itertuples(index=False))["status"] == "completed"
    comparison = paper_vs_backtest(run)
    assert comparison.agreement == 1.0


# ------------------------------------------------------------------ display, policies


def test_show_table_and_style_table() -> None:
    from IPython.display import Markdown

    empty = show_table(pd.DataFrame(columns=["a"]), empty="Nothing.")
    assert isinstance(empty, Markdown) and empty.data == "Nothing."
    html = style_table(pd.DataFrame({"a": ["x"], "b": [1]}), caption="c").to_html()
    assert "<caption>c</caption>" in html and "text-align: left" in html


@pytest.mark.parametrize(
    ("sma", "ret", "action"),
    [(1.0, 0.5, Action.BUY), (-1.0, -0.5, Action.SELL), (1.0, -0.5, Action.HOLD),
     (0.0, 0.0, Action.HOLD)],
)
def test_trend_policy(sma: float, ret: float, action: Action) -> None:
    obs = np.zeros(len(FEATURE_NAMES), dtype=np.float32)
    obs[FEATURE_NAMES.index("dist_sma_50")] = sma
    obs[FEATURE_NAMES.index("ret_10")] = ret
    assert TrendPolicy().predict(obs) is action


def test_load_policy(tiny_model: tuple[Path, ModelCard]) -> None:
    assert isinstance(load_policy(None), TrendPolicy)
    assert isinstance(load_policy(tiny_model[0]), LockedPolicy)
