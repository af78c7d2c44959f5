"""Shared fixtures: the shared bags, an embedded server per test, the real SDK as reader."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MOSAICO_SHARED", REPO.parent / "shared"))
BAGS_DIR = SHARED / "data" / "bags"

# The shared bags and what their README (shared/data/bags/README.md) lists for them:
# bag path -> {topic: (ROS type, message count)}. The README was made with rosbags'
# AnyReader, independently of this project.
_STRING_SPLIT = {t: ("std_msgs/msg/String", n) for t, n in
                 zip(["AAA", "BBB", "CCC", "DDD", "EEE", "FFF", "GGG", "HHH"], [804, 742, 742, 753, 804, 772, 731, 726])}
_CDR_TEST = {"/array_topic": ("test_msgs/msg/Arrays", 4), "/test_topic": ("test_msgs/msg/BasicTypes", 3)}
SHARED_BAGS: dict[str, dict[str, tuple[str, int]]] = {
    "ros1_husky_imu_odom_gps/husky_imu_odom_gps.bag": {
        "/fix": ("sensor_msgs/msg/NavSatFix", 989),
        "/husky_velocity_controller/odom": ("nav_msgs/msg/Odometry", 3952),
        "/imu/data": ("sensor_msgs/msg/Imu", 11865),
    },
    "ros1_turtlesim_multiconn/turtlesim_example.bag": {
        "/rosout": ("rosgraph_msgs/msg/Log", 10),
        "/tf": ("tf/msg/tfMessage", 2688),
        "/tf_static": ("tf2_msgs/msg/TFMessage", 1),
        "/turtle1/cmd_vel": ("geometry_msgs/msg/Twist", 357),
        "/turtle1/color_sensor": ("turtlesim/msg/Color", 1351),
        "/turtle1/pose": ("turtlesim/msg/Pose", 1344),
        "/turtle2/cmd_vel": ("geometry_msgs/msg/Twist", 208),
        "/turtle2/color_sensor": ("turtlesim/msg/Color", 1344),
        "/turtle2/pose": ("turtlesim/msg/Pose", 1344),
    },
    "ros1_tf_lz4/tf_example.bag": {
        "/tf": ("tf2_msgs/msg/TFMessage", 517),
        "/tf_static": ("tf2_msgs/msg/TFMessage", 1),
    },
    "ros2_mcap_nav2_turtlebot/nav2_turtlebot.mcap": {
        "/amcl_pose": ("geometry_msgs/msg/PoseWithCovarianceStamped", 135),
        "/odom": ("nav_msgs/msg/Odometry", 2639),
        "/tf": ("tf2_msgs/msg/TFMessage", 5422),
        "/tf_static": ("tf2_msgs/msg/TFMessage", 1),
    },
    "ros2_sqlite3_cdr_test/cdr_test": _CDR_TEST,
    "ros2_mcap_cdr_test/cdr_test": _CDR_TEST,
    "ros2_sqlite3_split_wbag/wbag": _STRING_SPLIT,
    "ros2_mcap_split_wbag/wbag": _STRING_SPLIT,
}


def shared_bag(rel: str) -> Path:
    """Path of a shared bag. Without shared/ beside the repo the test is skipped, except
    under CI (``CI=true``), where a missing bag fails the run."""
    path = BAGS_DIR / rel
    if not path.exists():
        message = f"shared bag {rel} not found under {BAGS_DIR} (set MOSAICO_SHARED)"
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def task_nice(task: Path) -> tuple[str, int]:
    """(OS name, nice value) of a thread, from ``task``/stat (``/proc/<pid>/task/<tid>``; field 19).

    Raises:
        OSError: the thread ended.
    """
    stat = (task / "stat").read_text()
    return stat[stat.index("(") + 1:stat.rindex(")")], int(stat.rsplit(")", 1)[1].split()[16])


def thread_nices(pid: int) -> dict[str, set[int]]:
    """{OS thread name: nice values} of a process's threads (:func:`task_nice`)."""
    out: dict[str, set[int]] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name, nice = task_nice(task)
        except OSError:
            continue  # the thread ended
        out.setdefault(name, set()).add(nice)
    return out


def wait_until(predicate, timeout: float = 10.0, what: str = "condition"):
    """Poll ``predicate`` every 20 ms until it returns a true value (returned), at most ``timeout`` s."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def run_cli(module: str, *args: str, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m module args`` in a separate process; capture its output."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True, text=True, timeout=timeout, cwd=REPO, env=full_env, stdin=subprocess.DEVNULL, check=False,
    )


@pytest.fixture
def server(tmp_path):
    """An embedded Mosaico server on a fresh root, in a background thread of this process."""
    from mosaico_bridge.server import MosaicoServer

    srv = MosaicoServer.start_background(tmp_path / "store", host="127.0.0.1", port=0)
    try:
        yield srv
    finally:
        srv.stop(timeout=30)


class ServerProcess:
    """This checkout's ``mosaico_server`` in a process of its own on ``root``, on ``port``
    (a free one by default), once it answers an ``info`` action; :meth:`stop` stops it by
    PID and returns its standard error."""

    def __init__(self, root: Path, *extra: str, port: int | None = None) -> None:
        import wire_bodies as wire
        from pyarrow import flight

        self.root = root
        self.port = port or free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mosaico_bridge.cli.server", "--root", str(root), "--port", str(self.port), *extra],
            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )
        self.location = f"grpc://127.0.0.1:{self.port}"

        def up() -> bool:
            assert self.proc.poll() is None, self.proc.stderr.read() if self.proc.stderr else ""
            try:
                with flight.FlightClient(self.location) as c:
                    list(c.do_action(wire.action(wire.Action.INFO, {}), flight.FlightCallOptions(timeout=1)))
                return True
            except flight.FlightError:
                return False

        wait_until(up, timeout=30, what="mosaico_server to answer")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            _, err = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate(timeout=10)
        return err


@pytest.fixture
def server_process(tmp_path):
    """``mosaico_server`` in a process of its own on a fresh root, as a robot or a lab runs
    it: for the live tests whose load would share the test runner's GIL and heap with the
    in-process ``server``."""
    srv = ServerProcess(tmp_path / "server-root")
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def client(server):
    """Our client, connected to the embedded server."""
    from mosaico_bridge.client import MosaicoClient

    with MosaicoClient.connect("127.0.0.1", server.port) as c:
        yield c


@pytest.fixture
def sdk(server):
    """The official SDK (mosaicolabs 0.7.0), connected to the embedded server."""
    mosaicolabs = pytest.importorskip("mosaicolabs")
    with mosaicolabs.MosaicoClient.connect("127.0.0.1", server.port) as c:
        yield c


@pytest.fixture(scope="session")
def ros_domain() -> int:
    """The DDS domain of this test run (scripts/test.sh exports a random one)."""
    import random

    return int(os.environ.get("ROS_DOMAIN_ID") or random.randint(1, 101))


def pytest_configure(config):
    """The ``server`` fixture runs the server in this process: configure its malloc as
    ``mosaico_server`` does (keep freed memory for the next record batches)."""
    from mosaico_bridge.cli.server import SERVER_RETAIN_BYTES
    from mosaico_bridge.common.memory import keep_freed_memory

    keep_freed_memory(SERVER_RETAIN_BYTES)
