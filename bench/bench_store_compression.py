"""Bytes on disk of the server's chunk files per ``store_compression`` setting.

Imports one bag (default: the shared ros1_husky_imu_odom_gps) into a fresh
``mosaico_server --compression X`` for X in none, lz4, zstd; prints the chunk bytes,
the ratio to ``none``, and the import and full read-back times; checks that every topic
reads back equal (Arrow tables) under each setting.

    python bench/bench_store_compression.py [BAG]
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pyarrow import flight

from mosaico_bridge.protocol import descriptors

REPO = Path(__file__).resolve().parents[1]
DEFAULT_BAG = Path(os.environ.get("MOSAICO_SHARED", "/work/shared")) / "data" / "bags" / "ros1_husky_imu_odom_gps" / "husky_imu_odom_gps.bag"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(bag: Path, compression: str, root: Path) -> tuple[int, float, float, dict]:
    port = _port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    server = subprocess.Popen(
        [sys.executable, "-m", "mosaico_bridge.cli.server", "--root", str(root), "--port", str(port),
         "--compression", compression, "--log-level", "WARNING"],
        cwd=REPO, env=env, stdin=subprocess.DEVNULL,
    )
    try:
        location = f"grpc://127.0.0.1:{port}"
        with flight.FlightClient(location) as c:
            for _ in range(200):
                try:
                    list(c.do_action(flight.Action("info", b"{}")))
                    break
                except flight.FlightError:
                    time.sleep(0.05)
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "mosaico_bridge.cli.bag_import", "--sequence", "bench", "--host",
                            "127.0.0.1", "--port", str(port), "--no-progress", str(bag)],
                           cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL)
            imported = time.perf_counter() - t
            t = time.perf_counter()
            info = c.get_flight_info(descriptors.read_descriptor("bench"))
            tables = {}
            for ep in info.endpoints:
                tables[descriptors.parse_ticket(ep.ticket).resource_locator] = c.do_get(ep.ticket).read_all()
            read = time.perf_counter() - t
    finally:
        server.terminate()
        server.wait(timeout=30)
    size = sum(p.stat().st_size for p in root.rglob("chunk-*.arrows"))
    return size, imported, read, tables


def main() -> None:
    bag = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_BAG
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for comp in ("none", "lz4", "zstd"):
            results[comp] = run(bag, comp, Path(tmp) / comp)
    base_size, base_import, base_read, base_tables = results["none"]
    print(f"bag: {bag}")
    for comp, (size, imported, read, tables) in results.items():
        same = tables.keys() == base_tables.keys() and all(tables[k].equals(base_tables[k]) for k in tables)
        print(f"{comp:5s} {size:12,d} bytes  {size / base_size:5.2f}x of none   import {imported / base_import:4.2f}x   "
              f"read {read / base_read:4.2f}x   reads back equal: {same}")


if __name__ == "__main__":
    main()
