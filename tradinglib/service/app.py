"""The FastAPI app of the inference service: ``POST /predict``, ``GET /health``,
``GET /metrics``.

:func:`create_app` wraps a policy (a :class:`~tradinglib.inference.LockedPolicy`, or
anything with its ``decide``/``sha256``/``backend``) that may arrive later: until
:attr:`ServiceState.policy` is set, ``/predict`` and ``/health`` answer 503.

The handlers are ``async``: inference runs on the event loop's thread, one request at a
time. The policy's own lock still guards the model (another thread may share the
policy), and the numpy forward pass takes microseconds, so nothing waits on a thread
pool.
"""

from __future__ import annotations

import time
from typing import Protocol, cast

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response

from tradinglib.features import FEATURE_VERSION
from tradinglib.service.access import AccessLog
from tradinglib.service.errors import UnexpectedErrors, install_error_handlers
from tradinglib.service.guard import MAX_BODY_BYTES, RequestGuard
from tradinglib.service.schemas import (
    ActionName,
    ErrorResponse,
    HealthResponse,
    PredictRequest,
    PredictResponse,
)
from tradinglib.service.telemetry import CONTENT_TYPE, ServiceMetrics
from tradinglib.types import Decision


class ServedPolicy(Protocol):
    """What the service needs of a policy (:class:`~tradinglib.inference.LockedPolicy`)."""

    @property
    def sha256(self) -> str:
        """sha256 of the model artifact."""
        ...

    @property
    def backend(self) -> str:
        """How the model computes (``numpy``, ``sb3``, ...)."""
        ...

    def decide(self, obs: object) -> Decision:
        """The action for ``obs``; HOLD with the reason when the model cannot answer."""
        ...


class ServiceState:
    """The policy the app serves (None until loaded), its status text and the metrics."""

    def __init__(self, policy: ServedPolicy | None, metrics: ServiceMetrics) -> None:
        self.policy = policy
        """The served policy; None until one is set (by any thread: one assignment)."""
        self.waiting = "no model loaded"
        """What the 503 answer says while :attr:`policy` is None."""
        self.metrics = metrics
        self.started = time.monotonic()

    def unavailable(self) -> JSONResponse:
        """The 503 answer while no model is loaded."""
        return JSONResponse({"detail": f"{self.waiting}: the service has no model to answer "
                                       "with yet; retry shortly, or see its log"},
                            status_code=503, headers={"Retry-After": "1"})


_ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorResponse, "description": text} for code, text in [
        (401, "missing or wrong API token"), (413, "body too large"),
        (415, "body is not JSON"), (422, "invalid observation or body"),
        (503, "no model loaded yet")]}


def create_app(policy: ServedPolicy | None = None, *, token: str | None = None,
               max_body_bytes: int = MAX_BODY_BYTES) -> FastAPI:
    """The service app answering with ``policy`` (None: 503 until one is set on
    ``app.state.service.policy``).

    ``token``: required as ``Authorization: Bearer <token>`` on every path but /health;
    None requires nothing. ``max_body_bytes``: larger bodies get 413. The app's
    :class:`ServiceState` (its policy, and metrics in a registry of its own) is
    ``app.state.service``.
    """
    state = ServiceState(policy, ServiceMetrics())
    app = FastAPI(title="tradinglib inference service", version=FEATURE_VERSION,
                  description="Actions of a trading model for 26-feature observations.")
    app.state.service = state
    install_error_handlers(app)

    @app.post("/predict", response_model=PredictResponse, responses=_ERRORS)
    async def predict(request: PredictRequest) -> PredictResponse | JSONResponse:
        """The model's action for one observation (HOLD, with the reason, if it cannot
        answer in time)."""
        served = state.policy
        if served is None:
            return state.unavailable()
        decision = served.decide(request.observation)
        state.metrics.prediction(decision.reason.split(":", 1)[0] if decision.is_fallback
                                 else None)
        return PredictResponse(action=cast(ActionName, decision.action.name),
                               action_id=int(decision.action), model_sha256=served.sha256,
                               latency_ms=decision.latency * 1000.0, reason=decision.reason)

    @app.get("/health", response_model=HealthResponse, responses={503: _ERRORS[503]})
    async def health() -> HealthResponse | JSONResponse:
        """Model, uptime (seconds) and request counts; 503 while no model is loaded."""
        served = state.policy
        if served is None:
            return state.unavailable()
        requests, predictions, fallbacks = state.metrics.counts()
        return HealthResponse(status="ok", model_sha256=served.sha256,
                              feature_version=FEATURE_VERSION, backend=served.backend,
                              uptime_s=round(time.monotonic() - state.started, 3),
                              requests=requests, predictions=predictions,
                              hold_fallbacks=fallbacks)

    @app.get("/metrics", response_class=Response,
             responses={200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus text"}})
    async def prometheus() -> Response:
        """Prometheus metrics: requests by path and status, latency histogram, HOLD
        fallbacks."""
        return Response(state.metrics.render(), media_type=CONTENT_TYPE)

    routes = frozenset({"/predict", "/health", "/metrics", "/docs", "/openapi.json"})
    app.add_middleware(RequestGuard, token=token, max_body_bytes=max_body_bytes)
    app.add_middleware(UnexpectedErrors)
    app.add_middleware(AccessLog, metrics=state.metrics, routes=routes)  # outermost
    return app
