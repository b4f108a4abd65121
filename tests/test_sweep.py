"""Sweeps on a real Dask LocalCluster of worker processes, each point a real papermill run
of the project's notebooks, in a throw-away project (``$TRADINGLIB_ROOT``) so nothing is
written into the real ``runs/``. Models are tiny (the session's ``tiny_model``, or 2048
PPO steps) and date ranges short."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from tradinglib import cli
from tradinglib.modelcard import ModelCard
from tradinglib.results import read_results
from tradinglib.runs import list_runs, read_manifest
from tradinglib.sweep import load_sweep, read_summary, run_sweep

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@dataclasses.dataclass
class Invocation:
    code: int
    out: str
    err: str


def invoke(argv: list[str]) -> Invocation:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    return Invocation(code, out.getvalue(), err.getvalue())


@dataclasses.dataclass
class Project:
    root: Path
    first: Invocation
    runs_after_first: list[str]

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"


def make_project(root: Path, model: Path) -> Path:
    """The real train, backtest and sweep report notebooks; a backtest base file on the
    tiny model over one quarter."""
    (root / "notebooks").mkdir(parents=True)
    (root / "params" / "sweeps").mkdir(parents=True)
    for name in ("train.ipynb", "backtest.ipynb", "sweep_report.ipynb"):
        shutil.copy(ROOT / "notebooks" / name, root / "notebooks" / name)
    shutil.copy(ROOT / "params" / "train.yaml", root / "params" / "train.yaml")
    (root / "params" / "backtest.yaml").write_text(yaml.safe_dump({
        "model_path": str(model), "data": "googl-daily", "start": "2017-01-03",
        "end": "2017-04-03"}))
    return root


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, tiny_model: tuple[Path, ModelCard]
            ) -> Iterator[Project]:
    root = make_project(tmp_path_factory.mktemp("sweep"), tiny_model[0])
    (root / "params" / "sweeps" / "grid.yaml").write_text(
        "notebook: backtest\nparams: params/backtest.yaml\n"
        "grid: {slippage_bps: [0.0, 50.0], trade_quantity: [1, 5]}\nmetric: total_return\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRADINGLIB_ROOT", str(root))
        first = invoke(["sweep", str(root / "params" / "sweeps" / "grid.yaml"), "--workers", "2",
                        "--timeout", "120"])
        yield Project(root, first, _grid_runs(root / "runs"))


def _grid_runs(runs_dir: Path) -> list[str]:
    return sorted(p.name for p in runs_dir.iterdir() if "grid" in p.name)


def test_a_2x2_grid_archives_four_runs_and_a_summary(project: Project) -> None:
    assert project.first.code == 0, project.first.err + project.first.out
    runs = [info for info in list_runs(project.runs_dir) if info.kind == "backtest"]
    assert len(runs) == 4 and all(info.status == "ok" for info in runs)
    manifests = [read_manifest(info.path) for info in runs]
    assert {m["tags"]["sweep"] for m in manifests} == {"grid"}
    assert len({m["tags"]["point"] for m in manifests}) == 4
    assert sorted((m["parameters"]["slippage_bps"], m["parameters"]["trade_quantity"])
                  for m in manifests) == [(0.0, 1), (0.0, 5), (50.0, 1), (50.0, 5)]
    summary = read_summary(project.runs_dir / "sweeps" / "grid")
    assert len(summary) == 4 and set(summary["status"]) == {"ok"}
    for row in summary.itertuples():
        results = read_results(Path(str(row.run)))
        assert results["params"]["slippage_bps"] == row.slippage_bps
        assert results["params"]["trade_quantity"] == row.trade_quantity
        assert results["metrics"]["total_return"] == pytest.approx(row.total_return)
    # more shares per order and no slippage: the runs differ as the grid says
    assert summary["total_return"].nunique() > 1
    assert project.first.out.rstrip().splitlines()[-1] == str(
        project.runs_dir / "sweeps" / "grid")


def test_the_sweep_report_renders(project: Project) -> None:
    folder = project.runs_dir / "sweeps" / "grid"
    html = (folder / "report.html").read_text()
    assert "Sweep report" in html and "Best point" in html
    assert "ranked by <code>total_return</code>" in html
    assert html.count("<img") == 1  # the heatmap; no seeds, no windows
    assert "Traceback" not in html and "def " not in html  # rendered without code
    reports = [info for info in list_runs(project.runs_dir) if info.kind == "sweep_report"]
    assert len(reports) == 1 and reports[0].status == "ok"
    best = reports[0].results["best"][0]
    summary = read_summary(folder)
    assert best["total_return"] == pytest.approx(summary["total_return"].max())
    assert yaml.safe_load((folder / "sweep.yaml").read_text())["name"] == "grid"


def test_a_second_invocation_runs_nothing_new_and_says_so(
        project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADINGLIB_ROOT", str(project.root))
    again = invoke(["sweep", str(project.root / "params" / "sweeps" / "grid.yaml")])
    assert again.code == 0, again.err
    assert "nothing new to run: all 4 points are archived ok" in again.out
    assert _grid_runs(project.runs_dir) == project.runs_after_first
    assert set(read_summary(project.runs_dir / "sweeps" / "grid")["resumed"]) == {True}


def test_a_failed_point_does_not_stop_the_others(project: Project) -> None:
    path = project.root / "params" / "sweeps" / "mixed.yaml"
    path.write_text("notebook: backtest\npoints: [{trade_quantity: 2}, "
                    "{start: '2030-01-01'}]\n")
    outcome = run_sweep(load_sweep(path, project.root), workers=1, root=project.root,
                        timeout=120, report=False)
    assert [o.ok(1) for o in outcome.outcomes] == [True, False]
    summary = read_summary(outcome.folder)
    assert list(summary["status"]) == ["ok", "failed"]
    assert summary["error"][1] and Path(summary["run"][1]).is_dir()
    assert read_manifest(Path(summary["run"][1]))["status"] == "failed"


def _kill_a_busy_worker(client: Any, prefix: str, killed: list[int],
                        stop: threading.Event) -> None:
    """Once a point of ``prefix`` has run for 1 s (its kernel is starting or running;
    a point takes several seconds), SIGKILL its worker process."""
    first_seen: dict[str, float] = {}
    while not stop.is_set() and not killed:
        for worker, keys in client.processing().items():
            if any(str(k).startswith(prefix) for k in keys):
                since = first_seen.setdefault(worker, time.monotonic())
                if time.monotonic() - since > 1.0:
                    pid = client.run(os.getpid, workers=[worker])[worker]
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    return
        time.sleep(0.1)


def test_a_killed_worker_point_is_retried_elsewhere(project: Project) -> None:
    from distributed import Client, LocalCluster

    path = project.root / "params" / "sweeps" / "kill.yaml"
    path.write_text("notebook: backtest\ngrid: {trade_quantity: [2, 3]}\n")
    killed: list[int] = []
    stop = threading.Event()
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as cluster, \
            Client(cluster, set_as_default=False) as client:
        killer = threading.Thread(target=_kill_a_busy_worker,
                                  args=(client, "kill-", killed, stop), daemon=True)
        killer.start()
        try:
            outcome = run_sweep(load_sweep(path, project.root),
                                scheduler=cluster.scheduler_address, root=project.root,
                                timeout=120, report=False)
        finally:
            stop.set()
            killer.join(10)
    assert killed, "no worker was killed: the point finished too soon"
    assert outcome.failed == 0
    ok_runs: dict[str, int] = {}
    for info in list_runs(project.runs_dir):
        if info.label.startswith("kill-") and info.status == "ok":
            point = read_manifest(info.path)["tags"]["point"]
            ok_runs[point] = ok_runs.get(point, 0) + 1
    assert ok_runs == {p.id: 1 for p in outcome.points}
    # the killed attempt left its .tmp- folder, reported, never archived as a run
    assert [p.name.startswith(".tmp-") for p in outcome.leftovers] == [True]


def test_walk_forward_trains_each_window_and_stitches_the_backtests(
        project: Project) -> None:
    path = project.root / "params" / "sweeps" / "wf.yaml"
    path.write_text(
        "notebook: train+backtest\nparams: {train: params/train.yaml, backtest: "
        "params/backtest.yaml}\nset: {train.steps: 64}\n"
        "walk_forward: {start: 2014-01-01, end: 2015-07-01, window: 1Y, step: 3M}\n")
    outcome = run_sweep(load_sweep(path, project.root), workers=2, root=project.root,
                        timeout=120)
    assert outcome.ok, [o.error_text for o in outcome.outcomes]
    assert outcome.report is not None and outcome.report.ok
    summary = read_summary(outcome.folder)
    assert list(summary["test_start"]) == ["2015-01-01", "2015-04-01"]
    trains = [read_manifest(Path(run)) for run in summary["train_run"]]
    cards = [json.loads(Path(m["parameters"]["model_path"]).with_suffix("")
                        .with_suffix(".card.json").read_text()) for m in trains]
    for card, start, end in zip(cards, summary["train_start"], summary["train_end"],
                                strict=True):
        assert card["training_data"]["source"].startswith(str(outcome.folder / "data"))
        assert start <= card["training_data"]["start"][:10]  # only the window's bars
        assert card["holdout_data"]["end"][:10] < end
    equity = [pd.read_csv(Path(run) / "equity.csv") for run in summary["run"]]
    growth = (equity[0]["equity"].iloc[-1] / equity[0]["equity"].iloc[0]
              * equity[1]["equity"].iloc[-1] / equity[1]["equity"].iloc[0])
    from tradinglib.sweep.report import load_sweep_results, stitched_equity

    curve = stitched_equity(load_sweep_results(outcome.folder))["walk-forward"]
    assert curve.iloc[-1] / curve.iloc[0] == pytest.approx(growth)
    assert len(curve) == sum(len(e) for e in equity)
    assert (outcome.folder / "report.html").read_text().count("<img") == 1
