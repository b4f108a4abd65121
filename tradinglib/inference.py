"""Locked, validated, deterministic inference over a trained model artifact.

Stable-Baselines3's ``predict`` is not thread-safe: measured here, about 1% of calls
from 16 unlocked threads return another caller's action, silently. Every call into the
model therefore goes through one ``threading.Lock``.

Where the policy is a plain MLP (PPO/A2C ``MlpPolicy``), :meth:`LockedPolicy.load`
copies its weights into numpy and uses them for the forward pass (tens of times faster
than ``predict`` for one observation), but only after checking that it picks the same
actions as ``predict(deterministic=True)`` on a probe batch; otherwise it falls back to
``predict``. :attr:`LockedPolicy.backend` says which is in use.
"""

from __future__ import annotations

import threading
import time
import zipfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from tradinglib.exceptions import ModelError, ObservationError
from tradinglib.features import FEATURE_NAMES, FEATURE_VERSION
from tradinglib.modelcard import ModelCard, file_sha256, read_card
from tradinglib.types import Action, Decision, Observation
from tradinglib.validation import validate_observation

PROBE_SIZE = 512
Array = npt.NDArray[np.float32]
_ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "Tanh": np.tanh,
    "ReLU": lambda x: np.maximum(x, np.float32(0.0)),
    "Identity": lambda x: x,
}


class _NumpyMlp:
    """The deterministic action of an SB3 MlpPolicy, computed with numpy (float32)."""

    def __init__(self, layers: list[tuple[Array, Array, str]]) -> None:
        self._layers = [(w, b, _ACTIVATIONS[act]) for w, b, act in layers]

    def __call__(self, obs: Array) -> npt.NDArray[np.intp]:
        """Action ids for observations of shape (26,) or (n, 26)."""
        x = obs
        for w, b, act in self._layers:
            x = act(x @ w + b)
        return np.asarray(np.argmax(x, axis=-1))


def _extract_mlp(model: Any) -> _NumpyMlp | str:
    """The numpy forward pass of ``model``'s policy, or the reason it cannot be built."""
    from stable_baselines3.common.distributions import CategoricalDistribution
    from stable_baselines3.common.policies import ActorCriticPolicy
    from stable_baselines3.common.torch_layers import FlattenExtractor
    from torch import nn

    policy = model.policy
    if not isinstance(policy, ActorCriticPolicy):
        return f"policy {type(policy).__name__} is not an ActorCriticPolicy"
    if not isinstance(policy.pi_features_extractor, FlattenExtractor):
        return "features extractor is not FlattenExtractor"
    if not isinstance(policy.action_dist, CategoricalDistribution):
        return "action distribution is not categorical"
    modules = [*policy.mlp_extractor.policy_net, policy.action_net]
    layers: list[tuple[Array, Array, str]] = []
    for module in modules:
        if isinstance(module, nn.Linear):
            w = module.weight.detach().cpu().numpy().T.astype(np.float32)
            b = module.bias.detach().cpu().numpy().astype(np.float32)
            layers.append((w, b, "Identity"))
        elif type(module).__name__ in _ACTIVATIONS and layers:
            w, b, _ = layers[-1]
            layers[-1] = (w, b, type(module).__name__)
        else:
            return f"unsupported layer {type(module).__name__}"
    return _NumpyMlp(layers)


def _probe_batch() -> Array:
    """Observations to compare backends on: zeros, small, typical and large values."""
    rng = np.random.default_rng(20_251_125)
    scale = np.repeat([0.0, 0.5, 2.0, 10.0], PROBE_SIZE // 4)[:, None]
    batch: Array = (rng.standard_normal((PROBE_SIZE, len(FEATURE_NAMES))) * scale).astype(
        np.float32)
    return batch


class LockedPolicy:
    """A model artifact behind validation and a lock; deterministic; thread-safe.

    Use :meth:`load`. :meth:`predict` raises on bad input; :meth:`decide` never raises
    and answers HOLD, with the reason, whenever the model cannot answer.

    Attributes:
        card: the model card read beside the zip.
        backend: ``"numpy"`` (checked fast path) or ``"sb3"`` (``model.predict``).
        backend_note: why the fast path is not used, when it is not.
        timeout: seconds :meth:`decide` waits for the lock and the answer before HOLD.
    """

    def __init__(self, model: Any, card: ModelCard, *, timeout: float = 1.0,
                 fast: bool = True) -> None:
        self.model = model
        self.card = card
        self.timeout = timeout
        self._lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self._fallbacks: Counter[str] = Counter()
        self._calls = 0
        self._mlp: _NumpyMlp | None = None
        self.backend_note = "fast path disabled"
        if fast:
            self._mlp, self.backend_note = self._checked_mlp()

    @classmethod
    def load(cls, path: str | Path, *, timeout: float = 1.0, fast: bool = True) -> LockedPolicy:
        """Load ``path`` (an SB3 zip) after checking it against its model card.

        Raises:
            ModelError: the zip or its card is missing, the sha256 differs from the
                card's, the card's features differ from this library's, the zip is
                corrupt, or the spaces are not Box(26,) float32 and Discrete(3).
        """
        path = Path(path)
        if not path.is_file():
            raise ModelError(f"no model file at {path}; train one with `tradinglib train`")
        card = read_card(path)
        digest = file_sha256(path)
        if digest != card.sha256:
            raise ModelError(
                f"{path} has sha256 {digest[:12]}…, its card says {card.sha256[:12]}…: the "
                "file changed after training; restore it or retrain"
            )
        if tuple(card.feature_names) != FEATURE_NAMES or card.feature_version != FEATURE_VERSION:
            raise ModelError(
                f"{path} was trained on features version {card.feature_version} "
                f"({len(card.feature_names)} names), this library computes version "
                f"{FEATURE_VERSION}; retrain the model"
            )
        model = _load_sb3(path, card.algorithm)
        _check_spaces(model, path)
        return cls(model, card, timeout=timeout, fast=fast)

    @property
    def backend(self) -> str:
        """``"numpy"`` or ``"sb3"``."""
        return "numpy" if self._mlp is not None else "sb3"

    @property
    def sha256(self) -> str:
        """sha256 of the model zip, from the verified card."""
        return self.card.sha256

    def _checked_mlp(self) -> tuple[_NumpyMlp | None, str]:
        mlp = _extract_mlp(self.model)
        if isinstance(mlp, str):
            return None, mlp
        probe = _probe_batch()
        expected, _ = self.model.predict(probe, deterministic=True)
        mismatches = int(np.count_nonzero(mlp(probe) != expected))
        if mismatches:
            return None, f"numpy forward differs from predict on {mismatches}/{len(probe)} probes"
        return mlp, ""

    def _forward(self, obs: Observation) -> Action:
        """The model's action for a validated observation; caller holds the lock."""
        if self._mlp is not None:
            return Action(int(self._mlp(obs)))
        action, _ = self.model.predict(obs, deterministic=True)
        return Action(int(action))

    def predict(self, obs: object) -> Action:
        """The model's deterministic action for ``obs`` (26 numbers).

        Raises:
            ObservationError: ``obs`` fails :func:`validate_observation`.
            ModelError: the model itself failed.
        """
        valid = validate_observation(obs)
        with self._lock:
            try:
                return self._forward(valid)
            except Exception as exc:
                raise ModelError(f"model failed on a valid observation: {exc!r}") from exc

    def decide(self, obs: object) -> Decision:
        """Like :meth:`predict` but never raises: HOLD with the reason when it cannot answer.

        Reasons: ``"model"`` (a real answer), ``"invalid observation: ..."``,
        ``"timeout: ..."``, ``"model error: ..."``. Fallbacks are counted by kind.
        """
        started = time.perf_counter()
        try:
            valid = validate_observation(obs)
        except ObservationError as exc:
            return self._fallback("invalid observation", str(exc), started)
        if not self._lock.acquire(timeout=self.timeout):
            return self._fallback("timeout", f"model busy for over {self.timeout}s", started)
        try:
            action = self._forward(valid)
        except Exception as exc:
            return self._fallback("model error", repr(exc), started)
        finally:
            self._lock.release()
        latency = time.perf_counter() - started
        if latency > self.timeout:
            return self._fallback("timeout", f"answer took {latency:.3f}s", started)
        with self._stats_lock:
            self._calls += 1
        return Decision(action, "model", latency)

    def _fallback(self, kind: str, detail: str, started: float) -> Decision:
        with self._stats_lock:
            self._calls += 1
            self._fallbacks[kind] += 1
        return Decision(Action.HOLD, f"{kind}: {detail}", time.perf_counter() - started)

    @property
    def calls(self) -> int:
        """Number of :meth:`decide` calls so far."""
        return self._calls

    @property
    def fallbacks(self) -> dict[str, int]:
        """HOLD fallbacks of :meth:`decide` so far, by kind."""
        with self._stats_lock:
            return dict(self._fallbacks)


def _load_sb3(path: Path, algorithm: str) -> Any:
    """Load the SB3 model of ``algorithm`` from ``path`` on the CPU."""
    import stable_baselines3

    algo = getattr(stable_baselines3, algorithm, None)
    if algo is None:
        raise ModelError(f"card of {path} names algorithm {algorithm!r}, unknown to SB3")
    try:
        return algo.load(path, device="cpu")
    except (zipfile.BadZipFile, EOFError, KeyError, ValueError, RuntimeError, OSError) as exc:
        raise ModelError(f"{path} is not a readable {algorithm} model: {exc}") from None


def _check_spaces(model: Any, path: Path) -> None:
    """Raise ModelError unless the model takes Box(26,) float32 and acts in Discrete(3)."""
    import gymnasium as gym

    obs_space, act_space = model.observation_space, model.action_space
    if not (isinstance(obs_space, gym.spaces.Box) and obs_space.shape == (len(FEATURE_NAMES),)
            and obs_space.dtype == np.float32):
        raise ModelError(f"{path} observes {obs_space}, expected Box(26,) float32")
    if not (isinstance(act_space, gym.spaces.Discrete) and int(act_space.n) == len(Action)):
        raise ModelError(f"{path} acts in {act_space}, expected Discrete(3)")
