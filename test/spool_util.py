"""Spool directories for spool_upload tests, written by the bridge's own spool writer
(mosaico_bridge.client.spool) from real IMU record batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
from rosbags.typesys import Stores, get_typestore

T0_NS = 1_700_000_000_000_000_000


def imu_batches(batches: int, rows: int, start: int = 0) -> tuple[object, list[pa.RecordBatch]]:
    """(converter, record batches) of ``batches`` x ``rows`` IMU rows, row i at T0_NS + i ms."""
    from mosaico_bridge.conversion import make_converter

    ts = get_typestore(Stores.ROS2_KILTED)
    T = ts.types
    conv = make_converter("sensor_msgs/msg/Imu", ts, "cdr")
    raw = []
    for i in range(rows):
        msg = T["sensor_msgs/msg/Imu"](
            header=T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=i, nanosec=0), frame_id="imu"),
            orientation=T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0),
            orientation_covariance=np.zeros(9),
            angular_velocity=T["geometry_msgs/msg/Vector3"](x=float(i), y=0.0, z=0.0),
            angular_velocity_covariance=np.zeros(9),
            linear_acceleration=T["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=9.81),
            linear_acceleration_covariance=np.zeros(9),
        )
        raw.append(ts.serialize_cdr(msg, "sensor_msgs/msg/Imu"))
    template = conv.convert([0] * rows, raw)
    out = []
    for b in range(batches):
        first = start + b * rows
        stamps = pa.array([T0_NS + (first + i) * 1_000_000 for i in range(rows)], pa.int64())
        out.append(template.set_column(0, template.schema.field(0), stamps))
    return conv, out


def write_spool(root: Path, sequence: str, session: str, topics: dict[str, list[pa.RecordBatch]], conv) -> None:
    """Spool ``{topic path: batches}`` as the bridge does when the server is lost."""
    from mosaico_bridge.client.spool import Spool

    spool = Spool(root)
    for path, batches in topics.items():
        f = spool.topic(sequence, f"{sequence}:{session}", path, conv.schema, {
            "resource_locator": f"{sequence}/{path}", "ontology_tag": conv.ontology_tag,
            "serialization_format": conv.serialization_format, "user_metadata": {"robot": "r1"},
        })
        for batch in batches:
            f.write(batch, "ConnectionError: server lost")
        f.close()
