"""Every shared bag through ``bag_import`` (a separate process, embedded server on a
root directory), then read back by the real ``mosaicolabs`` 0.7.0 SDK from a new
server on the same root: sequence, topics, ontology tags, counts, timestamps, values.
"""

from __future__ import annotations

from collections import defaultdict

import pytest
from conftest import SHARED_BAGS, run_cli, shared_bag
from rosbags.highlevel import AnyReader
from rosbags.typesys import Stores, get_typestore

mosaicolabs = pytest.importorskip("mosaicolabs")

# Ontology tags of the known ROS types (protocol doc §5, "ROS adapters" table).
KNOWN_TAGS = {
    "sensor_msgs/msg/Imu": "IMU",
    "sensor_msgs/msg/NavSatFix": "GPS",
    "nav_msgs/msg/Odometry": "MotionState",
    "geometry_msgs/msg/PoseWithCovarianceStamped": "Pose",
    "geometry_msgs/msg/Twist": "Velocity",
    "tf2_msgs/msg/TFMessage": "FrameTransform",
    "tf/msg/tfMessage": "FrameTransform",
    "std_msgs/msg/String": "String",
}
# Every other type takes the generic layout, tagged with its type name (prefixed with the
# package where the name is an ontology tag of its own, e.g. turtlesim's Pose).
GENERIC_TAGS = {
    "rosgraph_msgs/msg/Log": "Log",
    "turtlesim/msg/Color": "Color",
    "turtlesim/msg/Pose": "turtlesim_Pose",
    "test_msgs/msg/Arrays": "Arrays",
    "test_msgs/msg/BasicTypes": "BasicTypes",
}


def bag_messages(path):
    """{topic: [(log_time_ns, deserialized message), ...]} straight from rosbags."""
    out = defaultdict(list)
    with AnyReader([path], default_typestore=get_typestore(Stores.ROS2_HUMBLE)) as reader:
        for conn, t, raw in reader.messages():
            out[conn.topic].append((t, reader.deserialize(raw, conn.msgtype)))
    return out


def sdk_messages(sdk, sequence, topic):
    th = sdk.topic_handler(sequence, topic)
    assert th is not None, f"SDK sees no topic {topic}"
    return th, list(th.get_data_streamer())


@pytest.fixture
def imported(tmp_path):
    """Import a shared bag with the CLI; return (sequence, root) and a factory for a server."""
    from mosaico_bridge.server import MosaicoServer

    servers = []

    def run(rel: str, sequence: str):
        root = tmp_path / "root"
        proc = run_cli("mosaico_bridge.cli.bag_import", str(shared_bag(rel)), "--sequence", sequence,
                       "--root", str(root), "--no-progress")
        assert proc.returncode == 0, proc.stderr
        srv = MosaicoServer.start_background(root, host="127.0.0.1", port=0)
        servers.append(srv)
        return proc, srv

    yield run
    for srv in servers:
        srv.stop()


@pytest.mark.parametrize("rel", sorted(SHARED_BAGS))
def test_shared_bag_imports_and_sdk_reads_it_back(rel, imported):
    expected = SHARED_BAGS[rel]
    sequence = "import_" + rel.split("/")[0]
    proc, srv = imported(rel, sequence)
    rows = {}  # the per-topic summary table: topic -> (ROS type, ontology tag, messages)
    for line in proc.stdout.splitlines():
        cells = [c.strip() for c in line.split("\u2502")[1:-1]]
        if len(cells) == 5 and cells[0] and cells[0] != "topic" and not cells[0].endswith(" topics"):
            rows[cells[0]] = (cells[1], cells[2], cells[3])
    assert set(rows) == set(expected), proc.stdout
    for topic, (msgtype, count) in expected.items():
        assert rows[topic][0] == msgtype and rows[topic][2] == str(count), (topic, rows[topic])
    bag = bag_messages(shared_bag(rel))
    with mosaicolabs.MosaicoClient.connect("127.0.0.1", srv.port) as sdk:
        assert sequence in sdk.list_sequences()
        seq = sdk.sequence_handler(sequence)
        assert seq is not None
        assert len(seq.topics) == len(expected)
        for topic, (msgtype, count) in expected.items():
            th, msgs = sdk_messages(sdk, sequence, topic)
            assert th.ontology_tag == {**KNOWN_TAGS, **GENERIC_TAGS}[msgtype], topic
            assert len(msgs) == count == len(bag[topic]), topic
            got = [m.timestamp_ns for m in msgs]
            assert got == sorted(got), f"{topic}: not in timestamp order"
            assert got == sorted(t for t, _ in bag[topic]), f"{topic}: timestamps differ from the bag's"


def test_husky_imu_gps_odometry_values_equal_the_bag(imported):
    from mosaicolabs import GPS, IMU, MotionState

    rel = "ros1_husky_imu_odom_gps/husky_imu_odom_gps.bag"
    _proc, srv = imported(rel, "husky_values")
    bag = bag_messages(shared_bag(rel))
    with mosaicolabs.MosaicoClient.connect("127.0.0.1", srv.port) as sdk:
        th, msgs = sdk_messages(sdk, "husky_values", "/imu/data")
        assert th.ontology_tag == "IMU"
        for m, (t, ros) in zip(msgs, bag["/imu/data"], strict=True):
            imu = m.data
            assert isinstance(imu, IMU), type(imu)
            assert m.timestamp_ns == t
            for axis in "xyz":
                assert getattr(imu.acceleration, axis) == getattr(ros.linear_acceleration, axis)
                assert getattr(imu.angular_velocity, axis) == getattr(ros.angular_velocity, axis)
            if ros.orientation_covariance[0] != -1:
                assert imu.orientation is not None
                for axis in "xyzw":
                    assert getattr(imu.orientation, axis) == getattr(ros.orientation, axis)
            assert imu.header.frame_id == ros.header.frame_id
            assert imu.header.timestamp.seconds == ros.header.stamp.sec
            assert imu.header.timestamp.nanoseconds == ros.header.stamp.nanosec

        th, msgs = sdk_messages(sdk, "husky_values", "/fix")
        assert th.ontology_tag == "GPS"
        for m, (t, ros) in zip(msgs, bag["/fix"], strict=True):
            gps = m.data
            assert isinstance(gps, GPS), type(gps)
            assert m.timestamp_ns == t
            assert gps.position.x == ros.latitude
            assert gps.position.y == ros.longitude
            assert gps.position.z == ros.altitude
            assert gps.status.status == ros.status.status
            assert gps.status.service == ros.status.service

        th, msgs = sdk_messages(sdk, "husky_values", "/husky_velocity_controller/odom")
        assert th.ontology_tag == "MotionState"
        for m, (t, ros) in zip(msgs, bag["/husky_velocity_controller/odom"], strict=True):
            ms = m.data
            assert isinstance(ms, MotionState), type(ms)
            assert m.timestamp_ns == t
            for axis in "xyz":
                assert getattr(ms.pose.position, axis) == getattr(ros.pose.pose.position, axis)
                assert getattr(ms.velocity.linear, axis) == getattr(ros.twist.twist.linear, axis)
                assert getattr(ms.velocity.angular, axis) == getattr(ros.twist.twist.angular, axis)
            for axis in "xyzw":
                assert getattr(ms.pose.orientation, axis) == getattr(ros.pose.pose.orientation, axis)
            assert ms.target_frame_id == ros.child_frame_id
