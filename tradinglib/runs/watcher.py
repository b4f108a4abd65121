"""Cell watching: per-cell progress, the running cell for errors, the kernel's exit."""

from __future__ import annotations

import signal
import time
from typing import Any

from tradinglib.runs.records import RunProgress

_SOURCE_LINES = 5


class _CellWatcher:
    """Follows execution through nbclient's hooks: progress, the running cell, the kernel
    process (for its exit status)."""

    def __init__(self, progress: RunProgress | None) -> None:
        self._progress = progress
        self._nb: Any = None
        self._numbers: dict[int, int] = {}
        self._client: Any = None
        self._process: Any = None
        self.current: int | None = None
        self._started = 0.0

    def attach(self, client: Any) -> None:
        self._nb = client.nb
        self._client = client
        code = [i for i, cell in enumerate(client.nb.cells)
                if cell.cell_type == "code" and cell.source.strip()]
        self._numbers = {index: n for n, index in enumerate(code, start=1)}
        client.on_notebook_start = self._on_start
        client.on_cell_execute = self._on_execute
        client.on_cell_executed = self._on_executed

    def _on_start(self, **_: Any) -> None:
        # keep the kernel's Popen: jupyter_client forgets it while cleaning up a dead kernel
        provisioner = getattr(getattr(self._client, "km", None), "provisioner", None)
        self._process = getattr(provisioner, "process", None)

    def _on_execute(self, cell: Any, cell_index: int, **_: Any) -> None:
        self.current = cell_index
        self._started = time.monotonic()
        if self._progress is not None:
            self._progress.cell_started(self._numbers.get(cell_index, 0), len(self._numbers),
                                        _cell_label(cell))

    def _on_executed(self, cell: Any, cell_index: int, execute_reply: Any = None,
                     **_: Any) -> None:
        ok = not execute_reply or execute_reply.get("content", {}).get("status") != "error"
        if self._progress is not None:
            self._progress.cell_finished(self._numbers.get(cell_index, 0), len(self._numbers),
                                         time.monotonic() - self._started, ok)

    def fields_for(self, index: int | None, count: int | None, source: str | None
                   ) -> dict[str, Any]:
        """RunError fields for the cell at ``index`` of the executed notebook."""
        if index is None:
            return {}
        return {"cell": self._numbers.get(index), "execution_count": count,
                "source": _first_lines(source or "")}

    def current_fields(self) -> dict[str, Any]:
        """RunError fields for the cell running now (None outside cells)."""
        if self.current is None or self._nb is None:
            return {}
        cell = self._nb.cells[self.current]
        return self.fields_for(self.current, cell.get("execution_count"), cell.source)

    def exit_text(self) -> str:
        """`` (exit status 1)`` or `` (killed by SIGKILL...)`` where the process is known."""
        poll = getattr(self._process, "poll", None)
        return describe_exit(poll()) if callable(poll) else ""


def _cell_label(cell: Any) -> str:
    tags = cell.get("metadata", {}).get("tags", [])
    if "injected-parameters" in tags:
        return "parameters (injected)"
    if "parameters" in tags:
        return "parameters (defaults)"
    lines = [line.strip() for line in str(cell.source).splitlines() if line.strip()]
    code = [line for line in lines if not line.startswith("#")] or lines or [""]
    return code[0] if len(code[0]) <= 60 else code[0][:57] + "..."


def _first_lines(source: str) -> str:
    lines = source.strip("\n").splitlines()
    more = ["..."] if len(lines) > _SOURCE_LINES else []
    return "\n".join(lines[:_SOURCE_LINES] + more)


def describe_exit(status: int | None) -> str:
    """`` (exit status N)`` / `` (killed by SIGNAME)`` for a process return code."""
    if status is None:
        return ""
    if status < 0:
        try:
            name = signal.Signals(-status).name
        except ValueError:
            name = f"signal {-status}"
        hint = ", often the out-of-memory killer" if name == "SIGKILL" else ""
        return f" (killed by {name}{hint})"
    return f" (exit status {status})"
