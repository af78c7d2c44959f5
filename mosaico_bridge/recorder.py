"""Recorder: the topics of one write session, shared by the bag importer and the bridge node.

For each ROS topic it finds the converter (:func:`mosaico_bridge.conversion.make_converter`),
builds the topic metadata (the converter's, with a ``_ros_`` object: ROS topic name,
session number and what the caller adds), creates the Mosaico topic, and keeps the topic
writer. A topic name is used once per sequence (``docs/protocol.md`` § Topics), so a ROS
topic recorded again in a later session is stored as ``<topic>_s<session>``. The counters
of every topic (received / written / spooled / dropped / bytes, receive → acknowledged
latency) come from the topic writers; once the session is closed they reconcile as
``received == written + spooled + dropped``.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Mapping
from typing import Any

from .client import SequenceWriter, TopicWriter
from .conversion import TopicConverter, make_converter
from .protocol.errors import AlreadyExistsError

log = logging.getLogger("mosaico_bridge.recorder")

#: Counters summed by :meth:`Recorder.totals`.
COUNTERS = ("received", "written", "spooled", "dropped", "bytes", "batches", "inflight")


def warm_imports() -> None:
    """Import now what the first record batch would otherwise import: pyarrow.compute, and
    pandas, which pyarrow loads on first use when it is installed (about 1 s on a small
    machine), unless the process keeps it out (:func:`mosaico_bridge.common.imports.keep_pandas_out`,
    as ``bridge_node`` does)."""
    import pyarrow.compute
    import pyarrow.ipc  # noqa: F401

    try:
        import pandas  # noqa: F401
    except ImportError:
        pass


def warm_converter(converter: TopicConverter) -> None:
    """Build the converter's decoding plan now (an empty batch) rather than on the first message.

    Raises:
        ConversionError: the type cannot be converted.
    """
    converter.convert([], [])


class Recorder:
    """The topics of one session of ``writer`` (an open :class:`SequenceWriter`).

    Args:
        writer: the open session.
        typestore: rosbags typestore with the definitions of the recorded types.
        session: number of this session of the sequence (1 for the first); from 2 on, a
            topic the sequence already has is renamed ``<topic>_s<session>``.
        ros_metadata: entries added to every topic's ``_ros_`` metadata object.
    """

    def __init__(self, writer: SequenceWriter, typestore: Any, *, session: int = 1,
                 ros_metadata: Mapping[str, Any] | None = None) -> None:
        self.writer = writer
        self.typestore = typestore
        self.session = session
        self.ros_metadata = dict(ros_metadata or {})
        self.topics: dict[str, TopicWriter] = {}  # ROS topic -> its writer (maybe renamed)

    @staticmethod
    def converter(msgtype: str, typestore: Any, encoding: str = "cdr") -> TopicConverter:
        """The converter of ``msgtype``, its decoding plan built.

        Raises:
            ConversionError: the type cannot be converted (names it).
        """
        converter = make_converter(msgtype, typestore, encoding)
        warm_converter(converter)
        return converter

    def add_topic(self, topic: str, msgtype: str, encoding: str = "cdr", *,
                  converter: TopicConverter | None = None,
                  ros_metadata: Mapping[str, Any] | None = None) -> TopicWriter:
        """Create the Mosaico topic of the ROS topic ``topic`` and return its writer.

        Raises:
            ConversionError, LookupError: the type cannot be converted.
            AlreadyExistsError: the sequence has the topic already and this is the first session.
            MosaicoError, ConnectionError: from the server.
        """
        conv = converter if converter is not None else self.converter(msgtype, self.typestore, encoding)
        meta = dict(conv.topic_metadata)
        meta["_ros_"] = {**meta.get("_ros_", {}), "topic": topic, "session": self.session,
                         **self.ros_metadata, **(ros_metadata or {})}
        try:
            writer = self.writer.topic_create(topic, meta, conv)
        except AlreadyExistsError:
            if self.session < 2:
                raise
            renamed = f"{topic}_s{self.session}"
            log.info("topic %s exists in sequence %s: recorded as %s", topic, self.writer.sequence_name, renamed)
            writer = self.writer.topic_create(renamed, meta, conv)
        self.topics[topic] = writer
        return writer

    def check(self) -> None:
        """Raise the first background error of a topic writer (conversion, upload), if any."""
        for writer in list(self.topics.values()):
            if writer.error is not None:
                raise writer.error

    def counters(self) -> dict[str, dict[str, int]]:
        """Per ROS topic: the writer's counters and latencies (:meth:`TopicWriter.snapshot`)."""
        return {topic: writer.snapshot() for topic, writer in list(self.topics.items())}

    def totals(self) -> dict[str, int]:
        """:data:`COUNTERS` summed over the topics."""
        out = dict.fromkeys(COUNTERS, 0)
        for c in self.counters().values():
            for k in COUNTERS:
                out[k] += c[k]
        return out


#: Bytes charged per buffered message on top of its serialized size (the tuple, the bytes
#: object's header, two ns-sized ints, the deque slot and block: 181 measured with tracemalloc on
#: CPython 3.11 64-bit, rounded up).
SNAPSHOT_ENTRY_OVERHEAD = 192


class SnapshotBuffer:
    """The last messages of one topic, for snapshot mode: at most ``duration_ns`` of
    receive time (``time.monotonic_ns()``) and ``max_bytes`` bytes (serialized size plus
    :data:`SNAPSHOT_ENTRY_OVERHEAD` per message); the oldest messages are evicted first.

    Not thread-safe: the node uses it from the executor thread only.
    """

    def __init__(self, msgtype: str, duration_ns: int, max_bytes: int) -> None:
        self.msgtype = msgtype
        self.duration_ns = duration_ns
        self.max_bytes = max_bytes
        self._entries: deque[tuple[int, bytes, int]] = deque()
        self.bytes = 0
        self.received = 0
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._entries)

    def push(self, timestamp_ns: int, serialized: bytes, receive_mono_ns: int) -> bool:
        """A sink (:data:`mosaico_bridge.sources.live.Sink`): keep one message, evict what
        is now too old or over the byte limit. A message above ``max_bytes`` on its own is
        not kept (counted evicted)."""
        self.received += 1
        size = len(serialized) + SNAPSHOT_ENTRY_OVERHEAD
        if size > self.max_bytes:
            self.evicted += 1
            return False
        self._entries.append((timestamp_ns, serialized, receive_mono_ns))
        self.bytes += size
        while self.bytes > self.max_bytes:
            self._pop()
        self.expire(receive_mono_ns)
        return True

    def expire(self, now_mono_ns: int) -> None:
        """Evict messages received more than ``duration_ns`` before ``now_mono_ns``."""
        oldest = now_mono_ns - self.duration_ns
        while self._entries and self._entries[0][2] < oldest:
            self._pop()

    def take(self) -> list[tuple[int, bytes, int]]:
        """Every kept message, oldest first, ``(timestamp_ns, serialized, receive_mono_ns)``; empties the buffer."""
        out = list(self._entries)
        self._entries.clear()
        self.bytes = 0
        return out

    def _pop(self) -> None:
        _ts, data, _mono = self._entries.popleft()
        self.bytes -= len(data) + SNAPSHOT_ENTRY_OVERHEAD
        self.evicted += 1
