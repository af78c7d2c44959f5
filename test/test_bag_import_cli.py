"""``bag_import`` on bad input: one clear line on standard error, a non-zero exit, and
nothing half-written left behind under the Delete policy. Each case runs the CLI as
a separate process, as a user would.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from conftest import free_port, run_cli, shared_bag
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

CLI = "mosaico_bridge.cli.bag_import"


def one_error_line(proc) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("bag_import: error: "), lines[0]
    return lines[0]


def imu_bag(path: Path, count: int = 600, corrupt_index: int | None = None) -> Path:
    """A ROS 2 sqlite3 bag of ``count`` Imu messages; optionally one corrupt serialized message."""
    ts = get_typestore(Stores.ROS2_KILTED)
    T = ts.types
    with Writer(path, version=9, storage_plugin=StoragePlugin.SQLITE3) as w:
        conn = w.add_connection("/imu", "sensor_msgs/msg/Imu", typestore=ts)
        for i in range(count):
            msg = T["sensor_msgs/msg/Imu"](
                header=T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=i, nanosec=0), frame_id="imu"),
                orientation=T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0),
                orientation_covariance=np.zeros(9),
                angular_velocity=T["geometry_msgs/msg/Vector3"](x=float(i), y=0.0, z=0.0),
                angular_velocity_covariance=np.zeros(9),
                linear_acceleration=T["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=9.81),
                linear_acceleration_covariance=np.zeros(9),
            )
            w.write(conn, 1_000_000_000 + i * 10_000_000, ts.serialize_cdr(msg, "sensor_msgs/msg/Imu"))
    if corrupt_index is not None:
        db = sqlite3.connect(next(path.glob("*.db3")))
        db.execute("UPDATE messages SET data = X'00010000' WHERE id = ?", (corrupt_index + 1,))
        db.commit()
        db.close()
    return path


def stored_sequences(root: Path) -> list[str]:
    from mosaico_bridge.client import MosaicoClient
    from mosaico_bridge.server import MosaicoServer

    with (
        MosaicoServer.start_background(root, host="127.0.0.1", port=0) as srv,
        MosaicoClient.connect("127.0.0.1", srv.port) as c,
    ):
        return c.list_sequences()


def test_help_lists_every_option():
    proc = run_cli(CLI, "--help")
    assert proc.returncode == 0
    for opt in ("--sequence", "--host", "--port", "--api-key", "--tls-cert", "--root", "--topics",
                "--exclude", "--metadata", "--on-error"):
        assert opt in proc.stdout


def test_missing_bag(tmp_path):
    proc = run_cli(CLI, str(tmp_path / "nope.mcap"), "--sequence", "s", "--root", str(tmp_path / "r"))
    assert proc.returncode == 2
    assert "bag not found" in one_error_line(proc) and "nope.mcap" in proc.stderr


def test_corrupt_bag(tmp_path):
    bad = tmp_path / "garbage.bag"
    bad.write_bytes(b"#ROSBAG V2.0\n" + bytes(range(256)) * 40)
    proc = run_cli(CLI, str(bad), "--sequence", "s", "--root", str(tmp_path / "r"))
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert "garbage.bag" in line and ("cannot open bag" in line or "corrupt bag" in line)
    assert not (tmp_path / "r").exists() or stored_sequences(tmp_path / "r") == []


def test_truncated_ros1_bag(tmp_path):
    src = shared_bag("ros1_husky_imu_odom_gps/husky_imu_odom_gps.bag")
    bad = tmp_path / "truncated.bag"
    bad.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    proc = run_cli(CLI, str(bad), "--sequence", "s", "--root", str(tmp_path / "r"))
    assert proc.returncode == 2
    assert "truncated.bag" in one_error_line(proc)


def test_unreadable_type(tmp_path):
    """An old rosbag2 bag (no definitions stored) with a type no typestore knows."""
    bag = tmp_path / "wbag"
    shutil.copytree(shared_bag("ros2_sqlite3_split_wbag/wbag"), bag)
    for db in bag.glob("*.db3"):
        con = sqlite3.connect(db)
        con.execute("UPDATE topics SET type = 'custom_msgs/msg/Unknown' WHERE name = 'AAA'")
        con.commit()
        con.close()
    meta = bag / "metadata.yaml"
    meta.write_text(re.sub(r"(name: AAA\n\s+type: )std_msgs/msg/String", r"\1custom_msgs/msg/Unknown", meta.read_text()))
    proc = run_cli(CLI, str(bag), "--sequence", "s", "--root", str(tmp_path / "r"))
    assert proc.returncode == 2
    assert "custom_msgs/msg/Unknown" in one_error_line(proc)
    assert stored_sequences(tmp_path / "r") == []  # nothing was created
    # the other topics import fine once the unreadable one is excluded
    ok = run_cli(CLI, str(bag), "--sequence", "s", "--root", str(tmp_path / "r"), "--exclude", "AAA")
    assert ok.returncode == 0, ok.stderr


def test_unreachable_server(tmp_path):
    bag = imu_bag(tmp_path / "imu")
    proc = run_cli(CLI, str(bag), "--sequence", "s", "--host", "127.0.0.1", "--port", str(free_port()), "--timeout", "1")
    assert proc.returncode == 1
    line = one_error_line(proc)
    assert "127.0.0.1" in line and "did not answer" in line


def test_existing_sequence_name(tmp_path):
    bag = imu_bag(tmp_path / "imu")
    root = tmp_path / "r"
    assert run_cli(CLI, str(bag), "--sequence", "run_1", "--root", str(root)).returncode == 0
    proc = run_cli(CLI, str(bag), "--sequence", "run_1", "--root", str(root))
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert "run_1" in line and "already exists" in line


@pytest.mark.parametrize("name", ["bad name", "-starts-with-dash", "has/slash", "ünïcode", ""])
def test_invalid_sequence_name(tmp_path, name):
    bag = imu_bag(tmp_path / "imu", count=5)
    proc = run_cli(CLI, str(bag), f"--sequence={name}", "--root", str(tmp_path / "r"))
    assert proc.returncode == 2
    assert "invalid sequence name" in one_error_line(proc)


def test_bad_metadata_and_pattern(tmp_path):
    bag = imu_bag(tmp_path / "imu", count=5)
    proc = run_cli(CLI, str(bag), "--sequence", "s", "--root", str(tmp_path / "r"), "--metadata", "{not json")
    assert proc.returncode == 2 and "--metadata" in one_error_line(proc)
    proc = run_cli(CLI, str(bag), "--sequence", "s", "--root", str(tmp_path / "r"), "--topics", "/imu(")
    assert proc.returncode == 2 and "invalid topic pattern" in one_error_line(proc)


def test_corrupt_message_under_delete_policy_leaves_nothing(tmp_path):
    bag = imu_bag(tmp_path / "imu", count=600, corrupt_index=450)
    root = tmp_path / "r"
    proc = run_cli(CLI, str(bag), "--sequence", "half", "--root", str(root), "--on-error", "delete",
                   "--max-batch-records", "50")
    assert proc.returncode != 0
    assert "sensor_msgs/msg/Imu" in one_error_line(proc)
    assert stored_sequences(root) == []


def test_corrupt_message_under_report_policy_keeps_what_came_before(tmp_path):
    from mosaico_bridge.client import MosaicoClient
    from mosaico_bridge.server import MosaicoServer

    bag = imu_bag(tmp_path / "imu", count=600, corrupt_index=450)
    root = tmp_path / "r"
    proc = run_cli(CLI, str(bag), "--sequence", "half", "--root", str(root), "--on-error", "report",
                   "--max-batch-records", "50")
    assert proc.returncode != 0
    assert "sensor_msgs/msg/Imu" in one_error_line(proc)
    with (
        MosaicoServer.start_background(root, host="127.0.0.1", port=0) as srv,
        MosaicoClient.connect("127.0.0.1", srv.port) as c,
    ):
        assert c.list_sequences() == ["half"]
        notes = c.list_sequence_notifications("half")
        assert notes and "Imu" in notes[0].message
        table = c.topic_handler("half", "/imu").read()
        # every message before the corrupt one is kept, in order
        assert table.num_rows == 450
        assert table.column("timestamp_ns").to_pylist() == [1_000_000_000 + i * 10_000_000 for i in range(450)]


def test_spool_upload_bad_input(tmp_path):
    proc = run_cli("mosaico_bridge.cli.spool_upload", str(tmp_path / "nope"), "--host", "127.0.0.1")
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines == [f"spool_upload: error: spool directory not found: {tmp_path / 'nope'}"]
    (tmp_path / "empty").mkdir()
    ok = run_cli("mosaico_bridge.cli.spool_upload", str(tmp_path / "empty"), "--host", "127.0.0.1",
                 "--port", str(free_port()))
    assert ok.returncode == 0 and "nothing to upload" in ok.stdout
