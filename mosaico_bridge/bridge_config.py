"""Parameters of the bridge node: declaration table, defaults, validation.

Each parameter is declared on the node with its description (``ros2 param describe``
shows it) and documented in ``config/bridge.yaml``. :meth:`BridgeConfig.from_values`
turns the raw values into a checked configuration, raising ValueError that names the
parameter; the node calls it at configure.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from .client.transport import COMPRESSIONS
from .common.threads import MAX_NICE, check_nice, check_realtime_priority
from .protocol import auth, names
from .protocol.errors import InvalidArgumentError
from .sources.topic_filter import TopicFilter

# name -> (default, description). Order is the order of config/bridge.yaml.
PARAMETERS: dict[str, tuple[Any, str]] = {
    "host": ("", "Mosaico server host. Empty: run an embedded server on embedded_root, as bag_import does."),
    "port": (names.DEFAULT_PORT, "Mosaico server port (1-65535)."),
    "embedded_root": ("./mosaico_data", "Data directory of the embedded server (used when host is empty)."),
    "tls_cert_path": ("", "PEM CA certificate to trust; enables TLS. Empty: $MOSAICO_TLS_CERT_FILE, else plaintext."),
    "api_key": ("", "Mosaico API key. Empty: $MOSAICO_API_KEY. Never logged; only its fingerprint is."),
    "sequence_name": (
        "{robot}_{date}_{time}",
        "Sequence name template; fields {robot} (robot parameter), {node}, {date} (YYYYMMDD), {time} (HHMMSS), "
        "{namespace}. Resolved at the first activation.",
    ),
    "robot": ("", "Robot name for the sequence_name template. Empty: the host name."),
    "metadata": ("{}", "Sequence metadata, a JSON object."),
    "topics": ([".*"], "Topics to record: exact names or regular expressions matching the whole name."),
    "exclude": (["/parameter_events"], "Topics never recorded (exact names or regular expressions)."),
    "qos_overrides": (
        "{}",
        "Per-topic QoS overrides, JSON: {topic: {reliability: reliable|best_effort, "
        "durability: volatile|transient_local, depth: int}}. Otherwise the publishers' QoS is taken.",
    ),
    "timestamp_source": (
        "receive",
        "Row timestamp_ns: 'receive' (the node's clock when the message is received; simulation time "
        "with use_sim_time) or 'header' (the message's header.stamp when its type starts with a "
        "std_msgs/Header, else the receive time).",
    ),
    "max_session_duration_s": (
        0.0,
        "Seconds after which the open session is finalized and the next one opened, without "
        "unsubscribing (checked every second); 0: no limit. ~/split_session (std_srvs/Trigger) does it "
        "on demand. Topics of later sessions are named <topic>_s<n>.",
    ),
    "max_session_bytes": (
        0,
        "Bytes (Arrow IPC, acknowledged by the server) of a session after which it is finalized and the "
        "next one opened (checked every second); 0: no limit.",
    ),
    "mode": (
        "record",
        "'record': stream every message into the open session. 'snapshot': keep the last messages of each "
        "topic in memory only (snapshot_duration_s, snapshot_max_bytes); ~/snapshot (std_srvs/Trigger) "
        "writes them as a new session of the sequence and empties the buffers.",
    ),
    "snapshot_duration_s": (30.0, "Snapshot mode: seconds of messages kept per topic, by receive time (> 0)."),
    "snapshot_max_bytes": (
        64 * 1024 * 1024,
        "Snapshot mode: most bytes (serialized messages plus 192 bytes each) kept per topic; the "
        "oldest messages go first (>= 1024).",
    ),
    "on_error": ("report", "On error: 'report' (notification + finalize what was received) or 'delete'."),
    "max_batch_size_bytes": (0, "Largest record batch in bytes; 0: 16 MiB. Never above 90% of the server's message limit."),
    "max_batch_size_records": (0, "Largest record batch in rows; 0: no row limit."),
    "max_batch_age_s": (
        0.1,
        "Longest time, in seconds, a received message waits before its topic's record batch is sent (> 0); "
        "a batch is also sent when it reaches max_batch_size_bytes / max_batch_size_records.",
    ),
    "data_connections": (4, "Flight data connections; topics are striped over them round-robin (>= 1)."),
    "workers": (0, "Conversion threads of the executor pool; 0: CPU count (2..8)."),
    "worker_nice": (
        0,
        "Added to the nice value (Linux, per thread) of the conversion threads and the data connections' "
        "writer threads, which also do the embedded server's writes: when the CPU is short, the executor "
        "thread and the rmw layer's receive threads run first and keep taking messages; what the store "
        "cannot keep up with is then dropped at max_inflight_bytes and counted. 0..19; 0 (default): the "
        "node's own priority. 10 helps cameras into the embedded server and slows floods of small messages "
        "(docs/live-path.md).",
    ),
    "warm_memory": (
        True,
        "When the first topic whose type carries a byte array (images, point clouds) is subscribed, "
        "fault in 3/4 of max_inflight_bytes of the process's heap in the background and keep it for "
        "the messages, so that the first seconds of a camera do not pay for new pages (docs/live-path.md "
        "§ Warm memory). RSS then starts that much higher; false: grow as messages arrive.",
    ),
    "receive_thread": (
        True,
        "Topics whose type carries a byte array (images, point clouds) are taken on a thread of the "
        "bridge's own (mb-take) through rcl, outside the ROS executor and without the GIL: one copy per "
        "message instead of rclpy's two, and the conversion and upload threads do not wait for it "
        "(docs/live-path.md § The take thread). false: rclpy's executor takes them, as every other topic.",
    ),
    "realtime_priority": (
        0,
        "SCHED_FIFO priority (Linux, 1..99) for the threads that take large messages: topics whose type "
        "carries a byte array (images, point clouds) then go through a DDS participant of their own (node "
        "<name>_take), whose receive threads run under SCHED_FIFO with the mb-take thread, so that on a "
        "busy machine no other thread delays a frame while it arrives or is taken. The other topics keep "
        "the node's priority. Needs receive_thread, and CAP_SYS_NICE or an rtprio limit of at least this "
        "value (limits.conf, systemd LimitRTPRIO); configure fails without them. 0 (default): off "
        "(docs/live-path.md § Real-time priority for the receive threads).",
    ),
    "spool_dir": (
        "./mosaico_spool",
        "Where record batches go when the server can no longer take them (server lost, key revoked): "
        "Arrow IPC files per sequence/session/topic, so no received message is lost. Empty: no spool.",
    ),
    "reconnect_max_backoff_s": (
        0.0,
        "Store-and-forward: > 0 keeps recording to spool_dir when the server is lost while active, "
        "retries the server with back-off (0.5 s doubling up to this many seconds), then uploads the spool "
        "(as spool_upload does) and streams into a new session. 0: off (on_error is applied and the node "
        "goes unconfigured). Needs spool_dir and a host.",
    ),
    "max_inflight_bytes": (
        256 * 1024 * 1024,
        "Memory budget in bytes shared by all topics, from the subscription callback to the server's "
        "acknowledgement (buffered, converting, uploading, unacknowledged); past it new messages are dropped "
        "and counted (diagnostics WARN). >= 1 MiB.",
    ),
    "compression": (
        "none",
        "Compression of the record batches sent to the server: none, lz4 or zstd.",
    ),
    "connect_timeout_s": (5.0, "Seconds to wait for the server at configure (> 0)."),
    "discovery_period_s": (1.0, "Seconds between scans for new topics matching 'topics' (> 0)."),
}

QOS_KEYS = {"reliability": ("reliable", "best_effort"), "durability": ("volatile", "transient_local")}


@dataclass(frozen=True)
class QosOverride:
    reliability: str | None = None
    durability: str | None = None
    depth: int | None = None


@dataclass(frozen=True)
class BridgeConfig:
    """Checked parameters of the bridge node (see :data:`PARAMETERS`)."""

    host: str
    port: int
    embedded_root: str
    tls_cert_path: str | None
    api_key: str | None = field(repr=False)
    sequence_template: str
    robot: str
    metadata: dict[str, Any]
    topic_filter: TopicFilter
    qos_overrides: dict[str, QosOverride]
    on_error: str
    mode: str
    snapshot_duration_s: float
    snapshot_max_bytes: int
    timestamp_source: str
    max_session_duration_s: float
    max_session_bytes: int
    max_batch_size_bytes: int | None
    max_batch_size_records: int | None
    max_batch_age_s: float
    data_connections: int
    workers: int | None
    worker_nice: int
    warm_memory: bool
    receive_thread: bool
    realtime_priority: int
    spool_dir: str | None
    reconnect_max_backoff_s: float
    max_inflight_bytes: int
    compression: str
    connect_timeout_s: float
    discovery_period_s: float

    @classmethod
    def from_values(cls, values: dict[str, Any], env: dict[str, str] | None = None) -> BridgeConfig:
        """Validate raw parameter values.

        Raises:
            ValueError: ``parameter 'name': reason``.
        """
        env = dict(os.environ if env is None else env)

        def bad(name: str, why: str) -> ValueError:
            return ValueError(f"parameter '{name}': {why}")

        port = values["port"]
        if not isinstance(port, int) or not 1 <= port <= 65535:
            raise bad("port", f"must be an integer in 1..65535, got {port!r}")
        for name in ("max_batch_age_s", "connect_timeout_s", "discovery_period_s"):
            v = values[name]
            if not isinstance(v, (int, float)) or v <= 0:
                raise bad(name, f"must be > 0, got {v!r}")
        for name, minimum in (("data_connections", 1), ("workers", 0), ("max_batch_size_bytes", 0),
                              ("max_batch_size_records", 0), ("max_inflight_bytes", 1024 * 1024)):
            v = values[name]
            if not isinstance(v, int) or v < minimum:
                raise bad(name, f"must be an integer >= {minimum}, got {v!r}")
        nice = values["worker_nice"]
        try:
            check_nice(nice)
        except ValueError:
            raise bad("worker_nice", f"must be an integer in 0..{MAX_NICE}, got {nice!r}") from None
        try:
            realtime_priority = check_realtime_priority(values["realtime_priority"])
        except ValueError as exc:
            raise bad("realtime_priority", str(exc)) from None
        for flag in ("warm_memory", "receive_thread"):
            if not isinstance(values[flag], bool):
                raise bad(flag, f"must be true or false, got {values[flag]!r}")
        if realtime_priority and not values["receive_thread"]:
            raise bad("realtime_priority", "needs receive_thread: true (it raises the take thread's participant)")
        timestamp_source = str(values["timestamp_source"]).strip().lower()
        if timestamp_source not in ("receive", "header"):
            raise bad("timestamp_source", f"must be 'receive' or 'header', got {values['timestamp_source']!r}")
        duration = values["max_session_duration_s"]
        if not isinstance(duration, (int, float)) or duration < 0:
            raise bad("max_session_duration_s", f"must be >= 0, got {duration!r}")
        max_session_bytes = values["max_session_bytes"]
        if not isinstance(max_session_bytes, int) or max_session_bytes < 0:
            raise bad("max_session_bytes", f"must be an integer >= 0, got {max_session_bytes!r}")
        mode = str(values["mode"]).strip().lower()
        if mode not in ("record", "snapshot"):
            raise bad("mode", f"must be 'record' or 'snapshot', got {values['mode']!r}")
        window = values["snapshot_duration_s"]
        if not isinstance(window, (int, float)) or window <= 0:
            raise bad("snapshot_duration_s", f"must be > 0, got {window!r}")
        snapshot_bytes = values["snapshot_max_bytes"]
        if not isinstance(snapshot_bytes, int) or snapshot_bytes < 1024:
            raise bad("snapshot_max_bytes", f"must be an integer >= 1024, got {snapshot_bytes!r}")
        backoff = values["reconnect_max_backoff_s"]
        if not isinstance(backoff, (int, float)) or backoff < 0:
            raise bad("reconnect_max_backoff_s", f"must be >= 0, got {backoff!r}")
        compression = str(values["compression"]).strip().lower()
        if compression not in COMPRESSIONS:
            raise bad("compression", f"must be one of {', '.join(COMPRESSIONS)}, got {values['compression']!r}")
        on_error = str(values["on_error"]).lower()
        if on_error not in ("report", "delete"):
            raise bad("on_error", f"must be 'report' or 'delete', got {values['on_error']!r}")
        try:
            metadata = json.loads(values["metadata"] or "{}")
        except json.JSONDecodeError as exc:
            raise bad("metadata", f"not valid JSON: {exc.msg}") from None
        if not isinstance(metadata, dict):
            raise bad("metadata", "must be a JSON object")
        include = [t for t in values["topics"] or [] if t]
        if not include:
            raise bad("topics", "needs at least one name or pattern ('.*' records every topic)")
        exclude = [t for t in values["exclude"] or [] if t]
        try:
            topic_filter = TopicFilter.of(include, exclude)
        except ValueError as exc:
            raise bad("topics" if any(t in str(exc) for t in include) else "exclude", str(exc)) from None
        qos = parse_qos_overrides(values["qos_overrides"])
        template = values["sequence_name"]
        try:
            sample = template.format(robot="r", node="n", date="20260101", time="000000", namespace="ns")
        except (KeyError, IndexError, ValueError) as exc:
            raise bad("sequence_name", f"bad template field {exc}") from None
        try:
            names.validate_sequence_name(sample)
        except InvalidArgumentError:
            raise bad("sequence_name", f"template {template!r} does not give a valid sequence name") from None
        tls = values["tls_cert_path"] or env.get(auth.ENV_TLS_CERT_FILE) or None
        if tls and not os.path.exists(tls):
            raise bad("tls_cert_path", f"file not found: {tls}")
        return cls(
            host=str(values["host"]).strip(),
            port=port,
            embedded_root=str(values["embedded_root"]),
            tls_cert_path=tls,
            api_key=values["api_key"] or env.get(auth.ENV_API_KEY) or None,
            sequence_template=template,
            robot=str(values["robot"]) or socket.gethostname(),
            metadata=metadata,
            topic_filter=topic_filter,
            qos_overrides=qos,
            on_error=on_error,
            mode=mode,
            snapshot_duration_s=float(window),
            snapshot_max_bytes=snapshot_bytes,
            timestamp_source=timestamp_source,
            max_session_duration_s=float(duration),
            max_session_bytes=max_session_bytes,
            max_batch_size_bytes=values["max_batch_size_bytes"] or None,
            max_batch_size_records=values["max_batch_size_records"] or None,
            max_batch_age_s=float(values["max_batch_age_s"]),
            data_connections=values["data_connections"],
            workers=values["workers"] or None,
            worker_nice=nice,
            warm_memory=values["warm_memory"],
            receive_thread=values["receive_thread"],
            realtime_priority=realtime_priority,
            spool_dir=str(values["spool_dir"]).strip() or None,
            reconnect_max_backoff_s=float(backoff),
            max_inflight_bytes=values["max_inflight_bytes"],
            compression=compression,
            connect_timeout_s=float(values["connect_timeout_s"]),
            discovery_period_s=float(values["discovery_period_s"]),
        )

    def sequence_name(self, node: str, namespace: str, now: float | None = None) -> str:
        """Resolve the sequence name template (local time). Invalid characters become '_'."""
        t = time.localtime(now)
        name = self.sequence_template.format(
            robot=self.robot, node=node, namespace=namespace.strip("/") or "root",
            date=time.strftime("%Y%m%d", t), time=time.strftime("%H%M%S", t),
        )
        return re.sub(r"[^A-Za-z0-9_-]", "_", name)


def parse_qos_overrides(text: str) -> dict[str, QosOverride]:
    """Parse the ``qos_overrides`` JSON.

    Raises:
        ValueError: naming the parameter, the topic and the key at fault.
    """
    try:
        data = json.loads(text or "{}")
    except json.JSONDecodeError as exc:
        raise ValueError(f"parameter 'qos_overrides': not valid JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise ValueError("parameter 'qos_overrides': must be a JSON object {topic: {...}}")
    out = {}
    for topic, spec in data.items():
        if not isinstance(spec, dict):
            raise ValueError(f"parameter 'qos_overrides': {topic}: must be an object")
        unknown = set(spec) - {"reliability", "durability", "depth"}
        if unknown:
            raise ValueError(f"parameter 'qos_overrides': {topic}: unknown key {sorted(unknown)[0]!r}")
        for key, allowed in QOS_KEYS.items():
            if key in spec and spec[key] not in allowed:
                raise ValueError(f"parameter 'qos_overrides': {topic}: {key} must be one of {allowed}")
        depth = spec.get("depth")
        if depth is not None and (not isinstance(depth, int) or depth < 1):
            raise ValueError(f"parameter 'qos_overrides': {topic}: depth must be an integer >= 1")
        out[topic] = QosOverride(spec.get("reliability"), spec.get("durability"), depth)
    return out
