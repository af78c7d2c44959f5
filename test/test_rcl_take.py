"""The take thread (mosaico_bridge/sources/rcl_take.py): subscriptions made through rcl,
taken without rclpy's executor, large messages handed over in buffers of their own.

The subscriber here is a real rcl subscription of a node in this test's process, which
no executor spins, and the publisher a real DDS publisher of another process (ros_agent).
"""

from __future__ import annotations

import ctypes
import hashlib
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from conftest import wait_until

pytest.importorskip("rclpy")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def node(ros_domain, monkeypatch):
    """A node of this process on the test run's domain (not spun by any executor)."""
    import rclpy
    from rclpy.context import Context
    from rclpy.node import Node

    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    monkeypatch.setenv("ROS_DOMAIN_ID", str(ros_domain))
    context = Context()
    rclpy.init(context=context, domain_id=ros_domain)
    n = Node("rcl_take_test", context=context)
    yield n
    n.destroy_node()
    rclpy.shutdown(context=context)


@pytest.fixture
def agent(ros_domain, tmp_path):
    from ros_util import Agent

    a = Agent(ros_domain, tmp_path / "agent.log")
    yield a
    a.close()


def _qos():
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(history=HistoryPolicy.KEEP_ALL, depth=1000, reliability=ReliabilityPolicy.RELIABLE)


def test_layouts_match_the_installed_rcl_headers(tmp_path):
    """The ctypes structures read and written by rcl_take.py have the offsets and sizes of
    the installed rcl / rmw headers (the padded ones at least their size)."""
    from mosaico_bridge.sources import rcl_take as rt

    cc = shutil.which("cc") or shutil.which("gcc")
    include = Path(sys.prefix) / "include"
    if cc is None or not (include / "rcl" / "rcl" / "wait.h").is_file():
        pytest.skip("no C compiler or no rcl headers to compare with")
    dirs = [p for p in include.iterdir() if p.is_dir()]
    src = tmp_path / "layout.c"
    src.write_text(
        "#include <stdio.h>\n#include <stddef.h>\n#include <rcl/rcl.h>\n#include <rcl/wait.h>\n"
        "int main(void){\n"
        'printf("%zu %zu %zu %zu %zu %zu %zu %zu %zu\\n", sizeof(rmw_qos_profile_t), offsetof(rmw_qos_profile_t, depth),'
        " offsetof(rmw_qos_profile_t, reliability), offsetof(rmw_qos_profile_t, durability),"
        " offsetof(rmw_qos_profile_t, deadline), offsetof(rmw_qos_profile_t, lifespan),"
        " offsetof(rmw_qos_profile_t, liveliness), offsetof(rmw_qos_profile_t, liveliness_lease_duration),"
        " offsetof(rmw_qos_profile_t, avoid_ros_namespace_conventions));\n"
        'printf("%zu %zu %zu %zu %zu %zu\\n", sizeof(rcl_subscription_options_t), sizeof(rcl_subscription_t),'
        " sizeof(rcl_wait_set_t), offsetof(rcl_wait_set_t, size_of_subscriptions), sizeof(rcl_allocator_t),"
        " sizeof(rmw_message_info_t));\n"
        'printf("%zu %zu %zu %zu %zu %zu\\n", sizeof(rcl_serialized_message_t), offsetof(rcl_serialized_message_t, buffer_length),'
        " offsetof(rcl_serialized_message_t, buffer_capacity), offsetof(rcl_serialized_message_t, allocator),"
        " sizeof(rcl_guard_condition_t), sizeof(rcl_guard_condition_options_t));\n"
        'printf("%d %d %d\\n", RCL_RET_OK, RCL_RET_TIMEOUT, RCL_RET_SUBSCRIPTION_TAKE_FAILED);\n'
        "return 0;}\n"
    )
    exe = tmp_path / "layout"
    subprocess.run([cc, *(f"-I{d}" for d in dirs), str(src), "-o", str(exe)], check=True, capture_output=True)
    lines = [list(map(int, line.split())) for line in subprocess.run([str(exe)], check=True, capture_output=True,
                                                                      text=True).stdout.splitlines()]
    q = rt._Qos
    assert lines[0] == [ctypes.sizeof(q), q.depth.offset, q.reliability.offset, q.durability.offset, q.deadline.offset,
                        q.lifespan.offset, q.liveliness.offset, q.liveliness_lease_duration.offset,
                        q.avoid_ros_namespace_conventions.offset]
    opts, sub, ws, ws_n, alloc, info = lines[1]
    assert opts <= ctypes.sizeof(rt._SubscriptionOptions) and rt._SubscriptionOptions.qos.offset == 0
    assert sub == ctypes.sizeof(rt._Subscription)
    assert ws <= ctypes.sizeof(rt._WaitSet) and ws_n == rt._WaitSet.size_of_subscriptions.offset
    assert alloc == ctypes.sizeof(rt._Allocator)
    assert info <= ctypes.sizeof(rt._MessageInfo)
    s = rt._SerializedMessage
    assert lines[2] == [ctypes.sizeof(s), s.buffer_length.offset, s.buffer_capacity.offset, s.allocator.offset,
                        ctypes.sizeof(rt._GuardCondition), ctypes.sizeof(rt._GuardConditionOptions)]
    assert lines[3] == [rt.RCL_RET_OK, rt.RCL_RET_TIMEOUT, rt.RCL_RET_SUBSCRIPTION_TAKE_FAILED]


def test_large_messages_are_taken_off_the_executor_into_buffers_of_their_own(node, agent):
    """Images from another process reach the callback on the mb-take thread, with no
    executor spinning, each as a pyarrow.Buffer holding exactly the serialized message
    in memory of its own; Strings arrive as bytes."""
    import pyarrow as pa
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import Image
    from std_msgs.msg import String

    from mosaico_bridge.sources.rcl_take import HANDOVER_BYTES, RclTaker

    got: dict[str, list] = {"img": [], "s": []}
    threads: set[str] = set()
    errors: list[BaseException] = []

    def keep(kind):
        def callback(serialized):
            threads.add(threading.current_thread().name)
            got[kind].append(serialized)
        return callback

    taker = RclTaker(node, errors.append)
    try:
        taker.subscribe("/take/image", Image, _qos(), keep("img"))
        taker.subscribe("/take/note", String, _qos(), keep("s"))
        agent.ask("advertise", topic="/take/note", type="std_msgs/msg/String")
        agent.ask("matched", topic="/take/note", count=1)
        for i in range(3):
            agent.ask("publish", topic="/take/note", data=f"note {i}")
        out = agent.ask("images", topic="/take/image", hz=20, seconds=1, width=640, height=480, subscribers=1)
        published = out["published"]
        assert published >= 15
        wait_until(lambda: len(got["img"]) >= published and len(got["s"]) == 3, timeout=30,
                   what="every image and note to be taken")
    finally:
        taker.close()
    assert not errors
    assert threads == {"mosaico-take"}
    notes = [bytes(s) for s in got["s"]]
    assert all(isinstance(s, bytes) for s in got["s"])
    assert [deserialize_message(s, String).data for s in notes] == [f"note {i}" for i in range(3)]
    images = got["img"]
    assert all(isinstance(b, pa.Buffer) for b in images)
    assert min(len(b) for b in images) >= HANDOVER_BYTES
    assert len({b.address for b in images}) == len(images)  # every message in memory of its own
    # still whole after the later takes: in order, each frame's data has the SHA-1 published
    frames = [deserialize_message(bytes(b), Image) for b in images]
    assert [(m.width, m.height) for m in frames] == [(640, 480)] * published
    assert [hashlib.sha1(bytes(m.data)).hexdigest() for m in frames] == out["sha1"]
    # the whole serialized message (CDR may pad the end by up to 3 bytes)
    assert all(0 <= len(b) - len(serialize_message(m)) <= 3 for b, m in zip(images, frames))


def test_unsubscribe_stops_callbacks_and_close_stops_the_thread(node, agent):
    from std_msgs.msg import String

    from mosaico_bridge.sources.rcl_take import RclTaker

    got: list = []
    taker = RclTaker(node, lambda exc: got.append(exc))
    entry = taker.subscribe("/take/stop", String, _qos(), got.append)
    agent.ask("advertise", topic="/take/stop", type="std_msgs/msg/String")
    agent.ask("matched", topic="/take/stop", count=1)
    agent.ask("publish", topic="/take/stop", data="before")
    wait_until(lambda: len(got) == 1, timeout=20, what="the first message")
    taker.unsubscribe([entry])
    assert not entry.handle.impl  # finalized in rcl
    assert node.count_subscribers("/take/stop") == 0
    agent.ask("publish", topic="/take/stop", data="after")
    thread = taker._thread
    taker.close()
    assert not thread.is_alive()
    assert len(got) == 1


def test_a_callback_may_unsubscribe_its_own_subscription(node, agent):
    """Unsubscribing from a callback, on the take thread, ends that subscription's burst
    without an error: the loop does not take from a subscription rcl has finalized."""
    from std_msgs.msg import String

    from mosaico_bridge.sources.rcl_take import RclTaker

    errors: list[BaseException] = []
    got: list = []
    entries: list = []

    def callback(serialized):
        got.append(serialized)
        taker.unsubscribe(entries)

    taker = RclTaker(node, errors.append)
    try:
        entries.append(taker.subscribe("/take/self", String, _qos(), callback))
        agent.ask("advertise", topic="/take/self", type="std_msgs/msg/String")
        agent.ask("matched", topic="/take/self", count=1)
        for i in range(5):  # several queued, so that the burst would take more after the first
            agent.ask("publish", topic="/take/self", data=f"m{i}")
        wait_until(lambda: len(got) >= 1, timeout=20, what="the first message")
        wait_until(lambda: node.count_subscribers("/take/self") == 0, timeout=20, what="the unsubscription")
        assert not entries[0].handle.impl
    finally:
        taker.close()
    assert len(got) == 1
    assert errors == []


def test_a_failing_callback_is_reported_and_taking_goes_on(node, agent):
    from std_msgs.msg import String

    from mosaico_bridge.sources.rcl_take import RclTaker

    errors: list[BaseException] = []
    got: list = []

    def callback(serialized):
        got.append(serialized)
        if len(got) == 1:
            raise ValueError("first message refused")

    taker = RclTaker(node, errors.append)
    try:
        taker.subscribe("/take/fail", String, _qos(), callback)
        agent.ask("advertise", topic="/take/fail", type="std_msgs/msg/String")
        agent.ask("matched", topic="/take/fail", count=1)
        agent.ask("publish", topic="/take/fail", data="one")
        agent.ask("publish", topic="/take/fail", data="two")
        wait_until(lambda: len(got) == 2, timeout=20, what="both messages")
    finally:
        taker.close()
    assert [str(e) for e in errors] == ["first message refused"]


def test_an_invalid_topic_name_is_refused_with_its_name(node):
    from std_msgs.msg import String

    from mosaico_bridge.sources.rcl_take import RclTaker

    taker = RclTaker(node, lambda exc: None)
    try:
        with pytest.raises(RuntimeError, match=r"subscribing to /bad topic"):
            taker.subscribe("/bad topic", String, _qos(), lambda s: None)
    finally:
        taker.close()
