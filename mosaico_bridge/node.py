"""The bridge node: a lifecycle node that streams topics into a Mosaico sequence.

Lifecycle transition → sequence (the mapping this node exists for):

* configure: validate parameters, start the embedded server if no ``host`` is given,
  connect the control and data layers. A bad parameter, an unreachable or refusing
  server → FAILURE with one log line; the node stays unconfigured.
* activate: create the sequence on the first activation, a new session on later ones;
  subscribe to the selected topics (and, every ``discovery_period_s``, to new ones).
* deactivate: unsubscribe, flush everything received, finalize the session. Every
  received message is on the server before the transition returns SUCCESS.
* while active, a split (``~/split_session``, ``max_session_duration_s``,
  ``max_session_bytes``) finalizes the session and opens the next one without
  unsubscribing: it runs on the executor thread, where the subscription callbacks run,
  so every message goes to exactly one session (later sessions name their topics
  ``<topic>_s<n>``, :mod:`mosaico_bridge.recorder`).
* store-and-forward (``reconnect_max_backoff_s`` > 0, a ``host`` and a ``spool_dir``):
  a server lost while active is not an error; the topic writers keep converting into the
  spool, a thread retries the server with back-off, and once it answers the node (on the
  executor thread) ends the interrupted session, reconnects, opens a new session for the
  subscribed topics and uploads the spool in the background, as ``spool_upload`` does
  (rows the restarted server already holds are not sent twice). /diagnostics has a
  ``spool`` status: state (streaming / spooling / uploading), files and bytes.
* snapshot mode (``mode: snapshot``): activate subscribes but opens no session; each
  topic's last ``snapshot_duration_s`` (at most ``snapshot_max_bytes``) of serialized
  messages stay in memory (:class:`mosaico_bridge.recorder.SnapshotBuffer`), and
  ``~/snapshot`` (std_srvs/srv/Trigger) writes them as a new session and empties them.
* cleanup: close the connections (and the embedded server).
* shutdown (from any state): flush and finalize first, then clean up.
* error (an exception in a callback, the server lost): log the cause with its
  traceback, apply ``on_error`` (report: notification + finalize what was received;
  delete: delete the session / sequence), close, return to unconfigured.

The subscription callbacks (serialized, ``raw=True``) only append each message to its
topic's buffer (:class:`mosaico_bridge.client.TopicWriter`); batching, conversion and
upload run on the client's threads, never on the ROS executor thread. One memory budget
(``max_inflight_bytes``) covers every topic from the callback to the server's
acknowledgement; the counters (per topic, logged at every deactivate and on /diagnostics)
reconcile as ``received == written + spooled + dropped + inflight`` (``inflight`` is 0
after deactivate).

Row timestamps (``timestamp_ns``) come from the node's ROS clock at receive time
(``use_sim_time`` gives simulation time), or from the message's ``header.stamp`` with
``timestamp_source: header``. Housekeeping timers (discovery, checks, /diagnostics) run on
steady time, so they keep running while a simulation clock is paused. Topics, converters and counters live in :class:`mosaico_bridge.recorder.Recorder`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.clock import Clock, ClockType
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.signals import SignalHandlerOptions
from rclpy.task import Future

from .bridge_config import PARAMETERS, BridgeConfig
from .client import DEFAULT_MAX_INFLIGHT_BYTES, MosaicoClient, MosaicoError, SequenceWriter, SessionLevelErrorPolicy
from .common.imports import keep_pandas_out
from .common.memory import keep_freed_memory
from .common.threads import realtime_refused
from .conversion import ConversionError
from .embedded import Connection, EmbeddedServerError, ServerConfig, connect_or_embed
from .protocol.errors import InvalidArgumentError
from .recorder import Recorder, SnapshotBuffer, warm_imports
from .sources.header_stamp import HeaderStampError, header_stamp_reader
from .sources.live import LiveSource, Sink, ensure_type, ros_typestore

NODE_NAME = "mosaico_bridge"
log = logging.getLogger("mosaico_bridge.node")


def _param_type(default: Any) -> Parameter.Type:
    if isinstance(default, bool):
        return Parameter.Type.BOOL
    if isinstance(default, int):
        return Parameter.Type.INTEGER
    if isinstance(default, float):
        return Parameter.Type.DOUBLE
    if isinstance(default, list):
        return Parameter.Type.STRING_ARRAY
    return Parameter.Type.STRING


class BridgeNode(LifecycleNode):
    """Lifecycle node streaming the configured topics into a Mosaico sequence.

    Parameters are declared from :data:`mosaico_bridge.bridge_config.PARAMETERS`
    (each with its description) and documented in ``config/bridge.yaml``.
    """

    def __init__(self, node_name: str = NODE_NAME, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        for name, (default, description) in PARAMETERS.items():
            self.declare_parameter(
                name, default, ParameterDescriptor(description=description, type=_param_type(default).value)
            )
        self.config: BridgeConfig | None = None
        self.client: MosaicoClient | None = None
        self.connection: Connection | None = None  # the client and, when host is empty, the embedded server
        self.sequence_name: str | None = None
        self.sessions = 0
        self.writer: SequenceWriter | None = None
        self.recorder: Recorder | None = None
        self.source: LiveSource | None = None
        self._typestore = ros_typestore()
        self._timers: list = []
        self._diag_pub = self.create_lifecycle_publisher(DiagnosticArray, "/diagnostics", 10)
        self._lock = threading.RLock()
        self.last_counters: dict[str, dict[str, int]] = {}
        self._pending_error: BaseException | None = None
        self._steady = Clock(clock_type=ClockType.STEADY_TIME)
        self._sim_time = True  # read from the clock at each activation (see _now_ns)
        self._session_started = 0.0  # time.monotonic() when the open session was opened
        from std_srvs.srv import Trigger

        self._split_srv = self.create_service(Trigger, "~/split_session", self._on_split_request)
        self._snapshot_srv = self.create_service(Trigger, "~/snapshot", self._on_snapshot_request)
        self.snapshots: dict[str, SnapshotBuffer] = {}  # snapshot mode: ROS topic -> its buffer
        # store-and-forward
        self._server_config: ServerConfig | None = None
        self._offline = False  # the server is lost: topic writers spool
        self._server_back = threading.Event()
        self._retry_stop = threading.Event()
        self._retry_thread: threading.Thread | None = None
        self._upload_thread: threading.Thread | None = None
        self.spool_state = "streaming"  # streaming | spooling | uploading
        self._memory_warmed = False  # warm_heap ran for this node (once: the process keeps the memory)
        self._byte_topics: set[str] = set()  # topics whose type has a byte array, this activation

    def destroy_node(self) -> None:
        """Remove the subscriptions first: those of the mb-take thread live on this node's
        rcl handle, which rclpy does not know of."""
        if self.source is not None:
            self.source.unsubscribe()
            self.source = None
        super().destroy_node()

    # ================================================================ transitions
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Validate parameters and connect. FAILURE (stay unconfigured) on bad input."""
        return self._guard("configure", self._configure)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Open a session (creating the sequence the first time) and subscribe."""
        result = self._guard("activate", self._activate)
        if result == TransitionCallbackReturn.SUCCESS:
            return super().on_activate(state)
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Unsubscribe, flush, finalize the session; all received data is on the server after it."""
        result = self._guard("deactivate", self._deactivate)
        super().on_deactivate(state)
        return result

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Close the connections and the embedded server."""
        return self._guard("cleanup", self._close)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """From any state: flush and finalize an open session first, then close."""

        def shutdown() -> TransitionCallbackReturn:
            if self.writer is not None:
                self._deactivate()
            return self._close()

        return self._guard("shutdown", shutdown)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Apply ``on_error`` to the open session, close everything, go to unconfigured."""
        self.get_logger().error(f"error processing from state {state.label}: applying on_error policy")
        self._apply_error_policy(RuntimeError(f"lifecycle error in state {state.label}"))
        self._pending_error = None  # consumed: a later error must not report this cause
        self._close()
        return TransitionCallbackReturn.SUCCESS

    # ================================================================ steps
    def _guard(self, name: str, step: Callable[[], TransitionCallbackReturn]) -> TransitionCallbackReturn:
        """Run a transition step; an exception is logged with its traceback (rclpy would
        swallow it) and becomes ERROR, which leads to :meth:`on_error`."""
        try:
            with self._lock:
                return step()
        except Exception as exc:  # noqa: BLE001 - every failure must be logged and mapped
            self.get_logger().error(f"{name} failed: {type(exc).__name__}: {exc}\n{traceback.format_exc()}")
            self._pending_error = exc
            return TransitionCallbackReturn.ERROR

    def _configure(self) -> TransitionCallbackReturn:
        values = {name: self.get_parameter(name).value for name in PARAMETERS}
        try:
            config = BridgeConfig.from_values(values)
        except ValueError as exc:
            self.get_logger().error(f"configure refused: {exc}")
            return TransitionCallbackReturn.FAILURE
        if config.realtime_priority:
            why = realtime_refused(config.realtime_priority)
            if why is not None:
                self.get_logger().error(f"configure refused: parameter 'realtime_priority': SCHED_FIFO at "
                                        f"priority {config.realtime_priority} not permitted: {why}")
                return TransitionCallbackReturn.FAILURE
        warm_imports()
        server_config = ServerConfig(
            host=config.host, port=config.port, root=config.embedded_root, timeout=config.connect_timeout_s,
            tls_cert_path=config.tls_cert_path, api_key=config.api_key, data_connections=config.data_connections,
            workers=config.workers, max_inflight_bytes=config.max_inflight_bytes, compression=config.compression,
            worker_nice=config.worker_nice,
        )
        where = f"{config.host}:{config.port}" if config.host else "the embedded server"
        try:
            self.connection = connect_or_embed(server_config)
        except EmbeddedServerError as exc:
            self.get_logger().error(f"configure refused: parameter 'embedded_root': {exc}")
            return TransitionCallbackReturn.FAILURE
        except Exception as exc:  # noqa: BLE001 - ConnectionError, AuthenticationError, ValueError ...
            self.get_logger().error(f"configure failed: cannot connect to Mosaico at {where}: {exc}")
            return TransitionCallbackReturn.FAILURE
        self.client = self.connection.client
        self._server_config = server_config
        host, port = self.client.host, self.client.port
        if self.connection.root is not None:
            root = self.connection.root
            self.get_logger().info(
                f"embedded Mosaico server on {root.resolve()} (serve it later with: mosaico_server --root {root})"
            )
        self.config = config
        visible = sorted(t for t, _types in self.get_topic_names_and_types() if config.topic_filter(t))
        self.get_logger().info(f"topics matching now: {json.dumps(visible)}")
        self.get_logger().info(
            f"configured: Mosaico {self.client.info().version} at {host}:{port}, "
            f"{config.data_connections} data connections"
            + (f", API key {self.client.api_key_fingerprint}" if self.client.api_key_fingerprint else "")
        )
        return TransitionCallbackReturn.SUCCESS

    def _activate(self) -> TransitionCallbackReturn:
        assert self.config is not None
        cfg = self.config
        snapshot = cfg.mode == "snapshot"
        if not snapshot:
            self._open_session()
        self.snapshots = {}
        self._sim_time = self.get_clock().ros_time_is_active
        self._byte_topics = set()
        self.source = LiveSource(self, cfg.topic_filter, self._on_new_topic, cfg.qos_overrides,
                                 info=self.get_logger().info, now_ns=self._now_ns,
                                 off_executor=self._byte_topics.__contains__ if cfg.receive_thread else None,
                                 realtime_priority=cfg.realtime_priority)
        self.source.start()
        self._timers = [
            self._steady_timer(cfg.discovery_period_s, self._safe(self._discover)),
            self._steady_timer(1.0, self._safe(self._check_and_publish)),
        ]
        if snapshot:
            self.get_logger().info(
                f"active in snapshot mode: {len(self.source.topics)} topics buffered, last "
                f"{cfg.snapshot_duration_s:g} s / {cfg.snapshot_max_bytes} bytes each; ~/snapshot writes them"
            )
            return TransitionCallbackReturn.SUCCESS
        assert self.writer is not None
        self.get_logger().info(
            f"active: sequence {self.sequence_name}, session {self.writer.session_locator}, "
            f"{len(self.source.topics)} topics subscribed"
        )
        return TransitionCallbackReturn.SUCCESS

    def _open_session(self) -> None:
        """Open the next session of the sequence (creating the sequence the first time) and
        its recorder.

        Raises:
            MosaicoError, ConnectionError: from the server.
        """
        assert self.client is not None and self.config is not None
        cfg = self.config
        policy = SessionLevelErrorPolicy(cfg.on_error)
        options = dict(
            on_error=policy, max_batch_size_bytes=cfg.max_batch_size_bytes,
            max_batch_size_records=cfg.max_batch_size_records, spool_dir=cfg.spool_dir,
            max_batch_age_s=cfg.max_batch_age_s, compression=cfg.compression,
        )
        if self.sequence_name is None or not self.client.sequence_exists(self.sequence_name):
            self.sequence_name = cfg.sequence_name(self.get_name(), self.get_namespace())
            writer = self.client.sequence_create(self.sequence_name, cfg.metadata, **options)
        else:
            writer = self.client.sequence_update(self.sequence_name, **options)
        writer.open()
        self.writer = writer
        self.sessions += 1
        self.recorder = Recorder(writer, self._typestore, session=self.sessions,
                                 ros_metadata={"node": self.get_fully_qualified_name()})
        self._session_started = time.monotonic()

    def split_session(self, reason: str) -> str:
        """Finalize the open session and open the next one, keeping the subscriptions; every
        subscribed topic gets its Mosaico topic in the new session (``<topic>_s<n>``).

        Must run on the executor thread (service and timer callbacks do): no subscription
        callback runs meanwhile, so each message is in exactly one session.

        Returns:
            The locator of the new session.

        Raises:
            RuntimeError: the node is not active, or a topic cannot be created again.
            MosaicoError, ConnectionError: from the server.
        """
        with self._lock:
            if self.writer is None or self.source is None:
                raise RuntimeError("split_session: the node is not active")
            old = self.writer
            old.finalize()
            self._log_counters(f"session {old.session_locator} finalized ({reason})")
            self.writer = None
            self._open_session()
            self._retarget_all()
            assert self.writer is not None
            locator = self.writer.session_locator
            self.get_logger().info(f"session split ({reason}): now recording into session {locator}")
            return str(locator)

    def _retarget_all(self) -> None:
        """Create every subscribed topic in the (new) open session and send its next messages there.

        Raises:
            RuntimeError: a topic is refused in the new session.
        """
        assert self.source is not None
        for topic, msgtype in sorted(self.source.msgtypes.items()):
            sink = self._on_new_topic(topic, msgtype)
            if sink is None:
                raise RuntimeError(f"topic {topic} [{msgtype}] refused in the new session")
            self.source.retarget(topic, sink)

    def _on_split_request(self, request: Any, response: Any) -> Any:
        """``~/split_session`` (std_srvs/srv/Trigger): success and the new session's locator,
        or failure with the reason (not active, server lost). A server error applies ``on_error``."""
        if self.writer is None or self.source is None:
            response.success, response.message = False, "not active: nothing to split"
            return response
        if self._offline:
            response.success, response.message = False, "server lost: recording into the spool, split refused"
            return response
        try:
            response.message = self.split_session("requested")
            response.success = True
        except Exception as exc:  # noqa: BLE001 - node boundary: every failure is logged and mapped
            response.success, response.message = False, f"{type(exc).__name__}: {exc}"
            self._fail_while_active(exc)
        return response

    def write_snapshot(self) -> str:
        """Snapshot mode: write every topic's buffered messages as a new session of the
        sequence (finalized before this returns) and empty the buffers. Runs on the
        executor thread, so no message is both written and kept.

        Returns:
            The locator of the new session.

        Raises:
            RuntimeError: not active in snapshot mode, or nothing buffered.
            MosaicoError, ConnectionError: from the server (the session is aborted first).
        """
        with self._lock:
            if self.config is None or self.config.mode != "snapshot" or self.source is None:
                raise RuntimeError("snapshot: the node is not active in snapshot mode")
            now = time.monotonic_ns()
            for buffer in self.snapshots.values():
                buffer.expire(now)
            if not any(len(b) for b in self.snapshots.values()):
                raise RuntimeError("snapshot: nothing buffered")
            self._open_session()
            assert self.writer is not None and self.recorder is not None
            writer = self.writer
            try:
                for topic, buffer in sorted(self.snapshots.items()):
                    entries = buffer.take()
                    if not entries:
                        continue
                    tw = self.recorder.add_topic(topic, buffer.msgtype)
                    for ts, data, mono in entries:
                        tw.push(ts, data, mono, block=True)
                writer.finalize()
            except (MosaicoError, ConnectionError, RuntimeError, ValueError, ConversionError) as exc:
                writer.abort(exc)
                self.writer = None
                self._log_counters(f"snapshot session {writer.session_locator} {writer.state.value}: {exc}")
                raise
            self.writer = None
            self._log_counters(f"snapshot session {writer.session_locator} written")
            return str(writer.session_locator)

    def _on_snapshot_request(self, request: Any, response: Any) -> Any:
        """``~/snapshot`` (std_srvs/srv/Trigger): success and the new session's locator, or
        failure with the reason; the node stays active either way."""
        try:
            response.message = self.write_snapshot()
            response.success = True
        except Exception as exc:  # noqa: BLE001 - node boundary: every failure is answered and logged
            response.success, response.message = False, f"{type(exc).__name__}: {exc}"
            self.get_logger().error(f"snapshot failed: {response.message}")
        return response

    def _now_ns(self) -> int:
        """The node's ROS clock in ns (simulation time with use_sim_time). Without simulation
        time a ROS clock reads the system clock, which ``time.time_ns`` reads in 1/30 of
        the time of ``Clock.now()`` (the receive path calls this for every message);
        ``_sim_time`` is read from the clock at each activation."""
        return self.get_clock().now().nanoseconds if self._sim_time else time.time_ns()

    def _steady_timer(self, period_s: float, callback: Callable[[], None]):
        return self.create_timer(period_s, callback, clock=self._steady)

    def _deactivate(self) -> TransitionCallbackReturn:
        self._stop_timers()
        writer, source = self.writer, self.source
        if source is not None:
            source.unsubscribe()
            if source.error is not None:
                raise source.error
        if writer is not None and self._offline:
            self._stop_retry()
            writer.abort("server lost: the rest of the session is in the spool", SessionLevelErrorPolicy.Report)
            self.writer = None
            self._log_counters(f"session {writer.session_locator} ended while the server was lost")
        elif writer is not None:
            writer.finalize()
            self.writer = None
            self._log_counters(f"session {writer.session_locator} finalized")
        self.source = None
        self.snapshots = {}
        return TransitionCallbackReturn.SUCCESS

    def _close(self) -> TransitionCallbackReturn:
        self._stop_timers()
        self._stop_retry()
        if self._upload_thread is not None:
            self._upload_thread.join(timeout=60)
            self._upload_thread = None
        if self.source is not None:
            self.source.unsubscribe()
            self.source = None
        if self.connection is not None:
            self.connection.close()
            self.connection = None
        self.client = None
        self.config = None
        return TransitionCallbackReturn.SUCCESS

    # ================================================================ error handling
    def _apply_error_policy(self, error: BaseException) -> None:
        """Report or delete the open session after ``error``. Never raises."""
        writer, source = self.writer, self.source
        self._stop_timers()
        if source is not None:
            try:
                source.unsubscribe()
            except Exception as exc:  # noqa: BLE001
                self.get_logger().error(f"unsubscribing after error failed: {exc}")
        if writer is not None:
            cause = self._pending_error or error
            writer.abort(cause)
            self.writer = None
            self._log_counters(f"session {writer.session_locator} {writer.state.value} after error: {cause}")
            spooled = sum(c.get("spooled", 0) for c in self.last_counters.values())
            if spooled and writer.spool is not None:
                self.get_logger().warning(
                    f"{spooled} messages the server did not take are kept in {writer.spool.root.resolve()} "
                    "(Arrow IPC, one file per topic)"
                )
        self.source = None

    def _fail_while_active(self, exc: BaseException) -> None:
        """An error outside a transition (timer, writer): log, apply on_error, go unconfigured."""
        self.get_logger().error(f"error while active: {type(exc).__name__}: {exc}\n{traceback.format_exc()}")
        with self._lock:
            self._pending_error = exc
            self._apply_error_policy(exc)
            try:
                self.trigger_deactivate()
                self.trigger_cleanup()
            except Exception as err:  # noqa: BLE001
                self.get_logger().error(f"could not return to unconfigured: {err}")
                self._close()
        self._pending_error = None

    def _safe(self, fn: Callable[[], None]) -> Callable[[], None]:
        def wrapped() -> None:
            try:
                fn()
            except Exception as exc:  # noqa: BLE001
                self._fail_while_active(exc)

        return wrapped

    # ================================================================ topics and timers
    def _on_new_topic(self, topic: str, msgtype: str) -> Sink | None:
        """A newly discovered topic: converter (plan built now, not on the first message),
        Mosaico topic, DoPut stream; the sink is the writer's non-blocking push (through the
        header.stamp reader with ``timestamp_source: header``)."""
        assert self.config is not None
        if self.config.mode == "snapshot":
            try:
                ensure_type(self._typestore, msgtype)
                Recorder.converter(msgtype, self._typestore)  # refuse now what a snapshot could not write
            except (LookupError, ValueError, ConversionError) as exc:
                self.get_logger().warning(f"topic {topic} [{msgtype}] not buffered: {exc}")
                return None
            buffer = SnapshotBuffer(msgtype, int(self.config.snapshot_duration_s * 1e9), self.config.snapshot_max_bytes)
            self.snapshots[topic] = buffer
            return self._stamped(buffer.push, msgtype)
        assert self.recorder is not None
        try:
            ensure_type(self._typestore, msgtype)
            writer = self.recorder.add_topic(topic, msgtype)
        except (LookupError, ValueError, ConversionError, InvalidArgumentError) as exc:
            self.get_logger().warning(f"topic {topic} [{msgtype}] not recorded: {exc}")
            return None
        if getattr(writer.converter, "has_byte_arrays", False):
            self._byte_topics.add(topic)  # taken on the mb-take thread with receive_thread
            self._warm_memory(topic)
        return self._stamped(writer.push, msgtype)

    def _warm_memory(self, topic: str) -> None:
        """Once per node, with ``warm_memory``: fault in 3/4 of the memory budget of the heap
        the topic's messages come from (the ``mb-take`` thread's with ``receive_thread``, else
        the executor thread's) in the background (``common/memory.py`` ``warm_heap``), so
        that the first large messages reuse warm pages (docs/live-path.md § Warm memory)."""
        assert self.config is not None
        if not self.config.warm_memory or self._memory_warmed:
            return
        assert self.source is not None
        self._memory_warmed = self.source.warm(topic, 3 * self.config.max_inflight_bytes // 4)
        if self._memory_warmed:
            self.get_logger().info(f"{topic} carries byte arrays: warming the heap for its messages in the background")

    def _stamped(self, push: Sink, msgtype: str) -> Sink:
        """``push``, or with ``timestamp_source: header`` a sink giving it the message's header.stamp."""
        assert self.config is not None
        stamp = header_stamp_reader(msgtype, self._typestore, "cdr") if self.config.timestamp_source == "header" else None
        if stamp is None:
            return push

        def push_header_stamped(receive_ns: int, serialized: bytes, receive_mono_ns: int) -> object:
            try:
                stamp_ns = stamp(serialized)
            except HeaderStampError:
                stamp_ns = receive_ns  # not plain CDR / truncated: the receive time, as documented
            return push(stamp_ns, serialized, receive_mono_ns)

        return push_header_stamped

    def _discover(self) -> None:
        if self.source is not None and not self._offline:  # a new topic needs the server
            self.source.discover()

    def _check_and_publish(self) -> None:
        """1 Hz: raise a callback's or a writer's error (→ on_error), split the session at
        ``max_session_duration_s`` / ``max_session_bytes``, publish /diagnostics."""
        if self.source is not None and self.source.error is not None:
            raise self.source.error
        if self.snapshots:
            now = time.monotonic_ns()
            for buffer in self.snapshots.values():
                buffer.expire(now)
        if self.recorder is not None and self._offline:
            if self._server_back.is_set():
                self._resume()
        elif self.recorder is not None:
            try:
                self.recorder.check()
            except (MosaicoError, ConnectionError) as exc:
                if not self._server_lost(exc):
                    raise
                self._go_offline(exc)
                self._publish_diagnostics()
                return
            cfg = self.config
            if cfg is not None and self.writer is not None:
                if cfg.max_session_duration_s and time.monotonic() - self._session_started >= cfg.max_session_duration_s:
                    self.split_session(f"max_session_duration_s {cfg.max_session_duration_s:g} reached")
                elif cfg.max_session_bytes and self.recorder.totals()["bytes"] >= cfg.max_session_bytes:
                    self.split_session(f"max_session_bytes {cfg.max_session_bytes} reached")
        self._publish_diagnostics()

    # ================================================================ store-and-forward
    def _client_kwargs(self) -> dict[str, Any]:
        sc = self._server_config
        assert sc is not None
        return {"host": sc.host, "port": sc.port, "tls_cert_path": sc.tls_cert_path, "api_key": sc.api_key}

    def _server_lost(self, exc: BaseException) -> bool:
        """True if store-and-forward applies to the writer error ``exc``: it is on, and a
        fresh connection to the server fails as unreachable (a refusal, e.g. a revoked
        key, is not a lost server)."""
        cfg = self.config
        if cfg is None or not cfg.reconnect_max_backoff_s or not cfg.spool_dir or not cfg.host:
            return False
        try:
            MosaicoClient.connect(timeout=1.0, data_connections=1, **self._client_kwargs()).close()
        except ConnectionError:
            return True
        except MosaicoError:
            return False
        return False

    def _go_offline(self, exc: BaseException) -> None:
        assert self.config is not None
        self._offline, self.spool_state = True, "spooling"
        self._server_back.clear()
        self._retry_stop.clear()
        self.get_logger().warning(
            f"server lost ({exc}): recording into the spool {self.config.spool_dir}, retrying the server "
            f"(back-off up to {self.config.reconnect_max_backoff_s:g} s)"
        )
        self._retry_thread = threading.Thread(target=self._retry_server, name="mosaico-reconnect", daemon=True)
        self._retry_thread.start()

    def _retry_server(self) -> None:
        """Reconnect thread: try a connection, 0.5 s apart doubling up to reconnect_max_backoff_s."""
        assert self.config is not None
        limit = self.config.reconnect_max_backoff_s
        delay = 0.5
        while not self._retry_stop.wait(delay):
            try:
                MosaicoClient.connect(timeout=2.0, data_connections=1, **self._client_kwargs()).close()
            except (ConnectionError, MosaicoError) as exc:
                log.debug("server still unreachable: %s", exc)
                delay = min(delay * 2, limit)
                continue
            self._server_back.set()
            return

    def _stop_retry(self) -> None:
        self._retry_stop.set()
        if self._retry_thread is not None:
            self._retry_thread.join(timeout=10)
            self._retry_thread = None

    def _resume(self) -> None:
        """The server is back (executor thread, so no subscription callback runs meanwhile):
        end the interrupted session (its unacknowledged and later batches are in the
        spool), reconnect, open a new session for the subscribed topics, upload the spool
        in the background."""
        assert self.writer is not None and self.recorder is not None and self._server_config is not None
        with self._lock:
            old, old_recorder = self.writer, self.recorder
            written = {w.locator: w.stats.written for w in old_recorder.topics.values()}
            old.abort("server lost: the rest of the session is in the spool", SessionLevelErrorPolicy.Report)
            self._log_counters(f"session {old.session_locator} ended after the server was lost")
            self.writer = None
            if self.connection is not None:
                self.connection.close()
            self.connection = connect_or_embed(self._server_config)
            self.client = self.connection.client
            self._open_session()
            self._retarget_all()
            self._offline, self.spool_state = False, "uploading"
            assert self.writer is not None
            self.get_logger().info(f"server back: streaming into session {self.writer.session_locator}")
            interrupted = str(old.session_locator).rpartition(":")[2]
            self._upload_thread = threading.Thread(
                target=self._upload_spool, args=(str(self.sequence_name), interrupted, written),
                name="mosaico-spool-upload", daemon=True,
            )
            self._upload_thread.start()

    def _upload_spool(self, sequence: str, interrupted: str, written: dict[str, int]) -> None:
        """Upload thread: every spooled session of ``sequence``, with spool_upload's checks,
        progress record and ``<topic>_recovered`` names; in the ``interrupted`` session the
        rows the server already holds beyond what it acknowledged (``written`` per topic
        locator) are left out, so no row is stored twice."""
        from .cli.common import CliError, StopSignals
        from .cli.spool_upload import (
            check_topic,
            read_progress,
            upload_topic,
            write_progress,
        )

        assert self.config is not None and self.config.spool_dir and self._server_config is not None
        root = Path(self.config.spool_dir) / sequence
        start = time.monotonic()
        rows = 0
        try:
            with connect_or_embed(self._server_config) as connection:
                client = connection.client
                for session_dir in sorted(p for p in root.glob("*") if p.is_dir()):
                    done = read_progress(session_dir)
                    for arrows in sorted(session_dir.rglob("*.arrows")):
                        if session_dir.name == interrupted:
                            _drop_rows_held(client, sequence, arrows, written)
                        t = check_topic(session_dir, arrows)
                        if t.key in done:
                            continue
                        what = upload_topic(client, t, StopSignals())
                        done[t.key] = {"topic": t.topic, "rows": t.rows}
                        write_progress(session_dir, done)
                        rows += t.rows
                        self.get_logger().info(f"spool: {sequence}{t.topic}: {t.rows} rows {what}")
                    shutil.rmtree(session_dir)
        except (CliError, MosaicoError, ConnectionError, OSError) as exc:
            self.spool_state = "spooling"
            self.get_logger().error(f"spool upload failed: {exc} (run spool_upload {self.config.spool_dir} later)")
            return
        self.spool_state = "streaming"
        self.get_logger().info(f"spool uploaded: {rows} rows in {time.monotonic() - start:.2f} s")

    def spool_usage(self) -> tuple[int, int]:
        """(files, bytes) of the Arrow IPC files in the spool directory."""
        if self.config is None or not self.config.spool_dir:
            return 0, 0
        files = list(Path(self.config.spool_dir).rglob("*.arrows"))
        return len(files), sum(f.stat().st_size for f in files if f.exists())

    def counters(self) -> dict[str, dict[str, int]]:
        """Per topic: received, written (acknowledged), spooled, dropped, inflight, bytes,
        batches, latency_ns_mean / max / p50 / p99 (receive → acknowledged)."""
        return self.recorder.counters() if self.recorder is not None else {}

    def _log_counters(self, headline: str) -> None:
        counters = self.counters()
        self.last_counters = counters
        lines = [headline]
        for topic, c in sorted(counters.items()):
            lines.append(
                f"  {topic}: received={c['received']} written={c['written']} spooled={c['spooled']} "
                f"dropped={c['dropped']} inflight={c['inflight']} bytes={c['bytes']} "
                f"latency_ms(p50/p99/max)={c['latency_ns_p50'] / 1e6:.1f}/{c['latency_ns_p99'] / 1e6:.1f}/"
                f"{c['latency_ns_max'] / 1e6:.1f}"
            )
        if self.client is not None:
            b = self.client.budget
            lines.append(f"  max_inflight_bytes {b.limit}: {b.used} bytes in flight, peak {b.peak}")
        self.get_logger().info("\n".join(lines))
        # one machine-readable line for tools and tests
        self.get_logger().info("counters " + json.dumps(counters, sort_keys=True))

    def _publish_diagnostics(self) -> None:
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        for topic, c in sorted(self.counters().items()):
            status = DiagnosticStatus()
            status.level = DiagnosticStatus.OK if not c["dropped"] else DiagnosticStatus.WARN
            status.name = f"{self.get_name()}: {topic}"
            status.hardware_id = self.sequence_name or ""
            status.message = "recording" if not c["dropped"] else f"{c['dropped']} dropped"
            status.values = [KeyValue(key=k, value=str(v)) for k, v in sorted(c.items())]
            msg.status.append(status)
        if self.client is not None:
            budget = self.client.budget
            status = DiagnosticStatus()
            status.level = DiagnosticStatus.OK
            status.name = f"{self.get_name()}: max_inflight_bytes"
            status.hardware_id = self.sequence_name or ""
            status.message = f"{budget.used} of {budget.limit} bytes in flight"
            status.values = [KeyValue(key=k, value=str(v)) for k, v in
                             (("inflight_bytes", budget.used), ("peak_inflight_bytes", budget.peak),
                              ("max_inflight_bytes", budget.limit))]
            msg.status.append(status)
        for topic, buffer in sorted(self.snapshots.items()):
            status = DiagnosticStatus()
            status.level = DiagnosticStatus.OK
            status.name = f"{self.get_name()}: {topic}"
            status.hardware_id = self.sequence_name or ""
            status.message = "buffered for a snapshot"
            status.values = [KeyValue(key=k, value=str(v)) for k, v in (
                ("received", buffer.received), ("held", len(buffer)), ("held_bytes", buffer.bytes),
                ("evicted", buffer.evicted), ("max_bytes", buffer.max_bytes))]
            msg.status.append(status)
        files, size = self.spool_usage()
        spool = DiagnosticStatus()
        spool.name = f"{self.get_name()}: spool"
        spool.hardware_id = self.sequence_name or ""
        spool.level = DiagnosticStatus.OK if self.spool_state == "streaming" else DiagnosticStatus.WARN
        spool.message = self.spool_state
        spool.values = [KeyValue(key="state", value=self.spool_state), KeyValue(key="files", value=str(files)),
                        KeyValue(key="bytes", value=str(size))]
        msg.status.append(spool)
        self._diag_pub.publish(msg)

    def _stop_timers(self) -> None:
        for timer in self._timers:
            self.destroy_timer(timer)
        self._timers = []

    # ================================================================ process exit
    def finish(self) -> None:
        """Flush and finalize an open session and close everything (signal or exit path)."""
        with self._lock:
            try:
                if self.writer is not None:
                    self._deactivate()
            except Exception as exc:  # noqa: BLE001
                self.get_logger().error(f"finalize at exit failed: {exc}")
                self._apply_error_policy(exc)
            finally:
                self._close()


def _drop_rows_held(client: MosaicoClient, sequence: str, arrows: Path, written: dict[str, int]) -> None:
    """Rewrite the spool file ``arrows`` without its first rows when the server holds
    more rows of the interrupted topic than it acknowledged: those rows were stored by the
    server but their acknowledgement was lost with the connection. The spool holds the
    rows from the first unacknowledged one on, in order (``client/topic_writer.py``).

    Raises:
        OSError, ValueError: the files cannot be read or written (sidecar JSON).
        MosaicoError, ConnectionError: from the server.
    """
    import pyarrow as pa

    sidecar = json.loads(arrows.with_suffix(".json").read_text(encoding="utf-8"))
    locator = str(sidecar.get("resource_locator", ""))
    if locator not in written:
        return
    handler = client.topic_handler(sequence, "/" + locator.partition("/")[2])
    extra = (handler.row_count if handler is not None else 0) - written[locator]
    if extra <= 0:
        return
    with pa.ipc.open_stream(arrows) as reader:
        table = reader.read_all()
    tmp = arrows.with_suffix(".arrows.tmp")
    with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as out:
        for batch in table.slice(min(extra, table.num_rows)).to_batches():
            out.write_batch(batch)
    os.replace(tmp, arrows)
    log.warning("spool %s: %d rows the server already holds left out", arrows, extra)


def _make_executor():
    """rclpy's EventsExecutor (about 4x the callbacks/s of the SingleThreadedExecutor for
    small messages, measured with rclpy from the PyPI wheels); ``MOSAICO_BRIDGE_EXECUTOR=single``
    selects the SingleThreadedExecutor."""
    if os.environ.get("MOSAICO_BRIDGE_EXECUTOR", "events") != "single":
        try:
            from rclpy.experimental import EventsExecutor

            return EventsExecutor()
        except ImportError:  # older rclpy
            pass
    return SingleThreadedExecutor()


def main(argv: list[str] | None = None) -> int:
    """Console script ``bridge_node``: run the node until SIGINT / SIGTERM, then finalize and exit 0."""
    keep_pandas_out()
    # large messages are allocated on the executor thread and freed on the client's threads:
    # reuse their memory instead of faulting fresh pages in for each (common/memory.py)
    keep_freed_memory(DEFAULT_MAX_INFLIGHT_BYTES)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    rclpy.init(args=argv if argv is not None else sys.argv, signal_handler_options=SignalHandlerOptions.NO)
    stop = threading.Event()

    def on_signal(signum, _frame) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    node = BridgeNode()
    executor = _make_executor()
    executor.add_node(node)
    # a future that never completes: each call runs every event of the next 0.1 s in C++,
    # so the checks of this loop cost once per 0.1 s, not once per message (spin_once per
    # message took ~10 % of the executor thread under a small-message flood)
    forever = Future()
    try:
        while not stop.is_set() and rclpy.ok():
            executor.spin_until_future_complete(forever, timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.finish()
        node.get_logger().info("bridge stopped")
        executor.remove_node(node)
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
