"""Session logging: JSON lines to the run folder and one readable line per cycle on the console.

:func:`setup_logging` attaches two handlers to the ``tradinglib`` logger: a
:class:`JsonLinesFormatter` file handler writing ``<folder>/session.log.jsonl`` (one
JSON object per record: ``time`` (ISO-8601 UTC), ``level``, ``logger``, ``message``,
plus every ``extra`` field) and a console handler on stdout that prints the message
alone (warnings and errors prefixed with their level). Calling it again, e.g. from a
re-run notebook cell, replaces the handlers instead of adding more;
:func:`teardown_logging` removes them. :func:`cycle_line` formats the console line of
a cycle.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

LOGGER_NAME = "tradinglib"
LOG_FILE = "session.log.jsonl"
_HANDLER_NAMES = ("tradinglib-jsonl", "tradinglib-console")
_STANDARD_FIELDS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message", "asctime", "taskName"}


class JsonLinesFormatter(logging.Formatter):
    """Formats a record as one JSON object: time, level, logger, message, extra fields
    (values JSON cannot hold are written as text) and the traceback if there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD_FIELDS})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class _ConsoleFormatter(logging.Formatter):
    """The message; warnings and errors prefixed with their level name."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        return message if record.levelno < logging.WARNING else f"{record.levelname}: {message}"


def setup_logging(folder: str | Path, *, console: bool = True,
                  level: int | str = logging.INFO) -> Path:
    """Log the ``tradinglib`` logger to ``folder``/session.log.jsonl and, if ``console``,
    to stdout; replace handlers from an earlier call. Records stop propagating to the
    root logger meanwhile, so nothing is printed twice.

    Returns:
        The path of the JSON-lines file (appended to if it exists).

    Raises:
        OSError: ``folder`` cannot be created or the file cannot be opened.
    """
    teardown_logging()
    path = Path(folder) / LOG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    file_handler = logging.FileHandler(path, encoding="utf-8")
    file_handler.set_name(_HANDLER_NAMES[0])
    file_handler.setFormatter(JsonLinesFormatter())
    handlers: list[logging.Handler] = [file_handler]
    if console:
        console_handler = logging.StreamHandler(sys.stdout)
        console_handler.set_name(_HANDLER_NAMES[1])
        console_handler.setFormatter(_ConsoleFormatter())
        handlers.append(console_handler)
    logger = logging.getLogger(LOGGER_NAME)
    for handler in handlers:
        logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    return path


def teardown_logging() -> None:
    """Remove and close the handlers :func:`setup_logging` added; restore the
    ``tradinglib`` logger's defaults (level NOTSET, propagating). No-op if none."""
    logger = logging.getLogger(LOGGER_NAME)
    ours = [h for h in logger.handlers if h.get_name() in _HANDLER_NAMES]
    for handler in ours:
        logger.removeHandler(handler)
        handler.close()
    if ours:
        logger.setLevel(logging.NOTSET)
        logger.propagate = True


def cycle_line(cycle: int, cycles: int, bar_time: pd.Timestamp, action: str, quantity: int,
               price: float, verdict: str, position: int, equity: float,
               fallback: str = "") -> str:
    """The console line of one cycle, e.g.
    ``cycle 12/60 2017-03-02 BUY 5 @ 845.20 APPROVED | pos 10 equity 100,123.45``.

    ``cycle`` is 0-based (shown 1-based); ``bar_time`` is shown as a date at midnight,
    else to the minute; ``price`` (USD, the decision bar's close) and ``verdict`` are
    left out for HOLD, ``fallback`` (why HOLD was used) is shown when given;
    ``position`` (shares) and ``equity`` (USD) are the account at the decision.
    """
    when = bar_time.strftime("%Y-%m-%d" if bar_time == bar_time.normalize()
                             else "%Y-%m-%d %H:%M")
    if action == "HOLD":
        what = f"HOLD (fallback: {fallback})" if fallback else "HOLD"
    else:
        what = f"{action} {quantity} @ {price:,.2f} {verdict}"
    return (f"cycle {cycle + 1}/{cycles} {when} {what} | pos {position} "
            f"equity {equity:,.2f}")
