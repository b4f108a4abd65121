"""Policies for notebooks: a trained model by path, or the scripted trend baseline."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tradinglib.features import FEATURE_NAMES
from tradinglib.paths import resolve
from tradinglib.types import Action, Policy


def load_policy(model_path: str | Path | None) -> Policy:
    """The trained model at ``model_path`` behind :class:`LockedPolicy
    <tradinglib.inference.LockedPolicy>`, or :class:`TrendPolicy` when it is None.

    Raises:
        ModelError: the model or its card cannot be used.
    """
    if model_path is None:
        return TrendPolicy()
    from tradinglib.inference import LockedPolicy

    return LockedPolicy.load(resolve(model_path))


class TrendPolicy:
    """A scripted baseline: BUY while the close is above its 50-bar average and the
    10-bar return is positive, SELL while both point down, else HOLD.

    Deterministic, and it reads the same 26-float observation as a trained model, so
    it runs through :func:`tradinglib.backtest.run_backtest` unchanged.
    """

    def __init__(self) -> None:
        self._sma = FEATURE_NAMES.index("dist_sma_50")
        self._ret = FEATURE_NAMES.index("ret_10")

    def predict(self, obs: object) -> Action:
        """The action for one observation (26 numbers)."""
        row = np.asarray(obs, dtype=np.float64)
        if row[self._sma] > 0 and row[self._ret] > 0:
            return Action.BUY
        if row[self._sma] < 0 and row[self._ret] < 0:
            return Action.SELL
        return Action.HOLD
