"""Differential wire test: the official SDK (mosaicolabs 0.7.0) and our client perform
the same operations against a recording Flight server; the DoAction names and JSON
body shapes, the DoPut descriptors and the schemas must agree (ids, times and user
content aside).
"""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from rosbags.typesys import Stores, get_typestore

mosaicolabs = pytest.importorskip("mosaicolabs")

from mosaico_bridge.client import MosaicoClient, SessionLevelErrorPolicy
from mosaico_bridge.conversion import make_converter
from mosaico_bridge.server import MosaicoServer

TS = get_typestore(Stores.ROS2_KILTED)
T = TS.types
STAMP_NS = [1_700_000_000_000_000_000 + i * 5_000_000 for i in range(3)]


class RecordingServer(MosaicoServer):
    """The embedded server, recording every DoAction and DoPut it receives."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls: list[tuple] = []
        self._rec_lock = threading.Lock()

    def do_action(self, context, action):
        with self._rec_lock:
            self.calls.append(("action", action.type, json.loads(action.body.to_pybytes() or b"{}")))
        return super().do_action(context, action)

    def do_put(self, context, descriptor, reader, writer):
        with self._rec_lock:
            self.calls.append(("put", json.loads(descriptor.command), reader.schema))
        return super().do_put(context, descriptor, reader, writer)


def shape(value, key=None):
    """Structure and JSON types of a value; user content reduced to its type."""
    if key in ("user_metadata", "msg"):
        return type(value).__name__
    if isinstance(value, dict):
        return {k: shape(v, k) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [shape(v) for v in value[:1]]
    return type(value).__name__


def normalized(calls):
    out = []
    for call in calls:
        if call[0] == "action":
            out.append(("action", call[1], shape(call[2])))
        else:
            out.append(("put", shape(call[1]), call[2]))
    return out


class Boom(RuntimeError):
    pass


def imu_cdr(i: int) -> bytes:
    msg = T["sensor_msgs/msg/Imu"](
        header=T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=i, nanosec=7), frame_id="imu"),
        orientation=T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0),
        orientation_covariance=np.array([-1.0] + [0.0] * 8),
        angular_velocity=T["geometry_msgs/msg/Vector3"](x=0.1 * i, y=0.2, z=0.3),
        angular_velocity_covariance=np.zeros(9),
        linear_acceleration=T["geometry_msgs/msg/Vector3"](x=1.0, y=2.0, z=9.81),
        linear_acceleration_covariance=np.zeros(9),
    )
    return bytes(TS.serialize_cdr(msg, "sensor_msgs/msg/Imu"))


def string_cdr(i: int) -> bytes:
    return bytes(TS.serialize_cdr(T["std_msgs/msg/String"](data=f"status {i}"), "std_msgs/msg/String"))


def run_sdk(port: int, scenario: str) -> None:
    from mosaicolabs import IMU, Header, Message, String, Time, Vector3d
    from mosaicolabs import SessionLevelErrorPolicy as SdkPolicy

    policy = SdkPolicy.Delete if scenario == "delete" else SdkPolicy.Report
    with mosaicolabs.MosaicoClient.connect("127.0.0.1", port) as sdk:
        try:
            with sdk.sequence_create("wire_seq", {"robot": "r1"}, on_error=policy) as seq:
                imu = seq.topic_create("/imu", {"k": "v"}, IMU)
                status = seq.topic_create("/status", {}, String)
                for i, t in enumerate(STAMP_NS):
                    imu.push(Message(timestamp_ns=t, data=IMU(
                        header=Header(timestamp=Time(seconds=i, nanoseconds=7), frame_id="imu"),
                        acceleration=Vector3d(x=1.0, y=2.0, z=9.81),
                        angular_velocity=Vector3d(x=0.1 * i, y=0.2, z=0.3))))
                    status.push(Message(timestamp_ns=t, data=String(data=f"status {i}")))
                if scenario != "ok":
                    raise Boom("failure inside the with block")
        except Boom:
            pass


def run_ours(port: int, scenario: str) -> None:
    policy = SessionLevelErrorPolicy.Delete if scenario == "delete" else SessionLevelErrorPolicy.Report
    with MosaicoClient.connect("127.0.0.1", port) as client:
        try:
            with client.sequence_create("wire_seq", {"robot": "r1"}, on_error=policy) as seq:
                imu = seq.topic_create("/imu", {"k": "v"}, make_converter("sensor_msgs/msg/Imu", TS))
                status = seq.topic_create("/status", {}, make_converter("std_msgs/msg/String", TS))
                for i, t in enumerate(STAMP_NS):
                    imu.push(t, imu_cdr(i))
                    status.push(t, string_cdr(i))
                if scenario != "ok":
                    raise Boom("failure inside the with block")
        except Boom:
            pass


def record(tmp_path, name, fn, scenario):
    srv = RecordingServer(tmp_path / name, host="127.0.0.1", port=0)
    thread = threading.Thread(target=srv.serve, daemon=True)
    thread.start()
    try:
        fn(srv.port, scenario)
    finally:
        srv.shutdown()
        thread.join(timeout=10)
    return srv.calls


@pytest.mark.parametrize("scenario", ["ok", "delete", "report"])
def test_same_wire_shapes_as_the_sdk(tmp_path, scenario):
    sdk_calls = normalized(record(tmp_path, "sdk", run_sdk, scenario))
    our_calls = normalized(record(tmp_path, "ours", run_ours, scenario))
    # polling of `info` at connect may repeat; compare it once
    dedup = lambda calls: [c for i, c in enumerate(calls) if not (c[:2] == ("action", "info") and i and calls[i - 1][:2] == c[:2])]
    sdk_calls, our_calls = dedup(sdk_calls), dedup(our_calls)
    sdk_actions = [c[1] for c in sdk_calls if c[0] == "action"]
    our_actions = [c[1] for c in our_calls if c[0] == "action"]
    assert our_actions == sdk_actions
    assert [c for c in our_calls if c[0] == "action"] == [c for c in sdk_calls if c[0] == "action"]
    sdk_puts = [c for c in sdk_calls if c[0] == "put"]
    our_puts = [c for c in our_calls if c[0] == "put"]
    assert len(our_puts) == len(sdk_puts) == 2
    for ours, theirs in zip(our_puts, sdk_puts):
        assert ours[1] == theirs[1]  # descriptor shape
        assert ours[2].equals(theirs[2], check_metadata=False), f"{ours[2]}\n!=\n{theirs[2]}"
