"""One DoPut stream as the server handles it, shared by the Flight DoPut handler and the
in-process data path (``docs/protocol.md`` § DoPut, § In-process data path).

A :class:`PutStream` is the server side of one topic's stream: every record batch is
size-checked, validated against the topic's schema, appended to the chunk file and
flushed to the OS, and answered with the :class:`~mosaico_bridge.protocol.descriptors.PutAck`
of the stream so far. Only the batch being written is held.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

import pyarrow as pa
from pyarrow import flight

from mosaico_bridge.protocol import descriptors as desc
from mosaico_bridge.protocol.errors import ErrorKind, InvalidArgumentError
from mosaico_bridge.server.access import flight_error
from mosaico_bridge.server.boundary import _translated
from mosaico_bridge.server.store import MosaicoStore


class PutStream:
    """The server side of one topic's DoPut stream.

    Args:
        store: the store the topic lives in.
        locator: the topic's locator ``sequence/topic``.
        topic_uuid: the topic's uuid from the DoPut descriptor.
        schema: the stream's schema.
        max_batch_bytes: largest record batch accepted, in bytes (IPC size).
        recheck: called before each batch and at the end; returns None while the caller
            may still write, else the refusal (a revoked or expired API key).

    Raises:
        InvalidArgumentError, BadKeyError, NotFoundError, LockedError: as
            :meth:`MosaicoStore.open_writer`.
    """

    def __init__(
        self, store: MosaicoStore, locator: str, topic_uuid: str | None, schema: pa.Schema, max_batch_bytes: int,
        recheck: Callable[[], str | None] = lambda: None,
    ) -> None:
        if "/" not in locator:
            raise flight_error(ErrorKind.INVALID_ARGUMENT, "DoPut descriptor must name a topic `sequence/topic`")
        self._writer = store.open_writer(locator, topic_uuid, schema)
        self._max_bytes = int(max_batch_bytes)
        self._recheck = recheck
        #: why the stream was refused, once it was (kept in the topic's notification)
        self.reason: str | None = None

    @property
    def locator(self) -> str:
        return self._writer.locator

    def write(self, batch: pa.RecordBatch) -> desc.PutAck:
        """Store one record batch; returns the acknowledgement of every row so far.

        Raises:
            pyarrow.flight.FlightUnauthenticatedError: the caller's key is no longer valid.
            pyarrow.flight.FlightServerError: the batch is larger than ``max_batch_bytes``
                (``TOO_LARGE``).
            InvalidArgumentError: the batch does not match the topic's schema.
            OSError: the chunk file cannot be written.
        """
        self.reason = self._recheck()
        if self.reason is not None:
            raise flight.FlightUnauthenticatedError(self.reason)
        size = pa.ipc.get_record_batch_size(batch)
        if size > self._max_bytes:
            self.reason = f"record batch of {size} bytes refused (limit {self._max_bytes} bytes)"
            raise flight_error(
                ErrorKind.TOO_LARGE,
                f"record batch of {size} bytes exceeds grpc_max_decode_message_size ({self._max_bytes} bytes)",
            )
        try:
            self._writer.write(batch)
        except InvalidArgumentError as exc:
            self.reason = f"record batch refused: {exc.reason}"
            raise
        return desc.PutAck(rows=self._writer.rows_written, body_bytes=self._writer.body_bytes_written)

    def end(self, complete: bool) -> None:
        """End the stream: finish the chunk if the client ended it and nothing was refused,
        else keep the rows written, unlock the topic and note why (``abort``).

        Raises:
            pyarrow.flight.FlightUnauthenticatedError: ``complete`` but the key was revoked
                meanwhile (the rows are kept, the topic is not finished).
        """
        if complete and self.reason is None:
            self.reason = self._recheck()
        if complete and self.reason is None:
            self._writer.finish()
            return
        self._writer.abort(self.reason)
        if complete:
            raise flight.FlightUnauthenticatedError(self.reason)


class LocalPutStream:
    """A DoPut stream from a client in the server's own process: the client's record
    batches go to :class:`PutStream` as Python objects, with no IPC encoding, gRPC or
    copy in between (``docs/protocol.md`` § In-process data path).

    It has the two halves a Flight ``do_put`` returns: :meth:`write_batch`,
    :meth:`done_writing` and :meth:`close` of the writer, and :meth:`read` of the
    metadata reader, which returns each PutAck (as bytes) and None once the stream ended.
    Errors are the ones a Flight client would see: one-line
    :class:`pyarrow.flight.FlightServerError` (the ErrorKind word in ``extra_info``) for a
    refusal, :class:`OSError` for a store that cannot be written.
    """

    def __init__(self, stream: PutStream) -> None:
        self._stream = stream
        self._acks: deque[bytes] = deque()
        self._cond = threading.Condition()
        self._ended = False

    def write_batch(self, batch: pa.RecordBatch) -> None:
        if self._ended:
            raise flight.FlightServerError(f"DoPut {self._stream.locator}: the stream has ended")
        try:
            with _translated("DoPut"):
                ack = self._stream.write(batch)
        except BaseException:
            self._end(False)
            raise
        with self._cond:
            self._acks.append(ack.to_bytes())
            self._cond.notify_all()

    def done_writing(self) -> None:
        if not self._ended:
            with _translated("DoPut"):
                self._end(True)

    def close(self) -> None:
        if not self._ended:
            self._end(False)

    def read(self) -> bytes | None:
        """The next acknowledgement; None once the stream has ended and all were read."""
        with self._cond:
            while not self._acks:
                if self._ended:
                    return None
                self._cond.wait()
            return self._acks.popleft()

    def _end(self, complete: bool) -> None:
        try:
            self._stream.end(complete)
        finally:
            with self._cond:
                self._ended = True
                self._cond.notify_all()
