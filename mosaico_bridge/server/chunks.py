"""Chunk files of a topic: writing, validating and reading Arrow IPC streams.

One DoPut stream becomes one chunk file ``chunk-NNNNNN.arrows``: an Arrow IPC stream
(schema message, then one message per record batch), written as batches arrive, with
the IPC body buffers compressed as the store's ``store_compression`` says (``none``,
``lz4`` or ``zstd``: :class:`pyarrow.ipc.IpcWriteOptions`). Readers memory-map the file;
a stream whose last message is truncated (a crash while writing) ends before it.

Reading a topic in time order: a chunk whose rows are sorted by ``timestamp_ns`` is
streamed as is; an unsorted chunk is sorted one chunk at a time; the sorted chunks are
then merged (k-way, by ``timestamp_ns``, stable: ties keep chunk order then row order),
holding one record batch per chunk in memory (:func:`merge_sorted`).

Timestamps are ns (``timestamp_ns`` column, int64), sizes are bytes.
"""

from __future__ import annotations

import heapq
import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa

from mosaico_bridge.common.files import DATA_MODE
from mosaico_bridge.protocol import names
from mosaico_bridge.protocol.errors import InvalidArgumentError

logger = logging.getLogger("mosaico_bridge.server")

TIMESTAMP = names.TIMESTAMP_NS

#: Values of the ``store_compression`` option.
COMPRESSIONS = ("none", "lz4", "zstd")
#: Default compression of chunk files (see the bench figures in the repository README).
DEFAULT_COMPRESSION = "lz4"


def write_options(compression: str) -> pa.ipc.IpcWriteOptions:
    """IPC write options of a chunk file for ``compression`` (one of :data:`COMPRESSIONS`).

    Raises:
        ValueError: unknown compression name.
    """
    if compression not in COMPRESSIONS:
        raise ValueError(f"store_compression must be one of {', '.join(COMPRESSIONS)}, got {compression!r}")
    return pa.ipc.IpcWriteOptions(compression=None if compression == "none" else compression)


#: Bytes a chunk file buffers before a write() (flushed after every batch anyway).
WRITE_BUFFER_BYTES = 256 * 1024

#: A chunk is compressed only if its largest buffer's sample shrinks by at least this fraction.
MIN_SAVINGS = 0.1
#: Bytes of the largest buffer compressed to decide.
SAMPLE_BYTES = 256 * 1024
#: Batches whose largest buffer is smaller than this are compressed without a trial.
TRIAL_MIN_BYTES = 64 * 1024


def worth_compressing(batch: pa.RecordBatch, compression: str) -> bool:
    """True if ``compression`` saves at least :data:`MIN_SAVINGS` on a sample (the first
    :data:`SAMPLE_BYTES`) of the batch's largest buffer; True as well when that buffer is
    under :data:`TRIAL_MIN_BYTES` (cheap to compress either way)."""
    largest = None
    for column in batch.columns:
        for buf in column.buffers():
            if buf is not None and (largest is None or buf.size > largest.size):
                largest = buf
    if largest is None or largest.size < TRIAL_MIN_BYTES:
        return True
    sample = largest.slice(0, min(largest.size, SAMPLE_BYTES))
    packed = pa.compress(sample, codec=compression, asbytes=False)
    return packed.size <= (1.0 - MIN_SAVINGS) * sample.size


def check_schema(schema: pa.Schema) -> None:
    """Check that a topic schema has one ``timestamp_ns`` int64 column.

    Raises:
        InvalidArgumentError: ``missing timestamp field in schema`` or
            ``wrong timestamp field type, expected int64``.
    """
    try:  # every name must be text: a name that is not UTF-8 breaks every later reader
        pending = list(schema)
        while pending:
            f = pending.pop()
            f.name.encode("utf-8")
            t = f.type
            pending.extend(t.field(i) for i in range(t.num_fields))
    except UnicodeDecodeError:
        raise InvalidArgumentError("schema holds a field name that is not UTF-8") from None
    indices = schema.get_all_field_indices(TIMESTAMP)
    if len(indices) != 1:
        raise InvalidArgumentError("missing timestamp field in schema")
    if schema.field(indices[0]).type != pa.int64():
        raise InvalidArgumentError("wrong timestamp field type, expected int64")


def validate_batch(batch: pa.RecordBatch, schema: pa.Schema) -> None:
    """Refuse a record batch that is not safe to store under ``schema``.

    Full validation (:meth:`pyarrow.RecordBatch.validate` with ``full=True``: offsets,
    buffer sizes, UTF-8, dictionary indices), the schema equal to the topic's (field
    metadata included) and no null ``timestamp_ns``.

    Raises:
        InvalidArgumentError: naming what is wrong.
    """
    if not batch.schema.equals(schema, check_metadata=False):
        raise InvalidArgumentError("record batch schema differs from the topic schema")
    try:
        batch.validate(full=True)
    except (pa.ArrowInvalid, pa.ArrowException) as exc:
        raise InvalidArgumentError(f"invalid record batch: {' '.join(str(exc).split())[:200]}") from None
    if batch.column(TIMESTAMP).null_count:
        raise InvalidArgumentError("timestamp_ns holds null values")


def ts_array(batch: pa.RecordBatch) -> np.ndarray:
    """The ``timestamp_ns`` column of a batch as an int64 numpy array."""
    return batch.column(TIMESTAMP).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)


def is_sorted(ts: np.ndarray) -> bool:
    """True if ``ts`` is non-decreasing."""
    return bool(np.all(ts[1:] >= ts[:-1])) if ts.size > 1 else True


class ChunkWriter:
    """Appends record batches to a new chunk file (mode 0640), flushing each to the OS.

    The IPC stream (schema first) is started at the first batch, so that the chunk's
    compression can be chosen from its data: with ``lz4`` or ``zstd``, a chunk whose
    largest buffer does not compress by at least :data:`MIN_SAVINGS` in a sample of
    :data:`SAMPLE_BYTES` (camera pixels with sensor noise, already compressed images) is
    written uncompressed: compressing it would cost CPU for no gain.
    :attr:`compression` is the choice made (``none`` until the first batch).

    Raises (constructor): OSError if the file cannot be created.
    """

    def __init__(self, path: Path, schema: pa.Schema, compression: str = DEFAULT_COMPRESSION) -> None:
        write_options(compression)  # ValueError on an unknown name, before the file exists
        self.path = path
        self._schema = schema
        self._wanted = compression
        self.compression = "none"
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, DATA_MODE))
        os.chmod(path, DATA_MODE)
        # a native Arrow file: buffers go to the OS without the GIL or a copy into Python
        # bytes (a Python file object made 6 MB batches about 4x slower to store), through
        # a buffer so that a batch of many small buffers is one write() (a 20-row TF batch,
        # 72 buffers: 28 -> 9 us); buffers of WRITE_BUFFER_BYTES or more are written directly
        self._os_file = pa.OSFile(str(path), "wb")
        self._file = pa.BufferedOutputStream(self._os_file, WRITE_BUFFER_BYTES)
        self._writer: pa.ipc.RecordBatchStreamWriter | None = None

    def _start(self, first: pa.RecordBatch | None) -> pa.ipc.RecordBatchStreamWriter:
        chosen = self._wanted
        if chosen != "none" and first is not None and not worth_compressing(first, chosen):
            chosen = "none"
        self.compression = chosen
        self._writer = pa.ipc.new_stream(self._file, self._schema, options=write_options(chosen))
        return self._writer

    def write(self, batch: pa.RecordBatch) -> int:
        """Append one batch; returns the file size in bytes once it reached the OS."""
        writer = self._writer or self._start(batch)
        writer.write_batch(batch)
        self._file.flush()
        return self._file.tell()

    def close(self) -> int:
        """Write the end-of-stream marker, fsync and close; returns the file size.

        Raises:
            OSError, pyarrow.ArrowException: the file could not be completed (it is closed anyway).
        """
        try:
            (self._writer or self._start(None)).close()
            self._file.flush()
            os.fsync(self._os_file.fileno())
            return self._file.tell()
        finally:
            self._file.close()  # closes the OS file too


def iter_chunk_batches(path: Path, quiet: bool = False) -> Iterator[pa.RecordBatch]:
    """Record batches of one chunk file; a truncated tail ends the iteration.

    ``quiet`` silences the warning about a truncated tail (expected while a DoPut writes).
    """
    try:
        source = pa.memory_map(str(path), "r")
    except (OSError, pa.ArrowException):
        return
    try:
        try:
            reader = pa.ipc.open_stream(source)
        except (OSError, pa.ArrowException):
            return
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                return
            except (OSError, pa.ArrowException) as exc:
                if not quiet:
                    logger.warning("chunk %s ends with an incomplete message (%s); reading stops there", path.name, exc)
                return
            yield batch
    finally:
        source.close()


def validate_chunk(path: Path, schema: pa.Schema | None) -> str | None:
    """Fully validate every record batch of a chunk file (no memory map: a bad file cannot
    fault the process); returns None if it is sound, else the reason in one line.

    A truncated last message (crash while writing) is not a fault: reading stops there.
    """
    try:
        with pa.OSFile(str(path), "rb") as source:
            try:
                reader = pa.ipc.open_stream(source)
            except (OSError, pa.ArrowException) as exc:
                if os.path.getsize(path) == 0:
                    return None
                return f"unreadable stream header: {exc}"
            if schema is not None and not reader.schema.equals(schema, check_metadata=False):
                return "stream schema differs from the topic schema"
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    return None
                except (OSError, pa.ArrowException):
                    return None  # truncated tail
                try:
                    batch.validate(full=True)
                except pa.ArrowException as exc:
                    return f"invalid record batch: {' '.join(str(exc).split())[:200]}"
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"


def window(batch: pa.RecordBatch, start_ns: int | None, end_ns: int | None) -> pa.RecordBatch:
    """Rows of ``batch`` with ``start_ns <= timestamp_ns < end_ns`` (None: open bound)."""
    if start_ns is None and end_ns is None:
        return batch
    import pyarrow.compute as pc  # read path only: its import costs ~35 ms of every start

    ts = batch.column(TIMESTAMP)
    mask = None
    if start_ns is not None:
        mask = pc.greater_equal(ts, pa.scalar(start_ns, pa.int64()))
    if end_ns is not None:
        upper = pc.less(ts, pa.scalar(end_ns, pa.int64()))
        mask = upper if mask is None else pc.and_(mask, upper)
    return batch.filter(mask)


def sorted_chunk(path: Path, quiet: bool = False) -> Iterator[pa.RecordBatch]:
    """The batches of one chunk whose rows are not in time order, sorted (stable).

    Holds that one chunk in memory (a chunk is one DoPut stream).
    """
    batches = list(iter_chunk_batches(path, quiet=quiet))
    if not batches:
        return
    table = pa.Table.from_batches(batches).sort_by([(TIMESTAMP, "ascending")])  # stable
    yield from table.combine_chunks().to_batches()


def merge_sorted(sources: Iterable[Iterator[pa.RecordBatch]], schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """k-way merge of record batch streams, each sorted by ``timestamp_ns``.

    Stable: of rows with equal timestamps, those of an earlier source come first, and
    within one source they keep their order. Holds at most one batch per source; yields
    slices of the sources' batches (runs taken from one source at a time).
    """
    heads: list[tuple[int, int, int]] = []  # (next timestamp, source index, row)
    state: dict[int, tuple[pa.RecordBatch, np.ndarray, Iterator[pa.RecordBatch]]] = {}

    def advance(index: int, it: Iterator[pa.RecordBatch]) -> None:
        for batch in it:
            if batch.num_rows:
                ts = ts_array(batch)
                state[index] = (batch, ts, it)
                heapq.heappush(heads, (int(ts[0]), index, 0))
                return
        state.pop(index, None)

    for index, it in enumerate(sources):
        advance(index, iter(it))
    while heads:
        _, index, row = heapq.heappop(heads)
        batch, ts, it = state[index]
        if heads:
            bound, other, _ = heads[0]
            # rows of this source that go before the next head: ts < bound, or == bound
            # when this source comes first among equals
            stop = int(np.searchsorted(ts, bound, side="right" if index < other else "left"))
            stop = max(stop, row + 1)
        else:
            stop = ts.size
        yield batch.slice(row, stop - row)
        if stop < ts.size:
            heapq.heappush(heads, (int(ts[stop]), index, stop))
        else:
            advance(index, it)


def bounded(batches: Iterable[pa.RecordBatch], max_rows: int, max_bytes: int) -> Iterator[pa.RecordBatch]:
    """Re-slice batches to at most ``max_rows`` rows and about ``max_bytes`` bytes each
    (a single larger row goes alone); empty batches are dropped."""
    max_rows = max(1, int(max_rows))
    max_bytes = max(1, int(max_bytes))
    for batch in batches:
        offset = 0
        total = batch.num_rows
        if not total:
            continue
        per_row = max(1, batch.nbytes // total)
        step = max(1, min(max_rows, max_bytes // per_row))
        while offset < total:
            piece = batch.slice(offset, step)
            offset += piece.num_rows
            if piece.num_rows:
                yield piece
