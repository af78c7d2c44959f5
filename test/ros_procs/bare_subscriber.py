#!/usr/bin/env python3
"""A bare rclpy subscriber, the baseline the live bridge is measured against.

``bare_subscriber.py TOPIC TYPE``: subscribes to TOPIC (``pkg/msg/Name``) with
``raw=True``, reliable, KEEP_ALL, on an EventsExecutor, and keeps nothing but a count.
Prints ``{"ready": true, "rss_kib": n}`` once subscribed, then spins until a line arrives on
stdin, then prints ``{"received": n, "rss_kib": VmRSS at ready, "hwm_kib": VmHWM}`` and
exits. What its peak RSS grows by is what the rmw layer itself holds for the load (samples
received and not yet taken, reassembly of fragmented samples), which any subscriber pays.
"""

from __future__ import annotations

import json
import re
import sys
import threading
from pathlib import Path

import rclpy
from rclpy.experimental import EventsExecutor
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

from mosaico_bridge.sources.live import message_class


def _vm_kib(field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1))


def main() -> int:
    topic, msgtype = sys.argv[1], sys.argv[2]
    rclpy.init()
    node = rclpy.create_node("bare_subscriber")
    count = [0]

    def callback(_serialized: bytes) -> None:
        count[0] += 1

    qos = QoSProfile(history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE)
    node.create_subscription(message_class(msgtype), topic, callback, qos, raw=True)
    executor = EventsExecutor()
    executor.add_node(node)
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
    base = _vm_kib("VmRSS")
    print(json.dumps({"ready": True, "rss_kib": base}), flush=True)
    while not stop.is_set():
        executor.spin_once(timeout_sec=0.05)
    print(json.dumps({"received": count[0], "rss_kib": base, "hwm_kib": _vm_kib("VmHWM")}), flush=True)
    node.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
