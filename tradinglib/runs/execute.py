"""Running a notebook as an archived run: reserve the folder, validate, execute, render,
finish.
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tradinglib.exceptions import InputError, StopError
from tradinglib.paths import project_root
from tradinglib.results import RESULTS_FILE
from tradinglib.runs.html import render_html
from tradinglib.runs.kernel import _execute, _tail
from tradinglib.runs.manifest import _finish, _Record, _utcnow
from tradinglib.runs.parameters import (
    _jsonable_params,
    _resolved,
    _validate_kind,
    _write_params,
    validate_label,
    validate_with_params,
)
from tradinglib.runs.records import (
    DEFAULT_CELL_TIMEOUT_S,
    HTML_FILE,
    HTML_KINDS,
    MANIFEST_FILE,
    NOTEBOOK_FILE,
    OUTPUT_DIR_PARAM,
    TMP_PREFIX,
    RunError,
    RunInterrupted,
    RunProgress,
    RunResult,
    Validator,
)

_STAMP_FORMAT = "%Y%m%dT%H%M%SZ"


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
    tags: Mapping[str, Any] | None = None,
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
        tags: JSON values recorded as the manifest's ``tags`` (e.g. a sweep's id and
            point), so runs made together can be found again.

    Raises:
        InputError: bad kind, label, timeout or tags (not JSON values), or the notebook is
            missing; nothing is written then.
    """
    kind, label = _validate_kind(kind), validate_label(label)
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int)
                                or timeout <= 0):
        raise InputError(f"cell timeout must be a positive whole number of seconds or None, "
                         f"got {timeout!r}")
    tag_values = _jsonable_params(tags or {})
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
                     overrides=dict(overrides or {}), validated=validate is not None,
                     tags=tag_values)
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
