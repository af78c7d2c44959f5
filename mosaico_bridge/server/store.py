"""On-disk store of the embedded Mosaico server: the facade :class:`MosaicoStore`.

The store keeps sequences, their sessions and topics, the topics' Arrow data and the
notifications under one root directory; it is the only part of the server that touches
the disk. :mod:`mosaico_bridge.server.flight_server` turns Flight calls into calls of
:class:`MosaicoStore`. Protocol notes: ``docs/protocol.md``.

Where things live:

* :mod:`.catalog`: the on-disk layout, records and snapshots, their JSON files;
* :mod:`.chunks`: chunk files (Arrow IPC streams): writing, validating, time-ordered reads;
* :mod:`.notifications`: sequence and topic notifications;
* :mod:`.recovery`: opening a root, cleaning leftovers, loading, crash recovery.

Record batches are fully validated, then appended to the chunk file and flushed to the
operating system as they arrive, so a crash of the server loses at most the batch being
written; a topic whose ``topic.json`` still says ``writing`` is rescanned when the store
is opened again. Every public method is thread-safe.

Timestamps are nanoseconds (``*_ns``), sizes are bytes.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import uuid as uuid_mod
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa

from mosaico_bridge.common.clock import now_ns
from mosaico_bridge.common.files import atomic_write_bytes, atomic_write_json, make_dir
from mosaico_bridge.protocol import names
from mosaico_bridge.protocol.errors import (
    AlreadyExistsError,
    BadKeyError,
    InternalError,
    InvalidArgumentError,
    LockedError,
    NotFoundError,
)
from mosaico_bridge.protocol.messages import NOTIFICATION_ERROR, SERIALIZATION_FORMATS
from mosaico_bridge.server import catalog, chunks, recovery
from mosaico_bridge.server import notifications as notes
from mosaico_bridge.server.catalog import (
    Chunk,
    SequenceInfo,
    SequenceRecord,
    SessionInfo,
    SessionRecord,
    TopicInfo,
    TopicRecord,
)
from mosaico_bridge.server.notifications import Notification
from mosaico_bridge.server.writer import TopicDataWriter

logger = logging.getLogger("mosaico_bridge.server")

__all__ = ["MosaicoStore", "Notification", "SequenceInfo", "SessionInfo", "TopicDataWriter", "TopicInfo"]


class MosaicoStore:
    """Sequences, sessions, topics, data and notifications under ``root``.

    Opening the store creates ``root`` if needed and loads what an earlier server left
    (:mod:`.recovery`).

    Args:
        root: the store folder.
        compression: ``store_compression`` of new chunk files: ``none``, ``lz4`` (default)
            or ``zstd`` (Arrow IPC buffer compression; reading handles every setting).

    Raises:
        OSError: if ``root`` cannot be created or written.
        InternalError: if ``root`` holds a corrupt marker or a store of a newer format.
        ValueError: unknown compression.
    """

    def __init__(self, root: str | os.PathLike, *, compression: str = chunks.DEFAULT_COMPRESSION):
        chunks.write_options(compression)  # checks the name
        self._compression = compression
        self._root = Path(root).expanduser().resolve()
        self._lock = threading.RLock()
        self._sequences: dict[str, SequenceRecord] = {}
        self._sessions: dict[str, tuple[str, SessionRecord]] = {}  # uuid -> (sequence, session)
        recovery.open_root(self._root)
        recovery.load_all(self._root, self._add_loaded)
        logger.info("store %s: %d sequence(s) loaded", self._root, len(self._sequences))

    def _add_loaded(self, seq: SequenceRecord) -> None:
        recovery.note_interrupted_sessions(seq)
        self._sequences[seq.locator] = seq
        for session in seq.sessions.values():
            self._sessions[session.uuid] = (seq.locator, session)

    @property
    def root(self) -> Path:
        """The absolute root directory."""
        return self._root

    @property
    def compression(self) -> str:
        """Compression of new chunk files (``none``, ``lz4`` or ``zstd``)."""
        return self._compression

    # ---------------------------------------------------------------- helpers

    def _trash(self, directory: Path) -> Path | None:
        """Move ``directory`` out of the tree at once (atomic rename); return its new path.

        The caller deletes the returned folder with :meth:`_purge` after releasing the lock.
        """
        target = self._root / catalog.TRASH / f"{directory.name[:64]}-{uuid_mod.uuid4().hex}"
        try:
            os.replace(directory, target)
        except FileNotFoundError:
            return None
        return target

    @staticmethod
    def _purge(paths: list) -> None:
        for path in paths:
            if path is not None:
                shutil.rmtree(path, ignore_errors=True)

    def _get_seq(self, name: str) -> SequenceRecord:
        loc = names.validate_sequence_name(name)
        seq = self._sequences.get(loc)
        if seq is None:
            raise NotFoundError(f"sequence `{loc}` not found")
        return seq

    def _get_topic(self, locator: str) -> TopicRecord:
        seq_name, path = names.parse_topic_locator(locator)
        seq = self._sequences.get(seq_name)
        if seq is None:
            raise NotFoundError(f"sequence `{seq_name}` not found")
        topic = seq.topics.get(path)
        if topic is None:
            raise NotFoundError(f"topic `{seq_name}/{path}` not found")
        return topic

    def _get_session_by_uuid(self, session_uuid: str) -> tuple[SequenceRecord, SessionRecord]:
        try:
            uuid_mod.UUID(session_uuid)
        except (ValueError, TypeError, AttributeError) as exc:
            raise BadKeyError(f"malformed key :: {exc}") from None
        entry = self._sessions.get(session_uuid)
        if entry is None:
            raise NotFoundError(f"session `{session_uuid}` not found")
        return self._sequences[entry[0]], entry[1]

    @staticmethod
    def _create_folder(final: Path, write: Any) -> None:
        """Create ``final`` through a staging folder: ``write(staging)`` fills it, then one
        rename publishes it. A failure removes the staging folder.

        Raises:
            InternalError: the folder exists already, or the disk refused (no path sent).
        """
        staging = final.parent / f"{catalog.STAGING_PREFIX}{uuid_mod.uuid4().hex}"
        try:
            make_dir(staging)
            write(staging)
            if final.exists():
                raise InternalError("a folder of that name exists but holds nothing readable; move it away first")
            os.replace(staging, final)
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            logger.error("cannot create %s: %s", final, exc)
            raise InternalError(f"the store cannot create the folder ({exc.strerror or type(exc).__name__})") from None
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    # ---------------------------------------------------------------- sequences

    def sequence_names(self) -> list[str]:
        """Names of all sequences, oldest first."""
        with self._lock:
            return [s.locator for s in sorted(self._sequences.values(), key=lambda s: s.created_at_ns)]

    def get_sequence(self, name: str) -> SequenceInfo:
        """Snapshot of a sequence.

        Raises:
            InvalidArgumentError: bad name. NotFoundError: no such sequence.
        """
        with self._lock:
            return self._get_seq(name).info()

    def create_sequence(self, name: str, user_metadata: Mapping[str, Any]) -> SequenceInfo:
        """Create an empty sequence (``sequence_create``, ``docs/protocol.md`` § DoAction).

        Raises:
            InvalidArgumentError: bad name, or metadata that is not a plain JSON object.
            AlreadyExistsError: ``sequence `<name>` already exists``.
            InternalError: the disk refused.
        """
        loc = names.validate_sequence_name(name)
        metadata = catalog.json_object(user_metadata, "user_metadata")
        with self._lock:
            if loc in self._sequences:
                raise AlreadyExistsError(f"sequence `{loc}` already exists")
            final = self._root / catalog.SEQUENCES / loc
            seq = SequenceRecord(locator=loc, directory=final, created_at_ns=now_ns(), user_metadata=metadata)

            def fill(staging: Path) -> None:
                make_dir(staging / catalog.TOPICS)
                atomic_write_json(staging / catalog.SEQUENCE_FILE, seq.to_json())

            self._create_folder(final, fill)
            self._sequences[loc] = seq
            logger.info("sequence %s created", loc)
            return seq.info()

    def delete_sequence(self, name: str) -> None:
        """Remove a sequence with all its sessions, topics, data and notifications.

        Raises:
            InvalidArgumentError: bad name. NotFoundError: no such sequence.
        """
        with self._lock:
            seq = self._get_seq(name)
            seq.deleted = True
            for topic in seq.topics.values():
                topic.deleted = True
            for session_uuid in seq.sessions:
                self._sessions.pop(session_uuid, None)
            del self._sequences[seq.locator]
            trashed = [self._trash(seq.directory)]
            logger.info("sequence %s deleted", seq.locator)
        self._purge(trashed)

    # ---------------------------------------------------------------- sessions

    def create_session(self, sequence: str) -> SessionInfo:
        """Open a new session of ``sequence`` (``session_create``, ``docs/protocol.md`` § Write path).

        Raises:
            InvalidArgumentError: bad name. NotFoundError: no such sequence.
        """
        with self._lock:
            seq = self._get_seq(sequence)
            session = SessionRecord(
                uuid=str(uuid_mod.uuid4()),
                locator=names.session_locator(seq.locator, catalog.new_ulid()),
                created_at_ns=now_ns(),
            )
            seq.sessions[session.uuid] = session
            self._sessions[session.uuid] = (seq.locator, session)
            seq.save()
            logger.info("session %s opened", session.locator)
            return session.info(seq.locator)

    def get_session(self, session_uuid: str) -> SessionInfo:
        """Snapshot of a session by uuid.

        Raises:
            BadKeyError: malformed uuid. NotFoundError: no such session.
        """
        with self._lock:
            seq, session = self._get_session_by_uuid(session_uuid)
            return session.info(seq.locator)

    def finalize_session(self, session_uuid: str) -> SessionInfo:
        """Finalize a session (``session_finalize``, ``docs/protocol.md`` § Write path).

        Sets ``completed_at_ns``. A session without an error report is locked, and so are
        its topics; a session for which a sequence error notification arrived while it
        was open (the SDK's Report path) is completed but left unlocked, and its topics
        are unlocked too, so that it can be deleted later. Finalizing twice returns the
        session unchanged.

        Raises:
            BadKeyError: malformed uuid. NotFoundError: no such session.
            LockedError: a topic of the session still has an open DoPut stream.
        """
        with self._lock:
            seq, session = self._get_session_by_uuid(session_uuid)
            if session.completed_at_ns is not None:
                return session.info(seq.locator)
            busy = [seq.topics[p].locator for p in session.topics if seq.topics[p].writing]
            if busy:
                raise LockedError(f"session `{session.locator}` has topics still being written: {', '.join(busy)}")
            now = now_ns()
            session.completed_at_ns = now
            session.locked = not session.error_reported
            for path in session.topics:
                topic = seq.topics[path]
                topic.locked = session.locked
                if topic.completed_at_ns is None:
                    topic.completed_at_ns = now
                topic.save()
            seq.save()
            logger.info(
                "session %s finalized%s", session.locator, "" if session.locked else " after an error report (unlocked)"
            )
            return session.info(seq.locator)

    def delete_session(self, session_locator: str) -> None:
        """Remove a session with its topics and their data (``session_delete``, ``docs/protocol.md`` § Write path).

        Raises:
            InvalidArgumentError: malformed locator. NotFoundError: no such session.
            LockedError: ``session `<locator>` is locked`` (finalized without error).
        """
        seq_name, _ = names.split_session_locator(session_locator)
        with self._lock:
            seq = self._get_seq(seq_name)
            loc = names.sequence_locator(session_locator)
            session = next((s for s in seq.sessions.values() if s.locator == loc), None)
            if session is None:
                raise NotFoundError(f"session `{loc[:200]}` not found")
            if session.locked:
                raise LockedError(f"session `{loc}` is locked")
            trashed = []
            for path in list(session.topics):
                topic = seq.topics.pop(path)
                topic.deleted = True
                trashed.append(self._trash(topic.directory))
            del seq.sessions[session.uuid]
            self._sessions.pop(session.uuid, None)
            seq.save()
            logger.info("session %s deleted", loc)
        self._purge(trashed)

    # ---------------------------------------------------------------- topics

    def create_topic(
        self,
        session_uuid: str,
        topic_locator: str,
        serialization_format: str,
        ontology_tag: str,
        user_metadata: Mapping[str, Any],
    ) -> TopicInfo:
        """Create a topic in an open session (``topic_create``, ``docs/protocol.md`` § Write path).

        Raises:
            InvalidArgumentError: bad locator, format, tag or metadata; or the topic's
                sequence is not the session's.
            BadKeyError: malformed session uuid. NotFoundError: no such session.
            LockedError: the session is finalized.
            AlreadyExistsError: ``topic `<seq/topic>` already exists``.
            InternalError: the disk refused.
        """
        seq_name, path = names.parse_topic_locator(topic_locator)
        if serialization_format not in SERIALIZATION_FORMATS:
            raise InvalidArgumentError(
                f"serialization_format must be one of {', '.join(SERIALIZATION_FORMATS)}, "
                f"got {str(serialization_format)[:64]!r}"
            )
        if not isinstance(ontology_tag, str) or not ontology_tag.strip() or len(ontology_tag) > names.MAX_NAME_LENGTH:
            raise InvalidArgumentError(f"ontology_tag must be a non-empty string of at most {names.MAX_NAME_LENGTH} characters")
        metadata = catalog.json_object(user_metadata, "user_metadata")
        with self._lock:
            seq, session = self._get_session_by_uuid(session_uuid)
            if seq.locator != seq_name:
                raise InvalidArgumentError(f"session `{session.locator}` does not belong to sequence `{seq_name}`")
            if session.completed_at_ns is not None:
                raise LockedError(f"session `{session.locator}` is finalized")
            if path in seq.topics:
                raise AlreadyExistsError(f"topic `{seq.locator}/{path}` already exists")
            final = seq.directory / catalog.TOPICS / catalog.topic_dirname(path)
            topic = TopicRecord(
                sequence=seq.locator,
                path=path,
                directory=final,
                uuid=str(uuid_mod.uuid4()),
                session_uuid=session.uuid,
                ontology_tag=ontology_tag,
                serialization_format=serialization_format,
                user_metadata=metadata,
                created_at_ns=now_ns(),
            )
            self._create_folder(final, lambda staging: atomic_write_json(staging / catalog.TOPIC_FILE, topic.to_json()))
            seq.topics[path] = topic
            session.topics.append(path)
            seq.save()
            logger.info("topic %s created (%s, %s)", topic.locator, ontology_tag, serialization_format)
            return topic.info()

    def get_topic(self, topic_locator: str) -> TopicInfo:
        """Snapshot of a topic.

        Raises:
            InvalidArgumentError: bad locator. NotFoundError: no such sequence or topic.
        """
        with self._lock:
            return self._get_topic(topic_locator).info()

    def delete_topic(self, topic_locator: str) -> None:
        """Remove a topic and its data (``topic_delete``).

        Raises:
            InvalidArgumentError: bad locator. NotFoundError: no such topic.
            LockedError: ``topic `<seq/topic>` is locked``.
        """
        with self._lock:
            topic = self._get_topic(topic_locator)
            if topic.locked:
                raise LockedError(f"topic `{topic.locator}` is locked")
            seq = self._sequences[topic.sequence]
            del seq.topics[topic.path]
            session = seq.sessions.get(topic.session_uuid)
            if session is not None and topic.path in session.topics:
                session.topics.remove(topic.path)
            topic.deleted = True
            trashed = [self._trash(topic.directory)]
            seq.save()
            logger.info("topic %s deleted", topic.locator)
        self._purge(trashed)

    def topic_schema(self, topic_locator: str) -> pa.Schema:
        """The schema received with the topic's first DoPut, unchanged (``docs/protocol.md`` § Read path).

        Raises:
            InvalidArgumentError: bad locator. NotFoundError: no such topic, or no DoPut yet.
        """
        with self._lock:
            topic = self._get_topic(topic_locator)
            if topic.schema is None:
                raise NotFoundError(f"topic `{topic.locator}` has no schema yet (no DoPut received)")
            return topic.schema

    # ---------------------------------------------------------------- writing

    def open_writer(self, topic_locator: str, topic_uuid: str | None, schema: pa.Schema) -> TopicDataWriter:
        """Start a DoPut stream on a topic (``docs/protocol.md`` § DoPut).

        The first DoPut stores ``schema`` (field order, types, nullability, field and schema
        metadata). A topic left unlocked by a broken stream may take a new DoPut with the
        same schema; it adds a chunk.

        Raises:
            InvalidArgumentError: bad locator, ``missing timestamp field in schema``,
                ``wrong timestamp field type, expected int64``, or a schema other than
                the stored one.
            BadKeyError: ``malformed key :: …`` or ``bad key`` (uuid not the topic's).
            NotFoundError: no such topic.
            LockedError: the topic is locked, its session finalized, or another DoPut is open.
        """
        if topic_uuid is None:
            raise BadKeyError("malformed key :: the descriptor has no topic_uuid")
        try:
            uuid_mod.UUID(topic_uuid)
        except (ValueError, TypeError, AttributeError) as exc:
            raise BadKeyError(f"malformed key :: {exc}") from None
        chunks.check_schema(schema)
        with self._lock:
            topic = self._get_topic(topic_locator)
            if topic.uuid != topic_uuid:
                raise BadKeyError("bad key")
            if topic.locked:
                raise LockedError(f"topic `{topic.locator}` is locked")
            if topic.writing:
                raise LockedError(f"topic `{topic.locator}` is already being written")
            seq = self._sequences[topic.sequence]
            session = seq.sessions.get(topic.session_uuid)
            if session is None or session.completed_at_ns is not None:
                raise LockedError(f"session of topic `{topic.locator}` is finalized")
            if topic.schema is None:
                atomic_write_bytes(topic.directory / catalog.SCHEMA_FILE, schema.serialize().to_pybytes())
                topic.schema = schema
            elif not topic.schema.equals(schema, check_metadata=True):
                raise InvalidArgumentError(f"schema differs from the one stored for topic `{topic.locator}`")
            index = len(topic.chunks)
            while (topic.directory / f"chunk-{index:06d}.arrows").exists():
                index += 1  # a quarantined or stray file keeps its name
            chunk = Chunk(file=f"chunk-{index:06d}.arrows")
            writer = TopicDataWriter(self, topic, chunk, schema, self._compression)
            topic.chunks.append(chunk)
            topic.writing = True
            topic.save()
            logger.debug("topic %s: DoPut stream opened (%s)", topic.locator, chunk.file)
            return writer

    def _note_batch(self, topic: TopicRecord, chunk: Chunk, chunk_size: int, ts: Any, in_order: bool) -> None:
        with self._lock:
            chunk.bytes = chunk_size
            if not in_order:
                chunk.sorted = False
            recovery.note_rows(topic, chunk, ts)

    def _end_writer(
        self, topic: TopicRecord, chunk: Chunk, chunk_size: int | None, complete: bool, reason: str | None, rows: int
    ) -> None:
        with self._lock:
            if chunk_size is not None:
                chunk.bytes = chunk_size
            topic.writing = False
            if complete:
                topic.locked = True
                topic.completed_at_ns = now_ns()
            else:
                topic.locked = False
            if reason and not topic.deleted:
                msg = f"DoPut stream ended early: {reason}; {rows} rows of this stream kept, topic left unlocked"
                topic.notifications.append(notes.new_entry(topic.locator, notes.SERVER_NOTICE, msg))
                self._save_notes(topic.directory, topic.notifications, topic.locator)
            try:
                topic.save()
            except OSError as exc:
                logger.error("topic %s: cannot save its record: %s", topic.locator, exc.strerror)
            logger.info(
                "topic %s: DoPut stream %s (%d rows in total)",
                topic.locator,
                "complete, topic locked" if complete else "interrupted, data kept, topic unlocked",
                topic.row_count,
            )

    # ---------------------------------------------------------------- reading

    def window_stats(
        self, topic_locator: str, start_ns: int | None, end_ns: int | None
    ) -> tuple[tuple[int, int] | None, int]:
        """``((min_ns, max_ns), row_count)`` of the rows with ``start_ns <= t < end_ns``.

        The interval is None when no row falls in the window. A bound that is None is open.

        Raises:
            InvalidArgumentError: bad locator. NotFoundError: no such topic.
        """
        with self._lock:
            topic = self._get_topic(topic_locator)
            if topic.schema is None or topic.row_count == 0 or topic.min_ts is None or topic.max_ts is None:
                return None, 0
            if (start_ns is None or start_ns <= topic.min_ts) and (end_ns is None or end_ns > topic.max_ts):
                return (topic.min_ts, topic.max_ts), topic.row_count
            paths = [topic.directory / c.file for c in topic.chunks]
            writing = topic.writing
        rows, lo, hi = 0, None, None
        for path in paths:
            for batch in chunks.iter_chunk_batches(path, quiet=writing):
                ts = chunks.ts_array(chunks.window(batch.select([chunks.TIMESTAMP]), start_ns, end_ns))
                if ts.size:
                    rows += int(ts.size)
                    lo = int(ts.min()) if lo is None else min(lo, int(ts.min()))
                    hi = int(ts.max()) if hi is None else max(hi, int(ts.max()))
        return ((lo, hi) if rows and lo is not None and hi is not None else None), rows

    def read(
        self,
        topic_locator: str,
        start_ns: int | None = None,
        end_ns: int | None = None,
        *,
        max_rows: int = 8192,
        max_bytes: int = 25 * 1024 * 1024,
    ) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
        """The stored schema and an iterator of the topic's rows for DoGet.

        Rows come sorted by ``timestamp_ns`` (stable: rows with equal timestamps keep
        their arrival order), restricted to ``start_ns <= t < end_ns`` (a None bound is
        open). Batches hold at most ``max_rows`` rows and about ``max_bytes`` bytes (a
        single larger row goes alone); no batch is empty. A topic written out of order
        is merged chunk by chunk (:func:`.chunks.merge_sorted`): memory holds one batch
        per chunk, and a whole chunk only for a chunk unsorted in itself.

        Raises:
            InvalidArgumentError: bad locator. NotFoundError: no such topic or no schema.
        """
        with self._lock:
            topic = self._get_topic(topic_locator)
            if topic.schema is None:
                raise NotFoundError(f"topic `{topic.locator}` has no data")
            schema = topic.schema
            parts = [(topic.directory / c.file, c.sorted) for c in topic.chunks]
            ts_sorted = topic.ts_sorted
            quiet = topic.writing

        def windowed(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
            for batch in batches:
                batch = chunks.window(batch, start_ns, end_ns)
                if batch.num_rows:
                    yield batch

        def source() -> Iterator[pa.RecordBatch]:
            if ts_sorted:
                for path, _ in parts:
                    yield from windowed(chunks.iter_chunk_batches(path, quiet=quiet))
                return
            streams = [
                windowed(chunks.iter_chunk_batches(path, quiet=quiet) if ok else chunks.sorted_chunk(path, quiet=quiet))
                for path, ok in parts
            ]
            yield from chunks.merge_sorted(streams, schema)

        return schema, chunks.bounded(source(), max_rows, max_bytes)

    # ---------------------------------------------------------------- notifications

    @staticmethod
    def _save_notes(directory: Path | None, entries: list, owner: str) -> None:
        try:
            notes.save(directory, entries)
        except OSError as exc:
            logger.error("%s: cannot store notifications: %s", owner, exc.strerror)
            raise InternalError("the store cannot write the notification") from None

    def add_sequence_notification(self, sequence: str, notification_type: str, msg: str) -> Notification:
        """Store a sequence notification (``sequence_notification_create``, ``docs/protocol.md`` § DoAction).

        An ``error`` notification also marks every open session of the sequence as
        reported, so that its ``session_finalize`` leaves it unlocked (Report path, ``docs/protocol.md`` § Write path).

        Raises:
            InvalidArgumentError: bad name or empty type. NotFoundError: no such sequence.
        """
        with self._lock:
            seq = self._get_seq(sequence)
            entry = notes.new_entry(seq.locator, notification_type, msg)
            seq.notifications.append(entry)
            self._save_notes(seq.directory, seq.notifications, seq.locator)
            if notification_type == NOTIFICATION_ERROR:
                changed = False
                for session in seq.sessions.values():
                    if session.completed_at_ns is None and not session.error_reported:
                        session.error_reported = True
                        changed = True
                if changed:
                    seq.save()
            logger.info("sequence %s: %s notification stored", seq.locator, notification_type)
            return Notification(**entry)

    def list_sequence_notifications(self, sequence: str) -> list[Notification]:
        """Notifications of a sequence, oldest first.

        Raises:
            InvalidArgumentError: bad name. NotFoundError: no such sequence.
        """
        with self._lock:
            return notes.snapshot(self._get_seq(sequence).notifications)

    def purge_sequence_notifications(self, sequence: str) -> int:
        """Delete the notifications of a sequence; returns how many there were.

        Raises:
            InvalidArgumentError: bad name. NotFoundError: no such sequence.
        """
        with self._lock:
            seq = self._get_seq(sequence)
            count = len(seq.notifications)
            seq.notifications = []
            self._save_notes(seq.directory, [], seq.locator)
            return count

    def add_topic_notification(self, topic_locator: str, notification_type: str, msg: str) -> Notification:
        """Store a topic notification (``topic_notification_create``, ``docs/protocol.md`` § DoAction).

        Raises:
            InvalidArgumentError: bad locator or empty type. NotFoundError: no such topic.
        """
        with self._lock:
            topic = self._get_topic(topic_locator)
            entry = notes.new_entry(topic.locator, notification_type, msg)
            topic.notifications.append(entry)
            self._save_notes(None if topic.deleted else topic.directory, topic.notifications, topic.locator)
            logger.info("topic %s: %s notification stored", topic.locator, notification_type)
            return Notification(**entry)

    def list_topic_notifications(self, topic_locator: str) -> list[Notification]:
        """Notifications of a topic, oldest first.

        Raises:
            InvalidArgumentError: bad locator. NotFoundError: no such topic.
        """
        with self._lock:
            return notes.snapshot(self._get_topic(topic_locator).notifications)

    def purge_topic_notifications(self, topic_locator: str) -> int:
        """Delete the notifications of a topic; returns how many there were.

        Raises:
            InvalidArgumentError: bad locator. NotFoundError: no such topic.
        """
        with self._lock:
            topic = self._get_topic(topic_locator)
            count = len(topic.notifications)
            topic.notifications = []
            self._save_notes(None if topic.deleted else topic.directory, [], topic.locator)
            return count
