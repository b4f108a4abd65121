"""Prometheus metrics of the inference service, in a registry of its own.

Each app gets its own :class:`prometheus_client.CollectorRegistry`, so two apps in one
process (tests, the benchmark) never mix their counts and the global registry is left
alone.

Metrics: ``tradinglib_service_requests_total{path, status}``,
``tradinglib_service_request_seconds{path}`` (histogram of the whole request, seconds),
``tradinglib_service_predictions_total`` and ``tradinglib_service_hold_fallbacks_total{kind}``.
"""

from __future__ import annotations

import threading
from collections import Counter as Tally

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

CONTENT_TYPE = CONTENT_TYPE_LATEST
"""Content type of the Prometheus text format."""

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1,
                   0.25, 0.5, 1.0, 2.5)
"""Histogram bucket bounds, seconds: fine below 10 ms, where the service should be."""


class ServiceMetrics:
    """Request counts, request latency and HOLD fallbacks; thread-safe."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._requests = Counter("tradinglib_service_requests", "HTTP requests by path and "
                                 "status code", ["path", "status"], registry=self.registry)
        self._latency = Histogram("tradinglib_service_request_seconds", "Request duration "
                                  "(seconds) by path", ["path"], buckets=LATENCY_BUCKETS,
                                  registry=self.registry)
        self._predictions = Counter("tradinglib_service_predictions", "Answers of /predict, "
                                    "HOLD fallbacks included", registry=self.registry)
        self._fallbacks = Counter("tradinglib_service_hold_fallbacks", "HOLD answers given "
                                  "because the model could not answer, by kind", ["kind"],
                                  registry=self.registry)
        self._lock = threading.Lock()
        self._by_status: Tally[str] = Tally()
        self._prediction_count = 0
        self._fallback_count = 0

    def request(self, path: str, status: int, seconds: float) -> None:
        """Count one finished request of ``path`` (a route, or "other") taking ``seconds``."""
        code = str(status)
        self._requests.labels(path, code).inc()
        self._latency.labels(path).observe(seconds)
        with self._lock:
            self._by_status[code] += 1

    def prediction(self, fallback_kind: str | None) -> None:
        """Count one answer of /predict; ``fallback_kind`` names why HOLD was used, if so."""
        self._predictions.inc()
        if fallback_kind is not None:
            self._fallbacks.labels(fallback_kind).inc()
        with self._lock:
            self._prediction_count += 1
            self._fallback_count += fallback_kind is not None

    def counts(self) -> tuple[dict[str, int], int, int]:
        """(requests by status code with a ``total``, predictions, HOLD fallbacks) so far."""
        with self._lock:
            by_status = dict(sorted(self._by_status.items()))
            by_status["total"] = sum(self._by_status.values())
            return by_status, self._prediction_count, self._fallback_count

    def render(self) -> bytes:
        """The metrics in the Prometheus text format (:data:`CONTENT_TYPE`)."""
        return generate_latest(self.registry)
