"""Backtest a policy over bars through the one decision path.

:func:`run_backtest` steps a :class:`~tradinglib.execution.Simulation`, exactly as the
training env and a paper session do. For a policy that can answer a batch
(:meth:`LockedPolicy.decide_batch <tradinglib.inference.LockedPolicy.decide_batch>`),
it predicts the observations of the bars ahead in one call, under the assumption that
the account does not trade before them; it then steps bar by bar through the
decisions up to the first fill, and predicts again from there, since the account
features change with a fill. Between orders it marks HOLD bars in bulk. A policy that
can also ``prepare`` (:meth:`LockedPolicy.prepare
<tradinglib.inference.LockedPolicy.prepare>`) gets the bars' market features once and
then only the account features of each batch. The decisions are the ones the per-bar
loop takes (``batched=False``); tests and the benchmark check it.
"""

from __future__ import annotations

import gc
import json
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import pandas as pd

from tradinglib.costs import Costs
from tradinglib.execution import Simulation, StepResult
from tradinglib.metrics import trading_metrics
from tradinglib.risk import RiskLimits
from tradinglib.types import Action, Policy

FIRST_BATCH = 256
MIN_BATCH = 64
MAX_BATCH = 1024


class BatchPolicy(Policy, Protocol):
    """A policy that also decides a batch of observations (LockedPolicy).

    It may also have ``prepare(market_rows)``, returning None or an object whose
    ``decide_rows(first, account)`` answers like ``decide_batch`` for the observations
    ``market_rows[first + i]`` joined with ``account[i]``; the backtest then uses it.
    """

    def decide_batch(self, batch: npt.NDArray[np.float32]) -> Any:
        """An object with ``actions`` (one id per row) and ``fallbacks`` (row -> reason)."""
        ...


@dataclass(frozen=True)
class BacktestResult:
    """What a backtest produced.

    Attributes:
        trades: one row per fill: time, side, quantity (shares, unsigned), price and
            commission (USD), realized_pnl (USD, net of the commission).
        equity: account equity in USD, indexed by bar time: the starting cash at the
            first decision bar, then the mark at each following bar's close.
        decisions: one row per decision bar: time, action, verdict (the risk reason,
            empty for HOLD), fallback (why HOLD was used instead of the model, if so),
            position (shares after the step).
        risk_events: time, kind, detail of every risk event (e.g. daily loss reached).
        metrics: figures of :func:`tradinglib.metrics.performance_metrics` plus trading
            figures (see :func:`run_backtest`).
    """

    trades: pd.DataFrame
    equity: pd.Series
    decisions: pd.DataFrame
    risk_events: pd.DataFrame
    metrics: dict[str, Any] = field(default_factory=dict)

    def save(self, folder: str | Path) -> Path:
        """Write trades.csv, equity.csv, decisions.csv, risk_events.csv and metrics.json."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        self.trades.to_csv(out / "trades.csv", index=False)
        self.equity.rename("equity").to_csv(out / "equity.csv", index_label="time")
        self.decisions.to_csv(out / "decisions.csv", index=False)
        self.risk_events.to_csv(out / "risk_events.csv", index=False)
        (out / "metrics.json").write_text(json.dumps(self.metrics, indent=2) + "\n")
        return out


class _Recorder:
    """Per-decision records, filled as the simulation steps.

    HOLD bars stepped in bulk leave cash and position as they are, so only the account
    after each single step is kept; :meth:`marked` spreads it over the bars at the end.
    """

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.actions = np.zeros(len(sim), dtype=np.int8)
        self.stepped: list[int] = []  # decisions stepped one by one, and after each:
        self.cash: list[float] = []  # the cash (USD)
        self.held: list[int] = []  # and the position (shares)
        self.verdicts: dict[int, str] = {}
        self.fallbacks: dict[int, str] = {}
        self.fills: list[dict[str, Any]] = []
        self.closing: list[bool] = []  # per fill: did it reduce the position?

    def hold(self, n: int) -> None:
        self.sim.hold(n)

    def step(self, action: Action) -> StepResult:
        p = self.sim.portfolio
        i, realized, before = self.sim.index, p.realized_pnl, p.position
        result = self.sim.step(action)
        self.actions[i] = action
        self.stepped.append(i)
        self.cash.append(p.cash)
        self.held.append(p.position)
        if result.verdict is not None:
            self.verdicts[i] = result.verdict.reason.value
        if result.fill is not None:
            f = result.fill
            self.fills.append({
                "time": f.time, "side": f.side, "quantity": abs(f.quantity), "price": f.price,
                "commission": f.commission,
                "realized_pnl": p.realized_pnl - realized,
            })
            self.closing.append(abs(p.position) < abs(before))
        return result

    def marked(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
        """Equity (USD) and position (shares) after each decision: the account after the
        latest step up to it (the starting account before any), marked at its mark;
        the arithmetic of :meth:`Portfolio.equity <tradinglib.portfolio.Portfolio.equity>`."""
        latest = np.zeros(len(self.actions), dtype=np.intp)
        latest[self.stepped] = 1
        np.cumsum(latest, out=latest)  # steps up to each decision: 0 = none yet
        cash = np.array([self.sim.initial_cash, *self.cash], dtype=np.float64)[latest]
        position = np.array([0, *self.held], dtype=np.int64)[latest]
        equity: npt.NDArray[np.float64] = cash + position * self.sim.marks
        return equity, position


def run_backtest(
    bars: pd.DataFrame,
    policy: Policy,
    *,
    limits: RiskLimits | None = None,
    costs: Costs | None = None,
    cash: float = 100_000.0,
    start: pd.Timestamp | str | None = None,
    end: pd.Timestamp | str | None = None,
    batched: bool | None = None,
) -> BacktestResult:
    """Run ``policy`` over the decision bars in ``[start, end)`` and measure the result.

    Args:
        bars: OHLCV bars from :func:`tradinglib.data.load_bars`; history before ``start``
            warms the features up.
        policy: anything with ``predict(obs) -> Action``; a LockedPolicy is used through
            ``decide``/``decide_batch``, so a failed inference is a counted HOLD.
        limits, costs, cash: risk limits, cost model and starting cash (USD).
        batched: predict bars ahead in batches (default: when the policy has
            ``decide_batch``); False forces the per-bar loop, the reference path.

    Metrics: total_return, cagr, annual_volatility, sharpe, sortino, max_drawdown,
    calmar (empyrical, annualized by bar frequency); bars, trades, win_rate (share of
    position-reducing fills with positive realized P&L), exposure (share of bars ending
    with a position), turnover (traded value / mean equity), commissions (USD),
    final_equity (USD), buy_and_hold_return (the instrument's), rejections (count by
    reason), hold_fallbacks.

    Raises:
        DataError: too few bars, or none in the range. InputError: bad limits or costs.
    """
    with _gc_paused():
        sim = Simulation(bars, limits=limits, costs=costs, cash=cash, start=start, end=end)
        sim.reset()
        rec = _Recorder(sim)
        use_batches = hasattr(policy, "decide_batch") if batched is None else batched
        if use_batches:
            _run_batched(rec, policy)  # type: ignore[arg-type]
        else:
            _run_per_bar(rec, policy)
        return _result(sim, rec)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off for the block, then back as it was.

    A backtest makes tens of thousands of small objects that reference counting frees
    or the result keeps; the collector's passes over them find no cycles, and now and
    then one becomes a pass over every object of the process (over 0.1 s with torch
    loaded). Cycles made meanwhile are collected after the block (as ``timeit`` does).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _run_per_bar(rec: _Recorder, policy: Policy) -> None:
    """The reference loop: one observation, one decision, one step."""
    decide = getattr(policy, "decide", None)
    sim = rec.sim
    while not sim.done:
        obs = sim.observation()
        if decide is not None:
            decision = decide(obs)
            if decision.is_fallback:
                rec.fallbacks[sim.index] = decision.reason
            action = decision.action
        else:
            action = policy.predict(obs)
        rec.step(Action(action))


def _run_batched(rec: _Recorder, policy: BatchPolicy) -> None:
    """Predict ahead in batches, step through the decisions up to the first fill.

    The batch size adapts: it halves after a batch cut short by a fill and doubles
    after a batch used whole. A fill on the first decision of a batch is often followed
    by another at once (a model building a position bar by bar), so the next call then
    asks for one decision only, which the single-observation path answers cheaply.
    """
    sim = rec.sim
    ahead = _predictor(sim, policy)
    size = base = FIRST_BATCH
    while not sim.done:
        first = sim.index
        answer = ahead(size)
        actions = answer.actions
        for row, reason in answer.fallbacks.items():
            rec.fallbacks[first + row] = reason
        done, traded = 0, False
        for j in actions.nonzero()[0].tolist():  # the non-HOLD rows (HOLD is 0)
            if j > done:
                rec.hold(j - done)
            traded = rec.step(Action(int(actions[j]))).fill is not None
            done = j + 1
            if traded:
                break
        if not traded and done < len(actions):
            rec.hold(len(actions) - done)
        if traded:
            base = max(MIN_BATCH, base // 2)
            size = 1 if done == 1 else base
        else:
            base = min(MAX_BATCH, base * 2) if size > 1 else base
            size = base
        for row in answer.fallbacks:  # rows after a fill are predicted again
            if first + row >= sim.index:
                del rec.fallbacks[first + row]


def _predictor(sim: Simulation, policy: BatchPolicy) -> Callable[[int], Any]:
    """``ahead(n)``: the policy's answer for the next ``n`` decisions (a BatchDecision).

    With a policy that can ``prepare`` (a LockedPolicy on the numpy backend) the market
    rows are handed over once and each call passes only the account features;
    otherwise each call builds the whole observations for ``decide_batch``.
    """
    prepare = getattr(policy, "prepare", None)
    prepared = prepare(sim.market_rows) if prepare is not None else None
    if prepared is not None:
        return lambda n: prepared.decide_rows(sim.index, sim.account_ahead(n))
    return lambda n: policy.decide_batch(sim.observations_ahead(n))


def _result(sim: Simulation, rec: _Recorder) -> BacktestResult:
    times = sim.decision_times
    marked, position = rec.marked()
    equity = pd.Series(np.concatenate(([sim.initial_cash], marked)),
                       index=times[:1].append(sim.mark_times).rename("time"), name="equity")
    n = len(times)
    decisions = pd.DataFrame({
        "time": times,
        "action": pd.Categorical.from_codes(rec.actions,
                                            categories=pd.Index([a.name for a in Action])),
        "verdict": _text_column(n, rec.verdicts),
        "fallback": _text_column(n, rec.fallbacks),
        "position": position,
    })
    trades = pd.DataFrame(rec.fills, columns=["time", "side", "quantity", "price", "commission",
                                              "realized_pnl"])
    events = pd.DataFrame([(e.time, e.kind, e.detail) for e in sim.guard.events],
                          columns=["time", "kind", "detail"])
    metrics = trading_metrics(equity, trades, decisions, np.array(rec.closing, dtype=bool),
                              sim.buy_and_hold_return)
    return BacktestResult(trades, equity, decisions, events, metrics)


def _text_column(n: int, texts: dict[int, str]) -> Any:
    """``n`` strings, ``texts[row]`` at its rows and "" elsewhere, as a table column of
    pandas' inferred string dtype. Made by taking from the few distinct strings by code:
    several times faster than inferring the dtype of ``n`` Python strings."""
    distinct = list(dict.fromkeys(["", *texts.values()]))
    code = {text: k for k, text in enumerate(distinct)}
    codes = np.zeros(n, dtype=np.intp)
    codes[list(texts)] = [code[text] for text in texts.values()]
    return pd.Index(distinct).take(codes).array


def summary_rows(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    """(figure, formatted value) pairs for a printed summary table."""
    signed = {"total_return", "cagr", "max_drawdown", "buy_and_hold_return"}
    unsigned = {"annual_volatility", "win_rate", "exposure"}
    rows = []
    for key, value in metrics.items():
        if isinstance(value, dict):
            text = ", ".join(f"{k} {v}" for k, v in value.items()) or "none"
        elif value is None or (isinstance(value, float) and math.isnan(value)):
            text = "n/a"
        elif key in signed:
            text = f"{value:+.2%}"
        elif key in unsigned:
            text = f"{value:.2%}"
        elif isinstance(value, float):
            text = f"{value:,.2f}"
        else:
            text = f"{value:,}"
        rows.append((key, text))
    return rows
