#!/usr/bin/env python3
"""Live throughput of the bridge node beside a bare rclpy subscriber, same load, same run.

Scenarios (each --seconds long, publishers in their own processes, reliable QoS):
  1x 1080p   one publisher of 1920x1080 rgb8 Image at full rate
  2x 1080p   two such publishers on two topics
  imu 1kHz   sensor_msgs/Imu at 1000 Hz
  strings    a flood of small std_msgs/String at full rate

For each: published; what a bare rclpy subscriber (bare_sub.py, raw=True, the same
QoS) receives, spinning rclpy's default executor and the EventsExecutor the bridge uses; what the bridge receives and writes to a mosaico_server process; the
ratio bridge-received / bare-received; drops; bridge CPU seconds and peak RSS;
latency from receive to the end of the upload (mean / max, from the node's counters;
it includes the flush period), and from publish (header stamp) to receive (the
row's timestamp_ns), for Image and Imu, read back from the server: publish to server
is the sum of the two.

    .venv/bin/python bench/bench_live.py [--seconds 10] [--only imu,strings]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PY = sys.executable
SCENARIOS = {
    "1x1080p": ("image", "sensor_msgs/msg/Image", ["/cam0/image_raw"], 0),
    "2x1080p": ("image", "sensor_msgs/msg/Image", ["/cam0/image_raw", "/cam1/image_raw"], 0),
    "imu1khz": ("imu", "sensor_msgs/msg/Imu", ["/imu/data"], 1000),
    "strings": ("string", "std_msgs/msg/String", ["/chatter"], 0),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_cpu_rss(pid: int) -> tuple[float, float]:
    """(CPU seconds, peak RSS MiB) of a live process."""
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    cpu = (int(stat[11]) + int(stat[12])) / tick
    hwm = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return cpu, int(hwm.group(1)) / 1024 if hwm else 0.0


def run_publishers(kind: str, topics: list[str], hz: float, seconds: float, env: dict) -> int:
    procs = [subprocess.Popen([PY, str(HERE / "live_load.py"), kind, "--topic", t, "--seconds", str(seconds),
                               "--hz", str(hz)], stdout=subprocess.PIPE, text=True, env=env) for t in topics]
    total = 0
    for p in procs:
        out, _ = p.communicate(timeout=seconds + 60)
        total += json.loads(out.strip().splitlines()[-1])["published"]
    return total


def baseline(msgtype: str, kind: str, topics: list[str], hz: float, seconds: float, env: dict,
             events: bool = False) -> tuple[int, int]:
    flag = ["--events"] if events else []
    sub = subprocess.Popen([PY, str(HERE / "bare_sub.py"), *flag, msgtype, *topics], stdout=subprocess.PIPE,
                           text=True, env=env)
    assert json.loads(sub.stdout.readline())["ready"]
    published = run_publishers(kind, topics, hz, seconds, env)
    sub.send_signal(signal.SIGTERM)
    out, _ = sub.communicate(timeout=60)
    return published, sum(json.loads(out.strip().splitlines()[-1])["received"].values())


class Driver:
    """Lifecycle services and /diagnostics of the bridge, from this process."""

    def __init__(self) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray

        rclpy.init()
        self.rclpy = rclpy
        self.node = rclpy.create_node("bench_driver")
        self.received: dict[str, int] = {}
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._diag, 10)

    def _diag(self, msg) -> None:
        for st in msg.status:
            vals = {kv.key: kv.value for kv in st.values}
            self.received[st.name.partition(": ")[2]] = int(vals.get("received", 0))

    def transition(self, label: str, timeout: float = 120) -> bool:
        from lifecycle_msgs.msg import Transition
        from lifecycle_msgs.srv import ChangeState

        ids = {"configure": Transition.TRANSITION_CONFIGURE, "activate": Transition.TRANSITION_ACTIVATE,
               "deactivate": Transition.TRANSITION_DEACTIVATE}
        cli = self.node.create_client(ChangeState, "/mosaico_bridge/change_state")
        assert cli.wait_for_service(timeout_sec=30), "bridge lifecycle service not found"
        req = ChangeState.Request()
        req.transition.id = ids[label]
        fut = cli.call_async(req)
        self.rclpy.spin_until_future_complete(self.node, fut, timeout_sec=timeout)
        self.node.destroy_client(cli)
        return bool(fut.done() and fut.result().success)

    def settle(self, timeout: float = 60) -> None:
        """Spin until the bridge's received counters stop growing for 1 s (bounded)."""
        deadline, last, stable_since = time.monotonic() + timeout, None, time.monotonic()
        while time.monotonic() < deadline:
            self.rclpy.spin_once(self.node, timeout_sec=0.1)
            snap = dict(self.received)
            if snap != last:
                last, stable_since = snap, time.monotonic()
            elif time.monotonic() - stable_since > 1.0:
                return


def bridge_run(name, msgtype, kind, topics, hz, seconds, env, port, driver, logdir, server_root):
    log = open(logdir / f"bridge_{name}.log", "w")
    seq = f"bench_{name}"
    bridge = subprocess.Popen([PY, "-m", "mosaico_bridge.node", "--ros-args", "-p", "host:=127.0.0.1",
                               "-p", f"port:={port}", "-p", f"sequence_name:={seq}",
                               "-p", "topics:=[" + ",".join(f'"{t}"' for t in topics) + "]"],
                              stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        assert driver.transition("configure") and driver.transition("activate"), "bridge did not activate"
        driver.received.clear()
        published = run_publishers(kind, topics, hz, seconds, env)
        driver.settle()
        t0 = time.perf_counter()
        assert driver.transition("deactivate")
        deactivate_s = time.perf_counter() - t0
        cpu, rss = proc_cpu_rss(bridge.pid)
    finally:
        bridge.send_signal(signal.SIGINT)
        bridge.wait(timeout=60)
        log.close()
    counters = [json.loads(m) for m in re.findall(r"counters (\{.*\})", (logdir / f"bridge_{name}.log").read_text())]
    c = counters[-1]
    received = sum(v["received"] for v in c.values())
    written = sum(v["written"] for v in c.values())
    dropped = sum(v["dropped"] for v in c.values())
    lat_mean = max(v["latency_ns_mean"] for v in c.values()) / 1e6
    lat_max = max(v["latency_ns_max"] for v in c.values()) / 1e6
    e2e = None
    if kind in ("image", "imu"):
        e2e = publish_to_server_latency(port, seq, topics)
    return published, received, written, dropped, cpu, rss, lat_mean, lat_max, deactivate_s, e2e


def publish_to_server_latency(port: int, seq: str, topics: list[str]):
    """Mean of (row timestamp_ns = bridge receive time) - (header stamp = publish time), in ms."""
    from mosaico_bridge.client import MosaicoClient

    diffs = []
    with MosaicoClient.connect("127.0.0.1", port) as c:
        for t in topics:
            th = c.topic_handler(seq, t)
            if th is None:
                continue
            tbl = th.read()
            ts = tbl.column("timestamp_ns").to_pylist()
            hdr = tbl.column("header").to_pylist()
            diffs += [t_ns - (h["timestamp"]["seconds"] * 10**9 + h["timestamp"]["nanoseconds"])
                      for t_ns, h in zip(ts, hdr) if h]
    return (sum(diffs) / len(diffs) / 1e6) if diffs else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--only", default=",".join(SCENARIOS))
    args = ap.parse_args()
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               ROS_DOMAIN_ID=os.environ.get("ROS_DOMAIN_ID") or str(random.randint(1, 101)))
    os.environ.update(env)
    root = Path(tempfile.mkdtemp(prefix="bench_live_"))
    port = free_port()
    server = subprocess.Popen([str(Path(PY).parent / "mosaico_server"), "--root", str(root / "store"),
                               "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    driver = Driver()
    rows = []
    try:
        for name in args.only.split(","):
            kind, msgtype, topics, hz = SCENARIOS[name]
            pub_b, bare = baseline(msgtype, kind, topics, hz, args.seconds, env)
            _pub_e, bare_ev = baseline(msgtype, kind, topics, hz, args.seconds, env, events=True)
            res = bridge_run(name, msgtype, kind, topics, hz, args.seconds, env, port, driver, root, root / "store")
            rows.append((name, pub_b, bare, bare_ev, *res))
            print(f"done {name}", file=sys.stderr, flush=True)
    finally:
        server.terminate()
        server.wait(timeout=60)
        shutil.rmtree(root, ignore_errors=True)
    print(f"{args.seconds:g} s per run, {os.cpu_count()} CPUs; bare = bare rclpy subscriber (raw, reliable, KEEP_ALL) "
          "spinning the default executor; bare ev = the same with the EventsExecutor the bridge uses")
    hdr = ("scenario", "pub(bare)", "bare rx", "bare ev rx", "pub(brg)", "bridge rx", "written", "drop",
           "ratio", "ratio ev", "CPU s", "RSS MiB", "lat ms mean/max", "pub->rx ms", "deact s")
    print("  ".join(f"{h:>10}" for h in hdr))
    for (name, pub_b, bare, bare_ev, pub, rx, wr, drop, cpu, rss, lmean, lmax, deact, e2e) in rows:
        ratio = rx / bare if bare else float("nan")
        ratio_ev = rx / bare_ev if bare_ev else float("nan")
        print("  ".join(f"{v:>10}" for v in (
            name, pub_b, bare, bare_ev, pub, rx, wr, drop, f"{ratio:.2f}", f"{ratio_ev:.2f}", f"{cpu:.1f}", f"{rss:.0f}",
            f"{lmean:.0f}/{lmax:.0f}", "-" if e2e is None else f"{e2e:.1f}", f"{deact:.2f}")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
