"""Notebook parameters: one pydantic model per notebook kind, checked where they enter.

Every parameterized notebook (``notebooks/*.ipynb``) has one cell tagged ``parameters``
whose defaults equal the defaults here, so Run All in JupyterLab works with no edits,
and a validation cell right after it (after papermill's injected cell, when there is one)::

    from tradinglib.params import ParameterScope
    scope = ParameterScope(globals())       # the cell before the parameters cell

    params = scope.validate("train")         # the cell after it

The runner calls :func:`validate_params` with the same values before it starts a kernel,
so a bad parameter set stops a run before any work, with one message that names the
parameter, the value and the rule (:class:`~tradinglib.exceptions.InputError`).

Paths (``data``, ``model_path``, ``output_dir``, ``run_dir``) may be relative: they are
taken from the project root (:func:`tradinglib.paths.resolve`), so the same parameter
file works from the project root, from ``notebooks/`` (JupyterLab, ``papermill --cwd``)
and from the runner. The models keep the values as given; properties and methods such as
:attr:`TrainParams.model_file` give the absolute paths.

Kinds: ``train``, ``backtest``, ``paper`` (alias ``paper_session``), ``report`` and
``explore``; see :data:`PARAMS_MODELS`.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from types import FunctionType, ModuleType
from typing import TYPE_CHECKING, Any, Final, Literal, overload

import pandas as pd
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import ErrorDetails

from tradinglib.config import load_settings
from tradinglib.data import BUILTIN_SOURCES, source_path
from tradinglib.exceptions import InputError, did_you_mean
from tradinglib.modelcard import CARD_SUFFIX, card_path
from tradinglib.paths import project_root, resolve

if TYPE_CHECKING:
    from tradinglib.costs import Costs
    from tradinglib.modelcard import ModelCard
    from tradinglib.risk import RiskLimits
    from tradinglib.session import SessionConfig

__all__ = [
    "PARAMS_MODELS",
    "BacktestParams",
    "ExploreParams",
    "Kind",
    "PaperParams",
    "ParameterScope",
    "ReportParams",
    "SweepReportParams",
    "TrainParams",
    "cached_card",
    "cached_model_matches",
    "find_latest_run",
    "params_from_namespace",
    "validate_params",
]

Kind = Literal["train", "backtest", "paper", "report", "explore"]
DEFAULT_MODEL: Final = "models/demo-googl.zip"
DEFAULT_DATA: Final = "googl-daily"
TRAIN_HINT: Final = "train one first with `tradinglib run train -f params/train.yaml`"
PAPER_HINT: Final = ("run a paper session first with `tradinglib run paper -f "
                     "params/paper.yaml`, or pass run_dir")
_SETTING_FIELDS: Final = {  # parameter -> Settings attribute, for "None: from settings"
    "trade_quantity": "trade_quantity",
    "max_daily_loss": "max_daily_loss",
    "max_position_value": "max_position_value",
    "cycle_seconds": "trading_cycle_seconds",
    "session_minutes": "trading_session_minutes",
}


# ------------------------------------------------------------------ field checks


def _as_text(value: object) -> object:
    """A path-like as ``str``; anything else unchanged (strict validation judges it)."""
    return os.fspath(value) if isinstance(value, os.PathLike) else value


TIME_PLACEHOLDER: Final = "{time}"
"""In ``output_dir``, replaced by the UTC time of validation (``20250102T093000Z``)."""


def _output_field(kind: str, default: str | None = None) -> Any:
    """The ``output_dir`` field of ``kind``: ``runs/lab/<kind>`` unless the runner passes one."""
    return Field(default or f"runs/lab/{kind}", min_length=1,
                 description="folder for this run's tables, figures and results.json; "
                             f"relative paths start at the project root; {TIME_PLACEHOLDER} "
                             "becomes the UTC time; the runner passes the run folder")


def _expand_time(value: object) -> object:
    """``value`` with ``{time}`` replaced by the current UTC time, if it is text."""
    if isinstance(value, str) and TIME_PLACEHOLDER in value:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        return value.replace(TIME_PLACEHOLDER, stamp)
    return value


def _check_data(value: str) -> str:
    """``value`` if it is a built-in data name or an existing file, else ValueError."""
    if value in BUILTIN_SOURCES:
        return value
    path = resolve(value)
    if not path.is_file():
        raise ValueError(
            f"not a built-in data set ({', '.join(BUILTIN_SOURCES)}) and no file at {path} "
            f"(relative paths start at the project root {project_root()})")
    return value


def _check_model(value: str) -> str:
    """``value`` if a model zip and its card exist there, else ValueError with the fix."""
    if not value.endswith(".zip"):
        raise ValueError("a model path ends in .zip (its card sits beside it as "
                         f"NAME{CARD_SUFFIX})")
    path = resolve(value)
    if not path.is_file():
        raise ValueError(f"no model at {path}; {TRAIN_HINT}")
    if not card_path(path).is_file():
        raise ValueError(f"the model card {card_path(path)} is missing beside the model; "
                         f"a model is only used with its card: {TRAIN_HINT}")
    return value


def _check_time(value: object) -> object:
    """A date or time as an ISO string; None stays None; ValueError if unparsable."""
    if value is None:
        return None
    if isinstance(value, dt.date | pd.Timestamp):  # YAML dates, datetime, Timestamp
        return value.isoformat()
    if isinstance(value, str):
        try:
            unparsable = pd.isna(pd.Timestamp(value))
        except (ValueError, TypeError):
            unparsable = True
        if unparsable:
            raise ValueError("not a date or time; use e.g. 2017-01-03 or "
                             "2017-01-03 09:30:00-04:00")
    return value


def _from_settings(name: str, value: object) -> object:
    """``value``, or the configured value (environment, ``.env``) when it is None."""
    if value is None:
        return getattr(load_settings(), _SETTING_FIELDS[name])
    return value


# ------------------------------------------------------------------ the models


class _Params(BaseModel):
    """Common base: unknown names are errors, types are strict, models are frozen."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True,
                              validate_default=True)

    if TYPE_CHECKING:
        output_dir: str  # each kind declares it last, with its own default

    @field_validator("output_dir", mode="before", check_fields=False)
    @classmethod
    def _output_text(cls, value: object) -> object:
        return _expand_time(_as_text(value))

    def output_folder(self) -> Path:
        """The absolute output folder, created if missing."""
        folder = resolve(self.output_dir)
        folder.mkdir(parents=True, exist_ok=True)
        return folder


class _DataParams(_Params):
    """Parameters that read bars: ``data`` is a built-in name or a CSV/Parquet file."""

    data: str = Field(DEFAULT_DATA, min_length=1,
                      description="built-in data set name or a CSV/Parquet file path")

    @field_validator("data", mode="before")
    @classmethod
    def _data_text(cls, value: object) -> object:
        return _as_text(value)

    @field_validator("data")
    @classmethod
    def _data_exists(cls, value: str) -> str:
        return _check_data(value)

    @property
    def data_source(self) -> str:
        """What :func:`tradinglib.data.load_bars` takes: a built-in name or an absolute path."""
        return source_path(self.data)


class _ModelParams(_DataParams):
    """Parameters that use a trained model: the zip and its card must exist."""

    model_path: str = Field(DEFAULT_MODEL, description="trained model zip (card beside it)")

    @field_validator("model_path", mode="before")
    @classmethod
    def _model_text(cls, value: object) -> object:
        return _as_text(value)

    @field_validator("model_path")
    @classmethod
    def _model_exists(cls, value: str) -> str:
        return _check_model(value)

    @property
    def model_file(self) -> Path:
        """The model zip as an absolute path."""
        return resolve(self.model_path)


class _TradingParams(_ModelParams):
    """Account, costs and risk limits shared by backtests and paper sessions.

    Limits left as None come from the configuration (environment variables and ``.env``:
    ``TRADE_QUANTITY``, ``MAX_DAILY_LOSS``, ``MAX_POSITION_VALUE``); the validated model
    holds the numbers.
    """

    start: str | None = Field(None, description="first decision bar (date or time); None: "
                                                "the model card's holdout start")
    cash: float = Field(100_000.0, gt=0, allow_inf_nan=False, description="starting cash, USD")
    slippage_bps: float = Field(0.0, ge=0, le=1_000, allow_inf_nan=False,
                                description="adverse slippage per fill, basis points")
    trade_quantity: int = Field(None, gt=0,  # type: ignore[assignment]
                                description="shares per order; None: TRADE_QUANTITY")
    max_daily_loss: float = Field(None, gt=0, allow_inf_nan=False,  # type: ignore[assignment]
                                  description="USD; None: MAX_DAILY_LOSS")
    max_position_value: float = Field(None, gt=0, allow_inf_nan=False,  # type: ignore[assignment]
                                      description="USD; None: MAX_POSITION_VALUE")

    @field_validator("start", mode="before")
    @classmethod
    def _start_time(cls, value: object) -> object:
        return _check_time(value)

    @field_validator("trade_quantity", "max_daily_loss", "max_position_value", mode="before")
    @classmethod
    def _limit_default(cls, value: object, info: ValidationInfo) -> object:
        return _from_settings(str(info.field_name), value)

    def first_decision(self, card: ModelCard) -> str | None:
        """``start``, or the start of the model's held-out range when ``start`` is None."""
        if self.start is not None:
            return self.start
        return card.holdout_data.start if card.holdout_data is not None else None

    def limits(self) -> RiskLimits:
        """The risk limits of this run (the other rules keep their defaults)."""
        from tradinglib.risk import RiskLimits

        return RiskLimits(max_daily_loss=self.max_daily_loss,
                          max_position_value=self.max_position_value,
                          trade_quantity=self.trade_quantity)

    def costs(self) -> Costs:
        """The cost model of this run: IBKR-style commission plus ``slippage_bps``."""
        from tradinglib.costs import Costs

        return Costs(slippage_bps=self.slippage_bps)


class TrainParams(_DataParams):
    """Parameters of ``notebooks/train.ipynb``: train PPO, write the model zip and card."""

    steps: int = Field(20_000, ge=1, description="PPO environment steps")
    seed: int = Field(0, ge=0, lt=2**32, description="random seed (same seed, same model)")
    holdout: float = Field(0.2, gt=0, lt=1, description="fraction of bars, at the end, kept "
                                                        "out of training for evaluation")
    model_path: str = Field(DEFAULT_MODEL, description="where to write the model zip")
    reuse: bool = Field(True, description="skip training when model_path already holds a "
                                          "model trained the same way (see cached_card)")
    output_dir: str = _output_field("train")

    @field_validator("model_path", mode="before")
    @classmethod
    def _model_text(cls, value: object) -> object:
        return _as_text(value)

    @field_validator("model_path")
    @classmethod
    def _model_zip(cls, value: str) -> str:
        if not value.endswith(".zip"):
            raise ValueError("a model path ends in .zip (the card is written beside it)")
        return value

    @property
    def model_file(self) -> Path:
        """The model zip as an absolute path."""
        return resolve(self.model_path)

    def limits(self) -> RiskLimits:
        """Risk limits applied during training: the configuration's (environment, .env)."""
        from tradinglib.risk import RiskLimits

        return RiskLimits.from_settings(load_settings())


class BacktestParams(_TradingParams):
    """Parameters of ``notebooks/backtest.ipynb``: a model over a range of bars."""

    end: str | None = Field(None, description="decide on bars before this (date or time); "
                                              "None: to the last bar")
    output_dir: str = _output_field("backtest")

    @field_validator("end", mode="before")
    @classmethod
    def _end_time(cls, value: object) -> object:
        return _check_time(value)


class PaperParams(_TradingParams):
    """Parameters of ``notebooks/paper_session.ipynb``: one paper-trading session.

    ``broker`` is ``"sim"`` (tradinglib's simulated broker) or ``"ib"`` (an Interactive
    Brokers paper account at ``ib_host:ib_port``: TWS, IB Gateway or ``tradinglib
    gateway``; live ports are refused). :meth:`session_config` passes on every field
    that :class:`SessionConfig` has.
    """

    broker: Literal["sim", "ib"] = Field("sim", description="order routing: sim (simulated) "
                                                            "or ib (IB paper account)")
    ib_host: str = Field("127.0.0.1", min_length=1, description="ib: TWS / IB Gateway host")
    ib_port: int = Field(4002, ge=1, le=65535,
                         description="ib: API port (paper: TWS 7497, IB Gateway 4002)")
    ib_client_id: int = Field(1, ge=0, description="ib: API client id")
    ib_bar_size: str = Field("1 day", min_length=1,
                             description="ib: bar size, e.g. '1 day', '5 mins', '1 min'")
    ib_history: str = Field("2 Y", min_length=1,
                            description="ib: history asked for at start (feature warm-up)")
    inference_url: str | None = Field(None, description="decide through the inference "
                                                        "service at this URL (tradinglib "
                                                        "serve); None: load model_path")
    symbol: str = Field("GOOGL", min_length=1, description="instrument traded")
    cycle_seconds: float = Field(None, gt=0, allow_inf_nan=False,  # type: ignore[assignment]
                                 description="seconds between decisions; None: "
                                             "TRADING_CYCLE_SECONDS")
    session_minutes: float = Field(None, gt=0, allow_inf_nan=False,  # type: ignore[assignment]
                                   description="session length; None: "
                                               "TRADING_SESSION_MINUTES")
    replay: bool = Field(True, description="replay recorded bars instead of live data")
    speed: float = Field(0.0, ge=0, allow_inf_nan=False,
                         description="replay speed-up; 0: as fast as possible")
    flatten_at_end: bool = Field(True, description="close the position when the session ends")
    stop_at: str | None = Field(None, description="ISO time with a UTC offset: the session "
                                                  "never trades past it and is flat by then; "
                                                  "None: no limit (run paper --at-open sets "
                                                  "the close minus flatten_margin_minutes)")
    flatten_margin_minutes: float = Field(5.0, ge=0, le=600, allow_inf_nan=False,
                                          description="minutes before the exchange close "
                                                      "when trading stops and the position "
                                                      "is flattened")
    metrics_port: int | None = Field(None, ge=0, le=65535,
                                     description="serve Prometheus metrics on 127.0.0.1 at "
                                                 "this port during the session; 0: a free "
                                                 "port; None: no metrics server")
    # a session never reuses a folder (its journal refuses to), so each run gets its own
    output_dir: str = _output_field("paper", f"runs/lab/paper-{TIME_PLACEHOLDER}")

    @field_validator("cycle_seconds", "session_minutes", mode="before")
    @classmethod
    def _session_default(cls, value: object, info: ValidationInfo) -> object:
        return _from_settings(str(info.field_name), value)

    @field_validator("stop_at", mode="before")
    @classmethod
    def _stop_time(cls, value: object) -> object:
        return _check_time(value)

    @field_validator("stop_at")
    @classmethod
    def _stop_has_offset(cls, value: str | None) -> str | None:
        if value is not None and pd.Timestamp(value).tzinfo is None:
            raise ValueError("a stop time needs a UTC offset, e.g. 2026-11-27T17:55:00+00:00")
        return value

    def session_config(self, run_id: str | None = None) -> SessionConfig:
        """The :class:`tradinglib.session.SessionConfig` of these parameters.

        Paths are absolute (``model_path`` a Path, ``data`` a built-in name or an absolute
        path string); ``run_id`` defaults to the output folder's name without the runner's
        ``.tmp-`` prefix (the archived run's id).

        Raises:
            InputError: a value :class:`SessionConfig` rejects.
        """
        import dataclasses

        from tradinglib.session import SessionConfig

        names = {f.name for f in dataclasses.fields(SessionConfig)}
        values: dict[str, Any] = {n: getattr(self, n) for n in type(self).model_fields
                                  if n in names}
        values.update(model_path=self.model_file, data=self.data_source)
        if "run_id" in names:
            values["run_id"] = run_id or resolve(self.output_dir).name.removeprefix(".tmp-")
        return SessionConfig(**values)


class ReportParams(_Params):
    """Parameters of ``notebooks/report.ipynb``: the management report of a paper run."""

    run_dir: str = Field(None,  # type: ignore[assignment]
                         description="the paper run folder; None: the newest paper run "
                                     "under runs/")
    backtest: bool = Field(True, description="also backtest the same model on the same bars "
                                             "and compare with the paper session")
    output_dir: str = _output_field("report")

    @field_validator("run_dir", mode="before")
    @classmethod
    def _run_default(cls, value: object) -> object:
        if value is None:
            latest = find_latest_run("paper")
            if latest is None:
                raise ValueError(f"no paper run found under {resolve('runs')}; {PAPER_HINT}")
            return str(latest)
        return _as_text(value)

    @field_validator("run_dir")
    @classmethod
    def _run_exists(cls, value: str) -> str:
        path = resolve(value)
        if not path.is_dir():
            raise ValueError(f"no run folder at {path}; {PAPER_HINT}")
        if not (path / "results.json").is_file():
            raise ValueError(f"{path} has no results.json: not a finished run; {PAPER_HINT}")
        return value

    @property
    def run_path(self) -> Path:
        """The paper run folder as an absolute path."""
        return resolve(self.run_dir)


class ExploreParams(_DataParams):
    """Parameters of ``notebooks/explore.ipynb``: look at bars and features, a quick backtest."""

    model_path: str | None = Field(None, description="a trained model zip; None: the scripted "
                                                     "trend-following policy")
    output_dir: str = _output_field("explore")

    @field_validator("model_path", mode="before")
    @classmethod
    def _model_text(cls, value: object) -> object:
        return _as_text(value)

    @field_validator("model_path")
    @classmethod
    def _model_exists(cls, value: str | None) -> str | None:
        return None if value is None else _check_model(value)

    @property
    def model_file(self) -> Path | None:
        """The model zip as an absolute path, or None for the scripted policy."""
        return None if self.model_path is None else resolve(self.model_path)


class SweepReportParams(_Params):
    """Parameters of ``notebooks/sweep_report.ipynb``: the report of a sweep's points."""

    sweep_dir: str = Field(None,  # type: ignore[assignment]
                           description="the sweep folder (runs/sweeps/NAME); None: the "
                                       "newest sweep under runs/sweeps")
    metric: str | None = Field(None, description="figure the points are ranked by (highest "
                                                 "is best); None: the sweep file's metric")
    output_dir: str = _output_field("sweep_report")

    @field_validator("sweep_dir", mode="before")
    @classmethod
    def _sweep_default(cls, value: object) -> object:
        if value is None:
            folder = resolve("runs/sweeps")
            found = sorted(folder.glob("*/summary.csv"), key=lambda p: p.stat().st_mtime)
            if not found:
                raise ValueError(f"no sweep under {folder}; run one first with "
                                 "`tradinglib sweep params/sweeps/seeds.yaml`")
            return str(found[-1].parent)
        return _as_text(value)

    @field_validator("sweep_dir")
    @classmethod
    def _sweep_exists(cls, value: str) -> str:
        if not (resolve(value) / "summary.csv").is_file():
            raise ValueError(f"{resolve(value)} has no summary.csv: not a sweep folder; run "
                             "the sweep first with `tradinglib sweep params/sweeps/NAME.yaml`")
        return value

    @property
    def sweep_path(self) -> Path:
        """The sweep folder as an absolute path."""
        return resolve(self.sweep_dir)


PARAMS_MODELS: Final[Mapping[str, type[_Params]]] = {
    "train": TrainParams,
    "backtest": BacktestParams,
    "paper": PaperParams,
    "report": ReportParams,
    "explore": ExploreParams,
}
_ALIASES: Final = {"paper_session": "paper"}
_OTHER_MODELS: Final[Mapping[str, type[_Params]]] = {"sweep_report": SweepReportParams}
"""Notebooks that are not ``tradinglib run`` kinds (the sweep report, run by the sweep)."""


# ------------------------------------------------------------------ validation


def _model_of(kind: str) -> tuple[str, type[_Params]]:
    name = _ALIASES.get(kind, kind)
    models = {**PARAMS_MODELS, **_OTHER_MODELS}
    if name not in models:
        raise InputError(f"unknown notebook kind {kind!r}{did_you_mean(name, models)}; "
                         f"kinds: {', '.join(models)}")
    return name, models[name]


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _problems(errors: list[ErrorDetails]) -> list[str]:
    """pydantic errors as ``name=value: rule`` lines, one per parameter.

    A value that fits none of a union's types (``str | None``) gives one error per type;
    they are joined with "or".
    """
    by_name: dict[str, tuple[object, list[str]]] = {}
    for error in errors:
        name = str(error["loc"][0]) if error["loc"] else "?"
        message = error["msg"].removeprefix("Value error, ")
        entry = by_name.setdefault(name, (error.get("input"), []))
        if message not in entry[1]:
            entry[1].append(message)
    return [f"{name}={_shown(value)}: {' or '.join(messages)}"
            for name, (value, messages) in by_name.items()]


@overload
def validate_params(kind: Literal["train"], values: Mapping[str, object]) -> TrainParams: ...
@overload
def validate_params(kind: Literal["backtest"], values: Mapping[str, object]) -> BacktestParams: ...
@overload
def validate_params(kind: Literal["paper", "paper_session"],
                    values: Mapping[str, object]) -> PaperParams: ...
@overload
def validate_params(kind: Literal["report"], values: Mapping[str, object]) -> ReportParams: ...
@overload
def validate_params(kind: Literal["explore"], values: Mapping[str, object]) -> ExploreParams: ...
@overload
def validate_params(kind: str, values: Mapping[str, object]) -> _Params: ...


def validate_params(kind: str, values: Mapping[str, object]) -> _Params:
    """Check one notebook's parameters; missing names get their defaults.

    Args:
        kind: ``train``, ``backtest``, ``paper`` (or ``paper_session``), ``report`` or
            ``explore``.
        values: parameter name -> value, as papermill or a YAML file gives them.

    Returns:
        The frozen parameter model (e.g. :class:`TrainParams`).

    Raises:
        InputError: an unknown kind, an unknown parameter name (with the closest valid
            name and the list of valid ones), or values of the wrong type or out of range
            (each named with its value and the rule it breaks).
    """
    name, model = _model_of(kind)
    valid = list(model.model_fields)
    unknown = [key for key in values if key not in model.model_fields]
    if unknown:
        parts = []
        for key in unknown:
            hint = did_you_mean(str(key), valid)
            parts.append(f"{str(key)!r} for {name}{hint}" if len(unknown) == 1
                         else f"{str(key)!r}{hint}")
        noun = "parameter" if len(unknown) == 1 else "parameters"
        where = "" if len(unknown) == 1 else f" for {name}"
        raise InputError(f"unknown {noun} {', '.join(parts)}{where}; valid: "
                         f"{', '.join(valid)}")
    try:
        return model.model_validate(dict(values))
    except ValidationError as exc:
        problems = _problems(exc.errors())
        noun = "parameter" if len(problems) == 1 else "parameters"
        raise InputError(f"invalid {name} {noun}: {'; '.join(problems)}") from None


_PLAIN = (bool, int, float, str, list, tuple, dict, dt.date, type(None))


def params_from_namespace(kind: str, namespace: Mapping[str, object], *,
                          before: frozenset[str] | set[str] | None = None) -> _Params:
    """:func:`validate_params` on the parameter names found in a notebook's globals.

    Args:
        kind: as :func:`validate_params`.
        namespace: the notebook's ``globals()``.
        before: the names that existed before the parameters cell ran. When given, every
            other public name holding a plain value (number, text, bool, None, list, dict:
            what papermill can inject) that is not a parameter is reported as unknown,
            so ``papermill -p stepz 5`` stops here instead of being ignored.

    Raises:
        InputError: as :func:`validate_params`.
    """
    _, model = _model_of(kind)
    values = {name: namespace[name] for name in model.model_fields if name in namespace}
    if before is not None:
        for name, value in namespace.items():
            if (name not in before and name not in values and not name.startswith("_")
                    and isinstance(value, _PLAIN)):
                values[name] = value
    return validate_params(kind, values)


class ParameterScope:
    """Remembers which names a notebook had before its parameters cell.

    Put ``scope = ParameterScope(globals())`` in the cell before the parameters cell and
    ``params = scope.validate("train")`` in the cell after it: a name set by the
    parameters cell or injected by papermill that is not a parameter is then an error
    (with the closest valid name) instead of being silently ignored.

    Only the first :meth:`validate` after the scope cell looks for unknown names: when a
    quant re-runs the validation cell alone in JupyterLab, the variables of later cells
    are there too and cannot be told from new parameters (Run All checks again).
    """

    def __init__(self, namespace: MutableMapping[str, Any]) -> None:
        self._namespace = namespace
        self._before: frozenset[str] | None = frozenset(namespace)

    def validate(self, kind: str) -> Any:
        """The validated parameter model of ``kind`` (see :func:`params_from_namespace`).

        Raises:
            InputError: as :func:`validate_params`.
        """
        before = self._before
        if before is not None:
            before |= {n for n, v in self._namespace.items()
                       if isinstance(v, ParameterScope | ModuleType | FunctionType | type)}
        params = params_from_namespace(kind, self._namespace, before=before)
        self._before = None
        return params


# ------------------------------------------------------------------ run folders


def find_latest_run(kind: str = "paper", runs_dir: str | Path = "runs") -> Path | None:
    """The newest finished run of ``kind`` under ``runs_dir`` (relative: project root).

    A finished run is a folder with ``results.json``, not in progress (``.tmp-`` folders
    are skipped) and not failed (its ``manifest.json``, if any, has status ``ok``). It is
    of ``kind`` when its ``manifest.json`` or ``results.json`` says ``"kind": kind`` or its
    name has ``-kind-`` in it (``<stamp>-<kind>-<label>``) or is ``kind``
    (``runs/lab/paper``, a run made in JupyterLab). Newest means the latest
    ``results.json`` modification time. None if there is none.
    """
    root = resolve(runs_dir)
    if not root.is_dir():
        return None
    lab = root / "lab"
    folders = [*root.iterdir(), *(lab.iterdir() if lab.is_dir() else ())]
    folders = [p for p in folders if p.is_dir() and not p.name.startswith(".")]
    names = {kind, *(alias for alias, target in _ALIASES.items() if target == kind)}
    found = [p for p in folders if (p / "results.json").is_file() and _is_kind(p, names)]
    return max(found, key=lambda p: ((p / "results.json").stat().st_mtime, p.name),
               default=None)


def _is_kind(folder: Path, names: set[str]) -> bool:
    """Whether ``folder`` is a successful run of one of ``names`` (see find_latest_run)."""
    said: list[object] = []
    for file in ("manifest.json", "results.json"):
        try:
            data = json.loads((folder / file).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            if file == "manifest.json" and data.get("status", "ok") != "ok":
                return False
            said.append(data.get("kind"))
    if any(kind in names for kind in said):
        return True
    return folder.name in names or any(f"-{n}-" in f"{folder.name}-" for n in names)


# ------------------------------------------------------------------ model cache


def cached_model_matches(card: ModelCard, *, data: str, steps: int, seed: int,
                         bars: pd.DataFrame | None = None, holdout: float | None = None,
                         limits: RiskLimits | None = None) -> bool:
    """Whether ``card`` describes a model trained as asked, so training can be skipped.

    Compares the data source name, steps and seed; with ``bars`` also the training bars'
    sha256 and (with ``holdout``) the split time; with ``limits`` the card's risk limits
    that the model saw; and the hyperparameters with the training defaults.
    """
    from tradinglib.data import bars_sha256
    from tradinglib.train import DEFAULT_HYPERPARAMETERS, split_time

    if (card.training_data.source, card.total_timesteps, card.seed) != (data, steps, seed):
        return False
    defaults = json.loads(json.dumps(DEFAULT_HYPERPARAMETERS))
    if json.loads(json.dumps(card.hyperparameters)) != defaults:
        return False
    if limits is not None:
        wanted = limits.to_dict()
        for key in ("max_daily_loss", "max_position_value", "trade_quantity"):
            if key in card.limits and not math.isclose(float(card.limits[key]),
                                                       float(wanted[key])):  # type: ignore[arg-type]
                return False
    if bars is not None and holdout is not None:
        split = split_time(bars, holdout)
        before = bars[bars.index < split]
        if card.holdout_data is None or pd.Timestamp(card.holdout_data.start) != split:
            return False
        if card.training_data.sha256 != bars_sha256(before):
            return False
    return True


def cached_card(params: TrainParams, bars: pd.DataFrame) -> ModelCard | None:
    """The card of the model at ``params.model_path`` if it can be reused, else None.

    Reusable means: ``params.reuse`` is on, the zip and its card exist, the zip's sha256
    is the card's, and :func:`cached_model_matches` holds for these parameters, bars and
    the configured risk limits.
    """
    from tradinglib.exceptions import ModelError
    from tradinglib.modelcard import file_sha256, read_card

    path = params.model_file
    if not params.reuse or not path.is_file():
        return None
    try:
        card = read_card(path)
    except ModelError:
        return None
    if file_sha256(path) != card.sha256:
        return None
    matches = cached_model_matches(card, data=params.data, steps=params.steps,
                                   seed=params.seed, bars=bars, holdout=params.holdout,
                                   limits=params.limits())
    return card if matches else None
