"""The model card: a JSON file beside each model zip that says what the model is.

``models/NAME.zip`` has its card at ``models/NAME.card.json``. Loading checks the zip's
sha256 against the card and the card's feature and action contract against this library.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from tradinglib.exceptions import ModelError

CARD_SUFFIX = ".card.json"


class SpaceInfo(BaseModel):
    """A gymnasium space as recorded in a card."""

    model_config = ConfigDict(frozen=True)

    kind: str
    shape: tuple[int, ...] = ()
    dtype: str = ""
    low: float | None = None
    high: float | None = None
    n: int | None = None


class DataInfo(BaseModel):
    """A slice of market data: source, sha256 of the bars, time range and row count."""

    model_config = ConfigDict(frozen=True)

    source: str
    sha256: str
    start: str
    end: str
    rows: int


class ModelCard(BaseModel):
    """Everything needed to trust and reproduce a model artifact."""

    model_config = ConfigDict(frozen=True, protected_namespaces=())

    card_version: int = 1
    model_file: str
    sha256: str
    created: str
    algorithm: str
    policy: str
    feature_names: tuple[str, ...]
    feature_version: str
    observation_space: SpaceInfo
    action_space: SpaceInfo
    actions: tuple[str, ...]
    training_data: DataInfo
    holdout_data: DataInfo | None
    hyperparameters: dict[str, Any]
    seed: int
    total_timesteps: int
    limits: dict[str, Any]
    costs: dict[str, Any]
    versions: dict[str, str]
    metrics: dict[str, dict[str, Any]]

    def write(self, path: str | Path) -> Path:
        """Write the card as indented JSON; return the path."""
        target = Path(path)
        target.write_text(json.dumps(self.model_dump(mode="json"), indent=2) + "\n")
        return target


def card_path(model_path: str | Path) -> Path:
    """Where the card of ``model_path`` lives: ``NAME.zip`` -> ``NAME.card.json``."""
    p = Path(model_path)
    return p.with_name(p.name.removesuffix(".zip") + CARD_SUFFIX)


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes (read in 1 MiB chunks)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_card(model_path: str | Path) -> ModelCard:
    """Read and validate the card beside ``model_path``.

    Raises:
        ModelError: the card is missing, not JSON, or lacks required fields.
    """
    path = card_path(model_path)
    if not path.is_file():
        raise ModelError(
            f"model card {path} not found beside {model_path}; a model is only used with its "
            "card (train it with `tradinglib train`, which writes both)"
        )
    try:
        return ModelCard.model_validate_json(path.read_text())
    except (ValidationError, UnicodeDecodeError) as exc:
        first = str(exc).splitlines()[0:3]
        raise ModelError(f"model card {path} is not valid: {' '.join(first)}") from None
