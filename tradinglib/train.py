"""Train a PPO agent on bars, evaluate it on a held-out range, write the zip and its card."""

from __future__ import annotations

import platform
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pandas as pd
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from tqdm import tqdm

from tradinglib.backtest import run_backtest
from tradinglib.costs import Costs
from tradinglib.data import bars_sha256
from tradinglib.env import TradingEnv
from tradinglib.exceptions import InputError
from tradinglib.features import FEATURE_NAMES, FEATURE_VERSION
from tradinglib.inference import LockedPolicy
from tradinglib.modelcard import DataInfo, ModelCard, SpaceInfo, card_path, file_sha256
from tradinglib.risk import RiskLimits
from tradinglib.types import Action
from tradinglib.validation import OBS_HIGH, OBS_LOW

DEFAULT_HYPERPARAMETERS: dict[str, Any] = {
    "learning_rate": 3e-4,
    "n_steps": 512,
    "batch_size": 64,
    "n_epochs": 5,
    "gamma": 0.99,
    "ent_coef": 0.01,
    "net_arch": [64, 64],
}


def split_time(bars: pd.DataFrame, holdout_fraction: float) -> pd.Timestamp:
    """The first bar time of the held-out range: the last ``holdout_fraction`` of bars.

    Raises InputError unless 0 < holdout_fraction < 1.
    """
    if not 0.0 < holdout_fraction < 1.0:
        raise InputError(f"holdout fraction must be between 0 and 1, got {holdout_fraction}")
    return pd.Timestamp(bars.index[int(len(bars) * (1.0 - holdout_fraction))])


class _ProgressBar(BaseCallback):
    """A tqdm bar counting environment steps."""

    def __init__(self, total: int) -> None:
        super().__init__()
        self._bar = tqdm(total=total, unit="step", desc="training", dynamic_ncols=True)

    def _on_step(self) -> bool:
        self._bar.update(self.num_timesteps - self._bar.n)
        return True

    def _on_training_end(self) -> None:
        self._bar.close()


def train_model(
    bars: pd.DataFrame,
    *,
    source: str,
    out: str | Path,
    steps: int,
    seed: int = 0,
    holdout_fraction: float = 0.2,
    limits: RiskLimits | None = None,
    costs: Costs | None = None,
    cash: float = 100_000.0,
    episode_bars: int = 256,
    hyperparameters: dict[str, Any] | None = None,
    progress: bool = True,
) -> ModelCard:
    """Train PPO (MlpPolicy) on the bars before the held-out range and write the artifact.

    Writes ``out`` (the SB3 zip) and its card beside it (:func:`card_path`), with
    evaluation figures on both ranges. Same bars, seed, steps and parameters give the
    same card metrics (CPU, one torch thread: this sets ``torch.set_num_threads(1)``).

    Raises:
        InputError: steps < 1, a bad holdout fraction, an unknown hyperparameter, or
            ``out`` not ending in ``.zip``.
        DataError: too few bars in either range.
    """
    import torch

    if steps < 1:
        raise InputError(f"steps must be >= 1, got {steps}")
    out = Path(out)
    if out.suffix != ".zip":
        raise InputError(f"model path must end in .zip, got {out}")
    params = {**DEFAULT_HYPERPARAMETERS, **(hyperparameters or {})}
    unknown = set(params) - set(DEFAULT_HYPERPARAMETERS)
    if unknown:
        raise InputError(f"unknown hyperparameters {sorted(unknown)}; "
                         f"known: {sorted(DEFAULT_HYPERPARAMETERS)}")
    limits, costs = limits or RiskLimits(), costs or Costs()
    split = split_time(bars, holdout_fraction)
    env = TradingEnv(bars, limits=limits, costs=costs, cash=cash, end=split,
                     episode_bars=episode_bars)
    torch.set_num_threads(1)
    ppo_args = {k: v for k, v in params.items() if k != "net_arch"}
    model = PPO("MlpPolicy", env, seed=seed, device="cpu", verbose=0,
                policy_kwargs={"net_arch": list(params["net_arch"])}, **ppo_args)
    model.learn(total_timesteps=steps, callback=_ProgressBar(steps) if progress else None)
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save(out)

    policy = LockedPolicy(model)
    metrics = {
        name: run_backtest(bars, policy, start=first, end=last, limits=limits, costs=costs,
                           cash=cash).metrics
        for name, first, last in (("train", None, split), ("holdout", split, None))
    }
    before, after = bars[bars.index < split], bars[bars.index >= split]
    card = ModelCard(
        model_file=out.name,
        sha256=file_sha256(out),
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        algorithm="PPO",
        policy="MlpPolicy",
        feature_names=FEATURE_NAMES,
        feature_version=FEATURE_VERSION,
        observation_space=SpaceInfo(kind="Box", shape=(len(FEATURE_NAMES),), dtype="float32",
                                    low=OBS_LOW, high=OBS_HIGH),
        action_space=SpaceInfo(kind="Discrete", n=len(Action)),
        actions=tuple(a.name for a in Action),
        training_data=_data_info(source, before),
        holdout_data=_data_info(source, after),
        hyperparameters=params,
        seed=seed,
        total_timesteps=steps,
        limits=limits.to_dict(),
        costs=costs.to_dict(),
        versions=_versions(),
        metrics=metrics,
    )
    card.write(card_path(out))
    return card


def _data_info(source: str, bars: pd.DataFrame) -> DataInfo:
    return DataInfo(source=source, sha256=bars_sha256(bars), start=bars.index[0].isoformat(),
                    end=bars.index[-1].isoformat(), rows=len(bars))


def _versions() -> dict[str, str]:
    names = ["tradinglib", "stable-baselines3", "torch", "gymnasium", "numpy", "pandas"]
    return {"python": platform.python_version(), **{n: version(n) for n in names}}
