"""Our MosaicoClient against the embedded server: factory, with-only writer, data-layer
striping, batch limits, handlers and their caches, notifications, deletes."""

from __future__ import annotations

import threading

import numpy as np
import pyarrow as pa
import pytest
from conftest import free_port
from rosbags.typesys import Stores, get_typestore

from mosaico_bridge.client import (
    AlreadyExistsError,
    InvalidArgumentError,
    MosaicoClient,
    NotFoundError,
    SequenceHandler,
    SessionLevelErrorPolicy,
    WriterState,
)
from mosaico_bridge.conversion import make_converter
from mosaico_bridge.server import MosaicoServer

TS = get_typestore(Stores.ROS2_KILTED)


def string_cdr(text: str) -> bytes:
    return bytes(TS.serialize_cdr(TS.types["std_msgs/msg/String"](data=text), "std_msgs/msg/String"))


class PeerRecordingServer(MosaicoServer):
    """Records, per DoPut, the client's peer address and the IPC size of every record batch."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.puts: list[tuple[str, str, list[int]]] = []
        self.action_peers: set[str] = set()
        self._rec = threading.Lock()

    def do_action(self, context, action):
        with self._rec:
            self.action_peers.add(context.peer())
        return super().do_action(context, action)

    def do_put(self, context, descriptor, reader, writer):
        sizes: list[int] = []
        outer = self

        class Recorder:
            schema = reader.schema

            def read_chunk(self):
                chunk = reader.read_chunk()
                if chunk.data is not None:
                    sizes.append(pa.ipc.get_record_batch_size(chunk.data))
                return chunk

            def __getattr__(self, name):
                return getattr(reader, name)

        with outer._rec:
            outer.puts.append((context.peer(), descriptor.command.decode(), sizes))
        return super().do_put(context, descriptor, Recorder(), writer)


@pytest.fixture
def rec_server(tmp_path):
    srv = PeerRecordingServer(tmp_path / "rec", host="127.0.0.1", port=0, max_decode_message_size=64 * 1024)
    thread = threading.Thread(target=srv.serve, daemon=True)
    thread.start()
    yield srv
    srv.stop(timeout=30)


def test_direct_construction_is_refused():
    with pytest.raises(RuntimeError, match="connect"):
        MosaicoClient(host="h", port=1, timeout=1, control=None, pool=None, processing=None, security=None, info=None)


def test_sequence_writer_needs_open(client):
    writer = client.sequence_create("outside", {})
    assert writer.state is WriterState.NEW
    with pytest.raises(RuntimeError, match="open"):
        writer.topic_create("/a", {}, make_converter("std_msgs/msg/String", TS))
    with pytest.raises(RuntimeError, match="open"):
        writer.flush()
    assert "outside" not in client.list_sequences()  # nothing was created


def test_sequence_writer_lifecycle_without_with(client):
    """open / finalize / abort by hand, states as an enum; a second open is refused."""
    conv = make_converter("std_msgs/msg/String", TS)
    writer = client.sequence_create("by_hand", {}).open()
    assert writer.state is WriterState.OPEN
    with pytest.raises(RuntimeError, match="once"):
        writer.open()
    w = writer.topic_create("/a", {}, conv)
    for i in range(5):
        assert w.push(i, string_cdr(f"m{i}"))
    writer.finalize()
    assert writer.state is WriterState.FINALIZED
    assert w.snapshot()["written"] == 5 and w.snapshot()["inflight"] == 0
    assert writer.abort(RuntimeError("late")) is WriterState.FINALIZED  # not open: left as it is
    with pytest.raises(RuntimeError, match="finalized"):
        writer.topic_create("/b", {}, conv)
    # abort with an explicit policy, whatever on_error says
    upd = client.sequence_update("by_hand", on_error="report").open()
    upd.topic_create("/c", {}, conv).push(9, string_cdr("c"))
    assert upd.abort("operator cancelled", SessionLevelErrorPolicy.Delete) is WriterState.DELETED
    client.clear_sequence_handlers_cache()
    assert client.sequence_handler("by_hand").topics == ["/a"]


def test_sequence_create_of_an_existing_sequence_is_already_exists(client):
    client.sequence_create("twice", {}).open().finalize()
    with pytest.raises(AlreadyExistsError):
        client.sequence_create("twice", {}).open()


@pytest.mark.parametrize("name", ["", "bad name", "_x", "a/b", "é"])
def test_invalid_sequence_name_raises_before_any_call(client, name):
    with pytest.raises(InvalidArgumentError, match="invalid sequence name"):
        client.sequence_create(name, {})


def test_topics_are_striped_round_robin_over_the_data_connections(rec_server):
    with (
        MosaicoClient.connect("127.0.0.1", rec_server.port, data_connections=4) as c,
        c.sequence_create("striped", {}) as seq,
    ):
        conv = make_converter("std_msgs/msg/String", TS)
        for i in range(8):
            w = seq.topic_create(f"/t{i}", {}, conv)
            w.push(1_000 + i, string_cdr(f"m{i}"))
    peers = [peer for peer, _cmd, _sizes in rec_server.puts]
    assert len(peers) == 8
    assert len(set(peers)) == 4  # four data connections ...
    assert peers[:4] == peers[4:]  # ... used in turn
    assert not set(peers) & rec_server.action_peers  # control traffic has its own connection


def test_batches_never_exceed_the_servers_limit(rec_server):
    limit = int(0.9 * 64 * 1024)
    with MosaicoClient.connect("127.0.0.1", rec_server.port) as c:
        assert c.max_batch_size_bytes == limit
        with c.sequence_create("limited", {}) as seq:
            w = seq.topic_create("/text", {}, make_converter("std_msgs/msg/String", TS))
            for i in range(3000):
                w.push(i, string_cdr("x" * (i % 97) + str(i)))
            big = seq.topic_create("/big", {}, make_converter("std_msgs/msg/String", TS))
            big.push(1, string_cdr("y" * 100))
            big.push(2, string_cdr("z" * (limit + 10)))  # one row above the limit: dropped and reported
            big.push(3, string_cdr("w" * 100))
        assert w.stats.written == 3000 and w.stats.dropped == 0
        assert big.stats.written == 2 and big.stats.dropped == 1
        notes = c.list_topic_notifications("limited", "/big")
        assert any("exceeds" in n.message for n in notes)
        assert c.topic_handler("limited", "/text").read().num_rows == 3000
    sizes = [s for _peer, _cmd, batch_sizes in rec_server.puts for s in batch_sizes]
    assert len(sizes) > 3 and max(sizes) <= limit


def test_max_batch_size_records(client):
    # An age far above the test's run time, so that only the row limit closes a batch (at the
    # default 0.1 s a slow machine also sends a partial batch by age, and the count is not 11).
    with client.sequence_create("by_rows", {}, max_batch_size_records=100, max_batch_age_s=600) as seq:
        w = seq.topic_create("/t", {}, make_converter("std_msgs/msg/String", TS))
        for i in range(1050):
            w.push(i, string_cdr(str(i)))
    assert w.stats.written == 1050 and w.stats.batches == 11


def test_handlers_metadata_data_and_caches(client):
    conv = make_converter("std_msgs/msg/String", TS)
    with client.sequence_create("handled", {"robot": "r2", "run": 3}) as seq:
        w = seq.topic_create("/chat", {"note": "hi"}, conv)
        for i in range(10):
            w.push(10 + i, string_cdr(f"m{i}"))
    seqh = client.sequence_handler("handled")
    assert isinstance(seqh, SequenceHandler)
    assert seqh.user_metadata == {"robot": "r2", "run": 3}
    assert seqh.topics == ["/chat"] and len(seqh.sessions) == 1 and seqh.sessions[0].locked
    assert (seqh.timestamp_ns_min, seqh.timestamp_ns_max) == (10, 19)
    th = client.topic_handler("handled", "/chat")
    assert th is client.topic_handler("handled", "chat")  # cached, same locator
    assert th.ontology_tag == "String" and th.locked and th.row_count == 10
    assert th.user_metadata["note"] == "hi"
    assert th.read().column("data").to_pylist() == [f"m{i}" for i in range(10)]
    assert th.read(12, 15).column("timestamp_ns").to_pylist() == [12, 13, 14]
    client.clear_topic_handlers_cache()
    assert client.topic_handler("handled", "/chat") is not th
    assert client.sequence_handler("nope") is None and client.topic_handler("handled", "/nope") is None
    assert client.version() == client.info().version


def test_second_session_delete_and_notifications(client):
    conv = make_converter("std_msgs/msg/String", TS)
    with client.sequence_create("multi", {}) as seq:
        seq.topic_create("/a", {}, conv).push(1, string_cdr("a"))
    with (
        pytest.raises(ZeroDivisionError),
        client.sequence_update("multi", on_error=SessionLevelErrorPolicy.Report) as upd,
    ):
        upd.topic_create("/b", {}, conv).push(2, string_cdr("b"))
        raise ZeroDivisionError
    client.clear_sequence_handlers_cache()
    handler = client.sequence_handler("multi")
    assert handler.topics == ["/a", "/b"] and len(handler.sessions) == 2
    # Report kept the data received before the error and stored notifications
    assert client.topic_handler("multi", "/b").read().column("data").to_pylist() == ["b"]
    notes = client.list_sequence_notifications("multi")
    assert notes and "ZeroDivisionError" in notes[0].message
    assert client.list_topic_notifications("multi", "/b")
    client.clear_sequence_notifications("multi")
    client.clear_topic_notifications("multi", "/b")
    assert client.list_sequence_notifications("multi") == []
    assert client.list_topic_notifications("multi", "/b") == []
    # the reported session is not locked: it can be deleted alone
    reported = [s for s in handler.sessions if not s.locked]
    assert len(reported) == 1
    client.session_delete(reported[0].locator)
    assert client.sequence_handler("multi").topics == ["/a"]
    client.sequence_delete("multi")
    assert "multi" not in client.list_sequences()
    with pytest.raises(NotFoundError):
        client.sequence_delete("multi")


def test_delete_policy_removes_the_sequence(client):
    with pytest.raises(KeyError), client.sequence_create("doomed", {}, on_error="delete") as seq:
        seq.topic_create("/a", {}, make_converter("std_msgs/msg/String", TS)).push(1, string_cdr("a"))
        raise KeyError("boom")
    assert "doomed" not in client.list_sequences()


def test_push_batch_checks_the_schema(client):
    conv = make_converter("std_msgs/msg/String", TS)
    with client.sequence_create("arrow_in", {}) as seq:
        w = seq.topic_create("/s", {}, schema=conv.schema, ontology_tag="String")
        w.push_batch(conv.convert([5, 6], [string_cdr("p"), string_cdr("q")]))
        with pytest.raises(InvalidArgumentError, match="schema"):
            w.push_batch(pa.record_batch({"timestamp_ns": pa.array(np.array([1]), pa.int64())}))
    assert client.topic_handler("arrow_in", "/s").read().column("data").to_pylist() == ["p", "q"]


# ---------------------------------------------------------------- write path: order, budget, acknowledgements
def test_one_submitter_per_topic_keeps_the_order_of_batches(client):
    """push on one thread, flush on another, the scheduler cutting by rows and age on a
    third: the server holds the rows in push order."""
    n = 6000
    with client.sequence_create("ordered", {}, max_batch_size_records=7, max_batch_age_s=0.001) as seq:
        w = seq.topic_create("/t", {}, make_converter("std_msgs/msg/String", TS))
        payloads = [string_cdr(str(i)) for i in range(n)]
        done = threading.Event()

        def flusher():
            while not done.is_set():
                w.flush(wait=False)

        t = threading.Thread(target=flusher)
        t.start()
        try:
            for i, p in enumerate(payloads):
                w.push(i, p, block=True)
        finally:
            done.set()
            t.join()
    table = client.topic_handler("ordered", "/t").read()
    assert table.column("timestamp_ns").to_pylist() == list(range(n))
    assert table.column("data").to_pylist() == [str(i) for i in range(n)]
    snap = w.snapshot()
    assert snap["written"] == n and snap["batches"] > n // 7 - 1 and snap["inflight"] == 0


def test_a_buffer_of_send_at_bytes_goes_without_waiting_for_its_age(client):
    """SEND_AT_BYTES (4 MiB) of buffered messages are sent at once, though the batch limit
    (16 MiB) is not reached and max_batch_age_s is 60 s; a smaller message waits for its age."""
    from conftest import wait_until

    from mosaico_bridge.client.topic_writer import SEND_AT_BYTES

    with client.sequence_create("eager", {}, max_batch_age_s=60.0) as seq:
        big = seq.topic_create("/big", {}, make_converter("std_msgs/msg/String", TS))
        small = seq.topic_create("/small", {}, make_converter("std_msgs/msg/String", TS))
        small.push(1, string_cdr("waits"))
        big.push(1, string_cdr("x" * SEND_AT_BYTES))
        wait_until(lambda: big.snapshot()["written"] == 1, timeout=30, what="the 4 MiB message acknowledged")
        assert small.snapshot()["written"] == 0
    assert client.topic_handler("eager", "/small").read().column("data").to_pylist() == ["waits"]


def test_a_topic_waiting_for_a_conversion_thread_grows_its_next_batch_instead_of_queueing_more(server):
    """While a topic's batch waits for a conversion thread (the pool is busy), messages
    that come due by age are not cut into more batches; once it starts they go as one."""
    import time

    from conftest import wait_until

    age = 0.02
    with MosaicoClient.connect("127.0.0.1", server.port, workers=1) as c:
        busy = threading.Event()
        blocker = c._transport.processing.submit(busy.wait, 60)  # the only conversion thread is taken
        try:
            with c.sequence_create("coalesced", {}, max_batch_age_s=age) as seq:
                w = seq.topic_create("/c", {}, make_converter("std_msgs/msg/String", TS))
                w.push(1, string_cdr("m0"))
                wait_until(lambda: w._queued_conversions == 1, timeout=10, what="the first batch queued")
                queued = []
                for i in range(1, 6):
                    w.push(1 + i, string_cdr(f"m{i}"))
                    pushed = time.monotonic()
                    # the message is due by age well before this wait ends
                    wait_until(lambda p=pushed: time.monotonic() - p > 5 * age, timeout=10, what="age passed")
                    queued.append(w._queued_conversions)
                assert queued == [1] * 5  # without coalescing: 2, 3, 4, 5, 6
                busy.set()
                blocker.result(timeout=10)
            snap = w.snapshot()  # the end of the stream acknowledged everything
            assert (snap["written"], snap["batches"]) == (6, 2)
        finally:
            busy.set()
    with MosaicoClient.connect("127.0.0.1", server.port) as c:
        assert c.topic_handler("coalesced", "/c").read().column("data").to_pylist() == [f"m{i}" for i in range(6)]


def test_push_many_stores_what_push_would_in_order(client):
    """push_many of groups, mixed with single pushes, stores every message in order; the
    budget is back to 0 after the end of the stream; mismatched lengths are refused."""
    with client.sequence_create("many", {}) as seq:
        w = seq.topic_create("/m", {}, make_converter("std_msgs/msg/String", TS))
        texts = [f"m{i}" for i in range(1000)]
        i = 0
        for group in (1, 7, 0, 300, 1, 691):
            if group == 1:
                w.push(i, string_cdr(texts[i]), block=True)
            else:
                w.push_many(list(range(i, i + group)), [string_cdr(t) for t in texts[i:i + group]])
            i += group
        with pytest.raises(ValueError, match="2 timestamps for 1 messages"):
            w.push_many([1, 2], [string_cdr("x")])
    table = client.topic_handler("many", "/m").read()
    assert table.column("timestamp_ns").to_pylist() == list(range(1000))
    assert table.column("data").to_pylist() == texts
    snap = w.snapshot()
    assert snap["received"] == snap["written"] == 1000 and snap["inflight"] == 0


def test_memory_budget_drops_without_block_and_waits_with_it(server):
    big = string_cdr("x" * 300_000)
    with MosaicoClient.connect("127.0.0.1", server.port, max_inflight_bytes=1024 * 1024) as c:
        with c.sequence_create("budget", {}) as seq:
            w = seq.topic_create("/drop", {}, make_converter("std_msgs/msg/String", TS))
            accepted = sum(w.push(i, big) for i in range(200))
            blocking = seq.topic_create("/wait", {}, make_converter("std_msgs/msg/String", TS))
            for i in range(50):
                assert blocking.push(i, big, block=True)
        dropped = w.snapshot()
        assert 0 < accepted < 200 and dropped["dropped"] == 200 - accepted
        assert dropped["received"] == dropped["written"] + dropped["dropped"] == 200
        waited = blocking.snapshot()
        assert waited["written"] == 50 and waited["dropped"] == 0
        assert c.budget.used == 0 and c.budget.peak <= c.budget.limit
        assert c.topic_handler("budget", "/drop").row_count == accepted


@pytest.mark.parametrize("compression", ["lz4", "zstd"])
def test_compressed_doput_bodies_read_back(client, sdk, compression):
    """DoPut bodies compressed on the wire are stored and read back equal, by our client and
    by the mosaicolabs SDK."""
    with client.sequence_create("packed_" + compression, {}, compression=compression) as seq:
        w = seq.topic_create("/s", {}, make_converter("std_msgs/msg/String", TS))
        for i in range(500):
            w.push(i, string_cdr("abc" * 50 + str(i)))
    expected = ["abc" * 50 + str(i) for i in range(500)]
    th = client.topic_handler("packed_" + compression, "/s")
    assert th.read().column("data").to_pylist() == expected
    sdk_rows = [(m.timestamp_ns, m.data.data) for m in sdk.topic_handler("packed_" + compression, "/s").get_data_streamer()]
    assert sdk_rows == list(enumerate(expected))
    with pytest.raises(ValueError, match="compression"):
        client.sequence_create("bad", {}, compression="gzip")


def test_written_counts_per_batch_acknowledgements_before_the_end_of_stream(tmp_path):
    """The embedded server sends a PutAck after each stored batch: rows become ``written``
    while the stream is still open; a server that sends no PutResult (as mosaicod,
    test/ros_procs/ack_server.py --silent) acknowledges at the end of the stream only."""
    from conftest import wait_until
    from ros_procs.ack_server import SilentServer

    conv = make_converter("std_msgs/msg/String", TS)
    acking = MosaicoServer.start_background(tmp_path / "acks", host="127.0.0.1", port=0)
    plain = SilentServer(tmp_path / "plain", host="127.0.0.1", port=0)
    threading.Thread(target=plain.serve, daemon=True).start()
    try:
        for srv, per_batch in ((acking, True), (plain, False)):
            with MosaicoClient.connect("127.0.0.1", srv.port) as c:
                seq = c.sequence_create("acked", {}, max_batch_age_s=0.01).open()
                w = seq.topic_create("/a", {}, conv)
                for i in range(300):
                    w.push(i, string_cdr(str(i)))
                w.flush()
                if per_batch:
                    wait_until(lambda w=w: w.snapshot()["written"] == 300, 10, "acknowledgements")
                    assert w.snapshot()["latency_ns_p99"] > 0
                else:
                    assert w.snapshot()["written"] == 0 and w.snapshot()["inflight"] == 300
                seq.finalize()
                snap = w.snapshot()
                assert snap["written"] == 300 and snap["inflight"] == 0 and c.budget.used == 0
                assert c.topic_handler("acked", "/a").row_count == 300
    finally:
        acking.stop(timeout=30)
        plain.stop(timeout=30)


def test_connect_or_embed(tmp_path, server):
    from mosaico_bridge.embedded import (
        EmbeddedServerError,
        ServerConfig,
        connect_or_embed,
    )

    conv = make_converter("std_msgs/msg/String", TS)
    # no host: the embedded server on root, closed with the client
    with connect_or_embed(ServerConfig(root=str(tmp_path / "emb"))) as conn:
        assert conn.server is not None and conn.root == tmp_path / "emb"
        with conn.client.sequence_create("embedded_seq", {}) as seq:
            seq.topic_create("/a", {}, conv).push(1, string_cdr("a"))
        port = conn.port
    with pytest.raises(ConnectionError):
        MosaicoClient.connect("127.0.0.1", port, timeout=0.5)
    with (
        MosaicoServer.start_background(tmp_path / "emb", host="127.0.0.1", port=0) as again,
        MosaicoClient.connect("127.0.0.1", again.port) as c,
    ):
        assert c.list_sequences() == ["embedded_seq"]
    # a host: that server; closing leaves it running
    with connect_or_embed(ServerConfig(host="127.0.0.1", port=server.port, max_inflight_bytes=2 << 20)) as conn:
        assert conn.server is None and conn.root is None and conn.client.budget.limit == 2 << 20
    with MosaicoClient.connect("127.0.0.1", server.port) as c:
        assert c.version()
    # a root that cannot be a directory
    (tmp_path / "file").write_text("x")
    with pytest.raises(EmbeddedServerError, match="file"):
        connect_or_embed(ServerConfig(root=str(tmp_path / "file")))
    with pytest.raises(ConnectionError):
        connect_or_embed(ServerConfig(host="127.0.0.1", port=free_port(), timeout=0.3))
