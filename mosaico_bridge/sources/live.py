"""Live subscriptions as a source of serialized messages (rclpy, ``raw=True``).

The subscription callback does the least work possible: it stamps the serialized
message with its receive time (the row's ``timestamp_ns``, from the clock the source is
given: the node's ROS clock, so ``use_sim_time`` gives simulation time as in every ROS
tool; monotonic for latency) and hands it to the topic's sink, a :meth:`TopicWriter.push`
that only appends to the topic's buffer and never waits (a message over the memory
budget is dropped and counted there). Conversion to Arrow and upload run on the client's
threads, never on the ROS executor thread. A topic's sink can be replaced while
subscribed (:meth:`LiveSource.retarget`, used to split sessions): the callback reads it
at each message.

Large messages: a topic the ``off_executor`` predicate names (the node names those whose
type has a byte array: Image, PointCloud2...) is subscribed through rcl directly and taken
on the ``mb-take`` thread without the GIL, one copy per message (:mod:`.rcl_take`); the
others, and every topic where rcl cannot be reached through ctypes, through rclpy's
executor with ``raw=True``.

QoS: like rosbag2, a subscription takes the reliability and durability its publishers
offer (reliable only if every publisher is reliable, transient-local only if every
publisher is), so latched ``/tf_static``-style samples are received; a per-topic
override wins.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from ..common.memory import warm_heap
from ..common.threads import receive_threads, set_realtime_priority
from ..protocol.errors import MosaicoError
from . import rcl_take
from .topic_filter import TopicFilter

log = logging.getLogger("mosaico_bridge.sources")

#: Subscriptions keep every sample until the callback takes it (KEEP_ALL): with a
#: reliable publisher, DDS flow control then slows the writer instead of dropping.
#: A ``depth`` override switches to KEEP_LAST with that depth.
DEFAULT_HISTORY = HistoryPolicy.KEEP_ALL
DEFAULT_DEPTH = 1000


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


def _msg_file(pkg: str, name: str) -> str | None:
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


#: sink(timestamp_ns, serialized message (bytes or pyarrow.Buffer), receive time from
#: time.monotonic_ns()) -> accepted
Sink = Callable[[int, bytes, int], object]


class LiveSource:
    """Subscriptions of a node to the topics selected by a filter.

    Args:
        node: the node that owns the subscriptions.
        topic_filter: which topics to record.
        on_topic: called (on the discovering thread) with ``(topic, msgtype)`` for each new
            topic; returns a sink ``sink(timestamp_ns, serialized, receive_mono_ns)`` or None
            to skip the topic. A sink must not wait; it may raise RuntimeError or
            MosaicoError, which the source keeps in :attr:`error`.
        qos_overrides: ``{topic: QosOverride}``.
        info: where to report subscriptions and skipped topics (default: this module's logger).
        now_ns: the receive clock in ns (default: ``time.time_ns``, wall clock since the
            Unix epoch); the node passes its ROS clock.
        off_executor: ``off_executor(topic)`` true: take the topic's messages on the
            ``mb-take`` thread (:mod:`.rcl_take`), its sink then gets a ``pyarrow.Buffer``
            for a message of 64 KiB or more. Asked after ``on_topic`` accepted the topic.
            Default: every topic through rclpy's executor.
        realtime_priority: 1..99: the topics taken off the executor go through a DDS
            participant of their own, whose receive threads and the ``mb-take`` thread run
            under SCHED_FIFO at this priority (:meth:`_start_take_participant`); 0: normal.
    """

    def __init__(
        self,
        node: Node,
        topic_filter: TopicFilter,
        on_topic: Callable[[str, str], Sink | None],
        qos_overrides: dict | None = None,
        info: Callable[[str], None] | None = None,
        now_ns: Callable[[], int] | None = None,
        off_executor: Callable[[str], bool] | None = None,
        realtime_priority: int = 0,
    ) -> None:
        self.node = node
        self._realtime_priority = realtime_priority
        self._info = info or log.info
        self.topic_filter = topic_filter
        self.on_topic = on_topic
        self.qos_overrides = qos_overrides or {}
        self.skipped: dict[str, str] = {}
        self._subs: dict[str, object] = {}
        self._sinks: dict[str, list[Sink]] = {}  # topic -> one-element cell read by its callback
        self.msgtypes: dict[str, str] = {}  # subscribed topic -> its message type
        self._now_ns = now_ns or time.time_ns
        self._error: BaseException | None = None
        self._off_executor = off_executor
        self._taker: rcl_take.RclTaker | None = None
        self._taken: dict[str, object] = {}  # topic -> its RclTaker entry
        self._taker_refused = False  # rcl_take.available() said no (logged once)
        self._take_node: Node | None = None  # with realtime_priority: the take thread's participant
        self._take_context = None

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._error = None
        self.discover()

    def unsubscribe(self) -> None:
        """Destroy every subscription (no more callbacks after this returns)."""
        for topic, sub in list(self._subs.items()):
            if topic not in self._taken:
                self.node.destroy_subscription(sub)
        if self._taker is not None:
            self._taker.close()
            self._taker = None
        self._stop_take_participant()
        self._taken.clear()
        self._subs.clear()
        self._sinks.clear()
        self.msgtypes.clear()

    def retarget(self, topic: str, sink: Sink) -> None:
        """Send the next messages of the subscribed ``topic`` to ``sink``.

        Called on the executor thread (as the callbacks are), no message is given to both
        sinks nor to neither.

        Raises:
            KeyError: ``topic`` is not subscribed.
        """
        self._sinks[topic][0] = sink

    def warm(self, topic: str, nbytes: int) -> bool:
        """Fault in ``nbytes`` (bytes) of the heap that the messages of ``topic`` will be
        allocated from (``common/memory.py`` ``warm_heap``): the ``mb-take`` thread's for a
        topic taken off the executor, else the calling thread's (the executor's). Returns
        whether warming started (on the take thread: was asked)."""
        taker = self._taker_for(topic)
        if taker is not None:
            taker.call_soon(lambda: warm_heap(nbytes))
            return True
        return warm_heap(nbytes) is not None

    def _taker_for(self, topic: str) -> rcl_take.RclTaker | None:
        """The take thread if ``topic`` goes off the executor (started now if needed)."""
        if self._off_executor is None or self._taker_refused or not self._off_executor(topic):
            return None
        if self._taker is None:
            try:
                node = self._start_take_participant() if self._realtime_priority else self.node
                self._taker = rcl_take.RclTaker(node, self._take_error, self._realtime_priority)
            except RuntimeError as exc:
                self._stop_take_participant()
                self._taker_refused = True
                self._info(f"large messages are taken through rclpy's executor: {exc}")
                return None
        return self._taker

    def _start_take_participant(self) -> Node:
        """With ``realtime_priority``: a node in an rclpy context of its own, so a DDS
        participant of its own, whose receive threads carry only the topics taken on the
        ``mb-take`` thread. Those threads (the ones that appear with it) run under SCHED_FIFO;
        the node's own participant, which carries the small topics, keeps its priority
        (``docs/live-path.md`` § Real-time priority for the receive threads).

        Raises:
            PermissionError: SCHED_FIFO refused (the node checks it at configure).
        """
        import rclpy
        from rclpy.signals import SignalHandlerOptions

        before = set(receive_threads())
        context = rclpy.Context()
        # args=[]: the process's --ros-args (node name, parameters) are the bridge node's, not this one's
        rclpy.init(args=[], context=context, signal_handler_options=SignalHandlerOptions.NO)
        self._take_context = context
        name = f"{self.node.get_name()}_take"
        self._take_node = Node(name, namespace=self.node.get_namespace(), context=context, cli_args=[],
                               use_global_arguments=False, start_parameter_services=False, enable_rosout=False)
        raised = []
        for tid, thread in sorted(receive_threads().items()):
            if tid not in before:
                set_realtime_priority(tid, self._realtime_priority)
                raised.append(thread)
        missing = "" if raised else " (no receive thread of the rmw layer found by name)"
        self._info(f"topics with byte arrays go through node {self._take_node.get_fully_qualified_name()} "
                   f"(a DDS participant of its own); realtime_priority {self._realtime_priority}: SCHED_FIFO for "
                   f"{', '.join(['mb-take', *raised])}{missing}")
        return self._take_node

    def _stop_take_participant(self) -> None:
        node, context = self._take_node, self._take_context
        self._take_node = self._take_context = None
        if node is not None:
            node.destroy_node()
        if context is not None and context.ok():
            context.try_shutdown()

    def _take_error(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc
            log.error("%s", exc)

    @property
    def error(self) -> BaseException | None:
        """The first error a sink raised in a callback, if any."""
        return self._error

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
            qos = adapted_qos(self.node, topic, self.qos_overrides.get(topic))
            cell = [sink]
            self._sinks[topic] = cell
            self.msgtypes[topic] = msgtype
            taker = self._taker_for(topic)
            if taker is not None:
                self._subs[topic] = self._taken[topic] = taker.subscribe(topic, cls, qos, self._callback_for(cell))
            else:
                self._subs[topic] = self.node.create_subscription(
                    cls, topic, self._callback_for(cell), qos, raw=True
                )
            self._info(f"recording {topic} [{msgtype}] ({qos.reliability.name}, {qos.durability.name}, "
                       f"{qos.history.name}{', mb-take thread' if taker is not None else ''})")
            new.append(topic)
        return new

    # ------------------------------------------------------------ data path
    def _callback_for(self, cell: list[Sink]) -> Callable[[bytes], None]:
        now, mono = self._now_ns, time.monotonic_ns

        def callback(serialized) -> None:
            try:
                cell[0](now(), serialized, mono())
            except (RuntimeError, MosaicoError) as exc:  # reported to the node at its next check
                if self._error is None:
                    self._error = exc
                    log.error("%s", exc)

        return callback
