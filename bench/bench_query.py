"""Value query over many Imu rows: statistics pruning against reading every chunk.

Writes ``--sequences`` sequences of ``--rows`` Imu rows each (record batches pushed
through this checkout's ``MosaicoClient`` SequenceWriter) into a ``mosaico_server``
process (``python -m mosaico_bridge.cli.server``); every ``--spike-every``-th sequence
holds a short burst of ``acceleration.x`` far above the noise of the others. Then:

1. the SDK (``mosaicolabs``) runs ``query(QueryOntologyCatalog(IMU.Q.acceleration.x.gt(T)))``
   against the server process: the first (cold) run, which writes the Parquet copies with
   row-group statistics, and ``--reps`` warm runs (median);
2. after the server stopped, the same query is evaluated in this process over the same
   Parquet copies through the query_engine functions, once as the server does it
   (chunks whose statistics exclude ``x > T`` are skipped) and once with every statistics
   check turned off here, DataFusion's row-group pruning included (every chunk is read
   until a row matches): time, chunks read / skipped, rows
   in the chunks read, and the ratio.

Run: ``.venv/bin/python bench/bench_query.py [--sequences 24] [--rows 50000] [--reps 7]``.
Prints figures; not a test.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import datafusion
import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mosaico_bridge.client import MosaicoClient
from mosaico_bridge.client.query import ontology_schemas
from mosaico_bridge.protocol.query import parse_query
from mosaico_bridge.server.flight_server import QUERY_CACHE_DIR
from mosaico_bridge.server.query_actions import catalog_from_store
from mosaico_bridge.server.query_engine import ScanStats, _TopicScan, evaluate_query
from mosaico_bridge.server.store import MosaicoStore

THRESHOLD = 20.0
BATCH_ROWS = 10_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A ``mosaico_server`` process of this checkout on ``root``."""

    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mosaico_bridge.cli.server", "--root", str(root), "--port", str(self.port),
             "--log-level", "WARNING"], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _column(t: pa.DataType, nullable: bool, n: int, leaves: dict[str, np.ndarray], path: str) -> pa.Array:
    """A column of ``n`` rows: the numpy arrays of ``leaves`` at their paths, nulls where allowed,
    zeros elsewhere."""
    if path in leaves:
        return pa.array(leaves[path], type=t)
    if pa.types.is_struct(t):
        children = [_column(f.type, f.nullable, n, leaves, f"{path}.{f.name}") for f in t]
        return pa.StructArray.from_arrays(children, fields=list(t))
    if nullable:
        return pa.nulls(n, type=t)
    return pa.array(np.zeros(n), type=t) if pa.types.is_floating(t) else pa.array(np.zeros(n, dtype=np.int64)).cast(t)


def imu_batch(schema: pa.Schema, t0_ns: int, rows: int, rng: np.random.Generator, spike: bool) -> pa.RecordBatch:
    """``rows`` Imu rows at 100 Hz from ``t0_ns``: accelerations N(0, 1) m/s^2, z about 9.81,
    identity orientation; with ``spike`` a burst of 200 rows with x about 40 m/s^2."""
    x = rng.normal(0.0, 1.0, rows)
    if spike:
        at = int(rng.integers(0, max(1, rows - 200)))
        x[at:at + 200] = rng.normal(40.0, 2.0, min(200, rows - at))
    leaves = {
        "timestamp_ns": t0_ns + np.arange(rows, dtype=np.int64) * 10_000_000,
        "acceleration.x": x,
        "acceleration.y": rng.normal(0.0, 1.0, rows),
        "acceleration.z": rng.normal(9.81, 0.2, rows),
        "angular_velocity.x": rng.normal(0.0, 0.1, rows),
        "angular_velocity.y": rng.normal(0.0, 0.1, rows),
        "angular_velocity.z": rng.normal(0.0, 0.1, rows),
        "orientation.x": np.zeros(rows), "orientation.y": np.zeros(rows),
        "orientation.z": np.zeros(rows), "orientation.w": np.ones(rows),
    }
    cols = [_column(f.type, f.nullable, rows, leaves, f.name) for f in schema]
    return pa.RecordBatch.from_arrays(cols, schema=schema)


def generate(port: int, sequences: int, rows: int, spike_every: int) -> tuple[list[str], float]:
    schema = ontology_schemas()["IMU"]
    rng = np.random.default_rng(7)
    expect = []
    t = time.perf_counter()
    with MosaicoClient.connect("127.0.0.1", port, timeout=20) as client:
        for i in range(sequences):
            name = f"imu_run_{i:03d}"
            spike = i % spike_every == spike_every // 2
            if spike:
                expect.append(name)
            with client.sequence_create(name, {"index": i, "spike": spike}) as writer:
                topic = writer.topic_create("/imu/data", {}, schema=schema, ontology_tag="IMU")
                t0 = 1_700_000_000_000_000_000 + i * 3_600_000_000_000
                done = 0
                while done < rows:
                    n = min(BATCH_ROWS, rows - done)
                    # one spike burst, in the middle batch
                    topic.push_batch(imu_batch(schema, t0 + done * 10_000_000, n, rng,
                                               spike and done == (rows // 2 // BATCH_ROWS) * BATCH_ROWS))
                    done += n
    return expect, time.perf_counter() - t


def sdk_query(port: int, reps: int) -> tuple[float, list[float], list[str]]:
    from mosaicolabs import IMU, QueryOntologyCatalog
    from mosaicolabs import MosaicoClient as SdkClient

    times = []
    names: list[str] = []
    with SdkClient.connect("127.0.0.1", port) as sdk:
        for _ in range(reps + 1):
            t = time.perf_counter()
            res = sdk.query(QueryOntologyCatalog(IMU.Q.acceleration.x.gt(THRESHOLD)))
            times.append(time.perf_counter() - t)
            names = sorted(i.sequence.name for i in res) if res is not None else []
    return times[0], times[1:], names


class _FullScan(_TopicScan):
    """The query engine's topic scan with every statistics check off: all chunks are kept,
    and DataFusion's own Parquet row-group pruning is disabled (bench-only baseline)."""

    def __init__(self, topic, preds, rng) -> None:
        super().__init__(topic, preds, rng)
        files = [Path(f) for f in topic.files]
        self.fragments = list(zip(files, ds.dataset([str(f) for f in files], format="parquet").get_fragments()))
        self.stats.files_pruned = self.stats.row_groups_pruned = 0

    def any_row(self) -> bool:
        config = datafusion.SessionConfig().set("datafusion.execution.parquet.pruning", "false")
        ctx = datafusion.SessionContext(config)
        for i, (path, _) in enumerate(self.fragments):
            self.stats.files_scanned += 1
            if self._sql(ctx, i, path, "1 AS hit", " LIMIT 1").num_rows:
                return True
        return False


def scan(topics, body: dict, prune: bool) -> tuple[list[str], list[_TopicScan]]:
    """The ontology part of ``query`` as the server evaluates it (one existence check per
    topic of the tag), with statistics pruning on or off. Returns (matching sequences, the
    scans with their chunk accounting)."""
    preds = list(parse_query(body).ontology)
    hits, scans = [], []
    for t in topics:
        if t.ontology_tag != "IMU":
            continue
        s = _TopicScan(t, preds, None) if prune else _FullScan(t, preds, None)
        if s.any_row():
            hits.append(t.sequence)
        scans.append(s)
    return sorted(hits), scans


def accounting(scans: list[_TopicScan]) -> tuple[ScanStats, int, int]:
    """(summed stats, rows in the chunks read, rows of all chunks) of :func:`scan`'s scans."""
    stats = ScanStats()
    rows_read = rows_all = 0
    for s in scans:
        stats.add(s.stats)
        rows_read += sum(frag.metadata.num_rows for _, frag in s.fragments[: s.stats.files_scanned])
        rows_all += sum(pq.ParquetFile(f).metadata.num_rows for f in s.topic.files)
    return stats, rows_read, rows_all


def timed(fn, reps: int):
    out = None
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sequences", type=int, default=24)
    ap.add_argument("--rows", type=int, default=50_000, help="Imu rows per sequence")
    ap.add_argument("--spike-every", type=int, default=8, help="one sequence in N has rows above the threshold")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--workdir", type=Path)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_query_", dir=args.workdir))
    root = work / "store"
    total = args.sequences * args.rows
    print(f"store {root}: {args.sequences} sequences x {args.rows} Imu rows = {total:,} rows; "
          f"query IMU.acceleration.x > {THRESHOLD}")
    try:
        server = Server(root)
        try:
            expect, gen_s = generate(server.port, args.sequences, args.rows, args.spike_every)
            print(f"written in {gen_s:.1f} s ({total / gen_s:,.0f} rows/s) through MosaicoClient; "
                  f"{len(expect)} sequences hold matching rows")
            cold, warm, names = sdk_query(server.port, args.reps)
        finally:
            server.stop()
        assert names == expect, (names, expect)
        sdk_warm = statistics.median(warm)
        print(f"SDK query, server process: cold {cold:.2f} s (writes the Parquet copies), "
              f"warm median {sdk_warm * 1000:.1f} ms over {args.reps} runs -> {len(names)} sequences")

        store = MosaicoStore(root)
        seqs, topics = catalog_from_store(store, root / QUERY_CACHE_DIR)
        body = {"ontology": {"IMU.acceleration.x": {"$gt": THRESHOLD}}}
        t_eval, result = timed(lambda: evaluate_query(body, seqs, topics), args.reps)
        assert sorted(i.sequence.name for i in result.response) == expect
        st = result.stats
        print(f"evaluate_query in process (as the server): {t_eval * 1000:.1f} ms; chunks {st.files_total}: "
              f"read {st.files_scanned}, skipped by statistics {st.files_pruned}; row groups {st.row_groups_total}, "
              f"skipped {st.row_groups_pruned}")
        t_p, (hits_p, scans_p) = timed(lambda: scan(topics, body, True), args.reps)
        t_n, (hits_n, scans_n) = timed(lambda: scan(topics, body, False), args.reps)
        st_p, rows_p, rows_all = accounting(scans_p)
        st_n, rows_n, _ = accounting(scans_n)
        assert hits_p == hits_n == expect, (hits_p, hits_n, expect)
        print(f"  pruning on : {t_p * 1000:8.1f} ms  chunks read {st_p.files_scanned:3d} / {st_p.files_total}, "
              f"skipped {st_p.files_pruned:3d}; rows in chunks read {rows_p:>10,} of {rows_all:,}")
        print(f"  pruning off: {t_n * 1000:8.1f} ms  chunks read {st_n.files_scanned:3d} / {st_n.files_total}, "
              f"skipped {st_n.files_pruned:3d}; rows in chunks read {rows_n:>10,} of {rows_all:,}")
        print(f"ratio pruning off / on: time {t_n / t_p:.1f}x, rows read {rows_n / max(rows_p, 1):.1f}x; "
              f"SDK warm query / in-process evaluation {sdk_warm / t_eval:.2f}x")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
