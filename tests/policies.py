"""Policies for tests: scripted decisions with known outcomes."""

from __future__ import annotations

from tradinglib.types import Action


class Scripted:
    """Acts by decision number; HOLD otherwise (per-bar only: no decide_batch)."""

    def __init__(self, script: dict[int, Action]) -> None:
        self.script, self.calls = script, 0

    def predict(self, obs: object) -> Action:
        action = self.script.get(self.calls, Action.HOLD)
        self.calls += 1
        return action
