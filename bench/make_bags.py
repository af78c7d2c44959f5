#!/usr/bin/env python3
"""Bag generators for the import benchmarks (written with rosbags, ROS 2 CDR in MCAP).

* ``large``: a camera + lidar recording: 1080p ``rgb8`` ``sensor_msgs/msg/Image`` at
  30 Hz (6,220,800 bytes of pixels each), a 65,536-point ``sensor_msgs/msg/PointCloud2``
  at 10 Hz (x, y, z, intensity float32, 1 MiB each), ``sensor_msgs/msg/Imu`` at 200 Hz and
  ``tf2_msgs/msg/TFMessage`` at 50 Hz: about 197 MB of serialized data per second of
  recording (20 s ≈ 3.9 GB). Pixels are a gradient plus noise, shifted every frame, so
  the frames differ and compress about as badly as a camera's.
* ``imu_odom``: the ``sensor_msgs/msg/Imu`` and ``nav_msgs/msg/Odometry`` messages of the
  shared ROS 1 husky bag (``ros1_husky_imu_odom_gps``, 11,865 Imu + 3,952 Odometry),
  deserialized, copied field by field into ROS 2 Humble messages (the ROS 1
  ``std_msgs/Header.seq`` has no ROS 2 counterpart and is dropped), serialized as CDR and
  written again and again, each pass shifted in time by the bag's duration + 1 s (log
  time and ``header.stamp``), until the wanted message count (default 50,000).

Both are rosbag2 directories (``metadata.yaml`` + one ``.mcap``); :func:`mcap_file`
gives the ``.mcap`` inside, which is what both importers are given. Run alone:

    .venv/bin/python bench/make_bags.py large OUT_DIR [--seconds 20]
    .venv/bin/python bench/make_bags.py imu_odom OUT_DIR --husky PATH [--messages 50000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

WIDTH, HEIGHT = 1920, 1080
IMAGE_HZ, CLOUD_HZ, IMU_HZ, TF_HZ = 30, 10, 200, 50
CLOUD_POINTS = 65_536


def mcap_file(bag_dir: Path) -> Path:
    """The single ``.mcap`` file of a rosbag2 directory written here.

    Raises FileNotFoundError when there is none.
    """
    files = sorted(bag_dir.glob("*.mcap"))
    if not files:
        raise FileNotFoundError(f"no .mcap file in {bag_dir}")
    return files[0]


def _writer(out: Path):
    from rosbags.rosbag2 import StoragePlugin, Writer

    if out.exists():
        raise FileExistsError(f"bag already exists: {out}")
    return Writer(out, version=9, storage_plugin=StoragePlugin.MCAP)


def write_large_bag(out: Path, seconds: float = 20.0) -> Path:
    """Write the camera + lidar bag described in the module docstring to directory ``out``.

    Log times and ``header.stamp`` start at 1.7e18 ns and follow the nominal rates.
    Returns the ``.mcap`` file. Raises FileExistsError when ``out`` exists.
    """
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_HUMBLE)
    T = ts.types
    Header, Time = T["std_msgs/msg/Header"], T["builtin_interfaces/msg/Time"]
    Image, PointCloud2, PointField = T["sensor_msgs/msg/Image"], T["sensor_msgs/msg/PointCloud2"], T["sensor_msgs/msg/PointField"]
    Imu, Quaternion, Vector3 = T["sensor_msgs/msg/Imu"], T["geometry_msgs/msg/Quaternion"], T["geometry_msgs/msg/Vector3"]
    TFMessage, TransformStamped, Transform = (T["tf2_msgs/msg/TFMessage"], T["geometry_msgs/msg/TransformStamped"],
                                              T["geometry_msgs/msg/Transform"])
    rng = np.random.default_rng(7)
    grad = (np.arange(WIDTH * 3, dtype=np.uint32) * 255 // (WIDTH * 3)).astype(np.uint8)
    base = (np.broadcast_to(grad, (HEIGHT, WIDTH * 3)) + rng.integers(0, 24, (HEIGHT, WIDTH * 3), dtype=np.uint8))
    fields = [PointField(name=n, offset=4 * i, datatype=7, count=1) for i, n in enumerate("xyz")]
    fields.append(PointField(name="intensity", offset=12, datatype=7, count=1))
    t0 = 1_700_000_000_000_000_000

    def header(t: int, frame: str) -> Any:
        return Header(stamp=Time(sec=t // 1_000_000_000, nanosec=t % 1_000_000_000), frame_id=frame)

    events: list[tuple[int, str, int]] = []
    for name, hz in (("image", IMAGE_HZ), ("cloud", CLOUD_HZ), ("imu", IMU_HZ), ("tf", TF_HZ)):
        period = 1_000_000_000 // hz
        events += [(t0 + i * period, name, i) for i in range(int(seconds * hz))]
    events.sort()
    with _writer(out) as w:
        conns = {
            "image": w.add_connection("/camera/image_raw", Image.__msgtype__, typestore=ts),
            "cloud": w.add_connection("/lidar/points", PointCloud2.__msgtype__, typestore=ts),
            "imu": w.add_connection("/imu/data", Imu.__msgtype__, typestore=ts),
            "tf": w.add_connection("/tf", TFMessage.__msgtype__, typestore=ts),
        }
        for t, name, i in events:
            if name == "image":
                pixels = np.roll(base, 9 * i, axis=1).reshape(-1)
                m: Any = Image(header=header(t, "camera"), height=HEIGHT, width=WIDTH, encoding="rgb8",
                               is_bigendian=0, step=WIDTH * 3, data=pixels)
            elif name == "cloud":
                pts = rng.standard_normal(CLOUD_POINTS * 4, dtype=np.float32).view(np.uint8)
                m = PointCloud2(header=header(t, "lidar"), height=1, width=CLOUD_POINTS, fields=fields,
                                is_bigendian=False, point_step=16, row_step=16 * CLOUD_POINTS, data=pts,
                                is_dense=True)
            elif name == "imu":
                cov = np.full(9, 0.01)
                m = Imu(header=header(t, "imu"), orientation=Quaternion(x=0.0, y=0.0, z=np.sin(i / 400), w=np.cos(i / 400)),
                        orientation_covariance=cov, angular_velocity=Vector3(x=0.01 * i % 1, y=0.0, z=0.1),
                        angular_velocity_covariance=cov, linear_acceleration=Vector3(x=0.0, y=0.1, z=9.81),
                        linear_acceleration_covariance=cov)
            else:
                tfs = [TransformStamped(header=header(t, parent), child_frame_id=child,
                                        transform=Transform(translation=Vector3(x=0.001 * i, y=0.0, z=0.5),
                                                            rotation=Quaternion(x=0.0, y=0.0, z=0.0, w=1.0)))
                       for parent, child in (("odom", "base_link"), ("base_link", "lidar"))]
                m = TFMessage(transforms=tfs)
            w.write(conns[name], t, ts.serialize_cdr(m, m.__msgtype__))
    return mcap_file(out)


def _to_ros2(value: Any, types: dict[str, Any]) -> Any:
    """Copy a deserialized (ROS 1) rosbags message into the ROS 2 class of the same name."""
    if hasattr(value, "__msgtype__"):
        cls = types[value.__msgtype__]
        return cls(**{f: _to_ros2(getattr(value, f), types) for f in cls.__dataclass_fields__
                      if f != "__msgtype__"})
    if isinstance(value, list):
        return [_to_ros2(v, types) for v in value]
    return value


def write_imu_odom_bag(out: Path, husky_bag: Path, messages: int = 50_000) -> Path:
    """Write the Imu + Odometry bag described in the module docstring to directory ``out``.

    Returns the ``.mcap`` file. Raises FileNotFoundError when ``husky_bag`` is missing,
    FileExistsError when ``out`` exists.
    """
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    if not husky_bag.exists():
        raise FileNotFoundError(f"husky bag not found: {husky_bag}")
    ts = get_typestore(Stores.ROS2_HUMBLE)
    wanted = {"sensor_msgs/msg/Imu", "nav_msgs/msg/Odometry"}
    pass_msgs: list[tuple[str, str, int, Any]] = []
    with AnyReader([husky_bag]) as r:
        conns = [c for c in r.connections if c.msgtype in wanted]
        for c, t, raw in r.messages(connections=conns):
            pass_msgs.append((c.topic, c.msgtype, t, _to_ros2(r.deserialize(raw, c.msgtype), ts.types)))
    if not pass_msgs:
        raise ValueError(f"no Imu / Odometry messages in {husky_bag}")
    first = pass_msgs[0][2]
    span = pass_msgs[-1][2] - first + 1_000_000_000
    with _writer(out) as w:
        topics = {(topic, mt) for topic, mt, _t, _m in pass_msgs}
        wconn = {topic: w.add_connection(topic, mt, typestore=ts) for topic, mt in sorted(topics)}
        written = k = 0
        while written < messages:
            shift = k * span
            for topic, mt, t, m in pass_msgs:
                if written >= messages:
                    break
                if shift:
                    st = m.header.stamp
                    ns = st.sec * 1_000_000_000 + st.nanosec + shift
                    m.header.stamp = type(st)(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)
                    w.write(wconn[topic], t + shift, ts.serialize_cdr(m, mt))
                    m.header.stamp = st
                else:
                    w.write(wconn[topic], t, ts.serialize_cdr(m, mt))
                written += 1
            k += 1
    return mcap_file(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("kind", choices=["large", "imu_odom"])
    ap.add_argument("out", type=Path, help="rosbag2 directory to create")
    ap.add_argument("--seconds", type=float, default=20.0, help="large: recording length in s (default 20)")
    ap.add_argument("--messages", type=int, default=50_000, help="imu_odom: message count (default 50000)")
    ap.add_argument("--husky", type=Path, help="imu_odom: the shared husky_imu_odom_gps.bag")
    args = ap.parse_args()
    t = time.perf_counter()
    if args.kind == "large":
        path = write_large_bag(args.out, args.seconds)
    else:
        if args.husky is None:
            raise SystemExit("imu_odom needs --husky PATH")
        path = write_imu_odom_bag(args.out, args.husky, args.messages)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - t:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
