"""Notebook parameters: defaults, unknown names, types, ranges, paths, settings, cache."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from tradinglib.exceptions import ConfigError, InputError
from tradinglib.modelcard import ModelCard, card_path
from tradinglib.params import (
    PARAMS_MODELS,
    BacktestParams,
    ExploreParams,
    PaperParams,
    ParameterScope,
    ReportParams,
    TrainParams,
    cached_card,
    cached_model_matches,
    find_latest_run,
    params_from_namespace,
    validate_params,
)
from tradinglib.train import DEFAULT_HYPERPARAMETERS

ROOT = Path(__file__).resolve().parents[1]
SETTINGS_VARIABLES = ("TRADE_QUANTITY", "MAX_DAILY_LOSS", "MAX_POSITION_VALUE",
                      "TRADING_CYCLE_SECONDS", "TRADING_SESSION_MINUTES")


@pytest.fixture(autouse=True)
def _clean_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The seed's variables unset and no .env in the working directory."""
    for name in SETTINGS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("TRADINGLIB_ROOT", raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def model(tiny_model: tuple[Path, ModelCard]) -> str:
    return str(tiny_model[0])


def _message(kind: str, values: dict[str, Any]) -> str:
    with pytest.raises(InputError) as info:
        validate_params(kind, values)
    return str(info.value)


# ------------------------------------------------------------------ defaults


def test_train_defaults_need_nothing() -> None:
    params = validate_params("train", {})
    assert isinstance(params, TrainParams)
    assert (params.data, params.steps, params.seed, params.holdout) == ("googl-daily", 20_000,
                                                                         0, 0.2)
    assert params.model_path == "models/demo-googl.zip" and params.reuse is True
    assert params.output_dir == "runs/lab/train"


def test_limits_default_to_the_seed_settings(model: str) -> None:
    params = validate_params("paper", {"model_path": model})
    assert isinstance(params, PaperParams)
    assert (params.trade_quantity, params.max_daily_loss, params.max_position_value) == (
        5, 500.0, 10_000.0)
    assert (params.cycle_seconds, params.session_minutes) == (30.0, 30.0)
    assert params.broker == "sim" and params.replay and params.speed == 0.0
    # every session in JupyterLab gets its own folder: a journal is never reused
    assert re.fullmatch(r"runs/lab/paper-\d{8}T\d{6}Z", params.output_dir)


def test_time_placeholder_in_any_output_dir(tmp_path: Path) -> None:
    params = validate_params("train", {"output_dir": str(tmp_path / "t-{time}")})
    assert re.fullmatch(r"t-\d{8}T\d{6}Z", Path(params.output_dir).name)


def test_limits_come_from_the_environment_unless_given(model: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_DAILY_LOSS", "250")
    monkeypatch.setenv("TRADE_QUANTITY", "3")
    monkeypatch.setenv("TRADING_CYCLE_SECONDS", "60")
    params = validate_params("paper", {"model_path": model, "trade_quantity": 7})
    assert params.max_daily_loss == 250.0 and params.cycle_seconds == 60.0
    assert params.trade_quantity == 7  # the parameter wins over the environment
    limits = params.limits()
    assert (limits.max_daily_loss, limits.trade_quantity) == (250.0, 7)


def test_a_bad_environment_value_is_a_config_error(model: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_DAILY_LOSS", "abc")
    with pytest.raises(InputError, match="MAX_DAILY_LOSS='abc'"):
        validate_params("backtest", {"model_path": model})
    with pytest.raises(ConfigError):  # the training limits come from the settings too
        validate_params("train", {}).limits()


def test_dates_from_yaml_become_iso_text(model: str) -> None:
    params = validate_params("backtest", {"model_path": model, "start": dt.date(2017, 1, 3),
                                          "end": pd.Timestamp("2017-06-30 16:00")})
    assert isinstance(params, BacktestParams)
    assert (params.start, params.end) == ("2017-01-03", "2017-06-30T16:00:00")


def test_first_decision_defaults_to_the_holdout_start(
        model: str, tiny_model: tuple[Path, ModelCard]) -> None:
    card = tiny_model[1]
    params = validate_params("backtest", {"model_path": model})
    assert card.holdout_data is not None
    assert params.first_decision(card) == card.holdout_data.start
    params = validate_params("backtest", {"model_path": model, "start": "2018-01-02"})
    assert params.first_decision(card) == "2018-01-02"
    assert params.costs().slippage_bps == 0.0


def test_aliases_and_model_table() -> None:
    assert set(PARAMS_MODELS) == {"train", "backtest", "paper", "report", "explore"}
    assert "broker" in _message("paper_session", {"broker": "tws"})


# ------------------------------------------------------------------ unknown names


@pytest.mark.parametrize(
    ("kind", "values", "expected"),
    [
        ("train", {"stepz": 5}, "unknown parameter 'stepz' for train (did you mean 'steps'?); "
                                "valid: data, steps, seed, holdout, model_path, reuse, "
                                "output_dir"),
        ("backtest", {"slipage_bps": 1.0}, "(did you mean 'slippage_bps'?)"),
        ("paper", {"max_daily_los": 1.0}, "(did you mean 'max_daily_loss'?)"),
        ("report", {"rundir": "x"}, "(did you mean 'run_dir'?)"),
        ("train", {"zzz": 1}, "unknown parameter 'zzz' for train; valid:"),
        ("train", {"stepz": 1, "sed": 2}, "unknown parameters 'stepz' (did you mean 'steps'?), "
                                          "'sed' (did you mean 'seed'?) for train"),
    ],
)
def test_unknown_names_are_named_with_a_suggestion(kind: str, values: dict[str, Any],
                                                   expected: str) -> None:
    assert expected in _message(kind, values)


def test_unknown_kind() -> None:
    assert "unknown notebook kind 'trian' (did you mean 'train'?)" in _message("trian", {})


# ------------------------------------------------------------------ types and ranges


@pytest.mark.parametrize(
    ("kind", "values", "expected"),
    [
        ("train", {"steps": 0}, "steps=0: Input should be greater than or equal to 1"),
        ("train", {"steps": "many"}, "steps='many': Input should be a valid integer"),
        ("train", {"steps": True}, "steps=True: Input should be a valid integer"),
        ("train", {"steps": 10.5}, "steps=10.5: Input should be a valid integer"),
        ("train", {"seed": -1}, "seed=-1: Input should be greater than or equal to 0"),
        ("train", {"holdout": 1.0}, "holdout=1.0: Input should be less than 1"),
        ("train", {"holdout": 0}, "holdout=0: Input should be greater than 0"),
        ("train", {"reuse": "yes"}, "reuse='yes': Input should be a valid boolean"),
        ("train", {"model_path": "models/x.pt"}, "model_path='models/x.pt': a model path "
                                                 "ends in .zip"),
        ("train", {"data": "nosuch"}, "data='nosuch': not a built-in data set (googl-daily, "
                                      "eurusd-hourly) and no file at"),
        ("train", {"output_dir": 3}, "output_dir=3: Input should be a valid string"),
        ("backtest", {"cash": 0}, "cash=0: Input should be greater than 0"),
        ("backtest", {"cash": float("inf")}, "cash=inf: Input should be a finite number"),
        ("backtest", {"slippage_bps": -1}, "slippage_bps=-1: Input should be greater than or "
                                           "equal to 0"),
        ("backtest", {"start": "someday"}, "start='someday': not a date or time"),
        ("backtest", {"start": 5}, "start=5: Input should be a valid string"),
        ("backtest", {"max_daily_loss": -5}, "max_daily_loss=-5: Input should be greater "
                                             "than 0"),
        ("backtest", {"trade_quantity": 2.5}, "trade_quantity=2.5: Input should be a valid "
                                              "integer"),
        ("paper", {"broker": "tws"}, "broker='tws': Input should be 'sim' or 'ib'"),
        ("paper", {"speed": -1.0}, "speed=-1.0: Input should be greater than or equal to 0"),
        ("paper", {"cycle_seconds": 0}, "cycle_seconds=0: Input should be greater than 0"),
        ("paper", {"session_minutes": "long"}, "session_minutes='long': Input should be a "
                                               "valid number"),
        ("paper", {"symbol": ""}, "symbol='': String should have at least 1 character"),
        ("paper", {"stop_at": "2026-11-27 17:55"}, "stop_at='2026-11-27 17:55': a stop time "
                                                   "needs a UTC offset"),
        ("paper", {"stop_at": "at the close"}, "stop_at='at the close': not a date or time"),
        ("paper", {"flatten_margin_minutes": -1}, "flatten_margin_minutes=-1: Input should be "
                                                  "greater than or equal to 0"),
        ("paper", {"metrics_port": 65536}, "metrics_port=65536: Input should be less than or "
                                           "equal to 65535"),
        ("paper", {"metrics_port": "9100"}, "metrics_port='9100': Input should be a valid "
                                            "integer"),
        ("report", {"backtest": "no", "run_dir": "."}, "backtest='no': Input should be a "
                                                       "valid boolean"),
    ],
)
def test_bad_values_name_the_parameter_the_value_and_the_rule(
        kind: str, values: dict[str, Any], expected: str, model: str) -> None:
    if kind in ("backtest", "paper"):
        values = {"model_path": model, **values}
    message = _message(kind, values)
    assert expected in message
    assert message.startswith(f"invalid {kind if kind != 'paper_session' else 'paper'} ")
    assert "pydantic" not in message and "errors.pydantic.dev" not in message


def test_stop_time_margin_and_metrics_port(model: str) -> None:
    params = validate_params("paper", {"model_path": model})
    assert (params.stop_at, params.flatten_margin_minutes, params.metrics_port) == (
        None, 5.0, None)
    values = yaml.safe_load("stop_at: 2026-11-27T12:55:00-05:00\n"  # YAML reads a datetime
                            "flatten_margin_minutes: 0\nmetrics_port: 0\n")
    params = validate_params("paper", {"model_path": model, **values})
    assert pd.Timestamp(params.stop_at) == pd.Timestamp("2026-11-27 17:55", tz="UTC")
    assert (params.flatten_margin_minutes, params.metrics_port) == (0, 0)


def test_several_problems_in_one_message() -> None:
    message = _message("train", {"steps": 0, "holdout": 2.0})
    assert message.startswith("invalid train parameters: steps=0: ")
    assert "; holdout=2.0: Input should be less than 1" in message


def test_errors_pickle_across_the_kernel_boundary() -> None:
    import pickle

    with pytest.raises(InputError) as info:
        validate_params("train", {"stepz": 1})
    again = pickle.loads(pickle.dumps(info.value))
    assert type(again) is InputError and str(again) == str(info.value)


# ------------------------------------------------------------------ models and paths


def test_missing_model_says_how_to_make_one() -> None:
    message = _message("backtest", {"model_path": "models/none.zip"})
    assert "model_path='models/none.zip': no model at " in message
    assert "train one first with `tradinglib run train -f params/train.yaml`" in message


def test_model_without_card(tmp_path: Path, model: str) -> None:
    lonely = tmp_path / "lonely.zip"
    shutil.copy(model, lonely)
    message = _message("paper", {"model_path": str(lonely)})
    assert "lonely.card.json is missing beside the model" in message


@pytest.fixture
def project(tmp_path: Path, tiny_model: tuple[Path, ModelCard]) -> Path:
    """A project folder (notebooks/, params/) with models/tiny.zip and a CSV of bars."""
    root = tmp_path / "project"
    for folder in ("notebooks", "params", "models", "data", "runs"):
        (root / folder).mkdir(parents=True)
    shutil.copy(tiny_model[0], root / "models" / "tiny.zip")
    shutil.copy(card_path(tiny_model[0]), card_path(root / "models" / "tiny.zip"))
    (root / "data" / "bars.csv").write_text(
        "Date,Open,High,Low,Close,Volume\n2024-01-02,1,2,0.5,1.5,100\n")
    return root


@pytest.mark.parametrize("cwd", ["", "notebooks"])
def test_relative_paths_resolve_from_the_project_root(project: Path, cwd: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project / cwd)
    params = validate_params("backtest", {"model_path": "models/tiny.zip",
                                          "data": "data/bars.csv", "output_dir": "runs/x"})
    assert params.model_file == project / "models" / "tiny.zip"
    assert params.data_source == str(project / "data" / "bars.csv")
    assert params.output_folder() == project / "runs" / "x"
    assert (project / "runs" / "x").is_dir()


def test_tradinglib_root_wins(project: Path, tmp_path: Path,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("TRADINGLIB_ROOT", str(project))
    params = validate_params("explore", {"model_path": "models/tiny.zip"})
    assert isinstance(params, ExploreParams)
    assert params.model_file == project / "models" / "tiny.zip"
    assert validate_params("explore", {}).model_file is None
    assert validate_params("train", {}).model_file == project / "models" / "demo-googl.zip"


def test_builtin_data_is_not_a_path() -> None:
    assert validate_params("explore", {"data": "eurusd-hourly"}).data_source == "eurusd-hourly"


def test_path_objects_are_accepted(model: str, tmp_path: Path) -> None:
    params = validate_params("backtest", {"model_path": Path(model),
                                          "output_dir": tmp_path / "out"})
    assert params.model_path == model and params.output_dir == str(tmp_path / "out")


# ------------------------------------------------------------------ the namespace


def test_params_from_namespace_picks_the_known_names() -> None:
    namespace = {"steps": 512, "seed": 3, "bars": object(), "x": 1}
    params = params_from_namespace("train", namespace)
    assert (params.steps, params.seed) == (512, 3)


def _kernel_namespace() -> dict[str, Any]:
    import math

    return {"In": [""], "Out": {}, "get_ipython": print, "exit": None, "math": math,
            "stale": 1.5}


def test_scope_reports_injected_unknown_names() -> None:
    namespace = _kernel_namespace()
    scope = ParameterScope(namespace)
    namespace["scope"] = scope
    namespace.update(steps=300, seed=1, stepz=5, _private=2, helper=lambda: None)
    with pytest.raises(InputError, match=r"unknown parameter 'stepz' for train \(did you mean "
                                         r"'steps'\?\)"):
        scope.validate("train")
    del namespace["stepz"]
    params = scope.validate("train")  # names before the scope ('stale') are not parameters
    assert params.steps == 300


def test_scope_checks_unknown_names_only_on_the_first_validation() -> None:
    namespace = _kernel_namespace()
    scope = ParameterScope(namespace)
    namespace.update(steps=300)
    assert scope.validate("train").steps == 300
    namespace.update(reused=True, steps=400)  # a later cell's variable; then a re-run
    assert scope.validate("train").steps == 400


def test_scope_still_checks_values() -> None:
    namespace = _kernel_namespace()
    scope = ParameterScope(namespace)
    namespace.update(steps=0)
    with pytest.raises(InputError, match="steps=0"):
        scope.validate("train")


# ------------------------------------------------------------------ run folders


def _run(folder: Path, *, kind: str | None = None, status: str | None = None,
         mtime: float = 1_000_000.0) -> Path:
    folder.mkdir(parents=True)
    results = folder / "results.json"
    results.write_text(json.dumps({"kind": kind} if kind else {}))
    if status is not None:
        (folder / "manifest.json").write_text(json.dumps({"kind": kind, "status": status}))
    os.utime(results, (mtime, mtime))
    return folder


def test_find_latest_run(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADINGLIB_ROOT", str(project))
    runs = project / "runs"
    assert find_latest_run("paper") is None
    _run(runs / "20250101T000000Z-paper-a", mtime=1e6)
    newest = _run(runs / "20250102T000000Z-paper-b", mtime=2e6)
    _run(runs / "20250103T000000Z-backtest-c", kind="backtest", mtime=3e6)
    _run(runs / "20250104T000000Z-paper-failed", kind="paper", status="failed", mtime=4e6)
    _run(runs / ".tmp-20250105T000000Z-paper-running", kind="paper", mtime=5e6)
    (runs / "20250106T000000Z-paper-unfinished").mkdir()
    assert find_latest_run("paper") == newest
    lab = _run(runs / "lab" / "paper", mtime=2.5e6)
    assert find_latest_run("paper") == lab
    assert find_latest_run("backtest") == runs / "20250103T000000Z-backtest-c"
    params = validate_params("report", {})
    assert isinstance(params, ReportParams)
    assert params.run_path == lab and params.backtest is True
    assert params.output_dir == "runs/lab/report"


def test_report_without_runs_says_what_to_do(project: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADINGLIB_ROOT", str(project))
    message = _message("report", {})
    assert "run_dir=None: no paper run found under" in message
    assert "tradinglib run paper -f params/paper.yaml" in message
    assert "no run folder at" in _message("report", {"run_dir": "runs/nothing"})
    (project / "runs" / "empty").mkdir()
    assert "has no results.json" in _message("report", {"run_dir": "runs/empty"})


# ------------------------------------------------------------------ parameter files


@pytest.mark.parametrize("name", ["train", "backtest", "paper", "report"])
def test_parameter_files_validate(name: str, model: str, tmp_path: Path) -> None:
    values = yaml.safe_load((ROOT / "params" / f"{name}.yaml").read_text())
    assert isinstance(values, dict) and "output_dir" not in values  # the runner sets it
    if "model_path" in values and name != "train":
        values["model_path"] = model  # the demo model is not in a fresh clone
    if name == "report":
        _run(tmp_path / "paper", kind="paper")
        values["run_dir"] = str(tmp_path / "paper")
    params = validate_params(name, values)
    assert params.output_dir.startswith("runs/lab/")


# ------------------------------------------------------------------ model cache


@pytest.fixture
def cacheable(tiny_model: tuple[Path, ModelCard], tmp_path: Path) -> tuple[Path, ModelCard]:
    """The tiny model with a card claiming the default hyperparameters (as a notebook
    training run would write), so that a cache lookup can hit."""
    zip_path = tmp_path / "cached.zip"
    shutil.copy(tiny_model[0], zip_path)
    card = tiny_model[1].model_copy(update={"hyperparameters": dict(DEFAULT_HYPERPARAMETERS)})
    card.write(card_path(zip_path))
    return zip_path, card


def _train_params(zip_path: Path, **changes: Any) -> TrainParams:
    values: dict[str, Any] = {"model_path": str(zip_path), "steps": 1024, "seed": 7,
                              "holdout": 0.2, **changes}
    params = validate_params("train", values)
    assert isinstance(params, TrainParams)
    return params


def test_cached_card_hits_for_the_same_training(cacheable: tuple[Path, ModelCard],
                                                googl: pd.DataFrame) -> None:
    card = cached_card(_train_params(cacheable[0]), googl)
    assert card is not None and card.sha256 == cacheable[1].sha256


@pytest.mark.parametrize(
    "changes",
    [{"steps": 2048}, {"seed": 8}, {"holdout": 0.3}, {"reuse": False},
     {"data": "eurusd-hourly"}],
)
def test_cached_card_misses_when_anything_differs(cacheable: tuple[Path, ModelCard],
                                                  googl: pd.DataFrame,
                                                  changes: dict[str, Any]) -> None:
    assert cached_card(_train_params(cacheable[0], **changes), googl) is None


def test_cached_card_misses_for_other_limits_bars_or_files(
        cacheable: tuple[Path, ModelCard], googl: pd.DataFrame,
        tiny_model: tuple[Path, ModelCard], monkeypatch: pytest.MonkeyPatch) -> None:
    zip_path, card = cacheable
    params = _train_params(zip_path)
    other = googl.copy()
    other.iloc[100, other.columns.get_loc("close")] *= 1.01
    assert cached_card(params, other) is None  # same name, other bars
    monkeypatch.setenv("MAX_DAILY_LOSS", "100")
    assert cached_card(params, googl) is None  # other risk limits
    monkeypatch.delenv("MAX_DAILY_LOSS")
    assert cached_card(_train_params(tiny_model[0]), googl) is None  # other hyperparameters
    zip_path.write_bytes(zip_path.read_bytes() + b"tampered")
    assert cached_card(params, googl) is None  # the zip no longer matches its card
    card_path(zip_path).unlink()
    assert cached_card(params, googl) is None
    zip_path.unlink()
    assert cached_card(params, googl) is None
    assert cached_model_matches(card, data="googl-daily", steps=1024, seed=7)


# ------------------------------------------------------------------ the session config


def test_session_config_carries_every_session_field(model: str, tmp_path: Path) -> None:
    session = pytest.importorskip("tradinglib.session", reason="tradinglib.session not "
                                                                "available yet")
    params = validate_params("paper", {"model_path": model, "start": "2017-03-01",
                                       "speed": 2.0, "trade_quantity": 3,
                                       "output_dir": str(tmp_path / ".tmp-20250101T000000Z-"
                                                                     "paper-x")})
    assert isinstance(params, PaperParams)
    config = params.session_config()
    assert isinstance(config, session.SessionConfig)
    assert Path(config.model_path) == Path(model)
    assert (config.data, config.start, config.speed, config.trade_quantity) == (
        "googl-daily", "2017-03-01", 2.0, 3)
    assert config.run_id == "20250101T000000Z-paper-x"
    assert params.session_config(run_id="mine").run_id == "mine"
