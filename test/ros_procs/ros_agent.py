#!/usr/bin/env python3
"""A ROS 2 helper process for the tests: reads JSON commands on stdin, one per line,
answers one JSON line each on stdout. The tests start one instance as the publisher
(bag replay, image stream) and one as the lifecycle driver (the standard lifecycle
services, as `ros2 lifecycle set` and nav2's lifecycle_manager call them).

Commands:
  {"cmd": "transition", "node": "/mosaico_bridge", "transition": "configure", "timeout": 30}
      -> {"success": bool, "state": "inactive"}
  {"cmd": "state", "node": "/mosaico_bridge"} -> {"state": "unconfigured"}
  {"cmd": "transitions", "node": "/mosaico_bridge"} -> {"transitions": ["configure", ...]}
  {"cmd": "wait_received", "node": "mosaico_bridge", "counts": {topic: n}, "timeout": 60}
      -> {"received": {topic: n}} once /diagnostics reports at least those counts
  {"cmd": "replay", "bag": path, "topics": [..] | null, "rate": 2000, "reliable": true}
      -> {"published": {topic: n}}  (waits for a subscriber on every topic first)
  {"cmd": "images", "topic": t, "hz": 30, "seconds": 10, "width": 1920, "height": 1080, "subscribers": 1}
      -> {"published": n, "failed": k, "sha1": [hex per frame published]}
      (starts once that many subscribers are matched)
  {"cmd": "advertise", "topic": t, "type": "pkg/msg/Name"} -> {"advertised": t}
  {"cmd": "matched", "topic": t, "count": 1, "timeout": 20} -> {"matched": n}
      (waits until the publisher advertised on t has at least count subscribers matched)
  {"cmd": "publish", "topic": t, "data": "text"} -> {"published": t, "time_ns": wall clock}
      (one std_msgs/String on a topic advertised with that type)
  {"cmd": "latch", "topic": t, "data": "text"} -> {"latched": t}
      (a transient-local std_msgs/String publisher that publishes once and stays alive)
  {"cmd": "clock", "sec": 1000000, "nanosec": 0, "count": 20} -> {"clock_ns": n}
      (rosgraph_msgs/Clock on /clock, count times 20 ms apart, once a subscriber is seen)
  {"cmd": "stamped", "topic": t, "sec": s, "nanosec": n} -> {"published": t}
      (one geometry_msgs/PointStamped with that header.stamp, advertised on first use)
  {"cmd": "numbered", "topic": t, "count": n, "rate": hz} -> {"published": n}
      (std_msgs/String "0".."n-1", reliable KEEP_ALL, once a subscriber is seen)
  {"cmd": "trigger", "service": "/mosaico_bridge/split_session"} -> {"success": b, "message": m}
      (a std_srvs/srv/Trigger call)
  {"cmd": "diag_status", "node": "mosaico_bridge", "status": "spool", "key": "state", "value": "spooling"}
      -> {"values": {key: value}} of the first status "<node>: <status>" published from now on
      whose key has that value (any value if "value" is absent)
  {"cmd": "quit"}
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetAvailableTransitions, GetState
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from mosaico_bridge.sources.live import message_class

TRANSITIONS = {
    "configure": Transition.TRANSITION_CONFIGURE,
    "cleanup": Transition.TRANSITION_CLEANUP,
    "activate": Transition.TRANSITION_ACTIVATE,
    "deactivate": Transition.TRANSITION_DEACTIVATE,
    "shutdown": Transition.TRANSITION_UNCONFIGURED_SHUTDOWN,
    "inactive_shutdown": Transition.TRANSITION_INACTIVE_SHUTDOWN,
    "active_shutdown": Transition.TRANSITION_ACTIVE_SHUTDOWN,
}


class Agent(Node):
    def __init__(self) -> None:
        super().__init__("test_agent")
        self.diag: dict[str, dict[str, int]] = {}
        self.statuses: dict[str, dict[str, str]] = {}  # status name -> its latest values
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            node, _, topic = status.name.partition(": ")
            values = {kv.key: kv.value for kv in status.values}
            self.statuses[status.name] = values
            if "received" in values:
                self.diag.setdefault(node, {})[topic] = int(values["received"])

    def call(self, client, request, timeout: float):
        if not client.wait_for_service(timeout_sec=timeout):
            raise TimeoutError(f"service {client.srv_name} not available within {timeout} s")
        future = client.call_async(request)
        rclpy.spin_until_future_complete(self, future, timeout_sec=timeout)
        if not future.done():
            raise TimeoutError(f"service {client.srv_name} did not answer within {timeout} s")
        return future.result()

    def state(self, node: str, timeout: float = 10) -> str:
        cli = self.create_client(GetState, f"{node}/get_state")
        try:
            return self.call(cli, GetState.Request(), timeout).current_state.label
        finally:
            self.destroy_client(cli)

    def transition(self, node: str, name: str, timeout: float) -> dict:
        cli = self.create_client(ChangeState, f"{node}/change_state")
        try:
            req = ChangeState.Request()
            req.transition.id = TRANSITIONS[name]
            res = self.call(cli, req, timeout)
        finally:
            self.destroy_client(cli)
        return {"success": bool(res.success), "state": self.state(node)}

    def transitions(self, node: str) -> dict:
        cli = self.create_client(GetAvailableTransitions, f"{node}/get_available_transitions")
        try:
            res = self.call(cli, GetAvailableTransitions.Request(), 10)
        finally:
            self.destroy_client(cli)
        return {"transitions": [t.transition.label for t in res.available_transitions]}

    def wait_received(self, node: str, counts: dict, timeout: float) -> dict:
        self.diag.pop(node, None)  # only counters published from now on
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rclpy.spin_once(self, timeout_sec=0.2)
            got = self.diag.get(node, {})
            if all(got.get(t, 0) >= n for t, n in counts.items()):
                return {"received": got}
        raise TimeoutError(f"diagnostics of {node} show {self.diag.get(node)} after {timeout} s, want {counts}")

    def diag_status(self, node: str, status: str, key: str, value, timeout: float) -> dict:
        name = f"{node}: {status}"
        self.statuses.pop(name, None)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rclpy.spin_once(self, timeout_sec=0.2)
            got = self.statuses.pop(name, None)
            if got is not None and (value is None or got.get(key) == value):
                return {"values": got}
        raise TimeoutError(f"no status {name} with {key}={value} within {timeout} s")

    def wait_subscribers(self, pubs: dict, timeout: float = 20, count: int = 1) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(p.get_subscription_count() >= count for p in pubs.values()):
                return
            rclpy.spin_once(self, timeout_sec=0.1)
        missing = [t for t, p in pubs.items() if p.get_subscription_count() < count]
        raise TimeoutError(f"no subscriber on {missing} within {timeout} s")

    def replay(self, bag: str, topics, rate: float, reliable: bool) -> dict:
        from rosbags.highlevel import AnyReader
        from rosbags.typesys import Stores, get_typestore

        qos = QoSProfile(
            history=HistoryPolicy.KEEP_ALL,
            reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
            durability=DurabilityPolicy.VOLATILE,
        )
        published: dict[str, int] = {}
        with AnyReader([Path(bag)], default_typestore=get_typestore(Stores.ROS2_HUMBLE)) as reader:
            conns = [c for c in reader.connections if topics is None or c.topic in topics]
            pubs = {}
            for c in conns:
                if c.topic not in pubs:
                    pubs[c.topic] = self.create_publisher(message_class(c.msgtype), c.topic, qos)
            self.wait_subscribers(pubs)
            period = 1.0 / rate
            next_t = time.monotonic()
            for conn, _t, raw in reader.messages(connections=conns):
                data = bytes(raw) if reader.is2 else ros1_to_ros2_cdr(reader, raw, conn.msgtype)
                pubs[conn.topic].publish(data)
                published[conn.topic] = published.get(conn.topic, 0) + 1
                next_t += period
                delay = next_t - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
        return {"published": published}

    def images(self, topic: str, hz: float, seconds: float, width: int, height: int, subscribers: int = 1) -> dict:
        import struct

        import numpy as np
        from sensor_msgs.msg import Image

        # KEEP_ALL: a sample the subscriber has not acknowledged yet is never overwritten, so
        # every frame published reaches the bridge; what the bridge then does is under test.
        qos = QoSProfile(history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE)
        pub = self.create_publisher(Image, topic, qos)
        self.wait_subscribers({topic: pub}, count=subscribers)
        # one message, its last 8 bytes the frame number: every frame differs, and building
        # one and its SHA-1 (from the hash state of the fixed prefix) costs next to nothing,
        # so the publisher leaves the CPU to the processes under test
        msg = Image(height=height, width=width, encoding="rgb8", is_bigendian=0, step=width * 3)
        msg.header.frame_id = "camera"
        msg.data = np.arange(width * height * 3, dtype=np.uint32).astype(np.uint8).tobytes()
        view = memoryview(msg.data).cast("B")
        prefix = hashlib.sha1(view[:-8])
        n = int(hz * seconds)
        sha, failed = [], 0
        start = time.monotonic()
        for i in range(n):
            tail = struct.pack("<Q", i)
            view[-8:] = tail
            msg.header.stamp.sec = i
            try:
                pub.publish(msg)
                h = prefix.copy()
                h.update(tail)
                sha.append(h.hexdigest())
            except Exception:  # noqa: BLE001 - rmw sometimes refuses large reliable samples
                failed += 1
            delay = start + (i + 1) / hz - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        return {"published": len(sha), "failed": failed, "sha1": sha}

    def clock(self, sec: int, nanosec: int, count: int) -> dict:
        from rosgraph_msgs.msg import Clock

        qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
        pub = self.create_publisher(Clock, "/clock", qos)
        self.wait_subscribers({"/clock": pub})
        msg = Clock()
        msg.clock.sec, msg.clock.nanosec = sec, nanosec
        for _ in range(count):
            pub.publish(msg)
            time.sleep(0.02)
        self.keep = getattr(self, "keep", []) + [pub]
        return {"clock_ns": sec * 1_000_000_000 + nanosec}

    def stamped(self, topic: str, sec: int, nanosec: int) -> dict:
        from geometry_msgs.msg import PointStamped

        pubs = self.__dict__.setdefault("stamped_pubs", {})
        if topic not in pubs:
            pubs[topic] = self.create_publisher(PointStamped, topic, QoSProfile(depth=10))
            self.wait_subscribers({topic: pubs[topic]})
        msg = PointStamped()
        msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id = sec, nanosec, "map"
        msg.point.x = float(sec)
        pubs[topic].publish(msg)
        return {"published": topic}

    def numbered(self, topic: str, count: int, rate: float) -> dict:
        from std_msgs.msg import String

        qos = QoSProfile(history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE)
        pub = self.create_publisher(String, topic, qos)
        self.wait_subscribers({topic: pub})
        start = time.monotonic()
        for i in range(count):
            pub.publish(String(data=str(i)))
            delay = start + (i + 1) / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        self.keep = getattr(self, "keep", []) + [pub]
        return {"published": count}

    def trigger(self, service: str, timeout: float) -> dict:
        from std_srvs.srv import Trigger

        cli = self.create_client(Trigger, service)
        try:
            res = self.call(cli, Trigger.Request(), timeout)
        finally:
            self.destroy_client(cli)
        return {"success": bool(res.success), "message": res.message}


_KILTED = None


def _rebuild(value, typename, store):
    """A ROS 1 message (rosbags dataclass) as the ROS 2 message of the same name (drops header.seq)."""
    cls = store.types[typename]
    kwargs = {}
    for fname, desc in store.fielddefs[typename][1]:
        src = getattr(value, fname)
        kind, detail = desc
        if kind.name == "NAME":
            kwargs[fname] = _rebuild(src, detail, store)
        elif kind.name in ("ARRAY", "SEQUENCE") and detail[0][0].name == "NAME":
            kwargs[fname] = [_rebuild(v, detail[0][1], store) for v in src]
        else:
            kwargs[fname] = src
    return cls(**kwargs)


def ros1_to_ros2_cdr(reader, raw, msgtype: str) -> bytes:
    """Serialized ROS 2 (CDR) form of a ROS 1 message, via the Kilted definitions."""
    global _KILTED
    from rosbags.typesys import Stores, get_typestore

    if _KILTED is None:
        _KILTED = get_typestore(Stores.ROS2_KILTED)
    msg = reader.deserialize(raw, msgtype)
    return bytes(_KILTED.serialize_cdr(_rebuild(msg, msgtype, _KILTED), msgtype))


def main() -> int:
    rclpy.init()
    agent = Agent()
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        cmd = req.pop("cmd")
        try:
            if cmd == "quit":
                print(json.dumps({"bye": True}), flush=True)
                break
            if cmd == "transition":
                out = agent.transition(req["node"], req["transition"], req.get("timeout", 60))
            elif cmd == "state":
                out = {"state": agent.state(req["node"])}
            elif cmd == "transitions":
                out = agent.transitions(req["node"])
            elif cmd == "wait_received":
                out = agent.wait_received(req["node"], req["counts"], req.get("timeout", 60))
            elif cmd == "replay":
                out = agent.replay(req["bag"], req.get("topics"), req.get("rate", 2000), req.get("reliable", True))
            elif cmd == "advertise":
                cls = message_class(req["type"])
                pub = agent.create_publisher(cls, req["topic"], 10)
                agent.keep = getattr(agent, "keep", []) + [pub]
                agent.pubs = {**getattr(agent, "pubs", {}), req["topic"]: pub}
                out = {"advertised": req["topic"]}
            elif cmd == "matched":
                agent.wait_subscribers({req["topic"]: agent.pubs[req["topic"]]}, req.get("timeout", 20),
                                       req.get("count", 1))
                out = {"matched": agent.pubs[req["topic"]].get_subscription_count()}
            elif cmd == "publish":
                from std_msgs.msg import String

                agent.pubs[req["topic"]].publish(String(data=req["data"]))
                out = {"published": req["topic"], "time_ns": time.time_ns()}
            elif cmd == "latch":
                from std_msgs.msg import String

                qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                 durability=DurabilityPolicy.TRANSIENT_LOCAL)
                pub = agent.create_publisher(String, req["topic"], qos)
                pub.publish(String(data=req["data"]))
                agent.keep = getattr(agent, "keep", []) + [pub]
                out = {"latched": req["topic"]}
            elif cmd == "diag_status":
                out = agent.diag_status(req["node"], req["status"], req.get("key", ""), req.get("value"),
                                        req.get("timeout", 30))
            elif cmd == "clock":
                out = agent.clock(req["sec"], req.get("nanosec", 0), req.get("count", 20))
            elif cmd == "stamped":
                out = agent.stamped(req["topic"], req["sec"], req.get("nanosec", 0))
            elif cmd == "numbered":
                out = agent.numbered(req["topic"], req["count"], req.get("rate", 1000))
            elif cmd == "trigger":
                out = agent.trigger(req["service"], req.get("timeout", 60))
            elif cmd == "images":
                out = agent.images(req["topic"], req["hz"], req["seconds"], req["width"], req["height"],
                                   req.get("subscribers", 1))
            else:
                out = {"error": f"unknown command {cmd}"}
        except Exception as exc:  # noqa: BLE001 - reported to the test
            out = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(out), flush=True)
    agent.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
