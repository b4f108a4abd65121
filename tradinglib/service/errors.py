"""Error answers of the service: always JSON ``{"detail": "..."}`` that says what is wrong
and how to fix it; a request never gets a bare traceback.

:func:`install_error_handlers` replaces FastAPI's defaults: request validation errors
(422) become one readable sentence per problem, unknown routes and methods (404, 405)
list what exists. :class:`UnexpectedErrors` logs an unexpected exception with its
traceback and answers 500 with a short detail.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tradinglib.validation import OBS_SIZE

log = logging.getLogger("tradinglib.service.error")

EXPECTED = (f'send {{"observation": [{OBS_SIZE} numbers]}} with '
            "'Content-Type: application/json'")
_MAX_PROBLEMS = 5


def describe_validation_error(error: dict[str, Any]) -> str:
    """One pydantic/FastAPI validation error as a sentence for the client."""
    loc = [str(part) for part in error.get("loc", ()) if part != "body"]
    kind = error.get("type", "")
    where = ".".join(loc)
    if kind == "json_invalid":
        reason = (error.get("ctx") or {}).get("error", "not JSON")
        return f"malformed JSON at character {where or 0}: {reason}; {EXPECTED}"
    if kind == "extra_forbidden":
        return f"unexpected field {where!r}; {EXPECTED}"
    if kind == "missing":
        return (f"field {where!r} is required; {EXPECTED}" if where
                else f"the request body is empty; {EXPECTED}")
    if kind in {"model_attributes_type", "model_type", "dict_type"}:
        return f"the body must be a JSON object; {EXPECTED}"
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    if kind == "value_error":
        return message
    return f"{where or 'body'}: {message}"


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    problems = [describe_validation_error(e) for e in exc.errors()]
    detail = "; ".join(dict.fromkeys(problems[:_MAX_PROBLEMS]))  # unique, in order
    if len(problems) > _MAX_PROBLEMS:
        detail += f" (and {len(problems) - _MAX_PROBLEMS} more problems)"
    return JSONResponse({"detail": detail}, status_code=422)


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    detail = str(exc.detail)
    routes = [r for r in request.app.routes if isinstance(r, Route)]
    if exc.status_code == 400:  # FastAPI could not parse the body (too deep, not text)
        detail = (f"{detail}: it is not JSON text that can be read (not UTF-8, or nested "
                  f"too deeply); {EXPECTED}")
    elif exc.status_code == 404:
        known = ", ".join(f"{'/'.join(sorted(r.methods or ()))} {r.path}" for r in routes
                          if r.include_in_schema)
        detail = f"no route {request.method} {request.url.path}; the service has {known}"
    elif exc.status_code == 405:
        allowed = sorted({m for r in routes if r.path == request.url.path
                          for m in r.methods or ()} - {"HEAD"})
        detail = (f"method {request.method} is not allowed on {request.url.path}; "
                  f"use {' or '.join(allowed)}")
    return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)


class UnexpectedErrors:
    """ASGI middleware: an exception the app did not handle is logged with its traceback
    and answered with a JSON 500, and goes no further, so the server keeps the
    connection open (an exception reaching uvicorn makes it close the connection, and a
    client may then see a reset instead of the answer)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:
            log.error("unexpected error on %s %s: %r", scope["method"], scope["path"], exc,
                      exc_info=exc)
            if started:  # too late for an answer of our own
                raise
            await JSONResponse({"detail": "internal error, logged by the service; the "
                                          "request was not answered, try again or report it"},
                               status_code=500)(scope, receive, send)


def install_error_handlers(app: FastAPI) -> None:
    """Register the JSON handlers of validation and HTTP errors on ``app``."""
    app.exception_handler(RequestValidationError)(_validation_error)
    app.exception_handler(HTTPException)(_http_error)
