"""Tests of the embedded Mosaico server (mosaico_bridge.server) and its console script.

The official SDK ``mosaicolabs`` 0.7.0 is the reference client: it writes through our
server and reads back. Lower-level checks use a plain pyarrow FlightClient with the
messages built by ``mosaico_bridge.client.wire``. No mocks; every wait is bounded.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pyarrow as pa
import pytest
import wire_bodies as wire
from conftest import wait_until
from pyarrow import flight

from mosaico_bridge.server import MosaicoServer, MosaicoStore

mosaicolabs = pytest.importorskip("mosaicolabs")
from mosaicolabs import (
    IMU,
    Floating64,
    Message,
    MosaicoClient,
    SessionLevelErrorPolicy,
    String,
    Vector3d,
)

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def srv(tmp_path):
    server = MosaicoServer.start_background(tmp_path / "store", port=0)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def sdk_client(srv):
    with MosaicoClient.connect("127.0.0.1", srv.port, timeout=10) as c:
        yield c


@pytest.fixture
def raw(srv):
    with flight.FlightClient(srv.location) as c:
        yield c


def act(client: flight.FlightClient, name: str, payload: dict):
    bodies = [r.body.to_pybytes() for r in client.do_action(wire.action(name, payload))]
    return wire.parse_response(name, bodies)


def make_topic(client: flight.FlightClient, seq: str, topic: str, tag: str = "Floating64") -> tuple[str, str]:
    """sequence_create (if new) + session_create + topic_create; returns (session_uuid, topic_uuid)."""
    try:
        act(client, wire.Action.SEQUENCE_CREATE, wire.sequence_create_request(seq, {}))
    except flight.FlightError as exc:
        assert wire.error_kind(exc) == wire.ErrorKind.ALREADY_EXISTS
    session = act(client, wire.Action.SESSION_CREATE, wire.session_create_request(seq))
    created = act(
        client,
        wire.Action.TOPIC_CREATE,
        wire.topic_create_request(session["uuid"], seq, topic, "default", tag, {"k": "v"}),
    )
    return session["uuid"], created["uuid"]


SCHEMA = pa.schema(
    [
        pa.field("timestamp_ns", pa.int64(), nullable=False, metadata={"description": "record time"}),
        pa.field("data", pa.float64(), nullable=False),
        pa.field("order", pa.int64()),
    ],
)


def put(client, seq, topic, topic_uuid, batches, schema=SCHEMA):
    writer, _ = client.do_put(wire.doput_descriptor(wire.topic_locator(seq, topic), topic_uuid), schema)
    for b in batches:
        writer.write_batch(b)
    writer.done_writing()
    writer.close()


def rows(ts, start_order=0):
    return pa.record_batch(
        [
            pa.array(ts, pa.int64()),
            pa.array([float(t) / 2 for t in ts], pa.float64()),
            pa.array(range(start_order, start_order + len(ts)), pa.int64()),
        ],
        schema=SCHEMA,
    )


def write_run(client: MosaicoClient, name: str) -> dict[str, list[tuple[int, object]]]:
    """Write a sequence with an IMU topic and a String topic; return what was pushed."""
    expected: dict[str, list[tuple[int, object]]] = {"/imu/data": [], "/log": []}
    with client.sequence_create(name, {"driver": "ada", "site": {"city": "Milan", "lap": 3}}) as sw:
        imu = sw.topic_create("/imu/data", {"vendor": "acme"}, IMU)
        log = sw.topic_create("/log", {}, String)
        assert imu is not None and log is not None
        for i in range(300):
            t = 1_700_000_000_000_000_000 + i * 10_000_000
            data = IMU(
                acceleration=Vector3d(x=float(i), y=0.5, z=9.81),
                angular_velocity=Vector3d(x=0.0, y=-1.0, z=i / 7),
            )
            imu.push(Message(timestamp_ns=t, data=data))
            expected["/imu/data"].append((t, (float(i), 0.5, 9.81, 0.0, -1.0, i / 7)))
            if i % 4 == 0:
                t2 = t + 5_000_000
                log.push(Message(timestamp_ns=t2, data=String(data=f"line {i}")))
                expected["/log"].append((t2, f"line {i}"))
    return expected


def _values(topic: str, msg: Message):
    if topic == "/imu/data":
        d = msg.get_data(IMU)
        return (d.acceleration.x, d.acceleration.y, d.acceleration.z, d.angular_velocity.x, d.angular_velocity.y, d.angular_velocity.z)
    return msg.get_data(String).data


def check_read_back(client: MosaicoClient, name: str, expected) -> None:
    assert name in client.list_sequences()
    sh = client.sequence_handler(name)
    assert sh is not None
    assert sorted(sh.topics) == ["/imu/data", "/log"]
    assert sh.user_metadata == {"driver": "ada", "site": {"city": "Milan", "lap": 3}}
    assert len(sh.sessions) == 1 and sh.sessions[0].locked
    assert sh.sessions[0].locator.startswith(f"{name}:")

    th = client.topic_handler(name, "/imu/data")
    assert th is not None
    assert th.ontology_tag == "IMU"
    assert th.locked is True
    assert th.user_metadata == {"vendor": "acme"}
    assert th.timestamp_ns_min == expected["/imu/data"][0][0]
    assert th.timestamp_ns_max == expected["/imu/data"][-1][0]
    assert client.topic_handler(name, "/log").ontology_tag == "String"

    merged = sorted(
        [(t, topic, v) for topic, items in expected.items() for t, v in items], key=lambda x: x[0]
    )
    got = [(msg.timestamp_ns, topic, _values(topic, msg)) for topic, msg in sh.get_data_streamer()]
    assert got == merged

    imu_only = [(m.timestamp_ns, _values("/imu/data", m)) for m in th.get_data_streamer()]
    assert imu_only == expected["/imu/data"]


# --------------------------------------------------------------------------------------
# SDK round trip, restart
# --------------------------------------------------------------------------------------


def test_sdk_writes_and_reads_back(sdk_client, srv):
    info = sdk_client.info()
    assert info.version == "0.7.0"
    assert info.config.grpc_max_decode_message_size == srv.max_decode_message_size
    expected = write_run(sdk_client, "run_1")
    check_read_back(sdk_client, "run_1", expected)


def test_restart_serves_the_same_sequences(tmp_path):
    root = tmp_path / "store"
    first = MosaicoServer.start_background(root, port=0)
    try:
        with MosaicoClient.connect("127.0.0.1", first.port, timeout=10) as c:
            expected = write_run(c, "persisted")
    finally:
        first.stop()
    second = MosaicoServer.start_background(root, port=0)
    try:
        with MosaicoClient.connect("127.0.0.1", second.port, timeout=10) as c:
            check_read_back(c, "persisted", expected)
    finally:
        second.stop()


def test_schema_is_kept_exactly(raw, srv):
    schema = SCHEMA.with_metadata({"origin": "test"})
    _, topic_uuid = make_topic(raw, "exact", "/t")
    put(raw, "exact", "/t", topic_uuid, [rows([1, 2, 3]).replace_schema_metadata({"origin": "test"})], schema)
    got = raw.get_schema(wire.read_descriptor("exact/t")).schema
    assert got.equals(schema, check_metadata=True)
    assert got.field("timestamp_ns").metadata == {b"description": b"record time"}
    assert got.field("timestamp_ns").nullable is False


# --------------------------------------------------------------------------------------
# refusals
# --------------------------------------------------------------------------------------


def test_duplicate_sequence_is_refused(sdk_client, raw):
    with sdk_client.sequence_create("dup", {}) as sw:
        sw.topic_create("/x", {}, Floating64).push(Message(timestamp_ns=1, data=Floating64(data=1.0)))
    with (
        pytest.raises(flight.FlightError, match="sequence `dup` already exists"),
        sdk_client.sequence_create("dup", {}),
    ):
        pass
    with pytest.raises(flight.FlightError) as err:
        act(raw, wire.Action.SEQUENCE_CREATE, wire.sequence_create_request("dup", {}))
    assert wire.error_kind(err.value) == wire.ErrorKind.ALREADY_EXISTS
    assert "Traceback" not in str(err.value)


def test_duplicate_topic_and_closed_session_are_refused(raw):
    session_uuid, _ = make_topic(raw, "dupt", "/a/b")
    with pytest.raises(flight.FlightError, match="topic `dupt/a/b` already exists"):
        act(raw, wire.Action.TOPIC_CREATE, wire.topic_create_request(session_uuid, "dupt", "/a/b", "default", "X", {}))
    act(raw, wire.Action.SESSION_FINALIZE, wire.session_finalize_request(session_uuid))
    with pytest.raises(flight.FlightError, match="finalized") as err:
        act(raw, wire.Action.TOPIC_CREATE, wire.topic_create_request(session_uuid, "dupt", "/c", "default", "X", {}))
    assert wire.error_kind(err.value) == wire.ErrorKind.LOCKED
    with pytest.raises(flight.FlightError) as err:
        act(raw, wire.Action.TOPIC_CREATE, wire.topic_create_request(str(uuid.uuid4()), "dupt", "/c", "default", "X", {}))
    assert wire.error_kind(err.value) == wire.ErrorKind.NOT_FOUND


def test_topic_delete(raw, srv):
    make_topic(raw, "tdel", "/open")
    _, done_uuid = make_topic(raw, "tdel", "/done")
    put(raw, "tdel", "/done", done_uuid, [rows([1])])
    with pytest.raises(flight.FlightError, match="topic `tdel/done` is locked"):
        act(raw, wire.Action.TOPIC_DELETE, wire.topic_delete_request("tdel", "/done"))
    before = {p.name for p in (_seq_dir(srv, "tdel") / "topics").iterdir()}
    act(raw, wire.Action.TOPIC_DELETE, wire.topic_delete_request("tdel", "/open"))
    after = {p.name for p in (_seq_dir(srv, "tdel") / "topics").iterdir()}
    assert before - after == {"open"}
    # pyarrow 26 does not turn a FlightError raised in get_schema into a Flight status: the
    # client gets a plain ArrowException (message first, then pyarrow's detail)
    with pytest.raises(pa.ArrowException, match="topic `tdel/open` not found"):
        raw.get_schema(wire.read_descriptor("tdel/open"))
    with pytest.raises(flight.FlightError) as err:
        raw.get_flight_info(wire.read_descriptor("tdel/open"))
    assert wire.error_kind(err.value) == wire.ErrorKind.NOT_FOUND


def test_bad_names_and_unknown_action(raw):
    with pytest.raises(flight.FlightError, match="invalid sequence name") as err:
        act(raw, wire.Action.SEQUENCE_CREATE, {"locator": "bad name!", "user_metadata": {}})
    assert wire.error_kind(err.value) == wire.ErrorKind.INVALID_ARGUMENT
    with pytest.raises(flight.FlightError, match="unknown action `frobnicate`"):
        act(raw, "frobnicate", {})
    with pytest.raises(flight.FlightError, match="lacks 'locator'"):
        act(raw, wire.Action.SESSION_CREATE, {})
    with pytest.raises(flight.FlightError) as err:
        raw.get_flight_info(wire.read_descriptor("nowhere"))
    assert wire.error_kind(err.value) == wire.ErrorKind.NOT_FOUND
    with pytest.raises(flight.FlightError) as err:
        raw.get_flight_info(wire.read_descriptor("nowhere/topic"))
    assert wire.error_kind(err.value) == wire.ErrorKind.NOT_FOUND


def test_doput_checks_key_schema_and_lock(raw):
    _, topic_uuid = make_topic(raw, "keys", "/t")
    with pytest.raises(flight.FlightError, match="bad key"):
        put(raw, "keys", "/t", str(uuid.uuid4()), [rows([1])])
    with pytest.raises(flight.FlightError, match="malformed key"):
        put(raw, "keys", "/t", "not-a-uuid", [rows([1])])
    no_ts = pa.schema([("data", pa.float64())])
    with pytest.raises(flight.FlightError, match="missing timestamp field in schema"):
        put(raw, "keys", "/t", topic_uuid, [], no_ts)
    wrong_ts = pa.schema([("timestamp_ns", pa.int32()), ("data", pa.float64())])
    with pytest.raises(flight.FlightError, match="wrong timestamp field type, expected int64"):
        put(raw, "keys", "/t", topic_uuid, [], wrong_ts)
    put(raw, "keys", "/t", topic_uuid, [rows([1, 2])])
    # the end of the DoPut stream locked the topic
    with pytest.raises(flight.FlightError, match="locked"):
        put(raw, "keys", "/t", topic_uuid, [rows([3])])


def test_max_message_size_is_announced_and_enforced(tmp_path):
    limit = 256 * 1024
    # uncompressed chunks, so that bytes on disk compare with the message limit
    server = MosaicoServer.start_background(
        tmp_path / "store", port=0, max_decode_message_size=limit, store_compression="none"
    )
    try:
        with MosaicoClient.connect("127.0.0.1", server.port, timeout=10) as c:
            assert c.info().config.grpc_max_decode_message_size == limit
            # the SDK sizes its batches from the limit, so a large upload still goes through
            with c.sequence_create("big", {}) as sw:
                w = sw.topic_create("/s", {}, String)
                for i in range(400):
                    w.push(Message(timestamp_ns=i, data=String(data=f"{i:04d}" + "x" * 2000)))
            th = c.topic_handler("big", "/s")
            assert th.chunks_number == 1 and th.total_size_bytes > limit
            assert sum(1 for _ in th.get_data_streamer()) == 400
        with flight.FlightClient(server.location) as raw:
            _, topic_uuid = make_topic(raw, "big2", "/t")
            big = pa.record_batch([pa.array([1], pa.int64()), pa.array([b"y" * (2 * limit)])], names=["timestamp_ns", "blob"])
            with pytest.raises(flight.FlightError, match="exceeds grpc_max_decode_message_size"):
                put(raw, "big2", "/t", topic_uuid, [big], big.schema)
    finally:
        server.stop()


# --------------------------------------------------------------------------------------
# DoGet: order, bounds, time range
# --------------------------------------------------------------------------------------


def test_doget_sorts_stably_and_never_sends_empty_batches(tmp_path):
    server = MosaicoServer.start_background(tmp_path / "store", port=0, max_batch_rows=7)
    try:
        with flight.FlightClient(server.location) as raw:
            _, topic_uuid = make_topic(raw, "order", "/t")
            ts_batches = [[50, 10, 30], [], [10, 20, 90, 30], [5] * 10, [70, 60]]
            batches, n = [], 0
            for ts in ts_batches:
                batches.append(rows(ts, n))
                n += len(ts)
            put(raw, "order", "/t", topic_uuid, batches)
            info = raw.get_flight_info(wire.read_descriptor("order/t"))
            meta = json.loads(info.endpoints[0].app_metadata)
            assert meta["data_info"]["total_row_count"] == n
            assert meta["data_info"]["interval"] == {"start_ns": 5, "end_ns": 90}
            reader = raw.do_get(info.endpoints[0].ticket)
            got = []
            while True:
                try:
                    chunk = reader.read_chunk()
                except StopIteration:
                    break
                assert 0 < chunk.data.num_rows <= 7
                got.extend(zip(chunk.data.column("timestamp_ns").to_pylist(), chunk.data.column("order").to_pylist()))
            arrival = [(t, i) for i, t in enumerate(t for ts in ts_batches for t in ts)]
            assert got == sorted(arrival, key=lambda x: x[0])  # stable: equal stamps keep arrival order

            # a window holding no rows: schema only, not a single batch
            desc = wire.read_descriptor("order/t", timestamp_ns_start=91, timestamp_ns_end=1000)
            info = raw.get_flight_info(desc)
            meta = json.loads(info.endpoints[0].app_metadata)
            assert meta["time_window_info"] == {"row_count": 0}
            reader = raw.do_get(info.endpoints[0].ticket)
            assert reader.schema.equals(SCHEMA)
            with pytest.raises(StopIteration):
                reader.read_chunk()
    finally:
        server.stop()


def test_time_range_filter(sdk_client, raw):
    with sdk_client.sequence_create("window", {}) as sw:
        a = sw.topic_create("/a", {}, Floating64)
        b = sw.topic_create("/b", {}, Floating64)
        for i in range(100):
            a.push(Message(timestamp_ns=i * 10, data=Floating64(data=float(i))))
        for i in range(5):
            b.push(Message(timestamp_ns=5000 + i, data=Floating64(data=-float(i))))
    th = sdk_client.topic_handler("window", "/a")
    got = [m.timestamp_ns for m in th.get_data_streamer(start_timestamp_ns=200, end_timestamp_ns=300)]
    assert got == list(range(200, 300, 10))  # start inclusive, end exclusive
    # /b has no rows in the window: the sequence streamer skips it
    sh = sdk_client.sequence_handler("window")
    merged = [(topic, m.timestamp_ns) for topic, m in sh.get_data_streamer(start_timestamp_ns=195, end_timestamp_ns=221)]
    assert merged == [("/a", 200), ("/a", 210), ("/a", 220)]
    info = raw.get_flight_info(wire.read_descriptor("window", timestamp_ns_start=195, timestamp_ns_end=221))
    windows = {json.loads(e.app_metadata)["resource_locator"]: json.loads(e.app_metadata)["time_window_info"] for e in info.endpoints}
    assert windows == {"window/a": {"row_count": 3, "interval": {"start_ns": 200, "end_ns": 220}}, "window/b": {"row_count": 0}}


def test_list_flights_uses_path_descriptors(sdk_client, raw):
    write_run(sdk_client, "listed")
    infos = list(raw.list_flights())
    assert [i.descriptor.path for i in infos] == [[b"listed"]]
    assert json.loads(infos[0].app_metadata)["resource_locator"] == "listed"


# --------------------------------------------------------------------------------------
# sessions, deletes, notifications, error policies
# --------------------------------------------------------------------------------------


def _seq_dir(server: MosaicoServer, name: str) -> Path:
    return Path(server.root) / "sequences" / name


def test_report_path_notifications_and_session_delete(sdk_client, srv):
    with (
        pytest.raises(RuntimeError, match="sensor died"),
        sdk_client.sequence_create("report", {}) as sw,  # default policy: Report
    ):
        w = sw.topic_create("/f", {}, Floating64)
        for i in range(10):
            w.push(Message(timestamp_ns=i, data=Floating64(data=float(i))))
        raise RuntimeError("sensor died")
    sh = sdk_client.sequence_handler("report")
    assert sh is not None and sh.topics == ["/f"]
    session = sh.sessions[0]
    assert session.locked is False and session.completed_timestamp is not None
    assert sdk_client.topic_handler("report", "/f").locked is False

    notes = sdk_client.list_sequence_notifications("report")
    assert len(notes) == 1 and "sensor died" in notes[0].message
    assert notes[0].type.value == "error" and notes[0].created_datetime.tzinfo is not None
    topic_notes = sdk_client.list_topic_notifications("report", "/f")
    assert [(n.topic_name, n.message) for n in topic_notes] == [("/f", "sensor died")]
    sdk_client.clear_sequence_notifications("report")
    assert sdk_client.list_sequence_notifications("report") == []
    sdk_client.clear_topic_notifications("report", "/f")
    assert sdk_client.list_topic_notifications("report", "/f") == []

    topic_dirs = list((_seq_dir(srv, "report") / "topics").iterdir())
    assert len(topic_dirs) == 1
    sdk_client.session_delete(session.locator)  # unlocked: may be deleted
    assert not topic_dirs[0].exists()
    sdk_client.clear_sequence_handlers_cache()
    assert sdk_client.sequence_handler("report").topics == []


def test_locked_session_cannot_be_deleted_but_sequence_can(sdk_client, srv):
    write_run(sdk_client, "locked")
    locator = sdk_client.sequence_handler("locked").sessions[0].locator
    with pytest.raises(flight.FlightError, match="is locked"):
        sdk_client.session_delete(locator)
    chunks = list(_seq_dir(srv, "locked").rglob("chunk-*.arrows"))
    assert len(chunks) == 2 and all(p.stat().st_size > 0 for p in chunks)
    sdk_client.sequence_delete("locked")
    assert not _seq_dir(srv, "locked").exists()
    assert not any(p.exists() for p in chunks)
    assert "locked" not in sdk_client.list_sequences()
    assert not sdk_client.sequence_exists("locked")


def test_delete_policy_removes_the_sequence(sdk_client, srv):
    with (
        pytest.raises(ValueError, match="bad sample"),
        sdk_client.sequence_create("doomed", {}, on_error=SessionLevelErrorPolicy.Delete) as sw,
    ):
        w = sw.topic_create("/f", {}, Floating64)
        for i in range(10):
            w.push(Message(timestamp_ns=i, data=Floating64(data=float(i))))
        raise ValueError("bad sample")
    assert "doomed" not in sdk_client.list_sequences()
    assert not _seq_dir(srv, "doomed").exists()


# --------------------------------------------------------------------------------------
# durability
# --------------------------------------------------------------------------------------


def test_store_recovers_a_stream_cut_by_a_crash(tmp_path):
    root = tmp_path / "store"
    store = MosaicoStore(root)
    store.create_sequence("crash", {})
    session = store.create_session("crash")
    topic = store.create_topic(session.uuid, "crash/t", "default", "Floating64", {})
    writer = store.open_writer("crash/t", topic.uuid, SCHEMA)
    writer.write(rows([3, 1, 2]))
    writer.write(rows([10, 11]))
    # no finish(): the server "dies" here; a new store on the same root reads what arrived
    again = MosaicoStore(root)
    info = again.get_topic("crash/t")
    assert (info.row_count, info.min_timestamp_ns, info.max_timestamp_ns) == (5, 1, 11)
    assert info.locked is False and info.writing is False
    schema, batches = again.read("crash/t")
    assert schema.equals(SCHEMA, check_metadata=True)
    assert [t for b in batches for t in b.column("timestamp_ns").to_pylist()] == [1, 2, 3, 10, 11]


_CUT_CLIENT = textwrap.dedent(
    """
    import os, sys
    import pyarrow as pa, pyarrow.flight as flight
    from mosaico_bridge.protocol import descriptors
    port, topic_uuid = sys.argv[1], sys.argv[2]
    schema = pa.schema([pa.field("timestamp_ns", pa.int64(), nullable=False, metadata={"description": "record time"}),
                        pa.field("data", pa.float64(), nullable=False), ("order", pa.int64())])
    client = flight.FlightClient(f"grpc://127.0.0.1:{port}")
    writer, _ = client.do_put(descriptors.doput_descriptor("cut/t", topic_uuid), schema)
    writer.write_batch(pa.record_batch([pa.array([1, 2]), pa.array([0.5, 1.0]), pa.array([0, 1])], schema=schema))
    print("sent", flush=True)
    sys.stdin.readline()
    os._exit(0)  # vanish without closing the stream
    """
)


def test_client_vanishing_mid_doput_keeps_data_unlocked(srv, raw):
    session_uuid, topic_uuid = make_topic(raw, "cut", "/t")
    proc = subprocess.Popen(
        [sys.executable, "-c", _CUT_CLIENT, str(srv.port), topic_uuid],
        cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert proc.stdout.readline().strip() == "sent"
        wait_until(lambda: srv.store.get_topic("cut/t").row_count == 2, what="the batch to reach the store")
        proc.stdin.write("\n")
        proc.stdin.flush()
        proc.wait(timeout=10)
    finally:
        proc.kill()
        proc.wait(timeout=10)
    def finished_topic():
        t = srv.store.get_topic("cut/t")
        return t if not t.writing else None

    info = wait_until(finished_topic, what="the server to notice the broken stream")
    assert info.locked is False and info.row_count == 2
    # the topic is still open for its session: a new DoPut resumes it
    put(raw, "cut", "/t", topic_uuid, [rows([3])])
    info = srv.store.get_topic("cut/t")
    assert info.locked is True and info.row_count == 3 and info.chunk_count == 2
    act(raw, wire.Action.SESSION_FINALIZE, wire.session_finalize_request(session_uuid))


# --------------------------------------------------------------------------------------
# console script
# --------------------------------------------------------------------------------------


def test_cli_serves_until_sigterm(tmp_path):
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mosaico_bridge.cli.server", "--root", str(tmp_path / "cli-store"), "--port", str(port)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        with MosaicoClient.connect("127.0.0.1", port, timeout=20) as c:
            assert c.list_sequences() == []
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 0, err
    assert str(tmp_path / "cli-store") in err and f"grpc://127.0.0.1:{port}" in err


def test_cli_bad_root(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    proc = subprocess.run(
        [sys.executable, "-m", "mosaico_bridge.cli.server", "--root", str(blocker / "sub"), "--port", "0"],
        cwd=REPO, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(REPO)}, check=False,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mosaico_server: error: cannot use --root")


# --------------------------------------------------------------------------------------
# concurrency, TLS
# --------------------------------------------------------------------------------------


def test_concurrent_writers(srv):
    import threading

    results: dict[str, object] = {}

    def job(name: str) -> None:
        try:
            with MosaicoClient.connect("127.0.0.1", srv.port, timeout=10) as c:
                results[name] = write_run(c, name)
        except BaseException as exc:  # noqa: BLE001 - thread boundary: reported below
            results[name] = exc

    names = [f"par_{i}" for i in range(4)]
    threads = [threading.Thread(target=job, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
        assert not t.is_alive()
    with MosaicoClient.connect("127.0.0.1", srv.port, timeout=10) as c:
        assert sorted(c.list_sequences()) == names
        for n in names:
            assert not isinstance(results[n], BaseException), results[n]
            check_read_back(c, n, results[n])


def test_tls(tmp_path):
    import shutil

    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True, timeout=60,
    )
    pair = flight.CertKeyPair(cert.read_bytes(), key.read_bytes())
    server = MosaicoServer.start_background(tmp_path / "store", port=0, tls_certificates=[pair])
    try:
        assert server.location == f"grpc+tls://127.0.0.1:{server.port}"
        with MosaicoClient.connect("127.0.0.1", server.port, timeout=10, tls_cert_path=str(cert)) as c:
            expected = write_run(c, "secure")
            check_read_back(c, "secure", expected)
    finally:
        server.stop()
