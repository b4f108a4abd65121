"""Shared fixtures: real data, and a tiny model trained once per test session."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn

import pandas as pd
import pytest

from tradinglib.modelcard import ModelCard

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TINY_STEPS = 1024


def missing(what: str) -> NoReturn:
    """Skip a test whose tool is absent here; under CI (``CI`` set), where `make test` and
    .ci/run install every tool, fail instead: a silent skip there hides a broken set-up."""
    if os.environ.get("CI"):
        pytest.fail(f"{what}, but CI installs it: the set-up is broken")
    pytest.skip(what)


def shared_file(name: str) -> Path:
    """A file of ../shared/data, or skip the test when that folder is absent."""
    path = SHARED_DATA / name
    if not path.is_file():
        pytest.skip(f"{path} not found: the shared real-data folder is absent")
    return path


@pytest.fixture(scope="session")
def googl() -> pd.DataFrame:
    """Built-in GOOGL daily bars (read-only: copy before changing)."""
    from tradinglib.data import load_bars

    return load_bars("googl-daily")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, googl: pd.DataFrame
               ) -> tuple[Path, ModelCard]:
    """A PPO model trained for a few steps on GOOGL daily, with its card."""
    from tradinglib.train import train_model

    out = tmp_path_factory.mktemp("models") / "tiny.zip"
    card = train_model(googl, source="googl-daily", out=out, steps=TINY_STEPS, seed=7,
                       hyperparameters={"n_steps": 256, "batch_size": 64, "n_epochs": 2},
                       progress=False)
    return out, card
