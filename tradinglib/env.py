"""A gymnasium environment over bars, stepping through the shared decision path."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd

from tradinglib.costs import Costs
from tradinglib.exceptions import InputError
from tradinglib.execution import Simulation, StepResult
from tradinglib.features import FEATURE_NAMES
from tradinglib.risk import RiskLimits
from tradinglib.types import Action, Observation
from tradinglib.validation import OBS_HIGH, OBS_LOW


class TradingEnv(gym.Env[Observation, int]):
    """Trade one instrument bar by bar.

    Observation: Box(26,) float32 in [-1000, 1000] (:data:`FEATURE_NAMES`).
    Actions: Discrete(3), :class:`~tradinglib.types.Action` (HOLD, BUY, SELL).
    Reward: change in account equity over the step, in units of ``max_daily_loss``
    (so -1.0 is a whole day's loss budget), net of commissions and slippage.

    Each step goes through :class:`~tradinglib.execution.Simulation`, the same path the
    backtest and paper session use, with the same risk limits and costs.

    Args:
        bars: OHLCV bars from :func:`tradinglib.data.load_bars`.
        limits, costs, cash, start, end: as for :class:`Simulation`.
        episode_bars: decisions per episode, starting at a random bar of the range
            (capped at the range's length); None runs the whole range from its first
            bar (for evaluation).

    Raises:
        InputError: ``episode_bars`` is not positive.
        DataError: the range has no decision bars.
    """

    metadata = {"render_modes": []}  # noqa: RUF012 (gymnasium declares it per instance)

    def __init__(
        self,
        bars: pd.DataFrame,
        *,
        limits: RiskLimits | None = None,
        costs: Costs | None = None,
        cash: float = 100_000.0,
        start: pd.Timestamp | str | None = None,
        end: pd.Timestamp | str | None = None,
        episode_bars: int | None = None,
    ) -> None:
        super().__init__()
        self.sim = Simulation(bars, limits=limits, costs=costs, cash=cash, start=start, end=end)
        if episode_bars is not None and episode_bars < 1:
            raise InputError(f"episode_bars must be >= 1, got {episode_bars}")
        self.episode_bars = None if episode_bars is None else min(episode_bars, len(self.sim))
        self.observation_space = gym.spaces.Box(
            low=OBS_LOW, high=OBS_HIGH, shape=(len(FEATURE_NAMES),), dtype=np.float32
        )
        # Discrete yields numpy ints; step() takes any int-like action
        self.action_space = gym.spaces.Discrete(len(Action))  # type: ignore[assignment]
        self._reward_unit = self.sim.limits.max_daily_loss
        self._equity = self.sim.initial_cash
        self._last_step = 0
        self.last_result: StepResult | None = None

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Observation, dict[str, Any]]:
        """Start an episode: a random window of ``episode_bars``, or the whole range."""
        super().reset(seed=seed)
        first = 0
        if self.episode_bars is not None:
            first = int(self.np_random.integers(0, len(self.sim) - self.episode_bars + 1))
            self._last_step = first + self.episode_bars
        else:
            self._last_step = len(self.sim)
        obs = self.sim.reset(first)
        self._equity = self.sim.initial_cash
        self.last_result = None
        return obs, {"time": self.sim.decision_times[first]}

    def step(self, action: int) -> tuple[Observation, float, bool, bool, dict[str, Any]]:
        """Apply ``action``; return (observation, reward, terminated, truncated, info)."""
        result = self.sim.step(Action(int(action)))
        self.last_result = result
        reward = (result.equity - self._equity) / self._reward_unit
        self._equity = result.equity
        terminated = self.sim.index >= self._last_step
        obs = self.sim.observation()
        info = {"time": result.mark_time, "equity": result.equity,
                "filled": result.fill is not None}
        return obs, float(reward), terminated, False, info
