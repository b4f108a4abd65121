"""Archived notebook runs: execute a parameterized notebook and keep everything about it.

``tradinglib run KIND -f params/X.yaml`` executes ``notebooks/<KIND>.ipynb`` with papermill
in a real Jupyter kernel and archives the run in ``runs/<id>/``, where ``<id>`` is
``<UTC start YYYYmmddTHHMMSSZ>-<kind>-<label>`` (``-2``, ``-3`` ... appended when taken):

=================  ==========================================================================
``params.yaml``    the resolved parameters (file, then ``-p`` overrides, then validation)
``notebook.ipynb`` the executed notebook (saved after every cell, so a dead kernel leaves the
                   cells that ran)
``kernel.log``     the kernel's stdout and stderr, and papermill's and jupyter's log lines
``results.json``   what the notebook recorded with :func:`tradinglib.results.record_results`
``report.html``    kind ``report`` only: the notebook rendered without code
(other files)      whatever the notebook wrote into its ``output_dir`` (trades, equity ...)
``manifest.json``  id, kind, label, status, error, start and end, git commit, versions, model
                   and data sha256, and the sha256 of every other file
=================  ==========================================================================

Everything is written to ``runs/.tmp-<id>/`` and renamed to ``runs/<id>/`` when complete, so
a folder without the ``.tmp-`` prefix is always whole; its files are then made read-only and
nothing modifies it again. A failed run (bad parameters, a cell's exception, a dead kernel,
a cell timeout, an interruption) is archived the same way with status ``failed`` and its
error. The notebook receives the parameter ``output_dir``: the (temporary) run folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import os
import platform
import re
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import MappingProxyType
from typing import IO, Any, Protocol

import yaml

from tradinglib.exceptions import InputError, StopError, TradingLibError
from tradinglib.paths import project_root, resolve
from tradinglib.results import RESULTS_FILE, read_results, to_jsonable

__all__ = [
    "DEFAULT_CELL_TIMEOUT_S",
    "HTML_FILE",
    "HTML_KINDS",
    "KERNEL_LOG",
    "KINDS",
    "MANIFEST_FILE",
    "NOTEBOOK_FILE",
    "PARAMS_FILE",
    "RESULTS_FILE",
    "RunError",
    "RunInfo",
    "RunInterrupted",
    "RunProgress",
    "RunResult",
    "RunStatus",
    "Validator",
    "describe_exit",
    "find_run",
    "list_runs",
    "load_params",
    "notebook_for",
    "parse_value",
    "read_manifest",
    "render_html",
    "run_id_for",
    "run_notebook",
    "runs_folder",
    "validate_label",
    "validate_with_params",
    "verify_run",
]

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
"""Per-cell limit, seconds: above a 30-minute paper session or a long training cell."""

MANIFEST_FILE = "manifest.json"
PARAMS_FILE = "params.yaml"
NOTEBOOK_FILE = "notebook.ipynb"
KERNEL_LOG = "kernel.log"
HTML_FILE = "report.html"
TMP_PREFIX = ".tmp-"
KERNEL_NAME = "python3"
OUTPUT_DIR_PARAM = "output_dir"
MANIFEST_VERSION = 1

_LABEL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_KIND_RE = re.compile(r"[a-z][a-z0-9_]{0,31}")
_STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
_ID_RE = re.compile(r"(?P<stamp>\d{8}T\d{6}Z)-(?P<kind>[a-z][a-z0-9_]*)-(?P<label>.+)")
_ENGINE = "tradinglib-archive"
_SOURCE_LINES = 5
_TRACEBACK_LINES = 60
_GIT_TIMEOUT_S = 5.0
_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_LOGGERS = ("papermill", "nbclient", "traitlets", "jupyter_client")
_PACKAGES = ("tradinglib", "papermill", "nbclient", "nbconvert", "ipykernel", "jupyter_client",
             "stable-baselines3", "torch", "gymnasium", "gym-anytrading", "numpy", "pandas",
             "pydantic", "empyrical-reloaded", "ib_async")
_MODEL_PARAMS = ("model_path",)
_DATA_PARAMS = ("data",)

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


# --------------------------------------------------------------------------- parameters


class _ParamsLoader(yaml.SafeLoader):
    """YAML with plain scalars: ``true``/``false`` only as booleans (``no``, ``on`` stay
    text), ``null``/``None``/``~`` as null, ``3e-4`` as a float, ``09:30`` and dates as
    text (no base-60 numbers, no date objects)."""


_DROPPED_TAGS = {f"tag:yaml.org,2002:{name}" for name in
                 ("bool", "int", "float", "null", "timestamp")}
_ParamsLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in _DROPPED_TAGS]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
for _tag, _pattern, _first in (
    ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("null", r"^(?:~|null|Null|NULL|None|)$", ["~", "n", "N", "", *"N"]),
    ("int", r"^[-+]?(?:0|[1-9][0-9_]*|0x[0-9a-fA-F_]+|0b[01_]+)$", "-+0123456789"),
    ("float", r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|\.[0-9][0-9_]*"
              r"(?:[eE][-+]?[0-9]+)?|[0-9][0-9_]*[eE][-+]?[0-9]+|\.(?:inf|Inf|INF)"
              r"|\.(?:nan|NaN|NAN))$", "-+0123456789."),
):
    _ParamsLoader.add_implicit_resolver(f"tag:yaml.org,2002:{_tag}", re.compile(_pattern),
                                        list(_first))


def parse_value(text: str) -> Any:
    """A ``-p NAME VALUE`` value: a YAML scalar (``5`` -> 5, ``0.5`` -> 0.5, ``3e-4`` ->
    0.0003, ``true`` -> True, ``null``/``None`` -> None, ``[a, b]`` -> a list), else the
    text itself (also for ``""``, dates and times such as ``2018-01-02`` or ``09:30``)."""
    if text.strip() == "":
        return text
    try:
        value = yaml.load(text, Loader=_ParamsLoader)
    except yaml.YAMLError:
        return text
    return text if isinstance(value, str) else value


def load_params(path: str | os.PathLike[str] | None,
                overrides: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
    """Parameters from a YAML file (a mapping of names to values), then ``overrides``
    (``(NAME, VALUE)`` text pairs parsed by :func:`parse_value`) on top.

    Args:
        path: the YAML file, or None for overrides alone.
        overrides: ``-p NAME VALUE`` pairs, later ones win.

    Raises:
        InputError: the file is missing, is not valid YAML, is not a mapping, or a name is
            not a Python identifier.
    """
    values: dict[str, Any] = {}
    if path is not None:
        file = Path(path)
        if not file.is_file():
            raise InputError(f"{file}: parameter file not found")
        try:
            loaded = yaml.load(file.read_text(encoding="utf-8"), Loader=_ParamsLoader)
        except yaml.YAMLError as exc:
            raise InputError(f"{file}: not valid YAML: {exc}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{file}: cannot read the parameter file: {exc}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise InputError(f"{file}: a parameter file is a mapping of names to values "
                             f"(name: value lines), found a {type(loaded).__name__}")
        values.update(loaded)
    for name, text in overrides:
        values[name] = parse_value(text)
    for name in values:
        if not isinstance(name, str) or not name.isidentifier():
            raise InputError(f"parameter name {name!r} is not a Python identifier "
                             "(letters, digits and _, not starting with a digit)")
    return values


def validate_with_params(kind: str, values: dict[str, Any]) -> Any:
    """Validate with :func:`tradinglib.params.validate_params` (imported on first use).

    Raises:
        InputError: rejected values (unknown names, wrong types, out of range).
        StopError: ``tradinglib.params`` is not installed.
    """
    try:
        from tradinglib.params import validate_params  # type: ignore[import-not-found,unused-ignore]
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("tradinglib.params"):
            raise StopError("tradinglib.params is missing: parameters cannot be validated"
                            ) from None
        raise
    return validate_params(kind, values)


def validate_label(label: str) -> str:
    """``label`` if it is a safe folder-name part, else InputError.

    A label is 1 to 64 letters, digits, ``.``, ``_`` or ``-``, starting with a letter or a
    digit (so no path separators, no ``..``, no hidden names).
    """
    if not isinstance(label, str) or not _LABEL_RE.fullmatch(label) or ".." in label:
        raise InputError(f"run label {label!r} is not allowed: use 1 to 64 letters, digits, "
                         "'.', '_' or '-', starting with a letter or digit (no '/' or '..')")
    return label


def _validate_kind(kind: str) -> str:
    if not isinstance(kind, str) or not _KIND_RE.fullmatch(kind):
        raise InputError(f"run kind {kind!r} is not allowed: use lower-case letters, digits "
                         "and '_', starting with a letter")
    return kind


def notebook_for(kind: str, root: Path | None = None) -> Path:
    """The notebook of ``kind`` (see :data:`KINDS`) under ``<root>/notebooks/``.

    Raises:
        InputError: unknown kind, or the notebook file is missing.
    """
    if kind not in KINDS:
        raise InputError(f"unknown run kind {kind!r}; kinds are: {', '.join(KINDS)}")
    path = (root or project_root()) / "notebooks" / KINDS[kind]
    if not path.is_file():
        raise InputError(f"{path}: notebook not found (kind {kind!r}); is the working "
                         "directory inside the project, or $TRADINGLIB_ROOT set?")
    return path


def run_id_for(output_dir: str | os.PathLike[str]) -> str:
    """The run id of a run folder, also while it is being written: a notebook's
    ``output_dir`` is ``runs/.tmp-<id>`` during the run and ``runs/<id>`` afterwards."""
    return Path(output_dir).name.removeprefix(TMP_PREFIX)


def runs_folder(root: Path | None = None) -> Path:
    """``<project root>/runs``: where runs are archived."""
    return (root or project_root()) / "runs"


# --------------------------------------------------------------------------- running


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def run_notebook(
    notebook: str | os.PathLike[str],
    params: Mapping[str, Any],
    *,
    kind: str,
    label: str,
    runs_dir: str | os.PathLike[str],
    timeout: int | None = DEFAULT_CELL_TIMEOUT_S,
    validate: Validator | None = validate_with_params,
    html: bool | None = None,
    progress: RunProgress | None = None,
    params_file: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    root: Path | None = None,
) -> RunResult:
    """Execute ``notebook`` with ``params`` in a fresh kernel and archive the run.

    The notebook runs with its own folder as working directory, kernel ``python3`` (the
    interpreter running this function), and the extra parameter ``output_dir`` = the
    temporary run folder. Failures of the run itself do not raise: they are archived and
    returned with status failed (see :class:`RunError`). Ctrl-C archives the run as
    ``interrupted`` and then raises :class:`RunInterrupted` (a KeyboardInterrupt).

    Args:
        notebook: the ``.ipynb`` to execute.
        params: parameter values (without ``output_dir``, which the runner sets).
        kind: run kind (lower-case word), part of the run id and passed to ``validate``.
        label: run label, part of the run id (see :func:`validate_label`).
        runs_dir: the archive folder; nothing is written outside it (created if missing).
        timeout: per-cell limit in seconds, None for none.
        validate: ``validate(kind, values)`` returning a pydantic model or a mapping of the
            resolved values; None runs with ``params`` as given (recorded as unvalidated).
        html: render ``report.html`` (no code) after success; default: kind in HTML_KINDS.
        progress: receives per-cell progress.
        params_file: the parameter file ``params`` came from, recorded with its sha256.
        overrides: the ``-p`` values, recorded in the manifest.
        root: the project root (git commit; relative model and data paths); default
            :func:`~tradinglib.paths.project_root`.

    Raises:
        InputError: bad kind, label or timeout, or the notebook is missing; nothing is
            written then.
    """
    kind, label = _validate_kind(kind), validate_label(label)
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int)
                                or timeout <= 0):
        raise InputError(f"cell timeout must be a positive whole number of seconds or None, "
                         f"got {timeout!r}")
    source = Path(notebook).resolve()
    if not source.is_file():
        raise InputError(f"{source}: notebook not found")
    root = (root or project_root()).resolve()
    archive = Path(runs_dir).resolve()
    archive.mkdir(parents=True, exist_ok=True)
    started = _utcnow()
    run_id, tmp = _reserve(archive, f"{started.strftime(_STAMP_FORMAT)}-{kind}-{label}")
    clock = time.monotonic()
    if progress is not None:
        progress.run_started(run_id, source)
    record = _Record(run_id=run_id, kind=kind, label=label, source=source, root=root,
                     started=started, timeout=timeout, params_file=params_file,
                     overrides=dict(overrides or {}), validated=validate is not None)
    interrupted = False
    try:
        _run_in(tmp, record, params, validate, progress,
                html=kind in HTML_KINDS if html is None else html)
    except KeyboardInterrupt as exc:
        interrupted = True
        record.error = RunError(stage="interrupted", ename="KeyboardInterrupt",
                                evalue=str(exc) or "interrupted by the user (Ctrl-C)",
                                **record.cell_info())
    except Exception as exc:  # a bug of the runner: archive it rather than lose the run
        record.error = RunError(stage="internal", ename=type(exc).__name__, evalue=str(exc),
                                traceback=_tail(traceback.format_exc()))
    final = _finish(tmp, archive / run_id, record, duration=time.monotonic() - clock)
    if interrupted:
        raise RunInterrupted(final)
    return final


@dataclasses.dataclass
class _Record:
    """What the manifest says; filled in while the run goes on."""

    run_id: str
    kind: str
    label: str
    source: Path
    root: Path
    started: datetime
    timeout: int | None
    params_file: str | os.PathLike[str] | None
    overrides: dict[str, Any]
    validated: bool
    parameters: dict[str, Any] = dataclasses.field(default_factory=dict)
    error: RunError | None = None
    watcher: _CellWatcher | None = None

    def cell_info(self) -> dict[str, Any]:
        """The cell running now, as RunError fields."""
        return self.watcher.current_fields() if self.watcher else {}


def _reserve(archive: Path, base: str) -> tuple[str, Path]:
    """Create ``.tmp-<id>`` for the first free id ``base``, ``base-2``, ...; return both."""
    for n in range(1, 1000):
        run_id = base if n == 1 else f"{base}-{n}"
        tmp = archive / f"{TMP_PREFIX}{run_id}"
        if tmp.parent != archive or (archive / run_id).parent != archive:
            raise InputError(f"run id {run_id!r} would leave {archive}")
        try:
            tmp.mkdir()
        except FileExistsError:
            continue
        if (archive / run_id).exists():
            tmp.rmdir()
            continue
        return run_id, tmp
    raise StopError(f"{archive}: 999 runs named {base!r} already; choose another label")


def _run_in(tmp: Path, record: _Record, params: Mapping[str, Any],
            validate: Validator | None, progress: RunProgress | None, *, html: bool) -> None:
    """Validate, write params.yaml, execute, render: errors go to ``record.error``."""
    given = dict(params)
    try:
        if OUTPUT_DIR_PARAM in given:
            raise InputError(f"parameter {OUTPUT_DIR_PARAM!r} is set by the runner (the run "
                             "folder); remove it from the parameters")
        resolved = _resolved(validate(record.kind, dict(given)) if validate else given)
    except (InputError, ValueError, TypeError) as exc:  # pydantic's ValidationError too
        try:
            record.parameters = _jsonable_params(given)
        except InputError:
            record.parameters = {str(k): repr(v) for k, v in given.items()}
        _write_params(tmp, record.parameters)
        record.error = RunError(stage="parameters", ename=type(exc).__name__,
                                evalue=str(exc))
        return
    record.parameters = resolved
    _write_params(tmp, resolved)
    record.error = _execute(tmp, record, {**resolved, OUTPUT_DIR_PARAM: str(tmp)}, progress)
    _annotate_notebook(tmp, record)
    if record.error is None and html:
        try:
            render_html(tmp / NOTEBOOK_FILE, tmp / HTML_FILE)
        except Exception as exc:
            record.error = RunError(stage="html", ename=type(exc).__name__, evalue=str(exc))


def _annotate_notebook(tmp: Path, record: _Record) -> None:
    """Name the run and its results file in the executed notebook's metadata
    (``metadata.tradinglib``), so the notebook alone leads to the values it recorded."""
    import nbformat

    path = tmp / NOTEBOOK_FILE
    if not path.is_file():
        return
    nb = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
    nb.metadata["tradinglib"] = {
        "run_id": record.run_id, "kind": record.kind, "label": record.label,
        "results_file": RESULTS_FILE if (tmp / RESULTS_FILE).is_file() else None,
        "manifest_file": MANIFEST_FILE,
    }
    nbformat.write(nb, path)  # type: ignore[no-untyped-call]


def _resolved(validated: Any) -> dict[str, Any]:
    if hasattr(validated, "model_dump"):
        values = validated.model_dump(mode="json")
    elif isinstance(validated, Mapping):
        values = dict(validated)
    else:
        raise TypeError(f"the validator returned a {type(validated).__name__}, expected a "
                        "pydantic model or a mapping")
    values.pop(OUTPUT_DIR_PARAM, None)
    return _jsonable_params(values)


def _jsonable_params(values: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k): to_jsonable(v, key=f"parameter {k!r}") for k, v in values.items()}


def _write_params(tmp: Path, values: Mapping[str, Any]) -> None:
    text = yaml.safe_dump(dict(values), sort_keys=False, default_flow_style=False,
                          allow_unicode=True)
    (tmp / PARAMS_FILE).write_text(text, encoding="utf-8")


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
            client = PapermillNotebookClient(
                nb_man, kernel_name=kernel_name, timeout=execution_timeout,
                startup_timeout=start_timeout, log=logging.getLogger("papermill"),
                log_output=log_output, stdout_file=stdout_file, stderr_file=stderr_file,
                **kwargs)
            if watcher is not None:
                watcher.attach(client)
            # the kernel process's own stdout/stderr (ipykernel warnings, C libraries)
            return client.execute(stdout=kernel_output, stderr=kernel_output)

    papermill_engines.register(_ENGINE, ArchivingEngine)
    return _ENGINE


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


# --------------------------------------------------------------------------- archiving


def _finish(tmp: Path, final: Path, record: _Record, *, duration: float) -> RunResult:
    """Write the manifest, make the files read-only and rename the folder into place."""
    finished = _utcnow()
    manifest: dict[str, Any] = {
        "manifest_version": MANIFEST_VERSION,
        "id": record.run_id,
        "kind": record.kind,
        "label": record.label,
        "status": str(RunStatus.FAILED if record.error else RunStatus.OK),
        "error": dataclasses.asdict(record.error) if record.error else None,
        "started": _iso(record.started),
        "finished": _iso(finished),
        "duration_s": round(duration, 3),
        "notebook": {
            "source": _display_path(record.source, record.root),
            "sha256": _sha256(record.source),
            "kernel": KERNEL_NAME,
            "cell_timeout_s": record.timeout,
        },
        "params_file": _params_file_info(record.params_file, record.root),
        "overrides": _jsonable_params(record.overrides),
        "parameters_validated": record.validated,
        "parameters": record.parameters,
        "git": _git_info(record.root),
        "python": {"version": platform.python_version(), "executable": sys.executable},
        "platform": platform.platform(),
        "packages": _package_versions(),
        "artifacts": _artifacts(record.parameters, record.root),
        "files": {},
    }
    manifest["files"] = {name: {"sha256": _sha256(tmp / name), "bytes": (tmp / name).stat().st_size}
                         for name in _files(tmp) if name != MANIFEST_FILE}
    text = json.dumps(manifest, indent=2, allow_nan=False, default=str) + "\n"
    (tmp / MANIFEST_FILE).write_text(text, encoding="utf-8")
    for name in _files(tmp):
        path = tmp / name
        path.chmod(path.stat().st_mode & ~0o222)
    os.rename(tmp, final)
    try:
        results = read_results(final)
    except TradingLibError:
        results = {}
    return RunResult(run_id=record.run_id, path=final, kind=record.kind, label=record.label,
                     status=RunStatus.FAILED if record.error else RunStatus.OK,
                     error=record.error, results=results, duration_s=duration)


def _files(folder: Path) -> list[str]:
    """Every regular file under ``folder``, as sorted relative POSIX paths."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.is_file() and not p.is_symlink())


def _sha256(path: Path) -> str:
    from tradinglib.modelcard import file_sha256

    return file_sha256(path)


def _display_path(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def _params_file_info(path: str | os.PathLike[str] | None, root: Path) -> dict[str, Any] | None:
    if path is None:
        return None
    file = Path(path).resolve()
    return {"path": _display_path(file, root),
            "sha256": _sha256(file) if file.is_file() else None}


def _git_info(root: Path) -> dict[str, Any] | None:
    """Commit and dirty flag of the git work tree at ``root``; None outside git."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(root), *args], capture_output=True,
                                  text=True, timeout=_GIT_TIMEOUT_S, check=False)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return None
    status = git("status", "--porcelain")
    return {"commit": commit.strip(), "dirty": None if status is None else bool(status.strip())}


def _package_versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def _artifacts(parameters: Mapping[str, Any], root: Path) -> dict[str, Any]:
    """sha256 of the model zip and the data the parameters name; problems are recorded,
    never raised."""
    out: dict[str, Any] = {}
    for name in _MODEL_PARAMS:
        value = parameters.get(name)
        if isinstance(value, str) and value:
            out["model"] = _model_info(value, root)
    for name in _DATA_PARAMS:
        value = parameters.get(name)
        if isinstance(value, str) and value:
            out["data"] = _data_info(value, root)
    run_dir = parameters.get("run_dir")
    if isinstance(run_dir, str) and run_dir:
        out["source_run"] = Path(run_dir).name
    return out


def _model_info(value: str, root: Path) -> dict[str, Any]:
    from tradinglib.modelcard import card_path

    path = resolve(value, root)
    info: dict[str, Any] = {"path": value}
    if not path.is_file():
        return {**info, "sha256": None, "error": "no such file"}
    card = card_path(path)
    return {**info, "sha256": _sha256(path),
            "card_sha256": _sha256(card) if card.is_file() else None}


def _data_info(value: str, root: Path) -> dict[str, Any]:
    path = resolve(value, root)
    if path.is_file():
        return {"source": value, "sha256": _sha256(path), "hash_of": "file"}
    try:
        from tradinglib.data import BUILTIN_SOURCES, bars_sha256, load_bars

        if value not in BUILTIN_SOURCES:
            return {"source": value, "sha256": None, "error": "no such file or built-in name"}
        return {"source": value, "sha256": bars_sha256(load_bars(value)), "hash_of": "bars"}
    except Exception as exc:  # recorded, never raised: the manifest must still be written
        return {"source": value, "sha256": None, "error": f"{type(exc).__name__}: {exc}"}


# --------------------------------------------------------------------------- HTML


def render_html(notebook_path: str | os.PathLike[str], html_path: str | os.PathLike[str]
                ) -> Path:
    """Render an executed notebook as a self-contained HTML page for people: outputs only
    (no code, no prompts), images embedded. Returns ``html_path``.

    Raises:
        InputError: the notebook is missing or not a valid notebook file.
    """
    import nbformat
    from nbconvert import HTMLExporter

    source = Path(notebook_path)
    if not source.is_file():
        raise InputError(f"{source}: notebook not found")
    try:
        nb = nbformat.read(source, as_version=4)  # type: ignore[no-untyped-call]
    except Exception as exc:  # nbformat raises several unrelated types
        raise InputError(f"{source}: not a valid notebook: {exc}") from None
    exporter = HTMLExporter(  # type: ignore[no-untyped-call]
        exclude_input=True, exclude_input_prompt=True,
                            exclude_output_prompt=True, embed_images=True)
    title = nb.metadata.get("title") or source.stem
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title}})
    target = Path(html_path)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(body, encoding="utf-8")
    os.replace(tmp, target)
    return target


# --------------------------------------------------------------------------- the archive


def read_manifest(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest of an archived run.

    Raises:
        InputError: no such folder, or it has no manifest (not a run folder).
        StopError: the manifest is not valid JSON.
    """
    path = Path(run_dir) / MANIFEST_FILE
    if not Path(run_dir).is_dir():
        raise InputError(f"{run_dir}: no such run folder")
    if not path.is_file():
        raise InputError(f"{run_dir}: not a run folder (no {MANIFEST_FILE})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StopError(f"{path}: unreadable manifest: {exc}") from None
    if not isinstance(data, dict):
        raise StopError(f"{path}: a manifest is a JSON object")
    return data


def list_runs(runs_dir: str | os.PathLike[str], *, kind: str | None = None) -> list[RunInfo]:
    """Archived runs in ``runs_dir``, oldest first (by id, which starts with the time),
    including ``.tmp-`` folders as ``incomplete``. A missing folder lists nothing."""
    folder = Path(runs_dir)
    if not folder.is_dir():
        return []
    infos = []
    for path in sorted(folder.iterdir(), key=lambda p: p.name.removeprefix(TMP_PREFIX)):
        if not path.is_dir() or (path.name.startswith(".") and
                                 not path.name.startswith(TMP_PREFIX)):
            continue
        info = _run_info(path)
        if info is not None and (kind is None or info.kind == kind):
            infos.append(info)
    return infos


def _run_info(path: Path) -> RunInfo | None:
    incomplete = path.name.startswith(TMP_PREFIX)
    run_id = path.name.removeprefix(TMP_PREFIX)
    match = _ID_RE.fullmatch(run_id)
    if match is None:
        return None
    try:
        results = read_results(path)
    except TradingLibError:
        results = {}
    if incomplete:
        return RunInfo(run_id=run_id, path=path, kind=match["kind"], label=match["label"],
                       status="incomplete", started=None, duration_s=None, results=results,
                       error=None)
    try:
        manifest = read_manifest(path)
    except TradingLibError as exc:
        return RunInfo(run_id=run_id, path=path, kind=match["kind"], label=match["label"],
                       status="unreadable", started=None, duration_s=None, results=results,
                       error=str(exc))
    error = manifest.get("error")
    return RunInfo(
        run_id=run_id, path=path, kind=str(manifest.get("kind", match["kind"])),
        label=str(manifest.get("label", match["label"])),
        status=str(manifest.get("status", "unreadable")), started=manifest.get("started"),
        duration_s=manifest.get("duration_s"), results=results,
        error=RunError(**error).summary() if isinstance(error, dict) and _is_error(error)
        else None)


def _is_error(data: dict[str, Any]) -> bool:
    names = {f.name for f in dataclasses.fields(RunError)}
    return {"stage", "ename", "evalue"} <= data.keys() <= names


def find_run(runs_dir: str | os.PathLike[str], ref: str) -> Path:
    """The archived run ``ref`` names: a run folder path, an id, a unique id prefix, or
    ``last`` (the newest finished run).

    Raises:
        InputError: nothing matches, or the prefix matches several runs (they are named).
    """
    if not ref:
        raise InputError("name a run: an id, a unique id prefix, 'last', or a folder path")
    folder = Path(runs_dir)
    candidate = Path(ref)
    if ("/" in ref or os.sep in ref) and candidate.is_dir():
        return candidate.resolve()
    done = [p for p in sorted(folder.iterdir()) if p.is_dir() and _ID_RE.fullmatch(p.name)
            ] if folder.is_dir() else []
    if ref == "last" and done:
        return done[-1].resolve()
    exact = [p for p in done if p.name == ref]
    matches = exact or [p for p in done if p.name.startswith(ref)]
    if len(matches) == 1:
        return matches[0].resolve()
    if not matches:
        raise InputError(f"no run {ref!r} in {folder}; `tradinglib runs list` shows the runs")
    names = ", ".join(p.name for p in matches[:5]) + (" ..." if len(matches) > 5 else "")
    raise InputError(f"{ref!r} matches {len(matches)} runs ({names}); give more of the id")


def verify_run(run_dir: str | os.PathLike[str]) -> list[str]:
    """Check an archived run's files against its manifest; the problems found, one line
    each (empty when every file is present and unchanged and no file was added).

    Raises:
        InputError, StopError: as :func:`read_manifest`.
    """
    folder = Path(run_dir)
    recorded = read_manifest(folder).get("files", {})
    problems = []
    present = set(_files(folder)) - {MANIFEST_FILE}
    for name, info in sorted(recorded.items()):
        if name not in present:
            problems.append(f"{name}: missing")
        elif _sha256(folder / name) != (info or {}).get("sha256"):
            problems.append(f"{name}: changed (sha256 differs from the manifest)")
    problems.extend(f"{name}: added after the run" for name in sorted(present - set(recorded)))
    return problems


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

