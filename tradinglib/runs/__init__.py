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
                   and data sha256, tags (e.g. a sweep's id and point), and the sha256 of
                   every other file
=================  ==========================================================================

Everything is written to ``runs/.tmp-<id>/`` and renamed to ``runs/<id>/`` when complete, so
a folder without the ``.tmp-`` prefix is always whole; its files are then made read-only and
nothing modifies it again. A failed run (bad parameters, a cell's exception, a dead kernel,
a cell timeout, an interruption) is archived the same way with status ``failed`` and its
error. The notebook receives the parameter ``output_dir``: the (temporary) run folder.

The package, one module each (``records`` at the bottom; no module imports the package):

=================  ==========================================================================
``records``        the archive layout's constants and the types a run produces
``parameters``     YAML values, parameter files, validation, labels, kinds and paths
``watcher``        per-cell progress, the running cell for errors, the kernel's exit
``manifest``       finishing a run: the manifest, read-only files, the rename into place
``kernel``         papermill execution: the archiving engine, kernel output, log routing
``html``           an executed notebook rendered for people
``execute``        :func:`run_notebook`: reserve, validate, execute, render, finish
``archive``        reading manifests, listing, finding and verifying archived runs
=================  ==========================================================================
"""

from __future__ import annotations

from tradinglib.results import RESULTS_FILE
from tradinglib.runs.archive import find_run, list_runs, read_manifest, verify_run
from tradinglib.runs.execute import run_notebook
from tradinglib.runs.html import render_html
from tradinglib.runs.parameters import (
    load_params,
    notebook_for,
    parse_value,
    run_id_for,
    runs_folder,
    validate_label,
    validate_with_params,
)
from tradinglib.runs.records import (
    DEFAULT_CELL_TIMEOUT_S,
    HTML_FILE,
    HTML_KINDS,
    KERNEL_LOG,
    KEY_METRICS,
    KINDS,
    MANIFEST_FILE,
    NOTEBOOK_FILE,
    PARAMS_FILE,
    RunError,
    RunInfo,
    RunInterrupted,
    RunProgress,
    RunResult,
    RunStatus,
    Validator,
)
from tradinglib.runs.records import KERNEL_NAME as KERNEL_NAME
from tradinglib.runs.records import MANIFEST_VERSION as MANIFEST_VERSION
from tradinglib.runs.records import OUTPUT_DIR_PARAM as OUTPUT_DIR_PARAM
from tradinglib.runs.records import TMP_PREFIX as TMP_PREFIX
from tradinglib.runs.watcher import describe_exit

__all__ = [
    "DEFAULT_CELL_TIMEOUT_S",
    "HTML_FILE",
    "HTML_KINDS",
    "KERNEL_LOG",
    "KEY_METRICS",
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
