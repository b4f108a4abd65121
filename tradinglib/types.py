"""Shared types: the action enum, decisions and the protocols the parts meet at."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
Observation = npt.NDArray[np.float32]


class Action(IntEnum):
    """What the agent wants to do this bar; a trade is ``trade_quantity`` shares."""

    HOLD = 0
    BUY = 1
    SELL = 2


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one inference call.

    Attributes:
        action: the action to take; HOLD whenever the model could not answer.
        reason: ``"model"`` for a real answer, otherwise why HOLD was used.
        latency: wall time of the call, in seconds.
    """

    action: Action
    reason: str
    latency: float

    @property
    def is_fallback(self) -> bool:
        """True when the action is a HOLD fallback rather than the model's answer."""
        return self.reason != "model"


@runtime_checkable
class Policy(Protocol):
    """Anything that maps an observation to an action (LockedPolicy, scripted policies)."""

    def predict(self, obs: object) -> Action:
        """Return the action for one observation of 26 floats."""
        ...
