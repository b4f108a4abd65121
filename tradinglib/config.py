"""Configuration from environment variables and an optional ``.env`` file.

The variables and defaults are the seed system's. Notebook parameters override them
per run. An invalid value raises :class:`~tradinglib.exceptions.ConfigError` naming the
variable, so a program stops at start instead of trading with a bad limit.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tradinglib.exceptions import ConfigError

MIN_TOKEN_LENGTH = 16
"""Fewest characters of AI_SERVICE_TOKEN."""
_SECRETS = frozenset({"AI_SERVICE_TOKEN"})


class Settings(BaseSettings):
    """Seed variables (environment names are the upper-case field names).

    Units: ports are TCP ports, ``*_seconds`` seconds, ``*_minutes`` minutes, money in
    the account currency (USD), quantities in shares.
    """

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True
    )

    ai_service_host: str = Field("127.0.0.1", min_length=1)
    ai_service_port: int = Field(8000, ge=1, le=65535)
    ai_service_workers: int = Field(1, ge=1, le=64)
    ai_inference_url: str = Field("http://localhost:8000", pattern=r"^https?://\S+$")
    trading_cycle_seconds: float = Field(30.0, gt=0)
    trade_quantity: int = Field(5, gt=0)
    max_daily_loss: float = Field(500.0, gt=0)
    max_position_value: float = Field(10_000.0, gt=0)
    trading_session_minutes: float = Field(30.0, gt=0)
    ai_service_token: SecretStr | None = None
    """API token of the inference service and of a remote policy calling it; None (or
    empty) for no token, which the service allows on a loopback address only."""

    @field_validator("ai_service_token", mode="before")
    @classmethod
    def _token(cls, value: object) -> object:
        """An empty token is no token; a set one has at least MIN_TOKEN_LENGTH characters."""
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if text == "":
            return None
        if isinstance(text, str) and len(text) < MIN_TOKEN_LENGTH:
            raise ValueError(f"the token has {len(text)} characters, use at least "
                             f"{MIN_TOKEN_LENGTH}, e.g. from "
                             "python -c 'import secrets; print(secrets.token_urlsafe(32))'")
        return value


def load_settings(env_file: str | Path | None = ".env") -> Settings:
    """Read :class:`Settings` from the environment and ``env_file`` (if it exists).

    Environment variables win over the file. Raises:
        ConfigError: a value is invalid; the message names the variable and the value.
    """
    try:
        return Settings(_env_file=env_file)  # type: ignore[call-arg]
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = str(err["loc"][0]).upper() if err["loc"] else "?"
            shown = "<hidden>" if name in _SECRETS else repr(err.get("input"))
            problems.append(f"{name}={shown}: {err['msg']}")
        source = f" (environment or {env_file})" if env_file else " (environment)"
        raise ConfigError(
            "invalid configuration" + source + ": " + "; ".join(problems)
            + ". Fix or unset the variable; README lists the defaults."
        ) from None
