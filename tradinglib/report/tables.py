"""Report tables: metrics, model card, trades, rejections, fallbacks, provenance and
file hashes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import pandas as pd

from tradinglib.backtest import summary_rows
from tradinglib.modelcard import ModelCard
from tradinglib.report.formatting import _HEX, _money, _short, _text

_NO_REASON: Final = {"", "APPROVED", "nan", "None"}


def metrics_table(metrics: Mapping[str, Any]) -> pd.DataFrame:
    """Figures of a backtest or session as (figure, value) rows, formatted for reading."""
    return pd.DataFrame(summary_rows(dict(metrics)), columns=["figure", "value"])


_CARD_FIGURES: Final = ("total_return", "buy_and_hold_return", "sharpe", "max_drawdown",
                        "trades", "final_equity")


def card_metrics_table(card: ModelCard) -> pd.DataFrame:
    """The card's evaluation figures: one row per figure, one column per range."""
    ranges = [("train", card.training_data), ("holdout", card.holdout_data)]
    columns: dict[str, list[str]] = {"figure": list(_CARD_FIGURES)}
    for name, info in ranges:
        if info is None or name not in card.metrics:
            continue
        values = dict(summary_rows({k: card.metrics[name].get(k) for k in _CARD_FIGURES}))
        columns[f"{name} {info.start[:10]}..{info.end[:10]}"] = [values[k]
                                                                  for k in _CARD_FIGURES]
    return pd.DataFrame(columns)


def card_table(card: ModelCard) -> pd.DataFrame:
    """What a reader needs to know about a model: file, hash, training and holdout ranges."""
    rows = [
        ("model file", card.model_file),
        ("sha256", _short(card.sha256)),
        ("trained", card.created),
        ("algorithm", f"{card.algorithm} ({card.policy})"),
        ("training steps", f"{card.total_timesteps:,}"),
        ("seed", str(card.seed)),
        ("training data", f"{card.training_data.source}: {card.training_data.start[:10]} .. "
                          f"{card.training_data.end[:10]} ({card.training_data.rows:,} bars)"),
    ]
    if card.holdout_data is not None:
        info = card.holdout_data
        rows.append(("held-out data", f"{info.source}: {info.start[:10]} .. {info.end[:10]} "
                                      f"({info.rows:,} bars)"))
    holdout = card.metrics.get("holdout", {})
    for key, label in (("total_return", "held-out return"), ("sharpe", "held-out Sharpe"),
                       ("max_drawdown", "held-out max drawdown")):
        if key in holdout:
            rows.append((label, dict(summary_rows({key: holdout[key]}))[key]))
    rows.append(("features", f"{len(card.feature_names)} (version {card.feature_version})"))
    return pd.DataFrame(rows, columns=["item", "value"])


def trades_table(trades: pd.DataFrame) -> pd.DataFrame:
    """Fills formatted for reading: time, side, shares, price, commission, realized P&L."""
    if trades.empty:
        return pd.DataFrame(columns=["time", "side", "shares", "price", "commission",
                                     "realized P&L"])
    return pd.DataFrame({
        "time": [_text(t) for t in trades["time"]],
        "side": trades["side"].astype(str).str.upper(),
        "shares": trades["quantity"].abs().astype(int),
        "price": trades["price"].astype(float).map(_money),
        "commission": trades["commission"].astype(float).map(_money),
        "realized P&L": trades["realized_pnl"].astype(float).map(lambda v: f"{v:+,.2f}"),
    })


def rejection_table(decisions: pd.DataFrame) -> pd.DataFrame:
    """Orders the risk guard rejected, counted by reason (most frequent first).

    Columns: reason, rejected (count), share (of all order intents, percent text).
    """
    if decisions.empty or "verdict" not in decisions:
        return pd.DataFrame(columns=["reason", "rejected", "share"])
    verdicts = decisions["verdict"].map(_text)
    intents = int((verdicts != "").sum())
    rejected = verdicts[~verdicts.isin(_NO_REASON)]
    counts = rejected.value_counts()
    return pd.DataFrame({
        "reason": [str(r) for r in counts.index],
        "rejected": [int(c) for c in counts.to_numpy()],
        "share": [f"{c / intents:.1%}" for c in counts.to_numpy()],
    })


def fallback_table(decisions: pd.DataFrame) -> pd.DataFrame:
    """HOLD fallbacks (the model could not answer) counted by kind.

    The kind is the reason up to its first colon (``"timeout"``, ``"invalid observation"``,
    ``"model error"``). Columns: kind, count, first (time), example (one full reason).
    """
    columns = ["kind", "count", "first", "example"]
    if decisions.empty or "fallback" not in decisions:
        return pd.DataFrame(columns=columns)
    reasons = decisions["fallback"].map(_text)
    rows = decisions[reasons != ""]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    kinds = reasons[reasons != ""].str.split(":", n=1).str[0].str.strip()
    out = []
    for kind, group in rows.groupby(kinds, sort=False):
        out.append((str(kind), len(group), _text(group["time"].iloc[0]),
                    _text(group["fallback"].iloc[0])))
    return pd.DataFrame(out, columns=columns).sort_values("count", ascending=False,
                                                          kind="stable")


def provenance_table(manifest: Mapping[str, Any]) -> pd.DataFrame:
    """A run manifest as (item, value) rows: status, times, git commit, versions, hashes.

    Nested mappings become ``parent.child`` items; the per-file fingerprints (``files``:
    file -> {sha256, bytes}) are summarized as a count (:func:`file_hashes_table` lists
    them); sha256 values are shortened to 12 characters.
    """
    rows: list[tuple[str, str]] = []

    def walk(prefix: str, value: object) -> None:
        if isinstance(value, Mapping):
            if prefix == "files" and value and all(
                    isinstance(v, Mapping) and _is_sha(v.get("sha256")) for v in value.values()):
                rows.append((prefix, f"{len(value)} files (fingerprints listed below)"))
                return
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), item)
        elif isinstance(value, list | tuple):
            if all(not isinstance(v, Mapping | list | tuple) for v in value) and len(value) <= 6:
                rows.append((prefix, ", ".join(_short(v) for v in value)))
            else:
                rows.append((prefix, f"{len(value)} entries"))
        else:
            rows.append((prefix, _short(value)))

    walk("", manifest)
    return pd.DataFrame(rows, columns=["item", "value"])


def _is_sha(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and set(value) <= _HEX


def file_hashes_table(manifest: Mapping[str, Any]) -> pd.DataFrame:
    """The per-file sha256 list of a manifest: file, sha256 (full), size if given.

    Reads ``manifest["files"]`` where present, else the first mapping (at any depth) whose
    values are sha256 strings or records with a ``sha256`` key.
    """
    found: list[tuple[str, str, str]] = []
    is_sha = _is_sha

    def walk(value: object) -> bool:
        if isinstance(value, Mapping):
            if value and all(is_sha(v) for v in value.values()) and len(value) > 1:
                found.extend((str(k), str(v), "") for k, v in value.items())
                return True
            if value and all(isinstance(v, Mapping) and is_sha(v.get("sha256"))
                             for v in value.values()):
                found.extend((str(k), str(v["sha256"]), _text(v.get("size", v.get("bytes"))))
                             for k, v in value.items())
                return True
            return any(walk(v) for v in value.values())
        if isinstance(value, list) and value and all(
                isinstance(v, Mapping) and is_sha(v.get("sha256")) for v in value):
            found.extend((_text(v.get("path", v.get("file", v.get("name")))), str(v["sha256"]),
                          _text(v.get("size", v.get("bytes")))) for v in value)
            return True
        return False

    if "files" not in manifest or not walk({"files": manifest["files"]}):
        walk(manifest)
    return pd.DataFrame(found, columns=["file", "sha256", "size"])
