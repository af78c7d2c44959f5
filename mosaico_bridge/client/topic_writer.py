"""TopicWriter: buffers the messages of one topic, converts them on the processing
layer, and streams the record batches over the topic's DoPut stream on its data
connection (``docs/protocol.md`` § Write path).
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Protocol, Sequence

import pyarrow as pa
import pyarrow.flight as flight

from .data import DataConnection
from ..protocol.errors import InvalidArgumentError, MosaicoError
from .errors import ClientError, translate
from .processing import ExecutorPool
from .spool import SpoolFile

log = logging.getLogger("mosaico_bridge.client")

#: Record batches of one topic that may be converting or uploading at once; a producer
#: that gets further ahead blocks in :meth:`TopicWriter.push` (bounded memory).
MAX_INFLIGHT_BATCHES = 4


class BatchConverter(Protocol):
    """What a TopicWriter needs to turn serialized messages into record batches.

    :class:`mosaico_bridge.conversion.TopicConverter` is one.
    """

    schema: pa.Schema
    ontology_tag: str
    serialization_format: str

    def convert(self, timestamps_ns: Sequence[int], messages: Sequence[Any]) -> pa.RecordBatch: ...


@dataclass
class TopicStats:
    """Counters of one topic writer. Sizes in bytes, latencies in nanoseconds.

    ``received`` messages pushed; ``written`` rows handed to the server;
    ``dropped`` rows refused because a single row exceeds the server's message limit;
    ``bytes`` Arrow IPC bytes written; ``spooled`` rows put in the local spool after the
    DoPut stream failed; ``latency_*`` from push to the end of the write.
    """

    received: int = 0
    written: int = 0
    dropped: int = 0
    spooled: int = 0
    bytes: int = 0
    batches: int = 0
    latency_ns_max: int = 0
    latency_ns_sum: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            mean = self.latency_ns_sum // self.written if self.written else 0
            return {
                "received": self.received,
                "written": self.written,
                "dropped": self.dropped,
                "spooled": self.spooled,
                "bytes": self.bytes,
                "batches": self.batches,
                "latency_ns_mean": mean,
                "latency_ns_max": self.latency_ns_max,
            }


class TopicWriter:
    """Writer of one topic of an open session. Made by ``SequenceWriter.topic_create``.

    Messages go in with :meth:`push` (serialized message + its timestamp in
    nanoseconds, converted by the topic's converter) or :meth:`push_batch` (an Arrow
    record batch already in the topic's schema). A batch is cut when the buffered
    messages reach ``max_batch_records`` or their estimated Arrow size reaches
    ``max_batch_bytes``; a converted batch larger than ``max_batch_bytes`` is split
    before it is written, and a single row larger than that is dropped with a topic
    notification (the server could not take it).
    """

    def __init__(
        self,
        name: str,
        locator: str,
        uuid: str,
        schema: pa.Schema,
        converter: Optional[BatchConverter],
        connection: DataConnection,
        processing: ExecutorPool,
        stream: tuple[flight.FlightStreamWriter, flight.FlightMetadataReader],
        max_batch_bytes: int,
        max_batch_records: Optional[int],
        notify: Callable[[str], None],
        spool: Optional["SpoolFile"] = None,
    ) -> None:
        self.name = name
        self._spool = spool
        self.locator = locator
        self.uuid = uuid
        self.schema = schema
        self.stats = TopicStats()
        self._converter = converter
        self._estimate = getattr(converter, "estimate_row_bytes", None)
        self._conn = connection
        self._processing = processing
        self._writer, self._reader = stream
        self._max_bytes = int(max_batch_bytes)
        self._max_records = max_batch_records
        self._notify = notify
        self._lock = threading.Lock()
        self._pending_ts: list[int] = []
        self._pending_msgs: list[Any] = []
        self._pending_recv: list[int] = []
        self._pending_bytes = 0
        self._inflight = threading.BoundedSemaphore(MAX_INFLIGHT_BATCHES)
        self._futures: list[Future[None]] = []
        self._error: Optional[BaseException] = None
        self._closed = False

    # ------------------------------------------------------------------ public API
    @property
    def error(self) -> Optional[BaseException]:
        """The first error of a background conversion or upload, if any."""
        return self._error

    @property
    def is_open(self) -> bool:
        return not self._closed

    def push(self, timestamp_ns: int, message: Any, receive_time_ns: Optional[int] = None) -> None:
        """Queue one serialized message with its timestamp (ns since the Unix epoch).

        Blocks while :data:`MAX_INFLIGHT_BATCHES` batches of this topic are in flight.

        Raises:
            RuntimeError: if the writer is closed or has no converter.
            MosaicoError: the first background error of this topic.
        """
        if self._converter is None:
            raise RuntimeError(f"topic {self.name}: push() needs a converter; use push_batch()")
        submit = None
        with self._lock:
            self._check_open()
            self._pending_ts.append(int(timestamp_ns))
            self._pending_msgs.append(message)
            self._pending_recv.append(receive_time_ns if receive_time_ns is not None else time.monotonic_ns())
            size = len(message)
            self._pending_bytes += self._estimate(size) if self._estimate else size + 64
            self.stats.received += 1
            if self._pending_bytes >= self._max_bytes or (
                self._max_records is not None and len(self._pending_ts) >= self._max_records
            ):
                submit = self._take_pending()
        if submit:
            self._submit(*submit)

    def push_batch(self, batch: pa.RecordBatch) -> None:
        """Queue a record batch already in the topic's schema.

        Raises:
            InvalidArgumentError: if the batch's schema differs from the topic's.
            RuntimeError, MosaicoError: as :meth:`push`.
        """
        if not batch.schema.equals(self.schema):
            raise InvalidArgumentError(f"topic {self.name}: record batch schema differs from the topic schema")
        with self._lock:
            self._check_open()
            pending = self._take_pending()
            self.stats.received += batch.num_rows
        if pending:
            self._submit(*pending)
        now = time.monotonic_ns()
        self._submit_write(lambda: batch, [now] * batch.num_rows)

    def flush(self, wait: bool = True) -> None:
        """Send everything pushed so far; with ``wait``, block until it is written to the stream.

        Raises:
            MosaicoError: the first background error of this topic.
        """
        with self._lock:
            pending = self._take_pending()
        if pending:
            self._submit(*pending)
        if wait:
            self._wait()
        self._raise_error()

    def close(self, flush: bool = True) -> None:
        """End the DoPut stream: the server then locks the topic.

        With ``flush=False`` buffered messages that were not yet converted are
        discarded (the Delete policy). Idempotent.

        Raises:
            MosaicoError: a background error, or the server's refusal at the end of stream.
        """
        with self._lock:
            if self._closed:
                return
            pending = self._take_pending() if flush else None
            if not flush:
                self._pending_ts, self._pending_msgs, self._pending_recv = [], [], []
                self._pending_bytes = 0
        if pending:
            self._submit(*pending)
        self._wait()
        with self._lock:
            self._closed = True
        self._conn.submit(self._end_stream).result()
        self._raise_error()

    # ------------------------------------------------------------------ internals
    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"topic {self.name}: writer is closed")
        if self._spool is None:  # with a spool, messages keep coming in and go to disk
            self._raise_error()

    def _raise_error(self) -> None:
        if self._error is not None:
            err = self._error
            if isinstance(err, MosaicoError):
                raise err
            raise ClientError(f"topic {self.name}: {err}") from err

    def _take_pending(self) -> Optional[tuple[list[int], list[Any], list[int]]]:
        if not self._pending_ts:
            return None
        taken = (self._pending_ts, self._pending_msgs, self._pending_recv)
        self._pending_ts, self._pending_msgs, self._pending_recv = [], [], []
        self._pending_bytes = 0
        return taken

    def _submit(self, timestamps: list[int], messages: list[Any], received: list[int]) -> None:
        assert self._converter is not None
        converter = self._converter
        self._inflight.acquire()
        try:
            conv: Future[pa.RecordBatch] = self._processing.submit(converter.convert, timestamps, messages)
        except BaseException:
            self._inflight.release()
            raise
        self._submit_write(conv.result, received, acquired=True, source=(timestamps, messages))

    def _submit_write(
        self,
        get_batch: Callable[[], pa.RecordBatch],
        received: list[int],
        acquired: bool = False,
        source: Optional[tuple[list[int], list[Any]]] = None,
    ) -> None:
        if not acquired:
            self._inflight.acquire()
        fut = self._conn.submit(self._write, get_batch, received, source)
        fut.add_done_callback(lambda _f: self._inflight.release())
        with self._lock:
            self._futures = [f for f in self._futures if not f.done()]
            self._futures.append(fut)

    def _wait(self) -> None:
        with self._lock:
            futures, self._futures = self._futures, []
        for fut in futures:
            fut.result()

    def _write(
        self,
        get_batch: Callable[[], pa.RecordBatch],
        received: list[int],
        source: Optional[tuple[list[int], list[Any]]],
    ) -> None:
        """Runs on the data connection's thread.

        If conversion failed at message ``i`` (the converter's error carries ``index``),
        messages ``0..i-1`` of the batch are still converted and written: no message
        received before a corrupt one is lost.
        """
        if self._error is not None and self._spool is None:
            return
        try:
            try:
                batch = get_batch()
            except Exception as exc:
                index = getattr(exc, "index", None)
                if source is not None and self._converter is not None and isinstance(index, int) and index > 0:
                    ts, msgs = source
                    self._write_sized(self._converter.convert(ts[:index], msgs[:index]), received[:index])
                raise
            self._write_sized(batch, received)
        except BaseException as exc:  # kept and raised to the producer
            if self._error is None:
                self._error = translate("DoPut", exc) if not isinstance(exc, MosaicoError) else exc
                log.error("topic %s: %s", self.name, self._error)

    def _write_sized(self, batch: pa.RecordBatch, received: list[int]) -> None:
        if batch.num_rows == 0:
            return
        if self._error is not None:
            self._to_spool(batch)
            return
        size = pa.ipc.get_record_batch_size(batch)
        if size > self._max_bytes:
            if batch.num_rows == 1:
                with self.stats._lock:
                    self.stats.dropped += 1
                msg = f"record of {size} bytes exceeds the batch limit of {self._max_bytes} bytes: dropped"
                log.warning("topic %s: %s", self.name, msg)
                self._notify(msg)
                return
            half = batch.num_rows // 2
            self._write_sized(batch.slice(0, half), received[:half])
            self._write_sized(batch.slice(half), received[half:])
            return
        try:
            self._writer.write_batch(batch)
        except Exception as exc:
            self._error = translate("DoPut", exc)
            log.error("topic %s: %s", self.name, self._error)
            self._to_spool(batch)
            return
        now = time.monotonic_ns()
        with self.stats._lock:
            self.stats.written += batch.num_rows
            self.stats.bytes += size
            self.stats.batches += 1
            for t in received:
                lat = now - t
                self.stats.latency_ns_sum += lat
                if lat > self.stats.latency_ns_max:
                    self.stats.latency_ns_max = lat

    def _to_spool(self, batch: pa.RecordBatch) -> None:
        """Keep a batch the server could not take in the local spool (if any)."""
        if self._spool is None:
            return
        self._spool.write(batch, str(self._error))
        with self.stats._lock:
            self.stats.spooled += batch.num_rows
        if self.stats.spooled == batch.num_rows:
            log.warning("topic %s: spooling to %s", self.name, self._spool.path)

    def _end_stream(self) -> None:
        try:
            self._writer.done_writing()
            while True:  # drain the server's (usually empty) PutResult stream
                if self._reader.read() is None:
                    break
        except StopIteration:
            pass
        except Exception as exc:
            if self._error is None:
                self._error = translate("DoPut", exc)
        finally:
            try:
                self._writer.close()
            except Exception as exc:
                if self._error is None:
                    self._error = translate("DoPut", exc)
            if self._spool is not None:
                self._spool.close()
