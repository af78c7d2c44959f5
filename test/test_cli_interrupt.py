"""``bag_import`` stopped by SIGINT (Ctrl-C) or SIGTERM (``timeout``, CI cancellation,
``docker stop``) in the middle of an import: it stops reading, applies ``--on-error``
while the server (embedded or a separate ``mosaico_server`` process) is still up, says
in one line what it kept or deleted, and exits 128 + the signal number. What is left is
then read back with the SDK ``mosaicolabs``.
"""

from __future__ import annotations

import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, free_port, wait_until
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

mosaicolabs = pytest.importorskip("mosaicolabs")

CLI = "mosaico_bridge.cli.bag_import"
COUNT = 60_000
T0_NS = 1_000_000_000
STEP_NS = 1_000_000


@pytest.fixture(scope="module")
def big_bag(tmp_path_factory) -> Path:
    """An MCAP bag of COUNT Imu messages, log time T0_NS + i * STEP_NS: with one row per
    record batch its import takes minutes, so a signal always lands in the middle."""
    path = tmp_path_factory.mktemp("big") / "imu"
    ts = get_typestore(Stores.ROS2_KILTED)
    T = ts.types
    msg = T["sensor_msgs/msg/Imu"](
        header=T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=1, nanosec=0), frame_id="imu"),
        orientation=T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0),
        orientation_covariance=np.zeros(9), angular_velocity=T["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=0.0),
        angular_velocity_covariance=np.zeros(9),
        linear_acceleration=T["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=9.81),
        linear_acceleration_covariance=np.zeros(9),
    )
    raw = bytes(ts.serialize_cdr(msg, "sensor_msgs/msg/Imu"))
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        conn = w.add_connection("/imu", "sensor_msgs/msg/Imu", typestore=ts)
        for i in range(COUNT):
            w.write(conn, T0_NS + i * STEP_NS, raw)
    return path


def read_line(proc: subprocess.Popen, needle: str, timeout: float = 60) -> str:
    """The first stdout line of ``proc`` containing ``needle``, waiting at most ``timeout`` s."""
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
            continue
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if needle in line:
            return line
    raise AssertionError(f"no line with {needle!r} on stdout within {timeout} s: {seen}; stderr: {proc.stderr.read()}")


@pytest.fixture
def separate_server(tmp_path):
    """A ``mosaico_server`` process on a free port; yields the port."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "mosaico_bridge.cli.server", "--root", str(tmp_path / "srv"),
                             "--port", str(port)], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def up():
            try:
                with mosaicolabs.MosaicoClient.connect("127.0.0.1", port, timeout=1):
                    return True
            except ConnectionError:  # not listening yet
                return False

        wait_until(up, timeout=30, what="mosaico_server to answer")
        yield port
    finally:
        proc.kill()
        proc.wait(timeout=30)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("policy", ["delete", "report"])
@pytest.mark.parametrize("where", ["embedded", "separate"])
def test_signal_applies_policy(tmp_path, big_bag, request, sig, policy, where):
    if where == "separate":
        port = request.getfixturevalue("separate_server")
        target = ["--host", "127.0.0.1", "--port", str(port)]
    else:
        root = tmp_path / "root"
        target = ["--root", str(root)]
    proc = subprocess.Popen(
        [sys.executable, "-m", CLI, str(big_bag), "--sequence", "cut", "--on-error", policy,
         "--max-batch-records", "1", *target],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    )
    try:
        read_line(proc, f"importing {COUNT} messages")
        if where == "separate":  # the sequence is there: the import is under way
            with mosaicolabs.MosaicoClient.connect("127.0.0.1", port) as sdk:
                wait_until(lambda: sdk.sequence_exists("cut"), timeout=60, what="sequence 'cut' to be created")
        proc.send_signal(sig)
        _out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    assert proc.returncode == 128 + sig, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"bag_import: interrupted by {sig.name}; "), lines[0]

    if where == "embedded":
        from mosaico_bridge.server import MosaicoServer

        srv = MosaicoServer.start_background(root, host="127.0.0.1", port=0)
        port = srv.port
    try:
        with mosaicolabs.MosaicoClient.connect("127.0.0.1", port) as sdk:
            if policy == "delete":
                assert "deleted" in lines[0]
                assert sdk.list_sequences() == []
                return
            assert sdk.list_sequences() == ["cut"]
            seq = sdk.sequence_handler("cut")
            assert all(s.completed_timestamp is not None for s in seq.sessions)  # the session was closed
            notes = sdk.list_sequence_notifications("cut")
            assert any(sig.name in n.message for n in notes), notes
            stamps = [m.timestamp_ns for m in sdk.topic_handler("cut", "/imu").get_data_streamer()]
            # reading stopped part-way; what was read is kept, in order, without a gap
            assert 0 < len(stamps) < COUNT
            assert stamps == [T0_NS + i * STEP_NS for i in range(len(stamps))]
            assert f"kept: {len(stamps)} rows on 1 topics" in lines[0]
    finally:
        if where == "embedded":
            srv.stop(timeout=30)
