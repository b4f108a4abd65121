"""Running a sweep on Dask: a LocalCluster of worker processes, or a cluster by address.

Each point is one Dask task (:func:`tradinglib.sweep.tasks.run_point`), so a point's steps
run on one worker, one point per worker at a time. A failed run is archived and the other
points go on. When a worker dies mid-point (killed, out of memory), the scheduler runs the
point again on a live worker, at most :data:`WORKER_DEATHS_ALLOWED` times for our own
LocalCluster (``distributed.scheduler.allowed-failures`` of the scheduler otherwise), then
the point fails with the reason.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final, Protocol

import yaml

from tradinglib.exceptions import InputError, RetryableError
from tradinglib.paths import project_root
from tradinglib.runs import DEFAULT_CELL_TIMEOUT_S, RunResult, runs_folder
from tradinglib.sweep.identity import archived_ok, leftovers
from tradinglib.sweep.points import Point, expand_points
from tradinglib.sweep.report import REPORT_FILE, render_sweep_report
from tradinglib.sweep.spec import SWEEP_FILE, Sweep, sweep_folder
from tradinglib.sweep.summary import write_summary
from tradinglib.sweep.tasks import PointOutcome, PointTask, StepOutcome, prepare_tasks, run_point

WORKER_DEATHS_ALLOWED: Final = 2
"""Times a point is run again after the worker running it died (own LocalCluster)."""
CONNECT_TIMEOUT_S: Final = 60.0
NO_WORKERS_TIMEOUT_S: Final = 120.0
_POLL_S: Final = 0.5
_RESULT_TIMEOUT_S: Final = 60.0


class SweepProgress(Protocol):
    """Receives a sweep's progress (the CLI draws a bar; None shows nothing)."""

    def started(self, total: int, to_run: int) -> None:
        """``to_run`` of ``total`` points are about to run (the rest are archived ok)."""

    def update(self, done: int, failed: int, running: int) -> None:
        """Points finished ok, failed, and running now, among those run this time."""


@dataclasses.dataclass(frozen=True)
class SweepOutcome:
    """A finished sweep invocation.

    Attributes:
        sweep: the sweep file.
        folder: ``runs/sweeps/<name>/``.
        points: every point, in order.
        outcomes: per point (same order): its runs, from now or from before.
        ran: points run in this invocation (the rest were archived ok before).
        summary: ``summary.csv``.
        report: the sweep report's archived run, or None when not rendered.
        wall_s: seconds from the first point submitted to the last finished (0 if none).
        cluster_s: seconds to start (or reach) the cluster.
        leftovers: ``.tmp-`` folders of the sweep's runs (a worker died while running).
    """

    sweep: Sweep
    folder: Path
    points: tuple[Point, ...]
    outcomes: tuple[PointOutcome, ...]
    ran: int
    summary: Path
    report: RunResult | None
    wall_s: float
    cluster_s: float
    leftovers: tuple[Path, ...]

    @property
    def failed(self) -> int:
        """Points not ok."""
        return sum(not o.ok(len(self.sweep.kinds)) for o in self.outcomes)

    @property
    def ok(self) -> bool:
        """Every point ok, and the report (when rendered) too."""
        return self.failed == 0 and (self.report is None or self.report.ok)


def run_sweep(sweep: Sweep, *, workers: int = 2, scheduler: str | None = None,
              runs_dir: str | os.PathLike[str] | None = None, root: Path | None = None,
              timeout: int | None = DEFAULT_CELL_TIMEOUT_S,
              progress: SweepProgress | None = None, report: bool = True) -> SweepOutcome:
    """Run every point of ``sweep`` not archived ok yet; write the summary and the report.

    Args:
        sweep: from :func:`~tradinglib.sweep.spec.load_sweep`.
        workers: worker processes of the LocalCluster (ignored with ``scheduler``).
        scheduler: address of a running Dask scheduler (``tcp://host:8786``), or None for
            a LocalCluster on 127.0.0.1. Its workers must see the project at ``root`` and
            ``runs_dir`` at the same paths.
        runs_dir: the archive; default ``<root>/runs``.
        root: the project root; default :func:`~tradinglib.paths.project_root`.
        timeout: per-cell limit of every run, seconds (None: none).
        progress: receives counts while points run.
        report: render the sweep report (when something ran or it is missing).

    Raises:
        InputError: bad ``workers`` or ``scheduler``, or invalid points (nothing runs).
        RetryableError: the scheduler cannot be reached, or no worker joined it for
            :data:`NO_WORKERS_TIMEOUT_S` seconds.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InputError(f"workers must be a whole number >= 1, got {workers!r}")
    if scheduler is not None and "://" not in scheduler:
        raise InputError(f"scheduler {scheduler!r}: give the address `dask scheduler` prints,"
                         " e.g. tcp://10.0.0.5:8786")
    root = (root or project_root()).resolve()
    archive = Path(runs_dir).resolve() if runs_dir is not None else runs_folder(root)
    points = expand_points(sweep)
    folder = sweep_folder(archive, sweep.name)
    done = archived_ok(archive, sweep.name)
    tasks = prepare_tasks(sweep, points, done, root=root, runs_dir=archive, timeout=timeout)
    _write_resolved(folder, sweep, points)
    if progress is not None:
        progress.started(len(points), len(tasks))
    fresh: dict[str, PointOutcome] = {}
    wall = cluster = 0.0
    if tasks:
        clock = time.perf_counter()
        with _client(workers, scheduler) as client:
            cluster = time.perf_counter() - clock
            clock = time.perf_counter()
            fresh = _execute(client, tasks, len(sweep.kinds), progress)
            wall = time.perf_counter() - clock
    outcomes = tuple(fresh.get(p.id) or _archived(p, sweep, done) for p in points)
    summary = write_summary(folder, sweep, points, outcomes)
    rendered = None
    if report and (tasks or not (folder / REPORT_FILE).is_file()):
        rendered = render_sweep_report(folder, sweep, runs_dir=archive, root=root,
                                       timeout=timeout)
    return SweepOutcome(sweep=sweep, folder=folder, points=tuple(points), outcomes=outcomes,
                        ran=len(tasks), summary=summary, report=rendered, wall_s=wall,
                        cluster_s=cluster, leftovers=tuple(leftovers(archive, sweep.name)))


def _archived(point: Point, sweep: Sweep, done: dict[tuple[str, str], Path]) -> PointOutcome:
    steps = tuple(StepOutcome.from_archive(done[(point.id, kind)]) for kind in sweep.kinds)
    return PointOutcome(point_id=point.id, steps=steps, skipped=True)


def _write_resolved(folder: Path, sweep: Sweep, points: list[Point]) -> Path:
    """``sweep.yaml``: the file as given, its base parameters resolved, every point."""
    from tradinglib.results import to_jsonable

    folder.mkdir(parents=True, exist_ok=True)
    content = {
        "name": sweep.name, "source": str(sweep.source), "notebook": sweep.notebook,
        "metric": sweep.metric, "given": dict(sweep.document),
        "base_files": {k: str(v) for k, v in sweep.base_files.items()},
        "base": {k: dict(v) for k, v in sweep.base.items()},
        "points": [{"id": p.id, "number": p.number, "values": dict(p.values),
                    "params": {k: dict(v) for k, v in p.params.items()}} for p in points],
    }
    path = folder / SWEEP_FILE
    text = yaml.safe_dump(to_jsonable(content), sort_keys=False, allow_unicode=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


@contextlib.contextmanager
def _client(workers: int, scheduler: str | None) -> Iterator[Any]:
    """A Dask client: of the cluster at ``scheduler``, or of a new LocalCluster of
    ``workers`` single-threaded worker processes on 127.0.0.1 (closed afterwards)."""
    import dask
    from distributed import Client, LocalCluster

    if scheduler is not None:
        try:
            client = Client(scheduler, timeout=CONNECT_TIMEOUT_S,  # type: ignore[no-untyped-call]
                            set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise RetryableError(
                f"cannot reach the Dask scheduler at {scheduler} within "
                f"{CONNECT_TIMEOUT_S:.0f}s ({exc}); start it with `dask scheduler` and "
                f"workers with `dask worker {scheduler}`, or leave out --scheduler for a "
                "local cluster") from None
        with client:
            yield client
        return
    settings = {"distributed.scheduler.allowed-failures": WORKER_DEATHS_ALLOWED,
                "distributed.scheduler.worker-saturation": 1.0}
    with dask.config.set(settings), \
            LocalCluster(n_workers=workers,  # type: ignore[no-untyped-call]
                         threads_per_worker=1, processes=True,
                         host="127.0.0.1", dashboard_address="127.0.0.1:0",
                         silence_logs=logging.ERROR) as cluster, \
            Client(cluster, timeout=CONNECT_TIMEOUT_S,  # type: ignore[no-untyped-call]
                   set_as_default=False) as client:
        yield client


def _execute(client: Any, tasks: list[PointTask], kinds: int,
             progress: SweepProgress | None) -> dict[str, PointOutcome]:
    """Submit every task; collect outcomes as they finish, reporting progress."""
    batch = uuid.uuid4().hex[:8]
    futures = {client.submit(run_point, task, key=f"{task.label}-{batch}", pure=False): task
               for task in tasks}
    pending = set(futures)
    outcomes: dict[str, PointOutcome] = {}
    no_workers_since: float | None = None
    try:
        while pending:
            finished = {f for f in pending if f.done()}
            if not finished:
                time.sleep(_POLL_S)
            for future in finished:
                pending.discard(future)
                task = futures[future]
                outcomes[task.point_id] = _collect(future, task)
            nthreads = client.nthreads()
            no_workers_since = _check_workers(nthreads, no_workers_since, client)
            if progress is not None:
                ok = sum(o.ok(kinds) for o in outcomes.values())
                progress.update(ok, len(outcomes) - ok, _running(client, pending, nthreads))
    except BaseException:
        client.cancel(list(pending))
        raise
    return outcomes


def _collect(future: Any, task: PointTask) -> PointOutcome:
    """The outcome of a finished future; a task error becomes the point's error."""
    from distributed import KilledWorker

    try:
        value = future.result(timeout=_RESULT_TIMEOUT_S)
    except KilledWorker:
        return PointOutcome(point_id=task.point_id, steps=(), error=(
            "the Dask worker running this point died each time it ran (killed, or out of "
            "memory?); see the worker logs and the sweep's .tmp- run folders"))
    except Exception as exc:  # raised inside the task on the worker
        return PointOutcome(point_id=task.point_id, steps=(),
                            error=f"{type(exc).__name__}: {exc}")
    if not isinstance(value, PointOutcome):
        raise TypeError(f"a point task returned {type(value).__name__}")
    return value


def _running(client: Any, pending: set[Any], nthreads: dict[str, int]) -> int:
    """Pending points being executed now (not queued) on some worker."""
    keys = {f.key for f in pending}
    busy = client.processing()
    return sum(min(len(keys.intersection(on)), nthreads.get(w, 1)) for w, on in busy.items())


def _check_workers(nthreads: dict[str, int], since: float | None, client: Any
                   ) -> float | None:
    """When the cluster has had no worker since ``since``; raise once that is too long."""
    if nthreads:
        return None
    now = time.monotonic()
    if since is not None and now - since > NO_WORKERS_TIMEOUT_S:
        raise RetryableError(f"no Dask worker has been connected to {client.scheduler.address}"
                             f" for {NO_WORKERS_TIMEOUT_S:.0f}s; start workers with "
                             f"`dask worker {client.scheduler.address}`")
    return since if since is not None else now
