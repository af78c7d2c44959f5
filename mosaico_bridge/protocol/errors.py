"""The error vocabulary shared by both ends of the wire.

The server raises these classes; the Flight layer carries the :class:`ErrorKind` word of
the error in ``FlightError.extra_info`` (and, for the two access errors, the matching
gRPC status); the client maps a Flight error back to the same class with
:func:`from_flight_error`. No code on either side looks at message text
(``docs/protocol.md`` § Errors).
"""

from __future__ import annotations

import enum
import re
from typing import ClassVar


class ErrorKind(str, enum.Enum):
    """Category of a refusal; the value is the ASCII word sent in ``extra_info``."""

    INVALID_ARGUMENT = "invalid_argument"
    NOT_FOUND = "not_found"
    ALREADY_EXISTS = "already_exists"
    LOCKED = "locked"
    BAD_KEY = "bad_key"
    TOO_LARGE = "too_large"
    UNAUTHENTICATED = "unauthenticated"
    PERMISSION_DENIED = "permission_denied"
    INTERNAL = "internal"


class MosaicoError(Exception):
    """Base class of every error of the Mosaico protocol.

    Attributes:
        reason: the refusal in one line, as the server phrased it.
        call: the DoAction name or Flight call it answers (``"DoPut"``,
            ``"sequence_create"``), when known (set on the client side).
    """

    kind: ClassVar[ErrorKind] = ErrorKind.INTERNAL

    def __init__(self, reason: str, *, call: str | None = None) -> None:
        self.reason = " ".join(str(reason).split()) or type(self).__name__
        self.call = call
        super().__init__(f"server refused {call}: {self.reason}" if call else self.reason)


class InvalidArgumentError(MosaicoError):
    """A malformed name, locator, body, descriptor, schema, record batch or value."""

    kind = ErrorKind.INVALID_ARGUMENT


class MalformedMessageError(InvalidArgumentError):
    """A message that does not have the shape the protocol requires (JSON, keys, types)."""


class NotFoundError(MosaicoError):
    """No sequence, session, topic or API key of that name."""

    kind = ErrorKind.NOT_FOUND


class AlreadyExistsError(MosaicoError):
    """A sequence or topic of that name exists already."""

    kind = ErrorKind.ALREADY_EXISTS


class LockedError(MosaicoError):
    """The resource is locked (its session was finalized) or busy (a DoPut is open)."""

    kind = ErrorKind.LOCKED


class BadKeyError(MosaicoError):
    """The uuid given with a DoPut or finalize is malformed or not the resource's."""

    kind = ErrorKind.BAD_KEY


class TooLargeError(MosaicoError):
    """A message larger than the server's ``grpc_max_decode_message_size``."""

    kind = ErrorKind.TOO_LARGE


class InternalError(MosaicoError):
    """The server failed for a reason of its own (the client did nothing wrong)."""

    kind = ErrorKind.INTERNAL


class AuthenticationError(MosaicoError):
    """Base of the two access refusals: the key is unusable, or too weak for the call."""


class UnauthenticatedError(AuthenticationError):
    """No usable API key: missing, malformed, unknown, revoked or expired (gRPC UNAUTHENTICATED)."""

    kind = ErrorKind.UNAUTHENTICATED


class PermissionDeniedError(AuthenticationError):
    """A valid key below the level the call needs (gRPC PERMISSION_DENIED)."""

    kind = ErrorKind.PERMISSION_DENIED


#: ErrorKind -> class, for the client's mapping.
ERROR_CLASSES: dict[ErrorKind, type[MosaicoError]] = {
    cls.kind: cls
    for cls in (
        InvalidArgumentError,
        NotFoundError,
        AlreadyExistsError,
        LockedError,
        BadKeyError,
        TooLargeError,
        InternalError,
        UnauthenticatedError,
        PermissionDeniedError,
    )
}


def extra_info(kind: ErrorKind) -> bytes:
    """The bytes a server puts in ``FlightError.extra_info`` for an error of ``kind``."""
    return ErrorKind(kind).value.encode("ascii")


def kind_of(exc: BaseException) -> ErrorKind | None:
    """The :class:`ErrorKind` carried by a Flight error's ``extra_info``, or None.

    None for errors of servers that do not send one (mosaicod reports most refusals
    with one gRPC code and no kind).
    """
    extra = getattr(exc, "extra_info", None)
    if not extra:
        return None
    try:
        return ErrorKind(bytes(extra).decode("ascii"))
    except (UnicodeDecodeError, TypeError, ValueError):
        return None


_BOILERPLATE = [
    re.compile(r"^Flight returned [a-z ]+ error, with message: ", re.IGNORECASE),
    re.compile(r"\. Detail: .*$", re.DOTALL),
    re.compile(r"\. gRPC client debug context: .*$", re.DOTALL),
    re.compile(r"\. Client context: .*$", re.DOTALL),
]


def flight_reason(exc: BaseException) -> str:
    """The server's own words in a Flight error, on one line (gRPC decoration removed).

    Only used to build :attr:`MosaicoError.reason`; never to decide what kind of error it is.
    """
    text = str(exc)
    for pattern in _BOILERPLATE:
        text = pattern.sub("", text)
    return " ".join(text.split()) or type(exc).__name__
