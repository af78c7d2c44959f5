#!/usr/bin/env python3
"""Live recording by the bridge node beside a bare rclpy subscriber, same load, same run.

Scenarios (each --seconds long; publishers in their own processes, reliable QoS):
  2cam_imu   two 1920x1080 rgb8 Image topics at 30 Hz + sensor_msgs/Imu at 200 Hz
  1cam_full  one 1080p rgb8 Image topic at full rate
  4cam       four 1080p rgb8 Image topics at 30 Hz
  50small    50 small topics at 200 Hz each (TransformStamped, Imu, DiagnosticStatus)
  strings    a flood of std_msgs/String at full rate

Each scenario runs twice: into a bare subscriber alone (bare_sub.py --events: raw=True,
EventsExecutor, the QoS the bridge takes), then into the bridge alone, recording into a
server process whose root is on /dev/shm (``--root-dir``). Per topic: published, bare received, stored (rows
the server holds, from its FlightInfo; the SDK cross-checks one small topic), dropped
(the bridge's counter), ratio stored / bare, and rx/bare: the bridge's received counter / bare (what it took
from the rmw layer, stored or dropped at its memory budget). Per scenario: bridge peak RSS (VmHWM), CPU
seconds, receive → acknowledged latency p50 / p99 (the node's counters); and where the
machine's CPU went while the load was published: the share of all CPUs busy (/proc/stat),
the publishers' and the bare subscriber's CPU seconds, the bridge's and the server process's
CPU by thread name (rclpy's Python threads all show as ``python``; Fast DDS's as ``dds.*``,
gRPC's as ``event_engine`` / ``grpcpp_sync_ser``). On a small machine the bridge competes
with the load's own publishers for CPU, and Fast DDS loses large reliable samples to a
subscriber whose receive threads wait for a core (bench/bench_contention.py measures that).

    .venv/bin/python bench/bench_live.py [--seconds 10] [--only 2cam_imu,4cam] \
        [--server acks|mosaico_server|embedded] [--compression none|lz4|zstd]

``--server acks`` (default) runs test/ros_procs/ack_server.py; ``mosaico_server`` runs the
server's command line (``python -m mosaico_bridge.cli.server``); ``embedded`` gives the
bridge no host, so it runs the embedded server in its own process (the user's default;
its RSS and CPU are then part of the bridge's), and a server process started on the same
root after the bridge exits counts what was stored. All are this checkout's server, which
acknowledges every stored batch with a PutAck, so the latency is receive → acknowledged.
All run from this checkout, not from an installed copy.

Before the first scenario and after the last (unless ``--no-store-floor``), 3 GiB of plain
6 MiB writes into the root's filesystem give the storage's own MB/s per 512 MiB written, in
the same run: a recording cannot be stored faster than that. Each scenario with images then
prints the store's ceiling: the share of the bare subscriber's images that the better of the
two sustained rates could write in the run, plus what the memory budget holds at its end.
On a VM that hands freed memory back to its host (virtio-balloon free page reporting),
tmpfs pages the host has taken back cost a host fault each on first touch and write several
times slower than reused ones (``docs/live-path.md`` § The store's memory on a VM).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PY = sys.executable
sys.path.insert(0, str(REPO))

from live_load import MSGTYPES

from mosaico_bridge.client import DEFAULT_MAX_INFLIGHT_BYTES

#: bytes of one 1920x1080 rgb8 image's data (live_load.py)
IMAGE_BYTES = 1920 * 1080 * 3


def _small() -> list[tuple[str, str, float]]:
    kinds = ["tf", "imu", "status"]
    return [(kinds[i % 3], f"/small/{kinds[i % 3]}_{i}", 200.0) for i in range(50)]


#: name -> publisher processes, each a list of (kind, topic, Hz)
SCENARIOS: dict[str, list[list[tuple[str, str, float]]]] = {
    "2cam_imu": [[("image", "/cam0/image_raw", 30.0)], [("image", "/cam1/image_raw", 30.0)],
                 [("imu", "/imu/data", 200.0)]],
    "1cam_full": [[("image", "/cam0/image_raw", 0.0)]],
    "4cam": [[("image", f"/cam{i}/image_raw", 30.0)] for i in range(4)],
    "50small": [_small()],
    "strings": [[("string", "/chatter", 0.0)]],
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


def task_cpu(pid: int) -> dict[int, tuple[str, float, float]]:
    """{thread id: (name, user s, system s)} of a live process's threads (digits of the name
    folded, so the four ``mosaico-data-N_0`` threads share one name)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, tuple[str, float, float]] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            text = (task / "stat").read_text()
        except OSError:
            continue  # the thread ended
        name = re.sub(r"\d+", "N", text[text.index("(") + 1:text.rindex(")")])
        fields = text.rsplit(")", 1)[1].split()
        out[int(task.name)] = (name, int(fields[11]) / tick, int(fields[12]) / tick)
    return out


def thread_cpu(pid: int, since: dict[int, tuple[str, float, float]] | None = None) -> dict[str, tuple[float, float]]:
    """{thread name: (user s, system s)} summed over a live process's threads of that name;
    with ``since`` (an earlier :func:`task_cpu`), only what each thread used after it (a
    thread started since counts whole; one that ended is in no line)."""
    out: dict[str, tuple[float, float]] = {}
    for tid, (name, u, k) in task_cpu(pid).items():
        before = (since or {}).get(tid)
        u0, k0 = (before[1], before[2]) if before and before[0] == name else (0.0, 0.0)
        su, sk = out.get(name, (0.0, 0.0))
        out[name] = (su + u - u0, sk + k - k0)
    return out


def top_threads(cpu: dict[str, tuple[float, float]], n: int = 6) -> str:
    rows = sorted(cpu.items(), key=lambda kv: -(kv[1][0] + kv[1][1]))[:n]
    return ", ".join(f"{name} {u + k:.1f} s (sys {k:.1f})" for name, (u, k) in rows)


class MemoryMapSampler:
    """Reads ``/proc/PID/smaps`` of a running process every ``period_s`` on a thread and keeps
    the reading with the largest total Rss; :meth:`summary` sorts it by kind of mapping.

    Kinds: ``[heap]`` is glibc's main malloc arena (what the main thread and rmw allocate);
    anonymous mappings of 1 MiB or more are mostly the other threads' malloc arenas (64 MiB
    heaps, e.g. the mb-take thread's, which holds the messages in flight); the rest are thread
    stacks and small maps, shared libraries, and shared memory (Fast DDS segments in
    /dev/shm)."""

    def __init__(self, pid: int, period_s: float = 0.25) -> None:
        self.pid, self.period_s = pid, period_s
        self.best_kib = 0
        self.best: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _read(self) -> dict[str, int] | None:
        try:
            text = Path(f"/proc/{self.pid}/smaps").read_text()
        except OSError:
            return None
        kinds: dict[str, int] = {}
        kind = ""
        for line in text.splitlines():
            head = line.split(None, 5)
            if "-" in head[0] and not head[0].endswith(":"):
                start, end = (int(x, 16) for x in head[0].split("-"))
                name = head[5] if len(head) > 5 else ""
                kind = ("main malloc arena [heap]" if name == "[heap]"
                        else "shared memory /dev/shm" if name.startswith("/dev/shm")
                        else "libraries and files" if name.startswith("/")
                        else "anonymous maps >= 1 MiB (thread arenas)" if not name and end - start >= 1 << 20
                        else "stacks and small maps")
            elif head[0] == "Rss:":
                kinds[kind] = kinds.get(kind, 0) + int(head[1])
        return kinds

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            kinds = self._read()
            if kinds is None:
                return
            total = sum(kinds.values())
            if total > self.best_kib:
                self.best_kib, self.best = total, kinds

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def summary(self) -> str:
        parts = sorted(self.best.items(), key=lambda kv: -kv[1])
        return (f"{self.best_kib / 1024:.0f} MiB: "
                + ", ".join(f"{name} {kib / 1024:.0f}" for name, kib in parts if kib >= 1024))


def machine_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs since boot, from /proc/stat (idle + iowait count as idle)."""
    vals = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    return sum(vals) - idle, sum(vals)


def busy_share(t0: tuple[int, int], t1: tuple[int, int]) -> float:
    """Share of all CPUs busy between two machine_ticks() samples (1.0 = every core busy)."""
    return (t1[0] - t0[0]) / max(1, t1[1] - t0[1])


def _result_line(proc: subprocess.Popen, deadline: float) -> dict:
    """The JSON line a live_load.py process prints once it has published (bounded wait)."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"publisher {proc.args[4:]} printed no result in time")
        ready, _, _ = select.select([proc.stdout], [], [], left)
        if ready:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"publisher {proc.args[4:]} exited without a result")
            if line.startswith("{"):
                return json.loads(line)


def run_publishers(procs: list[list[tuple[str, str, float]]], seconds: float, env: dict) -> tuple[dict[str, int], float]:
    """({topic: published}, CPU seconds of all publisher processes while publishing).

    A publisher that has printed its result but does not exit within 15 s is killed: Fast DDS
    sometimes spins in ``destroy_node`` after a heavy run (a publisher of this bench, by PID)."""
    running = []
    for pubs in procs:
        args = [PY, str(HERE / "live_load.py"), "--seconds", str(seconds)]
        for kind, topic, hz in pubs:
            args += ["--pub", f"{kind}:{topic}:{hz:g}"]
        running.append(subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env=env))
    out: dict[str, int] = {}
    cpu = 0.0
    deadline = time.monotonic() + seconds + 90
    try:
        for p in running:
            last = _result_line(p, deadline)
            out.update(last["published"])
            cpu += last["cpu_s"]
    finally:
        for p in running:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                print(f"publisher {p.args[4:]} (pid {p.pid}) did not exit 15 s after publishing: killed",
                      file=sys.stderr, flush=True)
                p.kill()
                p.wait(timeout=30)
            p.stdout.close()
    return out, cpu


def topics_of(procs) -> dict[str, str]:
    return {topic: MSGTYPES[kind] for pubs in procs for kind, topic, _hz in pubs}


def baseline(procs, seconds: float, env: dict, sub_options=()) -> tuple[dict[str, int], dict[str, int], dict]:
    """(published, bare received, {"busy": machine busy share, "pub_cpu": publishers' CPU s,
    "cpu": the bare subscriber's CPU s, "hwm_mib": its peak RSS}); ``sub_options`` go to
    bare_sub.py before the topics (e.g. ``--gil-load 0.3``)."""
    args = [f"{t}={m}" for t, m in topics_of(procs).items()]
    sub = subprocess.Popen([PY, str(HERE / "bare_sub.py"), "--events", *sub_options, *args], stdout=subprocess.PIPE,
                           text=True, env=env)
    try:
        assert json.loads(sub.stdout.readline())["ready"]
        t0 = machine_ticks()
        published, pub_cpu = run_publishers(procs, seconds, env)
        busy = busy_share(t0, machine_ticks())
        time.sleep(1.0)  # let the last samples arrive (a baseline, not a test)
        sub.send_signal(signal.SIGTERM)
        out, _ = sub.communicate(timeout=60)
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.wait(timeout=30)
    last = json.loads(out.strip().splitlines()[-1])
    return published, last["received"], {"busy": busy, "pub_cpu": pub_cpu, "cpu": last["cpu_s"],
                                          "hwm_mib": last["hwm_kib"] / 1024}


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

    def transition(self, label: str, timeout: float = 300) -> bool:
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

    def wait_subscribed(self, log: Path, topics, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = log.read_text()
            if all(f"recording {t} " in text for t in topics):
                return
            self.rclpy.spin_once(self.node, timeout_sec=0.1)
        raise TimeoutError("bridge did not subscribe to every topic")

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


def stored_rows(port: int, seq: str, topics) -> dict[str, int]:
    from mosaico_bridge.client import MosaicoClient

    out = {}
    with MosaicoClient.connect("127.0.0.1", port) as c:
        for t in topics:
            th = c.topic_handler(seq, t)
            out[t] = th.row_count if th is not None else 0
    return out


def sdk_rows(port: int, seq: str, topic: str) -> int:
    import mosaicolabs

    with mosaicolabs.MosaicoClient.connect("127.0.0.1", port) as sdk:
        th = sdk.topic_handler(seq, topic)
        return sum(1 for _ in th.get_data_streamer()) if th is not None else 0


def start_server(cmd: list[str], root: Path, port: int) -> subprocess.Popen:
    """A server process on ``root``, returned once it answers (bounded wait)."""
    from mosaico_bridge.client import MosaicoClient

    server = subprocess.Popen([*cmd, "--root", str(root), "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    deadline = time.monotonic() + 60
    while True:
        try:
            MosaicoClient.connect("127.0.0.1", port, timeout=1.0).close()
            return server
        except (ConnectionError, OSError):
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server on {root} did not start") from None


def sustained(rates: list[float]) -> float:
    """The store floor's sustained MB/s: the median of its second half (the first blocks may
    reuse pages just freed by a deleted sequence; on a VM those are much faster than pages
    the host has taken back)."""
    tail = sorted(rates[len(rates) // 2:])
    return tail[len(tail) // 2] if tail else float("nan")


def store_ceiling(bare: dict[str, int], procs, seconds: float, floor_mbps: float, budget_bytes: int) -> float | None:
    """Upper bound of stored ÷ bare the store's filesystem allows for a scenario's images:
    ``floor_mbps`` for ``seconds`` plus what the memory budget holds at the end, over the
    bytes of the images the bare subscriber received (None without images). An upper bound:
    the floor was measured by one writer with a core to itself."""
    kinds = {t: k for p in procs for k, t, _ in p}
    image_bytes = sum(n for t, n in bare.items() if kinds.get(t) == "image") * IMAGE_BYTES
    if not image_bytes:
        return None
    return min(1.0, (floor_mbps * 1e6 * seconds + budget_bytes) / image_bytes)


def store_floor(directory: Path, total_bytes: int = 4 << 30, block: int = 6 << 20, step: int = 512 << 20) -> list[float]:
    """MB/s of plain 6 MiB writes into a new file in ``directory`` (the store's filesystem),
    per ``step`` bytes written: what the storage gives any writer, measured in the same run."""
    buf = os.urandom(block)
    rates, path = [], directory / "store_floor.bin"
    try:
        with open(path, "wb", buffering=0) as f:
            written, t0 = 0, time.perf_counter()
            while written < total_bytes:
                f.write(buf)
                written += block
                if written % step < block:
                    now = time.perf_counter()
                    rates.append(step / (now - t0) / 1e6)
                    t0 = now
    finally:
        path.unlink(missing_ok=True)
    return rates


def warm_pages(directory: Path, total_bytes: int) -> None:
    """Write ``total_bytes`` into a file in ``directory`` and delete it, so that the store's
    next writes land on pages just freed, which the VM's host has not taken back yet (a
    diagnostic: it shows how much of a run the store's first touch of new memory costs)."""
    if total_bytes > 0:
        store_floor(directory, total_bytes)  # the same writes and delete; its rates are not needed here


#: scenario -> MemoryMapSampler.summary() of its bridge run (--smaps)
MEMORY_MAPS: dict[str, str] = {}


def bridge_run(name, procs, seconds, env, target, driver, logdir, compression, profile: bool, params=(),
               profile_args=(), perf_record: bool = False, warm_bytes: int = 0, bridge_env=(), smaps: bool = False):
    """One bridge process recording ``procs``' load; ``target`` its server parameters; ``bridge_env``
    ``NAME=VALUE`` strings set in the bridge's environment only; ``smaps``: sample its memory
    map while it records (:class:`MemoryMapSampler`)."""
    topics = topics_of(procs)
    log_path = logdir / f"bridge_{name}.log"
    log = open(log_path, "w")  # noqa: SIM115 - the bridge process writes to it; closed after it exits
    seq = f"bench_{name}"
    bridge = subprocess.Popen([PY, "-m", "mosaico_bridge.node", "--ros-args", *[a for p in target for a in ("-p", p)],
                               "-p", f"sequence_name:={seq}", "-p", f"compression:={compression}",
                               "-p", "spool_dir:=" + str(logdir / "spool"),
                               "-p", "topics:=[" + ",".join(f'"{t}"' for t in topics) + "]",
                               *[a for p in params for a in ("-p", p)]],
                              stdout=log, stderr=subprocess.STDOUT,
                              env={**env, **dict(e.split("=", 1) for e in bridge_env)}, cwd=REPO)
    spy = None
    sampler = MemoryMapSampler(bridge.pid) if smaps else None
    try:
        assert driver.transition("configure") and driver.transition("activate"), "bridge did not activate"
        warm_pages(logdir, warm_bytes)
        if profile:
            spy = subprocess.Popen([str(Path(PY).parent / "py-spy"), "record", "--pid", str(bridge.pid), "--format",
                                    "raw", "--threads", "--idle", "--nonblocking", *profile_args, "-o", str(logdir / f"profile_{name}.txt")],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        t0 = machine_ticks()
        perf = (subprocess.Popen(["perf", "record", "-a", "-g", "-F", "499", "-o", str(logdir / f"perf_{name}.data")],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                if perf_record else None)
        published, pub_cpu = run_publishers(procs, seconds, env)
        busy = busy_share(t0, machine_ticks())
        if perf is not None:
            perf.send_signal(signal.SIGINT)
            perf.wait(timeout=60)
        driver.settle()
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=60)
        threads = thread_cpu(bridge.pid)  # before deactivate, which ends the mb-take thread
        if sampler is not None:
            sampler.stop()
            MEMORY_MAPS[name] = sampler.summary()
        assert driver.transition("deactivate")
        cpu, rss = proc_cpu_rss(bridge.pid)
    finally:
        bridge.send_signal(signal.SIGINT)
        bridge.wait(timeout=120)
        log.close()
    counters = [json.loads(m) for m in re.findall(r"counters (\{.*\})", log_path.read_text())][-1]
    peaks = re.findall(r"max_inflight_bytes \d+: \d+ bytes in flight, peak (\d+)", log_path.read_text())
    return published, counters, cpu, rss, int(peaks[-1]) / 2**20 if peaks else float("nan"), (busy, pub_cpu), threads


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--only", default=",".join(SCENARIOS))
    ap.add_argument("--server", choices=["acks", "mosaico_server", "embedded"], default="acks")
    ap.add_argument("--compression", choices=["none", "lz4", "zstd"], default="none")
    ap.add_argument("--param", action="append", default=[], metavar="NAME:=VALUE",
                    help="extra bridge parameter (repeatable), e.g. workers:=1")
    ap.add_argument("--profile", action="store_true", help="py-spy record the bridge (raw, --threads, --idle) per scenario")
    ap.add_argument("--profile-args", default="", metavar="ARGS",
                    help="more py-spy record arguments for --profile, e.g. '--gil' (only threads holding the GIL)")
    ap.add_argument("--perf", action="store_true",
                    help="perf record -a -g the whole machine while the bridge run publishes (perf_<scenario>.data "
                         "in the kept log directory; implies --keep)")
    ap.add_argument("--keep", action="store_true", help="keep the logs and profiles (printed path)")
    ap.add_argument("--no-store-floor", action="store_true",
                    help="skip the closing measurement of plain 6 MiB writes into the store's filesystem")
    ap.add_argument("--warm-pages", type=float, default=0, metavar="GIB",
                    help="diagnostic: before each bridge run publishes, write and delete GIB GiB in the store's "
                         "filesystem, so the store's writes land on pages the VM's host still backs")
    ap.add_argument("--root-dir", type=Path, default=None, metavar="DIR",
                    help="the directory in which the run's server root, logs and store floor files are made "
                         "(default /dev/shm, else the system's temporary directory; for example a tmpfs "
                         "mounted with huge=within_size, "
                         "docs/live-path.md § The store's memory on a VM)")
    ap.add_argument("--server-nice", type=int, default=0, metavar="N",
                    help="diagnostic: run the server process (mosaico_server, acks) at nice N")
    ap.add_argument("--bridge-env", action="append", default=[], metavar="NAME=VALUE",
                    help="set NAME=VALUE in the bridge process's environment only (repeatable), e.g. "
                         "FASTDDS_BUILTIN_TRANSPORTS=UDPv4")
    ap.add_argument("--smaps", action="store_true",
                    help="diagnostic: read the bridge's /proc/PID/smaps every 0.25 s while it records and "
                         "print its peak RSS by kind of mapping (main malloc arena, thread arenas, libraries, ...)")
    args = ap.parse_args()
    args.keep = args.keep or args.perf
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               ROS_DOMAIN_ID=os.environ.get("ROS_DOMAIN_ID") or str(random.randint(1, 101)))
    os.environ.update(env)
    if args.root_dir is None:
        args.root_dir = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
    elif not args.root_dir.is_dir():
        ap.error(f"--root-dir {args.root_dir}: not a directory")
    root = Path(tempfile.mkdtemp(prefix="bench_live_", dir=args.root_dir))
    store = root / "store"
    port = free_port()
    cmd = ([PY, str(REPO / "test" / "ros_procs" / "ack_server.py")] if args.server == "acks"
           else [PY, "-m", "mosaico_bridge.cli.server"])
    if args.server_nice:
        cmd = ["nice", "-n", str(args.server_nice), *cmd]
    embedded = args.server == "embedded"
    # embedded: the bridge runs the server in its own process (no host); a server process
    # on the same root counts the rows once the bridge has exited
    server = None if embedded else start_server(cmd, store, port)
    target = [f"embedded_root:={store}"] if embedded else ["host:=127.0.0.1", f"port:={port}"]
    driver = Driver()
    results = []
    floor_before, floor = [], []
    try:
        if not args.no_store_floor:
            floor_before = store_floor(root, 3 << 30)
        for name in args.only.split(","):
            procs = SCENARIOS[name]
            pub_b, bare, bare_info = baseline(procs, args.seconds, env)
            server_cpu0 = proc_cpu_rss(server.pid)[0] if server else 0.0
            server_tasks0 = task_cpu(server.pid) if server else {}
            res = bridge_run(name, procs, args.seconds, env, target, driver, root, args.compression, args.profile,
                             args.param, args.profile_args.split(), args.perf, int(args.warm_pages * (1 << 30)),
                             args.bridge_env, args.smaps)
            server_cpu = proc_cpu_rss(server.pid)[0] - server_cpu0 if server else None  # None: embedded
            server_threads = thread_cpu(server.pid, since=server_tasks0) if server else {}
            reader = start_server(cmd, store, port) if embedded else server
            try:
                stored = stored_rows(port, f"bench_{name}", topics_of(procs))
                sdk_check = None
                if name == "50small":
                    t = next(iter(topics_of(procs)))
                    sdk_check = (t, sdk_rows(port, f"bench_{name}", t), stored[t])
                from mosaico_bridge.client import MosaicoClient

                with MosaicoClient.connect("127.0.0.1", port) as c:  # free /dev/shm for the next scenario
                    c.sequence_delete(f"bench_{name}")
            finally:
                if embedded:
                    reader.terminate()
                    reader.wait(timeout=60)
            pub, counters, cpu, rss, budget_peak, (busy, pub_cpu), threads = res
            results.append((name, pub_b, bare, (pub, counters, stored, cpu, rss, budget_peak), sdk_check, server_cpu,
                            (bare_info, busy, pub_cpu), (threads, server_threads)))
            print(f"done {name}", file=sys.stderr, flush=True)
        floor = [] if args.no_store_floor else store_floor(root, 3 << 30)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=60)
        if args.keep:
            print(f"logs in {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    print(f"{args.seconds:g} s per run, {os.cpu_count()} CPUs, server {args.server}, compression {args.compression}, "
          f"bridge parameters {args.param or 'default'}; "
          + (f"{args.warm_pages:g} GiB written and deleted in the store's filesystem before each bridge run; "
             if args.warm_pages else "")
          + (f"server process at nice {args.server_nice}; " if args.server_nice else "")
          + (f"bridge environment {' '.join(args.bridge_env)}; " if args.bridge_env else "")
          + "bare = bare rclpy subscriber (raw, reliable, KEEP_ALL, EventsExecutor), run alone before the bridge")
    floor_mbps = max((sustained(f) for f in (floor_before, floor) if f), default=None)
    for label, rates in (("before the runs", floor_before), ("after them", floor)):
        if rates:
            print(f"store floor {label}: plain 6 MiB writes into {root.parent}, MB/s per 512 MiB written: "
                  + ", ".join(f"{r:,.0f}" for r in rates) + f"; sustained {sustained(rates):,.0f} "
                  "(2x1080p@30 rgb8 is 373 MB/s)")
    budget_bytes = next((int(p.split(":=", 1)[1]) for p in args.param if p.startswith("max_inflight_bytes:=")),
                        DEFAULT_MAX_INFLIGHT_BYTES)
    for name, pub_b, bare, (pub, c, stored, cpu, rss, budget_peak), sdk_check, server_cpu, busy, threads in results:
        lat50 = max((v["latency_ns_p50"] for v in c.values()), default=0) / 1e6
        lat99 = max((v["latency_ns_p99"] for v in c.values()), default=0) / 1e6
        tot_bare = sum(bare.values())
        tot_stored = sum(stored.values())
        server_note = f"server CPU {server_cpu:.1f} s" if server_cpu is not None else "server in the bridge process"
        ceiling = store_ceiling(bare, SCENARIOS[name], args.seconds, floor_mbps, budget_bytes) if floor_mbps else None
        ceiling_note = (f"; the store floor allows at most {ceiling:.2f} of the bare subscriber's images"
                        if ceiling is not None else "")
        print(f"\n== {name}: stored/bare {tot_stored / tot_bare if tot_bare else float('nan'):.2f} "
              f"(stored {tot_stored}, bare {tot_bare}); bridge peak RSS {rss:.0f} MiB (budget peak {budget_peak:.0f} MiB), CPU {cpu:.1f} s "
              f"({server_note}); "
              f"receive->ack latency p50 {lat50:.0f} ms, p99 {lat99:.0f} ms (worst topic){ceiling_note}")
        bare_info, busy_brg, pub_cpu = busy
        print(f"   while publishing: bare run: machine busy {bare_info['busy']:.0%} of {os.cpu_count()} CPUs, "
              f"publishers' CPU {bare_info['pub_cpu']:.1f} s, bare subscriber's CPU {bare_info['cpu']:.1f} s and "
              f"peak RSS {bare_info['hwm_mib']:.0f} MiB; bridge run: machine busy {busy_brg:.0%}, publishers' CPU "
              f"{pub_cpu:.1f} s")
        print(f"   bridge CPU by thread (threads alive before deactivate): {top_threads(threads[0])}")
        if name in MEMORY_MAPS:
            print(f"   bridge memory at its peak reading (smaps): {MEMORY_MAPS[name]}")
        if threads[1]:
            print(f"   server CPU by thread (threads alive at the end; a DoPut handler thread that ended is "
                  f"only in the total): {top_threads(threads[1])}")
        if sdk_check:
            print(f"   SDK read-back of {sdk_check[0]}: {sdk_check[1]} rows (server says {sdk_check[2]})")
        rows = sorted(stored) if len(stored) <= 6 else []
        if rows:
            print(f"   {'topic':<20}{'pub(bare)':>10}{'bare rx':>9}{'pub(brg)':>9}{'brg rx':>8}{'stored':>8}{'dropped':>8}"
                  f"{'ratio':>7}{'rx/bare':>8}{'p50 ms':>8}{'p99 ms':>8}")
        for t in rows:
            v = c.get(t, {})
            ratio = stored[t] / bare[t] if bare.get(t) else float("nan")
            rx_ratio = v.get("received", 0) / bare[t] if bare.get(t) else float("nan")
            print(f"   {t:<20}{pub_b.get(t, 0):>10}{bare.get(t, 0):>9}{pub.get(t, 0):>9}{v.get('received', 0):>8}{stored[t]:>8}"
                  f"{v.get('dropped', 0):>8}{ratio:>7.2f}{rx_ratio:>8.2f}{v.get('latency_ns_p50', 0) / 1e6:>8.0f}"
                  f"{v.get('latency_ns_p99', 0) / 1e6:>8.0f}")
        if not rows:
            dropped = sum(v["dropped"] for v in c.values())
            ratios = [stored[t] / bare[t] for t in stored if bare.get(t)]
            print(f"   {len(stored)} topics: published(bare) {sum(pub_b.values())}, published(bridge) "
                  f"{sum(pub.values())}, dropped {dropped}, per-topic ratio min {min(ratios):.2f} "
                  f"max {max(ratios):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
