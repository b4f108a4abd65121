"""Run parameters: YAML values, parameter files, validation, labels, kinds and paths."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from tradinglib.exceptions import InputError, StopError
from tradinglib.paths import project_root
from tradinglib.results import to_jsonable
from tradinglib.runs.records import KINDS, OUTPUT_DIR_PARAM, PARAMS_FILE, TMP_PREFIX

_LABEL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_KIND_RE = re.compile(r"[a-z][a-z0-9_]{0,31}")


class _ParamsLoader(yaml.SafeLoader):
    """YAML with plain scalars: ``true``/``false`` only as booleans (``no``, ``on`` stay
    text), ``null``/``None``/``~`` as null, ``3e-4`` as a float, ``09:30`` and dates as
    text (no base-60 numbers, no date objects)."""


_DROPPED_TAGS = {f"tag:yaml.org,2002:{name}" for name in
                 ("bool", "int", "float", "null", "timestamp")}
_ParamsLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in _DROPPED_TAGS]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
for _tag, _pattern, _first in (
    ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("null", r"^(?:~|null|Null|NULL|None|)$", ["~", "n", "N", "", *"N"]),
    ("int", r"^[-+]?(?:0|[1-9][0-9_]*|0x[0-9a-fA-F_]+|0b[01_]+)$", "-+0123456789"),
    ("float", r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|\.[0-9][0-9_]*"
              r"(?:[eE][-+]?[0-9]+)?|[0-9][0-9_]*[eE][-+]?[0-9]+|\.(?:inf|Inf|INF)"
              r"|\.(?:nan|NaN|NAN))$", "-+0123456789."),
):
    _ParamsLoader.add_implicit_resolver(f"tag:yaml.org,2002:{_tag}", re.compile(_pattern),
                                        list(_first))


def parse_value(text: str) -> Any:
    """A ``-p NAME VALUE`` value: a YAML scalar (``5`` -> 5, ``0.5`` -> 0.5, ``3e-4`` ->
    0.0003, ``true`` -> True, ``null``/``None`` -> None, ``[a, b]`` -> a list), else the
    text itself (also for ``""``, dates and times such as ``2018-01-02`` or ``09:30``)."""
    if text.strip() == "":
        return text
    try:
        value = yaml.load(text, Loader=_ParamsLoader)
    except yaml.YAMLError:
        return text
    return text if isinstance(value, str) else value


def load_params(path: str | os.PathLike[str] | None,
                overrides: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
    """Parameters from a YAML file (a mapping of names to values), then ``overrides``
    (``(NAME, VALUE)`` text pairs parsed by :func:`parse_value`) on top.

    Args:
        path: the YAML file, or None for overrides alone.
        overrides: ``-p NAME VALUE`` pairs, later ones win.

    Raises:
        InputError: the file is missing, is not valid YAML, is not a mapping, or a name is
            not a Python identifier.
    """
    values: dict[str, Any] = {}
    if path is not None:
        file = Path(path)
        if not file.is_file():
            raise InputError(f"{file}: parameter file not found")
        try:
            loaded = yaml.load(file.read_text(encoding="utf-8"), Loader=_ParamsLoader)
        except yaml.YAMLError as exc:
            raise InputError(f"{file}: not valid YAML: {exc}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{file}: cannot read the parameter file: {exc}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise InputError(f"{file}: a parameter file is a mapping of names to values "
                             f"(name: value lines), found a {type(loaded).__name__}")
        values.update(loaded)
    for name, text in overrides:
        values[name] = parse_value(text)
    for name in values:
        if not isinstance(name, str) or not name.isidentifier():
            raise InputError(f"parameter name {name!r} is not a Python identifier "
                             "(letters, digits and _, not starting with a digit)")
    return values


def validate_with_params(kind: str, values: dict[str, Any]) -> Any:
    """Validate with :func:`tradinglib.params.validate_params` (imported on first use).

    Raises:
        InputError: rejected values (unknown names, wrong types, out of range).
        StopError: ``tradinglib.params`` is not installed.
    """
    try:
        from tradinglib.params import validate_params  # type: ignore[import-not-found,unused-ignore]
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("tradinglib.params"):
            raise StopError("tradinglib.params is missing: parameters cannot be validated"
                            ) from None
        raise
    return validate_params(kind, values)


def validate_label(label: str) -> str:
    """``label`` if it is a safe folder-name part, else InputError.

    A label is 1 to 64 letters, digits, ``.``, ``_`` or ``-``, starting with a letter or a
    digit (so no path separators, no ``..``, no hidden names).
    """
    if not isinstance(label, str) or not _LABEL_RE.fullmatch(label) or ".." in label:
        raise InputError(f"run label {label!r} is not allowed: use 1 to 64 letters, digits, "
                         "'.', '_' or '-', starting with a letter or digit (no '/' or '..')")
    return label


def _validate_kind(kind: str) -> str:
    if not isinstance(kind, str) or not _KIND_RE.fullmatch(kind):
        raise InputError(f"run kind {kind!r} is not allowed: use lower-case letters, digits "
                         "and '_', starting with a letter")
    return kind


def notebook_for(kind: str, root: Path | None = None) -> Path:
    """The notebook of ``kind`` (see :data:`KINDS`) under ``<root>/notebooks/``.

    Raises:
        InputError: unknown kind, or the notebook file is missing.
    """
    if kind not in KINDS:
        raise InputError(f"unknown run kind {kind!r}; kinds are: {', '.join(KINDS)}")
    path = (root or project_root()) / "notebooks" / KINDS[kind]
    if not path.is_file():
        raise InputError(f"{path}: notebook not found (kind {kind!r}); is the working "
                         "directory inside the project, or $TRADINGLIB_ROOT set?")
    return path


def run_id_for(output_dir: str | os.PathLike[str]) -> str:
    """The run id of a run folder, also while it is being written: a notebook's
    ``output_dir`` is ``runs/.tmp-<id>`` during the run and ``runs/<id>`` afterwards."""
    return Path(output_dir).name.removeprefix(TMP_PREFIX)


def runs_folder(root: Path | None = None) -> Path:
    """``<project root>/runs``: where runs are archived."""
    return (root or project_root()) / "runs"


def _resolved(validated: Any) -> dict[str, Any]:
    if hasattr(validated, "model_dump"):
        values = validated.model_dump(mode="json")
    elif isinstance(validated, Mapping):
        values = dict(validated)
    else:
        raise TypeError(f"the validator returned a {type(validated).__name__}, expected a "
                        "pydantic model or a mapping")
    values.pop(OUTPUT_DIR_PARAM, None)
    return _jsonable_params(values)


def _jsonable_params(values: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k): to_jsonable(v, key=f"parameter {k!r}") for k, v in values.items()}


def _write_params(tmp: Path, values: Mapping[str, Any]) -> None:
    text = yaml.safe_dump(dict(values), sort_keys=False, default_flow_style=False,
                          allow_unicode=True)
    (tmp / PARAMS_FILE).write_text(text, encoding="utf-8")
