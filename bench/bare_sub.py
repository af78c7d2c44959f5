#!/usr/bin/env python3
"""Baseline for bench_live.py: a bare rclpy subscriber (raw=True, the QoS the bridge takes:
reliable, KEEP_ALL) that only counts messages.

    bare_sub.py [--events] [--gil-load DUTY] TOPIC=pkg/msg/Name [TOPIC=pkg/msg/Name ...]

``--events`` spins rclpy's EventsExecutor (what the bridge uses) instead of spin_once.
``--gil-load DUTY`` (0-1) adds a thread that runs Python code for DUTY of every 10 ms and
sleeps the rest: contention for the GIL inside the subscriber's process (bench_contention.py).
Prints {"ready": true, "rss_kib": VmRSS} once subscribed, runs until SIGINT/SIGTERM, then
prints {"received": {topic: n}, "rss_kib": VmRSS at ready, "hwm_kib": VmHWM, "cpu_s": CPU seconds
(user + system) since ready}. What its peak
RSS grows by is what the rmw layer itself holds for the load (samples received and not yet
taken, fragments of large samples being reassembled), which any subscriber pays; the memory
budget test of test/test_bridge_node.py measures the bridge against it.
"""

from __future__ import annotations

import json
import re
import resource
import signal
import sys
import threading
import time
from pathlib import Path

import rclpy
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions

from mosaico_bridge.sources.live import message_class


def _vm_kib(field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1))


def _hold_gil(duty: float, stop: list) -> None:
    """Run Python bytecode (which holds the GIL) for ``duty`` of every 10 ms until ``stop``."""
    while not stop:
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < duty * 0.01:
            sum(range(100))
        time.sleep((1 - duty) * 0.01)


def main() -> int:
    args = sys.argv[1:]
    events = args[0] == "--events"
    if events:
        args = args[1:]
    gil_load = 0.0
    if args[0] == "--gil-load":
        gil_load, args = float(args[1]), args[2:]
    pairs = [a.split("=", 1) for a in args]
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    node = rclpy.create_node("bare_sub")
    counts = {t: 0 for t, _m in pairs}
    qos = QoSProfile(history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE)
    for t, msgtype in pairs:
        def cb(_msg, t=t):
            counts[t] += 1
        node.create_subscription(message_class(msgtype), t, cb, qos, raw=True)
    if gil_load > 0:
        threading.Thread(target=_hold_gil, args=(gil_load, stop), daemon=True).start()
    base = _vm_kib("VmRSS")
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"ready": True, "rss_kib": base}), flush=True)
    if events:
        from rclpy.experimental import EventsExecutor

        executor = EventsExecutor()
        executor.add_node(node)
        while not stop:
            executor.spin_once(timeout_sec=0.1)
    else:
        while not stop:
            rclpy.spin_once(node, timeout_sec=0.1)
    ru = resource.getrusage(resource.RUSAGE_SELF)
    cpu = ru.ru_utime + ru.ru_stime - ru0.ru_utime - ru0.ru_stime
    print(json.dumps({"received": counts, "rss_kib": base, "hwm_kib": _vm_kib("VmHWM"), "cpu_s": cpu}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
