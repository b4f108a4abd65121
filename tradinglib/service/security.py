"""Who may reach the service: the bind-address rule and the API token check.

Loopback addresses (127.0.0.0/8, ::1, ``localhost``) are reachable from this machine
only, so the service may run there without a token. Any other address (``0.0.0.0`` in a
container, a LAN address) exposes the model to the network and needs AI_SERVICE_TOKEN.
"""

from __future__ import annotations

import hmac

from tradinglib.exceptions import ConfigError
from tradinglib.loopback import is_loopback

TOKEN_HINT = ("set AI_SERVICE_TOKEN (at least 16 characters, e.g. from python -c "
              "'import secrets; print(secrets.token_urlsafe(32))') and send it as "
              "'Authorization: Bearer <token>'")


def check_bind(host: str, token: str | None) -> None:
    """Allow binding ``host`` only if it is loopback or a token is set.

    Raises:
        ConfigError: ``host`` is not a loopback address and ``token`` is None or empty.
    """
    if not token and not is_loopback(host):
        raise ConfigError(
            f"refusing to bind AI_SERVICE_HOST={host!r} without an API token: that address "
            "is reachable from other machines, and anyone there could query the model; "
            f"{TOKEN_HINT}, or bind 127.0.0.1")


def token_matches(header: str | None, token: str) -> bool:
    """True when an ``Authorization`` header value is ``Bearer <token>``; the token is
    compared in constant time (:func:`hmac.compare_digest`)."""
    scheme, _, given = (header or "").partition(" ")
    return hmac.compare_digest(given.strip().encode(), token.encode()) \
        and scheme.lower() == "bearer"
