"""Catalog of the store: sequence, session and topic records, their JSON files, loading.

Layout under the store root (``docs/protocol.md`` has the wire side)::

    MOSAICO_STORE                          marker: {"format": 1}
    sequences/<sequence>/sequence.json     locator, created_at_ns, user_metadata, sessions
    sequences/<sequence>/notifications.json
    sequences/<sequence>/topics/<topic>/topic.json
    sequences/<sequence>/topics/<topic>/schema.arrow         IPC schema message, as received
    sequences/<sequence>/topics/<topic>/chunk-000000.arrows  IPC stream, one per DoPut
    sequences/<sequence>/topics/<topic>/notifications.json
    sequences/<sequence>/topics/<topic>/quarantine/          chunks that failed validation
    .trash/                                folders being deleted

``<topic>`` is the topic path with ``/`` written as ``%2F``, or ``h-<sha256 of the path>``
when that would be longer than :data:`MAX_DIRNAME` characters; the topic's own name is
always read from its ``topic.json``. Metadata files are replaced atomically
(:func:`mosaico_bridge.common.files.atomic_write_json`, mode 0640; folders 0750).

The records here are mutable and guarded by the store's lock; :class:`TopicInfo`,
:class:`SessionInfo` and :class:`SequenceInfo` are the immutable snapshots handed out.
Timestamps are ns (``*_ns``), sizes are bytes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from mosaico_bridge.common.files import atomic_write_json
from mosaico_bridge.protocol import names
from mosaico_bridge.protocol.errors import InvalidArgumentError

logger = logging.getLogger("mosaico_bridge.server")

STORE_FORMAT = 1
MARKER = "MOSAICO_STORE"
SEQUENCES = "sequences"
TRASH = ".trash"
TOPICS = "topics"
QUARANTINE = "quarantine"
SEQUENCE_FILE = "sequence.json"
TOPIC_FILE = "topic.json"
SCHEMA_FILE = "schema.arrow"
NOTIFICATIONS_FILE = "notifications.json"
#: Prefix of the staging folders of a sequence or topic being created.
STAGING_PREFIX = ".tmp-"

#: Longest topic folder name; 255 bytes is the usual file-name limit.
MAX_DIRNAME = 200


# --------------------------------------------------------------------------------------
# Public snapshots
# --------------------------------------------------------------------------------------


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
    completed_at_ns: int | None
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
    completed_at_ns: int | None
    writing: bool
    row_count: int
    total_bytes: int
    chunk_count: int
    min_timestamp_ns: int | None
    max_timestamp_ns: int | None
    schema: pa.Schema | None


@dataclass(frozen=True)
class SequenceInfo:
    """Snapshot of a sequence with its sessions and topics, both in creation order."""

    locator: str
    created_at_ns: int
    user_metadata: Mapping[str, Any]
    sessions: tuple[SessionInfo, ...]
    topics: tuple[TopicInfo, ...]


# --------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------


@dataclass
class Chunk:
    """One chunk file of a topic: ``file`` name, size in ``bytes``, rows in time order
    (``sorted``; None when unknown, for chunks of older stores) and whether every batch
    passed full validation (``validated``)."""

    file: str
    bytes: int = 0
    rows: int = 0
    sorted: bool | None = True
    validated: bool = True

    def to_json(self) -> dict:
        return {"file": self.file, "bytes": self.bytes, "rows": self.rows, "sorted": self.sorted,
                "validated": self.validated}

    @classmethod
    def from_json(cls, item: Mapping[str, Any]) -> Chunk:
        return cls(
            file=str(item["file"]),
            bytes=int(item.get("bytes", 0)),
            rows=int(item.get("rows", 0)),
            sorted=item.get("sorted"),
            validated=bool(item.get("validated", False)),
        )


@dataclass
class TopicRecord:
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
    completed_at_ns: int | None = None
    writing: bool = False
    chunks: list[Chunk] = field(default_factory=list)
    row_count: int = 0
    min_ts: int | None = None
    max_ts: int | None = None
    ts_sorted: bool = True
    schema: pa.Schema | None = None
    notifications: list = field(default_factory=list)
    deleted: bool = False

    @property
    def locator(self) -> str:
        return f"{self.sequence}/{self.path}"

    @property
    def total_bytes(self) -> int:
        return sum(c.bytes for c in self.chunks)

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
            "chunks": [c.to_json() for c in self.chunks],
            "row_count": self.row_count,
            "total_bytes": self.total_bytes,
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
            total_bytes=self.total_bytes,
            chunk_count=len(self.chunks),
            min_timestamp_ns=self.min_ts,
            max_timestamp_ns=self.max_ts,
            schema=self.schema,
        )

    def save(self) -> None:
        """Write ``topic.json`` (nothing once the topic is deleted).

        Raises: OSError.
        """
        if not self.deleted:
            atomic_write_json(self.directory / TOPIC_FILE, self.to_json())


@dataclass
class SessionRecord:
    uuid: str
    locator: str
    created_at_ns: int
    locked: bool = False
    completed_at_ns: int | None = None
    error_reported: bool = False
    topics: list[str] = field(default_factory=list)  # topic paths, creation order

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

    def info(self, sequence: str) -> SessionInfo:
        return SessionInfo(
            uuid=self.uuid,
            locator=self.locator,
            sequence=sequence,
            created_at_ns=self.created_at_ns,
            locked=self.locked,
            completed_at_ns=self.completed_at_ns,
            error_reported=self.error_reported,
            topics=tuple(f"{sequence}/{p}" for p in self.topics),
        )


@dataclass
class SequenceRecord:
    locator: str
    directory: Path
    created_at_ns: int
    user_metadata: dict
    sessions: dict[str, SessionRecord] = field(default_factory=dict)  # uuid -> session, creation order
    topics: dict[str, TopicRecord] = field(default_factory=dict)  # path -> topic
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

    def info(self) -> SequenceInfo:
        return SequenceInfo(
            locator=self.locator,
            created_at_ns=self.created_at_ns,
            user_metadata=json.loads(json.dumps(self.user_metadata)),
            sessions=tuple(s.info(self.locator) for s in self.sessions.values()),
            topics=tuple(t.info() for t in self.topics.values()),
        )

    def save(self) -> None:
        """Write ``sequence.json`` (nothing once the sequence is deleted).

        Raises: OSError.
        """
        if not self.deleted:
            atomic_write_json(self.directory / SEQUENCE_FILE, self.to_json())


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def read_json(path: Path) -> Any:
    """Parse a JSON file.

    Raises: OSError, ValueError (bad UTF-8 or JSON).
    """
    with open(path, "rb") as f:
        return json.loads(f.read().decode("utf-8"))


def json_object(value: Any, what: str) -> dict:
    """A deep copy of a JSON object given by a client.

    Raises:
        InvalidArgumentError: not a JSON object, or it holds NaN, Infinity or values
            JSON cannot carry.
    """
    if not isinstance(value, Mapping):
        raise InvalidArgumentError(f"{what} must be a JSON object")
    try:
        return json.loads(json.dumps(dict(value), allow_nan=False))
    except (ValueError, TypeError) as exc:
        raise InvalidArgumentError(f"{what} is not plain JSON (NaN, Infinity or a non-JSON value): {exc}") from None


def topic_dirname(path: str) -> str:
    """Folder name of a topic: the path quoted (``/`` as ``%2F``), or ``h-<sha256>``
    when the quoted path is longer than :data:`MAX_DIRNAME` characters."""
    quoted = urllib.parse.quote(path, safe="-_")
    if len(quoted) <= MAX_DIRNAME:
        return quoted
    return "h-" + hashlib.sha256(path.encode("utf-8")).hexdigest()


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_ulid() -> str:
    """A ULID: 48-bit Unix time in ms + 80 random bits, 26 Crockford base32 characters."""
    value = (time.time_ns() // 1_000_000) << 80 | secrets.randbits(80)
    return "".join(_CROCKFORD[(value >> (5 * i)) & 31] for i in reversed(range(26)))


def load_notifications(directory: Path) -> list:
    """The notifications stored in ``directory/notifications.json`` ([] if none).

    Raises: OSError, ValueError.
    """
    path = directory / NOTIFICATIONS_FILE
    if not path.exists():
        return []
    items = read_json(path)
    if not isinstance(items, list):
        raise ValueError(f"{NOTIFICATIONS_FILE} is not a list")  # noqa: TRY004 - malformed stored JSON is a ValueError, which callers catch
    return items


def load_sequence(seq_dir: Path) -> SequenceRecord:
    """Read a sequence folder's ``sequence.json`` and notifications (topics not yet).

    Raises: OSError, ValueError, KeyError, TypeError, InvalidArgumentError.
    """
    meta = read_json(seq_dir / SEQUENCE_FILE)
    seq = SequenceRecord(
        locator=names.validate_sequence_name(meta["locator"]),
        directory=seq_dir,
        created_at_ns=int(meta["created_at_ns"]),
        user_metadata=dict(meta.get("user_metadata") or {}),
    )
    for s in meta.get("sessions", []):
        session = SessionRecord(
            uuid=str(s["uuid"]),
            locator=str(s["locator"]),
            created_at_ns=int(s["created_at_ns"]),
            locked=bool(s.get("locked", False)),
            completed_at_ns=s.get("completed_at_ns"),
            error_reported=bool(s.get("error_reported", False)),
        )
        seq.sessions[session.uuid] = session
    seq.notifications = load_notifications(seq_dir)
    return seq


def load_topic(sequence: str, tdir: Path) -> TopicRecord:
    """Read a topic folder's ``topic.json``, schema and notifications.

    Chunks of older stores (no per-chunk record) are marked not validated.

    Raises: OSError, ValueError, KeyError, TypeError, InvalidArgumentError,
        pyarrow.ArrowException (unreadable schema).
    """
    meta = read_json(tdir / TOPIC_FILE)
    _, path = names.parse_topic_locator(meta["locator"])
    chunks = []
    for c in meta.get("chunks", []):
        chunks.append(Chunk.from_json(c))
    topic = TopicRecord(
        sequence=sequence,
        path=path,
        directory=tdir,
        uuid=str(meta["uuid"]),
        session_uuid=str(meta["session_uuid"]),
        ontology_tag=str(meta["ontology_tag"]),
        serialization_format=str(meta["serialization_format"]),
        user_metadata=dict(meta.get("user_metadata") or {}),
        created_at_ns=int(meta["created_at_ns"]),
        locked=bool(meta.get("locked", False)),
        completed_at_ns=meta.get("completed_at_ns"),
        writing=bool(meta.get("writing", False)),
        chunks=chunks,
        row_count=int(meta.get("row_count", 0)),
        min_ts=meta.get("min_timestamp_ns"),
        max_ts=meta.get("max_timestamp_ns"),
        ts_sorted=bool(meta.get("timestamps_sorted", True)),
    )
    schema_path = tdir / SCHEMA_FILE
    if schema_path.exists():
        topic.schema = pa.ipc.read_schema(pa.py_buffer(schema_path.read_bytes()))
    topic.notifications = load_notifications(tdir)
    return topic
