"""Row timestamps of the live bridge: the node's ROS clock (``use_sim_time`` follows /clock)
or, with ``timestamp_source: header``, the message's ``header.stamp``. The node runs in its
own process, a publisher process publishes /clock and the messages, the embedded server
runs in this process and our client reads the stored rows back.
"""

from __future__ import annotations

import pytest
from test_bridge_node import NODE, procs  # noqa: F401 - the fixture

pytest.importorskip("rclpy")

SIM_NS = 1_000_000 * 1_000_000_000  # /clock at 1,000,000 s
STAMP_NS = 42 * 1_000_000_000 + 7  # header.stamp of the PointStamped


@pytest.mark.parametrize("source", ["receive", "header"])
def test_sim_time_and_header_stamps_are_the_stored_timestamps(server, procs, source):  # noqa: F811
    from mosaico_bridge.client import MosaicoClient

    publisher = procs.agent("publisher")
    publisher.ask("advertise", topic="/note", type="std_msgs/msg/String")
    bridge = procs.bridge(host="127.0.0.1", port=server.port, sequence_name=f"sim_{source}",
                          topics=["/note", "/pt"], use_sim_time="true", timestamp_source=source)
    driver = procs.agent("driver")
    assert driver.ask("transition", node=NODE, transition="configure")["success"]
    assert driver.ask("transition", node=NODE, transition="activate")["success"]
    assert publisher.ask("clock", sec=1_000_000, nanosec=0, count=20)["clock_ns"] == SIM_NS
    publisher.ask("stamped", topic="/pt", sec=42, nanosec=7)  # waits for the bridge's subscription
    bridge.wait_log(r"recording /note", timeout=30)
    publisher.ask("matched", topic="/note")  # a volatile sample published before the match is lost
    publisher.ask("publish", topic="/note", data="at sim time")
    driver.ask("wait_received", node="mosaico_bridge", counts={"/note": 1, "/pt": 1}, timeout=30)
    # the housekeeping timers run on steady time: diagnostics came although /clock is paused
    assert driver.ask("transition", node=NODE, transition="deactivate")["success"]
    with MosaicoClient.connect("127.0.0.1", server.port) as client:
        note = client.topic_handler(f"sim_{source}", "/note").read()
        pt = client.topic_handler(f"sim_{source}", "/pt").read()
    assert note.column("data").to_pylist() == ["at sim time"]
    # no header on std_msgs/String: the node's clock at receive, i.e. the paused sim time
    assert note.column("timestamp_ns").to_pylist() == [SIM_NS]
    assert pt.num_rows == 1
    expected = STAMP_NS if source == "header" else SIM_NS
    assert pt.column("timestamp_ns").to_pylist() == [expected]
