"""Which of a sweep's steps are archived already: the tags in run manifests.

Every run of a sweep carries ``tags = {"sweep": <name>, "point": <point id>, "step":
<kind>}`` in its manifest (see :func:`tags_for`). Running the sweep again skips the steps
that have an archived run with status ok (resume); failed ones run again.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tradinglib.exceptions import TradingLibError
from tradinglib.runs import RunStatus, list_runs, read_manifest

SWEEP_TAG = "sweep"
POINT_TAG = "point"
STEP_TAG = "step"


def tags_for(sweep: str, point: str, step: str) -> dict[str, Any]:
    """The manifest tags of one step of one point of a sweep."""
    return {SWEEP_TAG: sweep, POINT_TAG: point, STEP_TAG: step}


def run_label(sweep: str, point: str) -> str:
    """The run label of a sweep's point: ``<sweep>-<point id>``."""
    return f"{sweep}-{point}"


def archived_ok(runs_dir: str | os.PathLike[str], sweep: str) -> dict[tuple[str, str], Path]:
    """``(point id, step) -> run folder`` of the sweep's runs archived with status ok (the
    newest where there are several). Unreadable manifests are skipped."""
    found: dict[tuple[str, str], Path] = {}
    for info in list_runs(runs_dir):
        if info.status != RunStatus.OK or not info.label.startswith(f"{sweep}-"):
            continue
        try:
            tags = read_manifest(info.path).get("tags") or {}
        except TradingLibError:
            continue
        if isinstance(tags, dict) and tags.get(SWEEP_TAG) == sweep:
            found[(str(tags.get(POINT_TAG)), str(tags.get(STEP_TAG)))] = info.path
    return found


def leftovers(runs_dir: str | os.PathLike[str], sweep: str) -> list[Path]:
    """The sweep's ``.tmp-`` run folders: runs whose worker died (or still running)."""
    return [info.path for info in list_runs(runs_dir)
            if info.status == "incomplete" and info.label.startswith(f"{sweep}-")]
