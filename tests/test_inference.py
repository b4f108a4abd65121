"""LockedPolicy: artifact checks, agreement with SB3, thread safety, HOLD fallbacks."""

from __future__ import annotations

import json
import shutil
import threading
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tradinglib.data import load_bars
from tradinglib.exceptions import ModelError, ObservationError
from tradinglib.execution import Simulation
from tradinglib.inference import LockedPolicy, _affine
from tradinglib.modelcard import ModelCard, card_path
from tradinglib.types import Action


@pytest.fixture(scope="module")
def observations(googl: pd.DataFrame) -> np.ndarray:
    """Real observations: GOOGL bars with a random-trading account."""
    sim, rng, rows = Simulation(googl), np.random.default_rng(0), []
    obs = sim.reset()
    while not sim.done and len(rows) < 400:
        rows.append(obs)
        sim.step(Action(int(rng.integers(0, 3))))
        obs = sim.observation()
    return np.stack(rows)


@pytest.fixture(scope="module")
def policy(tiny_model: tuple[Path, ModelCard]) -> LockedPolicy:
    return LockedPolicy.load(tiny_model[0])


def _copy(tiny_model: tuple[Path, ModelCard], tmp_path: Path) -> Path:
    path = tmp_path / "copy.zip"
    shutil.copy(tiny_model[0], path)
    shutil.copy(card_path(tiny_model[0]), card_path(path))
    return path


def test_fast_path_agrees_with_sb3_on_real_observations(policy: LockedPolicy,
                                                        observations: np.ndarray) -> None:
    assert policy.backend == "numpy", policy.backend_note
    expected, _ = policy.model.predict(observations, deterministic=True)
    got = [policy.predict(obs) for obs in observations]
    assert [int(a) for a in got] == [int(a) for a in expected]
    assert all(isinstance(a, Action) for a in got)


def test_sb3_backend_agrees_too(tiny_model: tuple[Path, ModelCard],
                                observations: np.ndarray) -> None:
    slow = LockedPolicy.load(tiny_model[0], fast=False)
    assert slow.backend == "sb3"
    expected, _ = slow.model.predict(observations[:50], deterministic=True)
    assert [int(slow.predict(o)) for o in observations[:50]] == list(expected)


def test_predict_accepts_lists_and_rejects_bad_input(policy: LockedPolicy,
                                                     observations: np.ndarray) -> None:
    assert policy.predict(observations[0].tolist()) == policy.predict(observations[0])
    with pytest.raises(ObservationError, match=r"observation\[3\] \(ret_20\) = nan"):
        policy.predict([0.0] * 3 + [float("nan")] + [0.0] * 22)


@pytest.mark.parametrize("fast", [True, False], ids=["numpy", "sb3"])
@pytest.mark.slow
def test_sixteen_threads_match_serial(tiny_model: tuple[Path, ModelCard],
                                      observations: np.ndarray, fast: bool) -> None:
    locked = LockedPolicy.load(tiny_model[0], fast=fast)
    calls = 1_000 if fast else 250  # sb3's predict is ~0.3 ms a call
    serial = [locked.predict(o) for o in observations]
    n = len(observations)
    barrier = threading.Barrier(16)

    def worker(k: int) -> int:
        barrier.wait(timeout=30)
        return sum(locked.predict(observations[(k * 7 + i) % n]) != serial[(k * 7 + i) % n]
                   for i in range(calls))

    with ThreadPoolExecutor(16) as pool:
        mismatches = list(pool.map(worker, range(16), timeout=120))
    assert mismatches == [0] * 16
    # the two backends are interchangeable: same actions
    assert serial == [LockedPolicy.load(tiny_model[0], fast=not fast).predict(o)
                      for o in observations]


def test_decide_falls_back_to_hold_and_counts(policy: LockedPolicy,
                                              observations: np.ndarray) -> None:
    fresh = LockedPolicy(policy.model, policy.card)
    good = fresh.decide(observations[0])
    assert good.reason == "model" and not good.is_fallback and good.latency >= 0
    for bad in (None, "x", [1.0] * 25, [float("inf")] * 26, {"observation": []}):
        decision = fresh.decide(bad)
        assert decision.action == Action.HOLD
        assert decision.reason.startswith("invalid observation")
    assert fresh.fallbacks == {"invalid observation": 5}
    assert fresh.calls == 6


def test_decide_times_out_when_the_model_is_busy(policy: LockedPolicy,
                                                 observations: np.ndarray) -> None:
    busy = LockedPolicy(policy.model, policy.card, timeout=0.05)
    busy._lock.acquire()
    try:
        decision = busy.decide(observations[0])
    finally:
        busy._lock.release()
    assert decision.action == Action.HOLD and decision.reason.startswith("timeout")
    assert busy.fallbacks == {"timeout": 1}
    assert busy.decide(observations[0]).reason == "model"


def test_decide_survives_a_failing_model(policy: LockedPolicy,
                                         observations: np.ndarray) -> None:
    class Broken:
        def predict(self, *args: object, **kwargs: object) -> None:
            raise RuntimeError("weights on fire")

    broken = LockedPolicy(Broken(), policy.card, fast=False)
    decision = broken.decide(observations[0])
    assert decision.action == Action.HOLD and "weights on fire" in decision.reason
    assert broken.fallbacks == {"model error": 1}
    with pytest.raises(ModelError, match="weights on fire"):
        broken.predict(observations[0])


def test_missing_model_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no model file"):
        LockedPolicy.load(tmp_path / "nothing.zip")


def test_missing_card(tiny_model: tuple[Path, ModelCard], tmp_path: Path) -> None:
    path = _copy(tiny_model, tmp_path)
    card_path(path).unlink()
    with pytest.raises(ModelError, match=r"card .* not found"):
        LockedPolicy.load(path)


def test_tampered_zip_fails_the_hash(tiny_model: tuple[Path, ModelCard],
                                     tmp_path: Path) -> None:
    path = _copy(tiny_model, tmp_path)
    with path.open("ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ModelError, match="sha256"):
        LockedPolicy.load(path)


def _rewrite_card(path: Path, **changes: object) -> None:
    data = json.loads(card_path(path).read_text())
    data.update(changes)
    card_path(path).write_text(json.dumps(data))


def test_corrupt_zip_with_matching_card(tiny_model: tuple[Path, ModelCard],
                                        tmp_path: Path) -> None:
    from tradinglib.modelcard import file_sha256

    path = _copy(tiny_model, tmp_path)
    path.write_bytes(b"this is not a zip file")
    _rewrite_card(path, sha256=file_sha256(path))
    with pytest.raises(ModelError, match="not a readable PPO model"):
        LockedPolicy.load(path)


@pytest.mark.parametrize("error", [TypeError("unexpected keyword"), AttributeError("x"),
                                   zipfile.BadZipFile("bad")])
def test_any_failure_inside_sb3_load_is_a_model_error(
        tiny_model: tuple[Path, ModelCard], monkeypatch: pytest.MonkeyPatch,
        error: Exception) -> None:
    import stable_baselines3

    def fail(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(stable_baselines3.PPO, "load", fail)
    with pytest.raises(ModelError, match=f"not a readable PPO model: {type(error).__name__}"):
        LockedPolicy.load(tiny_model[0])


def test_card_that_is_not_json(tiny_model: tuple[Path, ModelCard], tmp_path: Path) -> None:
    path = _copy(tiny_model, tmp_path)
    card_path(path).write_text("{not json")
    with pytest.raises(ModelError, match="not valid"):
        LockedPolicy.load(path)


def test_feature_version_mismatch(tiny_model: tuple[Path, ModelCard], tmp_path: Path) -> None:
    path = _copy(tiny_model, tmp_path)
    _rewrite_card(path, feature_version="0")
    with pytest.raises(ModelError, match="retrain"):
        LockedPolicy.load(path)


def test_wrong_spaces(tiny_model: tuple[Path, ModelCard], tmp_path: Path) -> None:
    import gymnasium as gym
    from stable_baselines3 import PPO

    from tradinglib.modelcard import file_sha256

    other = PPO("MlpPolicy", gym.make("CartPole-v1"), n_steps=64, device="cpu", seed=0)
    path = _copy(tiny_model, tmp_path)
    other.save(path)
    _rewrite_card(path, sha256=file_sha256(path))
    with pytest.raises(ModelError, match=r"expected Box\(26,\)"):
        LockedPolicy.load(path)


@pytest.mark.parametrize("activation", ["Tanh", "ReLU"])
def test_numpy_backend_answers_as_sb3_for_each_activation(activation: str,
                                                          observations: np.ndarray) -> None:
    # regression: ReLU's np.maximum with a positional out warned (numpy 2.4) on every
    # single-observation call, so with warnings as errors the policy failed to build
    import torch
    from stable_baselines3 import PPO

    from tradinglib.env import TradingEnv

    env = TradingEnv(load_bars("googl-daily").iloc[:300])
    model = PPO("MlpPolicy", env, n_steps=64, device="cpu", seed=0,
                policy_kwargs={"activation_fn": getattr(torch.nn, activation)})
    policy = LockedPolicy(model)
    assert policy.backend == "numpy", policy.backend_note
    expected, _ = model.predict(observations, deterministic=True)
    assert [policy.predict(obs) for obs in observations] == expected.tolist()
    assert policy.decide_batch(observations).actions.tolist() == expected.tolist()


@pytest.mark.parametrize("rows", [1, 63, 64, 65, 1000])
@pytest.mark.parametrize("shape", [(64, 64), (22, 64), (64, 3)])
def test_affine_in_row_blocks_is_the_plain_product(rows: int, shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(rows)
    x = rng.standard_normal((rows, shape[0])).astype(np.float32)
    w = rng.standard_normal(shape).astype(np.float32)
    bias_row = rng.standard_normal(shape[1]).astype(np.float32)
    bias_rows = rng.standard_normal((rows, shape[1])).astype(np.float32)
    for b in (bias_row, bias_rows):
        expected = x.astype(np.float64) @ w.astype(np.float64) + b
        for layout in (x, np.asfortranarray(x)):  # Simulation's market rows are F-ordered
            got = _affine(layout, w, b)
            assert got.dtype == np.float32 and got.shape == (rows, shape[1])
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)
