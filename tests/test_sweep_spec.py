"""Sweep files: checking, point expansion, walk-forward windows and point ids (no runs)."""

from __future__ import annotations

import contextlib
import io
import shutil
from pathlib import Path

import pytest

from tradinglib import cli
from tradinglib.exceptions import InputError
from tradinglib.sweep import expand_points, load_sweep
from tradinglib.sweep.points import windows
from tradinglib.sweep.spec import WalkForward

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project with the real train parameter file and a backtest file naming no model."""
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "params").mkdir()
    shutil.copy(ROOT / "params" / "train.yaml", tmp_path / "params" / "train.yaml")
    (tmp_path / "params" / "backtest.yaml").write_text("data: googl-daily\n")
    return tmp_path


def write(project: Path, text: str, name: str = "s.yaml") -> Path:
    path = project / name
    path.write_text(text)
    return path


PAIR = "notebook: train+backtest\n"


@pytest.mark.parametrize(("text", "message"), [
    ("notebook: train\ngrid: {sead: [0, 1]}\n",
     r"unknown parameter 'sead' \(did you mean 'seed'\?\)"),
    (PAIR + "grid: {train.sead: [0, 1]}\n", r"did you mean 'train.seed'"),
    ("notebook: train\nset: {stepz: 5}\ngrid: {seed: [0]}\n", r"unknown parameter 'stepz'"),
    ("notebook: train\ngrid: {}\n", r"the grid is empty"),
    ("notebook: train\ngrid: {seed: []}\n", r"'seed' needs a non-empty list"),
    ("notebook: train\ngrid: {seed: 3}\n", r"'seed' needs a non-empty list"),
    ("notebook: train\npoints: []\n", r"points is a non-empty list"),
    ("notebook: train\n", r"no points"),
    ("notebook: train\ngrids: {seed: [0]}\n", r"unknown key 'grids' \(did you mean 'grid'\?\)"),
    ("notebook: trian\ngrid: {seed: [0]}\n", r"notebook 'trian' \(did you mean 'train'\?\)"),
    ("notebook: train\ngrid: {seed: [0]}\npoints: [{seed: 1}]\n", r"not both"),
    ("notebook: train\ngrid: {output_dir: [a]}\n", r"the runner sets it"),
    (PAIR + "grid: {backtest.model_path: [a.zip]}\n", r"trains its own model"),
    ("notebook: train\nwalk_forward: {start: 2010-01-01, end: 2012-01-01, window: 1Y, "
     "step: 1Y}\n", r"use notebook: train\+backtest"),
    (PAIR + "walk_forward: {start: 2010-01-01, end: 2012-01-01, window: 1X, step: 1Y}\n",
     r"window '1X': use a positive length"),
    (PAIR + "walk_forward: {start: 2010-01-01, end: 2012-01-01, window: 2Y, step: 1Y}\n",
     r"no window fits"),
    (PAIR + "walk_forward: {start: 2012-01-01, end: 2010-01-01, window: 1Y, step: 1Y}\n",
     r"is not before end"),
    (PAIR + "walk_forward: {start: 2010-01-01, end: 2014-01-01, window: 1Y}\n",
     r"missing \['step'\]"),
    (PAIR + "set: {backtest.start: 2011-01-01}\nwalk_forward: {start: 2010-01-01, "
     "end: 2014-01-01, window: 1Y, step: 1Y}\n", r"walk_forward sets the backtest window"),
    ("notebook: train\nparams: params/nope.yaml\ngrid: {seed: [0]}\n",
     r"nope.yaml not found"),
    ("notebook: train\nname: ../x\ngrid: {seed: [0]}\n", r"name '../x'"),
    ("notebook: train\nmetric: 3\ngrid: {seed: [0]}\n", r"metric 3"),
])
def test_bad_sweep_files_are_rejected_with_the_reason(project: Path, text: str,
                                                      message: str) -> None:
    with pytest.raises(InputError, match=message):
        load_sweep(write(project, text), project)


def test_invalid_values_name_the_point_before_anything_runs(project: Path) -> None:
    sweep = load_sweep(write(project, "notebook: train\ngrid: {seed: [0, -1]}\n"), project)
    with pytest.raises(InputError, match=r"point 2 \(seed=-1\).*seed=-1"):
        expand_points(sweep)


def test_repeated_points_are_rejected(project: Path) -> None:
    text = "notebook: train\npoints: [{seed: 1}, {steps: 9}, {seed: 1}]\n"
    with pytest.raises(InputError, match=r"point 3 \(seed=1\) repeats point 1"):
        expand_points(load_sweep(write(project, text), project))


def test_a_grid_is_the_product_of_its_lists(project: Path) -> None:
    text = "notebook: train\nset: {steps: 64}\ngrid: {seed: [0, 1, 2], holdout: [0.1, 0.3]}\n"
    points = expand_points(load_sweep(write(project, text), project))
    assert [(p.values["seed"], p.values["holdout"]) for p in points] == [
        (0, 0.1), (0, 0.3), (1, 0.1), (1, 0.3), (2, 0.1), (2, 0.3)]
    assert all(p.params["train"]["steps"] == 64 for p in points)
    assert points[3].params["train"]["seed"] == 1 and points[3].params["train"]["holdout"] == 0.3
    assert [p.number for p in points] == [1, 2, 3, 4, 5, 6]


def test_point_ids_are_stable_and_follow_the_parameters(project: Path) -> None:
    text = "notebook: train\ngrid: {seed: [0, 1]}\n"
    first = [p.id for p in expand_points(load_sweep(write(project, text), project))]
    again = [p.id for p in expand_points(load_sweep(write(project, text, "t.yaml"), project))]
    assert first == again and len(set(first)) == 2
    base = project / "params" / "train.yaml"
    base.write_text(base.read_text().replace("steps: 20000", "steps: 30000"))
    changed = [p.id for p in expand_points(load_sweep(write(project, text), project))]
    assert not set(changed) & set(first)


def test_a_plain_name_sets_every_step_of_a_pair(project: Path) -> None:
    text = PAIR + "grid: {data: [googl-daily, eurusd-hourly]}\n"
    points = expand_points(load_sweep(write(project, text), project))
    assert [(p.params["train"]["data"], p.params["backtest"]["data"]) for p in points] == [
        ("googl-daily", "googl-daily"), ("eurusd-hourly", "eurusd-hourly")]


@pytest.mark.parametrize(("start", "end", "window", "step", "expected"), [
    ("2010-01-01", "2013-01-01", "1Y", "1Y", [
        ("2010-01-01", "2011-01-01", "2011-01-01", "2012-01-01"),
        ("2011-01-01", "2012-01-01", "2012-01-01", "2013-01-01")]),
    ("2010-01-01", "2011-06-30", "6M", "3M", [
        ("2010-01-01", "2010-07-01", "2010-07-01", "2010-10-01"),
        ("2010-04-01", "2010-10-01", "2010-10-01", "2011-01-01"),
        ("2010-07-01", "2011-01-01", "2011-01-01", "2011-04-01")]),
    ("2017-01-02", "2017-02-06", "14D", "1W", [
        ("2017-01-02", "2017-01-16", "2017-01-16", "2017-01-23"),
        ("2017-01-09", "2017-01-23", "2017-01-23", "2017-01-30"),
        ("2017-01-16", "2017-01-30", "2017-01-30", "2017-02-06")]),
])
def test_walk_forward_windows(start: str, end: str, window: str, step: str,
                              expected: list[tuple[str, ...]]) -> None:
    found = windows(WalkForward(start, end, window, step))
    assert [(w.train_start, w.train_end, w.test_start, w.test_end) for w in found] == expected
    assert [w.index for w in found] == list(range(len(expected)))


def test_walk_forward_points_backtest_their_window(project: Path) -> None:
    text = (PAIR + "grid: {train.seed: [0, 1]}\nwalk_forward: {start: 2010-01-01, "
            "end: 2013-01-01, window: 1Y, step: 1Y}\n")
    points = expand_points(load_sweep(write(project, text), project))
    assert len(points) == 4
    assert [(p.values["train.seed"], p.values["window"]) for p in points] == [
        (0, 0), (0, 1), (1, 0), (1, 1)]
    assert points[1].params["backtest"]["start"] == "2012-01-01"
    assert points[1].params["backtest"]["end"] == "2013-01-01"


def test_cli_rejects_a_bad_sweep_file_before_anything_runs(
        project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADINGLIB_ROOT", str(project))
    path = write(project, "notebook: train\ngrid: {seed: []}\n")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["sweep", str(path)])
    assert code == 2
    assert err.getvalue().startswith("error: ") and "'seed' needs a non-empty list" in \
        err.getvalue()
    assert "Traceback" not in err.getvalue()
    assert not (project / "runs").exists()


# ------------------------------------------------------------------ report tables


@pytest.fixture
def sweep_dir(tmp_path: Path) -> Path:
    """A sweep folder written by hand: 2 seeds x 2 slippages, the best sharpe failed."""
    import yaml

    rows = [(1, 0, 0.0, "ok", 1.0), (2, 0, 5.0, "ok", 0.4), (3, 1, 0.0, "ok", 2.0),
            (4, 1, 5.0, "failed", 9.0)]
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump({
        "name": "s", "notebook": "train+backtest", "metric": "sharpe",
        "points": [{"id": f"p{n}", "values": {"train.seed": seed, "slippage_bps": slip}}
                   for n, seed, slip, _, _ in rows]}, sort_keys=False))
    lines = ["point,id,train.seed,slippage_bps,status,resumed,sharpe,trades,duration_s,run,"
             "error"]
    lines += [f"{n},p{n},{seed},{slip},{status},False,{sharpe},3,1.5,/r/{n},"
              + ("boom" if status == "failed" else "")
              for n, seed, slip, status, sharpe in rows]
    (tmp_path / "summary.csv").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_report_tables_rank_and_spread_the_ok_points(sweep_dir: Path) -> None:
    from tradinglib.sweep.report import (
        best_point,
        dispersion_table,
        heatmap_figure,
        load_sweep_results,
        overview_table,
        points_table,
        stitched_equity,
    )

    results = load_sweep_results(sweep_dir)
    assert results.varied == ("train.seed", "slippage_bps")
    assert overview_table(results).iloc[0][["points", "ok", "failed"]].tolist() == [4, 3, 1]
    assert list(points_table(results).columns) == [
        "point", "train.seed", "slippage_bps", "status", "sharpe", "trades", "error"]
    best = best_point(results)
    assert best["point"].tolist() == [3] and best["run"].tolist() == ["/r/3"]  # not the failed 9.0
    spread = dispersion_table(results)
    assert spread is not None
    by_slip = spread.set_index("slippage_bps")
    assert by_slip.loc[0.0, "count"] == 2 and by_slip.loc[0.0, "mean"] == pytest.approx(1.5)
    assert by_slip.loc[0.0, "std"] == pytest.approx(0.7071, abs=1e-4)
    assert by_slip.loc[5.0, "count"] == 1  # the failed seed is left out
    assert heatmap_figure(results) is not None
    assert stitched_equity(results) == {}  # no walk-forward windows


def test_report_names_the_metrics_when_the_metric_is_unknown(sweep_dir: Path) -> None:
    from tradinglib.sweep.report import load_sweep_results

    with pytest.raises(InputError, match=r"metric 'sharp' is not in .*metrics there: sharpe, "
                                         r"trades"):
        load_sweep_results(sweep_dir, "sharp")


def test_a_missing_sweep_file_is_named(project: Path) -> None:
    with pytest.raises(InputError, match=r"missing.yaml: sweep file not found"):
        load_sweep(project / "missing.yaml", project)


def test_a_report_of_failed_points_only_lists_them(sweep_dir: Path) -> None:
    import pandas as pd

    from tradinglib.sweep.report import (
        best_point,
        dispersion_table,
        heatmap_figure,
        load_sweep_results,
        points_table,
    )

    table = pd.read_csv(sweep_dir / "summary.csv").drop(columns=["sharpe", "trades"])
    table.assign(status="failed").to_csv(sweep_dir / "summary.csv", index=False)
    results = load_sweep_results(sweep_dir)
    assert set(points_table(results)["status"]) == {"failed"}
    assert best_point(results).empty
    assert heatmap_figure(results) is None and dispersion_table(results) is None


def test_run_tags_must_be_json_values_and_nothing_is_written(tmp_path: Path) -> None:
    from tradinglib.runs import run_notebook

    with pytest.raises(InputError, match=r"'point'"):
        run_notebook(ROOT / "notebooks" / "backtest.ipynb", {}, kind="backtest", label="t",
                     runs_dir=tmp_path / "runs", tags={"sweep": "s", "point": object()})
    assert not (tmp_path / "runs").exists()


def test_window_bars_are_cut_again_when_the_source_file_changes(tmp_path: Path) -> None:
    import os

    import pandas as pd

    from tradinglib.data import load_bars
    from tradinglib.sweep.points import Window
    from tradinglib.sweep.tasks import _window_bars

    source = tmp_path / "bars.parquet"
    bars = load_bars("googl-daily")
    bars.to_parquet(source)
    window = Window(0, "2010-01-01", "2011-01-01", "2011-01-01", "2011-07-01")
    first = _window_bars(str(source), window, tmp_path / "windows", tmp_path)
    assert _window_bars(str(source), window, tmp_path / "windows", tmp_path) == first
    prices = ["open", "high", "low", "close"]
    changed = bars.assign(**{c: bars[c] * 2 for c in prices})
    changed.to_parquet(source)
    os.utime(source, ns=(1, 1))  # a different version even within the same clock tick
    second = _window_bars(str(source), window, tmp_path / "windows", tmp_path)
    assert second != first
    assert float(pd.read_parquet(second)["close"].iloc[0]) == pytest.approx(
        2 * float(pd.read_parquet(first)["close"].iloc[0]))
