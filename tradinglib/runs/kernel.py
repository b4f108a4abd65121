"""Executing a notebook with papermill: the archiving engine, the kernel's own output and
the log routing.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from tradinglib.exceptions import TradingLibError
from tradinglib.runs.manifest import _Record
from tradinglib.runs.records import KERNEL_LOG, KERNEL_NAME, NOTEBOOK_FILE, RunError, RunProgress
from tradinglib.runs.watcher import _CellWatcher

_ENGINE = "tradinglib-archive"
_TRACEBACK_LINES = 60
_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_LOGGERS = ("papermill", "nbclient", "traitlets", "jupyter_client")
_IPC_PATH_MAX = 90
"""Longest folder path for the kernel's Unix sockets (the OS limit for a socket name,
108 bytes, minus the ``/kernel-N`` suffix and a margin)."""


def _execute(tmp: Path, record: _Record, parameters: dict[str, Any],
             progress: RunProgress | None) -> RunError | None:
    """Run the notebook with papermill into ``tmp``; the error, or None on success."""
    import papermill
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    watcher = _CellWatcher(progress)
    record.watcher = watcher
    with (tmp / KERNEL_LOG).open("a", encoding="utf-8", buffering=1) as log, \
            _logs_to(log), _KernelOutput(tmp / KERNEL_LOG) as kernel_fd:
        try:
            papermill.execute_notebook(
                str(record.source), str(tmp / NOTEBOOK_FILE), parameters=parameters,
                cwd=str(record.source.parent), kernel_name=KERNEL_NAME,
                engine_name=_engine(), execution_timeout=record.timeout,
                progress_bar=False, log_output=False, request_save_on_cell_execute=True,
                stdout_file=log, stderr_file=log, kernel_output=kernel_fd, watcher=watcher)
        except PapermillExecutionError as exc:
            return RunError(
                stage="execute", ename=exc.ename, evalue=_plain(exc.evalue),
                **watcher.fields_for(exc.cell_index, exc.exec_count, exc.source),
                traceback=_tail("\n".join(_plain(line) for line in exc.traceback)))
        except DeadKernelError:
            return RunError(stage="kernel", ename="DeadKernelError",
                            evalue=f"the kernel died{watcher.exit_text()}; its last output "
                                   f"is in {KERNEL_LOG}", **watcher.current_fields())
        except CellTimeoutError:
            return RunError(stage="timeout", ename="CellTimeoutError",
                            evalue=f"the cell did not finish within {record.timeout} s "
                                   "(the per-cell timeout)", **watcher.current_fields())
        except (TradingLibError, KeyboardInterrupt):
            raise
        except Exception as exc:  # kernel start failures, missing kernel, papermill errors
            hint = (f"; install it into this environment: {sys.executable} -m ipykernel "
                    "install --sys-prefix" if type(exc).__name__ == "NoSuchKernel" else "")
            return RunError(stage="kernel", ename=type(exc).__name__,
                            evalue=(_plain(str(exc)) or repr(exc)) + hint,
                            **watcher.current_fields())
    return None


@functools.cache
def _engine() -> str:
    """Register (once) the papermill engine that sends the kernel's own output to the log
    and reports cells to a :class:`_CellWatcher`; return its name."""
    from papermill.clientwrap import PapermillNotebookClient
    from papermill.engines import NBClientEngine, papermill_engines

    class ArchivingEngine(NBClientEngine):  # type: ignore[misc]
        @classmethod
        def execute_managed_notebook(
            cls, nb_man: Any, kernel_name: str, log_output: bool = False,
            stdout_file: IO[str] | None = None, stderr_file: IO[str] | None = None,
            start_timeout: int = 60, execution_timeout: int | None = None,
            kernel_output: int | None = None, watcher: _CellWatcher | None = None,
            **kwargs: Any,
        ) -> Any:
            kwargs.pop("input_path", None)
            with _ipc_transport() as config:
                client = PapermillNotebookClient(
                    nb_man, kernel_name=kernel_name, timeout=execution_timeout,
                    startup_timeout=start_timeout, log=logging.getLogger("papermill"),
                    log_output=log_output, stdout_file=stdout_file,
                    stderr_file=stderr_file, config=config, **kwargs)
                if watcher is not None:
                    watcher.attach(client)
                # the kernel process's own stdout/stderr (ipykernel warnings, C libraries)
                return client.execute(stdout=kernel_output, stderr=kernel_output)

    papermill_engines.register(_ENGINE, ArchivingEngine)
    return _ENGINE


@contextlib.contextmanager
def _ipc_transport() -> Iterator[Any]:
    """Kernel manager configuration: the kernel's channels on Unix sockets in a fresh
    private folder, removed afterwards.

    With TCP, jupyter_client picks free ports by binding and releasing them for the
    kernel to bind; two runs starting kernels at once (a sweep's workers, a cron paper
    session beside a quant's training) can be handed the same port, and one kernel dies
    with "Address already in use". Sockets in a folder of this run's own cannot collide.
    Falls back to TCP where the folder's path is too long for a Unix socket name.
    """
    from traitlets.config import Config

    with tempfile.TemporaryDirectory(prefix="tlk-") as folder:
        if len(folder) > _IPC_PATH_MAX:
            yield Config()
        else:
            yield Config({"KernelManager": {"transport": "ipc",
                                            "ip": os.path.join(folder, "kernel")}})


def _plain(text: str) -> str:
    return _ANSI_RE.sub("", text or "")


def _tail(text: str) -> str:
    lines = text.rstrip().splitlines()
    return "\n".join(lines[-_TRACEBACK_LINES:])


class _KernelOutput:
    """A pipe for the kernel process's own stdout and stderr, copied to ``path`` by a
    thread until the run ends.

    The kernel (and anything it starts) writes into the pipe, never into the file itself,
    so a process outliving the run cannot change the archived log: after :meth:`__exit__`
    nothing more is written (later output is read and dropped).
    """

    def __init__(self, path: Path, *, drain_s: float = 2.0) -> None:
        self._path = path
        self._drain_s = drain_s
        self._lock = threading.Lock()
        self._closed = False
        self._read_fd, self._write_fd = os.pipe()
        self._thread = threading.Thread(target=self._copy, name="kernel-output", daemon=True)

    def __enter__(self) -> int:
        self._thread.start()
        return self._write_fd

    def __exit__(self, *exc: object) -> None:
        os.close(self._write_fd)  # EOF once the kernel has exited too
        self._thread.join(self._drain_s)
        with self._lock:
            self._closed = True

    def _copy(self) -> None:
        with self._path.open("ab", buffering=0) as out:
            while chunk := os.read(self._read_fd, 65536):
                with self._lock:
                    if not self._closed:
                        out.write(chunk)
        os.close(self._read_fd)


@contextlib.contextmanager
def _logs_to(stream: IO[str]) -> Iterator[None]:
    """Send papermill's and jupyter's log records to ``stream`` instead of the console."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("[%(name)s %(levelname)s] %(message)s"))
    saved = []
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.handlers[:], logger.propagate, logger.level))
        logger.handlers = [handler]
        logger.propagate = False
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        for logger, handlers, propagate, level in saved:
            logger.handlers = handlers
            logger.propagate = propagate
            logger.setLevel(level)
