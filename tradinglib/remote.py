"""A policy that asks the inference service (``tradinglib serve``) over HTTP.

:class:`RemotePolicy` has the interface a paper session uses of
:class:`~tradinglib.inference.LockedPolicy` (``decide``, ``predict``, ``sha256``,
``backend``, ``card``, ``calls``, ``fallbacks``), so a session can decide through a
service at AI_INFERENCE_URL instead of an in-process model. :meth:`RemotePolicy.decide`
never raises: a timeout, a refused connection, a 5xx, a refusal (4xx), a malformed
answer or an answer from another model than the card's gives HOLD with the reason, and
is counted by kind.
"""

from __future__ import annotations

import math
import time
import weakref
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import SecretStr

from tradinglib.config import Settings
from tradinglib.exceptions import (
    ConfigError,
    InputError,
    ModelError,
    ObservationError,
    RetryableError,
    TradingLibError,
)
from tradinglib.modelcard import ModelCard
from tradinglib.types import Action, CountsDecisions, Decision, DecisionCounts
from tradinglib.validation import validate_observation

DEFAULT_TIMEOUT = 2.0
"""Seconds to wait for each of connect, send and answer."""


@dataclass(frozen=True, slots=True)
class _Failure:
    """Why no action came back: the fallback kind, the detail, the error predict raises."""

    kind: str
    detail: str
    error: type[TradingLibError]


class RemotePolicy(CountsDecisions):
    """The inference service at ``url`` as a policy; thread-safe.

    Args:
        url: the service's base URL, e.g. ``http://127.0.0.1:8000`` (AI_INFERENCE_URL).
        timeout: seconds allowed for each of connecting, sending and the answer.
        card: the model card of the model the service should serve; answers from a
            model with another sha256 are refused (HOLD "model mismatch"). None: any.
        token: the service's API token (AI_SERVICE_TOKEN), sent as a Bearer token.

    Raises:
        InputError: ``url`` is not an http(s) URL, or ``timeout`` is not a positive number.
    """

    backend = "remote"

    def __init__(self, url: str, timeout: float = DEFAULT_TIMEOUT, *,
                 card: ModelCard | None = None, token: str | SecretStr | None = None) -> None:
        if not (isinstance(url, str) and url.startswith(("http://", "https://"))):
            raise InputError(f"inference URL {url!r} is not an http(s) URL; give e.g. "
                             "http://127.0.0.1:8000 (AI_INFERENCE_URL)")
        if not (isinstance(timeout, int | float) and math.isfinite(timeout) and timeout > 0):
            raise InputError(f"timeout {timeout!r} must be a positive number of seconds")
        self.url = url.rstrip("/")
        self.timeout = float(timeout)
        self.card = card
        secret = token.get_secret_value() if isinstance(token, SecretStr) else token
        headers = {"Authorization": f"Bearer {secret}"} if secret else {}
        try:
            self._client = httpx.Client(base_url=self.url, timeout=self.timeout,
                                        headers=headers)
        except httpx.InvalidURL as exc:
            raise InputError(f"inference URL {url!r} is not a valid URL ({exc}); give e.g. "
                             "http://127.0.0.1:8000 (AI_INFERENCE_URL)") from None
        self._close = weakref.finalize(self, self._client.close)  # sockets never leak
        self._served_sha256 = ""
        self.counts = DecisionCounts()

    @classmethod
    def from_settings(cls, settings: Settings, *, timeout: float = DEFAULT_TIMEOUT,
                      card: ModelCard | None = None) -> RemotePolicy:
        """The service at AI_INFERENCE_URL, with AI_SERVICE_TOKEN if set."""
        return cls(settings.ai_inference_url, timeout, card=card,
                   token=settings.ai_service_token)

    @property
    def sha256(self) -> str:
        """sha256 of the model: the card's, else the last one the service answered
        with ("" before any answer)."""
        return self.card.sha256 if self.card is not None else self._served_sha256

    def predict(self, obs: object) -> Action:
        """The service's action for ``obs`` (26 numbers).

        Raises:
            ObservationError: ``obs`` fails :func:`validate_observation` (nothing is sent).
            RetryableError: timeout, refused connection, a 5xx, a malformed answer or the
                service's own HOLD fallback.
            ConfigError: the service refused the token (401/403).
            InputError: the service refused the request otherwise (4xx).
            ModelError: the service serves another model than the card's.
        """
        answer = self._ask(obs)
        if isinstance(answer, _Failure):
            raise answer.error(f"{answer.kind}: {answer.detail}")
        return answer

    def decide(self, obs: object) -> Decision:
        """Like :meth:`predict` but never raises: HOLD with ``"<kind>: <detail>"`` as the
        reason when no answer can be had. Kinds: ``invalid observation``, ``timeout``,
        ``unreachable``, ``server error``, ``refused``, ``malformed answer``,
        ``model mismatch``, ``service fallback``."""
        started = time.perf_counter()
        answer = self._ask(obs)
        self.counts.add(1, [answer.kind] if isinstance(answer, _Failure) else ())
        if isinstance(answer, _Failure):
            return Decision(Action.HOLD, f"{answer.kind}: {answer.detail}",
                            time.perf_counter() - started)
        return Decision(answer, "model", time.perf_counter() - started)

    def close(self) -> None:
        """Close the HTTP connections (also done when the policy is garbage collected)."""
        self._close()

    def __enter__(self) -> RemotePolicy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _ask(self, obs: object) -> Action | _Failure:
        try:
            valid = validate_observation(obs)
        except ObservationError as exc:
            return _Failure("invalid observation", str(exc), ObservationError)
        try:
            response = self._client.post("/predict", json={"observation": valid.tolist()})
        except httpx.TimeoutException as exc:
            return _Failure("timeout", f"no answer from {self.url} within {self.timeout:g}s "
                            f"({type(exc).__name__})", RetryableError)
        except httpx.RequestError as exc:  # transport, decoding, redirects
            return _Failure("unreachable", f"{self.url}: {exc or type(exc).__name__}",
                            RetryableError)
        if response.status_code >= 500:
            return _Failure("server error", f"HTTP {response.status_code} "
                            f"{_detail(response)}", RetryableError)
        if response.status_code in (401, 403):
            return _Failure("refused", f"HTTP {response.status_code} {_detail(response)}; "
                            "check AI_SERVICE_TOKEN", ConfigError)
        if response.status_code != 200:
            return _Failure("refused", f"HTTP {response.status_code} {_detail(response)}",
                            InputError)
        return self._read(response)

    def _read(self, response: httpx.Response) -> Action | _Failure:
        """The action of a 200 answer, or why it cannot be used."""
        try:
            body: Any = response.json()
            action = Action[body["action"]]
            if body["action_id"] != action.value or not isinstance(body["model_sha256"], str):
                raise ValueError("action_id or model_sha256 does not fit")
            reason = body.get("reason", "model")
        except (ValueError, KeyError, TypeError) as exc:
            return _Failure("malformed answer", f"{response.text[:200]!r} ({exc!r})",
                            RetryableError)
        served = body["model_sha256"]
        self._served_sha256 = served
        if self.card is not None and served != self.card.sha256:
            return _Failure("model mismatch", f"the service answers with model "
                            f"{served[:12]}…, the card says {self.card.sha256[:12]}…",
                            ModelError)
        if reason != "model":
            return _Failure("service fallback", str(reason), RetryableError)
        return action


def _detail(response: httpx.Response) -> str:
    """The ``detail`` of a JSON error answer, else the start of the body."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    return str(detail) if detail is not None else repr(response.text[:200])
