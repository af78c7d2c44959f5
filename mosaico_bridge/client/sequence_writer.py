"""SequenceWriter: one write session on a sequence, with a lifecycle of its own.

States (:class:`WriterState`): ``NEW`` → :meth:`SequenceWriter.open` → ``OPEN`` →
:meth:`~SequenceWriter.finalize` → ``FINALIZED``, or :meth:`~SequenceWriter.abort` →
``REPORTED`` / ``DELETED`` (``FAILED`` when the error policy could not reach the server).
Use it with ``with`` (open on entry; finalize on a clean exit, abort on an exception) or
call the methods yourself.

Call order on the wire (``docs/protocol.md`` § Write path): ``sequence_create`` (not when
updating an existing sequence), ``session_create``, then per topic ``topic_create`` and a
DoPut stream; at finalize every DoPut stream is ended and ``session_finalize`` sent. The
error policies:

* :attr:`SessionLevelErrorPolicy.Report`: what was received is flushed (no data already
  received is lost), each topic gets an error notification, the sequence gets an error
  notification, and the session is finalized;
* :attr:`SessionLevelErrorPolicy.Delete`: the DoPut streams are ended without flushing,
  each topic gets an error notification, then ``session_delete`` and (if this writer
  created the sequence) ``sequence_delete``.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ..protocol import messages as msg
from ..protocol import names
from ..protocol.descriptors import TIMESTAMP_FIELD
from ..protocol.errors import InvalidArgumentError, MosaicoError
from .scheduler import BatchScheduler
from .spool import Spool
from .topic_writer import BatchConverter, TopicWriter
from .transport import Transport, check_compression, put_options

if TYPE_CHECKING:
    from typing import Self

log = logging.getLogger("mosaico_bridge.client")

#: Default longest wait of a message in a topic's buffer before its batch is sent, in seconds.
DEFAULT_MAX_BATCH_AGE_S = 0.1


class SessionLevelErrorPolicy(enum.Enum):
    """What a SequenceWriter does with a session when an error ends it."""

    Report = "report"
    Delete = "delete"


class WriterState(enum.Enum):
    """Where a SequenceWriter is in its lifecycle."""

    NEW = "new"
    OPEN = "open"
    FINALIZED = "finalized"
    REPORTED = "reported"
    DELETED = "deleted"
    FAILED = "failed"  # the error policy could not reach the server


class SequenceWriter:
    """Writer of one session of a sequence. Get it from ``MosaicoClient.sequence_create``
    (new sequence) or ``MosaicoClient.sequence_update`` (new session on an existing one),
    or build it from a :class:`~mosaico_bridge.client.transport.Transport`.

    Args:
        max_batch_size_bytes: largest record batch, in bytes.
        max_batch_size_records: largest record batch in rows (None: no limit).
        max_batch_age_s: longest time a message waits before its batch is sent (> 0).
        compression: ``none``, ``lz4`` or ``zstd`` for the DoPut IPC bodies.
        spool_dir: where batches the server can no longer take go (:mod:`.spool`).

    Raises:
        InvalidArgumentError: invalid sequence name or metadata.
        ValueError: invalid limits or compression.
    """

    def __init__(
        self,
        transport: Transport,
        sequence_name: str,
        metadata: Mapping[str, Any],
        on_error: SessionLevelErrorPolicy | str,
        max_batch_size_bytes: int,
        max_batch_size_records: int | None,
        create_sequence: bool,
        spool_dir: str | None = None,
        *,
        max_batch_age_s: float = DEFAULT_MAX_BATCH_AGE_S,
        compression: str | None = None,
    ) -> None:
        self._transport = transport
        self.sequence_name = names.validate_sequence_name(sequence_name)
        if not isinstance(metadata, Mapping):
            raise InvalidArgumentError(f"sequence metadata must be a mapping, got {type(metadata).__name__}")
        if not max_batch_age_s > 0:
            raise ValueError(f"max_batch_age_s must be > 0, got {max_batch_age_s!r}")
        self.metadata = dict(metadata)
        self.on_error = SessionLevelErrorPolicy(on_error)
        self.max_batch_size_bytes = max_batch_size_bytes
        self.max_batch_size_records = max_batch_size_records
        self.max_batch_age_s = float(max_batch_age_s)
        self.compression = check_compression(compression or transport.compression)
        self._put_options = put_options(self.compression)
        self._create_sequence = create_sequence
        self.spool = Spool(spool_dir) if spool_dir else None
        self._topics: dict[str, TopicWriter] = {}
        self._lock = threading.Lock()
        self._state = WriterState.NEW
        self._scheduler: BatchScheduler | None = None
        self.session_uuid: str | None = None
        self.session_locator: str | None = None

    # -------------------------------------------------------------- lifecycle
    @property
    def state(self) -> WriterState:
        return self._state

    def open(self) -> Self:
        """Create the sequence (unless updating one) and a session on it.

        Raises:
            RuntimeError: the writer was opened before.
            AlreadyExistsError: the sequence exists (``sequence_create``).
            MosaicoError, ConnectionError: from the server; nothing is left behind.
        """
        if self._state is not WriterState.NEW:
            raise RuntimeError(f"a SequenceWriter can be opened only once (it is {self._state.value})")
        control = self._transport.control
        if self._create_sequence:
            control.request(msg.SequenceCreateRequest(self.sequence_name, self.metadata))
        try:
            reply = msg.SessionCreateResponse.from_dict(control.request(msg.SessionCreateRequest(self.sequence_name)))
        except BaseException:
            if self._create_sequence:
                self._quietly(msg.SequenceDeleteRequest(self.sequence_name))
            raise
        self.session_uuid, self.session_locator = reply.uuid, reply.locator
        self._scheduler = BatchScheduler(self.max_batch_age_s)
        self._scheduler.start()
        self._state = WriterState.OPEN
        log.info("sequence %s: session %s open", self.sequence_name, self.session_locator)
        return self

    def __enter__(self) -> Self:
        return self.open()

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if self._state is not WriterState.OPEN:
            return
        if exc is None:
            try:
                self.finalize()
            except BaseException as err:
                self.abort(err)
                raise
            return
        self.abort(exc)

    # -------------------------------------------------------------- topics
    def topic_create(
        self,
        topic_name: str,
        metadata: Mapping[str, Any],
        converter: BatchConverter | None = None,
        *,
        schema: pa.Schema | None = None,
        ontology_tag: str | None = None,
        serialization_format: str | None = None,
    ) -> TopicWriter:
        """Create a topic in this session and open its DoPut stream (``docs/protocol.md`` § DoPut).

        Give a ``converter`` (schema, ontology tag and serialization format come from
        it, and :meth:`TopicWriter.push` takes serialized messages), or a ``schema``
        starting with ``timestamp_ns: int64 NOT NULL`` plus an ``ontology_tag`` (then
        use :meth:`TopicWriter.push_batch`).

        Raises:
            RuntimeError: the writer is not open.
            InvalidArgumentError: invalid or duplicate topic name, or a schema without ``timestamp_ns``.
            AlreadyExistsError: the sequence already has a topic of that name (an earlier session).
            MosaicoError, ConnectionError: from the server.
        """
        self._require_open()
        path = names.validate_topic_name(topic_name)
        if converter is not None:
            schema = converter.schema
            ontology_tag = converter.ontology_tag
            serialization_format = serialization_format or converter.serialization_format
        if schema is None or ontology_tag is None:
            raise InvalidArgumentError(f"topic {topic_name}: give a converter, or a schema and an ontology_tag")
        if len(schema) == 0 or not schema.field(0).equals(TIMESTAMP_FIELD):
            raise InvalidArgumentError(f"topic {topic_name}: schema must start with timestamp_ns: int64 not null")
        serialization_format = serialization_format or "default"
        with self._lock:
            if topic_name in self._topics:
                raise InvalidArgumentError(f"topic {topic_name} already exists in this session")
        transport = self._transport
        assert self.session_uuid is not None and self._scheduler is not None
        locator = names.topic_locator(self.sequence_name, path)
        reply = transport.control.request(
            msg.TopicCreateRequest(self.session_uuid, locator, serialization_format, ontology_tag, dict(metadata))
        )
        topic_uuid = msg.TopicCreateResponse.from_dict(reply).uuid
        connection = transport.pool.next()
        try:
            stream = connection.open_put(locator, topic_uuid, schema, self._put_options)
        except BaseException:
            self._quietly(msg.TopicDeleteRequest(locator))
            raise
        spool = None
        if self.spool is not None:
            spool = self.spool.topic(
                self.sequence_name, self.session_locator or "", path, schema,
                {"resource_locator": locator, "ontology_tag": ontology_tag,
                 "serialization_format": serialization_format, "user_metadata": dict(metadata)},
            )
        writer = TopicWriter(
            name=topic_name,
            locator=locator,
            uuid=topic_uuid,
            schema=schema,
            converter=converter,
            connection=connection,
            processing=transport.processing,
            budget=transport.budget,
            stream=stream,
            max_batch_bytes=self.max_batch_size_bytes,
            max_batch_records=self.max_batch_size_records,
            max_batch_age_ns=int(self.max_batch_age_s * 1e9),
            notify=self._notifier(locator),
            wake=self._scheduler.wake,
            spool=spool,
        )
        with self._lock:
            self._topics[topic_name] = writer
        self._scheduler.add(writer)
        log.debug("topic %s: created on data connection %d", locator, connection.index)
        return writer

    def get_topic_writer(self, topic_name: str) -> TopicWriter | None:
        self._require_open()
        return self._topics.get(topic_name)

    def topic_writer_exists(self, topic_name: str) -> bool:
        return topic_name in self._topics

    def list_topic_writers(self) -> list[str]:
        return list(self._topics)

    @property
    def topic_writers(self) -> dict[str, TopicWriter]:
        return dict(self._topics)

    # -------------------------------------------------------------- end of session
    def flush(self) -> None:
        """Send everything pushed so far on every topic; wait until it is on the streams.

        Raises:
            RuntimeError: the writer is not open. MosaicoError: a topic's background error.
        """
        self._require_open()
        for writer in list(self._topics.values()):
            writer.flush()

    def finalize(self) -> None:
        """End every DoPut stream (flushing, waiting for the server's acknowledgement),
        then ``session_finalize``.

        Raises:
            RuntimeError: the writer is not open.
            MosaicoError, ConnectionError: a topic's error or the server's refusal; the
                writer stays open, so that :meth:`abort` can apply the error policy.
        """
        self._require_open()
        for writer in list(self._topics.values()):
            writer.close(flush=True)
        self._stop_scheduler()
        assert self.session_uuid is not None
        self._transport.control.request(msg.SessionFinalizeRequest(self.session_uuid))
        self._state = WriterState.FINALIZED
        log.info("sequence %s: session %s finalized", self.sequence_name, self.session_locator)

    def abort(self, error: BaseException | str, policy: SessionLevelErrorPolicy | str | None = None) -> WriterState:
        """Apply an error policy (``policy``, default :attr:`on_error`) for ``error``.

        Never raises; returns the state reached (``REPORTED``, ``DELETED``, or ``FAILED``
        when the policy's calls could not reach the server). A writer that is not open is
        left as it is.
        """
        if self._state is not WriterState.OPEN:
            return self._state
        chosen = SessionLevelErrorPolicy(policy) if policy is not None else self.on_error
        reason = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        delete = chosen is SessionLevelErrorPolicy.Delete
        # Every open topic is ended (flushed under Report: no data already received is
        # lost) and gets an error notification, as the SDK does for both policies.
        for writer in list(self._topics.values()):
            self._quietly_close(writer, flush=not delete)
            self._quietly(msg.TopicNotificationCreateRequest(writer.locator, str(writer.error or reason)))
        self._stop_scheduler()
        if delete:
            done = self._quietly(msg.SessionDeleteRequest(self.session_locator or ""))
            if self._create_sequence:
                done = self._quietly(msg.SequenceDeleteRequest(self.sequence_name))
            self._state = WriterState.DELETED if done else WriterState.FAILED
        else:
            self._quietly(msg.SequenceNotificationCreateRequest(self.sequence_name, reason))
            done = self._quietly(msg.SessionFinalizeRequest(self.session_uuid or ""))
            self._state = WriterState.REPORTED if done else WriterState.FAILED
        if done:
            log.warning("sequence %s: session %s after error (%s)", self.sequence_name, self._state.value, reason)
        else:
            log.error(
                "sequence %s: the %s policy could not reach the server; session %s is left as it was (%s)",
                self.sequence_name, chosen.value, self.session_locator, reason,
            )
        return self._state

    # -------------------------------------------------------------- helpers
    def _notifier(self, locator: str) -> Callable[[str], None]:
        def notify(text: str) -> None:
            self._quietly(msg.TopicNotificationCreateRequest(locator, text))

        return notify

    def _stop_scheduler(self) -> None:
        if self._scheduler is not None:
            self._scheduler.stop()
            self._scheduler = None

    def _require_open(self) -> None:
        if self._state is WriterState.NEW:
            raise RuntimeError("SequenceWriter is not open: call open() or use it in a 'with' block")
        if self._state is not WriterState.OPEN:
            raise RuntimeError(f"SequenceWriter is {self._state.value}")

    def _quietly(self, request: msg.Request) -> bool:
        """Send a request; log instead of raising. True if the server accepted it."""
        try:
            self._transport.control.request(request)
            return True
        except (MosaicoError, ConnectionError) as exc:
            log.error("sequence %s: %s failed: %s", self.sequence_name, request.ACTION, exc)
            return False

    def _quietly_close(self, writer: TopicWriter, flush: bool) -> None:
        try:
            writer.close(flush=flush)
        except (MosaicoError, ConnectionError, RuntimeError) as exc:
            log.error("topic %s: close failed: %s", writer.locator, exc)
