"""The archive: reading manifests, listing and finding runs, verifying a run's files."""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path
from typing import Any

from tradinglib.exceptions import InputError, StopError, TradingLibError
from tradinglib.results import read_results
from tradinglib.runs.manifest import _files, _sha256
from tradinglib.runs.records import MANIFEST_FILE, TMP_PREFIX, RunError, RunInfo

_ID_RE = re.compile(r"(?P<stamp>\d{8}T\d{6}Z)-(?P<kind>[a-z][a-z0-9_]*)-(?P<label>.+)")


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
