"""Flight descriptors, tickets and ``app_metadata`` of the write and read paths.

``docs/protocol.md`` § DoPut and § Read path: every descriptor is a *command* descriptor
holding JSON. A DoPut names its topic with ``{"resource_locator", "topic_uuid"}``; a read
(GetFlightInfo, GetSchema) names a sequence or a topic with ``{"resource_locator",
"timestamp_ns_start"?, "timestamp_ns_end"?}`` (start inclusive, end exclusive, ns). The
ticket of a DoGet is opaque to clients; ours is the JSON read command of one topic.
FlightInfo / FlightEndpoint ``app_metadata`` carry the sequence and topic descriptions as
JSON objects (:class:`SequenceMetadata`, :class:`TopicMetadata`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from pyarrow import flight

from .errors import MalformedMessageError
from .messages import JsonDict, _get, _opt_int, decode_body, encode_body
from .names import TIMESTAMP_NS, sequence_locator

#: The envelope column every topic schema starts with (``docs/protocol.md`` § Arrow layouts).
TIMESTAMP_FIELD = pa.field(TIMESTAMP_NS, pa.int64(), nullable=False)

#: Smallest and largest timestamp a row or a time range may carry, in ns (int64).
TIMESTAMP_NS_MIN = -(2**63)
TIMESTAMP_NS_MAX = 2**63 - 1


@dataclass(frozen=True)
class ResourceCommand:
    """A decoded command descriptor: a DoPut target or a read request.

    ``timestamp_ns_start`` is inclusive and ``timestamp_ns_end`` exclusive, in ns.
    """

    resource_locator: str
    topic_uuid: str | None = None
    timestamp_ns_start: int | None = None
    timestamp_ns_end: int | None = None

    @property
    def is_topic(self) -> bool:
        """True if the locator names a topic (``seq/topic``), not a sequence."""
        return "/" in self.resource_locator

    def to_dict(self) -> JsonDict:
        body: JsonDict = {"resource_locator": self.resource_locator}
        if self.topic_uuid is not None:
            body["topic_uuid"] = self.topic_uuid
        if self.timestamp_ns_start is not None:
            body["timestamp_ns_start"] = int(self.timestamp_ns_start)
        if self.timestamp_ns_end is not None:
            body["timestamp_ns_end"] = int(self.timestamp_ns_end)
        return body

    @classmethod
    def from_dict(cls, body: Mapping[str, Any]) -> ResourceCommand:
        where = "descriptor"
        locator = _get(body, "resource_locator", str, where)
        if not locator.strip():
            raise MalformedMessageError("descriptor lacks 'resource_locator'")
        start = _opt_int(body, "timestamp_ns_start", where)
        end = _opt_int(body, "timestamp_ns_end", where)
        for key, value in (("timestamp_ns_start", start), ("timestamp_ns_end", end)):
            if value is not None and not TIMESTAMP_NS_MIN <= value <= TIMESTAMP_NS_MAX:
                raise MalformedMessageError(f"descriptor field {key!r} is outside the int64 range")
        uuid = body.get("topic_uuid")
        return cls(
            resource_locator=sequence_locator(locator),
            topic_uuid=str(uuid) if uuid is not None else None,
            timestamp_ns_start=start,
            timestamp_ns_end=end,
        )


def doput_descriptor(topic_locator: str, topic_uuid: str) -> flight.FlightDescriptor:
    """DoPut command descriptor ``{"resource_locator", "topic_uuid"}``."""
    return flight.FlightDescriptor.for_command(
        json.dumps({"resource_locator": topic_locator, "topic_uuid": topic_uuid})
    )


def read_descriptor(
    locator: str, timestamp_ns_start: int | None = None, timestamp_ns_end: int | None = None
) -> flight.FlightDescriptor:
    """GetFlightInfo / GetSchema command descriptor for a sequence or ``seq/topic``."""
    cmd = ResourceCommand(locator, timestamp_ns_start=timestamp_ns_start, timestamp_ns_end=timestamp_ns_end)
    return flight.FlightDescriptor.for_command(json.dumps(cmd.to_dict()))


def parse_command(descriptor: flight.FlightDescriptor) -> ResourceCommand:
    """Decode a command descriptor.

    Raises:
        MalformedMessageError: not a command descriptor, not a JSON object, no
            ``resource_locator``, or a bound that is not an int64.
    """
    if descriptor.descriptor_type != flight.DescriptorType.CMD:
        raise MalformedMessageError("expected a command descriptor")
    return ResourceCommand.from_dict(decode_body(descriptor.command))


def make_ticket(cmd: ResourceCommand) -> flight.Ticket:
    """Our DoGet ticket: the JSON read command of one topic (no ``topic_uuid``)."""
    read = ResourceCommand(cmd.resource_locator, None, cmd.timestamp_ns_start, cmd.timestamp_ns_end)
    return flight.Ticket(encode_body(read.to_dict()))


def parse_ticket(ticket: flight.Ticket) -> ResourceCommand:
    """Decode a ticket made by :func:`make_ticket`.

    Raises:
        MalformedMessageError: the ticket is not one of ours.
    """
    return ResourceCommand.from_dict(decode_body(ticket.ticket))


# --------------------------------------------------------------------------------------
# app_metadata
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionMetadata:
    """One item of ``sessions`` in a sequence's app_metadata.

    ``topics`` are ``seq/topic`` locators; ``completed_at_ns`` is None while open.
    """

    locator: str
    created_at_ns: int
    locked: bool
    topics: tuple[str, ...] = ()
    completed_at_ns: int | None = None

    def to_dict(self) -> JsonDict:
        d: JsonDict = {
            "locator": self.locator,
            "created_at_ns": int(self.created_at_ns),
            "locked": bool(self.locked),
            "topics": list(self.topics),
        }
        if self.completed_at_ns is not None:
            d["completed_at_ns"] = int(self.completed_at_ns)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SessionMetadata:
        where = "session metadata"
        return cls(
            locator=_get(d, "locator", str, where),
            created_at_ns=_get(d, "created_at_ns", int, where),
            locked=_get(d, "locked", bool, where),
            topics=tuple(str(t) for t in _get(d, "topics", list, where, list)),
            completed_at_ns=_opt_int(d, "completed_at_ns", where),
        )


@dataclass(frozen=True)
class SequenceMetadata:
    """Sequence ``FlightInfo.app_metadata``; times in ns since the Unix epoch."""

    resource_locator: str
    created_at_ns: int
    user_metadata: JsonDict = field(default_factory=dict)
    sessions: tuple[SessionMetadata, ...] = ()

    def to_dict(self) -> JsonDict:
        return {
            "resource_locator": self.resource_locator,
            "created_at_ns": int(self.created_at_ns),
            "user_metadata": dict(self.user_metadata),
            "sessions": [s.to_dict() for s in self.sessions],
        }

    def to_bytes(self) -> bytes:
        return encode_body(self.to_dict())

    @classmethod
    def from_bytes(cls, raw: Any) -> SequenceMetadata:
        d = decode_body(_raw_bytes(raw))
        where = "sequence metadata"
        return cls(
            resource_locator=_get(d, "resource_locator", str, where),
            created_at_ns=_get(d, "created_at_ns", int, where),
            user_metadata=_get(d, "user_metadata", dict, where, dict),
            sessions=tuple(
                SessionMetadata.from_dict(s) for s in _get(d, "sessions", list, where, list) if isinstance(s, dict)
            ),
        )


@dataclass(frozen=True)
class TimeInterval:
    """``{start_ns, end_ns}``: the first and last timestamp of some rows, inclusive, ns."""

    start_ns: int
    end_ns: int

    def to_dict(self) -> JsonDict:
        return {"start_ns": int(self.start_ns), "end_ns": int(self.end_ns)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> TimeInterval | None:
        if not d:
            return None
        return cls(_get(d, "start_ns", int, "interval"), _get(d, "end_ns", int, "interval"))


@dataclass(frozen=True)
class TopicMetadata:
    """Topic ``FlightEndpoint.app_metadata``.

    ``interval`` spans the stored rows (None while there are none); ``window_interval``
    and ``window_row_count`` describe the rows inside the time range the read asked for,
    if it asked for one (``time_window_info``; a window with no rows has no interval,
    which SDK clients read as "no data"). Sizes in bytes, times in ns.
    """

    resource_locator: str
    created_at_ns: int
    locked: bool
    ontology_tag: str
    serialization_format: str
    user_metadata: JsonDict = field(default_factory=dict)
    total_bytes: int = 0
    total_chunks_count: int = 0
    total_row_count: int = 0
    interval: TimeInterval | None = None
    completed_at_ns: int | None = None
    has_window: bool = False
    window_interval: TimeInterval | None = None
    window_row_count: int = 0

    def to_dict(self) -> JsonDict:
        data_info: JsonDict = {
            "total_bytes": int(self.total_bytes),
            "total_chunks_count": int(self.total_chunks_count),
            "total_row_count": int(self.total_row_count),
        }
        if self.interval is not None:
            data_info["interval"] = self.interval.to_dict()
        meta: JsonDict = {
            "resource_locator": self.resource_locator,
            "created_at_ns": int(self.created_at_ns),
            "locked": bool(self.locked),
            "ontology_tag": self.ontology_tag,
            "serialization_format": self.serialization_format,
            "user_metadata": dict(self.user_metadata),
            "data_info": data_info,
        }
        if self.completed_at_ns is not None:
            meta["completed_at_ns"] = int(self.completed_at_ns)
        if self.has_window:
            window: JsonDict = {"row_count": int(self.window_row_count)}
            if self.window_interval is not None:
                window["interval"] = self.window_interval.to_dict()
            meta["time_window_info"] = window
        return meta

    def to_bytes(self) -> bytes:
        return encode_body(self.to_dict())

    @classmethod
    def from_bytes(cls, raw: Any) -> TopicMetadata:
        d = decode_body(_raw_bytes(raw))
        where = "topic metadata"
        info = _get(d, "data_info", dict, where, dict)
        window = d.get("time_window_info")
        return cls(
            resource_locator=_get(d, "resource_locator", str, where),
            created_at_ns=_get(d, "created_at_ns", int, where),
            locked=_get(d, "locked", bool, where, False),
            ontology_tag=_get(d, "ontology_tag", str, where),
            serialization_format=_get(d, "serialization_format", str, where, "default"),
            user_metadata=_get(d, "user_metadata", dict, where, dict),
            total_bytes=_get(info, "total_bytes", int, where, 0),
            total_chunks_count=_get(info, "total_chunks_count", int, where, 0),
            total_row_count=_get(info, "total_row_count", int, where, 0),
            interval=TimeInterval.from_dict(info.get("interval")),
            completed_at_ns=_opt_int(d, "completed_at_ns", where),
            has_window=isinstance(window, dict),
            window_interval=TimeInterval.from_dict(window.get("interval")) if isinstance(window, dict) else None,
            window_row_count=int(window.get("row_count", 0)) if isinstance(window, dict) else 0,
        )


def _raw_bytes(raw: Any) -> bytes:
    if raw is None:
        return b""
    if hasattr(raw, "to_pybytes"):
        return bytes(raw.to_pybytes())
    return bytes(raw)


@dataclass(frozen=True)
class PutAck:
    """``app_metadata`` of the PutResult our server sends after storing each record batch
    of a DoPut stream: the rows and IPC body bytes of that stream stored so far (totals,
    so a lost or merged ack loses nothing). Servers that send no PutResult (mosaicod)
    acknowledge the whole stream when it ends; SDK clients ignore PutResults.
    """

    rows: int
    body_bytes: int = 0

    def to_bytes(self) -> bytes:
        return encode_body({"rows": int(self.rows), "bytes": int(self.body_bytes)})

    @classmethod
    def from_bytes(cls, raw: Any) -> PutAck:
        """Raises: MalformedMessageError: not an ack of this shape."""
        d = decode_body(_raw_bytes(raw))
        return cls(_get(d, "rows", int, "DoPut ack"), _get(d, "bytes", int, "DoPut ack", 0))
