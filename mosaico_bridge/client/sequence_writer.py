"""SequenceWriter: one write session on a sequence, used inside ``with``.

Call order on the wire (``docs/protocol.md`` § Write path): ``sequence_create`` (not when updating an
existing sequence), ``session_create``, then per topic ``topic_create`` and a DoPut
stream; on a clean exit every DoPut stream is ended and ``session_finalize`` sent. On
an exception the session-level error policy runs:

* :attr:`SessionLevelErrorPolicy.Report`: what was received is flushed (no data already
  received is lost), each topic gets an error notification, the sequence gets an error
  notification, and the session is finalized;
* :attr:`SessionLevelErrorPolicy.Delete`: the DoPut streams are ended without flushing,
  each topic gets an error notification, then ``session_delete`` and (if this writer
  created the sequence) ``sequence_delete``.
"""

from __future__ import annotations

import logging
import threading
from enum import Enum
from typing import TYPE_CHECKING, Any, Mapping, Optional

import pyarrow as pa

from ..protocol import messages as msg
from ..protocol import names
from ..protocol.descriptors import TIMESTAMP_FIELD
from ..protocol.errors import InvalidArgumentError, MosaicoError
from .spool import Spool
from .topic_writer import BatchConverter, TopicWriter

if TYPE_CHECKING:
    from .client import MosaicoClient

log = logging.getLogger("mosaico_bridge.client")


class SessionLevelErrorPolicy(Enum):
    """What a SequenceWriter does with a session when an error ends it."""

    Report = "report"
    Delete = "delete"


class SequenceWriter:
    """Writer of one session of a sequence. Get it from ``MosaicoClient.sequence_create``
    (new sequence) or ``MosaicoClient.sequence_update`` (new session on an existing one).

    Every method but the constructor raises RuntimeError outside the ``with`` block.
    """

    def __init__(
        self,
        client: "MosaicoClient",
        sequence_name: str,
        metadata: Mapping[str, Any],
        on_error: SessionLevelErrorPolicy,
        max_batch_size_bytes: int,
        max_batch_size_records: Optional[int],
        create_sequence: bool,
        spool_dir: Optional[str] = None,
    ) -> None:
        self._client = client
        self.sequence_name = names.validate_sequence_name(sequence_name)
        if not isinstance(metadata, Mapping):
            raise InvalidArgumentError(f"sequence metadata must be a mapping, got {type(metadata).__name__}")
        self.metadata = dict(metadata)
        self.on_error = SessionLevelErrorPolicy(on_error)
        self.max_batch_size_bytes = max_batch_size_bytes
        self.max_batch_size_records = max_batch_size_records
        self._create_sequence = create_sequence
        self.spool = Spool(spool_dir) if spool_dir else None
        self._topics: dict[str, TopicWriter] = {}
        self._lock = threading.Lock()
        self._state = "new"  # new -> open -> finalized | reported | deleted
        self.session_uuid: Optional[str] = None
        self.session_locator: Optional[str] = None

    # -------------------------------------------------------------- context manager
    def __enter__(self) -> "SequenceWriter":
        if self._state != "new":
            raise RuntimeError("a SequenceWriter can be entered only once")
        control = self._client._control
        if self._create_sequence:
            control.request(msg.SequenceCreateRequest(self.sequence_name, self.metadata))
        try:
            reply = msg.SessionCreateResponse.from_dict(control.request(msg.SessionCreateRequest(self.sequence_name)))
        except BaseException:
            if self._create_sequence:
                self._quietly(msg.SequenceDeleteRequest(self.sequence_name))
            raise
        self.session_uuid, self.session_locator = reply.uuid, reply.locator
        self._state = "open"
        log.info("sequence %s: session %s open", self.sequence_name, self.session_locator)
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if self._state != "open":
            return False
        if exc is None:
            try:
                self.finalize()
                return False
            except BaseException as err:
                self.abort(err)
                raise
        self.abort(exc)
        return False

    # -------------------------------------------------------------- topics
    def topic_create(
        self,
        topic_name: str,
        metadata: Mapping[str, Any],
        converter: Optional[BatchConverter] = None,
        *,
        schema: Optional[pa.Schema] = None,
        ontology_tag: Optional[str] = None,
        serialization_format: Optional[str] = None,
    ) -> TopicWriter:
        """Create a topic in this session and open its DoPut stream (``docs/protocol.md`` § DoPut).

        Give a ``converter`` (schema, ontology tag and serialization format come from
        it, and :meth:`TopicWriter.push` takes serialized messages), or a ``schema``
        starting with ``timestamp_ns: int64 NOT NULL`` plus an ``ontology_tag`` (then
        use :meth:`TopicWriter.push_batch`).

        Raises:
            RuntimeError: outside ``with``.
            InvalidArgumentError: invalid or duplicate topic name, or a schema without ``timestamp_ns``.
            ServerRefusedError, ConnectionError: from the server.
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
        control = self._client._control
        assert self.session_uuid is not None
        locator = names.topic_locator(self.sequence_name, path)
        reply = control.request(
            msg.TopicCreateRequest(self.session_uuid, locator, serialization_format, ontology_tag, dict(metadata))
        )
        topic_uuid = msg.TopicCreateResponse.from_dict(reply).uuid
        connection = self._client._pool.next()
        try:
            stream = connection.open_put(locator, topic_uuid, schema)
        except BaseException:
            self._quietly(msg.TopicDeleteRequest(locator))
            raise
        writer = TopicWriter(
            name=topic_name,
            locator=locator,
            uuid=topic_uuid,
            schema=schema,
            converter=converter,
            connection=connection,
            processing=self._client._processing,
            stream=stream,
            max_batch_bytes=self.max_batch_size_bytes,
            max_batch_records=self.max_batch_size_records,
            notify=lambda text, loc=locator: self._quietly(msg.TopicNotificationCreateRequest(loc, text)),
            spool=self.spool.topic(
                self.sequence_name,
                self.session_locator or "",
                path,
                schema,
                {
                    "resource_locator": locator,
                    "ontology_tag": ontology_tag,
                    "serialization_format": serialization_format,
                    "user_metadata": dict(metadata),
                },
            )
            if self.spool is not None
            else None,
        )
        with self._lock:
            self._topics[topic_name] = writer
        log.debug("topic %s: created on data connection %d", locator, connection.index)
        return writer

    def get_topic_writer(self, topic_name: str) -> Optional[TopicWriter]:
        self._require_open()
        return self._topics.get(topic_name)

    def topic_writer_exists(self, topic_name: str) -> bool:
        return topic_name in self._topics

    def list_topic_writers(self) -> list[str]:
        return list(self._topics)

    @property
    def topic_writers(self) -> dict[str, TopicWriter]:
        return dict(self._topics)

    @property
    def status(self) -> str:
        """``new``, ``open``, ``finalized``, ``reported``, ``deleted``, or ``failed`` (the
        error policy could not reach the server)."""
        return self._state

    # -------------------------------------------------------------- end of session
    def flush(self) -> None:
        """Write everything pushed so far on every topic; wait for it.

        Raises:
            RuntimeError: outside ``with``. MosaicoError: a topic's background error.
        """
        self._require_open()
        for writer in list(self._topics.values()):
            writer.flush()

    def finalize(self) -> None:
        """End every DoPut stream (flushing), then ``session_finalize``.

        Raises:
            RuntimeError: outside ``with``. MosaicoError: a topic's error or the server's refusal.
        """
        self._require_open()
        for writer in list(self._topics.values()):
            writer.close(flush=True)
        assert self.session_uuid is not None
        self._client._control.request(msg.SessionFinalizeRequest(self.session_uuid))
        self._state = "finalized"
        log.info("sequence %s: session %s finalized", self.sequence_name, self.session_locator)

    def abort(self, error: BaseException) -> None:
        """Apply the session-level error policy for ``error``. Never raises."""
        if self._state != "open":
            return
        reason = f"{type(error).__name__}: {error}"
        delete = self.on_error is SessionLevelErrorPolicy.Delete
        # Every open topic is ended (flushed under Report: no data already received is
        # lost) and gets an error notification, as the SDK does for both policies.
        for writer in list(self._topics.values()):
            self._quietly_close(writer, flush=not delete)
            self._quietly(msg.TopicNotificationCreateRequest(writer.locator, str(writer.error or reason)))
        if delete:
            done = self._quietly(msg.SessionDeleteRequest(self.session_locator or ""))
            if self._create_sequence:
                done = self._quietly(msg.SequenceDeleteRequest(self.sequence_name))
            self._state = "deleted" if done else "failed"
        else:
            self._quietly(msg.SequenceNotificationCreateRequest(self.sequence_name, reason))
            done = self._quietly(msg.SessionFinalizeRequest(self.session_uuid or ""))
            self._state = "reported" if done else "failed"
        if done:
            log.warning("sequence %s: session %s after error (%s)", self.sequence_name, self._state, reason)
        else:
            log.error(
                "sequence %s: the %s policy could not reach the server; session %s is left as it was (%s)",
                self.sequence_name, self.on_error.value, self.session_locator, reason,
            )

    # -------------------------------------------------------------- helpers
    def _require_open(self) -> None:
        if self._state == "new":
            raise RuntimeError("SequenceWriter must be used inside a 'with' block")
        if self._state != "open":
            raise RuntimeError(f"SequenceWriter is {self._state}")

    def _quietly(self, request: msg.Request) -> bool:
        """Send a request; log instead of raising. True if the server accepted it."""
        try:
            self._client._control.request(request)
            return True
        except (MosaicoError, ConnectionError) as exc:
            log.error("sequence %s: %s failed: %s", self.sequence_name, request.ACTION, exc)
            return False

    def _quietly_close(self, writer: TopicWriter, flush: bool) -> None:
        try:
            writer.close(flush=flush)
        except (MosaicoError, ConnectionError) as exc:
            log.error("topic %s: close failed: %s", writer.locator, exc)
