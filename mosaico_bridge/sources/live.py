"""Live subscriptions as a source of serialized messages (rclpy, ``raw=True``).

The subscription callback does the least work possible: it stamps the serialized
message with its receive time and puts it on a queue. A pump thread hands the queue to
the client's topic writers; conversion to Arrow then runs on the processing layer,
never on the ROS executor thread.

QoS: like rosbag2, a subscription takes the reliability and durability its publishers
offer (reliable only if every publisher is reliable, transient-local only if every
publisher is), so latched ``/tf_static``-style samples are received; a per-topic
override wins.
"""

from __future__ import annotations

import importlib
import logging
import os
import queue
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from .topic_filter import TopicFilter

log = logging.getLogger("mosaico_bridge.sources")

#: Subscriptions keep every sample until the callback takes it (KEEP_ALL): with a
#: reliable publisher, DDS flow control then slows the writer instead of dropping.
#: A ``depth`` override switches to KEEP_LAST with that depth.
DEFAULT_HISTORY = HistoryPolicy.KEEP_ALL
DEFAULT_DEPTH = 1000
#: Default budget of serialized messages held between the callbacks and the topic writers (bytes).
MAX_QUEUE_BYTES = 512 * 1024 * 1024


def ros_typestore():
    """A rosbags typestore with the Kilted definitions; more are added by :func:`ensure_type`."""
    return get_typestore(Stores.ROS2_KILTED)


def ensure_type(typestore, msgtype: str) -> None:
    """Make sure ``msgtype`` (``pkg/msg/Name``) and its dependencies are in ``typestore``.

    Definitions come from the ``.msg`` files installed in ``share/<pkg>/msg`` (ament index).

    Raises:
        LookupError: naming the type if no definition can be found.
    """
    found: dict = {}
    stack = [msgtype]
    while stack:
        name = stack.pop()
        if name in typestore.fielddefs or name in found:
            continue
        pkg, _, short = name.split("/")
        text = _msg_file(pkg, short)
        if text is None:
            raise LookupError(f"no message definition found for {name} (not in the Kilted store nor share/{pkg}/msg)")
        types = get_types_from_msg(text, name)
        found.update(types)
        for _consts, fields in types.values():
            for _fname, desc in fields:
                stack.extend(_refs(desc))
    if found:
        typestore.register(found)


def _refs(desc) -> list[str]:
    """Message type names referenced by a rosbags field description."""
    out = []
    kind, detail = desc
    if getattr(kind, "name", str(kind)) == "NAME":
        out.append(detail)
    elif isinstance(detail, tuple) and detail and isinstance(detail[0], tuple):
        out.extend(_refs(detail[0]))
    return out


def _msg_file(pkg: str, name: str) -> Optional[str]:
    """Text of ``share/<pkg>/msg/<name>.msg`` under an ament prefix (``AMENT_PREFIX_PATH``,
    then this interpreter's prefix, where the PyPI ROS wheels install it)."""
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p] + [sys.prefix]
    for prefix in prefixes:
        path = Path(prefix) / "share" / pkg / "msg" / f"{name}.msg"
        if path.is_file():
            return path.read_text(encoding="utf-8")
    return None


def message_class(msgtype: str):
    """The rclpy message class of ``pkg/msg/Name``.

    Raises:
        LookupError: if the Python package of the type is not installed.
    """
    pkg, _, name = msgtype.split("/")
    try:
        return getattr(importlib.import_module(f"{pkg}.msg"), name)
    except (ImportError, AttributeError):
        raise LookupError(f"message type {msgtype} is not installed (no Python module {pkg}.msg)") from None


def adapted_qos(node: Node, topic: str, override=None) -> QoSProfile:
    """QoS for a recording subscription on ``topic``: the publishers' offer, then the override."""
    infos = node.get_publishers_info_by_topic(topic)
    reliable = bool(infos) and all(i.qos_profile.reliability == ReliabilityPolicy.RELIABLE for i in infos)
    latched = bool(infos) and all(i.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL for i in infos)
    qos = QoSProfile(
        history=DEFAULT_HISTORY,
        depth=DEFAULT_DEPTH,
        reliability=ReliabilityPolicy.RELIABLE if reliable or not infos else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE,
    )
    if override is not None:
        if override.reliability:
            qos.reliability = (
                ReliabilityPolicy.RELIABLE if override.reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT
            )
        if override.durability:
            qos.durability = (
                DurabilityPolicy.TRANSIENT_LOCAL
                if override.durability == "transient_local"
                else DurabilityPolicy.VOLATILE
            )
        if override.depth:
            qos.history = HistoryPolicy.KEEP_LAST
            qos.depth = override.depth
    return qos


@dataclass
class LiveCounters:
    """Per-topic counters of the source: messages received by the callback and
    dropped because the queue was full."""

    received: int = 0
    dropped: int = 0
    bytes: int = 0


class LiveSource:
    """Subscriptions of a node to the topics selected by a filter.

    Args:
        node: the node that owns the subscriptions.
        topic_filter: which topics to record.
        on_topic: called (on the discovering thread) with ``(topic, msgtype)`` for each new
            topic; returns a sink ``sink(timestamp_ns, serialized, receive_mono_ns)`` or None
            to skip the topic.
        qos_overrides: ``{topic: QosOverride}``.
        info: where to report subscriptions and skipped topics (default: this module's logger).
        max_queue_bytes: budget of queued serialized messages; past it new ones are dropped and counted.
    """

    def __init__(
        self,
        node: Node,
        topic_filter: TopicFilter,
        on_topic: Callable[[str, str], Optional[Callable[[int, bytes, int], None]]],
        qos_overrides: Optional[dict] = None,
        info: Optional[Callable[[str], None]] = None,
        max_queue_bytes: int = MAX_QUEUE_BYTES,
    ) -> None:
        self.node = node
        self._info = info or log.info
        self.max_queue_bytes = max_queue_bytes
        self.topic_filter = topic_filter
        self.on_topic = on_topic
        self.qos_overrides = qos_overrides or {}
        self.counters: dict[str, LiveCounters] = {}
        self.skipped: dict[str, str] = {}
        self._subs: dict[str, object] = {}
        self._sinks: dict[str, Callable[[int, bytes, int], None]] = {}
        self._queue: "queue.SimpleQueue[Optional[tuple[str, int, bytes, int]]]" = queue.SimpleQueue()
        self._queued_bytes = 0
        self._qlock = threading.Lock()
        self._pump: Optional[threading.Thread] = None
        self._pump_error: Optional[BaseException] = None

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._pump_error = None
        self._pump = threading.Thread(target=self._run_pump, name="mosaico-pump", daemon=True)
        self._pump.start()
        self.discover()

    def unsubscribe(self) -> None:
        """Destroy every subscription (no more callbacks after this returns)."""
        for topic, sub in list(self._subs.items()):
            self.node.destroy_subscription(sub)
        self._subs.clear()

    def drain(self, timeout: float = 600.0) -> None:
        """Wait until every queued message reached its sink; stop the pump thread.

        Raises:
            TimeoutError: if the pump did not finish in ``timeout`` seconds.
            the pump's error, if a sink raised.
        """
        if self._pump is None:
            return
        self._queue.put(None)
        self._pump.join(timeout)
        if self._pump.is_alive():
            raise TimeoutError(f"live source: queue not drained within {timeout:g} s")
        self._pump = None
        self._sinks.clear()
        if self._pump_error is not None:
            raise self._pump_error

    @property
    def pump_error(self) -> Optional[BaseException]:
        return self._pump_error

    @property
    def topics(self) -> list[str]:
        return sorted(self._subs)

    # ------------------------------------------------------------ discovery
    def discover(self) -> list[str]:
        """Subscribe to topics that match the filter and have no subscription yet."""
        new = []
        for topic, types in self.node.get_topic_names_and_types():
            if topic in self._subs or topic in self.skipped or not self.topic_filter(topic):
                continue
            if len(types) != 1:
                self.skipped[topic] = f"several types: {', '.join(types)}"
                self._info(f"topic {topic} skipped: {self.skipped[topic]}")
                continue
            msgtype = types[0]
            try:
                cls = message_class(msgtype)
            except LookupError as exc:
                self.skipped[topic] = str(exc)
                self._info(f"topic {topic} skipped: {exc}")
                continue
            sink = self.on_topic(topic, msgtype)
            if sink is None:
                self.skipped[topic] = "refused by the writer"
                continue
            self._sinks[topic] = sink
            self.counters.setdefault(topic, LiveCounters())
            qos = adapted_qos(self.node, topic, self.qos_overrides.get(topic))
            self._subs[topic] = self.node.create_subscription(
                cls, topic, self._callback_for(topic), qos, raw=True
            )
            self._info(f"recording {topic} [{msgtype}] ({qos.reliability.name}, {qos.durability.name}, {qos.history.name})")
            new.append(topic)
        return new

    # ------------------------------------------------------------ data path
    def _callback_for(self, topic: str) -> Callable[[bytes], None]:
        counters = self.counters[topic]
        q = self._queue

        def callback(serialized: bytes) -> None:
            size = len(serialized)
            with self._qlock:
                counters.received += 1
                if self._queued_bytes + size > self.max_queue_bytes:
                    counters.dropped += 1
                    return
                self._queued_bytes += size
                counters.bytes += size
            q.put((topic, time.time_ns(), serialized, time.monotonic_ns()))

        return callback

    def _run_pump(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            topic, t_ns, data, mono = item
            with self._qlock:
                self._queued_bytes -= len(data)
            if self._pump_error is not None:
                continue  # keep draining so the producer never blocks; data is counted as received
            try:
                self._sinks[topic](t_ns, data, mono)
            except BaseException as exc:  # reported to the node at its next check
                self._pump_error = exc
                log.error("topic %s: %s", topic, exc)
