"""Paper sessions: the same decisions, fills and marks as the backtest on the same bars,
a journal that matches and survives a crash, flattening, pacing, config errors, logs."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tradinglib.backtest import run_backtest
from tradinglib.config import Settings
from tradinglib.data import load_bars
from tradinglib.exceptions import DataError, InputError, ModelError
from tradinglib.execution import Simulation
from tradinglib.inference import LockedPolicy
from tradinglib.journal import JournalError, observation_sha256, read_journal
from tradinglib.logs import LOGGER_NAME, cycle_line, setup_logging, teardown_logging
from tradinglib.modelcard import ModelCard
from tradinglib.session import JOURNAL_FILE, SessionConfig, SessionResult, run_session
from tradinglib.types import Action, Decision

Model = tuple[Path, ModelCard]

# googl-daily from the model card's held-out start, with slippage; eurusd-hourly has
# several bars per day, so day P&L, the daily loss rule and its events come into play
CASES: dict[str, dict[str, Any]] = {
    "googl-daily": {"slippage_bps": 3.0},
    "eurusd-hourly": {"data": "eurusd-hourly", "start": "2017-03-01", "trade_quantity": 1000,
                      "max_position_value": 5000.0, "max_daily_loss": 5.0},
}


def config(model: Model, **changes: Any) -> SessionConfig:
    """A replay at full speed: cycles of 60 s, 40 of them, no flattening."""
    values: dict[str, Any] = {"model_path": model[0], "cycle_seconds": 60.0,
                              "session_minutes": 40.0, "flatten_at_end": False, **changes}
    return SessionConfig(**values)


@pytest.fixture(scope="module", params=list(CASES))
def replayed(request: pytest.FixtureRequest, tiny_model: Model,
             tmp_path_factory: pytest.TempPathFactory) -> tuple[SessionConfig, SessionResult]:
    cfg = config(tiny_model, **CASES[request.param])
    return cfg, run_session(cfg, tmp_path_factory.mktemp("sessions") / request.param)


def test_session_takes_the_backtests_decisions_fills_and_marks(
        replayed: tuple[SessionConfig, SessionResult], tiny_model: Model) -> None:
    cfg, session = replayed
    bars = load_bars(str(cfg.data))
    backtest = run_backtest(bars, LockedPolicy.load(tiny_model[0]), limits=cfg.risk_limits(),
                            costs=cfg.costs(), cash=cfg.cash, start=session.first_bar,
                            end=session.equity.index[-1])
    assert len(session.decisions) == cfg.cycles == 40
    assert session.trades["quantity"].sum() > 0  # the model trades: a real comparison
    pd.testing.assert_frame_equal(session.decisions, backtest.decisions)
    pd.testing.assert_frame_equal(session.trades, backtest.trades)
    pd.testing.assert_series_equal(session.equity, backtest.equity)
    pd.testing.assert_frame_equal(session.risk_events, backtest.risk_events)
    assert session.metrics == backtest.metrics


def test_session_observations_are_the_simulations(
        replayed: tuple[SessionConfig, SessionResult]) -> None:
    cfg, session = replayed
    journal = read_journal(session.journal_path)["decisions"]
    sim = Simulation(load_bars(str(cfg.data)), limits=cfg.risk_limits(), costs=cfg.costs(),
                     cash=cfg.cash, start=session.first_bar, end=session.equity.index[-1])
    sim.reset()
    for row in journal.itertuples():
        assert observation_sha256(sim.observation()) == row.obs_sha256, row.cycle
        sim.step(Action[str(row.action)])
    assert sim.done


def test_journal_rows_match_the_session(replayed: tuple[SessionConfig, SessionResult]) -> None:
    _, session = replayed
    tables = read_journal(session.journal_path)
    decisions, orders, fills = tables["decisions"], tables["orders"], tables["fills"]
    assert list(decisions["cycle"]) == list(range(len(session.decisions)))
    assert (decisions["bar_time"] == session.decisions["time"]).all()
    assert list(decisions["action"]) == list(session.decisions["action"].astype(str))
    assert list(decisions["verdict"]) == list(session.decisions["verdict"])
    assert (decisions["latency_ms"] > 0).all()
    approved = decisions.loc[decisions["verdict"] == "APPROVED", "cycle"]
    refs = [f"{session.run_id}-{c}" for c in approved]
    assert list(orders.loc[orders["state"] == "submitted", "ref"]) == refs
    assert list(orders.loc[orders["state"] == "filled", "ref"]) == refs
    assert list(fills["ref"]) == refs
    assert (fills["time"] == session.trades["time"]).all()
    assert list(fills["quantity"].abs()) == list(session.trades["quantity"])
    assert list(fills["price"]) == list(session.trades["price"])
    assert list(fills["commission"]) == list(session.trades["commission"])
    account = tables["account"]
    assert list(account["equity"]) == list(session.equity)
    assert (account["time"] == session.equity.index).all()
    assert len(tables["risk_events"]) == len(session.risk_events)
    meta = dict(zip(tables["meta"]["key"], tables["meta"]["value"], strict=True))
    assert meta["status"] == "completed" and meta["run_id"] == session.run_id
    assert json.loads(meta["summary"]) == session.summary()


def test_flatten_at_end_leaves_no_position(tiny_model: Model, tmp_path: Path) -> None:
    session = run_session(config(tiny_model, session_minutes=3.0, flatten_at_end=True),
                          tmp_path / "run")
    held = int(session.decisions["position"].iloc[-1])
    assert held > 0  # the model bought: there is something to flatten
    assert session.final_position == 0 and session.summary()["final_position"] == 0
    last = session.trades.iloc[-1]
    assert (last["side"], last["quantity"]) == ("SELL", held)
    assert len(session.equity) == 3 + 2  # decisions, their last fill, the flattening fill
    orders = read_journal(session.journal_path)["orders"]
    assert list(orders.loc[orders["ref"] == "run-flatten", "state"]) == ["submitted",
                                                                           "filled"]


def test_an_order_the_broker_cancels_after_acknowledging_it_is_journaled_and_done(
        tiny_model: Model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The broker answers "submitted", then cancels the order on its own: the next
    cycle learns it, journals it and no longer counts the order as in flight."""
    from tradinglib.broker.sim import SimBroker

    place = SimBroker.place_order

    def place_then_cancel(self: SimBroker, order: Any) -> Any:
        state = place(self, order)
        if order.ref == "run-0":
            self.cancel_order(order.ref)  # as if the broker did, after its answer
        return state

    monkeypatch.setattr(SimBroker, "place_order", place_then_cancel)
    buy = Decision(Action.BUY, "model", 0.0)
    monkeypatch.setattr(LockedPolicy, "decide", lambda self, obs: buy)
    session = run_session(config(tiny_model, session_minutes=3.0), tmp_path / "run")
    orders = read_journal(session.journal_path)["orders"]
    assert list(orders.loc[orders["ref"] == "run-0", "state"]) == ["submitted", "cancelled"]
    assert session.final_position == 5 * 2  # run-1 and run-2 filled, run-0 did not


def test_replay_at_speed_one_waits_a_cycle_per_bar(tiny_model: Model, tmp_path: Path) -> None:
    cfg = config(tiny_model, cycle_seconds=0.05, session_minutes=0.25 / 60, speed=1.0)
    assert cfg.cycles == 5
    run_session(cfg, tmp_path / "run")
    log = (tmp_path / "run" / "session.log.jsonl").read_text()
    lines = [json.loads(x) for x in log.splitlines()]
    times = [pd.Timestamp(x["time"]) for x in lines]
    assert [x["cycle"] for x in lines if "cycle" in x] == [0, 1, 2, 3, 4]
    assert "cycle" not in lines[0] and "cycle" not in lines[-1]  # session start and end
    events = {x.get("event") for x in lines}
    assert {"order", "fill"} <= events  # a JSON line for every order and fill too
    assert (times[-1] - times[0]).total_seconds() >= 0.2  # 5 pauses of 0.05 s


def failing_decide(at: int, action: Callable[[], None]) -> Callable[..., Decision]:
    """LockedPolicy.decide that calls ``action`` on its ``at``-th call (0-based)."""
    original = LockedPolicy.decide
    calls = [0]

    def decide(self: LockedPolicy, obs: object) -> Decision:
        if calls[0] == at:
            action()
        calls[0] += 1
        return original(self, obs)

    return decide


def test_an_interrupt_leaves_the_journal_up_to_the_last_complete_cycle(
        tiny_model: Model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupt() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(LockedPolicy, "decide", failing_decide(4, interrupt))
    with pytest.raises(KeyboardInterrupt):
        run_session(config(tiny_model), tmp_path / "run")
    tables = read_journal(tmp_path / "run" / JOURNAL_FILE)
    assert list(tables["decisions"]["cycle"]) == [0, 1, 2, 3]
    assert len(tables["account"]) == 5  # cycle 4 had synced the account
    meta = dict(zip(tables["meta"]["key"], tables["meta"]["value"], strict=True))
    assert meta["status"] == "failed: KeyboardInterrupt: "
    assert not logging.getLogger(LOGGER_NAME).handlers  # logging torn down


KILLED = textwrap.dedent("""
    import os, signal, sys
    from tradinglib.inference import LockedPolicy
    from tradinglib.session import SessionConfig, run_session
    original, calls = LockedPolicy.decide, [0]
    def decide(self, obs):
        if calls[0] == 6:
            os.kill(os.getpid(), signal.SIGKILL)
        calls[0] += 1
        return original(self, obs)
    LockedPolicy.decide = decide
    run_session(SessionConfig(model_path=sys.argv[1], cycle_seconds=60, session_minutes=40),
                sys.argv[2])
""")


def test_hold_fallbacks_are_journaled_and_counted(
        tiny_model: Model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    calls = [0]

    def decide(self: LockedPolicy, obs: object) -> Decision:
        calls[0] += 1
        if calls[0] % 3 == 2:
            return Decision(Action.HOLD, "timeout: model busy for over 1.0s", 1.25)
        return Decision(self.predict(obs), "model", 0.001)

    monkeypatch.setattr(LockedPolicy, "decide", decide)
    session = run_session(config(tiny_model, session_minutes=6.0), tmp_path / "run")
    journal = read_journal(session.journal_path)["decisions"]
    fell_back = journal.loc[journal["fallback"] != ""]
    assert list(fell_back["cycle"]) == [1, 4]
    assert set(fell_back["action"]) == {"HOLD"} and set(fell_back["verdict"]) == {""}
    assert list(fell_back["latency_ms"]) == [1250.0, 1250.0]
    assert list(session.decisions["fallback"] != "") == [c in (1, 4) for c in range(6)]
    assert session.metrics["hold_fallbacks"] == 2
    assert "cycle 2/6 2016-10-24 HOLD (fallback: timeout: model busy for over 1.0s)" in (
        capsys.readouterr().out)


def test_a_killed_session_leaves_a_readable_journal(tiny_model: Model, tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-c", KILLED, str(tiny_model[0]), str(out)],
                          check=False, capture_output=True, timeout=120,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()
    tables = read_journal(out / JOURNAL_FILE)
    assert list(tables["decisions"]["cycle"]) == list(range(6))
    meta = dict(zip(tables["meta"]["key"], tables["meta"]["value"], strict=True))
    assert meta["status"] == "running"
    assert len(tables["fills"]) == len(tables["orders"].query("state == 'filled'"))


def test_bars_running_out_shorten_the_session(tiny_model: Model, tmp_path: Path) -> None:
    bars = load_bars("googl-daily")
    session = run_session(config(tiny_model, start=str(bars.index[-4].date())),
                          tmp_path / "run")
    assert list(session.decisions["time"]) == list(bars.index[-4:-1])
    assert session.equity.index[-1] == bars.index[-1]
    assert "the data ends" in (tmp_path / "run" / "session.log.jsonl").read_text()


@pytest.mark.parametrize(("start", "message"), [
    ("2009-06-01", "lacks history: the features need bars before it; start at 2009-08-03"),
    ("2030-01-01", "after the last bar"),
    ("2018-08-28", r"only 2 bar\(s\) from 2018-08-28 .* needs 3"),  # flattening needs a 3rd
])
def test_a_replay_start_without_bars_is_a_clear_error(
        tiny_model: Model, tmp_path: Path, start: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        run_session(config(tiny_model, start=start, flatten_at_end=True), tmp_path / "run")
    meta = read_journal(tmp_path / "run" / JOURNAL_FILE)["meta"]
    assert str(meta.set_index("key").loc["status", "value"]).startswith("failed: DataError")


def test_missing_model_and_reused_folder_are_clear_errors(tiny_model: Model,
                                                          tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no model file"):
        run_session(config(tiny_model, model_path=tmp_path / "none.zip"), tmp_path / "a")
    with pytest.raises(JournalError, match="exists already"):
        run_session(config(tiny_model), tmp_path / "a")


@pytest.mark.parametrize(("field", "value"), [
    ("model_path", ""), ("data", None), ("symbol", ""), ("broker", "tws"), ("ib_port", 0),
    ("ib_client_id", -1), ("metrics_port", 70000), ("stop_at", "2026-11-27 17:55"),
    ("reconnect_timeout", 0),
    ("cycle_seconds", 0), ("cycle_seconds", float("nan")), ("session_minutes", -1),
    ("session_minutes", 0.1), ("trade_quantity", 2.5), ("trade_quantity", True),
    ("max_daily_loss", 0), ("max_position_value", "10000"), ("replay", False),
    ("replay", 1), ("speed", -1), ("start", "not a date"), ("start", 20170103),
    ("cash", float("inf")), ("slippage_bps", -0.5), ("flatten_at_end", "yes"),
    ("run_id", "my run"), ("run_id", ""),
])
def test_config_errors_name_the_field(field: str, value: object) -> None:
    with pytest.raises(InputError, match=rf"SessionConfig\.{field}\b"):
        SessionConfig(**{"model_path": "models/x.zip", field: value})


def test_config_from_settings_with_parameters() -> None:
    settings = Settings(trading_cycle_seconds=60, trading_session_minutes=90,
                        trade_quantity=7, max_daily_loss=250, max_position_value=5000)
    cfg = SessionConfig.from_settings(settings, model_path="models/x.zip", speed=10)
    assert (cfg.cycles, cfg.trade_quantity, cfg.speed) == (90, 7, 10)
    assert cfg.risk_limits().max_daily_loss == 250
    assert cfg.risk_limits().max_position_value == 5000
    assert cfg.to_dict()["model_path"] == "models/x.zip"
    with pytest.raises(InputError, match="did you mean 'cycle_seconds'"):
        SessionConfig.from_settings(settings, model_path="x.zip", cylce_seconds=5)
    with pytest.raises(InputError, match="model_path is required"):
        SessionConfig.from_settings(settings)


# -- logs -----------------------------------------------------------------------------


def test_logging_twice_adds_no_handlers_and_writes_json_lines(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    logger = logging.getLogger(f"{LOGGER_NAME}.session")
    setup_logging(tmp_path / "first")
    path = setup_logging(tmp_path)
    try:
        assert len(logging.getLogger(LOGGER_NAME).handlers) == 2
        logger.info("cycle 1/2 ok", extra={"cycle": 0, "bar_time": pd.Timestamp(
            "2017-03-02", tz="UTC")})
        logger.warning("order rejected")
    finally:
        teardown_logging()
    assert not logging.getLogger(LOGGER_NAME).handlers
    assert logging.getLogger(LOGGER_NAME).propagate
    first, second = (json.loads(line) for line in path.read_text().splitlines())
    assert first["message"] == "cycle 1/2 ok" and first["cycle"] == 0
    assert (first["level"], first["logger"]) == ("INFO", "tradinglib.session")
    assert first["bar_time"] == "2017-03-02 00:00:00+00:00"
    assert pd.Timestamp(first["time"]).tzname() == "UTC"
    assert second["level"] == "WARNING"
    assert capsys.readouterr().out == "cycle 1/2 ok\nWARNING: order rejected\n"
    assert (tmp_path / "first" / "session.log.jsonl").read_text() == ""


@pytest.mark.parametrize(("args", "line"), [
    ((11, 60, pd.Timestamp("2017-03-02", tz="America/New_York"), "BUY", 5, 845.2,
      "APPROVED", 10, 100_123.454),
     "cycle 12/60 2017-03-02 BUY 5 @ 845.20 APPROVED | pos 10 equity 100,123.45"),
    ((0, 3, pd.Timestamp("2017-03-02 10:35", tz="UTC"), "SELL", 1000, 1.0612,
      "SHORT_NOT_ALLOWED", 0, 99_000.0),
     "cycle 1/3 2017-03-02 10:35 SELL 1000 @ 1.06 SHORT_NOT_ALLOWED | pos 0 equity 99,000.00"),
    ((2, 3, pd.Timestamp("2017-03-02", tz="UTC"), "HOLD", 5, 845.2, "", -5, 1.0,
      "timeout: model busy"),
     "cycle 3/3 2017-03-02 HOLD (fallback: timeout: model busy) | pos -5 equity 1.00"),
])
def test_cycle_line_reads_well(args: tuple[Any, ...], line: str) -> None:
    assert cycle_line(*args) == line


def test_stop_at_ends_the_session_early_and_flat(tiny_model: Model, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}

    def buy(self: LockedPolicy, obs: object) -> Decision:
        calls["n"] += 1
        return Decision(Action.BUY, "model", 0.0)

    monkeypatch.setattr(LockedPolicy, "decide", buy)
    # room for a slow model load before the first cycle (a passed stop_at is refused)
    stop = pd.Timestamp.now(tz="UTC") + pd.Timedelta(seconds=4)
    cfg = config(tiny_model, cycle_seconds=0.1, session_minutes=1.0, speed=1.0,
                 stop_at=stop.isoformat(), flatten_at_end=True)
    assert cfg.cycles == 600
    result = run_session(cfg, tmp_path / "run")
    assert 3 <= len(result.decisions) < 60  # at most 40 cycles of 0.1 s before stop_at
    assert result.final_position == 0  # flattened at stop_at
    assert "stop_at" in (tmp_path / "run" / "session.log.jsonl").read_text()
    with pytest.raises(InputError, match=r"stop_at .* has passed"):
        run_session(config(tiny_model, stop_at="2020-01-01T00:00:00+00:00"), tmp_path / "b")
