"""Shared types: the action enum, decisions and the protocols the parts meet at."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable
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


class DecisionCounts:
    """Thread-safe counts of a policy's decisions and of its HOLD fallbacks by kind
    (shared by :class:`~tradinglib.inference.LockedPolicy` and
    :class:`~tradinglib.remote.RemotePolicy`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls = 0
        self._fallbacks: Counter[str] = Counter()

    def add(self, calls: int, fallbacks: Iterable[str] = ()) -> None:
        """Count ``calls`` decisions, among them one HOLD fallback per kind listed."""
        with self._lock:
            self._calls += calls
            self._fallbacks.update(fallbacks)

    @property
    def calls(self) -> int:
        """Decisions so far."""
        return self._calls

    @property
    def fallbacks(self) -> dict[str, int]:
        """HOLD fallbacks so far, by kind."""
        with self._lock:
            return dict(self._fallbacks)


class CountsDecisions:
    """``calls`` and ``fallbacks`` for a policy that keeps its :class:`DecisionCounts`
    in ``counts``."""

    counts: DecisionCounts

    @property
    def calls(self) -> int:
        """Number of decisions so far (rows, for batches)."""
        return self.counts.calls

    @property
    def fallbacks(self) -> dict[str, int]:
        """HOLD fallbacks so far, by kind."""
        return self.counts.fallbacks
