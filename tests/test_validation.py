"""validate_observation: a table of bad inputs, a table of good ones, and properties."""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradinglib.exceptions import InputError, ObservationError
from tradinglib.features import FEATURE_NAMES
from tradinglib.validation import OBS_HIGH, OBS_LOW, OBS_SIZE, validate_observation

GOOD = [float(i) / 3.0 - 4.0 for i in range(OBS_SIZE)]
GOOD_F32 = np.array(GOOD, dtype=np.float32)


def _with(index: int, value: object) -> list[object]:
    """GOOD with one element replaced."""
    values: list[object] = list(GOOD)
    values[index] = value
    return values


def _array_with(index: int, value: float) -> np.ndarray[Any, np.dtype[np.float64]]:
    arr = np.array(GOOD, dtype=np.float64)
    arr[index] = value
    return arr


def _gen() -> object:
    return (x for x in GOOD)


# (id, observation, substrings the message must contain)
BAD: list[tuple[str, object, tuple[str, ...]]] = [
    ("too-short", GOOD[:25], ("26", "got 25")),
    ("too-long", [*GOOD, 0.0], ("26", "got 27")),
    ("empty-list", [], ("got 0",)),
    ("empty-array", np.array([], dtype=np.float32), ("shape (0,)",)),
    ("short-array", GOOD_F32[:10], ("shape (10,)",)),
    ("2d-array", GOOD_F32.reshape(1, 26), ("shape (1, 26)",)),
    ("2d-array-13x2", GOOD_F32.reshape(13, 2), ("shape (13, 2)",)),
    ("0d-array", np.array(1.0), ("scalar",)),
    ("nested-list-1x26", [GOOD], ("got 1",)),
    ("nested-list-26x1", [[x] for x in GOOD], ("observation[0]", "ret_1", "nested")),
    ("ragged-short", [[1.0, 2.0], [3.0]], ("got 2",)),
    ("ragged-26", [[1.0, 2.0], *[[x] for x in GOOD[1:]]], ("observation[0]", "nested")),
    ("nested-array-element", _with(3, np.zeros(2)), ("observation[3]", "ret_20", "nested")),
    ("string-element", _with(1, "1.5"), ("observation[1]", "ret_5", "'1.5'", "str")),
    ("bytes-element", _with(2, b"1"), ("observation[2]", "ret_10", "bytes")),
    ("none-element", _with(0, None), ("observation[0]", "ret_1", "None")),
    ("python-bool", _with(6, True), ("observation[6]", "rsi_14", "True", "bool")),
    ("python-bool-false", _with(25, False), ("observation[25]", "cash_fraction", "False")),
    ("numpy-bool", _with(4, np.bool_(True)), ("observation[4]", "vol_10", "bool")),
    ("complex-element", _with(7, 1 + 2j), ("observation[7]", "macd", "(1+2j)", "complex")),
    ("numpy-complex-element", _with(8, np.complex128(1)), ("observation[8]", "complex")),
    ("dict-element", _with(9, {}), ("observation[9]", "dict")),
    ("nan-first", _with(0, math.nan), ("observation[0]", "ret_1", "nan")),
    ("nan-middle", _with(12, math.nan), ("observation[12]", "dist_sma_10", "nan")),
    ("nan-last", _with(25, float("nan")), ("observation[25]", "cash_fraction", "nan")),
    ("numpy-nan-element", _with(5, np.float32("nan")), ("observation[5]", "vol_20", "nan")),
    ("plus-inf", _with(10, math.inf), ("observation[10]", "bb_pos_20", "inf")),
    ("minus-inf", _with(11, -math.inf), ("observation[11]", "bb_width_20", "-inf")),
    ("above-range", _with(13, 1000.0001), ("observation[13]", "dist_sma_50", "1000.0001")),
    ("below-range", _with(14, -1000.5), ("observation[14]", "atr_14", "-1000.5")),
    ("big-int", _with(15, 10**6), ("observation[15]", "volume_z_20", "1000000")),
    ("huge-int", _with(16, 10**400), ("observation[16]", "bar_range", "outside")),
    ("float32-huge", _with(17, np.float32(3e38)), ("observation[17]", "close_loc", "3e+38")),
    ("array-nan", _array_with(18, math.nan), ("observation[18]", "tod_sin", "nan")),
    ("array-inf", _array_with(19, math.inf), ("observation[19]", "tod_cos", "inf")),
    ("array-minus-inf", _array_with(20, -math.inf), ("observation[20]", "dow_sin", "-inf")),
    ("array-above", _array_with(21, 1e300), ("observation[21]", "dow_cos", "1e+300")),
    ("array-below", _array_with(22, -1000.001), ("observation[22]", "position_value")),
    ("float32-array-nan", np.where(np.arange(26) == 23, np.float32("nan"), GOOD_F32),
     ("observation[23]", "unrealized_pnl", "nan")),
    ("int64-array-big", np.full(26, 10**18, dtype=np.int64), ("observation[0]", "10000")),
    ("uint64-array-big", np.full(26, 2**64 - 1, dtype=np.uint64),
     ("observation[0]", "18446744073709551615")),
    ("bool-array", np.ones(26, dtype=bool), ("dtype bool",)),
    ("complex-array", np.ones(26, dtype=complex), ("complex128",)),
    ("string-array", np.array(["1"] * 26), ("<U1", "strings")),
    ("datetime-array", np.arange(26).astype("datetime64[s]"), ("datetime64",)),
    ("object-array-none", np.array(_with(24, None), dtype=object),
     ("observation[24]", "realized_pnl", "None")),
    ("dict", {"ret_1": 0.0}, ("got dict",)),
    ("set", set(GOOD), ("got set",)),
    ("frozenset", frozenset(GOOD), ("got frozenset",)),
    ("generator", _gen(), ("got generator",)),
    ("python-float", 1.5, ("got float",)),
    ("python-int", 3, ("got int",)),
    ("numpy-scalar", np.float32(1.0), ("float32",)),
    ("none", None, ("got None",)),
    ("string", "0" * 26, ("got str",)),
    ("bytes", b"0" * 26, ("got bytes",)),
    ("object", object(), ("got object",)),
]


@pytest.mark.parametrize(("obs", "expected"), [(o, e) for _, o, e in BAD],
                         ids=[i for i, _, _ in BAD])
def test_bad_observation_is_rejected_with_a_precise_message(
    obs: object, expected: tuple[str, ...]
) -> None:
    with pytest.raises(ObservationError) as info:
        validate_observation(obs)
    message = str(info.value)
    for part in expected:
        assert part in message, f"{part!r} not in {message!r}"


def test_bad_table_is_large_and_ids_unique() -> None:
    ids = [i for i, _, _ in BAD]
    assert len(ids) >= 30
    assert len(set(ids)) == len(ids)


def test_observation_error_is_a_value_error_and_input_error() -> None:
    with pytest.raises(ValueError, match=r"observation\[3\]"):
        validate_observation(_with(3, math.nan))
    assert issubclass(ObservationError, InputError)


def test_ragged_array_like_never_leaks_a_numpy_error() -> None:
    class Ragged:
        def __array__(self, dtype: object = None, copy: object = None) -> object:
            return np.array([[1.0, 2.0], [3.0]])  # numpy raises ValueError here

    with pytest.raises(ObservationError, match="Ragged"):
        validate_observation(Ragged())


INT_DTYPES = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"]
FLOAT_DTYPES = ["float16", "float32", "float64"]
SMALL_INTS = list(range(OBS_SIZE))  # representable in every dtype above

GOOD_CASES: list[tuple[str, object, list[float]]] = [
    ("list-of-floats", list(GOOD), GOOD),
    ("tuple-of-floats", tuple(GOOD), GOOD),
    ("list-of-ints", list(SMALL_INTS), [float(x) for x in SMALL_INTS]),
    ("mixed-int-float", [i if i % 2 else float(i) for i in SMALL_INTS],
     [float(x) for x in SMALL_INTS]),
    ("bounds", [OBS_HIGH, OBS_LOW] * 13, [1000.0, -1000.0] * 13),
    ("int-bounds", [1000, -1000] * 13, [1000.0, -1000.0] * 13),
    ("zeros", [0.0] * 26, [0.0] * 26),
    ("negative-zero", [-0.0] * 26, [0.0] * 26),
    ("numpy-float32-elements", [np.float32(x) for x in GOOD], GOOD),
    ("numpy-float64-elements", [np.float64(x) for x in GOOD], GOOD),
    ("numpy-float16-elements", [np.float16(x) for x in SMALL_INTS],
     [float(x) for x in SMALL_INTS]),
    ("numpy-int-elements", [np.int64(x) for x in SMALL_INTS], [float(x) for x in SMALL_INTS]),
    ("numpy-uint8-elements", [np.uint8(x) for x in SMALL_INTS], [float(x) for x in SMALL_INTS]),
    ("int8-sum-would-overflow", [np.int8(100)] * 26, [100.0] * 26),
    ("range", range(26), [float(x) for x in SMALL_INTS]),
    ("deque", deque(GOOD), GOOD),
    ("object-array", np.array(GOOD, dtype=object), GOOD),
    ("non-contiguous-array", np.repeat(GOOD_F32, 2)[::2], GOOD),
    ("fortran-column", np.asfortranarray(GOOD_F32), GOOD),
    ("pandas-series", pd.Series(GOOD), GOOD),
    ("tiny-subnormal", [5e-324] * 26, [0.0] * 26),
    *[(f"array-{d}", np.array(SMALL_INTS, dtype=d), [float(x) for x in SMALL_INTS])
      for d in INT_DTYPES + FLOAT_DTYPES],
    ("array-float32-values", GOOD_F32.copy(), GOOD),
    ("array-float64-values", np.array(GOOD), GOOD),
]


@pytest.mark.parametrize(("obs", "expected"), [(o, e) for _, o, e in GOOD_CASES],
                         ids=[i for i, _, _ in GOOD_CASES])
def test_good_observation_becomes_float32_26(obs: object, expected: list[float]) -> None:
    out = validate_observation(obs)
    assert isinstance(out, np.ndarray)
    assert out.dtype == np.float32
    assert out.shape == (OBS_SIZE,)
    np.testing.assert_array_equal(out, np.array(expected, dtype=np.float32))


def test_result_is_a_copy() -> None:
    source = GOOD_F32.copy()
    out = validate_observation(source)
    out[0] = 999.0
    assert source[0] == GOOD_F32[0]


def test_constants() -> None:
    assert (OBS_SIZE, OBS_LOW, OBS_HIGH) == (26, -1000.0, 1000.0)
    assert len(FEATURE_NAMES) == OBS_SIZE


in_range = st.floats(min_value=OBS_LOW, max_value=OBS_HIGH, allow_nan=False,
                     allow_infinity=False)
out_of_range = st.one_of(
    st.floats(min_value=OBS_HIGH, exclude_min=True),
    st.floats(max_value=OBS_LOW, exclude_max=True),
)


@settings(max_examples=300, database=None)
@given(st.lists(in_range, min_size=OBS_SIZE, max_size=OBS_SIZE))
def test_any_in_range_list_is_returned_unchanged(values: list[float]) -> None:
    out = validate_observation(values)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, np.array(values, dtype=np.float32))
    np.testing.assert_array_equal(validate_observation(np.array(values)), out)


@settings(max_examples=300, database=None)
@given(
    st.lists(in_range, min_size=OBS_SIZE, max_size=OBS_SIZE),
    st.integers(min_value=0, max_value=OBS_SIZE - 1),
    out_of_range,
)
def test_one_out_of_range_value_is_rejected_naming_its_index(
    values: list[float], index: int, bad: float
) -> None:
    values[index] = bad
    expected = f"observation[{index}] ({FEATURE_NAMES[index]})"
    for obs in (values, tuple(values), np.array(values)):
        with pytest.raises(ObservationError) as info:
            validate_observation(obs)
        assert expected in str(info.value)


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64])
def test_most_negative_integer_is_out_of_range(dtype: type[np.signedinteger[Any]]) -> None:
    """Regression: |x| of the most negative integer overflows back to a negative value."""
    obs = np.zeros(26, dtype=dtype)
    obs[5] = np.iinfo(dtype).min
    if np.iinfo(dtype).min >= OBS_LOW:
        assert validate_observation(obs)[5] == np.iinfo(dtype).min
    else:
        with pytest.raises(ObservationError, match=r"observation\[5\]"):
            validate_observation(obs)
