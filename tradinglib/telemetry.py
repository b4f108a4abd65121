"""Prometheus metrics of a paper session, served on the loopback interface.

:class:`SessionMetrics` holds one session's figures in its own
:class:`~prometheus_client.CollectorRegistry` (never the process-wide one, so two
sessions or tests never share counts), named with the seed's ``ai_paper_`` prefix:

========================================  =========  ====================================
name                                      type       meaning
========================================  =========  ====================================
``ai_paper_daily_pnl``                    gauge      P&L since the day started, USD
``ai_paper_position``                     gauge      position, shares (negative: short)
``ai_paper_cash``                         gauge      cash, USD
``ai_paper_equity``                       gauge      cash + position value, USD
``ai_paper_decisions_total{action}``      counter    decisions by action (HOLD, BUY, SELL)
``ai_paper_orders_total{status}``         counter    orders by status (submitted, filled..)
``ai_paper_fills_total``                  counter    fills booked
``ai_paper_risk_rejections_total{reason}``  counter  risk verdicts rejected, by reason code
``ai_paper_hold_fallbacks_total{reason}``   counter  HOLD used because the model could not
                                                     answer, by reason
``ai_paper_decision_latency_seconds``     histogram  one cycle (bars read .. order sent),
                                                     0.1 ms .. 1 s buckets
``ai_paper_connected``                    gauge      1 while the broker is connected, else 0
``ai_paper_disconnects_total``            counter    connected -> disconnected transitions
========================================  =========  ====================================

:func:`serve_metrics` exposes them at ``http://127.0.0.1:PORT/metrics`` for Prometheus.
"""

from __future__ import annotations

import math
import threading
from types import TracebackType
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from tradinglib.exceptions import InputError
from tradinglib.loopback import is_loopback
from tradinglib.types import Action

__all__ = ["LATENCY_BUCKETS", "MetricsServer", "SessionMetrics", "serve_metrics"]

LATENCY_BUCKETS: Final = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                          0.1, 0.25, 0.5, 1.0)
"""Upper bounds of the decision latency histogram, seconds (``+Inf`` is added)."""
_JOIN_TIMEOUT_S: Final = 5.0


def _finite(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InputError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _label(name: str, value: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{name} must be non-empty text (a status or reason code), "
                         f"got {value!r}")
    return str(value)


class SessionMetrics:
    """One paper session's Prometheus metrics (see the module table).

    Args:
        registry: where the metrics are registered; None creates a new registry of their
            own (the process-wide default registry is never used).

    The methods are thread-safe. Their errors: :class:`InputError` for a non-finite
    number, a negative latency, an unknown action or an empty status/reason.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        reg = self.registry
        self.daily_pnl = Gauge("ai_paper_daily_pnl", "Profit and loss since the trading day "
                               "started, USD", registry=reg)
        self.position = Gauge("ai_paper_position", "Position, shares (negative: short)",
                              registry=reg)
        self.cash = Gauge("ai_paper_cash", "Cash, USD", registry=reg)
        self.equity = Gauge("ai_paper_equity", "Cash plus position value, USD", registry=reg)
        self.decisions = Counter("ai_paper_decisions", "Decisions by action",
                                 ["action"], registry=reg)
        self.orders = Counter("ai_paper_orders", "Orders by status", ["status"], registry=reg)
        self.fills = Counter("ai_paper_fills", "Fills booked", registry=reg)
        self.risk_rejections = Counter("ai_paper_risk_rejections",
                                       "Order intents rejected by the risk guard, by reason",
                                       ["reason"], registry=reg)
        self.hold_fallbacks = Counter("ai_paper_hold_fallbacks", "HOLD used because the "
                                      "model could not answer, by reason", ["reason"],
                                      registry=reg)
        self.decision_latency = Histogram("ai_paper_decision_latency_seconds",
                                          "One decision cycle (bars read, features, "
                                          "inference, risk check, order sent), seconds",
                                          buckets=LATENCY_BUCKETS, registry=reg)
        self.connected = Gauge("ai_paper_connected", "1 while the broker is connected, "
                               "else 0", registry=reg)
        self.disconnects = Counter("ai_paper_disconnects", "Broker connection losses",
                                   registry=reg)
        self._lock = threading.Lock()
        self._is_connected: bool | None = None

    def record_decision(self, latency_s: float, action: Action,
                        fallback_reason: str | None = None) -> None:
        """Count one decision: its latency (seconds, >= 0), its action and, for a HOLD
        fallback, why the model could not answer."""
        latency = _finite("latency_s", latency_s)
        if latency < 0:
            raise InputError(f"latency_s must be >= 0 seconds, got {latency_s!r}")
        try:
            name = Action(action).name
        except ValueError:
            raise InputError(f"action must be an Action (HOLD, BUY, SELL), got {action!r}"
                             ) from None
        reason = None if fallback_reason is None else _label("fallback_reason",
                                                             fallback_reason)
        self.decision_latency.observe(latency)
        self.decisions.labels(action=name).inc()
        if reason is not None:
            self.hold_fallbacks.labels(reason=reason).inc()

    def record_order(self, status: str) -> None:
        """Count one order in ``status`` (e.g. ``submitted``, ``filled``, ``cancelled``)."""
        self.orders.labels(status=_label("status", status)).inc()

    def record_fill(self) -> None:
        """Count one booked fill."""
        self.fills.inc()

    def record_rejection(self, reason: str) -> None:
        """Count one risk rejection by its reason code (e.g. ``POSITION_VALUE``)."""
        self.risk_rejections.labels(reason=_label("reason", reason)).inc()

    def set_account(self, daily_pnl: float, position: float, cash: float,
                    equity: float) -> None:
        """Set the account gauges: P&L of the day (USD), position (shares), cash and equity
        (USD)."""
        values = [_finite(n, v) for n, v in (("daily_pnl", daily_pnl), ("position", position),
                                             ("cash", cash), ("equity", equity))]
        for gauge, value in zip((self.daily_pnl, self.position, self.cash, self.equity),
                                values, strict=True):
            gauge.set(value)

    def set_connected(self, connected: bool) -> None:
        """Set the connection gauge; a change from connected to not counts a disconnect."""
        if not isinstance(connected, bool):
            raise InputError(f"connected must be True or False, got {connected!r}")
        with self._lock:
            if self._is_connected and not connected:
                self.disconnects.inc()
            self._is_connected = connected
            self.connected.set(1 if connected else 0)


def _check_loopback(host: str) -> None:
    """InputError unless ``host`` is a loopback address or ``localhost``."""
    if not is_loopback(host):
        raise InputError(f"metrics are served on the loopback interface only, not {host!r}: "
                         "another address would publish account figures to the network "
                         "(the seed binds to 127.0.0.1 for this reason); use 127.0.0.1 or "
                         "::1 and let a local Prometheus scrape it")


class MetricsServer:
    """A running metrics HTTP server (from :func:`serve_metrics`); a context manager.

    Attributes:
        host, port: where it listens (``port`` is the real one when 0 was asked).
    """

    def __init__(self, metrics: SessionMetrics, host: str, port: int) -> None:
        try:
            self._server, self._thread = start_http_server(port, addr=host,
                                                           registry=metrics.registry)
        except OSError as exc:
            raise InputError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}; "
                             "choose another metrics_port, or 0 for a free one") from None
        self.host = host
        self.port: int = self._server.server_address[1]
        self._closed = False

    @property
    def url(self) -> str:
        """The scrape address, ``http://127.0.0.1:PORT/metrics``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving and release the port (waits at most 5 s); again is a no-op."""
        if self._closed:
            return
        self._closed = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=_JOIN_TIMEOUT_S)

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


def serve_metrics(metrics: SessionMetrics, host: str = "127.0.0.1",
                  port: int = 0) -> MetricsServer:
    """Serve ``metrics`` over HTTP at ``http://host:port/metrics`` in a daemon thread.

    Args:
        metrics: what to serve.
        host: a loopback address (``127.0.0.1``, ``::1`` or ``localhost``).
        port: TCP port; 0 picks a free one (see :attr:`MetricsServer.port`).

    Raises:
        InputError: a non-loopback host, a port outside 0..65535, or a port in use.
    """
    if not isinstance(host, str):
        raise InputError(f"host must be text such as '127.0.0.1', got {host!r}")
    _check_loopback(host)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise InputError(f"port must be an integer 0..65535 (0: a free port), got {port!r}")
    return MetricsServer(metrics, host, port)
