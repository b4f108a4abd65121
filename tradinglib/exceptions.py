"""The one exception tree of tradinglib, grouped by what the caller should do.

- :class:`InputError` and subclasses: the input is wrong; fix it and run again.
- :class:`StopError` and subclasses: something is unusable as it stands (a model
  artifact, a configuration); stop and repair it before going on.
- :class:`RetryableError`: a transient failure (a connection, a timeout); trying again
  later may succeed.

Every exception carries its message only, so it pickles across the process boundary
between a papermill kernel and the caller.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class TradingLibError(Exception):
    """Base class of every error raised on purpose by tradinglib."""


class InputError(TradingLibError, ValueError):
    """The caller's input is invalid; the message says what and how to fix it."""


class DataError(InputError):
    """Market data cannot be used: a missing file, a bad column, a bad row."""


class ObservationError(InputError):
    """An observation is not 26 finite numbers within the allowed range."""


class ConfigError(InputError):
    """A setting (environment variable, ``.env`` entry or parameter) is invalid."""


class StopError(TradingLibError):
    """Something is unusable as it stands; stop and repair it."""


class ModelError(StopError):
    """A model artifact is missing, corrupt, tampered with or of the wrong shape."""


class RetryableError(TradingLibError):
    """A transient failure; the same call may succeed later."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """The hint for an unknown ``name``: `` (did you mean 'x'?)`` with the closest of
    ``choices``, or "" when none is close; for messages of :class:`InputError`."""
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
