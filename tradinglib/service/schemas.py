"""Request and response bodies of the inference service (pydantic v2 models).

:class:`PredictRequest` accepts what :func:`~tradinglib.validation.validate_observation`
accepts, with its messages: exactly 26 real numbers (JSON numbers, not strings or
booleans), each finite and within ``[OBS_LOW, OBS_HIGH]``, and no other field.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tradinglib.types import Action
from tradinglib.validation import OBS_HIGH, OBS_LOW, OBS_SIZE, validate_observation

ActionName = Literal["HOLD", "BUY", "SELL"]
"""The names of :class:`~tradinglib.types.Action`, as answered."""
Feature = Annotated[float, Field(ge=OBS_LOW, le=OBS_HIGH, allow_inf_nan=False)]


class PredictRequest(BaseModel):
    """``POST /predict`` body: ``{"observation": [26 numbers]}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    observation: list[Feature] = Field(
        min_length=OBS_SIZE, max_length=OBS_SIZE,
        description=f"the {OBS_SIZE} features (`tradinglib features`), each a finite number "
                    f"in [{OBS_LOW:g}, {OBS_HIGH:g}]")

    @field_validator("observation", mode="before")
    @classmethod
    def _valid(cls, value: object) -> list[float]:
        """The observation as floats; raises ObservationError (a ValueError) naming the
        first bad element."""
        return validate_observation(value).tolist()  # type: ignore[no-any-return]


class PredictResponse(BaseModel):
    """``POST /predict`` answer.

    ``reason`` is ``"model"`` for the model's answer, otherwise why HOLD was used (the
    model timed out or failed); ``latency_ms`` is the server's inference time.
    """

    action: ActionName
    action_id: int = Field(ge=0, le=len(Action) - 1, description="0 HOLD, 1 BUY, 2 SELL")
    model_sha256: str
    latency_ms: float = Field(ge=0, description="inference time in the server, milliseconds")
    reason: str = "model"


class HealthResponse(BaseModel):
    """``GET /health`` answer; ``uptime_s`` in seconds, request counts by status code."""

    status: str
    model_sha256: str
    feature_version: str
    backend: str
    uptime_s: float
    requests: dict[str, int]
    predictions: int
    hold_fallbacks: int


class ErrorResponse(BaseModel):
    """Every error answer: ``detail`` says what is wrong and how to fix it."""

    detail: str
