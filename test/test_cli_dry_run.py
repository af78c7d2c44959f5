"""``bag_import --dry-run``: reads the bags, prints per topic what an import would write
(ROS type, ontology tag or generic layout, message count, time range, estimated Arrow
bytes) and every problem the import would refuse; writes nothing, needs no server; exits
0, or 2 with the very line a real import gives."""

from __future__ import annotations

import datetime
import re
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_BAGS, run_cli, shared_bag
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore
from test_bag_import import GENERIC_TAGS, KNOWN_TAGS
from test_bag_import_cli import CLI, imu_bag, one_error_line

TURTLESIM = "ros1_turtlesim_multiconn/turtlesim_example.bag"


def iso(t_ns: int) -> str:
    dt = datetime.datetime.fromtimestamp(t_ns // 10**9, tz=datetime.UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{(t_ns % 10**9) // 10**6:03d}Z"


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` with its size and mtime (ns)."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def row_of(stdout: str, topic: str) -> str:
    rows = [ln for ln in stdout.splitlines() if re.search(rf"[│|] {re.escape(topic)} +[│|]", ln)]
    assert len(rows) == 1, (topic, stdout)
    return rows[0]


def test_plan_of_a_shared_bag(tmp_path):
    bag = shared_bag(TURTLESIM)
    root = tmp_path / "r"
    proc = run_cli(CLI, str(bag), "--sequence", "dry", "--root", str(root), "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert not root.exists()  # nothing written, not even the store directory
    times: dict[str, list[int]] = {}
    with AnyReader([bag]) as reader:
        for conn, t, _raw in reader.messages():
            times.setdefault(conn.topic, []).append(t)
    for topic, (msgtype, count) in SHARED_BAGS[TURTLESIM].items():
        row = row_of(proc.stdout, topic)
        assert msgtype in row and f" {count} " in row, row
        layout = KNOWN_TAGS.get(msgtype) or f"generic ({GENERIC_TAGS[msgtype]})"
        assert f" {layout} " in row, row
        assert iso(min(times[topic])) in row and iso(max(times[topic])) in row, row
    total = sum(n for _t, n in SHARED_BAGS[TURTLESIM].values())
    assert f"the import would write {total} messages" in proc.stdout


def test_estimate_is_near_what_an_import_writes(tmp_path):
    """The estimated Arrow bytes are of the order of what the import then sends."""
    bag = shared_bag("ros1_husky_imu_odom_gps/husky_imu_odom_gps.bag")
    dry = run_cli(CLI, str(bag), "--sequence", "s", "--root", str(tmp_path / "r"), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    estimate = re.search(r"~([\d.]+) (KiB|MiB)", dry.stdout)
    real = run_cli(CLI, str(bag), "--sequence", "s", "--root", str(tmp_path / "r"))
    assert real.returncode == 0, real.stderr
    total = re.search(r"│ 3 topics .*│ +([\d.]+) (KiB|MiB) │", real.stdout)
    assert estimate and total, (dry.stdout, real.stdout)
    scale = {"KiB": 1024, "MiB": 1024**2}
    est, got = (float(m.group(1)) * scale[m.group(2)] for m in (estimate, total))
    assert 0.5 < est / got < 3, (est, got)


def test_header_timestamps_in_the_plan(tmp_path):
    bag = imu_bag(tmp_path / "imu", count=20)  # header.stamp = i s, log time = 1 s + i * 10 ms
    proc = run_cli(CLI, str(bag), "--sequence", "s", "--root", str(tmp_path / "r"), "--dry-run",
                   "--timestamp", "header")
    assert proc.returncode == 0, proc.stderr
    row = row_of(proc.stdout, "/imu")
    assert " header " in row and iso(0) in row and iso(19 * 10**9) in row, row


def unknown_type_bag(tmp_path) -> Path:
    """The split String bag with topic AAA retyped to a type no typestore knows."""
    bag = tmp_path / "wbag"
    shutil.copytree(shared_bag("ros2_sqlite3_split_wbag/wbag"), bag)
    for db in bag.glob("*.db3"):
        con = sqlite3.connect(db)
        con.execute("UPDATE topics SET type = 'custom_msgs/msg/Unknown' WHERE name = 'AAA'")
        con.commit()
        con.close()
    meta = bag / "metadata.yaml"
    meta.write_text(re.sub(r"(name: AAA\n\s+type: )std_msgs/msg/String", r"\1custom_msgs/msg/Unknown", meta.read_text()))
    return bag


def bad_name_bag(path: Path) -> Path:
    """A bag whose Imu topic name Mosaico refuses (a space in it)."""
    ts = get_typestore(Stores.ROS2_KILTED)
    T = ts.types
    msg = T["sensor_msgs/msg/Imu"](
        header=T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=1, nanosec=0), frame_id="imu"),
        orientation=T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0),
        orientation_covariance=np.zeros(9), angular_velocity=T["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=0.0),
        angular_velocity_covariance=np.zeros(9), linear_acceleration=T["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=9.8),
        linear_acceleration_covariance=np.zeros(9),
    )
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        conn = w.add_connection("/bad topic", "sensor_msgs/msg/Imu", typestore=ts)
        ok = w.add_connection("/good", "sensor_msgs/msg/Imu", typestore=ts)
        for i in range(3):
            w.write(conn, 10**9 + i, ts.serialize_cdr(msg, "sensor_msgs/msg/Imu"))
            w.write(ok, 10**9 + i, ts.serialize_cdr(msg, "sensor_msgs/msg/Imu"))
    return path


def same_refusal(tmp_path, bag_args: list[str], target: list[str], root: Path | None = None) -> tuple[str, str]:
    """Run the dry run, then the real import: both exit 2 with the same line; the dry run
    leaves ``root`` exactly as it was. Returns (line, dry stdout)."""
    before = snapshot(root) if root is not None and root.exists() else None
    dry = run_cli(CLI, *bag_args, "--sequence", "dry", *target, "--dry-run")
    assert dry.returncode == 2, dry.stderr
    if root is not None:
        assert (snapshot(root) if root.exists() else None) == before
    real = run_cli(CLI, *bag_args, "--sequence", "dry", *target)
    assert real.returncode == 2, real.stderr
    assert one_error_line(dry) == one_error_line(real)
    assert "problems an import would refuse:" in dry.stdout
    return one_error_line(dry), dry.stdout


def test_unknown_type_same_error_as_the_import(tmp_path):
    bag = unknown_type_bag(tmp_path)
    line, stdout = same_refusal(tmp_path, [str(bag)], ["--root", str(tmp_path / "r")], tmp_path / "r")
    assert "custom_msgs/msg/Unknown" in line
    assert "custom_msgs/msg/Unknown" in row_of(stdout, "AAA")
    assert " 804 " in row_of(stdout, "AAA")  # still counted
    assert " String " in row_of(stdout, "BBB")  # the other topics are listed as usual


def test_every_problem_is_listed(tmp_path):
    """A bad topic name and an existing sequence: both listed, the import's first one on stderr."""
    bag = bad_name_bag(tmp_path / "bad")
    root = tmp_path / "r"
    ok = run_cli(CLI, str(bag), "--sequence", "dry", "--root", str(root), "--exclude", "/bad topic")
    assert ok.returncode == 0, ok.stderr
    line, stdout = same_refusal(tmp_path, [str(bag)], ["--root", str(root)], root)
    assert "invalid topic name" in line and "/bad topic" in line
    assert "sequence 'dry' already exists on the server" in stdout


def test_existing_sequence_on_the_embedded_root(tmp_path):
    bag = imu_bag(tmp_path / "imu", count=5)
    root = tmp_path / "r"
    assert run_cli(CLI, str(bag), "--sequence", "dry", "--root", str(root)).returncode == 0
    line, _ = same_refusal(tmp_path, [str(bag)], ["--root", str(root)], root)
    assert "'dry' already exists" in line


def test_existing_sequence_on_a_server(tmp_path, server, client):
    bag = imu_bag(tmp_path / "imu", count=5)
    target = ["--host", "127.0.0.1", "--port", str(server.port)]
    fresh = run_cli(CLI, str(bag), "--sequence", "dry", *target, "--dry-run")
    assert fresh.returncode == 0, fresh.stderr
    assert client.list_sequences() == []  # the dry run created nothing on the server
    assert run_cli(CLI, str(bag), "--sequence", "dry", *target).returncode == 0
    line, _ = same_refusal(tmp_path, [str(bag)], target)
    assert "'dry' already exists" in line


@pytest.mark.parametrize("marker", [b"garbage", b'{"format": 99}'])
def test_bad_store_marker_same_error(tmp_path, marker):
    bag = imu_bag(tmp_path / "imu", count=5)
    root = tmp_path / "r"
    root.mkdir()
    (root / "MOSAICO_STORE").write_bytes(marker)
    dry = run_cli(CLI, str(bag), "--sequence", "dry", "--root", str(root), "--dry-run")
    assert sorted(p.name for p in root.iterdir()) == ["MOSAICO_STORE"]
    real = run_cli(CLI, str(bag), "--sequence", "dry", "--root", str(root))
    assert dry.returncode == real.returncode == 2
    assert one_error_line(dry) == one_error_line(real)
