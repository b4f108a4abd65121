"""Run records: the constants of the archive layout and the types a run produces."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol

KINDS: Mapping[str, str] = MappingProxyType({
    "train": "train.ipynb",
    "backtest": "backtest.ipynb",
    "paper": "paper_session.ipynb",
    "report": "report.ipynb",
})
"""Kind -> notebook file in ``notebooks/``."""
HTML_KINDS = frozenset({"report"})
"""Kinds whose notebook is meant for people: rendered to ``report.html``."""
DEFAULT_CELL_TIMEOUT_S = 7200

MANIFEST_FILE = "manifest.json"
PARAMS_FILE = "params.yaml"
NOTEBOOK_FILE = "notebook.ipynb"
KERNEL_LOG = "kernel.log"
HTML_FILE = "report.html"
KEY_METRICS = ("total_return", "sharpe", "max_drawdown", "trades")
"""The figures a run list or a sweep summary shows for each run, in this order."""
TMP_PREFIX = ".tmp-"
KERNEL_NAME = "python3"
OUTPUT_DIR_PARAM = "output_dir"
MANIFEST_VERSION = 1


Validator = Callable[[str, dict[str, Any]], Any]
"""``validate(kind, values)`` returns a pydantic model or a mapping of the resolved
parameters, or raises :class:`~tradinglib.exceptions.InputError`."""


class RunStatus(StrEnum):
    """The outcome recorded in a manifest."""

    OK = "ok"
    FAILED = "failed"


@dataclasses.dataclass(frozen=True)
class RunError:
    """Why a run failed.

    Attributes:
        stage: ``parameters`` (rejected values), ``execute`` (a cell raised), ``kernel``
            (the kernel died or did not start), ``timeout`` (a cell ran past the limit),
            ``html`` (rendering failed), ``interrupted`` (Ctrl-C) or ``internal``.
        ename: exception type name, e.g. ``ZeroDivisionError``.
        evalue: exception message.
        cell: 1-based position of the failing cell among the executed code cells (the
            ``[k/N]`` of the progress lines), or None outside a cell.
        execution_count: the cell's ``In [n]`` in ``notebook.ipynb``, where known.
        source: the failing cell's first lines.
        traceback: the traceback as plain text (colour codes removed), last lines only.
    """

    stage: str
    ename: str
    evalue: str
    cell: int | None = None
    execution_count: int | None = None
    source: str | None = None
    traceback: str | None = None

    def summary(self) -> str:
        """One line: where and what, e.g. ``cell 4 (In [4]): KeyError: 'close'``."""
        where = ""
        if self.cell is not None:
            count = f" (In [{self.execution_count}])" if self.execution_count else ""
            where = f"cell {self.cell}{count}: "
        message = f"{self.ename}: {self.evalue}" if self.evalue else self.ename
        return where + message


@dataclasses.dataclass(frozen=True)
class RunResult:
    """A finished (archived) run.

    Attributes:
        run_id: the folder name.
        path: the archived run folder (absolute).
        kind, label: as given.
        status: ok or failed.
        error: why it failed, or None.
        results: the notebook's recorded results (``results.json``).
        duration_s: wall time from start to archive, seconds.
    """

    run_id: str
    path: Path
    kind: str
    label: str
    status: RunStatus
    error: RunError | None
    results: dict[str, Any]
    duration_s: float

    @property
    def ok(self) -> bool:
        """True when the run succeeded."""
        return self.status is RunStatus.OK

    @property
    def exit_code(self) -> int:
        """0 ok, 2 rejected parameters, 1 any other failure."""
        if self.error is None:
            return 0
        return 2 if self.error.stage == "parameters" else 1


@dataclasses.dataclass(frozen=True)
class RunInfo:
    """One archived run as listed by :func:`list_runs`.

    ``status`` is ``ok``, ``failed``, ``incomplete`` (a ``.tmp-`` folder: running now, or
    its runner was killed) or ``unreadable`` (no valid manifest).
    """

    run_id: str
    path: Path
    kind: str
    label: str
    status: str
    started: str | None
    duration_s: float | None
    results: dict[str, Any]
    error: str | None


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a run; it was archived first (status failed, stage ``interrupted``).

    A KeyboardInterrupt, so code that does not know runs stops as usual.
    """

    def __init__(self, result: RunResult) -> None:
        super().__init__(result)

    @property
    def result(self) -> RunResult:
        """The archived, interrupted run."""
        value: RunResult = self.args[0]
        return value


class RunProgress(Protocol):
    """Receives progress while a notebook runs (the CLI prints it; None prints nothing)."""

    def run_started(self, run_id: str, notebook: Path) -> None:
        """The run folder is reserved and the notebook is about to run."""

    def cell_started(self, number: int, total: int, label: str) -> None:
        """Code cell ``number`` of ``total`` (1-based) starts; ``label`` is its first line."""

    def cell_finished(self, number: int, total: int, seconds: float, ok: bool) -> None:
        """Code cell ``number`` finished after ``seconds``; ``ok`` is False if it raised."""
