#!/usr/bin/env python3
"""Bag import throughput: mosaico_bridge ``bag_import`` beside the SDK's
``mosaicolabs.ros_injector``, the same bag into the same server, in the same run.

The server (``mosaico_server``) runs in its own process. Each round imports the bag
once with each tool into a new sequence, alternating which goes first. Two views:

* ``process``: the console script as a user runs it (interpreter start, imports,
  connect, import, exit): wall time, CPU time and peak RSS of the child process;
* ``in-process``: the import call alone in this (warm) process: wall time.

Figures are messages/s and MB/s of serialized bag data, and the ratio
ours / SDK (higher is better for us). Run:

    .venv/bin/python bench/bench_import.py [BAG] [--rounds 3]

Default BAG: the shared husky bag (../shared/data/bags/ros1_husky_imu_odom_gps).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_BAG = REPO.parent / "shared/data/bags/ros1_husky_imu_odom_gps/husky_imu_odom_gps.bag"
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bag_stats(bag: Path) -> tuple[int, int]:
    """(messages, serialized bytes) of the bag."""
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    n = size = 0
    with AnyReader([bag], default_typestore=get_typestore(Stores.ROS2_HUMBLE)) as r:
        for _c, _t, raw in r.messages():
            n += 1
            size += len(raw)
    return n, size


def run_child(cmd: list[str]) -> tuple[float, float, float]:
    """Run a command; return (wall s, CPU s, peak RSS MiB) of that child alone.

    Peak RSS is the child's own VmHWM, polled every 20 ms from /proc (``ru_maxrss`` of
    a forked child would include this benchmark's memory at fork time).
    """
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    peak = [0]

    def poll() -> None:
        status = Path(f"/proc/{proc.pid}/status")
        while True:
            try:
                text = status.read_text()
            except OSError:
                return
            if "VmHWM" not in text:  # zombie: exited
                return
            for line in text.splitlines():
                if line.startswith("VmHWM:"):
                    peak[0] = max(peak[0], int(line.split()[1]))
            time.sleep(0.02)

    watcher = threading.Thread(target=poll, daemon=True)
    watcher.start()
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    watcher.join(timeout=1)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{err}")
    return wall, usage.ru_utime + usage.ru_stime, peak[0] / 1024


def ours_cmd(bag: Path, port: int, seq: str) -> list[str]:
    return [str(BIN / "bag_import"), str(bag), "--sequence", seq, "--host", "127.0.0.1", "--port", str(port),
            "--no-progress"]


def sdk_cmd(bag: Path, port: int, seq: str) -> list[str]:
    return [str(BIN / "mosaicolabs.ros_injector"), str(bag), "--name", seq, "--host", "127.0.0.1",
            "--port", str(port), "--log", "ERROR"]


def ours_inprocess(bag: Path, port: int, seq: str) -> float:
    from mosaico_bridge.client import MosaicoClient
    from mosaico_bridge.importer import import_bags

    with MosaicoClient.connect("127.0.0.1", port) as client:
        t0 = time.perf_counter()
        import_bags(client, [bag], seq)
        return time.perf_counter() - t0


def sdk_inprocess(bag: Path, port: int, seq: str) -> float:
    import logging

    from mosaicolabs.bridges.ros.injector import ROSInjectionConfig, RosbagInjector

    logging.getLogger("mosaicolabs").setLevel(logging.ERROR)
    config = ROSInjectionConfig(file_path=bag, sequence_name=seq, metadata={}, host="127.0.0.1", port=port,
                                log_level="ERROR")
    t0 = time.perf_counter()
    RosbagInjector(config).run()
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bag", nargs="?", type=Path, default=DEFAULT_BAG)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if not args.bag.exists():
        raise SystemExit(f"bag not found: {args.bag}")
    msgs, size = bag_stats(args.bag)
    root = Path(tempfile.mkdtemp(prefix="bench_import_"))
    port = free_port()
    server = subprocess.Popen([str(BIN / "mosaico_server"), "--root", str(root), "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        from mosaico_bridge.client import MosaicoClient

        MosaicoClient.connect("127.0.0.1", port, timeout=20).close()
        proc = {"ours": [], "sdk": []}
        inproc = {"ours": [], "sdk": []}
        for r in range(args.rounds):
            order = [("ours", ours_cmd), ("sdk", sdk_cmd)]
            if r % 2:
                order.reverse()
            for name, cmd in order:
                proc[name].append(run_child(cmd(args.bag, port, f"p_{name}_{r}")))
            order2 = [("ours", ours_inprocess), ("sdk", sdk_inprocess)]
            if r % 2:
                order2.reverse()
            for name, fn in order2:
                inproc[name].append(fn(args.bag, port, f"i_{name}_{r}"))
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)

    print(f"bag: {args.bag.name}  {msgs} messages, {size / 1e6:.2f} MB serialized, {args.rounds} rounds, "
          f"{os.cpu_count()} CPUs")
    print(f"{'view':<12}{'tool':<8}{'wall s':>9}{'msg/s':>11}{'MB/s':>8}{'CPU s':>8}{'RSS MiB':>9}")
    med = {}
    for name in ("ours", "sdk"):
        wall = statistics.median(w for w, _c, _m in proc[name])
        cpu = statistics.median(c for _w, c, _m in proc[name])
        rss = max(m for _w, _c, m in proc[name])
        med[("process", name)] = wall
        print(f"{'process':<12}{name:<8}{wall:>9.2f}{msgs / wall:>11,.0f}{size / wall / 1e6:>8.2f}{cpu:>8.2f}{rss:>9.0f}")
    for name in ("ours", "sdk"):
        wall = statistics.median(inproc[name])
        med[("in-process", name)] = wall
        print(f"{'in-process':<12}{name:<8}{wall:>9.2f}{msgs / wall:>11,.0f}{size / wall / 1e6:>8.2f}{'':>8}{'':>9}")
    for view in ("process", "in-process"):
        print(f"ratio {view}: ours is {med[(view, 'sdk')] / med[(view, 'ours')]:.2f}x the SDK's throughput")
    return 0


if __name__ == "__main__":
    sys.exit(main())
