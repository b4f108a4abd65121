"""The IB client on its own event-loop thread, called synchronously with bounded waits.

ib_async is asyncio-based and its objects belong to the loop they were made on. A
paper session is synchronous and often runs inside a Jupyter kernel, whose own loop is
already running, so the client gets a private loop on a daemon thread and every call
goes through :meth:`IBThread.call`: the function runs on that loop, the caller waits at
most ``timeout`` seconds for its result.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import inspect
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from tradinglib.broker.base import BrokerUnavailable

T = TypeVar("T")

_JOIN_TIMEOUT_S = 5.0


class IBThread:
    """An event loop on a daemon thread, for one IB client.

    Args:
        timeout: default bound, in seconds, of :meth:`call`.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="ib-client", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, fn: Callable[..., Any], *args: Any, timeout: float | None = None,
             **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` on the loop (awaiting it if it returns an
        awaitable) and return its result.

        Raises:
            BrokerUnavailable: no result within ``timeout`` seconds (default: the
                thread's), the connection dropped meanwhile, or the loop is closed.
            Exception: whatever ``fn`` raised.
        """
        if self.loop.is_closed() or not self._thread.is_alive():
            raise BrokerUnavailable("the IB client thread has stopped; connect again")

        async def run() -> Any:
            result = fn(*args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
            return result

        future = asyncio.run_coroutine_threadsafe(run(), self.loop)
        limit = self.timeout if timeout is None else timeout
        try:
            return future.result(limit)
        except concurrent.futures.TimeoutError:
            future.cancel()
            name = getattr(fn, "__name__", repr(fn))
            raise BrokerUnavailable(f"no answer from IB within {limit:g} s ({name})") from None
        except (ConnectionError, concurrent.futures.CancelledError) as exc:
            raise BrokerUnavailable(f"the IB connection dropped during the request: "
                                    f"{exc or type(exc).__name__}") from None

    def stop(self) -> None:
        """Cancel what still runs on the loop, stop it, join the thread, close the loop."""
        if self.loop.is_closed():
            return

        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks(self.loop)
                     if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        if self._thread.is_alive():
            with contextlib.suppress(concurrent.futures.TimeoutError, RuntimeError):
                asyncio.run_coroutine_threadsafe(cancel_all(), self.loop).result(
                    _JOIN_TIMEOUT_S)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(_JOIN_TIMEOUT_S)
        if not self._thread.is_alive():
            self.loop.close()
