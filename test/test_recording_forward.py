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
