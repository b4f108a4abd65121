"""Validation of the 26-float observation before it reaches a model.

:func:`validate_observation` sits on the inference hot path: a valid list of 26 floats or a
float32 array passes in a few microseconds (C-level type, range and NaN checks, no
per-element Python loop). Only a rejected observation takes the slow path that finds the
first bad element and names it, with its feature name, in the
:class:`~tradinglib.exceptions.ObservationError`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Final, NoReturn, cast

import numpy as np
import numpy.typing as npt

from tradinglib.exceptions import ObservationError
from tradinglib.features import FEATURE_NAMES
from tradinglib.types import Observation

OBS_SIZE: Final = 26
"""Number of features in an observation."""

OBS_LOW: Final = -1000.0
"""Smallest valid feature value (inclusive)."""

OBS_HIGH: Final = 1000.0
"""Largest valid feature value (inclusive)."""

if OBS_LOW != -OBS_HIGH:  # pragma: no cover - _from_array's single |x| check relies on it
    raise RuntimeError("the observation range must be symmetric around 0")

if len(FEATURE_NAMES) != OBS_SIZE:  # pragma: no cover - guards edits of features.py
    raise RuntimeError(f"FEATURE_NAMES has {len(FEATURE_NAMES)} names, expected {OBS_SIZE}")

_NUMERIC_KINDS: Final = frozenset("iuf")  # signed/unsigned ints and floats; not b, c, O, U
_FAST_TYPES: Final = frozenset(
    {
        float, int,
        np.float64, np.float32, np.float16,
        np.int64, np.int32, np.int16, np.int8,
        np.uint64, np.uint32, np.uint16, np.uint8,
    }
)
_EXPECTED = f"expected a list, tuple or 1-D numpy array of {OBS_SIZE} real numbers"


def validate_observation(obs: object) -> Observation:
    """Check an observation and return it as a new float32 array of shape (26,).

    Accepted: a list or tuple of 26 Python ints/floats or numpy integer/floating scalars,
    or a 1-D numpy array of 26 values of any integer or floating dtype (other sequences
    and array-likes are converted first). Every value must be finite and within
    ``[OBS_LOW, OBS_HIGH]`` (inclusive).

    Raises:
        ObservationError: wrong length or shape, not a sequence, a bool, string, None,
            complex or other non-real element or dtype, NaN, +/-inf or a value out of
            range. The message names the index, feature name and value where one applies.
    """
    if type(obs) is list or type(obs) is tuple:
        return _from_sequence(obs)
    if type(obs) is np.ndarray:
        return _from_array(obs)
    return _from_other(obs)


def invalid_rows(batch: npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
    """Which rows of an ``(n, 26)`` numeric array :func:`validate_observation` rejects.

    The batch form of the value checks (NaN, inf, out of range), vectorized; call
    :func:`validate_observation` on a flagged row for the message.

    Raises:
        ObservationError: ``batch`` is not a 2-D real numeric array with 26 columns.
    """
    if not isinstance(batch, np.ndarray) or batch.ndim != 2 or batch.shape[1] != OBS_SIZE:
        shape = getattr(batch, "shape", None)
        raise ObservationError(f"expected a numpy array of shape (n, {OBS_SIZE}), got {shape}")
    if batch.dtype.kind not in _NUMERIC_KINDS:
        raise ObservationError(f"batch dtype {batch.dtype}: {_dtype_problem(batch.dtype.kind)}")
    inside = (batch >= OBS_LOW) & (batch <= OBS_HIGH)  # False for NaN
    return np.asarray(~inside.all(axis=1))


def _from_sequence(obs: list[object] | tuple[object, ...]) -> Observation:
    if len(obs) != OBS_SIZE:
        raise ObservationError(f"{_EXPECTED}; got {len(obs)} values")
    if not set(map(type, obs)) <= _FAST_TYPES:
        _check_element_types(obs)  # raises unless every element is a real number
    nums = cast("Sequence[float]", obs)
    try:
        # min/max skip a NaN that is not first, so fsum (float arithmetic, no numpy
        # overflow) catches it: the sum is NaN if any element is NaN.
        if min(nums) >= OBS_LOW and max(nums) <= OBS_HIGH and not math.isnan(math.fsum(nums)):
            return np.array(nums, dtype=np.float32)
    except (TypeError, ValueError, OverflowError):
        pass
    _raise_bad_values(obs)


def _from_array(obs: npt.NDArray[Any]) -> Observation:
    if obs.ndim != 1 or obs.shape[0] != OBS_SIZE:
        what = "a scalar" if obs.ndim == 0 else f"shape {obs.shape}"
        raise ObservationError(f"{_EXPECTED}; got an array of {what}")
    kind = obs.dtype.kind
    if kind not in _NUMERIC_KINDS:
        if kind == "O":
            return _from_sequence(obs.tolist())
        raise ObservationError(
            f"{_EXPECTED}; got dtype {obs.dtype} ({_dtype_problem(kind)}), e.g. "
            f"{_name(0)} = {obs[0]!r}"
        )
    if kind == "f":  # one |x| pass (the range is symmetric); False for NaN
        inside = bool(np.maximum.reduce(np.abs(obs)) <= OBS_HIGH)
    else:  # integers: abs() of the most negative value overflows, so check both ends
        inside = bool(np.minimum.reduce(obs) >= OBS_LOW and np.maximum.reduce(obs) <= OBS_HIGH)
    if inside:
        return np.array(obs, dtype=np.float32)
    _raise_bad_values(obs.tolist())


def _from_other(obs: object) -> Observation:
    if obs is None or isinstance(obs, str | bytes | bytearray | dict | set | frozenset):
        raise ObservationError(f"{_EXPECTED}; got {_type_name(obs)}")
    if isinstance(obs, np.ndarray):  # ndarray subclass
        return _from_array(np.asarray(obs))
    if isinstance(obs, Sequence):
        return _from_sequence(list(obs))
    if hasattr(obs, "__array__") and not isinstance(obs, np.generic):
        try:
            arr = np.asarray(obs)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ObservationError(f"{_EXPECTED}; {_type_name(obs)} failed: {exc}") from None
        return _from_array(arr)
    raise ObservationError(f"{_EXPECTED}; got {_type_name(obs)} {_short_repr(obs)}")


def _is_real_number(value: object) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(
        value, bool | np.bool_
    )


def _check_element_types(obs: Sequence[object]) -> None:
    """Raise for the first element that is not a real number (bool, str, None, ...)."""
    for i, value in enumerate(obs):
        if not _is_real_number(value):
            if isinstance(value, list | tuple | np.ndarray):
                problem = "nested sequence (the observation must be flat, 1-D)"
            else:
                problem = f"{_type_name(value)} is not a real number"
            raise ObservationError(f"{_name(i)} = {_short_repr(value)}: {problem}")


def _raise_bad_values(values: Sequence[object]) -> NoReturn:
    """Raise for the first non-finite or out-of-range value (types already checked)."""
    for i, value in enumerate(values):
        try:
            x = float(value)  # type: ignore[arg-type]
        except OverflowError:  # an int too large for a float: finite but out of range
            x = OBS_HIGH * 2.0
        if math.isnan(x):
            raise ObservationError(f"{_name(i)} = {value!r}: NaN is not allowed")
        if math.isinf(x):
            raise ObservationError(f"{_name(i)} = {_short_repr(value)}: infinity is not allowed")
        if not OBS_LOW <= x <= OBS_HIGH:
            raise ObservationError(
                f"{_name(i)} = {_short_repr(value)}: outside [{OBS_LOW:g}, {OBS_HIGH:g}]"
            )
    raise ObservationError(f"{_EXPECTED}; values could not be checked")  # pragma: no cover


def _name(i: int) -> str:
    return f"observation[{i}] ({FEATURE_NAMES[i]})"


def _dtype_problem(kind: str) -> str:
    return {
        "b": "bool is not a number here",
        "c": "complex numbers are not allowed",
        "U": "strings are not numbers",
        "S": "bytes are not numbers",
        "M": "datetimes are not numbers",
        "m": "timedeltas are not numbers",
    }.get(kind, "not a real numeric dtype")


def _type_name(value: object) -> str:
    return "None" if value is None else type(value).__name__


def _short_repr(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


__all__ = ["OBS_HIGH", "OBS_LOW", "OBS_SIZE", "invalid_rows", "validate_observation"]
