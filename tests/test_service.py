"""The inference service over real HTTP: uvicorn on a free loopback port, started and
stopped by the tests (BackgroundServer), plus one end-to-end run of `tradinglib serve`."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from prometheus_client.parser import text_string_to_metric_families

from tradinglib.config import Settings
from tradinglib.exceptions import ConfigError, ModelError
from tradinglib.features import FEATURE_VERSION
from tradinglib.inference import LockedPolicy
from tradinglib.logs import JsonLinesFormatter
from tradinglib.modelcard import ModelCard
from tradinglib.service import BackgroundServer, bind_socket, check_bind, create_app, serve
from tradinglib.service.schemas import ActionName
from tradinglib.service.security import token_matches
from tradinglib.types import Action, Decision

TOKEN = "t0ken-for-tests-only-0123456789"
JSON = {"content-type": "application/json"}
OK_OBS = [0.25] * 26
OK_BODY = json.dumps({"observation": OK_OBS}).encode()


def observations(n: int, seed: int = 3) -> np.ndarray[Any, np.dtype[np.float32]]:
    """``n`` valid observations of varied scale, so a model answers with a mix."""
    rng = np.random.default_rng(seed)
    scale = np.repeat([0.5, 2.0, 10.0, 50.0], -(-n // 4))[:n, None]
    return np.clip(rng.standard_normal((n, 26)) * scale, -1000, 1000).astype(np.float32)


@pytest.fixture(scope="module")
def policy(tiny_model: tuple[Path, ModelCard]) -> LockedPolicy:
    return LockedPolicy.load(tiny_model[0])


@pytest.fixture(scope="module")
def server(policy: LockedPolicy) -> Iterator[BackgroundServer]:
    with BackgroundServer(create_app(policy)) as running:
        yield running


@pytest.fixture
def client(server: BackgroundServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10.0) as c:
        yield c


class Answers:
    """A served policy with a fixed decision, or one that fails (for 500 and fallbacks)."""

    sha256 = "f" * 64
    backend = "scripted"

    def __init__(self, decision: Decision | None) -> None:
        self.decision = decision

    def decide(self, obs: object) -> Decision:
        if self.decision is None:
            raise RuntimeError("scripted failure inside the policy")
        return self.decision


# --------------------------------------------------------------------------- answers


def test_predict_answers_the_models_action(client: httpx.Client, policy: LockedPolicy,
                                           tiny_model: tuple[Path, ModelCard]) -> None:
    for obs in observations(12):
        r = client.post("/predict", json={"observation": obs.tolist()})
        assert r.status_code == 200, r.text
        body = r.json()
        expected = policy.predict(obs)
        assert (body["action"], body["action_id"]) == (expected.name, int(expected))
        assert body["model_sha256"] == tiny_model[1].sha256
        assert body["reason"] == "model"
        assert 0 <= body["latency_ms"] < 1000


def test_action_names_are_the_enums() -> None:
    assert ActionName.__args__ == tuple(a.name for a in Action)  # type: ignore[attr-defined]


def test_health_reports_model_version_uptime_and_counts(
        policy: LockedPolicy, tiny_model: tuple[Path, ModelCard]) -> None:
    with BackgroundServer(create_app(policy)) as srv, \
            httpx.Client(base_url=srv.url, timeout=10.0) as c:
        for _ in range(3):
            c.post("/predict", json={"observation": OK_OBS})
        c.post("/predict", json={"observation": [1.0]})
        time.sleep(0.01)
        health = c.get("/health")
        later = c.get("/health").json()
    assert health.status_code == 200
    body = health.json()
    assert body["model_sha256"] == tiny_model[1].sha256
    assert body["feature_version"] == FEATURE_VERSION
    assert body["backend"] == policy.backend
    assert body["requests"] == {"200": 3, "422": 1, "total": 4}
    assert body["predictions"] == 3
    assert later["requests"]["total"] == 5  # the first /health counted
    assert later["uptime_s"] >= body["uptime_s"] > 0


def test_503_until_a_model_is_loaded(policy: LockedPolicy) -> None:
    app = create_app(None)
    with BackgroundServer(app) as srv, httpx.Client(base_url=srv.url, timeout=10.0) as c:
        for r in (c.get("/health"), c.post("/predict", json={"observation": OK_OBS})):
            assert r.status_code == 503
            assert "no model" in r.json()["detail"]
            assert r.headers["retry-after"] == "1"
        app.state.service.policy = policy
        assert c.get("/health").status_code == 200
        assert c.post("/predict", json={"observation": OK_OBS}).json()["action"] == \
            policy.predict(OK_OBS).name


# --------------------------------------------------------------------------- bad input

N26 = ",".join(["1"] * 25)  # 25 valid numbers; the cases add the 26th


def _obs(first: str) -> bytes:
    return ('{"observation": [' + first + "," + N26 + "]}").encode()


def _chunks(total: int) -> Iterator[bytes]:
    """A body streamed without Content-Length, ``total`` bytes."""
    yield b'{"observation": ['
    for _ in range(total // 4):
        yield b"1.0,"
    yield b"1]}"


BAD_REQUESTS: list[tuple[str, str, str, dict[str, str], Any, int, str]] = [
    # (case, method, path, headers, body, status, text in the detail)
    ("25 values", "POST", "/predict", JSON, json.dumps({"observation": [1] * 25}), 422,
     "got 25 values"),
    ("27 values", "POST", "/predict", JSON, json.dumps({"observation": [1] * 27}), 422,
     "got 27 values"),
    ("empty list", "POST", "/predict", JSON, '{"observation": []}', 422, "got 0 values"),
    ("null observation", "POST", "/predict", JSON, '{"observation": null}', 422, "got None"),
    ("number observation", "POST", "/predict", JSON, '{"observation": 5}', 422, "got int"),
    ("string observation", "POST", "/predict", JSON, '{"observation": "1,2,3"}', 422,
     "got str"),
    ("object observation", "POST", "/predict", JSON, '{"observation": {"a": 1}}', 422,
     "got dict"),
    ("numeric string", "POST", "/predict", JSON, _obs('"1.0"'), 422,
     "str is not a real number"),
    ("true", "POST", "/predict", JSON, _obs("true"), 422, "bool is not a real number"),
    ("false", "POST", "/predict", JSON, _obs("false"), 422, "bool is not a real number"),
    ("null element", "POST", "/predict", JSON, _obs("null"), 422, "None is not a real"),
    ("nested list", "POST", "/predict", JSON, _obs("[1]"), 422, "nested sequence"),
    ("object element", "POST", "/predict", JSON, _obs("{}"), 422, "dict is not a real"),
    ("NaN token", "POST", "/predict", JSON, _obs("NaN"), 422, "NaN is not allowed"),
    ("Infinity token", "POST", "/predict", JSON, _obs("Infinity"), 422,
     "infinity is not allowed"),
    ("-Infinity token", "POST", "/predict", JSON, _obs("-Infinity"), 422,
     "infinity is not allowed"),
    ("1e400 overflows", "POST", "/predict", JSON, _obs("1e400"), 422,
     "infinity is not allowed"),
    ("above range", "POST", "/predict", JSON, _obs("1000.5"), 422, "outside [-1000, 1000]"),
    ("below range", "POST", "/predict", JSON, _obs("-1001"), 422, "outside [-1000, 1000]"),
    ("huge integer", "POST", "/predict", JSON, _obs("1" + "0" * 40), 422, "outside"),
    ("bad element late", "POST", "/predict", JSON,
     json.dumps({"observation": [1] * 25 + ["x"]}), 422, "observation[25]"),
    ("extra field", "POST", "/predict", JSON,
     json.dumps({"observation": OK_OBS, "symbol": "GOOGL"}), 422, "unexpected field 'symbol'"),
    ("missing field", "POST", "/predict", JSON, "{}", 422, "'observation' is required"),
    ("misspelled field", "POST", "/predict", JSON, json.dumps({"observations": OK_OBS}), 422,
     "unexpected field 'observations'"),
    ("body is a list", "POST", "/predict", JSON, json.dumps(OK_OBS), 422,
     "must be a JSON object"),
    ("body is a string", "POST", "/predict", JSON, '"hello"', 422, "must be a JSON object"),
    ("body is null", "POST", "/predict", JSON, "null", 422, "must be a JSON object"),
    ("empty body", "POST", "/predict", JSON, "", 422, "body is empty"),
    ("truncated JSON", "POST", "/predict", JSON, '{"observation": [1, 2', 422,
     "malformed JSON"),
    ("trailing comma", "POST", "/predict", JSON, _obs("1,"), 422, "malformed JSON"),
    ("single quotes", "POST", "/predict", JSON, "{'observation': [1]}", 422, "malformed JSON"),
    ("not UTF-8", "POST", "/predict", JSON, b"\xff\xfe\x00", 400, "not UTF-8"),
    ("bad UTF-8 in a string", "POST", "/predict", JSON, b'{"observation": "\xff"}', 400,
     "not UTF-8"),
    ("deeply nested", "POST", "/predict", JSON, "[" * 4000 + "]" * 4000, 400,
     "nested too deeply"),
    ("too large", "POST", "/predict", JSON, b"1" * 20_000, 413, "over 16384 bytes"),
    ("too large, chunked", "POST", "/predict", JSON, "chunked", 413, "over 16384 bytes"),
    ("text/plain", "POST", "/predict", {"content-type": "text/plain"}, OK_BODY, 415,
     "Content-Type 'text/plain'"),
    ("no content type", "POST", "/predict", {}, OK_BODY, 415, "no Content-Type"),
    ("form encoded", "POST", "/predict",
     {"content-type": "application/x-www-form-urlencoded"}, "observation=1", 415,
     "application/json"),
    ("multipart", "POST", "/predict", {"content-type": "multipart/form-data; boundary=x"},
     "--x--", 415, "application/json"),
    ("xml", "POST", "/predict", {"content-type": "application/xml"}, "<obs/>", 415,
     "application/json"),
    ("GET /predict", "GET", "/predict", {}, None, 405, "use POST"),
    ("PUT /predict", "PUT", "/predict", JSON, OK_BODY, 405, "use POST"),
    ("DELETE /predict", "DELETE", "/predict", {}, None, 405, "use POST"),
    ("POST /health", "POST", "/health", JSON, OK_BODY, 405, "use GET"),
    ("unknown path", "GET", "/predictions", {}, None, 404, "POST /predict"),
    ("long path", "GET", "/" + "a" * 4000, {}, None, 404, "no route"),
]


@pytest.mark.parametrize(("method", "path", "headers", "body", "status", "text"),
                         [pytest.param(*case[1:], id=case[0]) for case in BAD_REQUESTS])
def test_bad_request_gets_a_clear_4xx(client: httpx.Client, method: str, path: str,
                                      headers: dict[str, str], body: Any, status: int,
                                      text: str) -> None:
    content = _chunks(20_000) if body == "chunked" else body
    r = client.request(method, path, headers=headers, content=content)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    assert text in r.json()["detail"]


def test_bad_requests_leave_the_service_healthy(client: httpx.Client,
                                                policy: LockedPolicy) -> None:
    assert len(BAD_REQUESTS) >= 40
    for _, method, path, headers, body, _, _ in BAD_REQUESTS:  # again, in one go
        content = _chunks(20_000) if body == "chunked" else body
        assert client.request(method, path, headers=headers, content=content).status_code < 500
    health = client.get("/health")
    assert health.status_code == 200
    assert "500" not in health.json()["requests"]
    r = client.post("/predict", json={"observation": OK_OBS})
    assert r.json()["action"] == policy.predict(OK_OBS).name


def test_charset_and_json_suffix_content_types_are_json(client: httpx.Client) -> None:
    for kind in ("application/json; charset=utf-8", "application/vnd.api+json"):
        assert client.post("/predict", content=OK_BODY,
                           headers={"content-type": kind}).status_code == 200


def test_unexpected_error_is_a_logged_json_500(caplog: pytest.LogCaptureFixture) -> None:
    with BackgroundServer(create_app(Answers(None))) as srv, \
            httpx.Client(base_url=srv.url, timeout=10.0) as c, \
            caplog.at_level(logging.ERROR, logger="tradinglib.service.error"):
        r = c.post("/predict", json={"observation": OK_OBS})
        assert c.get("/health").status_code == 200
    assert r.status_code == 500
    assert "internal error" in r.json()["detail"]
    assert "scripted failure" not in r.text  # no internals to the client
    assert any("scripted failure" in (rec.exc_text or "") or rec.exc_info
               for rec in caplog.records)


def test_schemathesis_finds_no_server_error(server: BackgroundServer) -> None:
    import requests
    import schemathesis
    from schemathesis.checks import not_a_server_error
    from schemathesis.generation import GenerationMode

    with httpx.Client(base_url=server.url, timeout=10.0) as c:
        schema = schemathesis.openapi.from_dict(c.get("/openapi.json").json())
    strategy = schema.as_strategy(GenerationMode.POSITIVE) | schema.as_strategy(
        GenerationMode.NEGATIVE)
    statuses: list[int] = []
    with requests.Session() as session:

        @settings(max_examples=150, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=strategy)
        def check(case: Any) -> None:
            response = case.call(base_url=server.url, session=session, timeout=10)
            case.validate_response(response, checks=[not_a_server_error])
            statuses.append(response.status_code)
            if response.status_code >= 400:
                assert response.json()["detail"]

        check()
    assert statuses and max(statuses) < 500
    assert {200, 422} <= set(statuses)  # both valid and invalid bodies were sent


# --------------------------------------------------------------------------- concurrency


@pytest.mark.slow
def test_32_concurrent_clients_get_the_serial_answers(server: BackgroundServer,
                                                      policy: LockedPolicy) -> None:
    obs = observations(64)
    expected = [policy.predict(o).name for o in obs]
    assert len(set(expected)) >= 2, "the model answers one action: swaps would not show"
    bodies = [json.dumps({"observation": o.tolist()}).encode() for o in obs]

    async def one_client(c: httpx.AsyncClient, k: int) -> list[tuple[int, str]]:
        got = []
        for i in range(200):
            j = (k * 7 + i) % len(obs)
            r = await c.post("/predict", content=bodies[j], headers=JSON)
            got.append((j, r.json()["action"] if r.status_code == 200 else r.text))
        return got

    async def run() -> list[list[tuple[int, str]]]:
        limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
        async with httpx.AsyncClient(base_url=server.url, timeout=30.0, limits=limits) as c:
            return await asyncio.wait_for(
                asyncio.gather(*(one_client(c, k) for k in range(32))), timeout=240)

    results = asyncio.run(run())
    answers = [a for per_client in results for a in per_client]
    assert len(answers) == 32 * 200
    wrong = [(j, a) for j, a in answers if a != expected[j]]
    assert wrong == []


# --------------------------------------------------------------------------- token, bind


@pytest.fixture(scope="module")
def guarded(policy: LockedPolicy) -> Iterator[BackgroundServer]:
    with BackgroundServer(create_app(policy, token=TOKEN)) as running:
        yield running


@pytest.mark.parametrize(("path", "method"), [("/predict", "POST"), ("/metrics", "GET"),
                                              ("/openapi.json", "GET"), ("/docs", "GET"),
                                              ("/nope", "GET")])
@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token-0123456789",
                                           f"Basic {TOKEN}", TOKEN, f"Bearer {TOKEN}x",
                                           "Bearer", "Bearer \u00e9\u00e9"])
def test_token_is_required_everywhere_but_health(guarded: BackgroundServer, path: str,
                                                 method: str, authorization: str | None
                                                 ) -> None:
    headers: dict[str, str | bytes] = {**JSON}
    if authorization is not None:
        headers["authorization"] = authorization.encode("latin-1")
    with httpx.Client(base_url=guarded.url, timeout=10.0) as c:
        r = c.request(method, path, headers=headers, content=OK_BODY if method == "POST"
                      else None)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert "AI_SERVICE_TOKEN" in r.json()["detail"]


def test_right_token_is_served_and_health_is_open(guarded: BackgroundServer) -> None:
    auth = {"authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=guarded.url, timeout=10.0) as c:
        assert c.get("/health").status_code == 200
        assert c.post("/predict", json={"observation": OK_OBS}, headers=auth
                      ).status_code == 200
        assert c.get("/metrics", headers=auth).status_code == 200
        assert c.get("/metrics", headers={"authorization": f"bearer {TOKEN}"}
                     ).status_code == 200


@pytest.mark.parametrize(("header", "ok"), [
    (f"Bearer {TOKEN}", True), (f"bearer {TOKEN}", True), (f"Bearer  {TOKEN} ", True),
    (None, False), ("", False), (f"Basic {TOKEN}", False), (f"Bearer {TOKEN[:-1]}", False),
    ("Bearer ünïcode", False)])
def test_token_matches(header: str | None, ok: bool) -> None:
    assert token_matches(header, TOKEN) is ok


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost",
                                  "LOCALHOST"])
def test_loopback_binds_without_token(host: str) -> None:
    check_bind(host, None)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "10.0.0.1",
                                  "example.com", "my-host"])
def test_other_addresses_need_a_token(host: str) -> None:
    with pytest.raises(ConfigError, match="AI_SERVICE_TOKEN") as info:
        check_bind(host, None)
    assert "reachable from other machines" in str(info.value)
    with pytest.raises(ConfigError):
        check_bind(host, "")
    check_bind(host, TOKEN)


# --------------------------------------------------------------------------- metrics, logs


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_count_requests_latency_and_fallbacks(policy: LockedPolicy) -> None:
    fallback = Decision(Action.HOLD, "timeout: model busy for over 1s", 1.0)
    with BackgroundServer(create_app(Answers(fallback))) as held, \
            BackgroundServer(create_app(policy)) as srv, \
            httpx.Client(timeout=10.0) as c:
        for _ in range(3):
            c.post(f"{srv.url}/predict", json={"observation": OK_OBS})
        c.post(f"{srv.url}/predict", json={"observation": [1]})
        c.get(f"{srv.url}/nope/{time.time()}")
        r = c.post(f"{held.url}/predict", json={"observation": OK_OBS})
        assert (r.json()["action"], r.json()["reason"]) == ("HOLD", fallback.reason)
        text = c.get(f"{srv.url}/metrics")
        held_text = c.get(f"{held.url}/metrics").text
    assert text.headers["content-type"].startswith("text/plain")
    got = _samples(text.text)
    req = "tradinglib_service_requests_total"
    assert got[(req, (("path", "/predict"), ("status", "200")))] == 3
    assert got[(req, (("path", "/predict"), ("status", "422")))] == 1
    assert got[(req, (("path", "other"), ("status", "404")))] == 1
    assert got[("tradinglib_service_request_seconds_count", (("path", "/predict"),))] == 4
    assert got[("tradinglib_service_predictions_total", ())] == 3
    assert not any(name.startswith("tradinglib_service_hold_fallbacks") for name, _ in got)
    held_got = _samples(held_text)
    assert held_got[("tradinglib_service_hold_fallbacks_total", (("kind", "timeout"),))] == 1


def test_access_log_records_are_json_lines(client: httpx.Client,
                                           caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="tradinglib.service.access"):
        client.post("/predict", json={"observation": [1]})
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not any(
                r.name == "tradinglib.service.access" for r in caplog.records):
            time.sleep(0.01)  # the record is written after the answer is sent
    records = [r for r in caplog.records if r.name == "tradinglib.service.access"]
    assert records, "no access log record within 5 s"
    record = records[0]
    line = json.loads(JsonLinesFormatter().format(record))
    assert (line["method"], line["path"], line["status"]) == ("POST", "/predict", 422)
    assert line["latency_ms"] > 0 and line["client"].startswith("127.0.0.1:")


# --------------------------------------------------------------------------- serve


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """serve() configures JSON logging for uvicorn and tradinglib.service; undo it."""
    names = ("uvicorn", "uvicorn.error", "tradinglib.service")
    saved = {n: (logging.getLogger(n).handlers[:], logging.getLogger(n).level,
                 logging.getLogger(n).propagate) for n in names}
    yield
    for name, (handlers, level, propagate) in saved.items():
        logger = logging.getLogger(name)
        for handler in logger.handlers:
            if handler not in handlers:
                handler.close()
        logger.handlers[:], logger.level, logger.propagate = handlers, level, propagate


def test_serve_refuses_a_busy_port_and_bad_settings(tiny_model: tuple[Path, ModelCard],
                                                    restore_logging: None) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{port}"):
            serve(tiny_model[0], Settings(), port=port)
    with pytest.raises(ConfigError, match="AI_SERVICE_TOKEN"):
        serve(tiny_model[0], Settings(ai_service_host="0.0.0.0"))
    with pytest.raises(ConfigError, match="AI_SERVICE_WORKERS=2"):
        serve(tiny_model[0], Settings(ai_service_workers=2))
    with pytest.raises(ConfigError, match="not a TCP port"):
        serve(tiny_model[0], Settings(), port=70000)
    with pytest.raises(ModelError, match="no model file"):
        serve(tiny_model[0].with_name("missing.zip"), Settings())


def test_serve_stops_when_the_model_does_not_load(tiny_model: tuple[Path, ModelCard],
                                                  tmp_path: Path,
                                                  restore_logging: None) -> None:
    path, _ = tiny_model
    changed = tmp_path / path.name
    changed.write_bytes(path.read_bytes() + b"tampered")
    card = path.with_suffix("").with_suffix(".card.json")
    (tmp_path / card.name).write_bytes(card.read_bytes())
    started = time.monotonic()
    with pytest.raises(ModelError, match="the file changed after training"):
        serve(changed, Settings(), port=0)
    assert time.monotonic() - started < 60


def test_bind_socket_port_zero_gives_a_free_port() -> None:
    with bind_socket("127.0.0.1", 0) as a, bind_socket("127.0.0.1", 0) as b:
        assert a.getsockname()[1] != b.getsockname()[1] > 0


@pytest.mark.slow
def test_tradinglib_serve_end_to_end(tiny_model: tuple[Path, ModelCard],
                                     policy: LockedPolicy, tmp_path: Path) -> None:
    env = {**os.environ, "AI_SERVICE_TOKEN": TOKEN}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tradinglib.cli", "serve", "--model", str(tiny_model[0]),
         "--port", "0"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(x) for x in proc.stderr or ()],
                              daemon=True)
    reader.start()
    seen: list[str] = []
    try:
        url = ""
        deadline = time.monotonic() + 60
        while not url and time.monotonic() < deadline:
            try:
                seen.append(lines.get(timeout=1))
            except queue.Empty:
                continue
            url = json.loads(seen[-1]).get("url", "")
        assert url, seen
        auth = {"authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=url, timeout=10.0) as c:
            while (health := c.get("/health")).status_code == 503:
                assert time.monotonic() < deadline, "the model did not load within 60 s"
                assert "loading model" in health.json()["detail"]
                time.sleep(0.05)
            assert health.json()["model_sha256"] == tiny_model[1].sha256
            for obs in observations(8):
                r = c.post("/predict", json={"observation": obs.tolist()}, headers=auth)
                assert r.json()["action"] == policy.predict(obs).name
            assert c.post("/predict", json={"observation": OK_OBS}).status_code == 401
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        reader.join(timeout=10)
        if proc.stderr is not None:
            proc.stderr.close()
    while not lines.empty():
        seen.append(lines.get())
    records = [json.loads(line) for line in seen]  # every log line is JSON
    assert TOKEN not in "".join(seen)
    access = [r for r in records if r["logger"] == "tradinglib.service.access"]
    assert [r["status"] for r in access if r["path"] == "/predict"] == [200] * 8 + [401]
    assert any(r["message"] == "serving model tiny.zip" for r in records)
