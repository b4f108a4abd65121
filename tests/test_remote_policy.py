"""RemotePolicy against real servers on loopback: the inference service, a port nobody
listens on, a socket that never answers, and a server that answers nonsense. Whatever
goes wrong, decide() gives HOLD with the reason and counts it; a session keeps going."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import Response

from tradinglib.config import Settings
from tradinglib.exceptions import (
    ConfigError,
    InputError,
    ModelError,
    ObservationError,
    RetryableError,
)
from tradinglib.inference import LockedPolicy
from tradinglib.modelcard import ModelCard
from tradinglib.remote import RemotePolicy
from tradinglib.service import BackgroundServer, create_app
from tradinglib.session import SessionConfig, run_session
from tradinglib.types import Action, Decision

TOKEN = "remote-token-for-tests-0123456789"
OBS = [0.5] * 26
Model = tuple[Path, ModelCard]


@pytest.fixture(scope="module")
def policy(tiny_model: Model) -> LockedPolicy:
    return LockedPolicy.load(tiny_model[0])


@pytest.fixture(scope="module")
def service(policy: LockedPolicy) -> Iterator[BackgroundServer]:
    with BackgroundServer(create_app(policy)) as running:
        yield running


@pytest.fixture
def dead_url() -> str:
    """A loopback URL where nothing listens (the port was free a moment ago)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def observations(n: int) -> list[list[float]]:
    return [[((i * 7 + k * 3) % 23 - 11) * (1 + i % 5) for k in range(26)] for i in range(n)]


def test_answers_are_the_in_process_policys(service: BackgroundServer, policy: LockedPolicy,
                                            tiny_model: Model) -> None:
    # observations the model answers differently, so a wrong answer would show
    assert len({policy.predict(o) for o in observations(10)}) >= 2
    with RemotePolicy(service.url, card=tiny_model[1]) as remote:
        for obs in observations(10):
            decision = remote.decide(obs)
            assert (decision.action, decision.reason) == (policy.predict(obs), "model")
            assert remote.predict(obs) == policy.predict(obs)
        assert (remote.calls, remote.fallbacks) == (10, {})
        assert (remote.sha256, remote.backend, remote.card) == (
            tiny_model[1].sha256, "remote", tiny_model[1])


def test_without_a_card_the_sha256_is_the_services(service: BackgroundServer,
                                                   tiny_model: Model) -> None:
    with RemotePolicy(service.url + "/") as remote:
        assert remote.sha256 == ""
        remote.decide(OBS)
        assert remote.sha256 == tiny_model[1].sha256
        assert remote.card is None


def test_threads_get_their_own_answers(service: BackgroundServer, policy: LockedPolicy) -> None:
    obs = observations(16)
    expected = [policy.predict(o) for o in obs]
    assert len(set(expected)) >= 2  # else swapped answers could not show
    wrong: list[tuple[int, Action]] = []
    with RemotePolicy(service.url) as remote:

        def work(k: int) -> None:
            for i in range(25):
                j = (k + i) % len(obs)
                got = remote.decide(obs[j]).action
                if got != expected[j]:
                    wrong.append((j, got))

        threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not any(t.is_alive() for t in threads)
        assert wrong == [] and remote.calls == 200


def _fallback(remote: RemotePolicy, kind: str, text: str = "") -> Decision:
    decision = remote.decide(OBS)
    assert decision.action is Action.HOLD and decision.is_fallback
    assert decision.reason.startswith(f"{kind}: "), decision.reason
    assert text in decision.reason
    return decision


def test_refused_connection_is_hold(dead_url: str) -> None:
    with RemotePolicy(dead_url, timeout=2.0) as remote:
        for _ in range(3):
            _fallback(remote, "unreachable", dead_url)
        assert (remote.calls, remote.fallbacks) == (3, {"unreachable": 3})
        with pytest.raises(RetryableError, match="unreachable"):
            remote.predict(OBS)


def test_no_answer_in_time_is_hold() -> None:
    with socket.socket() as silent:  # accepts connections (backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with RemotePolicy(url, timeout=0.2) as remote:
            started = time.monotonic()
            decision = _fallback(remote, "timeout", "within 0.2s")
            assert time.monotonic() - started < 2.0
            assert 0.15 < decision.latency < 2.0
            with pytest.raises(RetryableError, match="timeout"):
                remote.predict(OBS)
            assert remote.fallbacks == {"timeout": 1}


class Failing:
    """A served policy that fails inside (500) or gives a HOLD fallback of its own."""

    backend = "scripted"

    def __init__(self, decision: Decision | None, sha256: str = "a" * 64) -> None:
        self.decision = decision
        self.sha256 = sha256

    def decide(self, obs: object) -> Decision:
        if self.decision is None:
            raise RuntimeError("boom")
        return self.decision


def test_server_errors_and_service_fallbacks_are_hold() -> None:
    busy = Decision(Action.HOLD, "timeout: model busy for over 1s", 1.0)
    with BackgroundServer(create_app(Failing(None))) as broken, \
            BackgroundServer(create_app(None)) as empty, \
            BackgroundServer(create_app(Failing(busy))) as held:
        with RemotePolicy(broken.url) as remote:
            _fallback(remote, "server error", "HTTP 500 internal error")
            with pytest.raises(RetryableError):
                remote.predict(OBS)
        with RemotePolicy(empty.url) as remote:
            _fallback(remote, "server error", "HTTP 503 no model loaded")
        with RemotePolicy(held.url) as remote:
            _fallback(remote, "service fallback", "timeout: model busy")
            with pytest.raises(RetryableError, match="service fallback"):
                remote.predict(OBS)


def test_another_model_than_the_cards_is_hold(service: BackgroundServer,
                                              tiny_model: Model) -> None:
    other = tiny_model[1].model_copy(update={"sha256": "0" * 64})
    with RemotePolicy(service.url, card=other) as remote:
        _fallback(remote, "model mismatch", "the card says 000000000000")
        with pytest.raises(ModelError, match="model mismatch"):
            remote.predict(OBS)
        assert remote.sha256 == "0" * 64


def test_token(policy: LockedPolicy, tiny_model: Model) -> None:
    with BackgroundServer(create_app(policy, token=TOKEN)) as guarded:
        with RemotePolicy(guarded.url) as remote:
            _fallback(remote, "refused", "HTTP 401")
            assert "AI_SERVICE_TOKEN" in remote.decide(OBS).reason
            with pytest.raises(ConfigError):
                remote.predict(OBS)
        settings = Settings(ai_inference_url=guarded.url,
                            ai_service_token=TOKEN)  # type: ignore[arg-type]
        with RemotePolicy.from_settings(settings, card=tiny_model[1]) as remote:
            assert remote.decide(OBS).reason == "model"


def test_invalid_observation_is_hold_without_a_request(service: BackgroundServer) -> None:
    with RemotePolicy(service.url) as remote, httpx.Client(base_url=service.url) as probe:
        before = probe.get("/health").json()["requests"]["total"]
        for bad in ([1.0] * 25, [float("nan")] * 26, ["x"] * 26, None):
            decision = remote.decide(bad)
            assert decision.action is Action.HOLD
            assert decision.reason.startswith("invalid observation: ")
        with pytest.raises(ObservationError):
            remote.predict([1.0] * 25)
        after = probe.get("/health").json()["requests"]["total"]
        assert remote.fallbacks == {"invalid observation": 4}
    assert after == before + 1  # the first /health only: nothing was sent


class Canned:
    """A server whose /predict answers with whatever the test puts in ``reply``."""

    def __init__(self) -> None:
        self.reply: tuple[int, str, str] = (200, "application/json", "{}")
        self.app = FastAPI()

        @self.app.post("/predict")
        async def predict(request: Request) -> Response:
            status, kind, body = self.reply
            return Response(body, status_code=status, media_type=kind)


SHA = "b" * 64


def answer(action: object, action_id: object, sha: object = SHA) -> str:
    return json.dumps({"action": action, "action_id": action_id, "model_sha256": sha})


@pytest.mark.parametrize(("status", "kind", "body", "fallback", "error"), [
    (200, "text/html", "<html>proxy</html>", "malformed answer", RetryableError),
    (200, "application/json", "[1, 2]", "malformed answer", RetryableError),
    (200, "application/json", "{}", "malformed answer", RetryableError),
    (200, "application/json", answer("JUMP", 1), "malformed answer", RetryableError),
    (200, "application/json", answer("BUY", 2), "malformed answer", RetryableError),
    (200, "application/json", answer("BUY", "1"), "malformed answer", RetryableError),
    (200, "application/json", answer("BUY", 1, 5), "malformed answer", RetryableError),
    (200, "application/json", answer(1, 1), "malformed answer", RetryableError),
    (200, "application/json", '{"action": "BUY", "action_id": 1', "malformed answer",
     RetryableError),
    (502, "text/plain", "bad gateway", "server error", RetryableError),
    (422, "application/json", '{"detail": "observation[0] is wrong"}', "refused", InputError),
    (403, "application/json", '{"detail": "forbidden"}', "refused", ConfigError),
])
def test_malformed_or_refused_answers_are_hold(status: int, kind: str, body: str,
                                               fallback: str, error: type[Exception]
                                               ) -> None:
    canned = Canned()
    canned.reply = (status, kind, body)
    with BackgroundServer(canned.app) as srv, RemotePolicy(srv.url) as remote:
        _fallback(remote, fallback)
        with pytest.raises(error, match=fallback):
            remote.predict(OBS)
        canned.reply = (200, "application/json", answer("SELL", 2))
        decision = remote.decide(OBS)
        assert (decision.action, decision.reason) == (Action.SELL, "model")
        assert remote.fallbacks == {fallback: 1}
        assert remote.sha256 == SHA


@pytest.mark.parametrize(("url", "timeout"), [("localhost:8000", 1.0), ("", 1.0),
                                              ("ftp://x", 1.0), ("http://x", 0.0),
                                              ("http://x", -1.0), ("http://x", float("nan")),
                                              ("http://x", "1"), ("http://host:abc", 1.0),
                                              ("http://[::1", 1.0)])
def test_bad_arguments_are_clear_errors(url: str, timeout: Any) -> None:
    with pytest.raises(InputError, match=r"URL|timeout"):
        RemotePolicy(url, timeout)


# --------------------------------------------------------------------------- sessions


def _session(model: Model, out: Path, url: str | None) -> Any:
    return run_session(SessionConfig(model_path=model[0], cycle_seconds=60.0,
                                     session_minutes=20.0, flatten_at_end=False,
                                     inference_url=url), out)


def test_a_session_through_the_service_takes_the_same_actions(
        service: BackgroundServer, tiny_model: Model, tmp_path: Path) -> None:
    local = _session(tiny_model, tmp_path / "local", None)
    remote = _session(tiny_model, tmp_path / "remote", service.url)
    assert list(remote.decisions["action"]) == list(local.decisions["action"])
    assert len(set(local.decisions["action"])) >= 2  # the comparison can tell them apart
    assert set(remote.decisions["fallback"]) == {""}


def test_a_session_without_its_service_holds_and_finishes(dead_url: str, tiny_model: Model,
                                                          tmp_path: Path) -> None:
    session = _session(tiny_model, tmp_path / "run", dead_url)
    decisions = session.decisions
    assert len(decisions) == 20
    assert {str(a) for a in decisions["action"]} <= {"HOLD", str(Action.HOLD),
                                                    str(int(Action.HOLD))}
    assert all(f.startswith("unreachable: ") for f in decisions["fallback"])
    assert session.metrics["hold_fallbacks"] == 20
