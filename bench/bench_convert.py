#!/usr/bin/env python3
"""Conversion alone, one thread: serialized messages → Arrow record batches.

For each message type, three ways over the same serialized messages, in the
same run (interleaved rounds, best of N):

* ``plan``: ``TopicConverter.convert`` (the vectorized decoding plan);
* ``deser``: rosbags ``Typestore.deserialize_cdr`` of every message, nothing
  else (what the old path paid before building any column);
* ``ref``: ``TopicConverter.convert_reference`` (rosbags objects + the
  object-based column builders: the old path).

Messages are generated with rosbags ``serialize_cdr`` (ROS 2 Humble types,
varied values, a realistic frame_id). Figures: messages/s (and MB/s of
serialized data for Image), and the ratios plan/deser and plan/ref. For Image
(1080p rgb8) ``plan`` is ``convert_batches`` (zero copy of the pixels);
``convert`` (one contiguous batch, one copy) is shown beside it. Run:

    .venv/bin/python bench/bench_convert.py [--batch 2048] [--rounds 5] [--only Imu ...]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rosbags.typesys import Stores, get_typestore

from mosaico_bridge.conversion import make_converter

STORE = get_typestore(Stores.ROS2_HUMBLE)
T = STORE.types


def _header(i: int, frame: str = "base_link"):
    return T["std_msgs/msg/Header"](
        stamp=T["builtin_interfaces/msg/Time"](sec=1_700_000_000 + i // 100, nanosec=(i * 10_000_000) % 10**9),
        frame_id=frame,
    )


def _vec(rng):
    return T["geometry_msgs/msg/Vector3"](x=rng.normal(), y=rng.normal(), z=rng.normal())


def _quat(rng):
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    return T["geometry_msgs/msg/Quaternion"](x=q[0], y=q[1], z=q[2], w=q[3])


def _pose(rng):
    p = T["geometry_msgs/msg/Point"](x=rng.normal(), y=rng.normal(), z=rng.normal())
    return T["geometry_msgs/msg/Pose"](position=p, orientation=_quat(rng))


def imu(i, rng):
    cov = np.diag([0.01, 0.01, 0.01]).reshape(-1)
    return T["sensor_msgs/msg/Imu"](
        header=_header(i, "imu_link"), orientation=_quat(rng), orientation_covariance=cov,
        angular_velocity=_vec(rng), angular_velocity_covariance=cov,
        linear_acceleration=_vec(rng), linear_acceleration_covariance=cov,
    )


def odometry(i, rng):
    cov = np.diag(rng.random(6)).reshape(-1)
    return T["nav_msgs/msg/Odometry"](
        header=_header(i, "odom"), child_frame_id="base_link",
        pose=T["geometry_msgs/msg/PoseWithCovariance"](pose=_pose(rng), covariance=cov),
        twist=T["geometry_msgs/msg/TwistWithCovariance"](
            twist=T["geometry_msgs/msg/Twist"](linear=_vec(rng), angular=_vec(rng)), covariance=cov
        ),
    )


def tf(i, rng):
    frames = ["map", "odom", "base_link", "base_footprint", "imu_link", "laser"]
    transforms = [
        T["geometry_msgs/msg/TransformStamped"](
            header=_header(i, frames[k]), child_frame_id=frames[k + 1],
            transform=T["geometry_msgs/msg/Transform"](translation=_vec(rng), rotation=_quat(rng)),
        )
        for k in range(1 + i % 3)
    ]
    return T["tf2_msgs/msg/TFMessage"](transforms=transforms)


def pose_stamped(i, rng):
    return T["geometry_msgs/msg/PoseStamped"](header=_header(i, "map"), pose=_pose(rng))


def image(i, rng):
    h, w = 1080, 1920
    data = np.full(h * w * 3, i % 256, dtype=np.uint8)
    return T["sensor_msgs/msg/Image"](
        header=_header(i, "camera"), height=h, width=w, encoding="rgb8", is_bigendian=0,
        step=w * 3, data=data,
    )


CASES = {
    "Imu": ("sensor_msgs/msg/Imu", imu, 1.0),
    "Odometry": ("nav_msgs/msg/Odometry", odometry, 1.0),
    "TF": ("tf2_msgs/msg/TFMessage", tf, 1.0),
    "PoseStamped": ("geometry_msgs/msg/PoseStamped", pose_stamped, 1.0),
    "Image1080p": ("sensor_msgs/msg/Image", image, 0.01),
}


def best(fn: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _functions(name: str, conv, ts: list, raws: list, msgtype: str) -> dict:
    deser = STORE.deserialize_cdr

    def plan() -> object:
        if name == "Image1080p":
            return conv.convert_batches(ts, raws)
        return conv.convert(ts, raws)

    fns = {
        "plan": plan,
        "deser": lambda: [deser(r, msgtype) for r in raws],
        "ref": lambda: conv.convert_reference(ts, raws),
    }
    if name == "Image1080p":
        fns["plan_one_batch"] = lambda: conv.convert(ts, raws)
    return fns


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=2048, help="messages per convert call (small types)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--only", nargs="*", default=None, choices=list(CASES))
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    print(f"one thread, best of {args.rounds} rounds; msgs/s (higher is better)")
    print(f"{'type':<12} {'msgs':>6} {'bytes/msg':>9} {'plan':>11} {'deser':>11} {'ref':>11}"
          f" {'plan/deser':>10} {'plan/ref':>9}")
    for name, (msgtype, make, scale) in CASES.items():
        if args.only and name not in args.only:
            continue
        n = max(8, int(args.batch * scale))
        raws: list[bytes] = [bytes(STORE.serialize_cdr(make(i, rng), msgtype)) for i in range(n)]
        ts = list(range(n))
        conv = make_converter(msgtype, STORE, "cdr")
        assert conv.plan is not None, msgtype
        ref_batch = conv.convert_reference(ts, raws)
        assert conv.convert(ts, raws).equals(ref_batch), f"{name}: plan != reference"
        fns = _functions(name, conv, ts, raws, msgtype)
        for fn in fns.values():  # warm up
            fn()
        results = {k: 0.0 for k in fns}
        for k in results:
            results[k] = best(fns[k], args.rounds)
        rate = {k: n / v for k, v in results.items()}
        size = sum(map(len, raws)) / n
        print(f"{name:<12} {n:>6} {size:>9.0f} {rate['plan']:>11,.0f} {rate['deser']:>11,.0f}"
              f" {rate['ref']:>11,.0f} {rate['plan'] / rate['deser']:>10.2f} {rate['plan'] / rate['ref']:>9.2f}")
        if name == "Image1080p":
            mb = size / 1e6
            print(f"{'':<12} MB/s: plan(convert_batches) {rate['plan'] * mb:,.0f}, "
                  f"plan(convert, one batch) {rate['plan_one_batch'] * mb:,.0f}, "
                  f"deser {rate['deser'] * mb:,.0f}, ref {rate['ref'] * mb:,.0f}")


if __name__ == "__main__":
    main()
