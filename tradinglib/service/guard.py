"""ASGI middleware that turns away requests before the app sees them: a missing or wrong
API token (401), a body that is not JSON (415) or is too large (413).

Every refusal is a JSON ``{"detail": ...}`` saying what to send instead. A body is read
here, at most ``max_body_bytes`` of it, and handed on to the app unchanged.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tradinglib.service.security import TOKEN_HINT, token_matches

MAX_BODY_BYTES = 16_384
"""Default largest request body, bytes (26 numbers take well under 1 KiB)."""

OPEN_PATHS = frozenset({"/health"})
"""Paths served without the token (container health checks carry none)."""

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class RequestGuard:
    """Check the token, the content type and the body size of each HTTP request.

    ``token`` None: no token is required. A request with a body (POST, PUT, PATCH) must
    have ``Content-Type: application/json`` (or ``+json``) and at most ``max_body_bytes``
    bytes of body.
    """

    def __init__(self, app: ASGIApp, *, token: str | None, max_body_bytes: int) -> None:
        self.app = app
        self.token = token
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if self.token and scope["path"] not in OPEN_PATHS \
                and not token_matches(headers.get("authorization"), self.token):
            await _refuse(scope, receive, send, 401,
                          f"missing or wrong API token: {TOKEN_HINT}",
                          {"WWW-Authenticate": "Bearer"})
            return
        if scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        problem = _content_type_problem(headers.get("content-type"))
        if problem:
            await _refuse(scope, receive, send, 415, problem)
            return
        body = await self._read_body(headers.get("content-length"), receive)
        if body is None:
            await _refuse(scope, receive, send, 413,
                          f"request body over {self.max_body_bytes} bytes; send "
                          '{"observation": [26 numbers]} only')
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read_body(self, length: str | None, receive: Receive) -> bytes | None:
        """The whole body, or None when it is (or says it is) over the limit."""
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return b"".join(chunks)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _content_type_problem(value: str | None) -> str:
    """Why ``value`` is not a JSON content type ("" when it is one)."""
    media = (value or "").split(";", 1)[0].strip().lower()
    if media == "application/json" or (media.startswith("application/")
                                        and media.endswith("+json")):
        return ""
    got = f"Content-Type {value!r}" if value else "no Content-Type"
    return f"{got}: send the body as JSON with 'Content-Type: application/json'"


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives ``body`` once, then defers to the real one."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, detail: str,
                  headers: dict[str, str] | None = None) -> None:
    await JSONResponse({"detail": detail}, status_code=status, headers=headers)(
        scope, receive, send)
