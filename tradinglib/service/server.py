"""Running the service with uvicorn: :func:`serve` (the ``tradinglib serve`` command) and
:class:`BackgroundServer` (an app on a loopback port in a thread, for tests and notebooks).

Both listen on a socket bound here first (:func:`bind_socket`), so a port in use is a
clear :class:`~tradinglib.exceptions.ConfigError` and port 0 picks a free port whose
number is known before the server starts.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import uvicorn
from fastapi import FastAPI

from tradinglib.config import Settings
from tradinglib.exceptions import ConfigError, ModelError, RetryableError, TradingLibError
from tradinglib.modelcard import read_card
from tradinglib.service.app import create_app
from tradinglib.service.security import check_bind

log = logging.getLogger("tradinglib.service")

WORKERS_NOTE = (
    "the service runs one worker process: the model answers in microseconds, so one "
    "event loop is not the bottleneck, while each extra process would load its own model "
    "copy and keep its own /health and /metrics counts (a scraper would see them jump "
    "between processes); run more containers behind a balancer to scale out")


BACKLOG = 2048
"""Connections the kernel queues before the server accepts them (uvicorn's default)."""


class _NoColor(logging.Filter):
    """Drop uvicorn's ``color_message`` extra (ANSI codes) from JSON log records."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.__dict__.pop("color_message", None)
        return True


def json_log_config(level: str = "INFO") -> dict[str, Any]:
    """A :func:`logging.config.dictConfig` mapping: the records of uvicorn and
    ``tradinglib.service`` as JSON lines (:class:`~tradinglib.logs.JsonLinesFormatter`)
    on stderr."""
    handler = {"handlers": ["stderr"], "level": level, "propagate": False}
    return {
        "version": 1, "disable_existing_loggers": False,
        "formatters": {"json": {"()": "tradinglib.logs.JsonLinesFormatter"}},
        "filters": {"no_color": {"()": _NoColor}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json",
                                "filters": ["no_color"], "stream": "ext://sys.stderr"}},
        "loggers": {"uvicorn": handler, "tradinglib.service": handler},
    }


def bind_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host``:``port`` (0: a free port) and listening, so that
    clients may connect (and wait) before the server accepts.

    Raises:
        ConfigError: the address cannot be bound (in use, not an address of this host).
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc}; check AI_SERVICE_HOST"
                          ) from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; stop what "
                          "uses that port or choose another (AI_SERVICE_PORT, --port)"
                          ) from None
    return sock


def make_server(app: FastAPI, *, log_config: dict[str, Any] | None = None,
                graceful_seconds: int = 5) -> uvicorn.Server:
    """A uvicorn server for ``app`` (h11, one worker, no access log of uvicorn's own:
    :class:`~tradinglib.service.access.AccessLog` writes it). ``log_config`` None leaves
    logging as it is. Open connections get ``graceful_seconds`` to finish at shutdown."""
    config = uvicorn.Config(app, log_config=log_config, access_log=False, workers=1,
                            http="h11", lifespan="on", server_header=False,
                            timeout_graceful_shutdown=graceful_seconds)
    return uvicorn.Server(config)


def serve(model: str | Path, settings: Settings, *, host: str | None = None,
          port: int | None = None) -> None:
    """Serve ``model`` until SIGINT or SIGTERM (then return): ``tradinglib serve``.

    ``host``/``port`` default to AI_SERVICE_HOST/AI_SERVICE_PORT (port 0: a free port,
    logged). The server answers at once, with 503 until the model is loaded; a model
    that fails to load stops it. Logs are JSON lines on stderr.

    Raises:
        ConfigError: a non-loopback ``host`` without AI_SERVICE_TOKEN, a port outside
            0-65535, AI_SERVICE_WORKERS other than 1, or an address that cannot be bound.
        ModelError: the model or its card is missing or does not load.
    """
    host = host if host is not None else settings.ai_service_host
    port = port if port is not None else settings.ai_service_port
    token = settings.ai_service_token.get_secret_value() if settings.ai_service_token else None
    check_bind(host, token)
    if not 0 <= port <= 65535:
        raise ConfigError(f"port {port} is not a TCP port; give 1-65535, or 0 for a free one")
    if settings.ai_service_workers != 1:
        raise ConfigError(f"AI_SERVICE_WORKERS={settings.ai_service_workers}: {WORKERS_NOTE}; "
                          "set it to 1")
    path = Path(model)
    if not path.is_file():
        raise ModelError(f"no model file at {path}; train one with `tradinglib train`")
    read_card(path)  # a missing or broken card stops here too, before the port opens
    sock = bind_socket(host, port)
    try:
        app = create_app(token=token)
        state = app.state.service
        state.waiting = f"loading model {path.name}"
        server = make_server(app, log_config=json_log_config())  # configures logging
        failures: list[TradingLibError] = []

        def load() -> None:
            from tradinglib.inference import LockedPolicy

            try:
                policy = LockedPolicy.load(path)
            except TradingLibError as exc:
                failures.append(exc)
                log.error("model %s did not load: %s", path, exc)
                server.should_exit = True
                return
            state.policy = policy
            log.info("serving model %s", path.name, extra={
                "model": str(path), "model_sha256": policy.sha256, "backend": policy.backend})

        bound = sock.getsockname()[1]
        log.info("listening on http://%s:%d", host, bound, extra={
            "url": f"http://{host}:{bound}", "token_required": token is not None,
            "workers": 1})
        threading.Thread(target=load, name="model-loader", daemon=True).start()
        with _stop_signals_end_quietly() as stopped_by:
            server.run(sockets=[sock])
        if stopped_by:
            log.info("stopped by %s", ", ".join(stopped_by))
    finally:
        sock.close()
    if failures:
        raise failures[0]


@contextlib.contextmanager
def _stop_signals_end_quietly() -> Iterator[list[str]]:
    """While uvicorn runs in the main thread: make SIGINT and SIGTERM, which it re-raises
    after its graceful shutdown, end :func:`serve` normally (exit status 0) instead of
    with KeyboardInterrupt or death by SIGTERM. Yields the names of the signals seen."""
    seen: list[str] = []
    if threading.current_thread() is not threading.main_thread():
        yield seen
        return

    def record(signum: int, frame: FrameType | None) -> None:
        seen.append(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, record) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield seen
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class BackgroundServer:
    """``app`` served by uvicorn in a daemon thread on ``host``:``port`` (0: a free port).

    Use as a context manager; :attr:`url` is where it answers. Entering waits at most
    ``start_timeout`` seconds for the server to listen; leaving stops it and waits at
    most ``stop_timeout`` seconds for the thread to end.

    Raises (on enter):
        ConfigError: the address cannot be bound.
        RetryableError: the server did not start within ``start_timeout``.
    Raises (on exit):
        RetryableError: the server thread did not end within ``stop_timeout``.
    """

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0, *,
                 start_timeout: float = 10.0, stop_timeout: float = 10.0) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._server = make_server(app, graceful_seconds=max(1, int(stop_timeout / 2)))
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    @property
    def url(self) -> str:
        """``http://host:port`` of the running server."""
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> BackgroundServer:
        self._sock = bind_socket(self.host, self.port)
        self.port = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]},
                                        name=f"uvicorn-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self.start_timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RetryableError(f"the service on {self.url} did not start within "
                                     f"{self.start_timeout:g}s")
            time.sleep(0.005)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop the server and wait for its thread (at most ``stop_timeout`` seconds)."""
        self._server.should_exit = True
        try:
            if self._thread is not None:
                self._thread.join(self.stop_timeout)
                if self._thread.is_alive():
                    raise RetryableError(f"the service on {self.url} did not stop within "
                                         f"{self.stop_timeout:g}s")
        finally:
            if self._sock is not None:
                self._sock.close()
