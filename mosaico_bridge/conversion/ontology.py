"""Known ROS message types → Mosaico ontology layouts.

Each entry of :data:`ONTOLOGY_LAYOUTS` maps a ROS message type (rosbags naming,
``pkg/msg/Name``) to an :class:`OntologyLayout`: the ontology tag, the
serialization format and a :class:`~.common.Struct` whose children are the
top-level Arrow columns (after ``timestamp_ns``).

The Arrow layouts reproduce the structs of the Mosaico SDK 0.7.0 ontology
classes (names, types, nullability; ``docs/protocol.md`` § Arrow layouts). The ROS →
ontology field mapping and the value rules follow the SDK's ROS bridge
(the SDK 0.7.0 ROS adapters):

* ``header`` is null when ``frame_id`` is empty and the stamp is zero; ROS 1
  ``header.seq`` goes to ``header.sample_counter``.
* a ROS covariance is kept only if some entry is > 0, else the ontology
  ``covariance`` is null; ``covariance_type`` is only set where ROS has one
  (``NavSatFix.position_covariance_type``).
* ``Imu.orientation`` is kept only if ``orientation_covariance[0] != -1``.
* ``NavSatFix``: ``latitude/longitude/altitude`` → ``position.x/y/z``;
  ``status`` kept when ``status.status >= -1``.
* ``TransformStamped.child_frame_id`` → ``target_frame_id`` (null when empty);
  ``Odometry.child_frame_id`` → ``target_frame_id`` (always).
* ``Image`` pixel data is stored unchanged with ``format = "raw"`` (the SDK
  would PNG-encode it by default; raw is lossless and costs no CPU, and the
  SDK's ``Image`` class reads ``raw`` back). ``step`` → ``stride``.
* ``CompressedImage.format`` is reduced to the codec name (``jpeg``, ``png``,
  ...) as in the SDK's ``ImageFormat``; unknown codecs become ``raw``.
* ``Temperature`` is stored in kelvin (ROS gives °C); a variance of 0
  (unknown in ROS) is written as null.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import pyarrow as pa

from .common import (
    HEADER_TYPE,
    AtLeast,
    Binary,
    Column,
    ColumnarUnsupported,
    Constant,
    Covariance,
    CovarianceType,
    FieldSpec,
    FirstEntryNot,
    HeaderColumn,
    Leaf,
    MessageList,
    Nulls,
    NumericList,
    Predicate,
    StringList,
    Struct,
    arrow_from_numpy,
    arrow_strings,
)
from .plan import ColumnarBatch, Strings

__all__ = ["ONTOLOGY_LAYOUTS", "SDK_ONTOLOGY_TAGS", "OntologyLayout", "compressed_image_format"]

F64 = pa.float64()

#: Ontology tags of the classes the Mosaico SDK 0.7.0 models (``docs/protocol.md`` § Arrow layouts,
#: plus the classes its ROS bridge adds). A generic topic never uses one of
#: these as its tag (see ``generic.generic_ontology_tag``).
SDK_ONTOLOGY_TAGS = frozenset(
    ["Acceleration", "BatteryState", "Boolean", "CameraInfo", "CompressedImage", "Duration", "Floating16", "Floating32", "Floating64", "ForceTorque", "FrameTransform", "GPS", "GPSStatus", "GridCells", "Header", "IMU", "Image", "Inertia", "Integer8", "Integer16", "Integer32", "Integer64", "Joy", "LaserScan", "Lidar", "Magnetometer", "MapMetadata", "MotionState", "MultiEchoLaserScan", "NMEASentence", "OccupancyGrid", "Point2d", "Point3d", "PointCloud2", "PointField", "Polygon", "Pose", "Pressure", "Quaternion", "RGBDCamera", "ROI", "Radar", "Range", "RobotJoint", "RobotPath", "StereoCamera", "String", "Temperature", "Time", "ToFCamera", "Transform", "Unmodeled", "Unsigned8", "Unsigned16", "Unsigned32", "Unsigned64", "Vector2d", "Vector3d", "Vector4d", "Velocity"]
)


@dataclass(frozen=True)
class OntologyLayout:
    """Arrow layout of one ontology type for one ROS message type.

    Attributes:
        tag: ontology tag sent in ``topic_create`` (e.g. ``"IMU"``).
        serialization_format: ``"default"`` or ``"image"``.
        root: struct whose children are the top-level columns.
    """

    tag: str
    serialization_format: str
    root: Struct


# --------------------------------------------------------------------------- #
# Building blocks (each returns a Column / list of FieldSpec)
# --------------------------------------------------------------------------- #


def _join(*parts: str | None) -> str:
    return ".".join(p for p in parts if p)


def _header(src: str | None) -> Column:
    return HeaderColumn(src) if src else Nulls(HEADER_TYPE)


def _mixin(
    header: str | None = None,
    cov: str | None = None,
    cov_type: Column | None = None,
) -> list[Any]:
    """``header`` + covariance mixin children (all nullable)."""
    return [
        FieldSpec("header", _header(header)),
        FieldSpec("covariance", Covariance(cov) if cov else Nulls(pa.list_(F64))),
        FieldSpec("covariance_type", cov_type if cov_type is not None else Nulls(pa.int16())),
    ]


def _xyz(base: str | None, names: tuple[str, str, str] = ("x", "y", "z")) -> list[Any]:
    return [FieldSpec(axis, Leaf(_join(base, src), F64)) for axis, src in zip("xyz", names)]


def vector3(
    base: str | None = None,
    *,
    names: tuple[str, str, str] = ("x", "y", "z"),
    header: str | None = None,
    cov: str | None = None,
    cov_type: Column | None = None,
) -> Struct:
    """``Vector3d``/``Point3d`` struct from ROS fields ``base.x/y/z`` (or ``names``)."""
    return Struct(_mixin(header, cov, cov_type) + _xyz(base, names))


def quaternion(
    base: str | None = None,
    *,
    header: str | None = None,
    cov: str | None = None,
    valid: Predicate | None = None,
) -> Struct:
    """``Quaternion`` struct from ROS fields ``base.x/y/z/w``."""
    fields = _mixin(header, cov) + _xyz(base) + [FieldSpec("w", Leaf(_join(base, "w"), F64))]
    return Struct(fields, valid=valid)


def pose(base: str | None = None, *, header: str | None = None, cov: str | None = None) -> Struct:
    """``Pose`` struct from a ROS ``geometry_msgs/Pose`` at ``base``."""
    return Struct(
        _mixin(header, cov)
        + [
            FieldSpec("position", vector3(_join(base, "position")), nullable=False),
            FieldSpec("orientation", quaternion(_join(base, "orientation")), nullable=False),
        ]
    )


def linear_angular(
    base: str | None = None, *, header: str | None = None, cov: str | None = None
) -> Struct:
    """``Velocity``/``Acceleration`` struct from ROS ``Twist``/``Accel`` at ``base``."""
    return Struct(
        _mixin(header, cov)
        + [
            FieldSpec("linear", vector3(_join(base, "linear"))),
            FieldSpec("angular", vector3(_join(base, "angular"))),
        ]
    )


def _non_empty(values: list[Any]) -> list[Any]:
    return [v if v else None for v in values]


def _strings_of(value: Any) -> Strings:
    if not isinstance(value, Strings):
        raise ColumnarUnsupported("expected a string field")
    return value


def _non_empty_columnar(value: Any, arrow_type: pa.DataType) -> pa.Array:
    strings = _strings_of(value)
    arr = strings.arrow()
    valid = strings.lengths > 0
    if bool(valid.all()):
        return arr
    bitmap = pa.py_buffer(np.packbits(valid, bitorder="little"))
    return pa.Array.from_buffers(arrow_type, len(arr), [bitmap, *arr.buffers()[1:]])


def transform(
    base: str | None = None, *, header: str | None = None, child: str | None = None
) -> Struct:
    """``Transform`` struct from a ROS ``geometry_msgs/Transform`` at ``base``."""
    target = (
        Leaf(child, pa.string(), convert=_non_empty, convert_columnar=_non_empty_columnar)
        if child
        else Nulls(pa.string())
    )
    return Struct(
        _mixin(header)
        + [
            FieldSpec("translation", vector3(_join(base, "translation")), nullable=False),
            FieldSpec("rotation", quaternion(_join(base, "rotation")), nullable=False),
            FieldSpec("target_frame_id", target),
        ]
    )


def force_torque(base: str | None = None, *, header: str | None = None) -> Struct:
    """``ForceTorque`` struct from a ROS ``geometry_msgs/Wrench`` at ``base``."""
    return Struct(
        _mixin(header)
        + [
            FieldSpec("force", vector3(_join(base, "force")), nullable=False),
            FieldSpec("torque", vector3(_join(base, "torque")), nullable=False),
        ]
    )


def _to_bool(values: list[Any]) -> list[Any]:
    return [bool(v) for v in values]


def _to_bool_columnar(value: Any, arrow_type: pa.DataType) -> pa.Array:
    return arrow_from_numpy(np.asarray(value) != 0, arrow_type)


def _positive_or_null(values: list[Any]) -> list[Any]:
    return [v if v > 0 else None for v in values]


def _positive_or_null_columnar(value: Any, arrow_type: pa.DataType) -> pa.Array:
    v = np.asarray(value, dtype=np.float64)
    return arrow_from_numpy(v, arrow_type, valid=v > 0)


def _celsius_to_kelvin(values: list[Any]) -> list[Any]:
    return [v + 273.15 for v in values]


def _celsius_to_kelvin_columnar(value: Any, arrow_type: pa.DataType) -> pa.Array:
    return arrow_from_numpy(np.asarray(value, dtype=np.float64) + 273.15, arrow_type)


# Codec names of the SDK's ImageFormat enum.
_IMAGE_CODECS = ("raw", "png", "jpeg", "jpg", "tiff", "h264", "hevc")


@lru_cache(maxsize=256)
def compressed_image_format(ros_format: str) -> str:
    """Codec name of a ROS ``CompressedImage.format`` string.

    ROS image_transport writes either a bare codec (``"jpeg"``) or
    ``"<pixfmt>; <codec> compressed [<pixfmt>]"`` / ``"<pixfmt>; compressedDepth <codec>"``.
    Returns the first known codec token (lower case); ``"png"`` for an empty
    string or a ``compressedDepth`` without codec; ``"raw"`` otherwise (an
    unknown codec, as the SDK does).
    """
    tokens = ros_format.replace(";", " ").lower().split()
    if not tokens:
        return "png"
    for token in tokens:
        if token in _IMAGE_CODECS:
            return token
    if tokens[-1] == "compresseddepth":  # compressed_depth_image_transport default codec
        return "png"
    return "raw"


def _compressed_formats(values: list[Any]) -> list[Any]:
    return [compressed_image_format(v) for v in values]


def _compressed_formats_columnar(value: Any, arrow_type: pa.DataType) -> pa.Array:
    names = _strings_of(value).arrow().to_pylist()
    return arrow_strings([compressed_image_format(v) for v in names])


def _scalar(arrow_type: pa.DataType) -> Struct:
    return Struct([FieldSpec("data", Leaf("data", arrow_type), nullable=False)])


# --------------------------------------------------------------------------- #
# The table
# --------------------------------------------------------------------------- #


def _build_table() -> dict[str, OntologyLayout]:
    t: dict[str, OntologyLayout] = {}

    def add(msgtype: str, tag: str, root: Struct, fmt: str = "default") -> None:
        t[msgtype] = OntologyLayout(tag, fmt, root)

    # -- std_msgs scalars ----------------------------------------------------
    for ros_name, tag, arrow_type in (
        ("String", "String", pa.string()),
        ("Bool", "Boolean", pa.bool_()),
        ("Int8", "Integer8", pa.int8()),
        ("Int16", "Integer16", pa.int16()),
        ("Int32", "Integer32", pa.int32()),
        ("Int64", "Integer64", pa.int64()),
        ("UInt8", "Unsigned8", pa.uint8()),
        ("UInt16", "Unsigned16", pa.uint16()),
        ("UInt32", "Unsigned32", pa.uint32()),
        ("UInt64", "Unsigned64", pa.uint64()),
        ("Float32", "Floating32", pa.float32()),
        ("Float64", "Floating64", pa.float64()),
    ):
        add(f"std_msgs/msg/{ros_name}", tag, _scalar(arrow_type))

    time_fields = [
        FieldSpec("seconds", Leaf("sec", pa.int32()), nullable=False),
        FieldSpec("nanoseconds", Leaf("nanosec", pa.uint32()), nullable=False),
    ]
    add("builtin_interfaces/msg/Time", "Time", Struct(time_fields))
    add("builtin_interfaces/msg/Duration", "Duration", Struct(time_fields))

    # -- sensor_msgs ---------------------------------------------------------
    add(
        "sensor_msgs/msg/Imu",
        "IMU",
        Struct(
            [
                FieldSpec("header", _header("header")),
                FieldSpec(
                    "acceleration",
                    vector3("linear_acceleration", cov="linear_acceleration_covariance"),
                    nullable=False,
                ),
                FieldSpec(
                    "angular_velocity",
                    vector3("angular_velocity", cov="angular_velocity_covariance"),
                    nullable=False,
                ),
                FieldSpec(
                    "orientation",
                    quaternion(
                        "orientation",
                        cov="orientation_covariance",
                        valid=FirstEntryNot("orientation_covariance", -1.0),
                    ),
                ),
            ]
        ),
    )

    gps_status = Struct(
        [
            FieldSpec("status", Leaf("status.status", pa.int8()), nullable=False),
            FieldSpec("service", Leaf("status.service", pa.uint16()), nullable=False),
            FieldSpec("satellites", Nulls(pa.int8())),
            FieldSpec("hdop", Nulls(F64)),
            FieldSpec("vdop", Nulls(F64)),
        ],
        valid=AtLeast("status.status", -1),
    )
    add(
        "sensor_msgs/msg/NavSatFix",
        "GPS",
        Struct(
            [
                FieldSpec("header", _header("header")),
                FieldSpec(
                    "position",
                    vector3(
                        names=("latitude", "longitude", "altitude"),
                        cov="position_covariance",
                        cov_type=CovarianceType("position_covariance", "position_covariance_type"),
                    ),
                    nullable=False,
                ),
                FieldSpec("velocity", Nulls(vector3().type)),
                FieldSpec("status", gps_status),
            ]
        ),
    )

    add(
        "sensor_msgs/msg/Image",
        "Image",
        Struct(
            [
                FieldSpec("header", _header("header")),
                FieldSpec("data", Binary("data"), nullable=False),
                FieldSpec("format", Constant(pa.string(), "raw"), nullable=False),
                FieldSpec("width", Leaf("width", pa.int32()), nullable=False),
                FieldSpec("height", Leaf("height", pa.int32()), nullable=False),
                FieldSpec("stride", Leaf("step", pa.int32()), nullable=False),
                FieldSpec("encoding", Leaf("encoding", pa.string()), nullable=False),
                FieldSpec("is_bigendian", Leaf("is_bigendian", pa.bool_(), convert=_to_bool, convert_columnar=_to_bool_columnar)),
            ]
        ),
        fmt="image",
    )
    add(
        "sensor_msgs/msg/CompressedImage",
        "CompressedImage",
        Struct(
            [
                FieldSpec("header", _header("header")),
                FieldSpec("data", Binary("data"), nullable=False),
                FieldSpec(
                    "format",
                    Leaf(
                        "format",
                        pa.string(),
                        convert=_compressed_formats,
                        convert_columnar=_compressed_formats_columnar,
                    ),
                    nullable=False,
                ),
            ]
        ),
        fmt="image",
    )

    point_field = Struct(
        [
            FieldSpec("name", Leaf("name", pa.string()), nullable=False),
            FieldSpec("offset", Leaf("offset", pa.uint32()), nullable=False),
            FieldSpec("datatype", Leaf("datatype", pa.int64()), nullable=False),
            FieldSpec("count", Leaf("count", pa.uint32()), nullable=False),
        ]
    )
    add(
        "sensor_msgs/msg/PointCloud2",
        "PointCloud2",
        Struct(
            [
                FieldSpec("header", _header("header")),
                FieldSpec("height", Leaf("height", pa.uint32()), nullable=False),
                FieldSpec("width", Leaf("width", pa.uint32()), nullable=False),
                FieldSpec("fields", MessageList("fields", point_field), nullable=False),
                FieldSpec(
                    "is_bigendian", Leaf("is_bigendian", pa.bool_(), convert=_to_bool, convert_columnar=_to_bool_columnar), nullable=False
                ),
                FieldSpec("point_step", Leaf("point_step", pa.uint32()), nullable=False),
                FieldSpec("row_step", Leaf("row_step", pa.uint32()), nullable=False),
                FieldSpec("data", Binary("data"), nullable=False),
                FieldSpec("is_dense", Leaf("is_dense", pa.bool_(), convert=_to_bool, convert_columnar=_to_bool_columnar), nullable=False),
            ]
        ),
    )

    add(
        "sensor_msgs/msg/JointState",
        "RobotJoint",
        Struct(
            [
                FieldSpec("header", _header("header")),
                FieldSpec("names", StringList("name"), nullable=False),
                FieldSpec("positions", NumericList("position", F64), nullable=False),
                FieldSpec("velocities", NumericList("velocity", F64), nullable=False),
                FieldSpec("efforts", NumericList("effort", F64), nullable=False),
            ]
        ),
    )
    add(
        "sensor_msgs/msg/MagneticField",
        "Magnetometer",
        Struct(
            [
                FieldSpec("header", _header("header")),
                FieldSpec(
                    "magnetic_field",
                    vector3("magnetic_field", cov="magnetic_field_covariance"),
                    nullable=False,
                ),
            ]
        ),
    )
    for ros_name, tag, value in (
        (
            "Temperature",
            "Temperature",
            Leaf(
                "temperature",
                F64,
                convert=_celsius_to_kelvin,
                convert_columnar=_celsius_to_kelvin_columnar,
            ),
        ),
        ("FluidPressure", "Pressure", Leaf("fluid_pressure", F64)),
    ):
        add(
            f"sensor_msgs/msg/{ros_name}",
            tag,
            Struct(
                [
                    FieldSpec(
                        "variance",
                        Leaf(
                            "variance",
                            F64,
                            convert=_positive_or_null,
                            convert_columnar=_positive_or_null_columnar,
                        ),
                    ),
                    FieldSpec("variance_type", Nulls(pa.int16())),
                    FieldSpec("header", _header("header")),
                    FieldSpec("value", value, nullable=False),
                ]
            ),
        )

    # -- geometry_msgs -------------------------------------------------------
    g = "geometry_msgs/msg/"
    add(g + "Pose", "Pose", pose())
    add(g + "PoseStamped", "Pose", pose("pose", header="header"))
    add(g + "PoseWithCovariance", "Pose", pose("pose", cov="covariance"))
    add(g + "PoseWithCovarianceStamped", "Pose", pose("pose.pose", header="header", cov="pose.covariance"))
    for ros_name, tag, field in (("Twist", "Velocity", "twist"), ("Accel", "Acceleration", "accel")):
        add(g + ros_name, tag, linear_angular())
        add(g + ros_name + "Stamped", tag, linear_angular(field, header="header"))
        add(g + ros_name + "WithCovariance", tag, linear_angular(field, cov="covariance"))
        add(
            g + ros_name + "WithCovarianceStamped",
            tag,
            linear_angular(f"{field}.{field}", header="header", cov=f"{field}.covariance"),
        )
    add(g + "Transform", "Transform", transform())
    add(g + "TransformStamped", "Transform", transform("transform", header="header", child="child_frame_id"))
    for ros_name, tag, field in (("Vector3", "Vector3d", "vector"), ("Point", "Point3d", "point")):
        add(g + ros_name, tag, vector3())
        add(g + ros_name + "Stamped", tag, vector3(field, header="header"))
    add(g + "Quaternion", "Quaternion", quaternion())
    add(g + "QuaternionStamped", "Quaternion", quaternion("quaternion", header="header"))
    add(g + "Wrench", "ForceTorque", force_torque())
    add(g + "WrenchStamped", "ForceTorque", force_torque("wrench", header="header"))

    # -- nav_msgs ------------------------------------------------------------
    add(
        "nav_msgs/msg/Odometry",
        "MotionState",
        Struct(
            _mixin("header")
            + [
                FieldSpec("pose", pose("pose.pose", cov="pose.covariance"), nullable=False),
                FieldSpec(
                    "velocity", linear_angular("twist.twist", cov="twist.covariance"), nullable=False
                ),
                FieldSpec("target_frame_id", Leaf("child_frame_id", pa.string()), nullable=False),
                FieldSpec("acceleration", Nulls(linear_angular().type)),
            ]
        ),
    )

    # -- tf (ROS 2 tf2_msgs and ROS 1 tf) ------------------------------------
    frame_transform = Struct(
        [
            FieldSpec(
                "transforms",
                MessageList(
                    "transforms", transform("transform", header="header", child="child_frame_id")
                ),
                nullable=False,
            )
        ]
    )
    add("tf2_msgs/msg/TFMessage", "FrameTransform", frame_transform)
    add("tf/msg/tfMessage", "FrameTransform", frame_transform)

    # -- std_msgs/Header -----------------------------------------------------
    add(
        "std_msgs/msg/Header",
        "Header",
        Struct(
            [
                FieldSpec("timestamp", Struct(time_fields, src="stamp")),
                FieldSpec("frame_id", Leaf("frame_id", pa.string())),
                FieldSpec("sample_counter", _OptionalSeq()),
            ]
        ),
    )
    return t


class _OptionalSeq(Column):
    """``sample_counter`` of a bare ``std_msgs/Header``: ROS 1 ``seq``, null for ROS 2."""

    type = pa.uint64()

    def build(self, objs: Sequence[Any]) -> pa.Array:
        if objs and hasattr(objs[0], "seq"):
            return pa.array([o.seq for o in objs], type=self.type)
        return pa.nulls(len(objs), type=self.type)

    def supports_columnar(self) -> bool:
        return True

    def build_columnar(self, cols: ColumnarBatch) -> pa.Array:
        if cols.has("seq"):
            seq = cols.get("seq")
            if not isinstance(seq, np.ndarray):
                raise ColumnarUnsupported("seq is not a number")
            return arrow_from_numpy(seq, self.type)
        return pa.nulls(cols.n, type=self.type)


#: ROS message type → ontology layout.
ONTOLOGY_LAYOUTS: dict[str, OntologyLayout] = _build_table()
