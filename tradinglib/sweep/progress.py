"""The console progress of a sweep: a bar counting points done, failed and running (one
line per change where the console is not a terminal)."""

from __future__ import annotations

from typing import Any

from rich.console import Console


class ConsoleSweepProgress:
    """:class:`~tradinglib.sweep.runner.SweepProgress` on a rich console; call
    :meth:`close` when the sweep ends."""

    def __init__(self, out: Console) -> None:
        self._out = out
        self._bar: Any = None
        self._task: Any = None
        self._total = 0
        self._last: tuple[int, int, int] | None = None

    def started(self, total: int, to_run: int) -> None:
        """Say how many points run; start the bar."""
        self._total = to_run
        resumed = total - to_run
        self._print(f"{total} points: {to_run} to run"
                    + (f", {resumed} archived ok before (skipped)" if resumed else ""))
        if to_run and self._out.is_terminal:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._bar = Progress(TextColumn("points"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.description}", markup=False),
                                 TimeElapsedColumn(), console=self._out)
            self._task = self._bar.add_task(self._text(0, 0, 0), total=to_run)
            self._bar.start()

    def update(self, done: int, failed: int, running: int) -> None:
        """Move the bar (or print a line when the counts changed)."""
        if self._bar is not None:
            self._bar.update(self._task, completed=done + failed,
                             description=self._text(done, failed, running))
        elif (done, failed, running) != self._last:
            self._print(f"points {done + failed}/{self._total}: "
                        f"{self._text(done, failed, running)}")
        self._last = (done, failed, running)

    def close(self) -> None:
        """Stop the bar, if any."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    @staticmethod
    def _text(done: int, failed: int, running: int) -> str:
        return f"done {done}, failed {failed}, running {running}"

    def _print(self, text: str) -> None:
        self._out.print(text, markup=False, highlight=False, soft_wrap=True)
