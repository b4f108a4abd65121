"""ASGI middleware that times each request, counts it in :class:`ServiceMetrics` and
writes one access log record (JSON lines where :func:`server.serve` configures logging).

The record of logger ``tradinglib.service.access`` carries ``method``, ``path``,
``status``, ``latency_ms`` and ``client`` as extra fields. Paths that are not routes of
the app are counted under ``"other"``, so random URLs cannot grow the metrics.
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tradinglib.service.telemetry import ServiceMetrics

log = logging.getLogger("tradinglib.service.access")


class AccessLog:
    """Time, count and log every HTTP request; ``routes`` are the paths counted by name."""

    def __init__(self, app: ASGIApp, *, metrics: ServiceMetrics,
                 routes: frozenset[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # unless the app starts a response

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            seconds = time.perf_counter() - started
            path = scope["path"]
            self.metrics.request(path if path in self.routes else "other", status, seconds)
            if log.isEnabledFor(logging.INFO):
                client = scope.get("client")
                log.info("%s %s %d", scope["method"], path, status, extra={
                    "method": scope["method"], "path": path, "status": status,
                    "latency_ms": round(seconds * 1000.0, 3),
                    "client": f"{client[0]}:{client[1]}" if client else None})
