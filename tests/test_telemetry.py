"""Session metrics served by a real prometheus_client HTTP server on 127.0.0.1, scraped
over HTTP and parsed with prometheus_client's own parser."""

from __future__ import annotations

import math
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from tradinglib.exceptions import InputError
from tradinglib.telemetry import SessionMetrics, serve_metrics
from tradinglib.types import Action

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Samples:
    """Every sample at ``url``: (name, sorted labels) -> value."""
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.status == 200
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.fixture
def metrics() -> Iterator[tuple[SessionMetrics, str]]:
    m = SessionMetrics()
    with serve_metrics(m) as server:
        yield m, server.url


def test_account_gauges_and_counters(metrics: tuple[SessionMetrics, str]) -> None:
    m, url = metrics
    m.set_account(daily_pnl=-123.5, position=15, cash=98_765.25, equity=99_876.5)
    for status in ("submitted", "submitted", "filled"):
        m.record_order(status)
    m.record_fill()
    m.record_rejection("POSITION_VALUE")
    m.record_rejection("POSITION_VALUE")
    m.record_rejection("DAILY_LOSS")
    m.record_decision(0.0002, Action.BUY)
    m.record_decision(0.5, Action.HOLD, fallback_reason="inference timeout")
    got = scrape(url)
    assert got[("ai_paper_daily_pnl", ())] == -123.5
    assert got[("ai_paper_position", ())] == 15
    assert got[("ai_paper_cash", ())] == 98_765.25
    assert got[("ai_paper_equity", ())] == 99_876.5
    assert got[("ai_paper_orders_total", (("status", "submitted"),))] == 2
    assert got[("ai_paper_orders_total", (("status", "filled"),))] == 1
    assert got[("ai_paper_fills_total", ())] == 1
    assert got[("ai_paper_risk_rejections_total", (("reason", "POSITION_VALUE"),))] == 2
    assert got[("ai_paper_risk_rejections_total", (("reason", "DAILY_LOSS"),))] == 1
    assert got[("ai_paper_hold_fallbacks_total", (("reason", "inference timeout"),))] == 1
    assert got[("ai_paper_decisions_total", (("action", "BUY"),))] == 1
    assert got[("ai_paper_decisions_total", (("action", "HOLD"),))] == 1
    m.set_account(daily_pnl=40.0, position=0, cash=100_040.0, equity=100_040.0)
    assert scrape(url)[("ai_paper_daily_pnl", ())] == 40.0  # each scrape is current


def test_latency_histogram_buckets(metrics: tuple[SessionMetrics, str]) -> None:
    m, url = metrics
    for latency in (0.00005, 0.0003, 0.002, 0.002, 0.8, 2.0):  # 50 us .. 2 s
        m.record_decision(latency, Action.HOLD)
    got = scrape(url)

    def bucket(le: str) -> float:
        return got[("ai_paper_decision_latency_seconds_bucket", (("le", le),))]

    assert (bucket("0.0001"), bucket("0.0005"), bucket("0.0025"), bucket("0.5"),
            bucket("1.0"), bucket("+Inf")) == (1, 2, 4, 4, 5, 6)
    assert got[("ai_paper_decision_latency_seconds_count", ())] == 6
    assert math.isclose(got[("ai_paper_decision_latency_seconds_sum", ())], 2.80435)


def test_connection_state_and_disconnects(metrics: tuple[SessionMetrics, str]) -> None:
    m, url = metrics
    m.set_connected(False)  # never connected yet: not a disconnect
    m.set_connected(True)
    assert scrape(url)[("ai_paper_connected", ())] == 1
    for state in (False, False, True, False):
        m.set_connected(state)
    got = scrape(url)
    assert got[("ai_paper_connected", ())] == 0
    assert got[("ai_paper_disconnects_total", ())] == 2


def test_each_session_has_its_own_registry() -> None:
    first, second = SessionMetrics(), SessionMetrics()
    first.record_fill()
    assert first.registry.get_sample_value("ai_paper_fills_total") == 1
    assert second.registry.get_sample_value("ai_paper_fills_total") == 0
    assert REGISTRY.get_sample_value("ai_paper_fills_total") is None  # global untouched
    shared = CollectorRegistry()
    assert SessionMetrics(shared).registry is shared


def test_close_stops_serving_and_frees_the_port() -> None:
    m = SessionMetrics()
    server = serve_metrics(m)
    url, port = server.url, server.port
    assert url == f"http://127.0.0.1:{port}/metrics" and port > 0
    assert ("ai_paper_cash", ()) in scrape(url)
    server.close()
    server.close()  # twice is fine
    with pytest.raises(urllib.error.URLError):
        scrape(url)
    with serve_metrics(m, port=port) as again:  # the port is free again
        assert again.port == port and ("ai_paper_cash", ()) in scrape(again.url)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "::", "example.com"])
def test_refuses_a_non_loopback_host(host: str) -> None:
    with pytest.raises(InputError, match="loopback interface only"):
        serve_metrics(SessionMetrics(), host=host)


def test_a_port_in_use_says_what_to_do() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(InputError, match=f"127.0.0.1:{port}.*choose another "
                                             "metrics_port, or 0"):
            serve_metrics(SessionMetrics(), port=port)


@pytest.mark.parametrize("port", [-1, 65536, True, "9100"])
def test_bad_port(port: Any) -> None:
    with pytest.raises(InputError, match=r"0\.\.65535"):
        serve_metrics(SessionMetrics(), port=port)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m: m.record_decision(float("nan"), Action.HOLD), "latency_s must be a finite"),
        (lambda m: m.record_decision(-0.001, Action.HOLD), "latency_s must be >= 0"),
        (lambda m: m.record_decision(0.001, 7), "action must be an Action"),
        (lambda m: m.record_decision(0.001, Action.HOLD, ""), "fallback_reason"),
        (lambda m: m.record_order(""), "status must be non-empty"),
        (lambda m: m.record_rejection(None), "reason must be non-empty"),
        (lambda m: m.set_account(float("inf"), 0, 0, 0), "daily_pnl must be a finite"),
        (lambda m: m.set_account(0, 0, "100", 0), "cash must be a finite"),
        (lambda m: m.set_connected(1), "connected must be True or False"),
    ],
)
def test_bad_values_are_input_errors(call: Any, message: str) -> None:
    m = SessionMetrics()
    with pytest.raises(InputError, match=message):
        call(m)
    assert m.registry.get_sample_value("ai_paper_decision_latency_seconds_count") == 0


@pytest.mark.parametrize(("host", "loopback"), [
    ("localhost", True), ("LOCALHOST", True), ("127.0.0.1", True), ("127.1.2.3", True),
    ("::1", True), ("[::1]", True), ("0.0.0.0", False), ("::", False),
    ("192.168.1.10", False), ("example.com", False), ("", False)])
def test_one_loopback_rule_for_service_gateway_and_metrics(host: str, loopback: bool) -> None:
    from tradinglib.gateway.server import is_loopback as gateway_rule
    from tradinglib.loopback import is_loopback
    from tradinglib.service import is_loopback as service_rule

    assert is_loopback(host) is loopback
    assert gateway_rule is service_rule is is_loopback
