"""Snapshot mode of the live bridge: the node keeps each topic's last messages in memory
(``snapshot_duration_s``, ``snapshot_max_bytes``) and ``~/snapshot`` writes them as a new
session. Node, publisher and driver are separate processes; our client reads back.
"""

from __future__ import annotations

import pytest
from test_bridge_node import NODE, procs  # noqa: F401 - the fixture

pytest.importorskip("rclpy")

SNAPSHOT = f"{NODE}/snapshot"


def numbers(port: int, sequence: str, topic: str) -> list[int]:
    from mosaico_bridge.client import MosaicoClient

    with MosaicoClient.connect("127.0.0.1", port) as client:
        return [int(v) for v in client.topic_handler(sequence, topic).read().column("data").to_pylist()]


def test_snapshot_writes_the_last_messages_within_the_byte_budget(server, procs):  # noqa: F811
    max_bytes = 16 * 1024
    bridge = procs.bridge(host="127.0.0.1", port=server.port, sequence_name="snap", topics=["/num"],
                          mode="snapshot", snapshot_duration_s=60.0, snapshot_max_bytes=max_bytes)
    driver, publisher = procs.agent("driver"), procs.agent("publisher")
    assert driver.ask("transition", node=NODE, transition="configure")["success"]
    assert driver.ask("transition", node=NODE, transition="activate")["success"]
    assert driver.ask("trigger", service=SNAPSHOT)["success"] is False  # nothing buffered yet
    total = 3000
    assert publisher.ask("numbered", topic="/num", count=total, rate=2000)["published"] == total
    driver.ask("wait_received", node="mosaico_bridge", counts={"/num": total}, timeout=60)
    held = driver.ask("diag_status", node="mosaico_bridge", status="/num", key="received", value=str(total))
    values = {k: int(v) for k, v in held["values"].items()}
    # the budget holds: every message is charged its serialized size (>= 12 bytes) plus 192
    assert 0 < values["held_bytes"] <= max_bytes and values["held"] * 204 <= max_bytes, values
    assert values["held"] + values["evicted"] == total, values
    answer = driver.ask("trigger", service=SNAPSHOT)
    assert answer["success"], answer
    got = numbers(server.port, "snap", "/num")
    assert got == list(range(total - values["held"], total))  # the newest, in order, none missing
    # the buffers were emptied: a second snapshot of new messages holds only those
    assert publisher.ask("numbered", topic="/num", count=10, rate=1000)["published"] == 10
    driver.ask("diag_status", node="mosaico_bridge", status="/num", key="held", value="10")
    assert driver.ask("trigger", service=SNAPSHOT)["success"]
    assert numbers(server.port, "snap", "/num_s2") == list(range(10))
    assert driver.ask("transition", node=NODE, transition="deactivate")["success"]
    assert "counters" in bridge.log()


def test_snapshot_keeps_only_the_last_duration(server, procs):  # noqa: F811
    procs.bridge(host="127.0.0.1", port=server.port, sequence_name="snap_window", topics=["/num"],
                 mode="snapshot", snapshot_duration_s=2.0)
    driver, publisher = procs.agent("driver"), procs.agent("publisher")
    assert driver.ask("transition", node=NODE, transition="configure")["success"]
    assert driver.ask("transition", node=NODE, transition="activate")["success"]
    assert publisher.ask("numbered", topic="/num", count=200, rate=1000)["published"] == 200
    # every message is buffered first (a held=0 seen before they arrived proves nothing) ...
    driver.ask("diag_status", node="mosaico_bridge", status="/num", key="held", value="200", timeout=30)
    # ... then, older than 2 s, evicted by the node's 1 Hz expiry, with no new message arriving
    driver.ask("diag_status", node="mosaico_bridge", status="/num", key="held", value="0", timeout=30)
    assert driver.ask("trigger", service=SNAPSHOT)["message"].endswith("nothing buffered")
    assert publisher.ask("numbered", topic="/num", count=50, rate=1000)["published"] == 50
    driver.ask("diag_status", node="mosaico_bridge", status="/num", key="held", value="50")
    assert driver.ask("trigger", service=SNAPSHOT)["success"]
    assert numbers(server.port, "snap_window", "/num") == list(range(50))


@pytest.mark.parametrize("size", [16, 1000, 1_000_000])
def test_snapshot_buffer_memory_stays_under_its_byte_budget(size):
    """What the buffer really allocates (tracemalloc) stays within snapshot_max_bytes, for
    tiny messages (where the per-message overhead dominates) as for large ones."""
    import tracemalloc

    from mosaico_bridge.recorder import SnapshotBuffer

    budget = 4 * 1024 * 1024
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        buffer = SnapshotBuffer("std_msgs/msg/String", 3600 * 10**9, budget)
        peak = 0
        for i in range(3 * budget // (size + 16)):
            buffer.push(1_800_000_000_000_000_000 + i, bytes([i % 256]) * size, 10**12 + i)  # ns-sized ints
            if i % 256 == 0:
                peak = max(peak, tracemalloc.get_traced_memory()[0] - start)
        used = tracemalloc.get_traced_memory()[0] - start
    finally:
        tracemalloc.stop()
    assert buffer.evicted > 0 and buffer.bytes <= budget
    assert max(peak, used) <= budget + size, (peak, used, len(buffer))  # + the message being pushed
    assert used >= 0.9 * buffer.bytes  # the accounting is not an overestimate either
