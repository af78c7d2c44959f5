"""Errors raised by the Mosaico client, and the mapping of Flight errors back to the
protocol's error classes (``docs/protocol.md`` § Errors).

Every refusal by a server is a :class:`~mosaico_bridge.protocol.MosaicoError` of the class
its :class:`~mosaico_bridge.protocol.ErrorKind` names; the mapping reads the kind our
server sends in ``extra_info``, the gRPC status class of the exception, and nothing else
(never the message text). An unreachable server is a :class:`ConnectionError`.
"""

from __future__ import annotations

import pyarrow as pa
from pyarrow import flight

from ..protocol import errors as perr
from ..protocol.errors import (
    AlreadyExistsError,
    AuthenticationError,
    InternalError,
    InvalidArgumentError,
    MosaicoError,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
)

#: Any refusal by the server (the base class of the protocol errors).
ServerRefusedError = MosaicoError


class ClientError(MosaicoError):
    """A failure of the client itself rather than a refusal: a topic writer's background
    error, a spool that cannot be written."""

    kind = perr.ErrorKind.INTERNAL

    def __init__(self, reason: str) -> None:
        super().__init__(reason)


def translate(call: str, exc: BaseException) -> BaseException:
    """Map an error raised by the Flight call ``call`` to the protocol's error class.

    Returns:
        a :class:`MosaicoError` subclass for a refusal (with ``call`` and the server's
        reason), a :class:`ConnectionError` for an unavailable server or a timeout, and
        ``exc`` itself for anything that is not a Flight or Arrow error.
    """
    if isinstance(exc, MosaicoError):
        return exc
    reason = perr.flight_reason(exc)
    if isinstance(exc, flight.FlightUnauthenticatedError):
        return UnauthenticatedError(reason, call=call)
    if isinstance(exc, flight.FlightUnauthorizedError):
        return PermissionDeniedError(reason, call=call)
    if isinstance(exc, flight.FlightUnavailableError):
        return ConnectionError(f"{call}: server unavailable: {reason}")
    if isinstance(exc, flight.FlightTimedOutError):
        return ConnectionError(f"{call}: timed out: {reason}")
    kind = perr.kind_of(exc)
    if kind is not None:
        return perr.ERROR_CLASSES[kind](reason, call=call)
    # Servers that send no kind: the gRPC status as pyarrow raises it.
    if isinstance(exc, pa.ArrowKeyError):  # gRPC NOT_FOUND / ALREADY_EXISTS
        return NotFoundError(reason, call=call)
    if isinstance(exc, pa.ArrowInvalid):  # gRPC INVALID_ARGUMENT
        return InvalidArgumentError(reason, call=call)
    if isinstance(exc, (flight.FlightError, pa.ArrowException)):
        return InternalError(reason, call=call)
    return exc


__all__ = [
    "AlreadyExistsError",
    "AuthenticationError",
    "ClientError",
    "MosaicoError",
    "NotFoundError",
    "ServerRefusedError",
    "translate",
]
