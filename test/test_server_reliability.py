"""Reliability of the embedded server: acknowledged writes, malformed batches, keys that
change during a stream, crash leftovers, ordering, the store marker.

Reads that could crash a process (a malformed batch served by an old server killed it
with SIGBUS, and the reading client with SIGSEGV) run in subprocesses, so a crash fails
the test instead of killing pytest. Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pytest
import wire_bodies as wire
from conftest import ServerProcess
from pyarrow import flight
from test_server import SCHEMA, act, make_topic, put, rows

from mosaico_bridge.protocol import descriptors
from mosaico_bridge.server import MosaicoServer, MosaicoStore, Permission

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}

STR_SCHEMA = pa.schema([pa.field("timestamp_ns", pa.int64(), nullable=False), pa.field("s", pa.string())])


def str_rows(ts: list[int], values: list[str]) -> pa.RecordBatch:
    return pa.record_batch([pa.array(ts, pa.int64()), pa.array(values, pa.string())], schema=STR_SCHEMA)


def malformed_batch() -> pa.RecordBatch:
    """A batch whose last string offset points far past its data buffer.

    Built as a valid batch, its IPC bytes patched, read back with ``pa.ipc.open_stream``.
    """
    good = str_rows([10, 11, 12], ["a", "b", "c"])
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, STR_SCHEMA) as w:
        w.write_batch(good)
    raw = sink.getvalue().to_pybytes()
    offsets = b"".join(i.to_bytes(4, "little") for i in range(4))
    assert raw.count(offsets) == 1
    bad = raw.replace(offsets, offsets[:12] + (0x7FFF0000).to_bytes(4, "little"))
    batch = pa.ipc.open_stream(bad).read_next_batch()
    with pytest.raises(pa.ArrowInvalid):
        batch.validate(full=True)
    return batch


_READER = textwrap.dedent(
    """
    import json, sys
    import pyarrow.flight as flight
    from mosaico_bridge.protocol import descriptors
    port, locator = sys.argv[1], sys.argv[2]
    client = flight.FlightClient(f"grpc://127.0.0.1:{port}")
    info = client.get_flight_info(descriptors.read_descriptor(locator))
    table = client.do_get(info.endpoints[0].ticket).read_all()
    table.validate(full=True)
    print(json.dumps(table.to_pydict()))
    """
)


def read_in_subprocess(port: int, locator: str) -> dict:
    """DoGet a whole topic from another process; fails (never crashes pytest) on a crash."""
    proc = subprocess.run(
        [sys.executable, "-c", _READER, str(port), locator],
        cwd=REPO, env=ENV, capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode == 0, f"reader exited {proc.returncode}: {proc.stderr[-2000:]}"
    return json.loads(proc.stdout)


@pytest.fixture
def srv(tmp_path):
    server = MosaicoServer.start_background(tmp_path / "store", port=0)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def raw(srv):
    with flight.FlightClient(srv.location) as c:
        yield c


# --------------------------------------------------------------------------------------
# B: acknowledged writes
# --------------------------------------------------------------------------------------


def test_each_batch_is_acknowledged_with_running_totals(srv, raw):
    _, topic_uuid = make_topic(raw, "ack", "/t")
    # a call deadline bounds the wait for an ack that never comes
    writer, reader = raw.do_put(wire.doput_descriptor("ack/t", topic_uuid), SCHEMA, flight.FlightCallOptions(timeout=20))
    sizes = []
    acks = []
    for i in range(5):
        batch = rows(list(range(i * 10, i * 10 + 3 + i)))
        sizes.append((batch.num_rows, pa.ipc.get_record_batch_size(batch)))
        writer.write_batch(batch)
        buf = reader.read()  # the ack of this batch arrives before the stream ends
        acks.append(descriptors.PutAck.from_bytes(buf))
        # acknowledged means stored: the store already holds those rows
        assert srv.store.get_topic("ack/t").row_count == acks[-1].rows
    writer.done_writing()
    writer.close()
    total_rows = total_bytes = 0
    for (n, size), ack in zip(sizes, acks):
        total_rows += n
        total_bytes += size
        assert (ack.rows, ack.body_bytes) == (total_rows, total_bytes)
    assert srv.store.get_topic("ack/t").locked


def test_many_unread_acks_do_not_stall_the_stream(srv, raw):
    """A client that never reads PutResults (the SDK) still streams thousands of batches."""
    _, topic_uuid = make_topic(raw, "unread", "/t")
    put(raw, "unread", "/t", topic_uuid, [rows([i]) for i in range(5000)])
    assert srv.store.get_topic("unread/t").row_count == 5000


# --------------------------------------------------------------------------------------
# C1: malformed record batches
# --------------------------------------------------------------------------------------


def test_malformed_batch_is_refused_and_earlier_rows_are_served(tmp_path):
    server = ServerProcess(tmp_path / "store")
    try:
        with flight.FlightClient(server.location) as c:
            _, topic_uuid = make_topic(c, "bad", "/t", tag="String")
            writer, _ = c.do_put(wire.doput_descriptor("bad/t", topic_uuid), STR_SCHEMA)
            writer.write_batch(str_rows([1, 2], ["x", "y"]))
            with pytest.raises(flight.FlightError) as info:
                writer.write_batch(malformed_batch())
                writer.done_writing()
                writer.close()
            assert wire.error_kind(info.value) == wire.ErrorKind.INVALID_ARGUMENT, info.value
            assert "invalid record batch" in str(info.value)
            notes = act(c, wire.Action.TOPIC_NOTIFICATION_LIST, wire.locator_request("bad/t"))
        assert any("record batch refused" in n["msg"] for n in notes["notifications"]), notes
        assert read_in_subprocess(server.port, "bad/t") == {"timestamp_ns": [1, 2], "s": ["x", "y"]}
        assert server.alive()
    finally:
        server.stop()
    # restarted, it serves the same rows
    server = ServerProcess(tmp_path / "store")
    try:
        assert read_in_subprocess(server.port, "bad/t") == {"timestamp_ns": [1, 2], "s": ["x", "y"]}
    finally:
        server.stop()


def test_schema_other_than_the_topics_is_refused(raw, srv):
    _, topic_uuid = make_topic(raw, "sch", "/t")
    put(raw, "sch", "/t", topic_uuid, [rows([1])])
    other = pa.schema([pa.field("timestamp_ns", pa.int64(), nullable=False), pa.field("data", pa.float32())])
    srv.store.purge_topic_notifications("sch/t")
    with pytest.raises(flight.FlightError) as info:
        put(raw, "sch", "/t", topic_uuid, [pa.record_batch([pa.array([2]), pa.array([1.0], pa.float32())], schema=other)],
            schema=other)
    assert wire.error_kind(info.value) in (wire.ErrorKind.INVALID_ARGUMENT, wire.ErrorKind.LOCKED)


def test_invalid_chunk_left_by_an_old_server_is_quarantined_at_start(tmp_path):
    root = tmp_path / "store"
    store = MosaicoStore(root)
    store.create_sequence("old", {})
    session = store.create_session("old")
    topic = store.create_topic(session.uuid, "old/t", "default", "String", {})
    w = store.open_writer("old/t", topic.uuid, STR_SCHEMA)
    w.write(str_rows([1, 2], ["x", "y"]))
    w.abort()
    tdir = root / "sequences" / "old" / "topics" / "t"
    # what an older server wrote without validating: a second chunk holding the bad batch
    with pa.OSFile(str(tdir / "chunk-000001.arrows"), "wb") as f, pa.ipc.new_stream(f, STR_SCHEMA) as ipc:
        ipc.write_batch(malformed_batch())
    meta = json.loads((tdir / "topic.json").read_text())
    meta["chunks"] = [{"file": c["file"], "bytes": c["bytes"]} for c in meta["chunks"]]  # old record: no flags
    meta["chunks"].append({"file": "chunk-000001.arrows", "bytes": 1})
    (tdir / "topic.json").write_text(json.dumps(meta))
    del store
    server = ServerProcess(root)
    try:
        assert read_in_subprocess(server.port, "old/t") == {"timestamp_ns": [1, 2], "s": ["x", "y"]}
        assert server.alive()
        with flight.FlightClient(server.location) as c:
            notes = act(c, wire.Action.TOPIC_NOTIFICATION_LIST, wire.locator_request("old/t"))
        assert any("quarantined" in n["msg"] and "chunk-000001" in n["msg"] for n in notes["notifications"]), notes
    finally:
        server.stop()
    assert (tdir / "quarantine" / "chunk-000001.arrows").exists()
    assert not (tdir / "chunk-000001.arrows").exists()


# --------------------------------------------------------------------------------------
# C2: a key revoked during a DoPut stream
# --------------------------------------------------------------------------------------


def test_key_revoked_during_a_stream_ends_it(tmp_path):
    server = MosaicoServer.start_background(tmp_path / "store", port=0, require_api_key=True)
    try:
        manage, _ = server.api_keys.create(Permission.Manage)
        key, record = server.api_keys.create(Permission.Write)
        headers = [(b"mosaico-api-key-token", key.encode())]
        opts = flight.FlightCallOptions(headers=headers, timeout=20)
        admin = flight.FlightCallOptions(headers=[(b"mosaico-api-key-token", manage.encode())])
        with flight.FlightClient(server.location) as c:
            seq_body = wire.sequence_create_request("rev", {})
            list(c.do_action(wire.action(wire.Action.SEQUENCE_CREATE, seq_body), opts))
            session = wire.parse_response(wire.Action.SESSION_CREATE, [
                r.body.to_pybytes() for r in c.do_action(
                    wire.action(wire.Action.SESSION_CREATE, wire.session_create_request("rev")), opts)])
            created = wire.parse_response(wire.Action.TOPIC_CREATE, [
                r.body.to_pybytes() for r in c.do_action(wire.action(
                    wire.Action.TOPIC_CREATE,
                    wire.topic_create_request(session["uuid"], "rev", "/t", "default", "Floating64", {})), opts)])
            writer, reader = c.do_put(wire.doput_descriptor("rev/t", created["uuid"]), SCHEMA, opts)
            writer.write_batch(rows([1, 2]))
            assert descriptors.PutAck.from_bytes(reader.read()).rows == 2
            list(c.do_action(wire.action(wire.Action.API_KEY_REVOKE,
                                         wire.api_key_fingerprint_request(record.fingerprint)), admin))
            with pytest.raises(flight.FlightUnauthenticatedError, match=f"API key {record.fingerprint} revoked"):
                writer.write_batch(rows([3]))
                writer.done_writing()
                reader.read()
                writer.close()
        info = server.store.get_topic("rev/t")
        assert info.row_count == 2 and not info.locked and not info.writing
        notes = server.store.list_topic_notifications("rev/t")
        assert any("revoked" in n.msg and "2 rows" in n.msg for n in notes), notes
    finally:
        server.stop()
