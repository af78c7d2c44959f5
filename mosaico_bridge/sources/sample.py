"""A small, self-made ROS 2 bag (MCAP) for a first run on a machine with no bag.

20 s of a simulated ground robot driving a circle: IMU at 100 Hz, GNSS fix at 5 Hz,
wheel odometry at 50 Hz, TF at 50 Hz with one static transform, a 160x120 rgb8
camera at 5 Hz and a status string at 1 Hz. Written with rosbags (Kilted definitions
embedded), so the bag is opened exactly like a recorded one.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

#: Start of the sample recording, 2026-01-01T00:00:00Z, in nanoseconds.
START_NS = 1_767_225_600_000_000_000
DURATION_S = 20

TOPICS = {
    "/imu/data": ("sensor_msgs/msg/Imu", 100),
    "/gps/fix": ("sensor_msgs/msg/NavSatFix", 5),
    "/odom": ("nav_msgs/msg/Odometry", 50),
    "/tf": ("tf2_msgs/msg/TFMessage", 50),
    "/tf_static": ("tf2_msgs/msg/TFMessage", 0),
    "/camera/image_raw": ("sensor_msgs/msg/Image", 5),
    "/status": ("std_msgs/msg/String", 1),
}


def write_sample_bag(path: Path) -> Path:
    """Write the sample bag to the directory ``path`` (must not exist). Returns ``path``.

    Raises:
        FileExistsError: if ``path`` exists.
    """
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} exists")
    ts = get_typestore(Stores.ROS2_KILTED)
    T = ts.types
    Time = T["builtin_interfaces/msg/Time"]
    Header = T["std_msgs/msg/Header"]
    V3 = T["geometry_msgs/msg/Vector3"]
    Quat = T["geometry_msgs/msg/Quaternion"]
    Point = T["geometry_msgs/msg/Point"]
    Pose = T["geometry_msgs/msg/Pose"]
    Twist = T["geometry_msgs/msg/Twist"]

    def header(t_ns: int, frame: str):
        return Header(stamp=Time(sec=t_ns // 10**9, nanosec=t_ns % 10**9), frame_id=frame)

    def yaw_quat(yaw: float):
        return Quat(x=0.0, y=0.0, z=math.sin(yaw / 2), w=math.cos(yaw / 2))

    def transform(t_ns: int, parent: str, child: str, x: float, y: float, yaw: float):
        return T["geometry_msgs/msg/TransformStamped"](
            header=header(t_ns, parent),
            child_frame_id=child,
            transform=T["geometry_msgs/msg/Transform"](translation=V3(x=x, y=y, z=0.0), rotation=yaw_quat(yaw)),
        )

    radius, omega = 5.0, 2 * math.pi / DURATION_S
    rng = np.random.default_rng(7)
    cov9 = np.array([0.01, 0, 0, 0, 0.01, 0, 0, 0, 0.01], dtype=np.float64)
    cov36 = np.diag([0.05] * 6).reshape(-1).astype(np.float64)

    def state(t: float):
        yaw = omega * t + math.pi / 2
        return radius * math.cos(omega * t), radius * math.sin(omega * t), yaw

    events: list[tuple[int, str, object]] = []
    for topic, (msgtype, rate) in TOPICS.items():
        times = [0.0] if rate == 0 else [i / rate for i in range(DURATION_S * rate)]
        for t in times:
            t_ns = START_NS + round(t * 1e9)
            x, y, yaw = state(t)
            if msgtype.endswith("Imu"):
                msg = T[msgtype](
                    header=header(t_ns, "imu_link"),
                    orientation=yaw_quat(yaw),
                    orientation_covariance=cov9,
                    angular_velocity=V3(x=0.0, y=0.0, z=omega + rng.normal(0, 0.01)),
                    angular_velocity_covariance=cov9,
                    linear_acceleration=V3(x=rng.normal(0, 0.05), y=radius * omega**2, z=9.81),
                    linear_acceleration_covariance=cov9,
                )
            elif msgtype.endswith("NavSatFix"):
                msg = T[msgtype](
                    header=header(t_ns, "gps_link"),
                    status=T["sensor_msgs/msg/NavSatStatus"](status=0, service=1),
                    latitude=45.4642 + y / 111_111.0,
                    longitude=9.19 + x / (111_111.0 * math.cos(math.radians(45.4642))),
                    altitude=122.0 + rng.normal(0, 0.3),
                    position_covariance=np.array([0.5, 0, 0, 0, 0.5, 0, 0, 0, 1.0]),
                    position_covariance_type=2,
                )
            elif msgtype.endswith("Odometry"):
                msg = T[msgtype](
                    header=header(t_ns, "odom"),
                    child_frame_id="base_link",
                    pose=T["geometry_msgs/msg/PoseWithCovariance"](
                        pose=Pose(position=Point(x=x, y=y, z=0.0), orientation=yaw_quat(yaw)), covariance=cov36
                    ),
                    twist=T["geometry_msgs/msg/TwistWithCovariance"](
                        twist=Twist(linear=V3(x=radius * omega, y=0.0, z=0.0), angular=V3(x=0.0, y=0.0, z=omega)),
                        covariance=cov36,
                    ),
                )
            elif topic == "/tf_static":
                msg = T[msgtype](transforms=[transform(t_ns, "base_link", "imu_link", 0.1, 0.0, 0.0)])
            elif topic == "/tf":
                msg = T[msgtype](transforms=[transform(t_ns, "odom", "base_link", x, y, yaw)])
            elif msgtype.endswith("Image"):
                w, h = 160, 120
                frame = np.zeros((h, w, 3), dtype=np.uint8)
                frame[..., 0] = int(255 * t / DURATION_S)
                frame[:, int(t * w / DURATION_S) % w, 1] = 255
                msg = T[msgtype](
                    header=header(t_ns, "camera"), height=h, width=w, encoding="rgb8",
                    is_bigendian=0, step=w * 3, data=frame.reshape(-1),
                )
            else:
                msg = T[msgtype](data=f"t={t:.0f}s lap={t / DURATION_S:.2f} ok")
            events.append((t_ns, topic, msg))
    events.sort(key=lambda e: e[0])

    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conns = {
            topic: writer.add_connection(topic, msgtype, typestore=ts) for topic, (msgtype, _rate) in TOPICS.items()
        }
        for t_ns, topic, message in events:
            writer.write(conns[topic], t_ns, ts.serialize_cdr(message, TOPICS[topic][0]))
    return path
