"""Training writes a checked artifact; the card is complete and reproducible."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tradinglib.data import bars_sha256
from tradinglib.exceptions import InputError
from tradinglib.features import FEATURE_NAMES, FEATURE_VERSION
from tradinglib.modelcard import ModelCard, card_path, file_sha256
from tradinglib.train import split_time, train_model

SMALL = {"n_steps": 128, "batch_size": 32, "n_epochs": 1}


def test_card_describes_the_artifact(tiny_model: tuple[Path, ModelCard],
                                     googl: pd.DataFrame) -> None:
    path, card = tiny_model
    on_disk = json.loads(card_path(path).read_text())
    assert on_disk["sha256"] == file_sha256(path) == card.sha256
    assert tuple(on_disk["feature_names"]) == FEATURE_NAMES
    assert on_disk["feature_version"] == FEATURE_VERSION
    assert on_disk["observation_space"]["shape"] == [26]
    assert on_disk["action_space"]["n"] == 3
    assert on_disk["actions"] == ["HOLD", "BUY", "SELL"]
    assert on_disk["seed"] == 7 and on_disk["total_timesteps"] == 1024
    assert {"stable-baselines3", "torch", "python"} <= set(on_disk["versions"])
    train, hold = card.training_data, card.holdout_data
    assert hold is not None
    assert train.end < hold.start
    assert train.rows + hold.rows == len(googl)
    assert hold.rows == pytest.approx(0.2 * len(googl), abs=1)
    split = pd.Timestamp(hold.start)
    assert train.sha256 == bars_sha256(googl[googl.index < split])
    for name in ("train", "holdout"):
        figures = card.metrics[name]
        for key in ("total_return", "sharpe", "max_drawdown", "trades", "buy_and_hold_return"):
            assert key in figures, (name, key)


@pytest.mark.slow
def test_same_seed_same_metrics(googl: pd.DataFrame, tmp_path: Path) -> None:
    cards = [train_model(googl, source="googl-daily", out=tmp_path / f"m{i}.zip", steps=384,
                         seed=seed, hyperparameters=SMALL, progress=False)
             for i, seed in enumerate((3, 3, 4))]
    assert cards[0].metrics == cards[1].metrics
    assert cards[0].hyperparameters == cards[1].hyperparameters


def test_bars_hash_ignores_layout_but_not_values(googl: pd.DataFrame) -> None:
    copy = googl.copy()
    assert bars_sha256(copy) == bars_sha256(googl)
    copy.iloc[5, 3] += 0.01
    assert bars_sha256(copy) != bars_sha256(googl)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"steps": 0}, "steps must be >= 1"),
        ({"out": "model.pt"}, r"must end in \.zip"),
        ({"holdout_fraction": 1.5}, "holdout fraction"),
        ({"hyperparameters": {"learning_rte": 0.1}}, "unknown hyperparameters"),
    ],
)
def test_bad_training_arguments(googl: pd.DataFrame, tmp_path: Path,
                                kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"source": "googl-daily", "out": tmp_path / "m.zip", "steps": 10}
    args.update(kwargs)
    with pytest.raises(InputError, match=message):
        train_model(googl, **args)  # type: ignore[arg-type]
    assert not (tmp_path / "m.zip").exists()


def test_split_time_is_by_position(googl: pd.DataFrame) -> None:
    split = split_time(googl, 0.25)
    assert (googl.index < split).sum() == int(len(googl) * 0.75)
