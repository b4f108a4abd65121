"""The TWS socket framing: length-prefixed NUL-separated text fields, and the handshake.

Client hello: ``b"API\\0"``, then a 4-byte big-endian length and ``v<min>..<max>``
(optionally followed by a space and connect options), without a trailing NUL. Every
later message in both directions: a 4-byte big-endian length, then the fields as text,
each followed by ``\\0``. The server answers the hello with exactly two fields, the
negotiated server version and a connection time.
"""

from __future__ import annotations

import asyncio
import re
import struct
from dataclasses import dataclass

from tradinglib.exceptions import InputError

MIN_VERSION = 157
"""Lowest server version served (both ib_async 2.1 and ib_insync 0.9.86 need >= 157)."""
MAX_VERSION = 178
"""Highest server version served; later layouts (194 errorTime, 201 protobuf) differ."""
UNSET_DOUBLE = "1.7976931348623157E308"
"""TWS's text for an unset double (read as "no value" by the clients)."""
MAX_MESSAGE_BYTES = 1 << 20
"""Largest client message accepted, bytes (a placeOrder is about 500)."""

_HELLO = b"API\0"
_LENGTH = struct.Struct(">I")
_VERSIONS = re.compile(r"v(\d+)(?:\.\.(\d+))?(?: (.*))?$", re.DOTALL)

Field = str | int | float | bool
"""One message field before encoding: bools become ``1``/``0``, numbers plain text."""


class ProtocolError(InputError):
    """A client broke the TWS socket protocol (bad hello, unsupported versions, a
    malformed or oversized message); the gateway closes that connection."""


@dataclass(frozen=True, slots=True)
class Hello:
    """A client's hello: the API versions it supports and its connect options."""

    min_version: int
    max_version: int
    options: str


def encode(fields: list[Field] | tuple[Field, ...]) -> bytes:
    """One framed message: the length prefix, then each field as text plus ``\\0``."""
    body = "".join(f"{_text(f)}\0" for f in fields).encode()
    return _LENGTH.pack(len(body)) + body


def _text(value: Field) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def negotiate(hello: Hello) -> int:
    """The server version to answer ``hello`` with: ``min(client max, MAX_VERSION)``.

    Raises:
        ProtocolError: the client's range does not reach ``MIN_VERSION``..``MAX_VERSION``.
    """
    version = min(hello.max_version, MAX_VERSION)
    if version < max(hello.min_version, MIN_VERSION):
        raise ProtocolError(
            f"client API versions v{hello.min_version}..{hello.max_version} do not overlap "
            f"the gateway's v{MIN_VERSION}..{MAX_VERSION}; use ib_async >= 1.0 or "
            f"ib_insync >= 0.9.86")
    return version


def parse_hello(text: str) -> Hello:
    """Parse the version string of a hello, e.g. ``"v157..178 +PACEAPI"``.

    Raises:
        ProtocolError: not of the form ``v<min>..<max>``.
    """
    found = _VERSIONS.match(text)
    if found is None:
        raise ProtocolError(f"bad API hello {text[:40]!r}; expected e.g. 'v157..178'")
    low = int(found.group(1))
    high = int(found.group(2) or low)
    return Hello(low, high, found.group(3) or "")


async def read_hello(reader: asyncio.StreamReader) -> Hello:
    """Read and parse the client hello.

    Raises:
        ProtocolError: the stream does not start with ``API\\0`` or the hello is bad.
        asyncio.IncompleteReadError: the client closed the connection first.
    """
    prefix = await reader.readexactly(len(_HELLO))
    if prefix != _HELLO:
        raise ProtocolError(f"expected the API hello b'API\\x00', got {prefix!r}; "
                            "is this a TWS API client?")
    return parse_hello((await _read_frame(reader)).decode(errors="backslashreplace"))


async def read_message(reader: asyncio.StreamReader) -> list[str]:
    """Read one message and split it into its text fields.

    Raises:
        ProtocolError: an oversized message or one not ending in ``\\0``.
        asyncio.IncompleteReadError: the client closed the connection.
    """
    body = (await _read_frame(reader)).decode(errors="backslashreplace")
    if not body.endswith("\0"):
        raise ProtocolError(f"message {body[:40]!r} does not end in a NUL field separator")
    return body[:-1].split("\0")


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    (size,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
    if size > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"message of {size} bytes exceeds the limit of "
                            f"{MAX_MESSAGE_BYTES}")
    return await reader.readexactly(size)
