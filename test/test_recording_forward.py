"""Store-and-forward of the live bridge (``reconnect_max_backoff_s`` > 0): the server
process is killed mid-recording and restarted on the same port and root; the node keeps
recording into the spool, reconnects, uploads the spool and streams into a new session,
without a restart, and every number a numbered publisher sent is stored exactly once.
Node, publisher, driver and server are separate processes.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from conftest import REPO, free_port
from test_bridge_node import NODE, procs  # noqa: F401 - the fixture

pytest.importorskip("rclpy")


def start_server(root, port: int) -> subprocess.Popen:
    """The per-batch acknowledging server (test/ros_procs/ack_server.py) on ``root``."""
    return subprocess.Popen([sys.executable, str(REPO / "test" / "ros_procs" / "ack_server.py"), "--root", str(root),
                             "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stored(port: int, sequence: str) -> dict[str, list[int]]:
    """Numbers stored in every topic of ``sequence`` (our client)."""
    from mosaico_bridge.client import MosaicoClient

    with MosaicoClient.connect("127.0.0.1", port) as client:
        seq = client.sequence_handler(sequence)
        out = {}
        for topic in seq.topics if seq is not None else []:
            th = client.topic_handler(sequence, topic)
            try:
                out[topic] = [int(v) for v in th.read().column("data").to_pylist()]
            except (ValueError, OSError):  # a topic without rows yet
                out[topic] = []
        return out


def test_server_killed_and_restarted_every_message_stored_once(procs, tmp_path):  # noqa: F811
    port = free_port()
    root = tmp_path / "root"
    server = start_server(root, port)
    try:
        bridge = procs.bridge(host="127.0.0.1", port=port, sequence_name="forward", topics=["/num"],
                              max_batch_age_s=0.1, connect_timeout_s=20.0, reconnect_max_backoff_s=1.0)
        driver, publisher = procs.agent("driver"), procs.agent("publisher")
        assert driver.ask("transition", node=NODE, transition="configure")["success"]
        assert driver.ask("transition", node=NODE, transition="activate")["success"]
        total = 6000
        publisher.start("numbered", topic="/num", count=total, rate=1000)
        driver.ask("wait_received", node="mosaico_bridge", counts={"/num": 1500}, timeout=60)
        server.kill()
        server.wait(timeout=30)
        bridge.wait_log(r"server lost", timeout=30)
        assert driver.ask("state", node=NODE)["state"] == "active"
        spool = driver.ask("diag_status", node="mosaico_bridge", status="spool", key="state", value="spooling")
        assert int(spool["values"]["files"]) == 1 and int(spool["values"]["bytes"]) > 0, spool
        server = start_server(root, port)
        bridge.wait_log(r"server back: streaming into session", timeout=60)
        assert publisher.result(timeout=120)["published"] == total
        bridge.wait_log(r"spool uploaded: \d+ rows", timeout=120)
        deadline = time.monotonic() + 60
        while True:
            got = stored(port, "forward")
            if sum(len(v) for v in got.values()) >= total:
                break
            assert time.monotonic() < deadline, {k: len(v) for k, v in got.items()}
            time.sleep(0.2)
        assert driver.ask("state", node=NODE)["state"] == "active"
        assert driver.ask("diag_status", node="mosaico_bridge", status="spool", key="state",
                          value="streaming")["values"]["files"] == "0"
        assert driver.ask("transition", node=NODE, transition="deactivate", timeout=120)["success"]
        got = stored(port, "forward")
        assert set(got) == {"/num", "/num_recovered", "/num_s2"}, sorted(got)
        assert sorted(v for vals in got.values() for v in vals) == list(range(total))  # each exactly once
        # order within each topic, and the three parts follow each other
        assert got["/num"] + got["/num_recovered"] + got["/num_s2"] == list(range(total))
        interrupted = bridge.counters()[0]["/num"]
        assert interrupted["spooled"] > 0 and interrupted["dropped"] == 0, interrupted
        assert not list((tmp_path / "spool").rglob("*.arrows"))  # uploaded, removed
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=30)


def test_spool_rows_the_restarted_server_already_holds_are_left_out(client, tmp_path):
    """A server that stored rows whose acknowledgement was lost with the connection: the
    spool starts at the first unacknowledged row, so that many rows are cut from its head
    before the upload (real server, real Arrow IPC file)."""
    import json

    import pyarrow as pa
    from rosbags.typesys import Stores, get_typestore

    from mosaico_bridge.node import _drop_rows_held
    from mosaico_bridge.recorder import Recorder

    store = get_typestore(Stores.ROS2_KILTED)
    String = store.types["std_msgs/msg/String"]
    with client.sequence_create("held", {}) as session:
        tw = Recorder(session, store).add_topic("/num", "std_msgs/msg/String")
        for i in range(10):  # the server holds 0..9; only 0..4 were acknowledged
            tw.push(1000 + i, bytes(store.serialize_cdr(String(data=str(i)), "std_msgs/msg/String")))
    table = client.topic_handler("held", "/num").read()
    assert table.num_rows == 10
    spooled = pa.Table.from_batches([b for b in table.slice(5).to_batches()])  # what the spool got: 5..9
    extra = pa.Table.from_pylist([{**r, "timestamp_ns": 2000 + k, "data": str(10 + k)}
                                  for k, r in enumerate(table.slice(0, 3).to_pylist())], schema=table.schema)
    arrows = tmp_path / "held" / "SESSION" / "num.arrows"
    arrows.parent.mkdir(parents=True)
    with pa.OSFile(str(arrows), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as out:
        out.write_table(pa.concat_tables([spooled, extra]))  # 5..12: 5..9 are on the server already
    arrows.with_suffix(".json").write_text(json.dumps({"resource_locator": "held/num"}))
    _drop_rows_held(client, "held", arrows, {"held/num": 5})
    kept = pa.ipc.open_stream(arrows).read_all()
    assert kept.column("data").to_pylist() == ["10", "11", "12"]
    assert kept.schema == table.schema
    _drop_rows_held(client, "held", arrows, {"held/num": 10})  # nothing beyond what was acknowledged
    assert pa.ipc.open_stream(arrows).read_all().num_rows == 3
