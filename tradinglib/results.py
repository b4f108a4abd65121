"""Values a notebook hands on: metrics and file paths, kept in ``<run>/results.json``.

A notebook calls :func:`record_results` with its ``output_dir`` parameter (the run folder
that ``tradinglib run`` injects); later notebooks (the report), ``tradinglib runs list`` and
``tradinglib runs show`` read them back with :func:`read_results`. Values are stored as
plain JSON so that any tool can read them:

=============================================  =============================================
recorded value                                 stored as
=============================================  =============================================
``None``, ``bool``, ``int``, ``str``           themselves
``float``, numpy/``Decimal`` numbers           numbers; NaN and +-inf become ``null``
numpy and pandas scalars (``np.int64`` ...)    the matching Python number or bool
``datetime``, ``date``, ``pd.Timestamp``       ISO 8601 text; ``NaT`` becomes ``null``
``timedelta``, ``pd.Timedelta``                seconds (float)
``Path`` (or an absolute path text)            text, relative to the run folder when inside it
mappings, dataclasses, pydantic models         objects (keys become text)
lists, tuples, sets, numpy arrays, ``Series``  arrays (a ``Series`` becomes an object)
enums                                          their value
=============================================  =============================================

A ``DataFrame`` is refused: write it to a file in the run folder and record the path.
Key metrics that ``runs list`` shows are read from the top level (``total_return``,
``sharpe``, ``max_drawdown``, ``trades``), or from a ``metrics`` object when absent there.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import math
import os
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path, PurePath
from typing import Any

from tradinglib.exceptions import InputError, StopError

RESULTS_FILE = "results.json"

__all__ = ["RESULTS_FILE", "read_results", "record_results", "result_path", "to_jsonable"]


def record_results(output_dir: str | os.PathLike[str], **values: Any) -> dict[str, Any]:
    """Merge ``values`` into ``<output_dir>/results.json`` and return all recorded results.

    Keys given again replace their earlier values; other keys are kept. The file is
    replaced atomically (write to a temporary file, then rename), so a reader never sees
    half a file. ``output_dir`` is created if missing (a notebook run by hand in JupyterLab).

    Args:
        output_dir: the run folder (the notebook's ``output_dir`` parameter).
        **values: JSON-safe after conversion (see the module docstring for the table).

    Raises:
        InputError: ``output_dir`` is None or empty, or a value cannot be stored (the message
            names the key and the type).
        StopError: the existing results file is not a JSON object.
    """
    if output_dir is None or str(output_dir) == "":
        raise InputError("record_results needs output_dir, the run folder; `tradinglib run` "
                         "sets it, and a notebook run by hand can set it to any folder")
    folder = Path(output_dir).resolve()
    converted = {key: to_jsonable(value, base=folder, key=f"results[{key!r}]")
                 for key, value in values.items()}
    folder.mkdir(parents=True, exist_ok=True)
    merged = _read_file(folder / RESULTS_FILE)
    merged.update(converted)
    target = folder / RESULTS_FILE
    tmp = folder / f".{RESULTS_FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(merged, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(tmp, target)
    return merged


def read_results(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The results recorded in ``run_dir`` (``{}`` when the notebook recorded none).

    Path values are text relative to the run folder; :func:`result_path` makes them
    absolute.

    Raises:
        InputError: ``run_dir`` is not a folder.
        StopError: ``results.json`` exists but is not a JSON object.
    """
    folder = Path(run_dir)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such run folder")
    return _read_file(folder / RESULTS_FILE)


def result_path(run_dir: str | os.PathLike[str], value: str | os.PathLike[str]) -> Path:
    """A recorded path value as an absolute path: relative ones are taken from ``run_dir``.

    Raises:
        InputError: ``value`` is empty.
    """
    if not str(value):
        raise InputError("result_path: the recorded path is empty")
    path = Path(value)
    return path if path.is_absolute() else Path(run_dir).resolve() / path


def to_jsonable(value: Any, *, base: Path | None = None, key: str = "value") -> Any:
    """``value`` as plain JSON types (see the module docstring); paths inside ``base``
    become relative to it.

    Raises:
        InputError: the value (or a part of it) has a type that cannot be stored; the
            message names the part (``key``, then ``[...]`` for nested items) and the type.
    """
    return _convert(value, base, key)


def _read_file(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StopError(f"{path}: unreadable results file ({exc}); it was written by "
                        "record_results, so the run folder has been altered") from None
    if not isinstance(data, dict):
        raise StopError(f"{path}: a results file holds a JSON object, found "
                        f"{type(data).__name__}")
    return data


def _convert(value: Any, base: Path | None, key: str) -> Any:
    import numpy as np
    import pandas as pd

    if isinstance(value, str):
        return _path_text(Path(value), base) if _is_abs_path_text(value) else value
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, enum.Enum):
        return _convert(value.value, base, key)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating, Decimal)):
        number = float(value)
        return number if math.isfinite(number) else None
    if value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, (dt.datetime, dt.date, dt.time)):  # pd.Timestamp is a datetime
        return value.isoformat()
    if isinstance(value, np.datetime64):
        stamp = pd.Timestamp(value)
        return None if pd.isna(stamp) else stamp.isoformat()
    if isinstance(value, (dt.timedelta, np.timedelta64)):
        delta = pd.Timedelta(value)
        return None if pd.isna(delta) else delta.total_seconds()
    if isinstance(value, (PurePath, os.PathLike)):
        return _path_text(Path(os.fspath(value)), base)
    if isinstance(value, pd.DataFrame):
        raise InputError(
            f"{key}: a DataFrame is not stored in results.json; write it to a file in the "
            "run folder (e.g. df.to_csv(Path(output_dir) / 'name.csv')) and record the path")
    if isinstance(value, pd.Series):
        return {_key_text(k, base, key): _convert(v, base, f"{key}[{k!r}]")
                for k, v in value.items()}
    if isinstance(value, Mapping):
        return {_key_text(k, base, key): _convert(v, base, f"{key}[{k!r}]")
                for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _convert({f.name: getattr(value, f.name) for f in dataclasses.fields(value)},
                        base, key)
    if hasattr(value, "model_dump") and callable(value.model_dump):  # a pydantic model
        return _convert(value.model_dump(), base, key)
    if isinstance(value, (np.ndarray, pd.Index)):
        return [_convert(v, base, f"{key}[{i}]") for i, v in enumerate(value.tolist())]
    if isinstance(value, (set, frozenset)):
        items = [_convert(v, base, f"{key}[]") for v in value]
        return sorted(items, key=lambda item: json.dumps(item, sort_keys=True))
    if isinstance(value, (list, tuple)):
        return [_convert(v, base, f"{key}[{i}]") for i, v in enumerate(value)]
    raise InputError(
        f"{key}: cannot store a {type(value).__module__}.{type(value).__name__} "
        "in results.json; record numbers, text, dates, paths, lists or mappings of them")


def _key_text(k: Any, base: Path | None, key: str) -> str:
    converted = _convert(k, base, f"{key} (a key)")
    return converted if isinstance(converted, str) else json.dumps(converted)


def _is_abs_path_text(value: object) -> bool:
    return isinstance(value, str) and value.startswith(os.sep) and "\n" not in value


def _path_text(path: Path, base: Path | None) -> str:
    if base is not None and path.is_absolute():
        try:
            return path.resolve().relative_to(base).as_posix()
        except ValueError:
            pass
    return path.as_posix()
