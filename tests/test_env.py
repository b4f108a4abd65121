"""TradingEnv: gymnasium's checker, episodes, rewards and determinism."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from gymnasium.utils.env_checker import check_env

from tradinglib.env import TradingEnv
from tradinglib.exceptions import InputError
from tradinglib.risk import RiskLimits
from tradinglib.types import Action


def test_passes_gymnasium_env_checker(googl: pd.DataFrame) -> None:
    env = TradingEnv(googl, episode_bars=50)
    check_env(env, skip_render_check=True)
    assert env.observation_space.shape == (26,)
    assert env.action_space.n == 3


def test_rewards_add_up_to_equity_change(googl: pd.DataFrame) -> None:
    limits = RiskLimits(max_daily_loss=250)
    env = TradingEnv(googl, limits=limits, start="2015-01-01", end="2015-06-01")
    obs, _ = env.reset(seed=1)
    rewards, done, info = [], False, {}
    rng = np.random.default_rng(3)
    while not done:
        assert env.observation_space.contains(obs)
        obs, reward, done, truncated, info = env.step(int(rng.integers(0, 3)))
        assert not truncated
        rewards.append(reward)
    assert len(rewards) == len(env.sim)
    assert sum(rewards) == pytest.approx((info["equity"] - 100_000) / 250)


def test_episodes_are_windows_chosen_by_the_seed(googl: pd.DataFrame) -> None:
    env = TradingEnv(googl, episode_bars=30)
    starts = []
    for seed in (1, 1, 2):
        _, info = env.reset(seed=seed)
        starts.append(info["time"])
        steps, done = 0, False
        while not done:
            _, _, done, _, _ = env.step(Action.HOLD)
            steps += 1
        assert steps == 30
    assert starts[0] == starts[1] != starts[2]


def test_episode_longer_than_range_is_capped(googl: pd.DataFrame) -> None:
    env = TradingEnv(googl, start="2018-08-01", episode_bars=10_000)
    assert env.episode_bars == len(env.sim)


def test_bad_episode_length(googl: pd.DataFrame) -> None:
    with pytest.raises(InputError, match="episode_bars"):
        TradingEnv(googl, episode_bars=0)
