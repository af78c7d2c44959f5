"""Exceptions raised by the Mosaico client, and the translation of Flight errors into them."""

from __future__ import annotations

import re

import pyarrow.flight as flight

from . import wire


class MosaicoError(Exception):
    """Base class of the errors raised by :mod:`mosaico_bridge.client`."""


class ServerRefusedError(MosaicoError):
    """The server answered a call with an error.

    Attributes:
        call: the DoAction name or Flight call (``"DoPut"``, ``"GetFlightInfo"`` ...).
        reason: the server's message, without the gRPC boilerplate.
    """

    def __init__(self, call: str, reason: str) -> None:
        super().__init__(f"server refused {call}: {reason}")
        self.call = call
        self.reason = reason


class NotFoundError(ServerRefusedError):
    """The resource named by the call does not exist on the server."""


class AuthenticationError(ServerRefusedError):
    """The server refused the API key: missing, malformed, unknown, revoked, expired or too weak."""


_BOILERPLATE = [
    re.compile(r"^Flight returned [a-z ]+ error, with message: ", re.I),
    re.compile(r"\. Detail: .*$", re.S),
    re.compile(r"\. gRPC client debug context: .*$", re.S),
    re.compile(r"\. Client context: .*$", re.S),
]


_AUTH_DETAIL = re.compile(r"\. Detail: (Unauthenticated|Unauthorized)\b")


def flight_message(exc: BaseException) -> str:
    """The server's own words in a Flight error, on one line."""
    text = str(exc)
    for pattern in _BOILERPLATE:
        text = pattern.sub("", text)
    return " ".join(text.split()) or type(exc).__name__


def translate(call: str, exc: BaseException) -> MosaicoError | BaseException:
    """Map a pyarrow Flight error raised by ``call`` to a :class:`MosaicoError`.

    Unavailable servers stay :class:`ConnectionError`; other exceptions pass unchanged.
    """
    reason = flight_message(exc)
    if isinstance(exc, (flight.FlightUnauthenticatedError, flight.FlightUnauthorizedError)):
        return AuthenticationError(call, reason)
    if not isinstance(exc, flight.FlightError) and _AUTH_DETAIL.search(str(exc)):
        # pyarrow 26 raises a plain OSError for a refused GetSchema; the status is in the text
        return AuthenticationError(call, reason)
    if isinstance(exc, flight.FlightUnavailableError):
        return ConnectionError(f"{call}: server unavailable: {reason}")
    if isinstance(exc, flight.FlightTimedOutError):
        return ConnectionError(f"{call}: timed out: {reason}")
    if isinstance(exc, flight.FlightError):
        kind = wire.error_kind(exc)
        if kind == "not_found" or (kind is None and ("not found" in reason.lower() or "does not exist" in reason.lower())):
            return NotFoundError(call, reason)
        return ServerRefusedError(call, reason)
    return exc
