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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from tradinglib.exceptions import ModelError, ObservationError
from tradinglib.features import FEATURE_NAMES, FEATURE_VERSION
from tradinglib.modelcard import ModelCard, file_sha256, read_card
from tradinglib.types import Action, CountsDecisions, Decision, DecisionCounts, Observation
from tradinglib.validation import OBS_HIGH, OBS_LOW, invalid_rows, validate_observation

PROBE_SIZE = 512
Array = npt.NDArray[np.float32]
_ACTIONS = tuple(Action)


# activation name -> (ufunc, extra operand) applied in place; Identity applies nothing
_ACTIVATIONS: dict[str, tuple[np.ufunc, tuple[float, ...]] | None] = {
    "Tanh": (np.tanh, ()), "ReLU": (np.maximum, (0.0,)), "Identity": None,
}


# a batch row whose top two logits are closer than this is answered by the
# single-observation path, so a batch and one-by-one calls always agree
_TIE_MARGIN = 1e-3


# OpenBLAS splits a matrix product across threads once rows x inner x outer passes a
# threshold (65536 x GEMM_MULTITHREAD_THRESHOLD = 4 in its source; about 4x that measured
# with numpy's build). For these small products the threads cost more than they give
# (milliseconds of waiting when another core is busy), so batch products are made in
# row blocks of at most this many multiply-adds, which OpenBLAS keeps on one thread
_ONE_THREAD_PRODUCT = 65_536 * 4


def _affine(x: Array, w: Array, b: Array) -> Array:
    """``x @ w + b`` (float32), the product in row blocks that OpenBLAS runs on one
    thread; ``b`` is one bias row, or one row per row of ``x``.

    The whole blocks go to numpy as one stack of matrices (it makes one BLAS product per
    block, without a Python loop), the rows left over as one more product.
    """
    n, (inner, outer) = len(x), w.shape
    block = max(1, _ONE_THREAD_PRODUCT // (inner * outer))
    if n <= block:  # one product (the usual case): the cheapest call
        out: Array = np.matmul(x, w)
        out += b
        return out
    out = np.empty((n, outer), dtype=np.float32)
    whole = n - n % block
    np.matmul(x[:whole].reshape(-1, block, inner), w,
              out=out[:whole].reshape(-1, block, outer))
    if whole < n:
        np.matmul(x[whole:], w, out=out[whole:])
    out += b
    return out


class _NumpyMlp:
    """The deterministic action of an SB3 MlpPolicy, computed with numpy (float32).

    Each layer's weights and bias are one matrix (the bias is the last row) and each
    layer's input carries a trailing 1. The single-observation call reuses buffers, so
    it is not reentrant: the caller holds :class:`LockedPolicy`'s lock. A batch rounds
    differently from single calls (another BLAS kernel, another order of sums), by far
    less than ``_TIE_MARGIN``; rows closer to a tie than that are recomputed one by one,
    so every batch answer is the single-observation answer.
    """

    def __init__(self, layers: list[tuple[Array, Array, str]]) -> None:
        self._weights = [np.vstack([w, b[None, :]]).astype(np.float32) for w, b, _ in layers]
        self._activations = [_ACTIVATIONS[act] for _, _, act in layers]
        # each layer reads [x, 1] from its input buffer and writes into the next one's x;
        # the last layer writes the logits
        inputs = [np.ones(w.shape[0], dtype=np.float32) for w in self._weights]
        self._logits = np.empty(self._weights[-1].shape[1], dtype=np.float32)
        outputs = [buf[:-1] for buf in inputs[1:]] + [self._logits]
        self._obs = inputs[0][:-1]
        # per layer: matmul into the output buffer, then the activation in place
        # (a positional ``out`` is the cheapest call numpy offers; np.maximum, ReLU,
        # takes its ``out`` by keyword only, since numpy 2.4 warns about a third operand)
        self._steps: list[tuple[np.ufunc, tuple[Any, ...], dict[str, Array]]] = []
        for x, w, out, act in zip(inputs, self._weights, outputs, self._activations,
                                  strict=True):
            self._steps.append((np.matmul, (x, w, out), {}))
            if act is not None:
                self._steps.append((act[0], (out, *act[1]), {"out": out}))
        # batches: the layers above the first as (weights, bias, activation)
        self._upper = [(np.ascontiguousarray(w[:-1]), w[-1], act)
                       for w, act in zip(self._weights[1:], self._activations[1:], strict=True)]

    def one(self, obs: Array) -> Action:
        """The action for one observation of shape (26,)."""
        self._obs[:] = obs
        for ufunc, args, out in self._steps:
            ufunc(*args, **out)
        return _ACTIONS[int(self._logits.argmax())]

    def __call__(self, batch: Array) -> npt.NDArray[np.int64]:
        """Action ids for observations of shape (n, 26)."""
        if len(batch) == 1:  # the single-observation path is the reference, and cheaper
            return np.array([self.one(batch[0])], dtype=np.int64)
        w = self._weights[0]
        first = _affine(np.asarray(batch, dtype=np.float32), w[:-1], w[-1])
        return self._answers(first, lambda row: batch[row])

    def prepare(self, market: Array) -> _PreparedMlp:
        """:class:`_PreparedMlp` for observations whose leading columns are rows of ``market``."""
        return _PreparedMlp(self, np.asarray(market, dtype=np.float32))

    def _answers(self, first: Array, observation: Callable[[int], Array]
                 ) -> npt.NDArray[np.int64]:
        """Action ids from the first layer's outputs before its activation (changed in
        place); ``observation(row)`` is the row's observation, for near ties."""
        x = first
        if self._activations[0] is not None:
            act, extra = self._activations[0]
            act(x, *extra, out=x)
        for w, b, activation in self._upper:
            x = _affine(x, w, b)
            if activation is not None:
                activation[0](x, *activation[1], out=x)
        actions: npt.NDArray[np.int64] = x.argmax(axis=1)
        for row in _near_tie(x).nonzero()[0]:
            actions[row] = self.one(observation(int(row)))
        return actions


def _near_tie(logits: Array) -> npt.NDArray[np.bool_]:
    """Rows of ``logits`` whose two largest values are closer than ``_TIE_MARGIN``."""
    columns = logits.T  # column by column: a row-wise sort or max of 3 values is slow
    if len(columns) < 2:
        return np.zeros(len(logits), dtype=np.bool_)
    top = np.maximum(columns[0], columns[1])
    second = np.minimum(columns[0], columns[1])
    for column in columns[2:]:
        np.maximum(second, np.minimum(top, column), out=second)
        np.maximum(top, column, out=top)
    top -= second
    near: npt.NDArray[np.bool_] = top < _TIE_MARGIN
    return near


class _PreparedMlp:
    """A :class:`_NumpyMlp` with the market part of its first layer precomputed.

    The first layer is linear before its activation, so ``[market, account, 1] @ W``
    is ``market @ W_market + b`` (computed here once per market row) plus
    ``account @ W_account`` (computed per call). The sums differ from the plain batch
    path's only by rounding; near ties still go through :meth:`_NumpyMlp.one`, so the
    answers are those of single observations.
    """

    def __init__(self, mlp: _NumpyMlp, market: Array) -> None:
        w = mlp._weights[0]
        columns = market.shape[1]
        self._mlp = mlp
        self.market = market
        self._account_weights = np.ascontiguousarray(w[columns:-1])
        self._base = _affine(market, np.ascontiguousarray(w[:columns]), w[-1])

    def __call__(self, first: int, account: Array) -> npt.NDArray[np.int64]:
        """Action ids for the observations ``[market[first + i], account[i]]``."""
        if len(account) == 1:  # the single-observation path is the reference, and cheaper
            obs = np.concatenate((self.market[first], account[0]))
            return np.array([self._mlp.one(obs)], dtype=np.int64)
        x = _affine(account, self._account_weights, self._base[first:first + len(account)])
        return self._mlp._answers(
            x, lambda row: np.concatenate((self.market[first + row], account[row])))


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
        if isinstance(module, nn.Linear) and module.bias is not None:
            w = module.weight.detach().cpu().numpy().T.astype(np.float32)
            b = module.bias.detach().cpu().numpy().astype(np.float32)
            layers.append((w, b, "Identity"))
        elif type(module).__name__ in _ACTIVATIONS and layers and layers[-1][2] == "Identity":
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


@dataclass(frozen=True, slots=True)
class BatchDecision:
    """Actions for a batch of observations.

    Attributes:
        actions: action ids (:class:`Action` values), one per row; HOLD where it fell back.
        fallbacks: row -> reason, for the rows that got HOLD because the model could not
            answer (as :attr:`Decision.reason`).
        latency: wall time of the whole call, seconds.
    """

    actions: npt.NDArray[np.int64]
    fallbacks: dict[int, str]
    latency: float


class PreparedPolicy:
    """:meth:`LockedPolicy.decide_batch` for observations made of fixed market rows and
    account features that change; from :meth:`LockedPolicy.prepare`.

    The model's first layer is linear before its activation, so the market rows' share
    of it is computed once, and a call computes only the account features' share and
    the layers above. Answers, fallbacks, the lock, the timeout and the call counts are
    those of ``decide_batch`` on the joined observations; near ties are answered by
    the single-observation path, as in ``decide_batch``.
    """

    def __init__(self, policy: LockedPolicy, mlp: _PreparedMlp) -> None:
        self._policy = policy
        self._mlp = mlp

    def decide_rows(self, first: int, account: npt.NDArray[Any]) -> BatchDecision:
        """Decisions for the observations ``market[first + i]`` + ``account[i]``.

        ``account`` has one row per observation and the remaining columns (4 for the
        22 market features). Never raises, like ``decide_batch``, to which it hands
        any call it cannot take whole (a wrong shape, an invalid value, rows past the
        end of ``market``).
        """
        started = time.perf_counter()
        policy, market = self._policy, self._mlp.market
        if not (isinstance(account, np.ndarray) and account.ndim == 2
                and account.shape[1] + market.shape[1] == len(FEATURE_NAMES)
                and 0 < len(account) <= len(market) - first and first >= 0
                and account.dtype.kind in "iuf" and _within_range(account)):
            return policy.decide_batch(self._join(first, account))
        n = len(account)
        if not policy._lock.acquire(timeout=policy.timeout):
            return policy._batch_fallback(n, range(n), "timeout",
                                          f"model busy for over {policy.timeout}s", started)
        try:
            actions = self._mlp(first, np.asarray(account, dtype=np.float32))
        except Exception as exc:
            return policy._batch_fallback(n, range(n), "model error", repr(exc), started)
        finally:
            policy._lock.release()
        policy.counts.add(n)
        return BatchDecision(actions, {}, time.perf_counter() - started)

    def _join(self, first: int, account: object) -> Any:
        """The whole observations, for decide_batch (which names whatever is wrong)."""
        try:
            rows = np.asarray(account)
            return np.concatenate((self._mlp.market[first:first + len(rows)], rows), axis=1)
        except (TypeError, ValueError):
            return account


def _within_range(values: npt.NDArray[Any]) -> bool:
    """True when every value is a valid observation value (finite, within the range)."""
    if values.size == 0:
        return True
    return bool(np.minimum.reduce(values, axis=None) >= OBS_LOW
                and np.maximum.reduce(values, axis=None) <= OBS_HIGH)


class LockedPolicy(CountsDecisions):
    """A model artifact behind validation and a lock; deterministic; thread-safe.

    Use :meth:`load`. :meth:`predict` raises on bad input; :meth:`decide` never raises
    and answers HOLD, with the reason, whenever the model cannot answer.

    Attributes:
        card: the model card read beside the zip; None for a model held in memory
            only (training evaluates one before its card exists).
        backend: ``"numpy"`` (checked fast path) or ``"sb3"`` (``model.predict``).
        backend_note: why the fast path is not used, when it is not.
        timeout: seconds :meth:`decide` waits for the lock and the answer before HOLD.
    """

    def __init__(self, model: Any, card: ModelCard | None = None, *, timeout: float = 1.0,
                 fast: bool = True) -> None:
        self.model = model
        self.card = card
        self.timeout = timeout
        self._lock = threading.Lock()
        self.counts = DecisionCounts()
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
        """sha256 of the model zip, from the verified card ("" without a card)."""
        return self.card.sha256 if self.card is not None else ""

    def _checked_mlp(self) -> tuple[_NumpyMlp | None, str]:
        mlp = _extract_mlp(self.model)
        if isinstance(mlp, str):
            return None, mlp
        probe = _probe_batch()
        expected, _ = self.model.predict(probe, deterministic=True)
        singles = np.array([mlp.one(row) for row in probe])
        mismatches = int(np.count_nonzero((mlp(probe) != expected) | (singles != expected)))
        if mismatches:
            return None, f"numpy forward differs from predict on {mismatches}/{len(probe)} probes"
        return mlp, ""

    def _forward(self, obs: Observation) -> Action:
        """The model's action for a validated observation; caller holds the lock."""
        if self._mlp is not None:
            return self._mlp.one(obs)
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
        self.counts.add(1)
        return Decision(action, "model", latency)

    def decide_batch(self, batch: npt.NDArray[Any]) -> BatchDecision:
        """:meth:`decide` for the rows of an ``(n, 26)`` array, in one locked model call.

        Never raises: invalid rows (and every row, if the model fails or the lock is
        not had within :attr:`timeout`) get HOLD with the reason, counted as fallbacks.
        """
        started = time.perf_counter()
        try:
            bad = invalid_rows(batch)
        except ObservationError as exc:
            n = len(batch) if hasattr(batch, "__len__") else 1
            return self._batch_fallback(n, range(n), "invalid observation", str(exc), started)
        actions = np.zeros(len(batch), dtype=np.int64)
        reasons: dict[int, str] = {}
        for i in np.flatnonzero(bad):
            try:
                validate_observation(batch[i])
            except ObservationError as exc:
                reasons[int(i)] = f"invalid observation: {exc}"
        good = np.flatnonzero(~bad)
        rows = batch if len(good) == len(batch) else batch[good]  # no copy when all valid
        if good.size:
            if not self._lock.acquire(timeout=self.timeout):
                return self._batch_fallback(len(batch), good, "timeout",
                                            f"model busy for over {self.timeout}s", started,
                                            reasons)
            try:
                actions[good] = self._forward_batch(np.asarray(rows, dtype=np.float32))
            except Exception as exc:
                return self._batch_fallback(len(batch), good, "model error", repr(exc),
                                            started, reasons)
            finally:
                self._lock.release()
        self.counts.add(len(batch), ["invalid observation"] * len(reasons))
        return BatchDecision(actions, reasons, time.perf_counter() - started)

    def prepare(self, market: npt.NDArray[Any]) -> PreparedPolicy | None:
        """Get ready to decide many observations that share the rows of ``market``.

        ``market`` is an ``(n, k)`` array of the first ``k`` values of observations to
        come (a backtest's 22 market features per bar); the returned
        :class:`PreparedPolicy` decides ``market[i]`` joined with account features given
        later, as :meth:`decide_batch` would, but computes the market rows' share of the
        model once. Returns None where nothing can be gained: the sb3 backend, or a
        ``market`` that is not a 2-D real array of at most 26 columns whose values are
        valid observation values (decide_batch then handles such rows).
        """
        if self._mlp is None:
            return None
        market = np.asarray(market)
        if not (market.ndim == 2 and 0 < market.shape[1] <= len(FEATURE_NAMES)
                and market.dtype.kind in "iuf" and _within_range(market)):
            return None
        return PreparedPolicy(self, self._mlp.prepare(market))

    def _forward_batch(self, batch: Array) -> npt.NDArray[np.int64]:
        """Action ids for validated rows; caller holds the lock."""
        if self._mlp is not None:
            return self._mlp(batch)
        actions, _ = self.model.predict(batch, deterministic=True)
        return np.asarray(actions, dtype=np.int64).reshape(len(batch))

    def _batch_fallback(self, n: int, rows: Iterable[int], kind: str, detail: str,
                        started: float, reasons: dict[int, str] | None = None
                        ) -> BatchDecision:
        reasons = dict(reasons or {})
        reasons.update({int(i): f"{kind}: {detail}" for i in rows})
        self.counts.add(n, (reason.split(":", 1)[0] for reason in reasons.values()))
        return BatchDecision(np.zeros(n, dtype=np.int64), reasons, time.perf_counter() - started)

    def _fallback(self, kind: str, detail: str, started: float) -> Decision:
        self.counts.add(1, [kind])
        return Decision(Action.HOLD, f"{kind}: {detail}", time.perf_counter() - started)


def _load_sb3(path: Path, algorithm: str) -> Any:
    """Load the SB3 model of ``algorithm`` from ``path`` on the CPU."""
    import stable_baselines3

    algo = getattr(stable_baselines3, algorithm, None)
    if algo is None:
        raise ModelError(f"card of {path} names algorithm {algorithm!r}, unknown to SB3")
    try:
        return algo.load(path, device="cpu")
    except Exception as exc:  # whatever a damaged or foreign zip makes SB3/torch raise
        raise ModelError(f"{path} is not a readable {algorithm} model: "
                         f"{type(exc).__name__}: {exc}") from None


def _check_spaces(model: Any, path: Path) -> None:
    """Raise ModelError unless the model takes Box(26,) float32 and acts in Discrete(3)."""
    import gymnasium as gym

    obs_space, act_space = model.observation_space, model.action_space
    if not (isinstance(obs_space, gym.spaces.Box) and obs_space.shape == (len(FEATURE_NAMES),)
            and obs_space.dtype == np.float32):
        raise ModelError(f"{path} observes {obs_space}, expected Box(26,) float32")
    if not (isinstance(act_space, gym.spaces.Discrete) and int(act_space.n) == len(Action)):
        raise ModelError(f"{path} acts in {act_space}, expected Discrete(3)")
