"""The writer of one DoPut stream: validated record batches appended to a new chunk.

:meth:`mosaico_bridge.server.store.MosaicoStore.open_writer` makes one per DoPut; the
Flight layer calls :meth:`TopicDataWriter.write` per record batch and acknowledges each
with the totals :attr:`~TopicDataWriter.rows_written` / :attr:`~TopicDataWriter.body_bytes_written`.
Sizes are bytes, timestamps ns.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import pyarrow as pa

from mosaico_bridge.protocol.errors import LockedError, NotFoundError
from mosaico_bridge.server import chunks
from mosaico_bridge.server.catalog import Chunk, TopicRecord

if TYPE_CHECKING:
    from mosaico_bridge.server.store import MosaicoStore

logger = logging.getLogger("mosaico_bridge.server")


class TopicDataWriter:
    """Appends the record batches of one DoPut stream to a new chunk of a topic.

    Obtain it from :meth:`MosaicoStore.open_writer`. Call :meth:`write` per record batch,
    then exactly one of :meth:`finish` (end of stream: the topic is locked, ``docs/protocol.md`` § Write path) or
    :meth:`abort` (stream broken or refused: data kept, topic left unlocked). Each batch
    is validated and flushed to the operating system before :meth:`write` returns; the
    writer holds no batch after that.
    """

    def __init__(self, store: MosaicoStore, topic: TopicRecord, chunk: Chunk, schema: pa.Schema, compression: str):
        self._store = store
        self._topic = topic
        self._chunk = chunk
        self._schema = schema
        self._file = chunks.ChunkWriter(topic.directory / chunk.file, schema, compression)
        self._closed = False
        self._last_ts: int | None = None
        #: Rows and IPC body bytes of this stream stored so far.
        self.rows_written = 0
        self.body_bytes_written = 0

    @property
    def locator(self) -> str:
        return self._topic.locator

    def write(self, batch: pa.RecordBatch) -> None:
        """Validate and append one record batch (empty batches are ignored).

        Raises:
            InvalidArgumentError: the batch fails full validation, its schema differs
                from the topic's, or ``timestamp_ns`` holds nulls; nothing is stored.
            NotFoundError: the topic was deleted meanwhile. LockedError: writer closed.
        """
        if self._closed:
            raise LockedError(f"topic `{self._topic.locator}` writer is closed")
        if self._topic.deleted:
            raise NotFoundError(f"topic `{self._topic.locator}` was deleted")
        if batch.num_rows == 0:
            return
        chunks.validate_batch(batch, self._schema)
        ts = chunks.ts_array(batch)
        size = self._file.write(batch)
        self.rows_written += batch.num_rows
        self.body_bytes_written += pa.ipc.get_record_batch_size(batch)
        in_order = chunks.is_sorted(ts) and (self._last_ts is None or int(ts[0]) >= self._last_ts)
        self._last_ts = int(ts[-1])
        self._store._note_batch(self._topic, self._chunk, size, ts, in_order)

    def finish(self) -> None:
        """Close the chunk at the end of the DoPut stream and lock the topic."""
        self._close(complete=True, reason=None)

    def abort(self, reason: str | None = None) -> None:
        """Close the chunk after a broken or refused stream: keep the data, leave the
        topic unlocked; ``reason`` (one line) becomes a topic notification."""
        self._close(complete=False, reason=reason)

    def _close(self, complete: bool, reason: str | None) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            size: int | None = self._file.close()
        except (OSError, pa.ArrowException) as exc:
            logger.error("closing chunk %s of %s failed: %s", self._chunk.file, self._topic.locator, exc)
            size = None
        self._store._end_writer(self._topic, self._chunk, size, complete, reason, self.rows_written)
