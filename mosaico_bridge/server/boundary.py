"""The server's error boundary: how a failure inside a Flight call reaches the client.

Every refusal is one line with the :class:`~mosaico_bridge.protocol.ErrorKind` word in
``extra_info`` (``docs/protocol.md`` § Errors); an unexpected failure is logged here and
sent as ``internal server error in <call>``, never with a path or a traceback.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from pyarrow import flight

from mosaico_bridge.protocol.errors import (
    ErrorKind,
    MosaicoError,
    flight_reason,
    kind_of,
)
from mosaico_bridge.server.access import flight_error

logger = logging.getLogger("mosaico_bridge.server")


@contextlib.contextmanager
def _translated(call: str) -> Iterator[None]:
    """Turn store, wire and unexpected errors into one-line Flight errors."""
    try:
        yield
    except flight.FlightError:
        raise
    except MosaicoError as exc:
        logger.info("%s refused: %s", call, exc)
        raise flight_error(exc.kind, exc.reason) from None
    except Exception:
        logger.exception("%s failed", call)
        raise flight_error(ErrorKind.INTERNAL, f"internal server error in {call}") from None


class _SchemaRefusal(Exception):
    """A GetSchema refusal that reaches the client as its one-line message only."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "GetSchema refused"

    @property
    def __notes__(self) -> list[str]:  # type: ignore[override]
        # traceback.TracebackException reads this with getattr(..., None); raising a
        # LookupError (not AttributeError) makes the formatting fail, and pyarrow then
        # sends "Python exception: <type name>" instead of the traceback.
        raise LookupError("no notes")

    @classmethod
    def of(cls, exc: flight.FlightError) -> Exception:
        kind = kind_of(exc)
        if isinstance(exc, (flight.FlightUnauthenticatedError, flight.FlightUnauthorizedError)):
            kind = None
        text = flight_reason(exc)
        if kind is ErrorKind.NOT_FOUND:
            return _SchemaNotFound(text)
        if kind is ErrorKind.INVALID_ARGUMENT:
            return _SchemaInvalid(text)
        return cls(text)


class _SchemaNotFound(_SchemaRefusal, KeyError):
    """Sent as ArrowKeyError (gRPC NOT_FOUND)."""


class _SchemaInvalid(_SchemaRefusal, ValueError):
    """Sent as ArrowInvalid (gRPC INVALID_ARGUMENT)."""
