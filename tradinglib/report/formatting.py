"""Small helpers of the report: time and text conversions, drawdown, table styling
and a folder's file list."""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tradinglib.types import Action

if TYPE_CHECKING:
    from pandas.io.formats.style import Styler

_HEX = frozenset("0123456789abcdef")


def _utc(values: Any) -> pd.DatetimeIndex:
    """Times (strings, naive or aware) as a UTC DatetimeIndex (naive means UTC)."""
    return pd.DatetimeIndex(pd.to_datetime(values, utc=True))


def _text(value: object) -> str:
    """A table cell's text: "" for missing values."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def _short(value: object, keep: int = 12) -> str:
    """A 64-hex sha256 shortened to ``keep`` characters plus an ellipsis; others as text."""
    text = _text(value)
    if len(text) == 64 and set(text) <= _HEX:
        return text[:keep] + "…"
    return text


def _money(value: float) -> str:
    return f"{value:,.2f}"


def _action_names(values: pd.Series) -> pd.Series:
    """Actions as names (HOLD/BUY/SELL), whether given as names or ids."""
    def name(value: object) -> str:
        if isinstance(value, int | np.integer) and not isinstance(value, bool):
            return Action(int(value)).name
        text = _text(value)
        return Action(int(text)).name if text.isdigit() else text.upper()

    return values.map(name).astype(str)


def drawdown(equity: pd.Series) -> pd.Series:
    """Drawdown of an equity curve: equity / running peak - 1 (0 at a peak, e.g. -0.05)."""
    values = equity.astype(float)
    return values / values.cummax() - 1.0


def style_table(table: pd.DataFrame, *, caption: str | None = None) -> Styler:
    """``table`` as a pandas Styler without the index, text columns left-aligned, for
    HTML output in notebooks."""
    text: list[Hashable] = [c for c in table.columns
                            if not pd.api.types.is_numeric_dtype(table[c])]
    styler = table.style.hide(axis="index").set_properties(subset=text,
                                                           **{"text-align": "left"})
    return styler.set_caption(caption) if caption else styler


def show_table(table: pd.DataFrame, *, empty: str = "None.") -> Any:
    """What a notebook displays for ``table``: the styled table, or the sentence ``empty``
    (as Markdown) when it has no rows."""
    from IPython.display import Markdown

    return Markdown(empty) if table.empty else style_table(table)  # type: ignore[no-untyped-call]


def folder_files(folder: str | Path, *, exclude: Sequence[str] = ("results.json",)
                 ) -> list[str]:
    """Names of the files directly in ``folder``, sorted, without ``exclude``."""
    return sorted(p.name for p in Path(folder).iterdir() if p.is_file() and p.name not in exclude)
