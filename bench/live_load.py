#!/usr/bin/env python3
"""Load generator for bench_live.py: publishes one kind of message for a while.

    live_load.py image|imu|string --topic T --seconds S [--hz HZ] [--ready-file F]

``--hz 0`` publishes as fast as possible. Waits (bounded) for a subscriber, then
prints one JSON line: {"published": n, "failed": k, "seconds": s}. Image and Imu
messages carry the publish time in header.stamp (wall clock), for latency.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import rclpy
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image, Imu
from std_msgs.msg import String


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=["image", "imu", "string"])
    ap.add_argument("--topic", required=True)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--hz", type=float, default=0)
    args = ap.parse_args()
    rclpy.init()
    node = rclpy.create_node("live_load")
    qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
    cls = {"image": Image, "imu": Imu, "string": String}[args.kind]
    pub = node.create_publisher(cls, args.topic, qos)
    deadline = time.monotonic() + 20
    while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
    if args.kind == "image":
        payload = np.random.default_rng(1).integers(0, 255, 1920 * 1080 * 3, dtype=np.uint8).tobytes()
    published = failed = 0
    start = time.monotonic()
    end = start + args.seconds
    while time.monotonic() < end:
        if args.kind == "image":
            msg = Image(height=1080, width=1920, encoding="rgb8", step=1920 * 3, data=payload)
        elif args.kind == "imu":
            msg = Imu()
            msg.linear_acceleration.z = 9.81
        else:
            msg = String(data=f"hello {published}")
        if args.kind != "string":
            t = time.time_ns()
            msg.header.stamp.sec, msg.header.stamp.nanosec = t // 10**9, t % 10**9
        try:
            pub.publish(msg)
            published += 1
        except Exception:  # noqa: BLE001 - rmw refuses some large reliable samples
            failed += 1
        if args.hz:
            delay = start + published / args.hz - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    print(json.dumps({"published": published, "failed": failed, "seconds": time.monotonic() - start}), flush=True)
    node.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
