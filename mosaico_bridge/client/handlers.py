"""Read-side handlers: a sequence or a topic as the server describes it (protocol doc §4),
and its data as Arrow record batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Optional

import pyarrow as pa
import pyarrow.flight as flight

from . import wire

if TYPE_CHECKING:
    from .control import ControlConnection


@dataclass(frozen=True)
class Session:
    """One write session of a sequence. Times in nanoseconds since the Unix epoch."""

    locator: str
    created_at_ns: int
    locked: bool
    completed_at_ns: Optional[int]
    topics: tuple[str, ...]


def _json(buf: Any) -> dict[str, Any]:
    raw = buf.to_pybytes() if hasattr(buf, "to_pybytes") else bytes(buf or b"")
    return wire.decode_body(raw)


class TopicHandler:
    """A stored topic: its metadata (endpoint app_metadata, §4) and its data (DoGet)."""

    def __init__(self, control: "ControlConnection", endpoint: flight.FlightEndpoint) -> None:
        self._control = control
        self._endpoint = endpoint
        meta = _json(endpoint.app_metadata)
        self._meta = meta
        self.locator: str = meta["resource_locator"]
        self.sequence_name, path = wire.split_topic_locator(self.locator)
        self.name = "/" + path
        self._schema: Optional[pa.Schema] = None

    @property
    def user_metadata(self) -> dict[str, Any]:
        return dict(self._meta.get("user_metadata") or {})

    @property
    def ontology_tag(self) -> str:
        return str(self._meta["ontology_tag"])

    @property
    def serialization_format(self) -> str:
        return str(self._meta["serialization_format"])

    @property
    def locked(self) -> bool:
        return bool(self._meta.get("locked"))

    @property
    def created_timestamp(self) -> int:
        return int(self._meta["created_at_ns"])

    @property
    def total_size_bytes(self) -> int:
        return int(self._meta.get("data_info", {}).get("total_bytes", 0))

    @property
    def chunks_number(self) -> int:
        return int(self._meta.get("data_info", {}).get("total_chunks_count", 0))

    @property
    def row_count(self) -> int:
        return int(self._meta.get("data_info", {}).get("total_row_count", 0))

    def _interval(self) -> Optional[dict[str, int]]:
        return (self._meta.get("data_info") or {}).get("interval")

    @property
    def timestamp_ns_min(self) -> Optional[int]:
        iv = self._interval()
        return int(iv["start_ns"]) if iv else None

    @property
    def timestamp_ns_max(self) -> Optional[int]:
        iv = self._interval()
        return int(iv["end_ns"]) if iv else None

    @property
    def schema(self) -> pa.Schema:
        """The stored schema: ``timestamp_ns`` then the ontology fields (GetSchema)."""
        if self._schema is None:
            self._schema = self._control.get_schema(wire.read_descriptor(self.locator))
        return self._schema

    def iter_batches(
        self, timestamp_ns_start: Optional[int] = None, timestamp_ns_end: Optional[int] = None
    ) -> Iterator[pa.RecordBatch]:
        """Stream the topic's rows in timestamp order (start inclusive, end exclusive, ns)."""
        ticket = self._endpoint.ticket
        if timestamp_ns_start is not None or timestamp_ns_end is not None:
            info = self._control.get_flight_info(
                wire.read_descriptor(self.locator, timestamp_ns_start, timestamp_ns_end)
            )
            ticket = info.endpoints[0].ticket
        reader = self._control.do_get(ticket)
        for chunk in reader:
            if chunk.data is not None and chunk.data.num_rows:
                yield chunk.data

    def read(self, timestamp_ns_start: Optional[int] = None, timestamp_ns_end: Optional[int] = None) -> pa.Table:
        """All rows (or a time range) as one Arrow table in the stored schema."""
        return pa.Table.from_batches(list(self.iter_batches(timestamp_ns_start, timestamp_ns_end)), schema=self.schema)


class SequenceHandler:
    """A stored sequence: metadata (FlightInfo app_metadata, §4) and its topics."""

    def __init__(self, control: "ControlConnection", info: flight.FlightInfo) -> None:
        self._control = control
        meta = _json(info.app_metadata)
        self._meta = meta
        self.name: str = meta["resource_locator"]
        self._topics = {TopicHandler(control, ep).name: TopicHandler(control, ep) for ep in info.endpoints}

    @property
    def user_metadata(self) -> dict[str, Any]:
        return dict(self._meta.get("user_metadata") or {})

    @property
    def created_timestamp(self) -> int:
        return int(self._meta["created_at_ns"])

    @property
    def sessions(self) -> list[Session]:
        return [
            Session(
                locator=s["locator"],
                created_at_ns=int(s["created_at_ns"]),
                locked=bool(s["locked"]),
                completed_at_ns=s.get("completed_at_ns"),
                topics=tuple(s.get("topics") or ()),
            )
            for s in self._meta.get("sessions") or []
        ]

    @property
    def topics(self) -> list[str]:
        """Topic names (with their leading ``/``), the union over sessions."""
        return sorted(self._topics)

    @property
    def total_size_bytes(self) -> int:
        return sum(t.total_size_bytes for t in self._topics.values())

    @property
    def timestamp_ns_min(self) -> Optional[int]:
        values = [t.timestamp_ns_min for t in self._topics.values() if t.timestamp_ns_min is not None]
        return min(values) if values else None

    @property
    def timestamp_ns_max(self) -> Optional[int]:
        values = [t.timestamp_ns_max for t in self._topics.values() if t.timestamp_ns_max is not None]
        return max(values) if values else None

    def get_topic_handler(self, topic_name: str) -> Optional[TopicHandler]:
        name = "/" + wire.topic_path(topic_name)
        return self._topics.get(name)

    def __repr__(self) -> str:
        return f"SequenceHandler(name={self.name!r}, topics={len(self._topics)})"

