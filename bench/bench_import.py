#!/usr/bin/env python3
"""Bag import data path: ``bag_import`` against its floors and the SDK, in one run.

Every bag is handled by five child processes, one after the other (the order rotates
each round), and each is measured alone (wall time, CPU time of the child, peak RSS):

* ``copy``: ``cp -r`` of the bag's files into the work directory (the physical floor;
  the bag is in the page cache and the copy is not fsynced, so this is memory speed);
* ``read``: rosbags ``AnyReader.messages()`` only (serialized messages, no decoding);
* ``decode``: the same plus ``AnyReader.deserialize`` of every message;
* ``bag_import``: ``python -m mosaico_bridge.cli.bag_import`` from this checkout into a
  ``mosaico_server`` process (``python -m mosaico_bridge.cli.server``, same checkout);
* ``ros_injector``: the SDK's ``mosaicolabs.ros_injector`` console script into the same
  server.

Bags: the shared bags (``data/bags`` of ``--shared``: default ``$MOSAICO_SHARED``, else the
``shared`` folder beside this repository), a ~50k-message Imu + Odometry ROS 2 MCAP made
from the shared husky bag and a large camera + lidar ROS 2 MCAP (``bench/make_bags.py``
says how both are made). Figures: messages/s, MB/s of serialized message data (1 MB =
1e6 bytes), peak RSS (MiB) from each child's own ``VmHWM`` in ``/proc/<pid>/status``
(``ru_maxrss`` of a forked child would include this process). For the importers also the
bytes the server's TCP connections received (``bytes_received`` of ``ss -tin``, polled
every 0.1 s: the bytes on the wire) and the growth of the store root (apparent size of its
files). ``bag_import`` sends to the bench's server process over Flight (as ``ros_injector``
does); ``bag_import_embedded`` is the user's default, the embedded server in bag_import's own
process (in-process data path, no wire; its RSS includes the server). A peak RSS of '-'
means the child exited before the first poll.

    .venv/bin/python bench/bench_import.py [--rounds 1] [--seconds 20 | --double]
        [--sets shared,imu_odom,large] [--modes copy,read,decode,bag_import,bag_import_embedded,ros_injector]
        [--workdir DIR] [--keep]

Generated bags go to ``--workdir`` (default: a temporary directory on /dev/shm when it has
room for three times the large bag, else on /tmp) and are deleted at the end unless
``--keep``; an existing bag there is reused.
"""

from __future__ import annotations

import argparse
import compileall
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MODES = ("copy", "read", "decode", "bag_import", "bag_import_embedded", "ros_injector")
LARGE_BYTES_PER_S = 197e6  # make_bags.write_large_bag, serialized bytes per second of recording
sys.path.insert(0, str(Path(__file__).resolve().parent))


# ---------------------------------------------------------------- children
def child_main(mode: str, bag: Path) -> int:
    """``--child read|decode BAG``: iterate the bag; print ``messages serialized_bytes``."""
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    n = size = 0
    with AnyReader([bag], default_typestore=get_typestore(Stores.ROS2_HUMBLE)) as r:
        if mode == "read":
            for _c, _t, raw in r.messages():
                n += 1
                size += len(raw)
        else:
            deserialize = r.deserialize
            for c, _t, raw in r.messages():
                deserialize(raw, c.msgtype)
                n += 1
                size += len(raw)
    print(n, size)
    return 0


@dataclass
class Run:
    """One child process: wall and CPU seconds, peak RSS in MiB, error line or ''."""

    wall: float
    cpu: float
    rss_mib: float
    error: str = ""
    stdout: str = ""
    wire_bytes: int | None = None
    store_bytes: int | None = None


def run_child(cmd: list[str], *, cwd: Path = REPO, env: dict[str, str] | None = None,
              rss_limit_mib: float = 0, timeout: float = 0) -> Run:
    """Run ``cmd``; measure it alone. Peak RSS: the child's VmHWM polled every 20 ms.

    The child is killed (by its PID) above ``rss_limit_mib`` or after ``timeout`` s (0: never);
    that run then carries an error.
    """
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    peak = [0]
    killed = [""]

    def poll() -> None:
        status = Path(f"/proc/{proc.pid}/status")
        while True:
            try:
                text = status.read_text()
            except OSError:
                return
            m = re.search(r"^VmHWM:\s+(\d+)", text, re.MULTILINE)
            if m is None:  # zombie: exited
                return
            peak[0] = max(peak[0], int(m.group(1)))
            elapsed = time.perf_counter() - t0
            if not killed[0] and ((rss_limit_mib and peak[0] / 1024 > rss_limit_mib) or (timeout and elapsed > timeout)):
                killed[0] = (f"killed at {peak[0] / 1024:.0f} MiB peak RSS" if rss_limit_mib and peak[0] / 1024 > rss_limit_mib
                             else f"killed after {elapsed:.0f} s")
                proc.send_signal(signal.SIGKILL)
            time.sleep(0.02)

    out: list[bytes] = []
    err: list[bytes] = []
    readers = [threading.Thread(target=lambda s=s, b=b: b.append(s.read()), daemon=True)  # type: ignore[misc]
               for s, b in ((proc.stdout, out), (proc.stderr, err))]
    watcher = threading.Thread(target=poll, daemon=True)
    for t in (watcher, *readers):
        t.start()
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    watcher.join(timeout=1)
    for t in readers:
        t.join(timeout=5)
    stdout = b"".join(out).decode(errors="replace")
    stderr = b"".join(err).decode(errors="replace").strip()
    error = killed[0]
    if not error and os.waitstatus_to_exitcode(status) != 0:
        text = " ".join((stderr or stdout).split())
        m = list(re.finditer(r"\w*(Error|Exception|error):", text))
        error = (text[m[-1].start():] if m else text[-160:] or f"exit status {os.waitstatus_to_exitcode(status)}")[:200]
    return Run(wall, usage.ru_utime + usage.ru_stime, peak[0] / 1024, error, stdout)


# ---------------------------------------------------------------- server
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree_bytes(root: Path) -> int:
    """Apparent size in bytes of all files under ``root``."""
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total


class WireMeter:
    """Bytes received by the server's TCP connections on ``port`` while running.

    Polls ``ss -tin`` (``bytes_received`` of each connection's tcp_info) every ``period`` s
    and keeps each connection's last value; data of the last ``period`` before a connection
    closes can be missed, so this is a lower bound (exact for long transfers to ~0.1 s).
    """

    def __init__(self, port: int, period: float = 0.1) -> None:
        self.port, self.period = port, period
        self.seen: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while True:
            out = subprocess.run(["ss", "-tinH", f"( sport = :{self.port} )"], check=False, capture_output=True, text=True).stdout
            peer = ""
            for line in out.splitlines():
                if not line[:1].isspace():
                    fields = line.split()
                    peer = fields[4] if len(fields) > 4 else ""
                elif m := re.search(r"bytes_received:(\d+)", line):
                    self.seen[peer] = max(self.seen.get(peer, 0), int(m.group(1)))
            if self._stop.wait(self.period):
                return

    def stop(self) -> int:
        """Stop polling; total bytes received by the server."""
        self._stop.set()
        self._thread.join()
        return sum(self.seen.values())


class Server:
    """A ``mosaico_server`` process of this checkout on ``root`` and a free port."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mosaico_bridge.cli.server", "--root", str(root), "--port", str(self.port),
             "--log-level", "WARNING"],
            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"mosaico_server exited with status {self.proc.returncode}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            if time.monotonic() > deadline:
                self.stop()
                raise SystemExit("mosaico_server did not listen within 30 s")
            time.sleep(0.1)

    def delete_sequence(self, name: str) -> None:
        """Free the disk of a measured sequence (best effort: a failure only costs disk)."""
        try:
            from mosaico_bridge.client import MosaicoClient

            with MosaicoClient.connect("127.0.0.1", self.port, timeout=20) as client:
                client.sequence_delete(name)
        except Exception as exc:  # noqa: BLE001 - benchmark top level: keep measuring
            print(f"  (could not delete sequence {name}: {exc})", file=sys.stderr)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# ---------------------------------------------------------------- bags
@dataclass
class Bag:
    name: str
    path: Path
    note: str = ""
    messages: int = 0
    serialized: int = 0
    runs: dict[str, list[Run]] = field(default_factory=dict)


def shared_bags(shared: Path) -> list[Bag]:
    """The shared bags, from the "Open with:" lines of ``data/bags/README.md``."""
    base = shared / "data/bags"
    readme = base / "README.md"
    if not readme.exists():
        raise SystemExit(f"shared bags not found: {readme} (give --shared or $MOSAICO_SHARED)")
    rels = re.findall(r"Open with:\s*`([^`]+)`", readme.read_text())
    return [Bag(rel.split("/")[0], base / rel) for rel in rels if (base / rel).exists()]


def pick_workdir(need_bytes: float) -> Path:
    """/dev/shm when it has room for ``need_bytes`` three times over, else /tmp."""
    shm = Path("/dev/shm")
    if shm.is_dir() and shutil.disk_usage(shm).free > 3 * need_bytes:
        return Path(tempfile.mkdtemp(prefix="bench_import_", dir=shm))
    return Path(tempfile.mkdtemp(prefix="bench_import_", dir="/tmp"))


def generated_bags(sets: set[str], workdir: Path, shared: Path, seconds: float, messages: int) -> list[Bag]:
    import make_bags

    bags = []
    if "imu_odom" in sets:
        husky = shared / "data/bags/ros1_husky_imu_odom_gps/husky_imu_odom_gps.bag"
        out = workdir / f"imu_odom_{messages}"
        t = time.perf_counter()
        path = make_bags.mcap_file(out) if out.exists() else make_bags.write_imu_odom_bag(out, husky, messages)
        bags.append(Bag(out.name, path, f"husky Imu+Odometry repeated to {messages} msgs, ROS 2 CDR MCAP"))
        print(f"bag {path} ready in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    if "large" in sets:
        out = workdir / f"large_{seconds:g}s"
        t = time.perf_counter()
        path = make_bags.mcap_file(out) if out.exists() else make_bags.write_large_bag(out, seconds)
        bags.append(Bag(out.name, path, f"{seconds:g} s of 1080p rgb8 Image 30 Hz, 65k-pt PointCloud2 10 Hz, "
                                        "Imu 200 Hz, TF 50 Hz; ROS 2 CDR MCAP"))
        print(f"bag {path} ready in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    return bags


# ---------------------------------------------------------------- measuring
def sdk_bag_path(path: Path) -> Path:
    """What ros_injector is given: it opens files only, so a rosbag2 directory holding a single
    .mcap / .db3 becomes that file; split bags stay directories (and fail there)."""
    if path.is_dir():
        files = [f for f in path.iterdir() if f.suffix in (".mcap", ".db3")]
        if len(files) == 1:
            return files[0]
    return path


def measure(bag: Bag, mode: str, tag: str, server: Server, workdir: Path, env: dict[str, str],
            args: argparse.Namespace) -> Run:
    if mode == "copy":
        dest = workdir / f"copy_{tag}"
        run = run_child(["cp", "-r", str(bag.path), str(dest)])
        shutil.rmtree(dest, ignore_errors=True) if dest.is_dir() else dest.unlink(missing_ok=True)
        return run
    if mode in ("read", "decode"):
        run = run_child([sys.executable, str(Path(__file__).resolve()), "--child", mode, str(bag.path)], env=env)
        if not run.error and not bag.messages:
            bag.messages, bag.serialized = (int(x) for x in run.stdout.split()[-2:])
        return run
    seq = f"{mode}_{tag}"
    bag_import = [sys.executable, "-m", "mosaico_bridge.cli.bag_import", str(bag.path), "--sequence", seq,
                  "--no-progress"]
    if mode == "bag_import_embedded":  # the user's default: no host, the server in the same process
        root = workdir / f"embedded_{tag}"
        run = run_child([*bag_import, "--root", str(root)], env=env, rss_limit_mib=args.rss_limit_mib,
                        timeout=args.timeout)
        run.store_bytes = tree_bytes(root)
        shutil.rmtree(root, ignore_errors=True)
        return run
    if mode == "bag_import":
        cmd = [*bag_import, "--host", "127.0.0.1", "--port", str(server.port)]
    else:
        cmd = [str(BIN / "mosaicolabs.ros_injector"), str(sdk_bag_path(bag.path)), "--name", seq, "--host", "127.0.0.1",
               "--port", str(server.port), "--log", "ERROR"]
    before_store = tree_bytes(server.root)
    meter = WireMeter(server.port) if shutil.which("ss") else None
    run = run_child(cmd, env=env, rss_limit_mib=args.rss_limit_mib, timeout=args.timeout)
    run.wire_bytes = meter.stop() if meter else None
    run.store_bytes = tree_bytes(server.root) - before_store
    server.delete_sequence(seq)
    return run


def fmt_run(bag: Bag, mode: str, runs: list[Run], ratio: float | None) -> str:
    ok = [r for r in runs if not r.error]
    if not ok:
        return f"  {mode:<20}failed: {runs[0].error}"
    wall = statistics.median(r.wall for r in ok)
    cpu = statistics.median(r.cpu for r in ok)
    rss = max(r.rss_mib for r in ok)
    line = (f"  {mode:<20}{wall:>9.2f}{bag.messages / wall:>12,.0f}{bag.serialized / wall / 1e6:>9.1f}"
            f"{cpu:>8.2f}{(f'{rss:.0f}' if rss else '-'):>9}")
    line += f"{ratio:>10.2f}x" if ratio else f"{'':>11}"
    if ok[0].store_bytes is not None:
        wire = f"{ok[0].wire_bytes / 1e6:.1f}" if ok[0].wire_bytes is not None else "n/a"
        line += f"{wire:>10}{ok[0].store_bytes / 1e6:>10.1f}"
    return line


def median_wall(bag: Bag, mode: str) -> float | None:
    ok = [r.wall for r in bag.runs.get(mode, []) if not r.error]
    return statistics.median(ok) if ok else None


def report(bags: list[Bag], modes: list[str], rounds: int) -> None:
    print(f"\n{rounds} round(s), {os.cpu_count()} CPUs; medians of wall/CPU, max of peak RSS; "
          "'x bag_import' = this mode's wall / bag_import's wall (>1: bag_import is faster)")
    print(f"  {'mode':<20}{'wall s':>9}{'msg/s':>12}{'MB/s':>9}{'CPU s':>8}{'RSS MiB':>9}"
          f"{'x bag_imp':>11}{'wire MB':>10}{'store MB':>10}")
    for bag in bags:
        print(f"{bag.name}: {bag.messages:,} msgs, {bag.serialized / 1e6:,.1f} MB serialized"
              + (f"  ({bag.note})" if bag.note else ""))
        ours = median_wall(bag, "bag_import")
        for mode in modes:
            if mode in bag.runs:
                w = median_wall(bag, mode)
                print(fmt_run(bag, mode, bag.runs[mode], w / ours if ours and w and mode != "bag_import" else None))
    print("\nratios (throughput of bag_import ÷ throughput of the other, same bag, same run):")
    by_name = {b.name: b for b in bags}
    for bag in bags:
        ours = median_wall(bag, "bag_import")
        if ours is None:
            continue
        parts = []
        for mode in ("decode", "read", "copy", "ros_injector"):
            w = median_wall(bag, mode)
            if w is not None:
                parts.append(f"÷{mode} {w / ours:.2f}x")
        print(f"  {bag.name:<28}" + "  ".join(parts))
    print("\nheadline (issue 'Import data path'):")
    imu = next((b for n, b in by_name.items() if n.startswith("imu_odom_")), None)
    large = next((b for n, b in by_name.items() if n.startswith("large_")), None)

    def ratio(bag: Bag | None, other: str, ours_mode: str = "bag_import") -> str:
        if bag is None:
            return "n/a"
        ours, w = median_wall(bag, ours_mode), median_wall(bag, other)
        return f"{w / ours:.2f}x" if ours and w else "n/a"

    print(f"  bag_import ÷ rosbags decode-only, {imu.name if imu else 'imu_odom'}: {ratio(imu, 'decode')}"
          f" (embedded server: {ratio(imu, 'decode', 'bag_import_embedded')})"
          "   (before: 0.38x; target >= 1.0x, aim 2x)")
    print(f"  bag_import ÷ ros_injector, {imu.name if imu else 'imu_odom'}: {ratio(imu, 'ros_injector')}"
          f"; husky bag: {ratio(by_name.get('ros1_husky_imu_odom_gps'), 'ros_injector')}   (before: 14x; target >= 30x)")
    for ours_mode in ("bag_import", "bag_import_embedded"):
        if large is None or not median_wall(large, ours_mode):
            continue
        ok = [r for r in large.runs[ours_mode] if not r.error]
        wall = median_wall(large, ours_mode) or 0
        print(f"  {ours_mode} peak RSS, {large.name}: {max(r.rss_mib for r in ok):.0f} MiB"
              "   (before: 772-2,015 MiB; target <= 300 MiB)")
        print(f"  {ours_mode} throughput, {large.name}: {large.serialized / wall / 1e6:.0f} MB/s"
              "   (before: 174-200 MB/s; target >= 300 MB/s)")
        r = ok[0]
        wire = (f"{(r.wire_bytes or 0) / 1e6:,.0f} MB received by the server's TCP connections (wire)"
                if ours_mode == "bag_import" else "no wire (in-process)")
        print(f"  {ours_mode} on {large.name}: {large.serialized / 1e6:,.0f} MB serialized -> {wire}, "
              f"store root +{(r.store_bytes or 0) / 1e6:,.0f} MB")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--child", choices=["read", "decode"], help=argparse.SUPPRESS)
    ap.add_argument("bag", nargs="?", type=Path, help="only this bag (besides --sets)")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--sets", default="shared,imu_odom,large",
                    help="comma-separated: shared, imu_odom, large (default all); 'none' with BAG for that bag only")
    ap.add_argument("--modes", default=",".join(MODES), help=f"comma-separated subset of {','.join(MODES)}")
    ap.add_argument("--seconds", type=float, default=20.0, help="length of the large bag in s (default 20 ≈ 3.9 GB)")
    ap.add_argument("--double", action="store_true", help="large bag twice as long (40 s ≈ 7.9 GB)")
    ap.add_argument("--messages", type=int, default=50_000, help="messages of the Imu+Odometry bag (default 50000)")
    ap.add_argument("--shared", type=Path, default=Path(os.environ.get("MOSAICO_SHARED", REPO.parent / "shared")),
                    help="shared folder holding data/bags (default $MOSAICO_SHARED, else ../shared beside the repo)")
    ap.add_argument("--workdir", type=Path, help="generated bags, store root and copies (default: temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (generated bags, store)")
    ap.add_argument("--rss-limit-mib", type=float, default=8000, help="kill an importer above this peak RSS")
    ap.add_argument("--timeout", type=float, default=1800, help="kill an importer after this many seconds")
    args = ap.parse_args()
    if args.child:
        return child_main(args.child, args.bag)
    # bag_import runs from this checkout; give it the bytecode an installed copy has (pip
    # compiles on install; with PYTHONDONTWRITEBYTECODE a checkout would compile every run)
    compileall.compile_dir(REPO / "mosaico_bridge", quiet=1)
    sets = {s for s in args.sets.split(",") if s and s != "none"}
    modes = [m for m in args.modes.split(",") if m]
    if bad := (sets - {"shared", "imu_odom", "large"}) | (set(modes) - set(MODES)):
        raise SystemExit(f"unknown set or mode: {', '.join(sorted(bad))}")
    seconds = args.seconds * (2 if args.double else 1)
    need = LARGE_BYTES_PER_S * seconds * (3 if "large" in sets else 0) + 200e6
    created = args.workdir is None
    workdir = pick_workdir(need) if created else args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    if shutil.disk_usage(workdir).free < need:
        raise SystemExit(f"--workdir {workdir}: {shutil.disk_usage(workdir).free / 1e9:.1f} GB free, "
                         f"about {need / 1e9:.1f} GB needed")
    env = dict(os.environ, COLUMNS="250", PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    print(f"work directory: {workdir}", file=sys.stderr)
    root = workdir / f"store_{os.getpid()}"
    server = None
    try:
        bags: list[Bag] = []
        if args.bag:
            if not args.bag.exists():
                raise SystemExit(f"bag not found: {args.bag}")
            bags.append(Bag(args.bag.name, args.bag))
        if "shared" in sets:
            bags += shared_bags(args.shared)
        bags += generated_bags(sets, workdir, args.shared, seconds, args.messages)
        server = Server(root, env)
        for i, bag in enumerate(bags):
            for r in range(args.rounds):
                k = (r + i) % len(modes)
                # read or decode first in round 0 so the bag's counts are known early; rotate after
                order = modes[k:] + modes[:k]
                for mode in order:
                    run = measure(bag, mode, f"{i}_{r}", server, workdir, env, args)
                    bag.runs.setdefault(mode, []).append(run)
                    status = run.error or f"{run.wall:.2f} s, {run.rss_mib:.0f} MiB"
                    print(f"{bag.name} round {r} {mode}: {status}", file=sys.stderr)
            if not bag.messages:  # neither read nor decode ran: count the messages (untimed)
                measure(bag, "read", f"{i}_count", server, workdir, env, args)
        report(bags, modes, args.rounds)
    finally:
        if server is not None:
            server.stop()
        if args.keep:
            print(f"kept {workdir}", file=sys.stderr)
        elif created:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
