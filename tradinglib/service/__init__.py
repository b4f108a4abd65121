"""The HTTP inference service (``tradinglib serve``): a FastAPI app answering the model's
action for an observation, with validation, a lock, health, metrics and JSON logs.

- :mod:`~tradinglib.service.app`: :func:`create_app`, the routes and :class:`ServiceState`
- :mod:`~tradinglib.service.schemas`: request and response bodies (pydantic)
- :mod:`~tradinglib.service.security`: the bind-address rule and the token check
- :mod:`~tradinglib.service.guard`: 401/413/415 before the app
- :mod:`~tradinglib.service.access`: access log and request metrics
- :mod:`~tradinglib.service.errors`: JSON error answers
- :mod:`~tradinglib.service.telemetry`: :class:`ServiceMetrics` (Prometheus)
- :mod:`~tradinglib.service.server`: :func:`serve` and :class:`BackgroundServer` (uvicorn)
"""

from tradinglib.loopback import is_loopback
from tradinglib.service.app import ServedPolicy, ServiceState, create_app
from tradinglib.service.guard import MAX_BODY_BYTES
from tradinglib.service.schemas import HealthResponse, PredictRequest, PredictResponse
from tradinglib.service.security import check_bind
from tradinglib.service.server import BackgroundServer, bind_socket, serve
from tradinglib.service.telemetry import ServiceMetrics

__all__ = [
    "MAX_BODY_BYTES",
    "BackgroundServer",
    "HealthResponse",
    "PredictRequest",
    "PredictResponse",
    "ServedPolicy",
    "ServiceMetrics",
    "ServiceState",
    "bind_socket",
    "check_bind",
    "create_app",
    "is_loopback",
    "serve",
]
