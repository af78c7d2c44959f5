"""On-disk store of the embedded Mosaico server.

The store keeps sequences, their sessions and topics, the topics' Arrow data and the
notifications under one root directory. It is the only part of the server that touches
the disk; :mod:`mosaico_bridge.server.flight_server` turns Flight calls into calls of
:class:`MosaicoStore`. Protocol notes: ``docs/protocol.md``.

Layout under ``root``::

    MOSAICO_STORE                          marker: {"format": 1}
    sequences/<sequence>/sequence.json     locator, created_at_ns, user_metadata, sessions
    sequences/<sequence>/notifications.json
    sequences/<sequence>/topics/<topic>/topic.json
    sequences/<sequence>/topics/<topic>/schema.arrow         IPC schema message, as received
    sequences/<sequence>/topics/<topic>/chunk-000000.arrows  IPC stream, one per DoPut
    sequences/<sequence>/topics/<topic>/notifications.json
    .trash/                                directories being deleted

``<topic>`` is the topic path (``imu/data``) with ``/`` written as ``%2F`` so that every
topic has one flat directory. Metadata files are replaced atomically (temporary file,
fsync, :func:`os.replace`). Record batches are appended to the chunk file and flushed to
the operating system as they arrive, so a crash of the server loses at most the batch
being written; a topic whose ``topic.json`` still says ``writing`` is rescanned when the
store is opened again. Every public method is thread-safe.

Timestamps are nanoseconds (``*_ns``), sizes are bytes.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import threading
import time
import urllib.parse
import uuid as uuid_mod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mosaico_bridge.protocol import names
from mosaico_bridge.protocol.errors import (
    AlreadyExistsError,
    BadKeyError,
    InternalError,
    InvalidArgumentError,
    LockedError,
    MalformedMessageError,
    MosaicoError,
    NotFoundError,
)
from mosaico_bridge.protocol.messages import NOTIFICATION_ERROR, SERIALIZATION_FORMATS

logger = logging.getLogger("mosaico_bridge.server")

STORE_FORMAT = 1
_MARKER = "MOSAICO_STORE"
_SEQUENCES = "sequences"
_TRASH = ".trash"
_SEQUENCE_FILE = "sequence.json"
_TOPIC_FILE = "topic.json"
_SCHEMA_FILE = "schema.arrow"
_NOTIFICATIONS_FILE = "notifications.json"
_TIMESTAMP = names.TIMESTAMP_NS


# --------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------


#: The store raises the protocol's error classes (``docs/protocol.md`` § Errors).
StoreError = MosaicoError
InvalidArgument = InvalidArgumentError
NotFound = NotFoundError
AlreadyExists = AlreadyExistsError
Locked = LockedError
BadKey = BadKeyError


# --------------------------------------------------------------------------------------
# Public snapshots
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Notification:
    """A stored notification; ``name`` is ``seq`` or ``seq/topic``."""

    name: str
    notification_type: str
    msg: str
    created_at_ns: int


@dataclass(frozen=True)
class SessionInfo:
    """Snapshot of a session.

    ``locator`` is ``seq:<ULID>``; ``topics`` are ``seq/topic`` locators in creation
    order; ``completed_at_ns`` is set by ``session_finalize``; ``locked`` is False for an
    open session and for one finalized after an error report.
    """

    uuid: str
    locator: str
    sequence: str
    created_at_ns: int
    locked: bool
    completed_at_ns: Optional[int]
    error_reported: bool
    topics: tuple[str, ...]


@dataclass(frozen=True)
class TopicInfo:
    """Snapshot of a topic.

    ``min_timestamp_ns`` / ``max_timestamp_ns`` are None while the topic has no rows.
    ``total_bytes`` is the size of the chunk files on disk, ``chunk_count`` their number
    (one per DoPut). ``writing`` is True while a DoPut stream is open.
    """

    locator: str
    sequence: str
    path: str
    uuid: str
    session_uuid: str
    ontology_tag: str
    serialization_format: str
    user_metadata: Mapping[str, Any]
    created_at_ns: int
    locked: bool
    completed_at_ns: Optional[int]
    writing: bool
    row_count: int
    total_bytes: int
    chunk_count: int
    min_timestamp_ns: Optional[int]
    max_timestamp_ns: Optional[int]
    schema: Optional[pa.Schema]


@dataclass(frozen=True)
class SequenceInfo:
    """Snapshot of a sequence with its sessions and topics, both in creation order."""

    locator: str
    created_at_ns: int
    user_metadata: Mapping[str, Any]
    sessions: tuple[SessionInfo, ...]
    topics: tuple[TopicInfo, ...]


# --------------------------------------------------------------------------------------
# Internal records (guarded by MosaicoStore._lock)
# --------------------------------------------------------------------------------------


@dataclass
class _Topic:
    sequence: str
    path: str
    directory: Path
    uuid: str
    session_uuid: str
    ontology_tag: str
    serialization_format: str
    user_metadata: dict
    created_at_ns: int
    locked: bool = False
    completed_at_ns: Optional[int] = None
    writing: bool = False
    chunks: list = field(default_factory=list)
    chunk_bytes: list = field(default_factory=list)
    row_count: int = 0
    min_ts: Optional[int] = None
    max_ts: Optional[int] = None
    ts_sorted: bool = True
    schema: Optional[pa.Schema] = None
    notifications: list = field(default_factory=list)
    deleted: bool = False

    @property
    def locator(self) -> str:
        return f"{self.sequence}/{self.path}"

    def to_json(self) -> dict:
        return {
            "format": STORE_FORMAT,
            "locator": self.locator,
            "uuid": self.uuid,
            "session_uuid": self.session_uuid,
            "ontology_tag": self.ontology_tag,
            "serialization_format": self.serialization_format,
            "user_metadata": self.user_metadata,
            "created_at_ns": self.created_at_ns,
            "locked": self.locked,
            "completed_at_ns": self.completed_at_ns,
            "writing": self.writing,
            "chunks": [{"file": f, "bytes": b} for f, b in zip(self.chunks, self.chunk_bytes)],
            "row_count": self.row_count,
            "total_bytes": sum(self.chunk_bytes),
            "chunk_count": len(self.chunks),
            "min_timestamp_ns": self.min_ts,
            "max_timestamp_ns": self.max_ts,
            "timestamps_sorted": self.ts_sorted,
        }

    def info(self) -> TopicInfo:
        return TopicInfo(
            locator=self.locator,
            sequence=self.sequence,
            path=self.path,
            uuid=self.uuid,
            session_uuid=self.session_uuid,
            ontology_tag=self.ontology_tag,
            serialization_format=self.serialization_format,
            user_metadata=json.loads(json.dumps(self.user_metadata)),
            created_at_ns=self.created_at_ns,
            locked=self.locked,
            completed_at_ns=self.completed_at_ns,
            writing=self.writing,
            row_count=self.row_count,
            total_bytes=sum(self.chunk_bytes),
            chunk_count=len(self.chunks),
            min_timestamp_ns=self.min_ts,
            max_timestamp_ns=self.max_ts,
            schema=self.schema,
        )


@dataclass
class _Session:
    uuid: str
    locator: str
    created_at_ns: int
    locked: bool = False
    completed_at_ns: Optional[int] = None
    error_reported: bool = False
    topics: list = field(default_factory=list)  # topic paths, creation order

    def to_json(self, sequence: str) -> dict:
        return {
            "uuid": self.uuid,
            "locator": self.locator,
            "created_at_ns": self.created_at_ns,
            "locked": self.locked,
            "completed_at_ns": self.completed_at_ns,
            "error_reported": self.error_reported,
            "topics": [f"{sequence}/{p}" for p in self.topics],
        }


@dataclass
class _Sequence:
    locator: str
    directory: Path
    created_at_ns: int
    user_metadata: dict
    sessions: dict = field(default_factory=dict)  # uuid -> _Session, creation order
    topics: dict = field(default_factory=dict)  # path -> _Topic
    notifications: list = field(default_factory=list)
    deleted: bool = False

    def to_json(self) -> dict:
        return {
            "format": STORE_FORMAT,
            "locator": self.locator,
            "created_at_ns": self.created_at_ns,
            "user_metadata": self.user_metadata,
            "sessions": [s.to_json(self.locator) for s in self.sessions.values()],
        }


# --------------------------------------------------------------------------------------
# File helpers
# --------------------------------------------------------------------------------------


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``: temporary file in the same folder, fsync, rename."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _atomic_write_json(path: Path, value: Any) -> None:
    _atomic_write_bytes(path, json.dumps(value, indent=1, sort_keys=True).encode("utf-8"))


def _read_json(path: Path) -> Any:
    with open(path, "rb") as f:
        return json.loads(f.read().decode("utf-8"))


def _topic_dirname(path: str) -> str:
    return urllib.parse.quote(path, safe="-_")


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_ulid() -> str:
    """A ULID: 48-bit Unix time in ms + 80 random bits, 26 Crockford base32 characters."""
    value = (time.time_ns() // 1_000_000) << 80 | secrets.randbits(80)
    return "".join(_CROCKFORD[(value >> (5 * i)) & 31] for i in reversed(range(26)))


def _now_ns() -> int:
    return time.time_ns()


def _iter_chunk_batches(path: Path, quiet: bool = False) -> Iterator[pa.RecordBatch]:
    """Record batches of one IPC stream file; a truncated tail ends the iteration."""
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
                    logger.warning("chunk %s ends with an incomplete message (%s); reading stops there", path, exc)
                return
            yield batch
    finally:
        source.close()


def _ts_array(batch: pa.RecordBatch) -> np.ndarray:
    return batch.column(_TIMESTAMP).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)


def check_schema(schema: pa.Schema) -> None:
    """Check that a topic schema has a ``timestamp_ns`` int64 column.

    Raises:
        InvalidArgument: ``missing timestamp field in schema`` or
            ``wrong timestamp field type, expected int64``.
    """
    indices = schema.get_all_field_indices(_TIMESTAMP)
    if len(indices) != 1:
        raise InvalidArgument("missing timestamp field in schema")
    if schema.field(indices[0]).type != pa.int64():
        raise InvalidArgument("wrong timestamp field type, expected int64")


# --------------------------------------------------------------------------------------
# Topic data writer
# --------------------------------------------------------------------------------------


class TopicDataWriter:
    """Appends the record batches of one DoPut stream to a new chunk of a topic.

    Obtain it from :meth:`MosaicoStore.open_writer`. Call :meth:`write` per record batch,
    then exactly one of :meth:`finish` (end of stream: the topic is locked, §3) or
    :meth:`abort` (stream broken: data kept, topic left unlocked). Each batch is flushed to
    the operating system before :meth:`write` returns.
    """

    def __init__(self, store: "MosaicoStore", topic: _Topic, chunk_path: Path, schema: pa.Schema):
        self._store = store
        self._topic = topic
        self._path = chunk_path
        self._schema = schema
        self._file = open(chunk_path, "wb", buffering=0)
        self._writer = pa.ipc.new_stream(self._file, schema)
        self._closed = False
        self.rows_written = 0

    @property
    def locator(self) -> str:
        return self._topic.locator

    def write(self, batch: pa.RecordBatch) -> None:
        """Append one record batch (empty batches are ignored).

        Raises:
            InvalidArgument: if the batch schema differs from the stream schema or
                ``timestamp_ns`` holds nulls.
            NotFound: if the topic was deleted meanwhile.
        """
        if self._closed:
            raise Locked(f"topic `{self._topic.locator}` writer is closed")
        if self._topic.deleted:
            raise NotFound(f"topic `{self._topic.locator}` was deleted")
        if batch.num_rows == 0:
            return
        if not batch.schema.equals(self._schema, check_metadata=False):
            raise InvalidArgument("record batch schema differs from the stream schema")
        ts_col = batch.column(_TIMESTAMP)
        if ts_col.null_count:
            raise InvalidArgument("timestamp_ns holds null values")
        ts = _ts_array(batch)
        self._writer.write_batch(batch)
        self._file.flush()
        size = self._file.tell()
        self.rows_written += batch.num_rows
        self._store._note_batch(self._topic, size, batch.num_rows, ts)

    def finish(self) -> None:
        """Close the chunk at the end of the DoPut stream and lock the topic."""
        self._close(complete=True)

    def abort(self) -> None:
        """Close the chunk after a broken stream: keep the data, leave the topic unlocked."""
        self._close(complete=False)

    def _close(self, complete: bool) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._writer.close()
            self._file.flush()
            os.fsync(self._file.fileno())
            size = self._file.tell()
        except (OSError, pa.ArrowException) as exc:
            logger.error("closing chunk %s failed: %s", self._path, exc)
            size = None
        finally:
            self._file.close()
        self._store._end_writer(self._topic, size, complete)


# --------------------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------------------


class MosaicoStore:
    """Sequences, sessions, topics, data and notifications under ``root``.

    Opening the store creates ``root`` if needed and loads what an earlier server left.

    Raises:
        OSError: if ``root`` cannot be created or written.
        StoreError: if ``root`` holds a store of a newer format.
    """

    def __init__(self, root: str | os.PathLike):
        self._root = Path(root).expanduser().resolve()
        self._lock = threading.RLock()
        self._sequences: dict[str, _Sequence] = {}
        self._sessions: dict[str, tuple[str, _Session]] = {}  # uuid -> (sequence, session)
        self._root.mkdir(parents=True, exist_ok=True)
        marker = self._root / _MARKER
        if marker.exists():
            fmt = _read_json(marker).get("format")
            if not isinstance(fmt, int) or fmt > STORE_FORMAT:
                raise InternalError(f"store at {self._root} has format {fmt!r}; this server reads format {STORE_FORMAT}")
        else:
            _atomic_write_json(marker, {"format": STORE_FORMAT})
        (self._root / _SEQUENCES).mkdir(exist_ok=True)
        trash = self._root / _TRASH
        if trash.exists():
            shutil.rmtree(trash, ignore_errors=True)
        trash.mkdir(exist_ok=True)
        self._load()

    @property
    def root(self) -> Path:
        """The absolute root directory."""
        return self._root

    # ---------------------------------------------------------------- loading

    def _load(self) -> None:
        for seq_dir in sorted((self._root / _SEQUENCES).iterdir()):
            if seq_dir.name.startswith(".") or not seq_dir.is_dir():
                if seq_dir.name.startswith(".tmp-"):
                    shutil.rmtree(seq_dir, ignore_errors=True)
                continue
            try:
                self._load_sequence(seq_dir)
            except (OSError, ValueError, KeyError, TypeError, pa.ArrowException) as exc:
                logger.error("skipping unreadable sequence folder %s: %s", seq_dir, exc)
        logger.info("store %s: %d sequence(s) loaded", self._root, len(self._sequences))

    def _load_sequence(self, seq_dir: Path) -> None:
        meta = _read_json(seq_dir / _SEQUENCE_FILE)
        seq = _Sequence(
            locator=meta["locator"],
            directory=seq_dir,
            created_at_ns=int(meta["created_at_ns"]),
            user_metadata=dict(meta.get("user_metadata") or {}),
        )
        for s in meta.get("sessions", []):
            session = _Session(
                uuid=s["uuid"],
                locator=s["locator"],
                created_at_ns=int(s["created_at_ns"]),
                locked=bool(s.get("locked", False)),
                completed_at_ns=s.get("completed_at_ns"),
                error_reported=bool(s.get("error_reported", False)),
            )
            seq.sessions[session.uuid] = session
        seq.notifications = self._load_notifications(seq_dir)
        topics_dir = seq_dir / "topics"
        loaded: list[_Topic] = []
        if topics_dir.is_dir():
            for tdir in topics_dir.iterdir():
                if tdir.name.startswith("."):
                    shutil.rmtree(tdir, ignore_errors=True)
                    continue
                try:
                    topic = self._load_topic(seq.locator, tdir)
                except (OSError, ValueError, KeyError, TypeError, pa.ArrowException) as exc:
                    logger.error("skipping unreadable topic folder %s: %s", tdir, exc)
                    continue
                if topic.session_uuid not in seq.sessions:
                    logger.warning("topic %s belongs to no known session; skipped", topic.locator)
                    continue
                loaded.append(topic)
        for topic in sorted(loaded, key=lambda t: t.created_at_ns):
            seq.topics[topic.path] = topic
            seq.sessions[topic.session_uuid].topics.append(topic.path)
        self._sequences[seq.locator] = seq
        for session in seq.sessions.values():
            self._sessions[session.uuid] = (seq.locator, session)

    def _load_topic(self, sequence: str, tdir: Path) -> _Topic:
        meta = _read_json(tdir / _TOPIC_FILE)
        _, path = names.split_topic_locator(meta["locator"])
        topic = _Topic(
            sequence=sequence,
            path=path,
            directory=tdir,
            uuid=meta["uuid"],
            session_uuid=meta["session_uuid"],
            ontology_tag=meta["ontology_tag"],
            serialization_format=meta["serialization_format"],
            user_metadata=dict(meta.get("user_metadata") or {}),
            created_at_ns=int(meta["created_at_ns"]),
            locked=bool(meta.get("locked", False)),
            completed_at_ns=meta.get("completed_at_ns"),
            writing=bool(meta.get("writing", False)),
            chunks=[c["file"] for c in meta.get("chunks", [])],
            chunk_bytes=[int(c["bytes"]) for c in meta.get("chunks", [])],
            row_count=int(meta.get("row_count", 0)),
            min_ts=meta.get("min_timestamp_ns"),
            max_ts=meta.get("max_timestamp_ns"),
            ts_sorted=bool(meta.get("timestamps_sorted", True)),
        )
        schema_path = tdir / _SCHEMA_FILE
        if schema_path.exists():
            topic.schema = pa.ipc.read_schema(pa.py_buffer(schema_path.read_bytes()))
        topic.notifications = self._load_notifications(tdir)
        if topic.writing:
            # The server stopped during a DoPut: recount what reached the disk.
            logger.warning("topic %s was being written when the server stopped; recovering its data", topic.locator)
            self._rescan(topic)
            topic.writing = False
            topic.locked = False
            _atomic_write_json(tdir / _TOPIC_FILE, topic.to_json())
        return topic

    def _rescan(self, topic: _Topic) -> None:
        topic.chunk_bytes = []
        topic.row_count = 0
        topic.min_ts = topic.max_ts = None
        topic.ts_sorted = True
        kept = []
        for name in topic.chunks:
            path = topic.directory / name
            if not path.exists():
                continue
            kept.append(name)
            topic.chunk_bytes.append(path.stat().st_size)
            for batch in _iter_chunk_batches(path):
                if batch.num_rows:
                    self._update_stats(topic, batch.num_rows, _ts_array(batch))
        topic.chunks = kept

    @staticmethod
    def _load_notifications(directory: Path) -> list:
        path = directory / _NOTIFICATIONS_FILE
        if not path.exists():
            return []
        return list(_read_json(path))

    # ---------------------------------------------------------------- persistence

    def _save_sequence(self, seq: _Sequence) -> None:
        if not seq.deleted:
            _atomic_write_json(seq.directory / _SEQUENCE_FILE, seq.to_json())

    def _save_topic(self, topic: _Topic) -> None:
        if not topic.deleted:
            _atomic_write_json(topic.directory / _TOPIC_FILE, topic.to_json())

    def _trash(self, directory: Path) -> Optional[Path]:
        """Move ``directory`` out of the tree at once (atomic rename); return its new path.

        The caller deletes the returned folder with :func:`_purge` after releasing the lock.
        """
        target = self._root / _TRASH / f"{directory.name}-{uuid_mod.uuid4().hex}"
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

    # ---------------------------------------------------------------- lookups

    @staticmethod
    def _sequence_name(name: str) -> str:
        return names.validate_sequence_name(name)

    @staticmethod
    def _topic_parts(locator: str) -> tuple[str, str]:
        return names.parse_topic_locator(locator)

    def _get_seq(self, name: str) -> _Sequence:
        loc = self._sequence_name(name)
        seq = self._sequences.get(loc)
        if seq is None:
            raise NotFound(f"sequence `{loc}` not found")
        return seq

    def _get_topic(self, locator: str) -> _Topic:
        seq_name, path = self._topic_parts(locator)
        seq = self._sequences.get(seq_name)
        if seq is None:
            raise NotFound(f"sequence `{seq_name}` not found")
        topic = seq.topics.get(path)
        if topic is None:
            raise NotFound(f"topic `{seq_name}/{path}` not found")
        return topic

    def _session_info(self, seq: _Sequence, session: _Session) -> SessionInfo:
        return SessionInfo(
            uuid=session.uuid,
            locator=session.locator,
            sequence=seq.locator,
            created_at_ns=session.created_at_ns,
            locked=session.locked,
            completed_at_ns=session.completed_at_ns,
            error_reported=session.error_reported,
            topics=tuple(f"{seq.locator}/{p}" for p in session.topics),
        )

    def _sequence_info(self, seq: _Sequence) -> SequenceInfo:
        return SequenceInfo(
            locator=seq.locator,
            created_at_ns=seq.created_at_ns,
            user_metadata=json.loads(json.dumps(seq.user_metadata)),
            sessions=tuple(self._session_info(seq, s) for s in seq.sessions.values()),
            topics=tuple(t.info() for t in seq.topics.values()),
        )

    # ---------------------------------------------------------------- sequences

    def sequence_names(self) -> list[str]:
        """Names of all sequences, oldest first."""
        with self._lock:
            return [s.locator for s in sorted(self._sequences.values(), key=lambda s: s.created_at_ns)]

    def get_sequence(self, name: str) -> SequenceInfo:
        """Snapshot of a sequence.

        Raises:
            InvalidArgument: bad name. NotFound: no such sequence.
        """
        with self._lock:
            return self._sequence_info(self._get_seq(name))

    def create_sequence(self, name: str, user_metadata: Mapping[str, Any]) -> SequenceInfo:
        """Create an empty sequence (``sequence_create``, §2).

        Raises:
            InvalidArgument: bad name or metadata that is not a JSON object.
            AlreadyExists: ``sequence `<name>` already exists``.
        """
        loc = self._sequence_name(name)
        if not isinstance(user_metadata, Mapping):
            raise InvalidArgument("user_metadata must be a JSON object")
        metadata = json.loads(json.dumps(dict(user_metadata)))
        with self._lock:
            if loc in self._sequences:
                raise AlreadyExists(f"sequence `{loc}` already exists")
            final = self._root / _SEQUENCES / loc
            staging = self._root / _SEQUENCES / f".tmp-{uuid_mod.uuid4().hex}"
            staging.mkdir()
            (staging / "topics").mkdir()
            seq = _Sequence(locator=loc, directory=final, created_at_ns=_now_ns(), user_metadata=metadata)
            _atomic_write_json(staging / _SEQUENCE_FILE, seq.to_json())
            if final.exists():
                shutil.rmtree(staging, ignore_errors=True)
                raise InternalError(f"folder {final} exists but holds no readable sequence; move it away first")
            os.replace(staging, final)
            self._sequences[loc] = seq
            logger.info("sequence %s created", loc)
            return self._sequence_info(seq)

    def delete_sequence(self, name: str) -> None:
        """Remove a sequence with all its sessions, topics, data and notifications.

        Raises:
            InvalidArgument: bad name. NotFound: no such sequence.
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
        """Open a new session of ``sequence`` (``session_create``, §2, §6).

        Raises:
            InvalidArgument: bad name. NotFound: no such sequence.
        """
        with self._lock:
            seq = self._get_seq(sequence)
            ulid = new_ulid()
            session = _Session(
                uuid=str(uuid_mod.uuid4()),
                locator=names.session_locator(seq.locator, ulid),
                created_at_ns=_now_ns(),
            )
            seq.sessions[session.uuid] = session
            self._sessions[session.uuid] = (seq.locator, session)
            self._save_sequence(seq)
            logger.info("session %s opened", session.locator)
            return self._session_info(seq, session)

    def _get_session_by_uuid(self, session_uuid: str) -> tuple[_Sequence, _Session]:
        try:
            uuid_mod.UUID(session_uuid)
        except (ValueError, TypeError, AttributeError) as exc:
            raise BadKey(f"malformed key :: {exc}") from None
        entry = self._sessions.get(session_uuid)
        if entry is None:
            raise NotFound(f"session `{session_uuid}` not found")
        return self._sequences[entry[0]], entry[1]

    def get_session(self, session_uuid: str) -> SessionInfo:
        """Snapshot of a session by uuid.

        Raises:
            BadKey: malformed uuid. NotFound: no such session.
        """
        with self._lock:
            seq, session = self._get_session_by_uuid(session_uuid)
            return self._session_info(seq, session)

    def finalize_session(self, session_uuid: str) -> SessionInfo:
        """Finalize a session (``session_finalize``, §6).

        Sets ``completed_at_ns``. A session without an error report is locked, and so are
        its topics; a session for which a sequence error notification arrived while it
        was open (the SDK's Report path) is completed but left unlocked, and its topics
        are unlocked too, so that it can be deleted later. Finalizing twice returns the
        session unchanged.

        Raises:
            BadKey: malformed uuid. NotFound: no such session.
            Locked: a topic of the session still has an open DoPut stream.
        """
        with self._lock:
            seq, session = self._get_session_by_uuid(session_uuid)
            if session.completed_at_ns is not None:
                return self._session_info(seq, session)
            busy = [seq.topics[p].locator for p in session.topics if seq.topics[p].writing]
            if busy:
                raise Locked(f"session `{session.locator}` has topics still being written: {', '.join(busy)}")
            now = _now_ns()
            session.completed_at_ns = now
            session.locked = not session.error_reported
            for path in session.topics:
                topic = seq.topics[path]
                topic.locked = session.locked
                if topic.completed_at_ns is None:
                    topic.completed_at_ns = now
                self._save_topic(topic)
            self._save_sequence(seq)
            logger.info(
                "session %s finalized%s", session.locator, "" if session.locked else " after an error report (unlocked)"
            )
            return self._session_info(seq, session)

    def delete_session(self, session_locator: str) -> None:
        """Remove a session with its topics and their data (``session_delete``, §6).

        Raises:
            InvalidArgument: malformed locator. NotFound: no such session.
            Locked: ``session `<locator>` is locked`` (finalized without error).
        """
        seq_name, _ = names.split_session_locator(session_locator)
        with self._lock:
            seq = self._get_seq(seq_name)
            loc = names.sequence_locator(session_locator)
            session = next((s for s in seq.sessions.values() if s.locator == loc), None)
            if session is None:
                raise NotFound(f"session `{loc}` not found")
            if session.locked:
                raise Locked(f"session `{loc}` is locked")
            trashed = []
            for path in list(session.topics):
                topic = seq.topics.pop(path)
                topic.deleted = True
                trashed.append(self._trash(topic.directory))
            del seq.sessions[session.uuid]
            self._sessions.pop(session.uuid, None)
            self._save_sequence(seq)
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
        """Create a topic in an open session (``topic_create``, §2, §6).

        Raises:
            InvalidArgument: bad locator, format, tag or metadata; or the topic's sequence
                is not the session's.
            BadKey: malformed session uuid. NotFound: no such session.
            Locked: the session is finalized.
            AlreadyExists: ``topic `<seq/topic>` already exists``.
        """
        seq_name, path = self._topic_parts(topic_locator)
        if serialization_format not in SERIALIZATION_FORMATS:
            raise InvalidArgument(
                f"serialization_format must be one of {', '.join(SERIALIZATION_FORMATS)}, got {serialization_format!r}"
            )
        if not isinstance(ontology_tag, str) or not ontology_tag.strip():
            raise InvalidArgument("ontology_tag must be a non-empty string")
        if not isinstance(user_metadata, Mapping):
            raise InvalidArgument("user_metadata must be a JSON object")
        metadata = json.loads(json.dumps(dict(user_metadata)))
        with self._lock:
            seq, session = self._get_session_by_uuid(session_uuid)
            if seq.locator != seq_name:
                raise InvalidArgument(f"session `{session.locator}` does not belong to sequence `{seq_name}`")
            if session.completed_at_ns is not None:
                raise Locked(f"session `{session.locator}` is finalized")
            if path in seq.topics:
                raise AlreadyExists(f"topic `{seq.locator}/{path}` already exists")
            final = seq.directory / "topics" / _topic_dirname(path)
            staging = seq.directory / "topics" / f".tmp-{uuid_mod.uuid4().hex}"
            staging.mkdir(parents=True)
            topic = _Topic(
                sequence=seq.locator,
                path=path,
                directory=final,
                uuid=str(uuid_mod.uuid4()),
                session_uuid=session.uuid,
                ontology_tag=ontology_tag,
                serialization_format=serialization_format,
                user_metadata=metadata,
                created_at_ns=_now_ns(),
            )
            _atomic_write_json(staging / _TOPIC_FILE, topic.to_json())
            if final.exists():
                shutil.rmtree(staging, ignore_errors=True)
                raise InternalError(f"folder {final} exists but holds no readable topic; move it away first")
            os.replace(staging, final)
            seq.topics[path] = topic
            session.topics.append(path)
            self._save_sequence(seq)
            logger.info("topic %s created (%s, %s)", topic.locator, ontology_tag, serialization_format)
            return topic.info()

    def get_topic(self, topic_locator: str) -> TopicInfo:
        """Snapshot of a topic.

        Raises:
            InvalidArgument: bad locator. NotFound: no such sequence or topic.
        """
        with self._lock:
            return self._get_topic(topic_locator).info()

    def delete_topic(self, topic_locator: str) -> None:
        """Remove a topic and its data (``topic_delete``).

        Raises:
            InvalidArgument: bad locator. NotFound: no such topic.
            Locked: ``topic `<seq/topic>` is locked``.
        """
        with self._lock:
            topic = self._get_topic(topic_locator)
            if topic.locked:
                raise Locked(f"topic `{topic.locator}` is locked")
            seq = self._sequences[topic.sequence]
            del seq.topics[topic.path]
            session = seq.sessions.get(topic.session_uuid)
            if session is not None and topic.path in session.topics:
                session.topics.remove(topic.path)
            topic.deleted = True
            trashed = [self._trash(topic.directory)]
            self._save_sequence(seq)
            logger.info("topic %s deleted", topic.locator)
        self._purge(trashed)

    def topic_schema(self, topic_locator: str) -> pa.Schema:
        """The schema received with the topic's first DoPut, unchanged (§4 GetSchema).

        Raises:
            InvalidArgument: bad locator. NotFound: no such topic, or no DoPut yet.
        """
        with self._lock:
            topic = self._get_topic(topic_locator)
            if topic.schema is None:
                raise NotFound(f"topic `{topic.locator}` has no schema yet (no DoPut received)")
            return topic.schema

    # ---------------------------------------------------------------- writing

    def open_writer(self, topic_locator: str, topic_uuid: Optional[str], schema: pa.Schema) -> TopicDataWriter:
        """Start a DoPut stream on a topic (§3 server duties, §6).

        The first DoPut stores ``schema`` (field order, types, nullability, field and schema
        metadata). A topic left unlocked by a broken stream may take a new DoPut with the
        same schema; it adds a chunk.

        Raises:
            InvalidArgument: bad locator, ``missing timestamp field in schema``,
                ``wrong timestamp field type, expected int64``, or a schema other than
                the stored one.
            BadKey: ``malformed key :: …`` or ``bad key`` (uuid not the topic's).
            NotFound: no such topic.
            Locked: the topic is locked, its session finalized, or another DoPut is open.
        """
        if topic_uuid is None:
            raise BadKey("malformed key :: the descriptor has no topic_uuid")
        try:
            uuid_mod.UUID(topic_uuid)
        except (ValueError, TypeError, AttributeError) as exc:
            raise BadKey(f"malformed key :: {exc}") from None
        check_schema(schema)
        with self._lock:
            topic = self._get_topic(topic_locator)
            if topic.uuid != topic_uuid:
                raise BadKey("bad key")
            if topic.locked:
                raise Locked(f"topic `{topic.locator}` is locked")
            if topic.writing:
                raise Locked(f"topic `{topic.locator}` is already being written")
            seq = self._sequences[topic.sequence]
            session = seq.sessions.get(topic.session_uuid)
            if session is None or session.completed_at_ns is not None:
                raise Locked(f"session of topic `{topic.locator}` is finalized")
            if topic.schema is None:
                _atomic_write_bytes(topic.directory / _SCHEMA_FILE, schema.serialize().to_pybytes())
                topic.schema = schema
            elif not topic.schema.equals(schema, check_metadata=True):
                raise InvalidArgument(f"schema differs from the one stored for topic `{topic.locator}`")
            name = f"chunk-{len(topic.chunks):06d}.arrows"
            chunk_path = topic.directory / name
            writer = TopicDataWriter(self, topic, chunk_path, schema)
            topic.chunks.append(name)
            topic.chunk_bytes.append(0)
            topic.writing = True
            self._save_topic(topic)
            logger.debug("topic %s: DoPut stream opened (%s)", topic.locator, name)
            return writer

    @staticmethod
    def _update_stats(topic: _Topic, rows: int, ts: np.ndarray) -> None:
        lo, hi = int(ts.min()), int(ts.max())
        if topic.ts_sorted:
            in_order = bool(np.all(ts[1:] >= ts[:-1])) if ts.size > 1 else True
            if not in_order or (topic.max_ts is not None and int(ts[0]) < topic.max_ts):
                topic.ts_sorted = False
        topic.row_count += rows
        topic.min_ts = lo if topic.min_ts is None else min(topic.min_ts, lo)
        topic.max_ts = hi if topic.max_ts is None else max(topic.max_ts, hi)

    def _note_batch(self, topic: _Topic, chunk_size: int, rows: int, ts: np.ndarray) -> None:
        with self._lock:
            topic.chunk_bytes[-1] = chunk_size
            self._update_stats(topic, rows, ts)

    def _end_writer(self, topic: _Topic, chunk_size: Optional[int], complete: bool) -> None:
        with self._lock:
            if chunk_size is not None and topic.chunk_bytes:
                topic.chunk_bytes[-1] = chunk_size
            topic.writing = False
            if complete:
                topic.locked = True
                topic.completed_at_ns = _now_ns()
            else:
                topic.locked = False
            self._save_topic(topic)
            logger.info(
                "topic %s: DoPut stream %s (%d rows in total)",
                topic.locator,
                "complete, topic locked" if complete else "interrupted, data kept, topic unlocked",
                topic.row_count,
            )

    # ---------------------------------------------------------------- reading

    def _snapshot(self, topic_locator: str) -> tuple[_Topic, pa.Schema, list[Path], bool]:
        with self._lock:
            topic = self._get_topic(topic_locator)
            if topic.schema is None:
                raise NotFound(f"topic `{topic.locator}` has no data")
            paths = [topic.directory / n for n in topic.chunks]
            return topic, topic.schema, paths, topic.ts_sorted

    @staticmethod
    def _window(batch: pa.RecordBatch, start_ns: Optional[int], end_ns: Optional[int]) -> pa.RecordBatch:
        if start_ns is None and end_ns is None:
            return batch
        ts = batch.column(_TIMESTAMP)
        mask = None
        if start_ns is not None:
            mask = pc.greater_equal(ts, pa.scalar(start_ns, pa.int64()))
        if end_ns is not None:
            upper = pc.less(ts, pa.scalar(end_ns, pa.int64()))
            mask = upper if mask is None else pc.and_(mask, upper)
        return batch.filter(mask)

    def window_stats(
        self, topic_locator: str, start_ns: Optional[int], end_ns: Optional[int]
    ) -> tuple[Optional[tuple[int, int]], int]:
        """``((min_ns, max_ns), row_count)`` of the rows with ``start_ns <= t < end_ns``.

        The interval is None when no row falls in the window. A bound that is None is open.

        Raises:
            InvalidArgument: bad locator. NotFound: no such topic.
        """
        with self._lock:
            topic = self._get_topic(topic_locator)
            if topic.schema is None or topic.row_count == 0:
                return None, 0
            if (start_ns is None or start_ns <= topic.min_ts) and (end_ns is None or end_ns > topic.max_ts):
                return (topic.min_ts, topic.max_ts), topic.row_count
            paths = [topic.directory / n for n in topic.chunks]
            writing = topic.writing
        rows, lo, hi = 0, None, None
        for path in paths:
            for batch in _iter_chunk_batches(path, quiet=writing):
                ts = _ts_array(self._window(batch.select([_TIMESTAMP]), start_ns, end_ns))
                if ts.size:
                    rows += int(ts.size)
                    lo = int(ts.min()) if lo is None else min(lo, int(ts.min()))
                    hi = int(ts.max()) if hi is None else max(hi, int(ts.max()))
        return ((lo, hi) if rows else None), rows

    def read(
        self,
        topic_locator: str,
        start_ns: Optional[int] = None,
        end_ns: Optional[int] = None,
        *,
        max_rows: int = 8192,
        max_bytes: int = 25 * 1024 * 1024,
    ) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
        """The stored schema and an iterator of the topic's rows for DoGet.

        Rows come sorted by ``timestamp_ns`` (a stable sort: rows with equal timestamps
        keep their arrival order), restricted to ``start_ns <= t < end_ns`` (a None bound
        is open). Batches hold at most ``max_rows`` rows and about ``max_bytes`` bytes
        (a single larger row goes alone). No batch is empty.

        Raises:
            InvalidArgument: bad locator. NotFound: no such topic or no data schema.
        """
        topic, schema, paths, ts_sorted = self._snapshot(topic_locator)
        quiet = topic.writing
        max_rows = max(1, int(max_rows))
        max_bytes = max(1, int(max_bytes))

        def windowed() -> Iterator[pa.RecordBatch]:
            for path in paths:
                for batch in _iter_chunk_batches(path, quiet=quiet):
                    batch = self._window(batch, start_ns, end_ns)
                    if batch.num_rows:
                        yield batch

        def source() -> Iterator[pa.RecordBatch]:
            if ts_sorted:
                yield from windowed()
                return
            batches = list(windowed())
            if not batches:
                return
            table = pa.Table.from_batches(batches, schema=schema)
            order = pc.sort_indices(table, sort_keys=[(_TIMESTAMP, "ascending")])
            yield from table.take(order).combine_chunks().to_batches()

        def bounded() -> Iterator[pa.RecordBatch]:
            for batch in source():
                offset = 0
                total = batch.num_rows
                per_row = max(1, batch.nbytes // max(1, total))
                step = max(1, min(max_rows, max_bytes // per_row))
                while offset < total:
                    piece = batch.slice(offset, step)
                    offset += piece.num_rows
                    if piece.num_rows:
                        yield piece

        return schema, bounded()

    # ---------------------------------------------------------------- notifications

    @staticmethod
    def _notification(name: str, notification_type: str, msg: str) -> dict:
        return {"name": name, "notification_type": notification_type, "msg": msg, "created_at_ns": _now_ns()}

    def add_sequence_notification(self, sequence: str, notification_type: str, msg: str) -> Notification:
        """Store a sequence notification (``sequence_notification_create``, §2).

        An ``error`` notification also marks every open session of the sequence as
        reported, so that its ``session_finalize`` leaves it unlocked (Report path, §6).

        Raises:
            InvalidArgument: bad name or empty type. NotFound: no such sequence.
        """
        if not isinstance(notification_type, str) or not notification_type:
            raise InvalidArgument("notification_type must be a non-empty string")
        with self._lock:
            seq = self._get_seq(sequence)
            entry = self._notification(seq.locator, notification_type, str(msg))
            seq.notifications.append(entry)
            _atomic_write_json(seq.directory / _NOTIFICATIONS_FILE, seq.notifications)
            if notification_type == NOTIFICATION_ERROR:
                changed = False
                for session in seq.sessions.values():
                    if session.completed_at_ns is None and not session.error_reported:
                        session.error_reported = True
                        changed = True
                if changed:
                    self._save_sequence(seq)
            logger.info("sequence %s: %s notification stored", seq.locator, notification_type)
            return Notification(**entry)

    def list_sequence_notifications(self, sequence: str) -> list[Notification]:
        """Notifications of a sequence, oldest first.

        Raises:
            InvalidArgument: bad name. NotFound: no such sequence.
        """
        with self._lock:
            return [Notification(**n) for n in self._get_seq(sequence).notifications]

    def purge_sequence_notifications(self, sequence: str) -> int:
        """Delete the notifications of a sequence; returns how many there were.

        Raises:
            InvalidArgument: bad name. NotFound: no such sequence.
        """
        with self._lock:
            seq = self._get_seq(sequence)
            count = len(seq.notifications)
            seq.notifications = []
            _atomic_write_json(seq.directory / _NOTIFICATIONS_FILE, [])
            return count

    def add_topic_notification(self, topic_locator: str, notification_type: str, msg: str) -> Notification:
        """Store a topic notification (``topic_notification_create``, §2).

        Raises:
            InvalidArgument: bad locator or empty type. NotFound: no such topic.
        """
        if not isinstance(notification_type, str) or not notification_type:
            raise InvalidArgument("notification_type must be a non-empty string")
        with self._lock:
            topic = self._get_topic(topic_locator)
            entry = self._notification(topic.locator, notification_type, str(msg))
            topic.notifications.append(entry)
            if not topic.deleted:
                _atomic_write_json(topic.directory / _NOTIFICATIONS_FILE, topic.notifications)
            logger.info("topic %s: %s notification stored", topic.locator, notification_type)
            return Notification(**entry)

    def list_topic_notifications(self, topic_locator: str) -> list[Notification]:
        """Notifications of a topic, oldest first.

        Raises:
            InvalidArgument: bad locator. NotFound: no such topic.
        """
        with self._lock:
            return [Notification(**n) for n in self._get_topic(topic_locator).notifications]

    def purge_topic_notifications(self, topic_locator: str) -> int:
        """Delete the notifications of a topic; returns how many there were.

        Raises:
            InvalidArgument: bad locator. NotFound: no such topic.
        """
        with self._lock:
            topic = self._get_topic(topic_locator)
            count = len(topic.notifications)
            topic.notifications = []
            if not topic.deleted:
                _atomic_write_json(topic.directory / _NOTIFICATIONS_FILE, [])
            return count
