"""mosaico_bridge.conversion: serialized ROS message + definition → Arrow record batch.

Real data only: the shared bags (read with rosbags' AnyReader) and messages
built with rosbags typestores (``typestore.types[...]`` + ``serialize_cdr`` /
``serialize_ros1``). The official SDK (mosaicolabs 0.7.0) is the reference for
the ontology layouts and for the ROS → ontology value rules.

Shared bags: ``$MOSAICO_SHARED/data/bags`` (default: the ``shared`` folder
beside the repository).
"""

from __future__ import annotations

import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from rosbags.highlevel import AnyReader
from rosbags.interfaces import Nodetype
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.base import normalize_fieldname

from mosaico_bridge.conversion import ConversionError, TopicConverter, make_converter
from mosaico_bridge.conversion.ontology import ONTOLOGY_LAYOUTS, compressed_image_format

mosaicolabs = pytest.importorskip("mosaicolabs")

from mosaicolabs import (
    GPS,
    IMU,
    Acceleration,
    Boolean,
    CompressedImage,
    Duration,
    Floating32,
    Floating64,
    ForceTorque,
    Header,
    Image,
    ImageFormat,
    Integer8,
    Integer16,
    Integer32,
    Integer64,
    Magnetometer,
    MotionState,
    Point3d,
    Pose,
    Pressure,
    Quaternion,
    RobotJoint,
    String,
    Temperature,
    Time,
    Transform,
    Unsigned8,
    Unsigned16,
    Unsigned32,
    Unsigned64,
    Vector3d,
    Velocity,
)
from mosaicolabs.bridges.ros.bridge import ROSBridge
from mosaicolabs.bridges.ros.data_ontology import FrameTransform, PointCloud2
from mosaicolabs.bridges.ros.helpers import _to_dict
from mosaicolabs.enum import SerializationFormat
from mosaicolabs.models.core.helpers import resolve_ontology_class
from mosaicolabs.models.core.message import Message
from mosaicolabs.models.core.serializable import _compute_schema_fingerprint
from mosaicolabs.models.core.unmodeled import Unmodeled

# --------------------------------------------------------------------------- #
# Shared bags
# --------------------------------------------------------------------------- #

SHARED = Path(os.environ.get("MOSAICO_SHARED", Path(__file__).resolve().parents[2] / "shared"))
BAGS = SHARED / "data" / "bags"

#: bag path (relative to BAGS) -> needs ROS2_HUMBLE as default typestore.
BAG_PATHS = {
    "ros1_husky_imu_odom_gps/husky_imu_odom_gps.bag": False,
    "ros1_turtlesim_multiconn/turtlesim_example.bag": False,
    "ros1_tf_lz4/tf_example.bag": False,
    "ros2_mcap_nav2_turtlebot/nav2_turtlebot.mcap": False,
    "ros2_sqlite3_cdr_test/cdr_test": False,
    "ros2_mcap_cdr_test/cdr_test": False,
    "ros2_sqlite3_split_wbag/wbag": True,
    "ros2_mcap_split_wbag/wbag": False,
}
HUSKY = "ros1_husky_imu_odom_gps/husky_imu_odom_gps.bag"
TURTLESIM = "ros1_turtlesim_multiconn/turtlesim_example.bag"
CDR_TEST = "ros2_mcap_cdr_test/cdr_test"


class Topic:
    """All messages of one topic of a bag, in reader order."""

    def __init__(self, msgtype, encoding, typestore):
        self.msgtype = msgtype
        self.encoding = encoding
        self.typestore = typestore
        self.timestamps: list[int] = []
        self.raws: list[bytes] = []

    def deserialize(self, raw):
        if self.encoding == "ros1":
            return self.typestore.deserialize_ros1(raw, self.msgtype)
        return self.typestore.deserialize_cdr(raw, self.msgtype)

    def messages(self):
        return [self.deserialize(raw) for raw in self.raws]

    def converter(self) -> TopicConverter:
        return make_converter(self.msgtype, self.typestore, self.encoding)


@cache
def read_bag(rel: str) -> dict[str, Topic]:
    path = BAGS / rel
    if not path.exists():
        pytest.skip(f"shared bag {rel} not found under {BAGS} (set MOSAICO_SHARED to the shared folder)")
    kwargs = {"default_typestore": get_typestore(Stores.ROS2_HUMBLE)} if BAG_PATHS[rel] else {}
    with AnyReader([path], **kwargs) as reader:
        encoding = "cdr" if reader.is2 else "ros1"
        topics = {
            name: Topic(info.msgtype, encoding, reader.typestore) for name, info in reader.topics.items()
        }
        for conn, t, raw in reader.messages():
            topics[conn.topic].timestamps.append(t)
            topics[conn.topic].raws.append(bytes(raw))
        for name, info in reader.topics.items():
            assert len(topics[name].raws) == info.msgcount
    return topics


_STRINGS = {name: "std_msgs/msg/String" for name in ["AAA", "BBB", "CCC", "DDD", "EEE", "FFF", "GGG", "HHH"]}
_TEST_MSGS = {"/array_topic": "test_msgs/msg/Arrays", "/test_topic": "test_msgs/msg/BasicTypes"}
#: Topics and types of the shared bags, from their README (parametrization must not need the files).
BAG_TOPICS = {
    HUSKY: {
        "/fix": "sensor_msgs/msg/NavSatFix",
        "/husky_velocity_controller/odom": "nav_msgs/msg/Odometry",
        "/imu/data": "sensor_msgs/msg/Imu",
    },
    TURTLESIM: {
        "/rosout": "rosgraph_msgs/msg/Log",
        "/tf": "tf/msg/tfMessage",
        "/tf_static": "tf2_msgs/msg/TFMessage",
        "/turtle1/cmd_vel": "geometry_msgs/msg/Twist",
        "/turtle1/color_sensor": "turtlesim/msg/Color",
        "/turtle1/pose": "turtlesim/msg/Pose",
        "/turtle2/cmd_vel": "geometry_msgs/msg/Twist",
        "/turtle2/color_sensor": "turtlesim/msg/Color",
        "/turtle2/pose": "turtlesim/msg/Pose",
    },
    "ros1_tf_lz4/tf_example.bag": {"/tf": "tf2_msgs/msg/TFMessage", "/tf_static": "tf2_msgs/msg/TFMessage"},
    "ros2_mcap_nav2_turtlebot/nav2_turtlebot.mcap": {
        "/amcl_pose": "geometry_msgs/msg/PoseWithCovarianceStamped",
        "/odom": "nav_msgs/msg/Odometry",
        "/tf": "tf2_msgs/msg/TFMessage",
        "/tf_static": "tf2_msgs/msg/TFMessage",
    },
    "ros2_sqlite3_cdr_test/cdr_test": _TEST_MSGS,
    CDR_TEST: _TEST_MSGS,
    "ros2_sqlite3_split_wbag/wbag": _STRINGS,
    "ros2_mcap_split_wbag/wbag": _STRINGS,
}


def bag_topics(only_types=None):
    return [
        (rel, topic)
        for rel, topics in BAG_TOPICS.items()
        for topic, msgtype in topics.items()
        if only_types is None or msgtype in only_types
    ]


def data_struct(schema: pa.Schema) -> pa.StructType:
    """The ontology part of a topic schema (what the SDK fingerprints)."""
    return pa.struct([f for f in schema if f.name != "timestamp_ns"])


def sdk_decode(conv: TopicConverter, batch: pa.RecordBatch):
    """Decode rows the way the SDK's topic reader does: class by tag + fingerprint."""
    struct = data_struct(batch.schema)
    cls = resolve_ontology_class(
        ontology_tag=conv.ontology_tag,
        schema=struct,
        schema_fingerprint=_compute_schema_fingerprint(struct),
        serialization_format=SerializationFormat(conv.serialization_format),
    )
    return cls, [Message._decode(tag_or_type=cls, **row) for row in batch.to_pylist()]


def same(a, b) -> bool:
    """Deep equality treating NaN == NaN."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


# --------------------------------------------------------------------------- #
# Messages built from a typestore definition
# --------------------------------------------------------------------------- #

NUMPY_TYPES = {
    "bool": np.bool_, "byte": np.int8, "char": np.uint8, "int8": np.int8, "uint8": np.uint8,
    "int16": np.int16, "uint16": np.uint16, "int32": np.int32, "uint32": np.uint32,
    "int64": np.int64, "uint64": np.uint64, "float32": np.float32, "float64": np.float64,
}


class Filler:
    """Builds a message of any type from its definition: zeros, or distinct non-zero values."""

    def __init__(self, typestore, fill: bool, seq_len: int = 2):
        self.ts = typestore
        self.fill = fill
        self.seq_len = seq_len
        self.counter = 0

    def _next(self):
        self.counter += 1
        return self.counter

    def scalar(self, base):
        if base == "string":
            return f"s{self._next()}" if self.fill else ""
        if base == "bool":
            return bool(self._next() % 2) if self.fill else False
        if not self.fill:
            return 0.0 if base.startswith("float") else 0
        v = self._next()
        if base.startswith("float"):
            return v + 0.25
        return v % 100  # fits every integer type

    def message(self, msgtype):
        cls = self.ts.types[msgtype]
        kwargs = {}
        for name, desc in self.ts.fielddefs[msgtype][1]:
            kwargs[normalize_fieldname(name)] = self.value(desc)
        return cls(**kwargs)

    def value(self, desc):
        node, content = desc
        if node == Nodetype.BASE:
            return self.scalar(content[0])
        if node == Nodetype.NAME:
            return self.message(content)
        (elem_node, elem), size = content
        n = size if node == Nodetype.ARRAY else (min(self.seq_len, size) if size else self.seq_len)
        if elem_node == Nodetype.NAME:
            return [self.message(elem) for _ in range(n)]
        if elem[0] == "string":
            return [self.scalar("string") for _ in range(n)]
        return np.array([self.scalar(elem[0]) for _ in range(n)], dtype=NUMPY_TYPES[elem[0]])


def serialize(typestore, msg, msgtype, encoding):
    if encoding == "cdr":
        return bytes(typestore.serialize_cdr(msg, msgtype))
    return bytes(typestore.serialize_ros1(msg, msgtype))


def deserialize(typestore, raw, msgtype, encoding):
    if encoding == "cdr":
        return typestore.deserialize_cdr(raw, msgtype)
    return typestore.deserialize_ros1(raw, msgtype)


def expected_generic_row(typestore, msgtype, msg) -> dict:
    """What a generic-layout row must hold for ``msg`` (rosbags message object)."""
    return {
        name: _expected_value(typestore, desc, getattr(msg, normalize_fieldname(name)))
        for name, desc in typestore.fielddefs[msgtype][1]
    }


def _expected_value(typestore, desc, value):
    node, content = desc
    if node == Nodetype.BASE:
        return value
    if node == Nodetype.NAME:
        return expected_generic_row(typestore, content, value)
    (elem_node, elem), _ = content
    if elem_node == Nodetype.NAME:
        return [expected_generic_row(typestore, elem, v) for v in value]
    if elem[0] == "string":
        return list(value)
    return np.asarray(value).tolist()


# --------------------------------------------------------------------------- #
# 1. Known types: Arrow layout == SDK ontology class struct
# --------------------------------------------------------------------------- #

SDK_CLASS = {
    "sensor_msgs/msg/Imu": IMU,
    "sensor_msgs/msg/NavSatFix": GPS,
    "sensor_msgs/msg/Image": Image,
    "sensor_msgs/msg/CompressedImage": CompressedImage,
    "sensor_msgs/msg/PointCloud2": PointCloud2,
    "sensor_msgs/msg/JointState": RobotJoint,
    "sensor_msgs/msg/MagneticField": Magnetometer,
    "sensor_msgs/msg/Temperature": Temperature,
    "sensor_msgs/msg/FluidPressure": Pressure,
    "nav_msgs/msg/Odometry": MotionState,
    "geometry_msgs/msg/Pose": Pose,
    "geometry_msgs/msg/PoseStamped": Pose,
    "geometry_msgs/msg/PoseWithCovariance": Pose,
    "geometry_msgs/msg/PoseWithCovarianceStamped": Pose,
    "geometry_msgs/msg/Twist": Velocity,
    "geometry_msgs/msg/TwistStamped": Velocity,
    "geometry_msgs/msg/TwistWithCovariance": Velocity,
    "geometry_msgs/msg/TwistWithCovarianceStamped": Velocity,
    "geometry_msgs/msg/Accel": Acceleration,
    "geometry_msgs/msg/AccelStamped": Acceleration,
    "geometry_msgs/msg/AccelWithCovariance": Acceleration,
    "geometry_msgs/msg/AccelWithCovarianceStamped": Acceleration,
    "geometry_msgs/msg/Transform": Transform,
    "geometry_msgs/msg/TransformStamped": Transform,
    "geometry_msgs/msg/Vector3": Vector3d,
    "geometry_msgs/msg/Vector3Stamped": Vector3d,
    "geometry_msgs/msg/Point": Point3d,
    "geometry_msgs/msg/PointStamped": Point3d,
    "geometry_msgs/msg/Quaternion": Quaternion,
    "geometry_msgs/msg/QuaternionStamped": Quaternion,
    "geometry_msgs/msg/Wrench": ForceTorque,
    "geometry_msgs/msg/WrenchStamped": ForceTorque,
    "tf2_msgs/msg/TFMessage": FrameTransform,
    "tf/msg/tfMessage": FrameTransform,
    "std_msgs/msg/String": String,
    "std_msgs/msg/Bool": Boolean,
    "std_msgs/msg/Int8": Integer8,
    "std_msgs/msg/Int16": Integer16,
    "std_msgs/msg/Int32": Integer32,
    "std_msgs/msg/Int64": Integer64,
    "std_msgs/msg/UInt8": Unsigned8,
    "std_msgs/msg/UInt16": Unsigned16,
    "std_msgs/msg/UInt32": Unsigned32,
    "std_msgs/msg/UInt64": Unsigned64,
    "std_msgs/msg/Float32": Floating32,
    "std_msgs/msg/Float64": Floating64,
    "std_msgs/msg/Header": Header,
    "builtin_interfaces/msg/Time": Time,
    "builtin_interfaces/msg/Duration": Duration,
}

REQUIRED_KNOWN = [
    "sensor_msgs/msg/Imu", "sensor_msgs/msg/NavSatFix", "sensor_msgs/msg/Image",
    "sensor_msgs/msg/CompressedImage", "sensor_msgs/msg/PointCloud2", "nav_msgs/msg/Odometry",
    "geometry_msgs/msg/PoseStamped", "geometry_msgs/msg/PoseWithCovarianceStamped",
    "geometry_msgs/msg/Twist", "geometry_msgs/msg/TwistStamped", "geometry_msgs/msg/TransformStamped",
    "tf2_msgs/msg/TFMessage", "tf/msg/tfMessage", "std_msgs/msg/String", "std_msgs/msg/Bool",
    "std_msgs/msg/Int8", "std_msgs/msg/Int16", "std_msgs/msg/Int32", "std_msgs/msg/Int64",
    "std_msgs/msg/UInt8", "std_msgs/msg/UInt16", "std_msgs/msg/UInt32", "std_msgs/msg/UInt64",
    "std_msgs/msg/Float32", "std_msgs/msg/Float64",
]


@cache
def ros2_store():
    return get_typestore(Stores.ROS2_HUMBLE)


@cache
def ros1_store():
    """ROS 1 Noetic types plus the legacy tf/tfMessage and tf2_msgs/TFMessage."""
    store = get_typestore(Stores.ROS1_NOETIC)
    tf_def = "geometry_msgs/TransformStamped[] transforms"
    store.register(get_types_from_msg(tf_def, "tf/msg/tfMessage"))
    store.register(get_types_from_msg(tf_def, "tf2_msgs/msg/TFMessage"))
    return store


def store_for(msgtype, encoding):
    if encoding == "ros1" or msgtype not in ros2_store().fielddefs:
        return ros1_store(), "ros1"
    return ros2_store(), "cdr"


def test_every_required_type_is_known():
    assert set(REQUIRED_KNOWN) <= set(ONTOLOGY_LAYOUTS)
    assert set(ONTOLOGY_LAYOUTS) == set(SDK_CLASS)


@pytest.mark.parametrize("encoding", ["cdr", "ros1"])
@pytest.mark.parametrize("msgtype", sorted(SDK_CLASS))
def test_known_layout_equals_sdk_struct(msgtype, encoding):
    store, encoding = store_for(msgtype, encoding)
    if msgtype not in store.fielddefs:
        pytest.skip(f"{msgtype} not in the {encoding} typestore")
    conv = make_converter(msgtype, store, encoding)
    cls = SDK_CLASS[msgtype]
    sdk_struct = cls.__msco_pyarrow_struct__

    assert not conv.is_generic
    assert conv.ontology_tag == cls.__ontology_tag__
    assert conv.serialization_format == cls.__serialization_format__.value
    assert conv.schema.metadata is None
    assert conv.schema.field(0) == pa.field("timestamp_ns", pa.int64(), nullable=False)
    ours = list(conv.schema)[1:]
    assert [f.name for f in ours] == sdk_struct.names
    for mine, theirs in zip(ours, sdk_struct):
        assert mine.type == theirs.type, mine.name
        assert mine.nullable == theirs.nullable, mine.name
    # What the SDK uses to pick its class on read.
    assert _compute_schema_fingerprint(data_struct(conv.schema)) == cls.__schema_fingerprint__


def test_known_type_fingerprints_cover_image_formats():
    assert make_converter("sensor_msgs/msg/Image", ros2_store()).serialization_format == "image"
    assert make_converter("sensor_msgs/msg/CompressedImage", ros2_store()).serialization_format == "image"
    assert make_converter("sensor_msgs/msg/PointCloud2", ros2_store()).serialization_format == "default"


# --------------------------------------------------------------------------- #
# 2. Every topic of every shared bag
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("rel,topic", bag_topics())
def test_every_bag_topic_converts(rel, topic):
    t = read_bag(rel)[topic]
    assert t.msgtype == BAG_TOPICS[rel][topic]
    conv = t.converter()
    batch = conv.convert(t.timestamps, t.raws)
    batch.validate(full=True)
    assert batch.schema == conv.schema
    assert batch.num_rows == len(t.raws) > 0
    assert batch.column("timestamp_ns").to_pylist() == t.timestamps
    assert conv.msgtype == t.msgtype
    json.dumps(conv.topic_metadata)
    assert conv.estimate_row_bytes(len(t.raws[0])) > len(t.raws[0])
    # The SDK decodes every row (typed class for known types, Unmodeled otherwise).
    cls, msgs = sdk_decode(conv, batch)
    assert len(msgs) == batch.num_rows
    assert [m.timestamp_ns for m in msgs] == t.timestamps
    assert issubclass(cls, Unmodeled) == conv.is_generic


@pytest.mark.parametrize("rel,topic", bag_topics(only_types=ONTOLOGY_LAYOUTS))
def test_bag_topics_match_sdk_adapters(rel, topic):
    """Known types: every decoded row equals what the SDK's own ROS adapter makes of the message."""
    t = read_bag(rel)[topic]
    conv = t.converter()
    assert not conv.is_generic
    adapter = ROSBridge.get_default_adapter(
        "tf2_msgs/msg/TFMessage" if t.msgtype == "tf/msg/tfMessage" else t.msgtype
    )
    _, msgs = sdk_decode(conv, conv.convert(t.timestamps, t.raws))
    for i, (ours, msg) in enumerate(zip(msgs, t.messages())):
        expected = adapter.from_dict(_to_dict(msg)[0]).model_dump()
        assert same(ours.data.model_dump(), expected), f"row {i}"


# --------------------------------------------------------------------------- #
# 3. Values of the husky bag (Imu, NavSatFix, Odometry)
# --------------------------------------------------------------------------- #


def _cov(values):
    values = [float(v) for v in values]
    return values if any(v > 0 for v in values) else None


def _header(h, seq=True):
    if not h.frame_id and h.stamp.sec == 0 and h.stamp.nanosec == 0:
        return None
    return {
        "timestamp": {"seconds": h.stamp.sec, "nanoseconds": h.stamp.nanosec},
        "frame_id": h.frame_id,
        "sample_counter": h.seq if seq else None,
    }


def _vec(v, cov=None, cov_type=None, names=("x", "y", "z")):
    return {
        "header": None, "covariance": cov, "covariance_type": cov_type,
        **{axis: getattr(v, n) for axis, n in zip("xyz", names)},
    }


def _quat(q, cov=None):
    return {**_vec(q, cov), "w": q.w}


def test_husky_imu_values():
    t = read_bag(HUSKY)["/imu/data"]
    conv = t.converter()
    assert conv.ontology_tag == "IMU" and t.encoding == "ros1"
    rows = conv.convert(t.timestamps, t.raws).to_pylist()
    msgs = t.messages()
    assert len(rows) == len(msgs) == 11865
    with_orientation = 0
    for row, m in zip(rows, msgs):
        assert row["header"] == _header(m.header)
        assert row["header"]["sample_counter"] == m.header.seq  # ROS 1 seq kept
        assert row["acceleration"] == _vec(m.linear_acceleration, _cov(m.linear_acceleration_covariance))
        assert row["angular_velocity"] == _vec(m.angular_velocity, _cov(m.angular_velocity_covariance))
        if m.orientation_covariance[0] == -1:
            assert row["orientation"] is None
        else:
            with_orientation += 1
            assert row["orientation"] == _quat(m.orientation, _cov(m.orientation_covariance))
    assert with_orientation > 0


def test_husky_navsatfix_values():
    t = read_bag(HUSKY)["/fix"]
    rows = t.converter().convert(t.timestamps, t.raws).to_pylist()
    for row, m in zip(rows, t.messages()):
        cov = _cov(m.position_covariance)
        assert row["header"] == _header(m.header)
        assert row["position"] == _vec(
            m, cov, m.position_covariance_type if cov else None, names=("latitude", "longitude", "altitude")
        )
        assert 40 < row["position"]["x"] < 45 and -80 < row["position"]["y"] < -70  # real GPS fix
        assert row["velocity"] is None
        assert row["status"] == {
            "status": m.status.status, "service": m.status.service,
            "satellites": None, "hdop": None, "vdop": None,
        }


def test_husky_odometry_values():
    t = read_bag(HUSKY)["/husky_velocity_controller/odom"]
    conv = t.converter()
    assert conv.ontology_tag == "MotionState"
    rows = conv.convert(t.timestamps, t.raws).to_pylist()
    for row, m in zip(rows, t.messages()):
        assert row["header"] == _header(m.header)
        assert row["covariance"] is None and row["acceleration"] is None
        assert row["target_frame_id"] == m.child_frame_id
        p = m.pose.pose
        assert row["pose"] == {
            "header": None, "covariance": _cov(m.pose.covariance), "covariance_type": None,
            "position": _vec(p.position), "orientation": _quat(p.orientation),
        }
        tw = m.twist.twist
        assert row["velocity"] == {
            "header": None, "covariance": _cov(m.twist.covariance), "covariance_type": None,
            "linear": _vec(tw.linear), "angular": _vec(tw.angular),
        }


def test_ros2_header_has_no_sample_counter():
    t = read_bag("ros2_mcap_nav2_turtlebot/nav2_turtlebot.mcap")["/odom"]
    rows = t.converter().convert(t.timestamps[:20], t.raws[:20]).to_pylist()
    for row, m in zip(rows, t.messages()):
        assert row["header"] == _header(m.header, seq=False)


def test_ros1_tf_message_is_frame_transform():
    t = read_bag(TURTLESIM)["/tf"]
    conv = t.converter()
    assert t.msgtype == "tf/msg/tfMessage"
    assert (conv.ontology_tag, conv.is_generic) == ("FrameTransform", False)
    rows = conv.convert(t.timestamps, t.raws).to_pylist()
    for row, m in zip(rows, t.messages()):
        assert len(row["transforms"]) == len(m.transforms)
        for tr, ros in zip(row["transforms"], m.transforms):
            assert tr["header"] == _header(ros.header)
            assert tr["target_frame_id"] == (ros.child_frame_id or None)
            assert tr["translation"] == _vec(ros.transform.translation)
            assert tr["rotation"] == _quat(ros.transform.rotation)


# --------------------------------------------------------------------------- #
# 4. Generic layout
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    "rel,topic,tag",
    [
        (CDR_TEST, "/test_topic", "BasicTypes"),
        (CDR_TEST, "/array_topic", "Arrays"),
        ("ros2_sqlite3_cdr_test/cdr_test", "/array_topic", "Arrays"),
        (TURTLESIM, "/turtle1/pose", "turtlesim_Pose"),
        (TURTLESIM, "/turtle2/color_sensor", "Color"),
        (TURTLESIM, "/rosout", "Log"),
    ],
)
def test_generic_bag_topics_are_lossless(rel, topic, tag):
    t = read_bag(rel)[topic]
    conv = t.converter()
    assert conv.is_generic
    assert conv.ontology_tag == tag
    assert conv.serialization_format == "default"
    assert conv.topic_metadata["_ros_"]["layout"] == "generic"
    rows = conv.convert(t.timestamps, t.raws).to_pylist()
    for row, ts, m in zip(rows, t.timestamps, t.messages()):
        assert row.pop("timestamp_ns") == ts
        assert same(row, expected_generic_row(t.typestore, t.msgtype, m))


def test_generic_schema_of_test_msgs():
    t = read_bag(CDR_TEST)["/array_topic"]
    schema = t.converter().schema
    types = {f.name: f.type for f in schema}
    assert all(not f.nullable for f in schema)
    # Byte arrays are integer lists (the SDK's Unmodeled adapter needs lists to rebuild ROS messages).
    assert types["byte_values"] == pa.list_(pa.field("item", pa.int8(), nullable=False), 3)
    assert types["char_values"] == pa.list_(pa.field("item", pa.uint8(), nullable=False), 3)
    assert types["uint8_values"] == pa.list_(pa.field("item", pa.uint8(), nullable=False), 3)
    assert types["uint64_values"] == pa.list_(pa.field("item", pa.uint64(), nullable=False), 3)
    assert types["string_values"] == pa.list_(pa.field("item", pa.string(), nullable=False), 3)
    assert pa.types.is_fixed_size_list(types["basic_types_values"])
    assert pa.types.is_struct(types["basic_types_values"].value_type)
    basic = {f.name: f.type for f in read_bag(CDR_TEST)["/test_topic"].converter().schema}
    assert basic["byte_value"] == pa.int8() and basic["char_value"] == pa.uint8()
    assert basic["uint64_value"] == pa.uint64() and basic["float32_value"] == pa.float32()
    log = {f.name: f.type for f in read_bag(TURTLESIM)["/rosout"].converter().schema}
    assert log["header"] == pa.struct(
        [
            pa.field("seq", pa.uint32(), nullable=False),
            pa.field("stamp", pa.struct([pa.field("sec", pa.int32(), nullable=False),
                                         pa.field("nanosec", pa.uint32(), nullable=False)]), nullable=False),
            pa.field("frame_id", pa.string(), nullable=False),
        ]
    )
    assert log["topics"] == pa.list_(pa.field("item", pa.string(), nullable=False))


def test_generic_extreme_values_round_trip():
    """uint64/int64/int8 extremes and arrays, built with the bag's own test_msgs definitions."""
    t = read_bag(CDR_TEST)["/array_topic"]
    store = t.typestore
    basic_cls = store.types["test_msgs/msg/BasicTypes"]

    def basic(sign):
        big = sign > 0
        return basic_cls(
            bool_value=big, byte_value=-128 if not big else 127, char_value=255 if big else 0,
            float32_value=3.4028234663852886e38 if big else -1.5,
            float64_value=1.7976931348623157e308 if big else -0.0,
            int8_value=127 if big else -128, uint8_value=255 if big else 0,
            int16_value=32767 if big else -32768, uint16_value=65535 if big else 0,
            int32_value=2**31 - 1 if big else -(2**31), uint32_value=2**32 - 1 if big else 0,
            int64_value=2**63 - 1 if big else -(2**63), uint64_value=2**64 - 1 if big else 0,
        )

    raws = [serialize(store, basic(s), "test_msgs/msg/BasicTypes", "cdr") for s in (1, -1)]
    conv = make_converter("test_msgs/msg/BasicTypes", store, "cdr")
    rows = conv.convert([1, 2], raws).to_pylist()
    assert rows[0]["uint64_value"] == 2**64 - 1 and rows[1]["uint64_value"] == 0
    assert rows[0]["int64_value"] == 2**63 - 1 and rows[1]["int64_value"] == -(2**63)
    assert rows[0]["byte_value"] == 127 and rows[1]["byte_value"] == -128
    assert rows[0]["float64_value"] == 1.7976931348623157e308
    for row, s in zip(rows, (1, -1)):
        row.pop("timestamp_ns")
        assert same(row, expected_generic_row(store, "test_msgs/msg/BasicTypes", basic(s)))

    arrays = Filler(store, fill=True).message("test_msgs/msg/Arrays")
    arrays.uint64_values = np.array([2**64 - 1, 0, 2**63], dtype=np.uint64)
    arrays.int64_values = np.array([-(2**63), 2**63 - 1, 0], dtype=np.int64)
    arrays.byte_values = np.array([-1, 0, 127], dtype=np.int8)
    arrays.uint8_values = np.array([255, 0, 1], dtype=np.uint8)
    arrays.basic_types_values = [basic(1), basic(-1), basic(1)]
    raw = serialize(store, arrays, "test_msgs/msg/Arrays", "cdr")
    conv = make_converter("test_msgs/msg/Arrays", store, "cdr")
    row = conv.convert([7], [raw]).to_pylist()[0]
    assert row["uint64_values"] == [2**64 - 1, 0, 2**63]
    assert row["int64_values"] == [-(2**63), 2**63 - 1, 0]
    assert row["byte_values"] == [-1, 0, 127]
    assert row["uint8_values"] == [255, 0, 1]
    assert row["basic_types_values"][0]["uint64_value"] == 2**64 - 1
    row.pop("timestamp_ns")
    decoded = store.deserialize_cdr(raw, "test_msgs/msg/Arrays")
    assert same(row, expected_generic_row(store, "test_msgs/msg/Arrays", decoded))


def test_generic_topics_decode_as_sdk_unmodeled():
    for rel, topic in [(TURTLESIM, "/rosout"), (TURTLESIM, "/turtle1/pose"), (CDR_TEST, "/array_topic")]:
        t = read_bag(rel)[topic]
        conv = t.converter()
        batch = conv.convert(t.timestamps, t.raws)
        cls, msgs = sdk_decode(conv, batch)
        assert issubclass(cls, Unmodeled)
        assert cls.ontology_tag() == conv.ontology_tag
        for msg, row in zip(msgs, batch.to_pylist()):
            row.pop("timestamp_ns")
            assert same(msg.data.raw_data, row)


def test_generic_tag_rule():
    from mosaico_bridge.conversion import generic_ontology_tag

    assert generic_ontology_tag("turtlesim/msg/Color") == "Color"
    assert generic_ontology_tag("rosgraph_msgs/msg/Log") == "Log"
    # Would collide with a modeled SDK ontology tag: package prefix.
    assert generic_ontology_tag("turtlesim/msg/Pose") == "turtlesim_Pose"
    assert generic_ontology_tag("my_msgs/msg/Imu") == "my_msgs_Imu"
    assert generic_ontology_tag("std_msgs/msg/Time") == "std_msgs_Time"


@pytest.mark.parametrize("store_name", ["ROS2_HUMBLE", "ROS1_NOETIC"])
def test_every_type_of_a_standard_typestore_converts(store_name):
    """Every type of rosbags' Humble / Noetic stores: layout builds, zero and filled messages convert."""
    store = get_typestore(getattr(Stores, store_name))
    encoding = "ros1" if store_name == "ROS1_NOETIC" else "cdr"
    failures = []
    for msgtype in sorted(store.fielddefs):
        try:
            conv = make_converter(msgtype, store, encoding)
            msgs = [Filler(store, fill=False).message(msgtype), Filler(store, fill=True).message(msgtype)]
            raws = [serialize(store, m, msgtype, encoding) for m in msgs]
            batch = conv.convert([10, 20], raws)
            batch.validate(full=True)
            assert batch.num_rows == 2 and batch.schema == conv.schema
            json.dumps(conv.topic_metadata)
            if conv.is_generic:
                for row, raw in zip(batch.to_pylist(), raws):
                    row.pop("timestamp_ns")
                    decoded = deserialize(store, raw, msgtype, encoding)
                    assert same(row, expected_generic_row(store, msgtype, decoded)), msgtype
        except Exception as exc:  # noqa: BLE001 - collect, to report every failing type at once
            failures.append(f"{msgtype}: {exc!r}")
    assert not failures, "\n".join(failures)


# --------------------------------------------------------------------------- #
# 5. Synthetic Image / CompressedImage / PointCloud2 (and other known types)
# --------------------------------------------------------------------------- #


def _header_msg(store, sec, nanosec, frame, seq=None):
    Hdr = store.types["std_msgs/msg/Header"]
    Tm = store.types["builtin_interfaces/msg/Time"]
    kw = {"stamp": Tm(sec=sec, nanosec=nanosec), "frame_id": frame}
    if seq is not None:
        kw["seq"] = seq
    return Hdr(**kw)


@pytest.mark.parametrize("encoding", ["cdr", "ros1"])
def test_synthetic_image(encoding):
    store = ros2_store() if encoding == "cdr" else ros1_store()
    seq = 7 if encoding == "ros1" else None
    Img = store.types["sensor_msgs/msg/Image"]
    rng = np.random.default_rng(1)
    pixels = [rng.integers(0, 256, size=h * w * 3, dtype=np.uint8) for h, w in ((4, 5), (480, 640), (1, 1))]
    msgs = [
        Img(header=_header_msg(store, 10 + i, 20 + i, "cam", seq), height=h, width=w, encoding="rgb8",
            is_bigendian=i % 2, step=w * 3, data=px)
        for i, ((h, w), px) in enumerate(zip(((4, 5), (480, 640), (1, 1)), pixels))
    ]
    raws = [serialize(store, m, "sensor_msgs/msg/Image", encoding) for m in msgs]
    conv = make_converter("sensor_msgs/msg/Image", store, encoding)
    batch = conv.convert([1, 2, 3], raws)
    rows = batch.to_pylist()
    for row, m, px in zip(rows, msgs, pixels):
        assert row["data"] == px.tobytes()
        assert (row["width"], row["height"], row["stride"]) == (m.width, m.height, m.step)
        assert row["encoding"] == "rgb8" and row["format"] == "raw"
        assert row["is_bigendian"] == bool(m.is_bigendian)
        assert row["header"]["sample_counter"] == seq
    _, decoded = sdk_decode(conv, batch)
    assert isinstance(decoded[1].data, Image)
    assert bytes(decoded[1].data.to_linear_pixels()) == pixels[1].tobytes()
    # Same as the SDK adapter asked for raw output.
    adapter = ROSBridge.get_default_adapter("sensor_msgs/msg/Image")
    for ours, m in zip(decoded, msgs):
        expected = adapter.from_dict(_to_dict(m)[0], output_format=ImageFormat.RAW).model_dump()
        assert same(ours.data.model_dump(), expected)


@pytest.mark.parametrize("encoding", ["cdr", "ros1"])
def test_synthetic_compressed_image(encoding):
    store = ros2_store() if encoding == "cdr" else ros1_store()
    Cmp = store.types["sensor_msgs/msg/CompressedImage"]
    payloads = [b"\xff\xd8\xff\xe0" + bytes(range(256)) * 40, b"\x89PNG\r\n\x1a\n" + b"\x00" * 99, b""]
    formats = ["jpeg", "bgr8; png compressed bgr8", "16UC1; compressedDepth"]
    msgs = [
        Cmp(header=_header_msg(store, 0, 0, "", 0 if encoding == "ros1" else None), format=f,
            data=np.frombuffer(p, dtype=np.uint8))
        for f, p in zip(formats, payloads)
    ]
    raws = [serialize(store, m, "sensor_msgs/msg/CompressedImage", encoding) for m in msgs]
    conv = make_converter("sensor_msgs/msg/CompressedImage", store, encoding)
    batch = conv.convert([5, 6, 7], raws)
    rows = batch.to_pylist()
    assert [r["data"] for r in rows] == payloads
    assert [r["format"] for r in rows] == ["jpeg", "png", "png"]
    assert all(r["header"] is None for r in rows)  # empty frame_id + zero stamp
    _, decoded = sdk_decode(conv, batch)
    assert isinstance(decoded[0].data, CompressedImage) and decoded[0].data.data == payloads[0]


def test_compressed_image_format_strings():
    assert compressed_image_format("jpeg") == "jpeg"
    assert compressed_image_format("rgb8; jpeg compressed bgr8") == "jpeg"
    assert compressed_image_format("16UC1; compressedDepth png") == "png"
    assert compressed_image_format("h264") == "h264"
    assert compressed_image_format("") == "png"
    assert compressed_image_format("bgr8; theora compressed") == "raw"


@pytest.mark.parametrize("encoding", ["cdr", "ros1"])
def test_synthetic_pointcloud2(encoding):
    store = ros2_store() if encoding == "cdr" else ros1_store()
    PC = store.types["sensor_msgs/msg/PointCloud2"]
    PF = store.types["sensor_msgs/msg/PointField"]
    fields = [PF(name=n, offset=4 * i, datatype=7, count=1) for i, n in enumerate("xyz")]
    clouds = [np.arange(n * 3, dtype=np.float32) for n in (10, 0, 1000)]
    msgs = [
        PC(header=_header_msg(store, 3, 4, "lidar", 1 if encoding == "ros1" else None), height=1,
           width=len(c) // 3, fields=fields if len(c) else [], is_bigendian=False, point_step=12,
           row_step=len(c) * 4, data=c.view(np.uint8), is_dense=True)
        for c in clouds
    ]
    raws = [serialize(store, m, "sensor_msgs/msg/PointCloud2", encoding) for m in msgs]
    conv = make_converter("sensor_msgs/msg/PointCloud2", store, encoding)
    batch = conv.convert([1, 2, 3], raws)
    rows = batch.to_pylist()
    for row, m, c in zip(rows, msgs, clouds):
        assert row["data"] == c.tobytes()
        assert row["width"] == m.width and row["row_step"] == m.row_step and row["point_step"] == 12
        assert row["fields"] == [
            {"name": f.name, "offset": f.offset, "datatype": 7, "count": 1} for f in m.fields
        ]
        assert row["is_dense"] is True and row["is_bigendian"] is False
    _, decoded = sdk_decode(conv, batch)
    assert isinstance(decoded[2].data, PointCloud2)
    assert np.array_equal(np.frombuffer(decoded[2].data.data, dtype=np.float32), clouds[2])


@pytest.mark.parametrize("encoding", ["cdr", "ros1"])
@pytest.mark.parametrize("msgtype", sorted(set(SDK_CLASS) - {"sensor_msgs/msg/Image"}))
def test_synthetic_known_types_match_sdk_adapters(msgtype, encoding):
    """Zero-filled and value-filled messages of every known type: same result as the SDK adapter."""
    store, encoding = store_for(msgtype, encoding)
    if msgtype not in store.fielddefs:
        pytest.skip(f"{msgtype} not in the {encoding} typestore")
    adapter = ROSBridge.get_default_adapter(
        "tf2_msgs/msg/TFMessage" if msgtype == "tf/msg/tfMessage" else msgtype
    )
    msgs = [Filler(store, fill=False).message(msgtype), Filler(store, fill=True).message(msgtype)]
    if msgtype == "sensor_msgs/msg/Imu":  # "no orientation" marker
        third = Filler(store, fill=True).message(msgtype)
        third.orientation_covariance[0] = -1.0
        msgs.append(third)
    if msgtype == "sensor_msgs/msg/PointCloud2":  # the SDK only accepts PointField datatypes 1..8
        for m in msgs:
            for f in m.fields:
                f.datatype = 7
    raws = [serialize(store, m, msgtype, encoding) for m in msgs]
    conv = make_converter(msgtype, store, encoding)
    _, decoded = sdk_decode(conv, conv.convert(list(range(len(raws))), raws))
    for i, (ours, raw) in enumerate(zip(decoded, raws)):
        msg = deserialize(store, raw, msgtype, encoding)
        expected = adapter.from_dict(_to_dict(msg)[0]).model_dump()
        assert same(ours.data.model_dump(), expected), f"message {i}"


def test_imu_null_rules():
    store = ros2_store()
    f = Filler(store, fill=True)
    m = f.message("sensor_msgs/msg/Imu")
    m.orientation_covariance = np.array([-1.0] + [0.0] * 8)
    m.linear_acceleration_covariance = np.zeros(9)
    m.header = _header_msg(store, 0, 0, "")
    raw = serialize(store, m, "sensor_msgs/msg/Imu", "cdr")
    row = make_converter("sensor_msgs/msg/Imu", store).convert([0], [raw]).to_pylist()[0]
    assert row["orientation"] is None
    assert row["header"] is None
    assert row["acceleration"]["covariance"] is None
    assert row["angular_velocity"]["covariance"] == m.angular_velocity_covariance.tolist()


# --------------------------------------------------------------------------- #
# 6. Errors, metadata, threads, batching helpers
# --------------------------------------------------------------------------- #


def test_corrupt_payload_raises_conversion_error_with_type_and_index():
    t = read_bag(HUSKY)["/imu/data"]
    conv = t.converter()
    raws = list(t.raws[:5])
    raws[3] = raws[3][:40]  # truncated
    with pytest.raises(ConversionError, match=r"sensor_msgs/msg/Imu.*message 3") as info:
        conv.convert(t.timestamps[:5], raws)
    assert info.value.index == 3 and info.value.msgtype == "sensor_msgs/msg/Imu"
    assert "\n" not in str(info.value)
    cdr = make_converter("nav_msgs/msg/Odometry", ros2_store(), "cdr")
    with pytest.raises(ConversionError, match=r"nav_msgs/msg/Odometry.*message 0"):
        cdr.convert([1], [b"\x07\x07garbage"])


def test_corrupt_payload_beyond_first_chunk_names_absolute_index():
    t = read_bag(HUSKY)["/imu/data"]
    conv = t.converter()
    n = TopicConverter.CHUNK_ROWS + 10
    raws = list(t.raws[:n])
    raws[n - 2] = b"\x00" * 8
    with pytest.raises(ConversionError) as info:
        conv.convert(t.timestamps[:n], raws)
    assert info.value.index == n - 2


def test_make_converter_errors():
    with pytest.raises(ConversionError, match="my_msgs/msg/Nope"):
        make_converter("my_msgs/msg/Nope", ros2_store())
    with pytest.raises(ConversionError, match="sensor_msgs/msg/Imu.*encoding"):
        make_converter("sensor_msgs/msg/Imu", ros2_store(), "json")
    store = get_typestore(Stores.EMPTY)
    store.register(get_types_from_msg("other_msgs/Missing thing", "my_msgs/msg/Outer"))
    with pytest.raises(ConversionError, match="other_msgs/msg/Missing.*my_msgs/msg/Outer"):
        make_converter("my_msgs/msg/Outer", store)
    assert not issubclass(ConversionError, ValueError)
    conv = make_converter("std_msgs/msg/String", ros2_store())
    with pytest.raises(ConversionError, match="2 timestamps for 1 messages"):
        conv.convert([1, 2], [b""])


def test_known_name_with_other_definition_falls_back_to_generic():
    store = get_typestore(Stores.EMPTY)
    store.register(get_types_from_msg("float64 x\nstring note", "sensor_msgs/msg/Imu"))
    conv = make_converter("sensor_msgs/msg/Imu", store)
    assert conv.is_generic and conv.ontology_tag == "sensor_msgs_Imu"
    raw = serialize(store, store.types["sensor_msgs/msg/Imu"](x=1.5, note="hi"), "sensor_msgs/msg/Imu", "cdr")
    assert conv.convert([1], [raw]).to_pylist() == [{"timestamp_ns": 1, "x": 1.5, "note": "hi"}]


@pytest.mark.parametrize(
    "rel,topic",
    [
        (TURTLESIM, "/tf"),
        (TURTLESIM, "/rosout"),
        ("ros2_mcap_nav2_turtlebot/nav2_turtlebot.mcap", "/odom"),
        (CDR_TEST, "/array_topic"),
    ],
)
def test_topic_metadata_rebuilds_the_definition(rel, topic):
    t = read_bag(rel)[topic]
    meta = t.converter().topic_metadata
    assert json.loads(json.dumps(meta)) == meta
    ros = meta["_ros_"]
    assert ros["msgtype"] == t.msgtype
    # msgdef is always in ROS 2 terms: a ROS 2 typestore (what the SDK's extractor
    # registers it in) takes it, nested std_msgs/Header included.
    assert ros["msgdef_encoding"] == "ros2msg"
    assert ros["message_encoding"] == t.encoding
    get_typestore(Stores.ROS2_KILTED).register(get_types_from_msg(ros["msgdef"], t.msgtype))
    # A reader rebuilds the ROS types from the stored definition text of the bag's own
    # generation (ROS 1: msgdef_ros1)...
    text = ros["msgdef_ros1"] if t.encoding == "ros1" else ros["msgdef"]
    rebuilt = get_types_from_msg(text, t.msgtype)
    assert [(n.lower(), d) for n, d in rebuilt[t.msgtype][1]] == [
        (n.lower(), d) for n, d in t.typestore.fielddefs[t.msgtype][1]
    ]
    # ... and deserializes the original messages with them.
    store = get_typestore(Stores.EMPTY)
    store.register(rebuilt)
    if t.encoding == "ros1":
        assert ros["md5sum"] and store.deserialize_ros1(t.raws[0], t.msgtype) is not None
    else:
        assert store.deserialize_cdr(t.raws[0], t.msgtype) is not None


def test_topic_metadata_enums():
    t = read_bag(TURTLESIM)["/rosout"]
    assert t.converter().topic_metadata["_ros_"]["enums"] == {
        "DEBUG": 1, "INFO": 2, "WARN": 4, "ERROR": 8, "FATAL": 16,
    }


def test_convert_is_thread_safe():
    t = read_bag(HUSKY)["/imu/data"]
    conv = t.converter()
    size = 700
    chunks = [(t.timestamps[i:i + size], t.raws[i:i + size]) for i in range(0, len(t.raws), size)]
    expected = [conv.convert(ts, raws) for ts, raws in chunks]
    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(2):
            got = list(pool.map(lambda c: conv.convert(*c), chunks))
            assert all(a.equals(b) for a, b in zip(got, expected))


def test_empty_batch_and_memoryview_input():
    t = read_bag(HUSKY)["/fix"]
    conv = t.converter()
    empty = conv.convert([], [])
    assert empty.num_rows == 0 and empty.schema == conv.schema
    views = [memoryview(r) for r in t.raws[:10]]
    assert conv.convert(t.timestamps[:10], views).equals(conv.convert(t.timestamps[:10], t.raws[:10]))


def test_chunked_conversion_equals_one_by_one():
    t = read_bag(HUSKY)["/husky_velocity_controller/odom"]
    conv = t.converter()
    n = 2 * TopicConverter.CHUNK_ROWS + 3
    whole = conv.convert(t.timestamps[:n], t.raws[:n])
    singles = [conv.convert([ts], [raw]) for ts, raw in zip(t.timestamps[:n], t.raws[:n])]
    parts = pa.Table.from_batches(singles)
    assert pa.Table.from_batches([whole]).equals(parts)


def test_estimate_row_bytes_is_in_the_right_range():
    nav2 = "ros2_mcap_nav2_turtlebot/nav2_turtlebot.mcap"
    for rel, topic in [(HUSKY, "/imu/data"), (HUSKY, "/fix"), (nav2, "/tf")]:
        t = read_bag(rel)[topic]
        conv = t.converter()
        batch = conv.convert(t.timestamps, t.raws)
        actual = batch.nbytes / batch.num_rows
        estimate = sum(conv.estimate_row_bytes(len(r)) for r in t.raws) / len(t.raws)
        assert actual / 2 < estimate < actual * 4, (topic, actual, estimate)
