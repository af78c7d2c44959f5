"""Read-side handlers: a sequence or a topic as the server describes it
(``docs/protocol.md`` § Read path), and its data as Arrow record batches.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from pyarrow import flight

from ..protocol.descriptors import SequenceMetadata, TopicMetadata, read_descriptor
from ..protocol.names import split_topic_locator, topic_path

if TYPE_CHECKING:
    from .control import ControlConnection


@dataclass(frozen=True)
class Session:
    """One write session of a sequence. Times in nanoseconds since the Unix epoch."""

    locator: str
    created_at_ns: int
    locked: bool
    completed_at_ns: int | None
    topics: tuple[str, ...]


class TopicHandler:
    """A stored topic: its metadata (the endpoint's ``app_metadata``) and its data (DoGet).

    Raises (constructor):
        MalformedMessageError: the endpoint's metadata is not what the protocol describes.
    """

    def __init__(self, control: ControlConnection, endpoint: flight.FlightEndpoint) -> None:
        self._control = control
        self._endpoint = endpoint
        self.metadata = TopicMetadata.from_bytes(endpoint.app_metadata)
        self.locator: str = self.metadata.resource_locator
        self.sequence_name, path = split_topic_locator(self.locator)
        self.name = "/" + path
        self._schema: pa.Schema | None = None

    @property
    def user_metadata(self) -> dict[str, Any]:
        return dict(self.metadata.user_metadata)

    @property
    def ontology_tag(self) -> str:
        return self.metadata.ontology_tag

    @property
    def serialization_format(self) -> str:
        return self.metadata.serialization_format

    @property
    def locked(self) -> bool:
        return self.metadata.locked

    @property
    def created_timestamp(self) -> int:
        """Creation time, ns since the Unix epoch."""
        return self.metadata.created_at_ns

    @property
    def total_size_bytes(self) -> int:
        return self.metadata.total_bytes

    @property
    def chunks_number(self) -> int:
        return self.metadata.total_chunks_count

    @property
    def row_count(self) -> int:
        return self.metadata.total_row_count

    @property
    def timestamp_ns_min(self) -> int | None:
        """First ``timestamp_ns`` stored (ns), None while the topic has no rows."""
        iv = self.metadata.interval
        return iv.start_ns if iv else None

    @property
    def timestamp_ns_max(self) -> int | None:
        """Last ``timestamp_ns`` stored (ns), None while the topic has no rows."""
        iv = self.metadata.interval
        return iv.end_ns if iv else None

    @property
    def schema(self) -> pa.Schema:
        """The stored schema: ``timestamp_ns`` then the ontology fields (GetSchema)."""
        if self._schema is None:
            self._schema = self._control.get_schema(read_descriptor(self.locator))
        return self._schema

    def iter_batches(
        self, timestamp_ns_start: int | None = None, timestamp_ns_end: int | None = None
    ) -> Iterator[pa.RecordBatch]:
        """Stream the topic's rows in timestamp order (start inclusive, end exclusive, ns)."""
        ticket = self._endpoint.ticket
        if timestamp_ns_start is not None or timestamp_ns_end is not None:
            info = self._control.get_flight_info(read_descriptor(self.locator, timestamp_ns_start, timestamp_ns_end))
            ticket = info.endpoints[0].ticket
        reader = self._control.do_get(ticket)
        for chunk in reader:
            if chunk.data is not None and chunk.data.num_rows:
                yield chunk.data

    def read(self, timestamp_ns_start: int | None = None, timestamp_ns_end: int | None = None) -> pa.Table:
        """All rows (or a time range) as one Arrow table in the stored schema."""
        return pa.Table.from_batches(list(self.iter_batches(timestamp_ns_start, timestamp_ns_end)), schema=self.schema)


class SequenceHandler:
    """A stored sequence: metadata (the FlightInfo's ``app_metadata``) and its topics.

    Raises (constructor):
        MalformedMessageError: the metadata is not what the protocol describes.
    """

    def __init__(self, control: ControlConnection, info: flight.FlightInfo) -> None:
        self._control = control
        self.metadata = SequenceMetadata.from_bytes(info.app_metadata)
        self.name: str = self.metadata.resource_locator
        handlers = [TopicHandler(control, ep) for ep in info.endpoints]
        self._topics = {t.name: t for t in handlers}

    @property
    def user_metadata(self) -> dict[str, Any]:
        return dict(self.metadata.user_metadata)

    @property
    def created_timestamp(self) -> int:
        """Creation time, ns since the Unix epoch."""
        return self.metadata.created_at_ns

    @property
    def sessions(self) -> list[Session]:
        return [
            Session(s.locator, s.created_at_ns, s.locked, s.completed_at_ns, tuple(s.topics))
            for s in self.metadata.sessions
        ]

    @property
    def topics(self) -> list[str]:
        """Topic names (with their leading ``/``), the union over sessions."""
        return sorted(self._topics)

    @property
    def total_size_bytes(self) -> int:
        return sum(t.total_size_bytes for t in self._topics.values())

    @property
    def timestamp_ns_min(self) -> int | None:
        values = [t.timestamp_ns_min for t in self._topics.values() if t.timestamp_ns_min is not None]
        return min(values) if values else None

    @property
    def timestamp_ns_max(self) -> int | None:
        values = [t.timestamp_ns_max for t in self._topics.values() if t.timestamp_ns_max is not None]
        return max(values) if values else None

    def get_topic_handler(self, topic_name: str) -> TopicHandler | None:
        return self._topics.get("/" + topic_path(topic_name))

    def __repr__(self) -> str:
        return f"SequenceHandler(name={self.name!r}, topics={len(self._topics)})"
