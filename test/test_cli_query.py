"""``mosaico_query`` in subprocesses against an embedded store holding shared bags imported
with ``import_bags``; ground truth from rosbags."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
from conftest import shared_bag
from rosbags.highlevel import AnyReader

from mosaico_bridge.embedded import ServerConfig, connect_or_embed
from mosaico_bridge.importer import import_bags

HUSKY = "ros1_husky_imu_odom_gps/husky_imu_odom_gps.bag"
TURTLE = "ros1_turtlesim_multiconn/turtlesim_example.bag"


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("query_cli") / "store"
    with connect_or_embed(ServerConfig(root=str(root))) as conn:
        import_bags(conn.client, [shared_bag(HUSKY)], "husky_rain", metadata={"weather": "rain", "robot": {"id": 3}})
        import_bags(conn.client, [shared_bag(TURTLE)], "turtle_dry", metadata={"weather": "dry", "robot": {"id": 7}})
    return root


def _query(*args: str, root=None, timeout: float = 120) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "mosaico_bridge.cli.query", *args]
    if root is not None:
        cmd += ["--root", str(root)]
    env = {k: v for k, v in os.environ.items() if k not in ("MOSAICO_API_KEY", "MOSAICO_TLS_CERT_FILE")}
    return subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, env=env)


def _json(*args: str, root) -> dict:
    proc = _query(*args, "--json", root=root)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _listing(doc: dict) -> list[tuple[str, str]]:
    return [(s["name"], t["name"]) for s in doc["sequences"] for t in s["topics"]]


def _bag_rows(rel: str, topic: str) -> list[tuple[int, object]]:
    with AnyReader([shared_bag(rel)]) as reader:
        conns = [c for c in reader.connections if c.topic == topic]
        return [(t, reader.deserialize(raw, c.msgtype)) for c, t, raw in reader.messages(conns)]


def _windows(ts: np.ndarray, gap_ns: int) -> list[tuple[int, int]]:
    ts = np.sort(ts)
    breaks = np.flatnonzero(np.diff(ts) > gap_ns) + 1
    starts = np.concatenate(([0], breaks))
    ends = np.concatenate((breaks - 1, [ts.size - 1]))
    return [(int(ts[s]), int(ts[e])) for s, e in zip(starts, ends)]


def test_value_query_windows_match_rosbags(root):
    rows = [(t, m.linear_acceleration.x) for t, m in _bag_rows(HUSKY, "/imu/data")]
    thr = float(np.quantile([v for _, v in rows], 0.95))
    expect = np.array([t for t, v in rows if v > thr], dtype=np.int64)
    doc = _json("--where", f"IMU.acceleration.x > {thr!r}", "--windows", "2.5", root=root)
    assert _listing(doc) == [("husky_rain", "/imu/data")]
    got = [(w["start_ns"], w["end_ns"]) for w in doc["sequences"][0]["topics"][0]["windows"]]
    assert got == _windows(expect, 2_500_000_000)
    assert len(got) > 1
    w0 = doc["sequences"][0]["topics"][0]["windows"][0]
    assert w0["start"].endswith(f".{w0['start_ns'] % 10**9:09d}Z") and w0["start"].startswith("2015-")
    # a second condition on the same tag narrows the rows (AND), between is inclusive
    lo, hi = float(np.quantile([v for _, v in rows], 0.5)), thr
    both = np.array([t for t, m in _bag_rows(HUSKY, "/imu/data")
                     if lo <= m.linear_acceleration.x <= hi and m.angular_velocity.z < 0], dtype=np.int64)
    doc = _json("--where", f"IMU.acceleration.x between {lo!r} {hi!r}", "--where", "IMU.angular_velocity.z < 0",
                "--windows", "0", root=root)
    assert [(w["start_ns"], w["end_ns"]) for w in doc["sequences"][0]["topics"][0]["windows"]] == [
        (int(both.min()), int(both.max()))]
    # nothing above the maximum: found nothing, still exit 0
    top = max(v for _, v in rows)
    none = _query("--where", f"IMU.acceleration.x > {top!r}", root=root)
    assert none.returncode == 0, none.stderr
    assert none.stdout.strip().splitlines()[-1] == "0 sequences, 0 topics matched"


def test_windows_without_value_condition_cover_all_rows(root):
    doc = _json("--sequence-name", "turtle_dry", "--topic-match", "/turtle?/pose", "--windows", "0", root=root)
    assert _listing(doc) == [("turtle_dry", "/turtle1/pose"), ("turtle_dry", "/turtle2/pose")]
    for topic in doc["sequences"][0]["topics"]:
        ts = [t for t, _ in _bag_rows(TURTLE, topic["name"])]
        assert [(w["start_ns"], w["end_ns"]) for w in topic["windows"]] == [(min(ts), max(ts))]
    # a tag this version does not know is checked by the server against the stored schema
    xs = [(t, m.x) for t, m in _bag_rows(TURTLE, "/turtle2/pose")]
    thr = float(np.quantile([v for _, v in xs], 0.8))
    doc = _json("--where", f"turtlesim_Pose.x >= {thr!r}", "--tag", "turtlesim_Pose", "--windows", "0", root=root)
    hit1 = [t for t, m in _bag_rows(TURTLE, "/turtle1/pose") if m.x >= thr]
    hit2 = [t for t, v in xs if v >= thr]
    expect = [(name, [(min(h), max(h))]) for name, h in (("/turtle1/pose", hit1), ("/turtle2/pose", hit2)) if h]
    assert [(t["name"], [(w["start_ns"], w["end_ns"]) for w in t["windows"]])
            for t in doc["sequences"][0]["topics"]] == expect


def test_catalog_filters(root):
    assert _listing(_json("--sequence-meta", "weather", "eq", "rain", "--tag", "GPS", root=root)) == [
        ("husky_rain", "/fix")]
    assert _listing(_json("--sequence-meta", "robot.id", "in", "3,4", "--topic-match", "/imu/*", root=root)) == [
        ("husky_rain", "/imu/data")]
    assert _listing(_json("--sequence-meta", "robot.id", "gt", "5", "--topic-name", "/tf_static", root=root)) == [
        ("turtle_dry", "/tf_static")]
    assert _listing(_json("--sequence-match", "husky_*", "--tag", "MotionState", root=root)) == [
        ("husky_rain", "/husky_velocity_controller/odom")]
    everything = _json(root=root)
    assert sorted(_listing(everything)) == sorted(
        [("husky_rain", t) for t in ("/fix", "/husky_velocity_controller/odom", "/imu/data")]
        + [("turtle_dry", t) for t in ("/rosout", "/tf", "/tf_static", "/turtle1/cmd_vel", "/turtle1/color_sensor",
                                       "/turtle1/pose", "/turtle2/cmd_vel", "/turtle2/color_sensor", "/turtle2/pose")])
    text = _query("--sequence-meta", "weather", "match", "r*", "--tag", "IMU", root=root)
    assert text.returncode == 0, text.stderr
    assert text.stdout.splitlines() == [
        "sequence husky_rain", "  topic /imu/data  [IMU]  locator husky_rain/imu/data", "1 sequence, 1 topic matched"]


@pytest.mark.parametrize(("args", "named"), [
    (["--where", "IMU.acceleration.nope > 1"], "nope"),
    (["--where", "IMU.acceleration.x > high"], "IMU.acceleration.x"),
    (["--where", "IMU.acceleration.x >> 1"], "IMU.acceleration.x >> 1"),
    (["--where", "IMU.acceleration.covariance > 1"], "[?]"),
    (["--where", "IMU.acceleration.x between 2 1"], "IMU.acceleration.x"),
    (["--where", "turtlesim_Pose.nope > 1"], "turtlesim_Pose.nope"),  # refused by the server
    (["--sequence-meta", "weather", "like", "rain"], "like"),
    (["--topic-meta", "k", "in", ","], "--topic-meta"),
    (["--sequence-match", "x[", "--json"], "x["),  # refused by the server
    (["--windows", "-1"], "--windows"),
])
def test_bad_filters_exit_2_with_one_line(root, args, named):
    proc = _query(*args, root=root)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mosaico_query: error:") and named in lines[0], proc.stderr
    assert proc.stdout == ""


def test_server_failure_and_missing_root_and_help(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    down = _query("--host", "127.0.0.1", "--port", str(port), "--timeout", "1")
    assert down.returncode == 1, (down.stdout, down.stderr)
    assert len(down.stderr.strip().splitlines()) == 1
    missing = _query(root=tmp_path / "absent")
    assert missing.returncode == 2 and "absent" in missing.stderr
    assert not (tmp_path / "absent").exists()
    helped = _query("--help")
    assert helped.returncode == 0
    for part in ("examples:", "exit status:", "--where", "between", "--windows", "$MOSAICO_API_KEY"):
        assert part in helped.stdout
