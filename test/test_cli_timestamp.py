"""``bag_import --timestamp header``: each row's timestamp_ns is the message's
header.stamp where its type starts with a Header (else the log time), read from the
serialized bytes; checked against rosbags' own deserialization, read back with the SDK."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest
from conftest import run_cli, shared_bag
from rosbags.highlevel import AnyReader
from rosbags.typesys import Stores, get_typestore

mosaicolabs = pytest.importorskip("mosaicolabs")

CLI = "mosaico_bridge.cli.bag_import"


def expected_stamps(path):
    """{topic: sorted timestamps}: header.stamp (ns) if the message has a header, else log time."""
    out = defaultdict(list)
    with AnyReader([path], default_typestore=get_typestore(Stores.ROS2_HUMBLE)) as reader:
        for conn, t, raw in reader.messages():
            msg = reader.deserialize(raw, conn.msgtype)
            header = getattr(msg, "header", None)
            out[conn.topic].append(t if header is None else header.stamp.sec * 10**9 + header.stamp.nanosec)
    return {k: sorted(v) for k, v in out.items()}


@pytest.mark.parametrize("rel", ["ros1_husky_imu_odom_gps/husky_imu_odom_gps.bag",
                                 "ros2_mcap_nav2_turtlebot/nav2_turtlebot.mcap"])
def test_header_timestamps(tmp_path, rel):
    from mosaico_bridge.server import MosaicoServer

    bag = shared_bag(rel)
    root = tmp_path / "r"
    proc = run_cli(CLI, str(bag), "--sequence", "hdr", "--root", str(root), "--timestamp", "header")
    assert proc.returncode == 0, proc.stderr
    expected = expected_stamps(bag)
    with AnyReader([bag], default_typestore=get_typestore(Stores.ROS2_HUMBLE)) as reader:
        log = defaultdict(list)
        for conn, t, _raw in reader.messages():
            log[conn.topic].append(t)
    differs = 0
    with MosaicoServer.start_background(root, host="127.0.0.1", port=0) as srv, \
            mosaicolabs.MosaicoClient.connect("127.0.0.1", srv.port) as sdk:
        for topic, stamps in expected.items():
            got = sorted(m.timestamp_ns for m in sdk.topic_handler("hdr", topic).get_data_streamer())
            assert got == stamps, topic
            differs += stamps != sorted(log[topic])
    assert differs  # at least one topic is stamped differently from its log time


def _imu(ts, sec, nanosec):
    T = ts.types
    stamp = T["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec)
    ros1 = ts.fielddefs["std_msgs/msg/Header"][1][0][0] == "seq"
    header = (T["std_msgs/msg/Header"](seq=77, stamp=stamp, frame_id="imu_link") if ros1
              else T["std_msgs/msg/Header"](stamp=stamp, frame_id="imu_link"))
    return T["sensor_msgs/msg/Imu"](
        header=header,
        orientation=T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0),
        orientation_covariance=np.zeros(9), angular_velocity=T["geometry_msgs/msg/Vector3"](x=1.0, y=2.0, z=3.0),
        angular_velocity_covariance=np.zeros(9), linear_acceleration=T["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=9.8),
        linear_acceleration_covariance=np.zeros(9),
    )


@pytest.mark.parametrize("sec, nanosec", [(0, 0), (1_700_000_000, 999_999_999), (-5, 7), (2**31 - 1, 1)])
def test_header_stamp_from_bytes(sec, nanosec):
    from mosaico_bridge.sources import header_stamp_reader

    ts = get_typestore(Stores.ROS2_KILTED)
    msg = _imu(ts, sec, nanosec)
    want = sec * 10**9 + nanosec
    read = header_stamp_reader("sensor_msgs/msg/Imu", ts, "cdr")
    assert read(ts.serialize_cdr(msg, "sensor_msgs/msg/Imu")) == want
    assert read(ts.serialize_cdr(msg, "sensor_msgs/msg/Imu", little_endian=False)) == want
    if sec >= 0:  # ROS 1 time is unsigned
        ts1 = get_typestore(Stores.ROS1_NOETIC)
        ros1 = header_stamp_reader("sensor_msgs/msg/Imu", ts1, "ros1")
        assert ros1(ts1.serialize_ros1(_imu(ts1, sec, nanosec), "sensor_msgs/msg/Imu")) == want
        assert header_stamp_reader("sensor_msgs/msg/Imu", ts, "ros1") is None  # a ROS 2 Header has no seq


def test_types_without_a_header_and_short_messages():
    from mosaico_bridge.sources import HeaderStampError, header_stamp_reader

    ts = get_typestore(Stores.ROS2_KILTED)
    assert header_stamp_reader("tf2_msgs/msg/TFMessage", ts, "cdr") is None  # first field is a sequence
    assert header_stamp_reader("std_msgs/msg/String", ts, "cdr") is None
    assert header_stamp_reader("std_msgs/msg/Header", ts, "cdr") is None  # the Header itself has no header field
    read = header_stamp_reader("sensor_msgs/msg/Imu", ts, "cdr")
    with pytest.raises(HeaderStampError, match="too short"):
        read(b"\x00\x01\x00\x00\x01")
    with pytest.raises(HeaderStampError, match="not plain CDR"):
        read(b"\x00\x07\x00\x00" + bytes(16))
