"""The one decision path, per bar: observation -> action -> risk check -> fill -> accounting.

:class:`Simulation` steps through bars exactly the way the training env, the backtest
and a replayed paper session do: at the close of bar t it builds the observation from
bars up to t and the account, turns the action into an order intent, asks the
:class:`~tradinglib.risk.RiskGuard`, fills an approved order (bar t+1's open by
default, or bar t's close) with the :class:`~tradinglib.costs.Costs` model, and marks
the account at bar t+1's close.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import cast

import numpy as np
import numpy.typing as npt
import pandas as pd

from tradinglib.costs import Costs
from tradinglib.data import local_days
from tradinglib.exceptions import DataError, InputError
from tradinglib.features import account_features, account_features_ahead, market_features
from tradinglib.portfolio import Fill, Portfolio
from tradinglib.risk import MarketState, OrderIntent, RiskGuard, RiskLimits, Verdict
from tradinglib.types import Action, Observation


@dataclass(frozen=True, slots=True)
class StepResult:
    """What one decision led to.

    Attributes:
        time: the decision bar's time (t).
        action: the action taken.
        intent: the order intent, None for HOLD.
        verdict: the risk verdict, None for HOLD.
        fill: the fill, None when nothing traded.
        mark_time: the time of bar t+1, where the account is marked.
        equity: account equity marked at bar t+1's close, USD.
    """

    time: pd.Timestamp
    action: Action
    intent: OrderIntent | None
    verdict: Verdict | None
    fill: Fill | None
    mark_time: pd.Timestamp
    equity: float


def check_decision(
    action: Action, portfolio: Portfolio, guard: RiskGuard, market: MarketState,
    now: datetime | None = None,
) -> tuple[OrderIntent | None, Verdict | None]:
    """Start the trading day if new, turn ``action`` into an intent and submit it to
    ``guard`` (which records the verdict). The part of the decision path before an
    order reaches a broker, shared by simulations and live sessions.

    ``market`` is the decision bar: its close and time. ``now`` is the clock: the bar's
    time in a simulation or replay (the default), the wall clock in a live session (so
    the stale-data rule can see old bars). Returns (None, None) for HOLD.
    """
    portfolio.start_day(market.time.date(), market.price)
    intent = OrderIntent.from_action(action, guard.limits)
    if intent is None:
        return None, None
    return intent, guard.submit(intent, portfolio, market, market.time if now is None else now)


def execute_decision(
    action: Action,
    portfolio: Portfolio,
    guard: RiskGuard,
    costs: Costs,
    *,
    market: MarketState,
    fill_time: pd.Timestamp,
    fill_base_price: float,
) -> tuple[OrderIntent | None, Verdict | None, Fill | None]:
    """:func:`check_decision`, then fill an approved order into ``portfolio`` at
    ``fill_base_price`` plus slippage, at ``fill_time``, with the ``costs`` commission.
    """
    intent, verdict = check_decision(action, portfolio, guard, market)
    if intent is None or verdict is None or not verdict.approved:
        return intent, verdict, None
    price = costs.fill_price(1 if intent.quantity > 0 else -1, fill_base_price)
    fill = Fill(fill_time, intent.quantity, price, costs.commission(intent.quantity, price))
    portfolio.apply(fill)
    return intent, verdict, fill


class Simulation:
    """Bars, their market features, an account and the decision path over a time range.

    Args:
        bars: OHLCV bars as :func:`tradinglib.data.load_bars` returns them.
        limits: risk limits; also scale the account features.
        costs: commission, slippage and fill timing.
        cash: starting cash, USD.
        start, end: decision bars are those with ``start <= time < end`` (None: open);
            features still use the history before ``start``.

    Raises:
        DataError: too few bars for warm-up, or no decision bar in the range.
    """

    def __init__(
        self,
        bars: pd.DataFrame,
        *,
        limits: RiskLimits | None = None,
        costs: Costs | None = None,
        cash: float = 100_000.0,
        start: pd.Timestamp | str | None = None,
        end: pd.Timestamp | str | None = None,
    ) -> None:
        if not cash > 0:
            raise InputError(f"starting cash must be > 0, got {cash}")
        self.limits = limits or RiskLimits()
        self.costs = costs or Costs()
        self.guard = RiskGuard(self.limits, self.costs)
        self.initial_cash = float(cash)
        features = market_features(bars)
        positions = _positions(pd.DatetimeIndex(bars.index), pd.DatetimeIndex(features.index))
        times = pd.DatetimeIndex(features.index)
        keep = positions + 1 < len(bars)  # every decision needs a next bar to fill and mark
        if start is not None:
            keep &= times >= _as_time(start, times)
        if end is not None:
            keep &= times < _as_time(end, times)
        if not keep.any():
            raise DataError(
                f"no bar to decide on between {start or 'the start'} and {end or 'the end'} "
                f"({len(bars)} bars, {len(features)} after feature warm-up); widen the range"
            )
        kept = np.flatnonzero(keep)
        # usually one run of bars: select it with a slice (views, no copies)
        rows = slice(kept[0], kept[-1] + 1) if kept[-1] - kept[0] + 1 == len(kept) else kept
        self.decision_times = times[rows]
        self._features = features.to_numpy(dtype=np.float32)[rows]
        bar = positions[rows]
        self._bar = bar
        self._index = pd.DatetimeIndex(bars.index)
        self._times = self._index.array  # an item of it costs less than one of the index
        self._next_time = (0, self._time(0))  # (b, Timestamp of bar b), last made by step
        close = bars["close"].to_numpy(dtype=np.float64)
        self._open = bars["open"].to_numpy(dtype=np.float64)
        self._close = close
        # per decision: its bar's close, the next bar's close (the mark) and its trading
        # day, so that stepping reads slices instead of gathering through bar positions
        self._price = close[bar]
        self._mark = close[bar + 1]
        self._day = local_days(self._index)[bar]
        self.portfolio = Portfolio(cash=self.initial_cash)
        self._i = 0

    def __len__(self) -> int:
        """Number of decision bars in the range."""
        return len(self._bar)

    @property
    def index(self) -> int:
        """Position of the next decision within the range (0 .. len - 1)."""
        return self._i

    @property
    def done(self) -> bool:
        """True once every decision bar in the range has been stepped."""
        return self._i >= len(self._bar)

    @property
    def price(self) -> float:
        """Close of the current decision bar, USD."""
        return float(self._price[min(self._i, len(self._bar) - 1)])

    def reset(self, first: int = 0) -> Observation:
        """Start over with fresh cash at decision ``first``; return its observation."""
        if not 0 <= first < len(self._bar):
            raise InputError(f"first decision {first} outside 0..{len(self._bar) - 1}")
        self.portfolio = Portfolio(cash=self.initial_cash)
        self.guard = RiskGuard(self.limits, self.costs)  # no halt, rate or loss state carried over
        self._i = first
        return self.observation()

    def observation(self) -> Observation:
        """The 26-float observation at the current decision bar.

        Once done, the last decision bar's market features with the account as it is now.
        """
        row: Observation = self._observations(min(self._i, len(self._bar) - 1), 1)[0]
        return row

    def observations_ahead(self, n: int) -> npt.NDArray[np.float32]:
        """Observations of the next ``n`` decisions (fewer at the end of the range),
        assuming the account does not trade before them: shape (n, 26), float32.

        Row 0 is :meth:`observation`. A backtest predicts them in one batch and steps
        until the first fill, after which the account, and so the rest, changes.
        """
        return self._observations(self._i, n)

    @property
    def market_rows(self) -> npt.NDArray[np.float32]:
        """The 22 market features of every decision bar, shape (len, 22), float32.

        Observation ``k`` is this row ``k`` followed by the account features; the array is
        the simulation's own (read-only use).
        """
        return self._features

    @property
    def mark_times(self) -> pd.DatetimeIndex:
        """Time of the bar after each decision bar, where that decision is marked."""
        bar = self._bar
        if bar[-1] - bar[0] + 1 == len(bar):  # one run of bars: a slice, not a gather
            return self._index[bar[0] + 1:bar[-1] + 2]
        return self._index[bar + 1]

    @property
    def marks(self) -> npt.NDArray[np.float64]:
        """Per decision, the close of the next bar, where it is marked (USD); the
        simulation's own array (read-only use)."""
        return self._mark

    @property
    def buy_and_hold_return(self) -> float:
        """The instrument's return from the first decision bar's close to the last mark
        (the close of the bar after the last decision bar)."""
        return float(self._mark[-1] / self._price[0] - 1.0)

    def account_ahead(self, n: int) -> npt.NDArray[np.float32]:
        """The account features (last 4 columns) of :meth:`observations_ahead`."""
        return self._account(self._i, n)

    def _observations(self, first: int, n: int) -> npt.NDArray[np.float32]:
        account = self._account(first, n)
        return np.concatenate((self._features[first:first + len(account)], account), axis=1)

    def _account(self, first: int, n: int) -> npt.NDArray[np.float32]:
        p = self.portfolio
        day = p.day.toordinal() if p.day else -1
        if n == 1:  # the single-bar function is the cheaper call for one row
            return account_features(
                position=p.position, price=float(self._price[first]), avg_cost=p.avg_cost,
                day_realized_pnl=p.day_realized_pnl if self._day[first] == day else 0.0,
                cash=p.cash, max_position_value=self.limits.max_position_value,
                max_daily_loss=self.limits.max_daily_loss,
            )[None, :]
        rows = slice(first, first + n)
        return account_features_ahead(
            position=p.position, prices=self._price[rows], avg_cost=p.avg_cost,
            day_realized_pnl=np.where(self._day[rows] == day, p.day_realized_pnl, 0.0),
            cash=p.cash, max_position_value=self.limits.max_position_value,
            max_daily_loss=self.limits.max_daily_loss,
        )

    def hold(self, n: int) -> None:
        """Step ``n`` HOLD decisions at once.

        Same outcome as ``n`` calls of ``step(Action.HOLD)``, without per-bar objects;
        the account, and so its equity marks (cash + position x :attr:`marks`), stays.
        """
        i = self._i
        if not 0 < n <= len(self._bar) - i:
            raise InputError(f"cannot hold {n} bars: {len(self._bar) - i} left")
        p = self.portfolio
        last = int(self._day[i + n - 1])
        if p.day is None or last != p.day.toordinal():
            first = i + int(np.argmax(self._day[i:i + n] == last))  # first bar of the last day
            p.start_day(date.fromordinal(last), float(self._price[first]))
        self._i += n

    def step(self, action: Action) -> StepResult:
        """Decide ``action`` at the current bar, fill, mark at the next bar, advance."""
        if self.done:
            raise InputError("the simulation is done; call reset() to start over")
        action = Action(action)
        i = self._i
        b = int(self._bar[i])
        # Timestamps only for bars stepped; orders often come on consecutive bars, so
        # the previous step's next-bar Timestamp is this step's bar Timestamp
        cached, stamp = self._next_time
        now = stamp if cached == b else self._time(b)
        nxt = self._time(b + 1)
        self._next_time = (b + 1, nxt)
        price = float(self._price[i])
        if self.costs.fill_at == "next_open":
            fill_time, fill_price = nxt, float(self._open[b + 1])
        else:
            fill_time, fill_price = now, price
        intent, verdict, fill = execute_decision(
            action, self.portfolio, self.guard, self.costs,
            market=MarketState(price, now), fill_time=fill_time, fill_base_price=fill_price,
        )
        self._i = i + 1
        equity = self.portfolio.equity(float(self._mark[i]))
        return StepResult(now, action, intent, verdict, fill, nxt, equity)

    def _time(self, b: int) -> pd.Timestamp:
        """The Timestamp of bar ``b``."""
        return cast(pd.Timestamp, self._times[b])


def _positions(index: pd.DatetimeIndex, times: pd.DatetimeIndex) -> npt.NDArray[np.intp]:
    """Positions of ``times`` in ``index``. The features usually cover the bars after
    the warm-up, i.e. the tail of ``index``: checked with one comparison instead of a
    hash lookup per time (bars with repeated times go to get_indexer, which refuses them)."""
    start = len(index) - len(times)
    if start >= 0 and index.is_unique and index[start:].equals(times):
        return np.arange(start, len(index), dtype=np.intp)
    positions: npt.NDArray[np.intp] = index.get_indexer(times)
    return positions


def _as_time(value: pd.Timestamp | str, like: pd.DatetimeIndex) -> pd.Timestamp:
    """``value`` as a Timestamp in the timezone of ``like`` (naive values are localized)."""
    try:
        ts = pd.Timestamp(value)
    except ValueError as exc:
        raise InputError(f"cannot read {value!r} as a date or time: {exc}") from None
    if ts.tzinfo is None:
        return ts.tz_localize(like.tz)
    return ts.tz_convert(like.tz)
