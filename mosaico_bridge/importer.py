"""Bag import: one or more bags into one Mosaico sequence.

Data flows one way: :class:`~mosaico_bridge.sources.BagSource` (serialized messages)
→ :func:`~mosaico_bridge.conversion.make_converter` (Arrow layout per topic) →
:class:`~mosaico_bridge.client.SequenceWriter` (processing and data layers) → server.

Everything that can be checked before the sequence exists is checked first (bags
open, every selected type has a converter, the name is valid, the sequence does not
exist yet), so a bad input leaves nothing behind on the server.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .client import MosaicoClient, SessionLevelErrorPolicy
from .protocol import names
from .recorder import Recorder
from .sources import BagSource, TopicFilter

log = logging.getLogger("mosaico_bridge.importer")


class BagImportError(ValueError):
    """Bad input found before anything was written; the message says what and where."""


@dataclass
class TopicSummary:
    """What was imported on one topic. ``bytes`` are Arrow IPC bytes sent to the server."""

    topic: str
    msgtype: str
    ontology_tag: str
    messages: int = 0
    written: int = 0
    dropped: int = 0
    bytes: int = 0
    serialized_bytes: int = 0


@dataclass
class ImportSummary:
    """Result of an import. Times in seconds, sizes in bytes."""

    sequence: str
    bags: list[str]
    topics: list[TopicSummary] = field(default_factory=list)
    skipped_topics: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def messages(self) -> int:
        return sum(t.messages for t in self.topics)

    @property
    def bytes(self) -> int:
        return sum(t.bytes for t in self.topics)

    @property
    def serialized_bytes(self) -> int:
        return sum(t.serialized_bytes for t in self.topics)


#: The reader hands messages to the topic writers in groups of at most this many messages or
#: bytes (then one budget charge and one lock per topic and group: :meth:`TopicWriter.push_many`);
#: what is held meanwhile is outside ``max_inflight_bytes``, at most 1 MiB + one message.
HAND_OVER_MESSAGES = 512
HAND_OVER_BYTES = 1024 * 1024


def _hand_over(held: dict, writers: dict, stats: dict) -> None:
    """Push every topic's held messages (waiting for room in the memory budget: the budget
    back-pressures the bag reader) and empty ``held``."""
    for topic, (timestamps, messages) in held.items():
        s = stats[topic]
        s.serialized_bytes += writers[topic].push_many(timestamps, messages)
        s.messages += len(messages)
    held.clear()


def import_bags(
    client: MosaicoClient,
    bags: Sequence[Path | str],
    sequence: str,
    *,
    topic_filter: TopicFilter | None = None,
    metadata: Mapping[str, Any] | None = None,
    on_error: SessionLevelErrorPolicy | str = SessionLevelErrorPolicy.Report,
    max_batch_size_bytes: int | None = None,
    max_batch_size_records: int | None = None,
    on_start: Callable[[BagSource], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
    timestamp: str | None = None,
) -> ImportSummary:
    """Import the messages of ``bags`` into the new sequence ``sequence``.

    Each bag topic becomes a Mosaico topic of the same name; each row's
    ``timestamp_ns`` is the message's bag log time in nanoseconds.

    Args:
        on_start: called once with the opened source (topics and message count known).
        on_progress: called with the number of messages read since the last call.
        timestamp: ``"log"`` (the bag's log time, default) or ``"header"`` (the message's
            ``header.stamp`` where its type starts with a std_msgs/Header, else log time);
            None: the source's default (see :func:`~mosaico_bridge.sources.default_timestamp`).

    Raises:
        ValueError: invalid sequence name or metadata.
        BagImportError: the sequence exists, or no topic is selected.
        BagSourceError: a bag is missing or corrupt.
        ConversionError: a selected topic's type cannot be converted.
        ServerRefusedError, ConnectionError: from the server.
    """
    names.validate_sequence_name(sequence)
    started = time.monotonic()
    with BagSource(bags, topic_filter, **({"timestamp": timestamp} if timestamp else {})) as source:
        if not source.topics:
            raise BagImportError(
                f"no topic selected in {', '.join(map(str, bags))} (bag topics: {', '.join(source.skipped_topics) or 'none'})"
            )
        converters = {
            name: Recorder.converter(t.msgtype, source.typestore, t.encoding) for name, t in source.topics.items()
        }
        for name in source.topics:
            names.validate_topic_name(name)
        if client.sequence_exists(sequence):
            raise BagImportError(f"sequence {sequence!r} already exists on the server")
        summary = ImportSummary(
            sequence=names.sequence_locator(sequence),
            bags=[str(b) for b in bags],
            skipped_topics=list(source.skipped_topics),
        )
        stats = {
            name: TopicSummary(name, t.msgtype, converters[name].ontology_tag) for name, t in source.topics.items()
        }
        if on_start:
            on_start(source)
        with client.sequence_create(
            sequence,
            dict(metadata or {}),
            on_error=on_error,
            max_batch_size_bytes=max_batch_size_bytes,
            max_batch_size_records=max_batch_size_records,
        ) as seq:
            recorder = Recorder(seq, source.typestore, ros_metadata={"source_files": sorted({Path(b).name for b in bags})})
            for name, conv in converters.items():
                recorder.add_topic(name, conv.msgtype, converter=conv)
            writers = recorder.topics
            held: dict[str, tuple[list[int], list[bytes]]] = {}
            held_bytes = held_count = 0
            for topic, t_ns, raw in source.messages():
                cell = held.get(topic)
                if cell is None:
                    cell = held[topic] = ([], [])
                cell[0].append(t_ns)
                cell[1].append(raw)
                held_bytes += len(raw)
                held_count += 1
                if held_bytes >= HAND_OVER_BYTES or held_count >= HAND_OVER_MESSAGES:
                    _hand_over(held, writers, stats)
                    if on_progress:
                        on_progress(held_count)
                    held_bytes = held_count = 0
            _hand_over(held, writers, stats)
            if on_progress and held_count:
                on_progress(held_count)
            seq.finalize()
            for name, snap in recorder.counters().items():
                stats[name].written = snap["written"]
                stats[name].dropped = snap["dropped"]
                stats[name].bytes = snap["bytes"]
        summary.topics = [stats[n] for n in sorted(stats)]
    summary.seconds = time.monotonic() - started
    log.info("imported %d messages into %s in %.2f s", summary.messages, summary.sequence, summary.seconds)
    return summary
