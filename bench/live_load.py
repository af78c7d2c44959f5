#!/usr/bin/env python3
"""Load generator for bench_live.py: publishes on one or more topics for a while.

    live_load.py --pub KIND:TOPIC:HZ [--pub ...] --seconds S

KIND: image (1920x1080 rgb8 sensor_msgs/Image, 6 MiB), imu (sensor_msgs/Imu), tf
(geometry_msgs/TransformStamped, the size of one TF transform), status
(diagnostic_msgs/DiagnosticStatus with 4 key/values), string (std_msgs/String). ``HZ`` 0
publishes as fast as possible (give one --pub then). Waits (bounded) for a subscriber on
every topic, then prints one JSON line: {"published": {topic: n}, "failed": k, "seconds": s,
"cpu_s": CPU seconds (user + system) this process used while publishing}.
Image, Imu and TransformStamped carry the publish time in header.stamp (wall clock).
"""

from __future__ import annotations

import argparse
import heapq
import json
import resource
import time

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from geometry_msgs.msg import TransformStamped
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image, Imu
from std_msgs.msg import String

TYPES = {"image": Image, "imu": Imu, "tf": TransformStamped, "status": DiagnosticStatus, "string": String}
MSGTYPES = {"image": "sensor_msgs/msg/Image", "imu": "sensor_msgs/msg/Imu",
            "tf": "geometry_msgs/msg/TransformStamped", "status": "diagnostic_msgs/msg/DiagnosticStatus",
            "string": "std_msgs/msg/String"}


def make(kind: str, n: int, payload: bytes):
    if kind == "image":
        msg = Image(height=1080, width=1920, encoding="rgb8", step=1920 * 3, data=payload)
    elif kind == "imu":
        msg = Imu()
        msg.linear_acceleration.z = 9.81
    elif kind == "tf":
        msg = TransformStamped(child_frame_id="base_link")
        msg.header.frame_id = "odom"
        msg.transform.rotation.w = 1.0
    elif kind == "status":
        return DiagnosticStatus(level=b"\x00", name="motor", message="ok", hardware_id="m1",
                                values=[KeyValue(key=f"k{i}", value=str(n)) for i in range(4)])
    else:
        return String(data=f"hello {n}")
    t = time.time_ns()
    msg.header.stamp.sec, msg.header.stamp.nanosec = t // 10**9, t % 10**9
    return msg


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pub", action="append", required=True, metavar="KIND:TOPIC:HZ")
    ap.add_argument("--seconds", type=float, default=10)
    args = ap.parse_args()
    rclpy.init()
    node = rclpy.create_node("live_load")
    qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
    pubs = []
    for spec in args.pub:
        kind, topic, hz = spec.split(":")
        pubs.append((kind, topic, float(hz), node.create_publisher(TYPES[kind], topic, qos)))
    deadline = time.monotonic() + 20
    while any(p.get_subscription_count() == 0 for *_x, p in pubs) and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
    payload = np.random.default_rng(1).integers(0, 255, 1920 * 1080 * 3, dtype=np.uint8).tobytes()
    published = {topic: 0 for _k, topic, _h, _p in pubs}
    failed = 0
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    start = time.monotonic()
    end = start + args.seconds
    queue = [(start, i) for i in range(len(pubs))]  # (next publish time, publisher index)
    heapq.heapify(queue)
    while queue:
        due, i = heapq.heappop(queue)
        now = time.monotonic()
        if now >= end:
            break
        if due > now:
            time.sleep(due - now)
        kind, topic, hz, pub = pubs[i]
        try:
            pub.publish(make(kind, published[topic], payload))
            published[topic] += 1
        except Exception:  # noqa: BLE001 - rmw refuses some large reliable samples
            failed += 1
        heapq.heappush(queue, (start + published[topic] / hz if hz else time.monotonic(), i))
    ru = resource.getrusage(resource.RUSAGE_SELF)
    cpu = ru.ru_utime + ru.ru_stime - ru0.ru_utime - ru0.ru_stime
    print(json.dumps({"published": published, "failed": failed, "seconds": time.monotonic() - start, "cpu_s": cpu}),
          flush=True)
    node.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
