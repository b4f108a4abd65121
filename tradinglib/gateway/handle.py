"""Run a :class:`~tradinglib.gateway.server.Gateway` in a background thread with its own
event loop, for tests and notebooks: ``with GatewayThread(Gateway(bars)) as gw: ...``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from types import TracebackType
from typing import TypeVar

from tradinglib.exceptions import RetryableError
from tradinglib.gateway.faults import Faults
from tradinglib.gateway.records import ExecutionRecord, OrderRecord
from tradinglib.gateway.server import CLOSE_TIMEOUT, Gateway
from tradinglib.risk import AccountSnapshot

T = TypeVar("T")


class GatewayThread:
    """A gateway served from a daemon thread on ``host:port`` (0: a free port).

    Args:
        gateway: the gateway to serve (not yet started).
        host: listen address; loopback unless ``allow_remote``.
        port: TCP port, 0 for any free one (read :attr:`port` after start).
        allow_remote: allow a non-loopback ``host``.
        timeout: seconds every call into the thread may take (start, stop, queries).

    Raises:
        InputError: a non-loopback host without ``allow_remote``, a bad port.
        RetryableError: the port is in use, or the thread did not answer in time.
    """

    def __init__(self, gateway: Gateway, *, host: str = "127.0.0.1", port: int = 0,
                 allow_remote: bool = False, timeout: float = 10.0) -> None:
        self.gateway = gateway
        self.host = host
        self._port = port
        self._allow_remote = allow_remote
        self._timeout = timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None

    @property
    def port(self) -> int:
        """The TCP port the gateway listens on (after :meth:`start`)."""
        return self.gateway.port

    @property
    def faults(self) -> Faults:
        """The gateway's faults; setters are thread-safe."""
        return self.gateway.faults

    def start(self) -> GatewayThread:
        """Start the thread and wait until the gateway listens.

        Raises:
            InputError, RetryableError: as :meth:`Gateway.start`, or no start in time.
        """
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._run, name=f"gateway-{self._port}",
                                        daemon=True)
        self._thread.start()
        if not self._ready.wait(self._timeout):
            raise RetryableError(f"the gateway thread did not start in {self._timeout} s")
        if self._failure is not None:
            self._thread.join(self._timeout)
            self._thread = None
            raise self._failure
        return self

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        try:
            await self.gateway.start(self.host, self._port, allow_remote=self._allow_remote)
        except BaseException as exc:  # handed to the starting thread
            self._failure = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._stopped.wait()
        finally:
            await self.gateway.close()

    def call(self, function: Callable[[], T]) -> T:
        """Run ``function`` on the gateway's loop thread and return its result.

        Raises:
            RetryableError: the gateway is not running or did not answer in time.
        """
        loop = self._loop
        if loop is None or self._thread is None or not self._thread.is_alive():
            raise RetryableError("the gateway thread is not running; use start() or 'with'")

        async def run() -> T:
            return function()

        future = asyncio.run_coroutine_threadsafe(run(), loop)
        try:
            return future.result(self._timeout)
        except TimeoutError:
            future.cancel()
            raise RetryableError(f"the gateway did not answer in {self._timeout} s") from None

    def advance(self, n: int = 1) -> int:
        """Publish ``n`` more bars (see :meth:`Gateway.advance`); the number published."""
        return self.call(lambda: self.gateway.advance(n))

    def executions(self) -> list[ExecutionRecord]:
        """Every fill so far, oldest first."""
        return self.call(self.gateway.executions)

    def orders(self) -> list[OrderRecord]:
        """Every order so far, in the order placed."""
        return self.call(self.gateway.orders)

    def clients(self) -> list[int]:
        """Client ids of the open API connections, ascending."""
        return self.call(self.gateway.clients)

    def account(self) -> AccountSnapshot:
        """Cash, position, average cost, available funds and net liquidation now."""
        return self.call(self.gateway.snapshot)

    def stop(self) -> None:
        """Close every connection and the server, end the thread (bounded joins)."""
        thread, loop, stopped = self._thread, self._loop, self._stopped
        if thread is None:
            return
        if loop is not None and stopped is not None and thread.is_alive():
            loop.call_soon_threadsafe(stopped.set)
        thread.join(self._timeout + CLOSE_TIMEOUT)
        if thread.is_alive():
            raise RetryableError("the gateway thread did not stop in time")
        self._thread = None
        self._loop = None

    def __enter__(self) -> GatewayThread:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
