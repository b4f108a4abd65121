"""Finishing a run: the manifest (files and sha256, git, versions, model and data) and
the read-only rename into place.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import subprocess
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from tradinglib.exceptions import TradingLibError
from tradinglib.paths import resolve
from tradinglib.results import read_results
from tradinglib.runs.parameters import _jsonable_params
from tradinglib.runs.records import (
    KERNEL_NAME,
    MANIFEST_FILE,
    MANIFEST_VERSION,
    RunError,
    RunResult,
    RunStatus,
)
from tradinglib.runs.watcher import _CellWatcher

_GIT_TIMEOUT_S = 5.0
_PACKAGES = ("tradinglib", "papermill", "nbclient", "nbconvert", "ipykernel", "jupyter_client",
             "stable-baselines3", "torch", "gymnasium", "gym-anytrading", "numpy", "pandas",
             "pydantic", "empyrical-reloaded", "ib_async")
_MODEL_PARAMS = ("model_path",)
_DATA_PARAMS = ("data",)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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
    tags: dict[str, Any] = dataclasses.field(default_factory=dict)
    parameters: dict[str, Any] = dataclasses.field(default_factory=dict)
    error: RunError | None = None
    watcher: _CellWatcher | None = None

    def cell_info(self) -> dict[str, Any]:
        """The cell running now, as RunError fields."""
        return self.watcher.current_fields() if self.watcher else {}


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
        "tags": record.tags,
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
