"""Names, error hygiene (no server path or traceback reaches a client), leftovers and file
modes, sessions cut by a crash, ordering in bounded memory, the store marker."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
import wire_bodies as wire
from conftest import ServerProcess, free_port
from pyarrow import flight
from test_server import SCHEMA, act, make_topic, put, rows
from test_server_reliability import read_in_subprocess

from mosaico_bridge.protocol.errors import InvalidArgumentError
from mosaico_bridge.server import MosaicoServer, MosaicoStore, Permission

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


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


def _clean(exc: BaseException, root: Path) -> None:
    text = str(exc)
    assert "Traceback" not in text and 'File "' not in text, text
    assert str(root) not in text and "/tmp" not in text, text


# --------------------------------------------------------------------------------------
# C5: names, paths and tracebacks
# --------------------------------------------------------------------------------------


def test_long_names_are_refused_and_leave_nothing(raw, srv):
    for name in ("s" * 256, "s" * 129):
        with pytest.raises(flight.FlightError) as info:
            act(raw, wire.Action.SEQUENCE_CREATE, {"locator": name, "user_metadata": {}})
        assert wire.error_kind(info.value) == wire.ErrorKind.INVALID_ARGUMENT
        _clean(info.value, srv.root)
    session_uuid, _ = make_topic(raw, "names", "/ok")
    with pytest.raises(flight.FlightError) as info:
        act(raw, wire.Action.TOPIC_CREATE,
            wire.topic_create_request(session_uuid, "names", "/" + "t" * 256, "default", "Floating64", {}))
    assert wire.error_kind(info.value) == wire.ErrorKind.INVALID_ARGUMENT
    _clean(info.value, srv.root)
    assert not [p for p in (srv.root / "sequences").rglob(".tmp-*")]


def test_topic_path_longer_than_a_file_name_gets_a_hashed_folder(tmp_path):
    root = tmp_path / "store"
    topic = "/" + "/".join(["ab"] * 42) + "/x"  # 127 characters, quoted 3x longer than 255
    with MosaicoServer.start_background(root, port=0) as server, flight.FlightClient(server.location) as c:
        _, topic_uuid = make_topic(c, "deep", topic)
        put(c, "deep", topic, topic_uuid, [rows([1, 2, 3])])
    folders = [p.name for p in (root / "sequences" / "deep" / "topics").iterdir()]
    assert len(folders) == 1 and folders[0].startswith("h-") and len(folders[0]) < 255
    again = MosaicoStore(root)
    assert again.get_topic("deep" + topic).row_count == 3


def test_no_call_sends_a_path_or_traceback(raw, srv):
    seq_topic = "hyg/t"
    _, topic_uuid = make_topic(raw, "hyg", "/t")
    calls = [
        lambda: raw.get_schema(wire.read_descriptor("nope/t")),
        lambda: raw.get_schema(wire.read_descriptor("nope")),
        lambda: raw.get_schema(wire.read_descriptor(seq_topic)),  # no DoPut yet
        lambda: raw.get_schema(flight.FlightDescriptor.for_command(b"not json")),
        lambda: raw.get_schema(flight.FlightDescriptor.for_path("x")),
        lambda: raw.get_flight_info(wire.read_descriptor("nope")),
        lambda: raw.get_flight_info(flight.FlightDescriptor.for_command(b"[1]")),
        lambda: raw.do_get(flight.Ticket(b"garbage")).read_all(),
        lambda: raw.do_get(flight.Ticket(b'{"resource_locator": "nope/t"}')).read_all(),
        lambda: put(raw, "hyg", "/t", "not-a-uuid", [rows([1])]),
        lambda: put(raw, "nope", "/t", topic_uuid, [rows([1])]),
        lambda: list(raw.do_action(flight.Action("sequence_create", b"\xff\xfe"))),
        lambda: list(raw.do_action(flight.Action("no_such_action", b"{}"))),
        lambda: act(raw, wire.Action.SESSION_DELETE, {"locator": "x" * 300}),
        lambda: raw.get_flight_info(wire.read_descriptor(seq_topic, 0, 2**64)),
    ]
    for i, call in enumerate(calls):
        with pytest.raises((flight.FlightError, pa.ArrowException)) as info:
            call()
        _clean(info.value, srv.root)
    with pytest.raises(pa.ArrowKeyError, match="sequence `nope` not found"):
        raw.get_schema(wire.read_descriptor("nope/t"))


def test_out_of_range_timestamps_and_nan_metadata_are_invalid_argument(raw, srv):
    make_topic(raw, "rng", "/t")
    body = json.dumps({"resource_locator": "rng/t", "timestamp_ns_start": 2**63}).encode()
    with pytest.raises(flight.FlightError) as info:
        raw.get_flight_info(flight.FlightDescriptor.for_command(body))
    assert wire.error_kind(info.value) == wire.ErrorKind.INVALID_ARGUMENT
    for text in (b'{"locator": "n1", "user_metadata": {"a": NaN}}', b'{"locator": "n2", "user_metadata": {"a": Infinity}}'):
        with pytest.raises(flight.FlightError) as info:
            list(raw.do_action(flight.Action("sequence_create", text)))
        assert wire.error_kind(info.value) == wire.ErrorKind.INVALID_ARGUMENT
    with pytest.raises(InvalidArgumentError):
        srv.store.create_sequence("n3", {"a": float("nan")})
    assert srv.store.sequence_names() == ["rng"]


# --------------------------------------------------------------------------------------
# C6: leftovers and modes
# --------------------------------------------------------------------------------------


def test_leftovers_are_cleaned_and_modes_are_private(tmp_path):
    root = tmp_path / "store"
    with MosaicoServer.start_background(root, port=0) as server, flight.FlightClient(server.location) as c:
        _, topic_uuid = make_topic(c, "mode", "/t")
        put(c, "mode", "/t", topic_uuid, [rows([1])])
        server.api_keys.create(Permission.Manage)
    (root / "sequences" / ".tmp-crashed").mkdir()
    (root / "sequences" / "mode" / "topics" / ".tmp-crashed").mkdir()
    (root / ".trash" / "half-deleted").mkdir()
    MosaicoStore(root)
    assert not list(root.rglob(".tmp-*")) and not list((root / ".trash").iterdir())
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        if path.is_dir():
            assert mode == 0o750, (path, oct(mode))
        elif path.name.startswith("api_keys"):
            assert mode == 0o600, (path, oct(mode))
        else:
            assert mode == 0o640, (path, oct(mode))


def test_cli_warns_when_serving_without_keys_beyond_loopback(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "mosaico_bridge.cli.server", "--root", str(tmp_path / "s"), "--host", "0.0.0.0",
         "--port", str(free_port())],
        cwd=REPO, env=ENV, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        lines = []
        for _ in range(50):
            line = proc.stderr.readline()
            lines.append(line)
            if "without API keys" in line or "listening on" in line or not line:
                break
        assert any("without API keys" in ln and "WARNING" in ln for ln in lines), lines
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)


# --------------------------------------------------------------------------------------
# C7: sessions cut by a crash
# --------------------------------------------------------------------------------------


def test_session_cut_by_kill_9_gets_a_notification_at_restart(tmp_path):
    root = tmp_path / "store"
    server = ServerProcess(root)
    try:
        with flight.FlightClient(server.location) as c:
            _, topic_uuid = make_topic(c, "cut", "/t")
            put(c, "cut", "/t", topic_uuid, [rows([1, 2, 3]), rows([4])])
    finally:
        server.proc.send_signal(signal.SIGKILL)
        server.proc.communicate(timeout=20)
    for _ in range(2):  # a second restart adds no duplicate
        server = ServerProcess(root)
        try:
            with flight.FlightClient(server.location) as c:
                notes = act(c, wire.Action.SEQUENCE_NOTIFICATION_LIST, wire.locator_request("cut"))["notifications"]
        finally:
            server.stop()
        cut = [n for n in notes if "interrupted" in n["msg"]]
        assert len(cut) == 1 and "4 rows" in cut[0]["msg"], notes


# --------------------------------------------------------------------------------------
# C8: ordering in bounded memory
# --------------------------------------------------------------------------------------


def test_unsorted_topic_is_merged_in_bounded_memory(tmp_path):
    store = MosaicoStore(tmp_path / "store", compression="none")
    store.create_sequence("m", {})
    session = store.create_session("m")
    topic = store.create_topic(session.uuid, "m/t", "default", "Floating64", {})
    chunks, per_chunk, per_batch = 4, 40_000, 4_000
    for c in range(chunks):  # each chunk sorted; chunks interleave in time
        w = store.open_writer("m/t", topic.uuid, SCHEMA)
        for b in range(per_chunk // per_batch):
            start = b * per_batch * chunks + c
            w.write(rows(list(range(start, start + per_batch * chunks, chunks)), start_order=c * per_chunk))
        w.abort()
    total = chunks * per_chunk
    data_bytes = total * 24
    base = pa.total_allocated_bytes()
    peak = 0
    seen = []
    _, batches = store.read("m/t", max_rows=8192)
    for batch in batches:
        peak = max(peak, pa.total_allocated_bytes() - base)
        seen.extend(batch.column("timestamp_ns").to_pylist())
    assert seen == list(range(total))
    assert peak < data_bytes / 4, (peak, data_bytes)


def test_merge_is_stable_for_equal_timestamps(raw, srv):
    _session_uuid, _topic_uuid = make_topic(raw, "st", "/t")
    srv_topic = srv.store.get_topic("st/t")
    w = srv.store.open_writer("st/t", srv_topic.uuid, SCHEMA)
    w.write(rows([5, 5, 7], start_order=0))
    w.abort()
    w = srv.store.open_writer("st/t", srv_topic.uuid, SCHEMA)
    w.write(rows([1, 5, 9], start_order=10))
    w.abort()
    _, batches = srv.store.read("st/t")
    got = [(t, o) for b in batches for t, o in zip(b.column("timestamp_ns").to_pylist(), b.column("order").to_pylist())]
    assert got == [(1, 10), (5, 0), (5, 1), (5, 11), (7, 2), (9, 12)]
    assert read_in_subprocess(srv.port, "st/t")["order"] == [10, 0, 1, 11, 2, 12]


# --------------------------------------------------------------------------------------
# C9: the store marker
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("content", ['{"format": 99}', "not json at all", '{"format": "one"}', "[]"])
def test_bad_store_marker_is_one_line_exit_2(tmp_path, content):
    root = tmp_path / "store"
    root.mkdir()
    (root / "MOSAICO_STORE").write_text(content)
    proc = subprocess.run(
        [sys.executable, "-m", "mosaico_bridge.cli.server", "--root", str(root), "--port", "0"],
        cwd=REPO, env=ENV, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, check=False,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mosaico_server: error:") and "MOSAICO_STORE" in lines[0], lines
    assert "Traceback" not in proc.stderr


# --------------------------------------------------------------------------------------
# D: compression on disk
# --------------------------------------------------------------------------------------


def test_every_store_compression_reads_back_equal_through_the_sdk(tmp_path):
    from mosaicolabs import MosaicoClient
    from test_server import check_read_back, write_run

    sizes = {}
    for comp in ("none", "lz4", "zstd"):
        with MosaicoServer.start_background(tmp_path / comp, port=0, store_compression=comp) as server:
            with MosaicoClient.connect("127.0.0.1", server.port, timeout=10) as client:
                expected = write_run(client, "comp")
                check_read_back(client, "comp", expected)
            sizes[comp] = sum(p.stat().st_size for p in (tmp_path / comp).rglob("chunk-*.arrows"))
        # and after a restart, from the files alone
        with (
            MosaicoServer.start_background(tmp_path / comp, port=0) as server,
            MosaicoClient.connect("127.0.0.1", server.port, timeout=10) as client,
        ):
            check_read_back(client, "comp", expected)
    assert sizes["lz4"] < sizes["none"] and sizes["zstd"] < sizes["none"], sizes
    with pytest.raises(ValueError, match="store_compression"):
        MosaicoStore(tmp_path / "x", compression="gzip")
