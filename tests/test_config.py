"""Settings: seed defaults, environment and .env, and clear errors for bad values."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tradinglib.config import Settings, load_settings
from tradinglib.exceptions import ConfigError
from tradinglib.risk import RiskLimits

SEED_DEFAULTS = {
    "AI_SERVICE_HOST": "127.0.0.1",
    "AI_SERVICE_PORT": 8000,
    "AI_SERVICE_WORKERS": 1,
    "AI_INFERENCE_URL": "http://localhost:8000",
    "TRADING_CYCLE_SECONDS": 30,
    "TRADE_QUANTITY": 5,
    "MAX_DAILY_LOSS": 500,
    "MAX_POSITION_VALUE": 10000,
    "TRADING_SESSION_MINUTES": 30,
}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for name in SEED_DEFAULTS:
        monkeypatch.delenv(name, raising=False)


def test_defaults_are_the_seeds() -> None:
    settings = load_settings()
    for name, value in SEED_DEFAULTS.items():
        assert getattr(settings, name.lower()) == value, name


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_DAILY_LOSS", "250.5")
    monkeypatch.setenv("TRADE_QUANTITY", "3")
    settings = load_settings()
    assert settings.max_daily_loss == 250.5
    assert settings.trade_quantity == 3


def test_dotenv_is_read_and_environment_wins(monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("MAX_POSITION_VALUE=2000\nTRADE_QUANTITY=7\n")
    monkeypatch.setenv("TRADE_QUANTITY", "2")
    settings = load_settings()
    assert settings.max_position_value == 2000
    assert settings.trade_quantity == 2


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MAX_DAILY_LOSS", "abc"),
        ("MAX_DAILY_LOSS", "-5"),
        ("MAX_POSITION_VALUE", "0"),
        ("TRADE_QUANTITY", "2.5"),
        ("TRADE_QUANTITY", "-1"),
        ("AI_SERVICE_PORT", "70000"),
        ("AI_SERVICE_WORKERS", "0"),
        ("TRADING_CYCLE_SECONDS", "never"),
        ("AI_INFERENCE_URL", "localhost:8000"),
        ("TRADING_SESSION_MINUTES", "-30"),
    ],
)
def test_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch, name: str,
                                      value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name) as info:
        load_settings()
    assert repr(value) in str(info.value)


def test_bad_value_in_dotenv_names_the_file(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("MAX_DAILY_LOSS=lots\n")
    with pytest.raises(ConfigError, match=r"MAX_DAILY_LOSS='lots'") as info:
        load_settings()
    assert ".env" in str(info.value)


def test_limits_follow_settings_with_overrides() -> None:
    settings = Settings(max_daily_loss=100, trade_quantity=2)
    limits = RiskLimits.from_settings(settings, max_position_value=1234.0)
    assert (limits.max_daily_loss, limits.trade_quantity, limits.max_position_value) == (
        100, 2, 1234.0)


def test_cli_stops_at_start_on_bad_setting(tmp_path: Path) -> None:
    env = {"PATH": str(Path(sys.executable).parent), "MAX_DAILY_LOSS": "abc"}
    proc = subprocess.run([sys.executable, "-m", "tradinglib.cli", "config"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "MAX_DAILY_LOSS='abc'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_service_token_is_secret_optional_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AI_SERVICE_TOKEN", raising=False)
    assert load_settings().ai_service_token is None
    monkeypatch.setenv("AI_SERVICE_TOKEN", "")
    assert load_settings().ai_service_token is None  # empty means none
    token = "s3cret-token-0123456789"
    monkeypatch.setenv("AI_SERVICE_TOKEN", token)
    settings = load_settings()
    assert settings.ai_service_token is not None
    assert settings.ai_service_token.get_secret_value() == token
    assert token not in repr(settings) and token not in str(settings.model_dump())
    monkeypatch.setenv("AI_SERVICE_TOKEN", "short-secret")
    with pytest.raises(ConfigError, match=r"AI_SERVICE_TOKEN=<hidden>: .*at least 16") as info:
        load_settings()
    assert "short-secret" not in str(info.value)
