"""TopicWriter: buffers the messages of one topic, converts them on the processing layer,
streams the record batches over the topic's DoPut stream on its data connection and
counts what the server acknowledged (``docs/protocol.md`` § Write path).

Data path of one topic::

    push()            append (timestamp, serialized message, receive time) to the buffer;
                      charge the client's memory budget (never waits unless block=True)
    scheduler thread  cuts a batch when the buffer reaches its size or row limit, or when
                      its oldest message is max_batch_age_s old; the only submitter, so the
                      batches of a topic keep their order
    processing pool   converts the batch to Arrow
    data connection   writes it on the DoPut stream (one thread per connection, in order)
    ack reader        per-batch PutAck from the server (``protocol.descriptors.PutAck``),
                      or the end of the stream: the rows become ``written`` and their
                      charge is released

A batch sent but not yet acknowledged stays in memory, charged to the budget, on a stream
whose server has sent acknowledgements, so that if the stream fails it goes to the spool.
On a stream that has sent none yet (servers that acknowledge at the end of the stream
only) the charge is given back when the batch is on the stream, and only the last
:data:`RETAIN_WITHOUT_ACK` batches stay in memory (outside the budget: at most that many
batches per topic); older unacknowledged rows of a stream that then fails are counted
``dropped`` (and ``unacknowledged``).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Protocol

import pyarrow as pa
from pyarrow import flight

from ..common.threads import name_os_thread
from ..conversion.common import ConversionError
from ..protocol.descriptors import PutAck
from ..protocol.errors import InvalidArgumentError, MalformedMessageError, MosaicoError
from .budget import InflightBudget
from .data import DataConnection
from .errors import ClientError, translate
from .processing import ExecutorPool
from .spool import SpoolFile

log = logging.getLogger("mosaico_bridge.client")

#: Batches of a stream that has sent no acknowledgement yet kept in memory for the spool.
RETAIN_WITHOUT_ACK = 2
#: Seconds between two log lines about dropped messages of one topic.
DROP_LOG_PERIOD_S = 1.0
#: Bytes of buffered messages at which a topic's batch is sent without waiting for its age
#: or its size limit (when that limit is larger): past a few MiB a bigger record batch costs
#: no less per byte to send and store, it only waits longer (a 1080p rgb8 frame, 6 MB, goes
#: at once instead of after max_batch_age_s).
SEND_AT_BYTES = 4 * 1024 * 1024
#: While a topic's previous batch still waits for a conversion thread, a buffer due by age
#: only is looked at again this often (ns) instead of being cut: under load, batches grow
#: rather than queue, so their fixed conversion cost (~0.2 ms a batch) is paid less often.
COALESCE_POLL_NS = 10_000_000
#: What a converter raises for a batch it cannot convert.
CONVERSION_ERRORS = (ConversionError, ValueError, TypeError, LookupError, ArithmeticError, pa.ArrowException, MosaicoError)
#: Seconds to wait for the server to end a DoPut stream after the client ended it.
END_OF_STREAM_TIMEOUT_S = 120.0


class BatchConverter(Protocol):
    """What a TopicWriter needs to turn serialized messages into record batches.

    :class:`mosaico_bridge.conversion.TopicConverter` is one.
    """

    schema: pa.Schema
    ontology_tag: str
    serialization_format: str

    def convert(self, timestamps_ns: Sequence[int], messages: Sequence[Any]) -> pa.RecordBatch: ...


class LatencyHistogram:
    """Latencies in nanoseconds, in buckets 10 % wide (1 µs .. ~1 h); thread-safe."""

    _RATIO = math.log(1.1)
    _BUCKETS = 320

    def __init__(self) -> None:
        self._counts = [0] * self._BUCKETS
        self._n = 0
        self._sum = 0
        self._max = 0
        self._lock = threading.Lock()

    def add(self, now_ns: int, starts_ns: Sequence[int]) -> None:
        """Record ``now_ns - t`` for every ``t`` in ``starts_ns``."""
        if not starts_ns:
            return
        idx = []
        total = 0
        top = 0
        for t in starts_ns:
            lat = now_ns - t
            lat = max(lat, 1000)
            total += lat
            top = max(top, lat)
            idx.append(min(self._BUCKETS - 1, int(math.log(lat / 1000) / self._RATIO)))
        with self._lock:
            for i in idx:
                self._counts[i] += 1
            self._n += len(idx)
            self._sum += total
            self._max = max(self._max, top)

    def snapshot(self) -> dict[str, int]:
        """``latency_ns_mean``, ``latency_ns_max``, ``latency_ns_p50``, ``latency_ns_p99`` (0 if empty)."""
        with self._lock:
            counts, n, total, top = list(self._counts), self._n, self._sum, self._max
        out = {"latency_ns_mean": total // n if n else 0, "latency_ns_max": top}
        for name, q in (("latency_ns_p50", 0.5), ("latency_ns_p99", 0.99)):
            value = 0
            if n:
                rank, seen = q * n, 0
                for i, c in enumerate(counts):
                    seen += c
                    if seen >= rank:
                        value = min(top, int(1000 * 1.1 ** (i + 1)))
                        break
            out[name] = value
        return out


@dataclass
class TopicStats:
    """Counters of one topic writer. Sizes in bytes.

    ``received`` messages (or rows) pushed; ``written`` rows the server acknowledged;
    ``dropped`` rows that will never reach the server or the spool: over the memory budget
    at push, a single row above the server's message limit, the rest of a batch after a
    message that cannot be converted, or sent but unacknowledged when the stream failed
    (also counted in ``unacknowledged``); ``spooled`` rows in the local spool;
    ``bytes`` Arrow IPC bytes acknowledged; ``batches`` record batches acknowledged.
    Once the writer is closed ``received == written + spooled + dropped``.
    """

    received: int = 0
    written: int = 0
    dropped: int = 0
    spooled: int = 0
    unacknowledged: int = 0
    bytes: int = 0
    batches: int = 0


@dataclass
class _Sent:
    """A record batch handed to the DoPut stream and not yet acknowledged."""

    rows_end: int  # rows sent on the stream up to and including this batch
    rows: int
    size: int  # IPC bytes
    charge: int  # budget bytes given back at acknowledgement
    received: list[int]  # receive times (monotonic ns) of the rows
    batch: pa.RecordBatch | None  # kept for the spool until acknowledged


class TopicWriter:
    """Writer of one topic of an open session. Made by ``SequenceWriter.topic_create``.

    Messages go in with :meth:`push` (serialized message + its timestamp in ns, converted
    by the topic's converter) or :meth:`push_batch` (an Arrow record batch already in the
    topic's schema). A batch is cut when the buffered messages reach ``max_batch_records``
    or their estimated Arrow size reaches ``max_batch_bytes`` (or :data:`SEND_AT_BYTES`,
    4 MiB, if smaller), or when the oldest is ``max_batch_age_ns`` old; a converted batch
    larger than ``max_batch_bytes`` is split before it is written, and a single row larger
    than that is dropped with a topic notification (the server could not take it).
    """

    def __init__(
        self,
        *,
        name: str,
        locator: str,
        uuid: str,
        schema: pa.Schema,
        converter: BatchConverter | None,
        connection: DataConnection,
        processing: ExecutorPool,
        budget: InflightBudget,
        stream: tuple[flight.FlightStreamWriter, flight.FlightMetadataReader],
        max_batch_bytes: int,
        max_batch_records: int | None,
        max_batch_age_ns: int,
        notify: Callable[[str], None],
        wake: Callable[[], None],
        spool: SpoolFile | None = None,
    ) -> None:
        self.name = name
        self.locator = locator
        self.uuid = uuid
        self.schema = schema
        self.stats = TopicStats()
        self.latency = LatencyHistogram()
        self._spool = spool
        self._converter = converter
        self._estimate = getattr(converter, "estimate_bytes", None)
        self._conn = connection
        self._processing = processing
        self._budget = budget
        self._writer, self._reader = stream
        self._max_bytes = int(max_batch_bytes)
        self._send_at_bytes = min(self._max_bytes, SEND_AT_BYTES)
        self._max_records = max_batch_records
        self._max_age_ns = int(max_batch_age_ns)
        self._notify = notify
        self._wake = wake
        # buffer of the producer; _lock is held only for appends and swaps
        self._lock = threading.Lock()
        self._pending_ts: list[int] = []
        self._pending_msgs: list[Any] = []
        self._pending_recv: list[int] = []
        self._pending_bytes = 0
        self._pending_charge = 0
        self._ready = False
        self._queued_conversions = 0  # submitted to the executor pool, not started yet
        self._closed = False
        self._last_drop_log = 0.0
        self._drops_since_log = 0
        # the single submitter (scheduler, flush, close, push_batch) holds _submit_lock
        self._submit_lock = threading.Lock()
        self._futures: list[Future[None]] = []
        # acknowledgement state, under _lock
        self._unacked: deque[_Sent] = deque()
        self._sent_rows = 0
        self._acked_rows = 0
        self._ack_mode = False
        self._error: BaseException | None = None
        self._ack_error: BaseException | None = None
        self._ack_thread = threading.Thread(target=self._read_acks, name=f"mosaico-ack{locator}", daemon=True)
        self._ack_thread.start()

    # ------------------------------------------------------------------ public API
    @property
    def error(self) -> BaseException | None:
        """The first error of a background conversion or upload, if any."""
        return self._error

    @property
    def converter(self) -> BatchConverter | None:
        """The converter given at creation (None: :meth:`push_batch` only)."""
        return self._converter

    @property
    def is_open(self) -> bool:
        return not self._closed

    def snapshot(self) -> dict[str, int]:
        """Counters (:class:`TopicStats`) and receive → acknowledged latencies (ns), as one dict;
        ``inflight`` = received − written − spooled − dropped."""
        with self._lock:
            s = self.stats
            out = {
                "received": s.received, "written": s.written, "dropped": s.dropped, "spooled": s.spooled,
                "unacknowledged": s.unacknowledged, "bytes": s.bytes, "batches": s.batches,
            }
        out["inflight"] = out["received"] - out["written"] - out["spooled"] - out["dropped"]
        out.update(self.latency.snapshot())
        return out

    def push(self, timestamp_ns: int, message: Any, receive_time_ns: int | None = None, *,
             block: bool = False) -> bool:
        """Buffer one serialized message with its timestamp (ns since the Unix epoch) and
        its receive time (``time.monotonic_ns()``; default: now).

        Charges ``len(message)`` bytes to the client's memory budget: without ``block`` a
        message that does not fit is dropped and counted (returns False); with ``block``
        the call waits for room.

        Raises:
            RuntimeError: the writer is closed or has no converter.
            MosaicoError: the first background error of this topic (without a spool).
        """
        self._check_pushable("push")
        size = len(message)
        if block:
            self._budget.acquire(size)
        elif not self._budget.try_acquire(size):
            self._drop_at_push()
            return False
        if receive_time_ns is None:
            receive_time_ns = time.monotonic_ns()
        self._buffer((timestamp_ns,), (message,), (receive_time_ns,),
                     self._estimate(1, size) if self._estimate else size + 64, size)
        return True

    def push_many(self, timestamps_ns: Sequence[int], messages: Sequence[Any]) -> int:
        """Buffer several serialized messages, in order, as :meth:`push` with ``block`` does,
        with one budget charge and one lock for them all (a bag reader's path: ~2 µs less
        per message). Receive times are now. Returns the bytes of the messages.

        Raises:
            ValueError: the two sequences differ in length.
            RuntimeError, MosaicoError: as :meth:`push`.
        """
        n = len(messages)
        if len(timestamps_ns) != n:
            raise ValueError(f"topic {self.name}: {len(timestamps_ns)} timestamps for {n} messages")
        self._check_pushable("push_many")
        if not n:
            return 0
        charge = sum(map(len, messages))
        self._budget.acquire(charge)
        self._buffer(timestamps_ns, messages, [time.monotonic_ns()] * n,
                     self._estimate(n, charge) if self._estimate else charge + 64 * n, charge)
        return charge

    def _check_pushable(self, method: str) -> None:
        """Raise what :meth:`push` raises before it charges the budget."""
        if self._converter is None:
            raise RuntimeError(f"topic {self.name}: {method}() needs a converter; use push_batch()")
        if self._error is not None and self._spool is None:
            self._raise_error()

    def _buffer(self, timestamps_ns: Sequence[int], messages: Sequence[Any], receive_ns: Sequence[int],
                estimate: int, charge: int) -> None:
        """Append messages whose ``charge`` bytes the budget has granted (given back if the
        writer is closed), ``estimate`` their Arrow bytes; wake the scheduler once the
        buffer is due by size or rows."""
        wake = False
        with self._lock:
            if self._closed:
                self._budget.release(charge)
                raise RuntimeError(f"topic {self.name}: writer is closed")
            self._pending_ts.extend(timestamps_ns)
            self._pending_msgs.extend(messages)
            self._pending_recv.extend(receive_ns)
            self._pending_bytes += estimate
            self._pending_charge += charge
            self.stats.received += len(messages)
            if not self._ready and (
                self._pending_bytes >= self._send_at_bytes
                or (self._max_records is not None and len(self._pending_ts) >= self._max_records)
            ):
                self._ready = wake = True
        if wake:
            self._wake()

    def push_batch(self, batch: pa.RecordBatch) -> None:
        """Send a record batch already in the topic's schema (after what was pushed before).
        Waits for room in the memory budget.

        Raises:
            InvalidArgumentError: if the batch's schema differs from the topic's.
            RuntimeError, MosaicoError: as :meth:`push`.
        """
        if not batch.schema.equals(self.schema):
            raise InvalidArgumentError(f"topic {self.name}: record batch schema differs from the topic schema")
        if self._error is not None and self._spool is None:
            self._raise_error()
        charge = batch.nbytes
        self._budget.acquire(charge)
        with self._submit_lock:
            with self._lock:
                if self._closed:
                    self._budget.release(charge)
                    raise RuntimeError(f"topic {self.name}: writer is closed")
                self.stats.received += batch.num_rows
            self._submit_pending()
            now = time.monotonic_ns()
            self._enqueue_write(lambda: batch, [now] * batch.num_rows, charge, None)

    def flush(self, wait: bool = True) -> None:
        """Send everything pushed so far; with ``wait``, block until it is on the stream
        (acknowledgement comes later: see :meth:`close`).

        Raises:
            MosaicoError: the first background error of this topic.
        """
        with self._submit_lock:
            self._submit_pending()
        if wait:
            self._wait()
        self._raise_error()

    def close(self, flush: bool = True) -> None:
        """End the DoPut stream (the server then locks the topic) and wait for the server's
        acknowledgement of everything sent.

        With ``flush=False`` buffered messages that were not yet converted are discarded
        and counted dropped (the Delete policy). Idempotent.

        Raises:
            MosaicoError: a background error, or the server's refusal at the end of stream.
        """
        with self._submit_lock:
            if self._closed:
                return
            if flush:
                self._submit_pending()
            with self._lock:
                discarded, charge = len(self._pending_ts), self._pending_charge
                self._pending_ts, self._pending_msgs, self._pending_recv = [], [], []
                self._pending_bytes = self._pending_charge = 0
                self.stats.dropped += discarded
                self._closed = True
            self._budget.release(charge)
        self._wait()
        self._conn.submit(self._end_stream).result()
        self._raise_error()

    # ------------------------------------------------------------------ scheduler side
    def due(self, now_ns: int) -> int | None:
        """When the buffer must be sent (monotonic ns; <= now: at once), None if empty."""
        with self._lock:
            if not self._pending_recv:
                return None
            if self._ready:
                return now_ns
            due = self._pending_recv[0] + self._max_age_ns
            if self._queued_conversions and due <= now_ns:
                return now_ns + COALESCE_POLL_NS
            return due

    def submit_pending(self) -> None:
        """Convert and send what is buffered (the scheduler calls this)."""
        with self._submit_lock:
            if not self._closed:
                self._submit_pending()

    # ------------------------------------------------------------------ internals
    def _drop_at_push(self) -> None:
        with self._lock:
            self.stats.received += 1
            self.stats.dropped += 1
            self._drops_since_log += 1
            now = time.monotonic()
            if now - self._last_drop_log < DROP_LOG_PERIOD_S:
                return
            self._last_drop_log, n, self._drops_since_log = now, self._drops_since_log, 0
        log.warning(
            "topic %s: %d message(s) dropped: %d bytes in flight reach max_inflight_bytes (%d)",
            self.name, n, self._budget.used, self._budget.limit,
        )

    def _raise_error(self) -> None:
        if self._error is not None:
            err = self._error
            if isinstance(err, MosaicoError):
                raise err
            raise ClientError(f"topic {self.name}: {err}") from err

    def _set_error(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = translate("DoPut", exc) if not isinstance(exc, MosaicoError) else exc
            log.error("topic %s: %s", self.name, self._error)

    def _submit_pending(self) -> None:
        """Under _submit_lock: take the buffer (a swap) and queue its conversion and write."""
        with self._lock:
            self._ready = False
            if not self._pending_ts:
                return
            ts, msgs, recv, charge = self._pending_ts, self._pending_msgs, self._pending_recv, self._pending_charge
            self._pending_ts, self._pending_msgs, self._pending_recv = [], [], []
            self._pending_bytes = self._pending_charge = 0
        step = self._max_records or len(ts)
        if step >= len(ts):
            self._submit_convert(ts, msgs, recv, charge)
            return
        for start in range(0, len(ts), step):  # the producer got ahead of the scheduler
            part = msgs[start:start + step]
            part_charge = sum(len(m) for m in part) if start + step < len(ts) else charge
            charge -= part_charge if start + step < len(ts) else 0
            self._submit_convert(ts[start:start + step], part, recv[start:start + step], part_charge)

    def _submit_convert(self, ts: list[int], msgs: list[Any], recv: list[int], charge: int) -> None:
        assert self._converter is not None
        try:
            convert = getattr(self._converter, "convert_batches", self._converter.convert)
            with self._lock:
                self._queued_conversions += 1
            conv: Future[Any] = self._processing.submit(self._started_conversion, convert, ts, msgs)
        except RuntimeError as exc:  # executor shut down
            with self._lock:
                self._queued_conversions -= 1
                self.stats.dropped += len(ts)
            self._budget.release(charge)
            self._set_error(exc)
            return
        self._enqueue_write(conv.result, recv, charge, (ts, msgs))

    def _started_conversion(self, convert: Callable[..., Any], ts: list[int], msgs: list[Any]) -> Any:
        """On a conversion thread: count the batch as started, then convert it."""
        with self._lock:
            self._queued_conversions -= 1
        return convert(ts, msgs)

    def _enqueue_write(self, get_batch: Callable[[], Any], received: list[int], charge: int,
                       source: tuple[list[int], list[Any]] | None) -> None:
        try:
            fut = self._conn.submit(self._write, get_batch, received, charge, source)
        except RuntimeError as exc:  # the connection's thread was shut down
            with self._lock:
                self.stats.dropped += len(received)
            self._budget.release(charge)
            self._set_error(exc)
            return
        with self._lock:
            self._futures = [f for f in self._futures if not f.done()]
            self._futures.append(fut)

    def _wait(self) -> None:
        with self._lock:
            futures, self._futures = self._futures, []
        for fut in futures:
            fut.result()

    def _write(self, get_batch: Callable[[], Any], received: list[int], charge: int,
               source: tuple[list[int], list[Any]] | None) -> None:
        """Runs on the data connection's thread.

        If conversion failed at message ``i`` (the converter's error carries ``index``),
        messages ``0..i-1`` of the batch are still converted and written: no message
        received before a corrupt one is lost; the rest of the batch is counted dropped.
        """
        try:
            batch = get_batch()
        except CONVERSION_ERRORS as exc:
            # position of the failing message in this batch (ConversionError.index is its
            # position in the whole topic)
            index = getattr(exc, "position", getattr(exc, "index", None))
            total = len(received)
            kept = 0
            if source is not None and self._converter is not None and isinstance(index, int) and index > 0:
                ts, msgs = source
                try:
                    batch = self._converter.convert(ts[:index], msgs[:index])
                    kept = index
                except CONVERSION_ERRORS:  # the first error is the one reported
                    kept = 0
            with self._lock:
                self.stats.dropped += total - kept
            if kept:
                self._send(batch, received[:kept], charge)
            else:
                self._budget.release(charge)
            self._set_error(exc)
            return
        except Exception as exc:  # noqa: BLE001 - a worker thread's boundary: the error must reach the producer
            with self._lock:
                self.stats.dropped += len(received)
            self._budget.release(charge)
            self._set_error(exc)
            return
        if isinstance(batch, pa.RecordBatch):
            self._send(batch, received, charge)
            return
        # convert_batches: several record batches (a large image is one of its own, its
        # data a slice of the serialized message); the charge goes with the last one
        start = 0
        for i, part in enumerate(batch):
            rows = part.num_rows
            self._send(part, received[start:start + rows], charge if i == len(batch) - 1 else 0)
            start += rows

    def _pieces(self, batch: pa.RecordBatch, received: list[int]) -> list[tuple[pa.RecordBatch, list[int], int]]:
        """``batch`` split until every piece fits the batch limit: (piece, receive times, IPC size);
        single rows above the limit are dropped with a notification."""
        out = []
        todo = [(batch, received)]
        while todo:
            b, r = todo.pop()
            if b.num_rows == 0:
                continue
            size = pa.ipc.get_record_batch_size(b)
            if size <= self._max_bytes:
                out.append((b, r, size))
            elif b.num_rows == 1:
                with self._lock:
                    self.stats.dropped += 1
                msg = f"record of {size} bytes exceeds the batch limit of {self._max_bytes} bytes: dropped"
                log.warning("topic %s: %s", self.name, msg)
                self._notify(msg)
            else:
                half = b.num_rows // 2
                todo.append((b.slice(half), r[half:]))
                todo.append((b.slice(0, half), r[:half]))
        return out

    def _send(self, batch: pa.RecordBatch, received: list[int], charge: int) -> None:
        pieces = self._pieces(batch, received)
        if not pieces:
            self._budget.release(charge)
            return
        last = len(pieces) - 1
        for i, (piece, recv, size) in enumerate(pieces):
            piece_charge = charge if i == last else 0
            if self._error is not None:
                self._to_spool(piece)
                self._budget.release(piece_charge)
                continue
            try:
                self._writer.write_batch(piece)
            except (flight.FlightError, pa.ArrowException, OSError) as exc:
                self._set_error(exc)
                self._fail_unacked()
                self._to_spool(piece)
                self._budget.release(piece_charge)
                continue
            released = 0
            with self._lock:
                self._sent_rows += piece.num_rows
                if self._ack_mode:
                    self._unacked.append(_Sent(self._sent_rows, piece.num_rows, size, piece_charge, recv, piece))
                else:
                    # no acknowledgement yet: the charge is given back now (an end-of-stream
                    # acknowledgement would hold the budget for the whole session), and only
                    # the last RETAIN_WITHOUT_ACK batches stay in memory for the spool
                    released = piece_charge
                    self._unacked.append(_Sent(self._sent_rows, piece.num_rows, size, 0, recv, piece))
                    retained = [e for e in self._unacked if e.batch is not None]
                    for e in retained[: max(0, len(retained) - RETAIN_WITHOUT_ACK)]:
                        e.batch = None
                acked = self._apply_acks_locked()
            self._budget.release(released)
            self._record(acked)

    def _apply_acks_locked(self) -> list[_Sent]:
        """Under _lock: every sent batch within the acknowledged rows becomes written."""
        done = []
        while self._unacked and self._unacked[0].rows_end <= self._acked_rows:
            e = self._unacked.popleft()
            self.stats.written += e.rows
            self.stats.bytes += e.size
            self.stats.batches += 1
            done.append(e)
        return done

    def _record(self, acked: list[_Sent]) -> None:
        """Outside _lock: give back the charges of acknowledged batches, record their latency."""
        if not acked:
            return
        now = time.monotonic_ns()
        charge = 0
        for e in acked:
            charge += e.charge
            self.latency.add(now, e.received)
        self._budget.release(charge)

    def _read_acks(self) -> None:
        """Ack reader thread: PutAck metadata of the DoPut stream until the server ends it."""
        name_os_thread()
        try:
            while True:
                buf = self._reader.read()
                if buf is None:
                    return
                try:
                    ack = PutAck.from_bytes(buf)
                except MalformedMessageError:
                    log.debug("topic %s: DoPut metadata that is not an acknowledgement ignored", self.name)
                    continue
                with self._lock:
                    self._ack_mode = True
                    self._acked_rows = max(self._acked_rows, ack.rows)
                    acked = self._apply_acks_locked()
                self._record(acked)
        except (flight.FlightError, pa.ArrowException, OSError) as exc:
            self._ack_error = exc

    def _fail_unacked(self) -> None:
        """The stream failed: unacknowledged batches go to the spool (those still in memory)
        or are counted dropped and unacknowledged."""
        with self._lock:
            entries = list(self._unacked)
            self._unacked.clear()
        charge = 0
        for e in entries:
            charge += e.charge
            if e.batch is not None:
                self._to_spool(e.batch)
            else:
                with self._lock:
                    self.stats.dropped += e.rows
                    self.stats.unacknowledged += e.rows
        self._budget.release(charge)

    def _to_spool(self, batch: pa.RecordBatch) -> None:
        """Keep a batch the server could not take in the local spool; without one, count it dropped."""
        if self._spool is None:
            with self._lock:
                self.stats.dropped += batch.num_rows
            return
        try:
            self._spool.write(batch, str(self._error))
        except OSError as exc:
            log.error("topic %s: spool %s: %s", self.name, self._spool.path, exc)
            with self._lock:
                self.stats.dropped += batch.num_rows
            return
        with self._lock:
            first = self.stats.spooled == 0
            self.stats.spooled += batch.num_rows
        if first:
            log.warning("topic %s: spooling to %s", self.name, self._spool.path)

    def _end_stream(self) -> None:
        """On the data connection's thread: end the DoPut stream, wait for the server to end
        it, and take the end of the stream as the acknowledgement of everything sent."""
        err: BaseException | None = None
        try:
            self._writer.done_writing()
        except (flight.FlightError, pa.ArrowException, OSError) as exc:
            err = exc
        self._ack_thread.join(END_OF_STREAM_TIMEOUT_S)
        try:
            self._writer.close()
        except (flight.FlightError, pa.ArrowException, OSError) as exc:
            err = err or exc
        err = err or self._ack_error
        if err is None and self._ack_thread.is_alive():
            err = ConnectionError(f"DoPut {self.locator}: the server did not end the stream "
                                  f"within {END_OF_STREAM_TIMEOUT_S:g} s")
        if err is None and self._error is None:
            with self._lock:
                self._acked_rows = self._sent_rows
                acked = self._apply_acks_locked()
            self._record(acked)
        else:
            if err is not None:
                self._set_error(err)
            self._fail_unacked()
        if self._spool is not None:
            self._spool.close()
