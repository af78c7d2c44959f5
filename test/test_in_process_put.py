"""The in-process data path: a client given the embedded server it runs beside hands its
DoPut record batches to that server as objects, without Flight (``docs/protocol.md``
§ In-process data path). Each behaviour is checked on both paths: what is stored, what the
SDK reads back, acknowledgements, and the refusals a client sees."""

from __future__ import annotations

import threading

import numpy as np
import pyarrow as pa
import pytest
from test_client import TS, string_cdr

from mosaico_bridge.client import MosaicoClient
from mosaico_bridge.client.errors import translate
from mosaico_bridge.conversion import make_converter
from mosaico_bridge.embedded import ServerConfig, connect_or_embed
from mosaico_bridge.protocol import messages as msg
from mosaico_bridge.protocol.errors import (
    BadKeyError,
    LockedError,
    NotFoundError,
    PermissionDeniedError,
)
from mosaico_bridge.server import MosaicoServer


def image_cdr(frame: int, height: int = 480, width: int = 640) -> tuple[bytes, bytes]:
    pixels = np.full(height * width * 3, frame % 251, dtype=np.uint8)
    pixels[:8] = np.frombuffer(frame.to_bytes(8, "little"), dtype=np.uint8)
    Image, Header, Time = (TS.types[t] for t in ("sensor_msgs/msg/Image", "std_msgs/msg/Header",
                                                   "builtin_interfaces/msg/Time"))
    msg = Image(header=Header(stamp=Time(sec=frame, nanosec=0), frame_id="cam"), height=height, width=width,
                encoding="rgb8", is_bigendian=0, step=width * 3, data=pixels)
    return bytes(TS.serialize_cdr(msg, "sensor_msgs/msg/Image")), pixels.tobytes()


class CountingServer(MosaicoServer):
    """Counts DoPut streams that came over Flight and those opened in-process."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.flight_puts = 0
        self.local_puts = 0
        self._count = threading.Lock()

    def do_put(self, context, descriptor, reader, writer):
        with self._count:
            self.flight_puts += 1
        return super().do_put(context, descriptor, reader, writer)

    def open_local_put(self, topic_locator, topic_uuid, schema):
        with self._count:
            self.local_puts += 1
        return super().open_local_put(topic_locator, topic_uuid, schema)


@pytest.fixture
def counting_server(tmp_path):
    srv = CountingServer.start_background(tmp_path / "store", host="127.0.0.1", port=0)
    try:
        yield srv
    finally:
        srv.stop(timeout=30)


@pytest.mark.parametrize("in_process", [True, False], ids=["in_process", "flight"])
def test_rows_are_stored_acknowledged_and_read_back_by_the_sdk(counting_server, in_process):
    mosaicolabs = pytest.importorskip("mosaicolabs")
    srv = counting_server
    texts = [f"message {i}" for i in range(500)]
    frames = [image_cdr(i) for i in range(6)]
    with MosaicoClient.connect("127.0.0.1", srv.port, in_process_server=srv if in_process else None) as c:
        with c.sequence_create("paths", {}) as seq:
            chatter = seq.topic_create("/chatter", {}, make_converter("std_msgs/msg/String", TS))
            cam = seq.topic_create("/cam", {}, make_converter("sensor_msgs/msg/Image", TS))
            for i, text in enumerate(texts):
                chatter.push(1_000 + i, string_cdr(text))
            for i, (raw, _pixels) in enumerate(frames):
                cam.push(2_000 + i, raw)
        counters = chatter.snapshot(), cam.snapshot()
    assert (srv.local_puts, srv.flight_puts) == ((2, 0) if in_process else (0, 2))
    for snap, n in zip(counters, (len(texts), len(frames)), strict=True):
        assert (snap["received"], snap["written"], snap["dropped"], snap["spooled"]) == (n, n, 0, 0)
        assert snap["latency_ns_p99"] > 0
    with mosaicolabs.MosaicoClient.connect("127.0.0.1", srv.port) as sdk:
        got = [(m.timestamp_ns, m.data.data) for m in sdk.topic_handler("paths", "/chatter").get_data_streamer()]
        images = list(sdk.topic_handler("paths", "/cam").get_data_streamer())
    assert got == [(1_000 + i, t) for i, t in enumerate(texts)]
    assert [m.timestamp_ns for m in images] == [2_000 + i for i in range(len(frames))]
    assert [bytes(m.data.data) for m in images] == [pixels for _raw, pixels in frames]


def refusal(conn, locator: str, uuid: str, schema: pa.Schema) -> BaseException:
    """Open a DoPut stream, write one row and end it; the error the client got, from
    whichever step it surfaced at (a Flight DoPut reports a refusal at a write or at the
    end of the stream, the in-process path when the stream is opened)."""
    try:
        writer, reader = conn.open_put(locator, uuid, schema)
        writer.write_batch(pa.record_batch([pa.array([1], pa.int64()), pa.array(["a"])], schema=schema))
        writer.done_writing()
        while reader.read() is not None:
            pass
        writer.close()
    except Exception as exc:  # noqa: BLE001 - the refusal under test, checked by the caller
        return translate("DoPut", exc)
    raise AssertionError(f"DoPut {locator} was not refused")


@pytest.mark.parametrize("in_process", [True, False], ids=["in_process", "flight"])
def test_refusals_are_the_same_on_both_paths(counting_server, in_process):
    srv = counting_server
    with MosaicoClient.connect("127.0.0.1", srv.port, in_process_server=srv if in_process else None) as c:
        conn = c._transport.pool.connections[0]
        with c.sequence_create("refusals", {}) as seq:
            tw = seq.topic_create("/t", {}, make_converter("std_msgs/msg/String", TS))
            err = refusal(conn, "refusals/missing", tw.uuid, tw.schema)
            assert isinstance(err, NotFoundError) and "topic `refusals/missing` not found" in str(err)
            err = refusal(conn, tw.locator, "00000000-0000-4000-8000-000000000000", tw.schema)
            assert isinstance(err, BadKeyError) and "bad key" in str(err)
            # the topic's own stream is open: a second one is refused
            err = refusal(conn, tw.locator, tw.uuid, tw.schema)
            assert isinstance(err, LockedError) and "already being written" in str(err)
            tw.push(1, string_cdr("kept"))
        assert c.topic_handler("refusals", "/t").row_count == 1


@pytest.mark.parametrize("in_process", [True, False], ids=["in_process", "flight"])
def test_a_batch_over_the_server_limit_ends_the_stream_and_keeps_the_rows_before_it(tmp_path, in_process):
    limit = 256 * 1024
    srv = CountingServer.start_background(tmp_path / "store", host="127.0.0.1", port=0, max_decode_message_size=limit)
    try:
        with MosaicoClient.connect("127.0.0.1", srv.port, in_process_server=srv if in_process else None) as c:
            conn = c._transport.pool.connections[0]
            conv = make_converter("std_msgs/msg/String", TS)
            with c.sequence_create("cut", {}) as seq:
                # a topic created by its control call alone; its DoPut stream is opened here
                reply = c._transport.control.request(
                    msg.TopicCreateRequest(seq.session_uuid, "cut/raw", "default", conv.ontology_tag, {}))
                uuid = msg.TopicCreateResponse.from_dict(reply).uuid
                writer, reader = conn.open_put("cut/raw", uuid, conv.schema)
                small = pa.record_batch([pa.array([1], pa.int64()), pa.array(["a"])], schema=conv.schema)
                big = pa.record_batch([pa.array([2], pa.int64()), pa.array(["x" * (2 * limit)])], schema=conv.schema)
                writer.write_batch(small)
                assert reader.read() is not None  # the first batch is acknowledged
                with pytest.raises((pa.flight.FlightError, pa.ArrowException)) as refused:
                    writer.write_batch(big)
                    writer.done_writing()
                    while reader.read() is not None:
                        pass
                    writer.close()
                err = translate("DoPut", refused.value)
                assert type(err).__name__ == "TooLargeError" and "exceeds grpc_max_decode_message_size" in str(err)
        with MosaicoClient.connect("127.0.0.1", srv.port) as c:
            assert c.topic_handler("cut", "/raw").row_count == 1
    finally:
        srv.stop(timeout=30)


def test_a_server_that_requires_api_keys_refuses_the_in_process_path(tmp_path):
    srv = MosaicoServer(tmp_path / "store", host="127.0.0.1", port=0, require_api_key=True)
    try:
        schema = pa.schema([pa.field("timestamp_ns", pa.int64(), nullable=False)])
        with pytest.raises(pa.flight.FlightServerError) as refused:
            srv.open_local_put("s/t", "00000000-0000-4000-8000-000000000000", schema)
        assert isinstance(translate("DoPut", refused.value), PermissionDeniedError)
        assert "requires API keys" in str(translate("DoPut", refused.value))
    finally:
        srv.stop(timeout=30)


def test_connect_or_embed_uses_the_in_process_path(tmp_path):
    with connect_or_embed(ServerConfig(root=str(tmp_path / "emb"))) as conn:
        assert all(dc._in_process is conn.server for dc in conn.client._transport.pool.connections)
        with conn.client.sequence_create("embedded", {}) as seq:
            tw = seq.topic_create("/a", {}, make_converter("std_msgs/msg/String", TS))
            tw.push(1, string_cdr("a"))
        assert tw.snapshot()["written"] == 1
        assert conn.client.topic_handler("embedded", "/a").row_count == 1
