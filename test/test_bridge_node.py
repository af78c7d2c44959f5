"""The live bridge, as a robot runs it: the node in its own process, a publisher process
replaying real bags, a third process driving the standard lifecycle services; the
embedded server in this process (``mosaico_server`` in a process of its own for the camera
load); the real SDK (mosaicolabs 0.7.0) reading back.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import REPO, free_port, shared_bag, thread_nices, wait_until
from ros_util import Agent, BridgeProcess
from rosbags.highlevel import AnyReader
from rosbags.typesys import Stores, get_typestore

pytest.importorskip("rclpy")
mosaicolabs = pytest.importorskip("mosaicolabs")

HUSKY = "ros1_husky_imu_odom_gps/husky_imu_odom_gps.bag"
NAV2 = "ros2_mcap_nav2_turtlebot/nav2_turtlebot.mcap"
NODE = "/mosaico_bridge"


@pytest.fixture
def procs(tmp_path, ros_domain):
    """Factory of ROS processes; everything started is stopped by PID at the end."""
    started = []

    class Procs:
        def agent(self, name: str, dds_profile: Path | None = None) -> Agent:
            a = Agent(ros_domain, tmp_path / f"{name}.log", dds_profile)
            started.append(a)
            return a

        def bridge(self, _wrapper: list[str] | tuple[str, ...] = (), **params) -> BridgeProcess:
            params.setdefault("spool_dir", str(tmp_path / "spool"))
            params.setdefault("embedded_root", str(tmp_path / "embedded"))
            b = BridgeProcess(ros_domain, tmp_path / f"bridge{len(started)}.log", params, wrapper=_wrapper)
            started.append(b)
            return b

    yield Procs()
    for p in reversed(started):
        p.close() if isinstance(p, Agent) else p.stop()


def bag_values(rel: str, topics: list[str]) -> dict[str, list]:
    out: dict[str, list] = {t: [] for t in topics}
    with AnyReader([shared_bag(rel)], default_typestore=get_typestore(Stores.ROS2_HUMBLE)) as reader:
        conns = [c for c in reader.connections if c.topic in topics]
        for conn, _t, raw in reader.messages(connections=conns):
            out[conn.topic].append(reader.deserialize(raw, conn.msgtype))
    return out


def key(msg) -> tuple:
    """What identifies a published message in what the SDK reads back."""
    name = type(msg).__name__
    if name == "IMU":
        return ("imu", msg.acceleration.x, msg.acceleration.y, msg.acceleration.z, msg.angular_velocity.x,
                msg.angular_velocity.y, msg.angular_velocity.z, msg.header.timestamp.seconds,
                msg.header.timestamp.nanoseconds)
    if name == "GPS":
        return ("gps", msg.position.x, msg.position.y, msg.position.z, msg.header.timestamp.seconds,
                msg.header.timestamp.nanoseconds)
    if name == "MotionState":
        return ("odom", msg.pose.position.x, msg.pose.position.y, msg.velocity.linear.x,
                msg.header.timestamp.seconds, msg.header.timestamp.nanoseconds)
    if name == "Pose":
        return ("pose", msg.position.x, msg.position.y, msg.orientation.z, msg.header.timestamp.seconds,
                msg.header.timestamp.nanoseconds)
    raise AssertionError(f"unexpected SDK class {name}")


def ros_key(msg, msgtype: str) -> tuple:
    st = msg.header.stamp
    if msgtype.endswith("Imu"):
        a, w = msg.linear_acceleration, msg.angular_velocity
        return ("imu", a.x, a.y, a.z, w.x, w.y, w.z, st.sec, st.nanosec)
    if msgtype.endswith("NavSatFix"):
        return ("gps", msg.latitude, msg.longitude, msg.altitude, st.sec, st.nanosec)
    if msgtype.endswith("Odometry"):
        return ("odom", msg.pose.pose.position.x, msg.pose.pose.position.y, msg.twist.twist.linear.x, st.sec,
                st.nanosec)
    p = msg.pose.pose
    return ("pose", p.position.x, p.position.y, p.orientation.z, st.sec, st.nanosec)


TYPES = {"/imu/data": "Imu", "/fix": "NavSatFix", "/husky_velocity_controller/odom": "Odometry",
         "/odom": "Odometry", "/amcl_pose": "PoseWithCovarianceStamped"}


def test_two_sessions_of_replayed_bags_read_back_exactly(server, procs):
    bridge = procs.bridge(host="127.0.0.1", port=server.port, sequence_name="live_{robot}", robot="husky",
                          topics=["/imu/data", "/fix", "/husky_velocity_controller/odom", "/odom", "/amcl_pose"])
    driver, publisher = procs.agent("driver"), procs.agent("publisher")
    assert driver.ask("state", node=NODE)["state"] == "unconfigured"
    assert "configure" in driver.ask("transitions", node=NODE)["transitions"]
    sessions = [(HUSKY, ["/imu/data", "/fix", "/husky_velocity_controller/odom"]), (NAV2, ["/odom", "/amcl_pose"]),
                (HUSKY, ["/fix"])]
    assert driver.ask("transition", node=NODE, transition="configure") == {"success": True, "state": "inactive"}
    published = []
    for rel, topics in sessions[:2]:
        assert driver.ask("transition", node=NODE, transition="activate") == {"success": True, "state": "active"}
        sent = publisher.ask("replay", bag=str(shared_bag(rel)), topics=topics, rate=2500, timeout=180)["published"]
        driver.ask("wait_received", node="mosaico_bridge", counts=sent, timeout=60)
        assert driver.ask("transition", node=NODE, transition="deactivate") == {"success": True, "state": "inactive"}
        published.append(sent)
    # a third session records /fix again: a topic name is used once per sequence, so it becomes /fix_s3
    assert driver.ask("transition", node=NODE, transition="activate")["success"]
    sent = publisher.ask("replay", bag=str(shared_bag(HUSKY)), topics=["/fix"], rate=2500)["published"]
    driver.ask("wait_received", node="mosaico_bridge", counts=sent, timeout=60)
    assert driver.ask("transition", node=NODE, transition="deactivate")["success"]
    published.append({"/fix_s3": sent["/fix"]})
    assert driver.ask("transition", node=NODE, transition="cleanup") == {"success": True, "state": "unconfigured"}
    assert driver.ask("transition", node=NODE, transition="shutdown") == {"success": True, "state": "finalized"}

    # the node's counters reconcile: every received message was written
    counters = bridge.counters()
    assert len(counters) == 3
    for session_counters, sent in zip(counters, published):
        for topic, n in sent.items():
            c = session_counters[topic.replace("_s3", "")]
            assert c["received"] == c["written"] == n, (topic, c)
            assert c["dropped"] == 0

    expected = {**bag_values(HUSKY, sessions[0][1]), **bag_values(NAV2, sessions[1][1])}
    expected["/fix_s3"] = expected["/fix"]
    with mosaicolabs.MosaicoClient.connect("127.0.0.1", server.port) as sdk:
        assert "live_husky" in sdk.list_sequences()
        handler = sdk.sequence_handler("live_husky")
        assert len(handler.sessions) == 3
        for sent in published:
            for topic, n in sent.items():
                th = sdk.topic_handler("live_husky", topic)
                assert th is not None and th.locked, topic
                msgs = list(th.get_data_streamer())
                assert len(msgs) == n, topic  # exactly once
                stamps = [m.timestamp_ns for m in msgs]
                assert stamps == sorted(stamps), topic
                msgtype = TYPES[topic.replace("_s3", "")]
                assert [key(m.data) for m in msgs] == [ros_key(r, msgtype) for r in expected[topic]], topic


def test_1080p_rgb8_30hz_for_10s_no_drop_in_the_bridge(server_process, procs):
    """Every frame of a 1080p camera reaches the store.

    The server is a process of its own, as deployed. Run in the test runner's process, it
    shared the GIL and heap of the whole session: frames waited for its acknowledgement
    291 ms (p50) in a full run and 36 ms alone, against 9-15 ms in a process of its own.

    The publisher has a 64 MiB Fast DDS shared-memory segment, as a camera driver of 6 MB
    frames should. With the default segment, fragments a busy subscriber had not read yet
    were recycled and repaired seconds later. The frames behind them then reached the
    bridge as one burst: 74 frames, against a budget of 43. The bridge drops that by design
    (max_inflight_bytes), and the test failed 8 of 25 times alone on a 2-core VM. With the
    larger segment it passed 10 of 10 times, with a p99 latency of 12-39 ms."""
    from mosaico_bridge.client import MosaicoClient

    server = server_process
    bridge = procs.bridge(host="127.0.0.1", port=server.port, sequence_name="camera_run", topics=["/camera/image_raw"],
                          max_batch_age_s=0.5)
    driver = procs.agent("driver")
    publisher = procs.agent("publisher", dds_profile=REPO / "config" / "large_shm_fastdds.xml")
    assert driver.ask("transition", node=NODE, transition="configure")["success"]
    assert driver.ask("transition", node=NODE, transition="activate")["success"]
    out = publisher.ask("images", topic="/camera/image_raw", hz=30, seconds=10, width=1920, height=1080, timeout=180)
    assert out["published"] >= 270, out["failed"]  # rmw may refuse a few large reliable samples
    driver.ask("wait_received", node="mosaico_bridge", counts={"/camera/image_raw": out["published"]}, timeout=90)
    assert driver.ask("transition", node=NODE, transition="deactivate", timeout=180)["success"]
    c = bridge.counters()[-1]["/camera/image_raw"]
    assert c["received"] == c["written"] == out["published"], c
    assert c["dropped"] == 0
    with MosaicoClient.connect("127.0.0.1", server.port) as client:
        th = client.topic_handler("camera_run", "/camera/image_raw")
        assert th.ontology_tag == "Image"
        got = []
        for batch in th.iter_batches():
            assert batch.column("width").to_pylist() == [1920] * batch.num_rows
            got += [hashlib.sha1(d.as_py()).hexdigest() for d in batch.column("data")]
    assert got == out["sha1"]


def test_configure_fails_while_server_unreachable_then_succeeds(procs, tmp_path):
    from mosaico_bridge.server import MosaicoServer

    port = free_port()
    bridge = procs.bridge(host="127.0.0.1", port=port, connect_timeout_s=1.0)
    driver = procs.agent("driver")
    assert driver.ask("transition", node=NODE, transition="configure") == {"success": False, "state": "unconfigured"}
    bridge.wait_log(rf"cannot connect to Mosaico at 127\.0\.0\.1:{port}")
    with MosaicoServer.start_background(tmp_path / "late", host="127.0.0.1", port=port):
        assert driver.ask("transition", node=NODE, transition="configure") == {"success": True, "state": "inactive"}
        assert driver.ask("transition", node=NODE, transition="cleanup")["success"]


def test_bad_parameter_is_refused_at_configure(server, procs):
    bridge = procs.bridge(host="127.0.0.1", port=server.port, on_error="maybe")
    driver = procs.agent("driver")
    assert driver.ask("transition", node=NODE, transition="configure") == {"success": False, "state": "unconfigured"}
    bridge.wait_log(r"parameter 'on_error'")


@pytest.mark.parametrize(("where", "expected"), [("embedded", 0), ("embedded", 10), ("host", 3)])
def test_worker_nice_lowers_the_conversion_and_data_threads_not_the_executor(server, procs, where, expected):
    params = {} if where == "embedded" else {"host": "127.0.0.1", "port": server.port}
    if expected:
        params["worker_nice"] = expected
    bridge = procs.bridge(**params)
    driver = procs.agent("driver")
    assert driver.ask("transition", node=NODE, transition="configure") == {"success": True, "state": "inactive"}
    nices = thread_nices(bridge.proc.pid)
    # "python": the main thread, which spins the executor; it keeps the test's own nice value
    base = os.getpriority(os.PRIO_PROCESS, 0)
    assert nices.pop("python") == {base}, nices
    workers = {name: n for name, n in nices.items() if name.startswith(("mb-convert", "mb-data"))}
    assert any(name.startswith("mb-convert") for name in workers) and any(name.startswith("mb-data") for name in workers)
    assert all(n == {min(19, base + expected)} for n in workers.values()), workers
    # the rmw layer's threads (Fast DDS receive and events) keep the node's priority
    dds = {name: n for name, n in nices.items() if name.startswith("dds.")}
    assert dds and all(n == {base} for n in dds.values()), dds
    assert driver.ask("transition", node=NODE, transition="cleanup")["success"]


@pytest.mark.parametrize("policy", ["report", "delete"])
def test_exception_during_activate_applies_on_error(procs, tmp_path, policy):
    """The server refuses the topic at activate (its message limit is below the topic's
    metadata): the session is reported or deleted and the node is unconfigured."""
    from mosaico_bridge.client import MosaicoClient
    from mosaico_bridge.server import MosaicoServer

    with MosaicoServer.start_background(tmp_path / "small", host="127.0.0.1", port=0,
                                        max_decode_message_size=700) as srv:
        publisher = procs.agent("publisher")
        publisher.ask("advertise", topic="/imu/data", type="sensor_msgs/msg/Imu")
        bridge = procs.bridge(host="127.0.0.1", port=srv.port, sequence_name="failing", topics=["/imu/data"],
                              on_error=policy)
        driver = procs.agent("driver")
        for _attempt in range(50):  # until the bridge's view of the graph has the publisher
            assert driver.ask("transition", node=NODE, transition="configure")["success"]
            seen = re.findall(r"topics matching now: (.*)", bridge.log())
            if '"/imu/data"' in seen[-1]:
                break
            assert driver.ask("transition", node=NODE, transition="cleanup")["success"]
        assert driver.ask("transition", node=NODE, transition="activate") == {"success": False,
                                                                               "state": "unconfigured"}
        bridge.wait_log(r"activate failed")
        assert "Traceback" in bridge.log()
        with MosaicoClient.connect("127.0.0.1", srv.port) as client:
            if policy == "delete":
                assert "failing" not in client.list_sequences()
            else:
                assert "failing" in client.list_sequences()
                notes = client.list_sequence_notifications("failing")
                assert notes and "exceeds" in notes[0].message
        # the node can be configured again
        assert driver.ask("transition", node=NODE, transition="configure")["success"]


def test_sigterm_while_active_finalizes_everything_received(server, procs):
    from mosaico_bridge.client import MosaicoClient

    bridge = procs.bridge(host="127.0.0.1", port=server.port, sequence_name="sigterm_run", topics=["/fix"])
    driver, publisher = procs.agent("driver"), procs.agent("publisher")
    assert driver.ask("transition", node=NODE, transition="configure")["success"]
    assert driver.ask("transition", node=NODE, transition="activate")["success"]
    sent = publisher.ask("replay", bag=str(shared_bag(HUSKY)), topics=["/fix"], rate=2000)["published"]
    driver.ask("wait_received", node="mosaico_bridge", counts=sent, timeout=60)
    assert bridge.signal(signal.SIGTERM, timeout=60) == 0
    with MosaicoClient.connect("127.0.0.1", server.port) as client:
        seq = client.sequence_handler("sigterm_run")
        assert seq is not None and all(s.locked and s.completed_at_ns for s in seq.sessions)
        assert client.topic_handler("sigterm_run", "/fix").read().num_rows == sent["/fix"]


def test_config_yaml_documents_every_declared_parameter():
    from mosaico_bridge.bridge_config import PARAMETERS, BridgeConfig

    doc = yaml.safe_load((REPO / "config" / "bridge.yaml").read_text())["/**"]["ros__parameters"]
    assert doc == {name: default for name, (default, _d) in PARAMETERS.items()}
    BridgeConfig.from_values(doc, env={})  # the documented defaults are valid
    # each parameter's comment block in the file is its whole description, word for word
    comments: dict[str, str] = {}
    pending: list[str] = []
    for line in (REPO / "config" / "bridge.yaml").read_text().splitlines()[3:]:
        stripped = line.strip()
        if stripped.startswith("#"):
            pending.append(stripped[1:].strip())
        elif ":" in stripped and pending:
            comments[stripped.split(":", 1)[0]] = " ".join(pending)
            pending = []
    for name, (_default, description) in PARAMETERS.items():
        assert comments.get(name) == " ".join(description.split()), name


def test_node_declares_the_documented_parameters(tmp_path, ros_domain):
    """A real node, in a separate process, lists its declared parameters with descriptions."""
    import subprocess
    import sys

    from ros_util import ros_env

    code = (
        "import json, rclpy\n"
        "from mosaico_bridge.node import BridgeNode\n"
        "rclpy.init()\n"
        "n = BridgeNode()\n"
        "names = [p for p in n._parameters if not p.startswith('use_sim_time') and p != 'start_type_description_service']\n"
        "print(json.dumps({p: n.describe_parameter(p).description for p in names}))\n"
        "n.destroy_node(); rclpy.shutdown()\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env=ros_env(ros_domain), cwd=REPO, check=False)
    assert out.returncode == 0, out.stderr
    import json

    declared = json.loads(out.stdout.strip().splitlines()[-1])
    doc = yaml.safe_load((REPO / "config" / "bridge.yaml").read_text())["/**"]["ros__parameters"]
    assert set(declared) == set(doc)
    from mosaico_bridge.bridge_config import PARAMETERS

    # every parameter is declared with its whole description
    assert declared == {name: description for name, (_default, description) in PARAMETERS.items()}


def test_launch_file():
    """launch / launch_ros are not installable here: import the launch file only where they are."""
    pytest.importorskip("launch_ros")
    import importlib.util

    spec = importlib.util.spec_from_file_location("bridge_launch", REPO / "launch" / "bridge.launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    names = [getattr(e, "name", None) for e in description.entities]
    assert {"params_file", "namespace", "autostart"} <= set(names)


@pytest.fixture
def keyed_server(tmp_path):
    """An embedded server that requires API keys; yields (server, manage_key)."""
    from mosaico_bridge.server import MosaicoServer
    from mosaico_bridge.server.auth import Permission

    srv = MosaicoServer.start_background(tmp_path / "keyed", host="127.0.0.1", port=0, require_api_key=True)
    manage, _record = srv.api_keys.create(Permission.Manage, "test admin")
    try:
        yield srv, manage
    finally:
        srv.stop(timeout=30)


def test_refused_key_at_configure_is_failure_with_a_clear_line(keyed_server, procs):
    srv, manage = keyed_server
    from mosaico_bridge.client import APIKeyPermissionEnum, MosaicoClient

    with MosaicoClient.connect("127.0.0.1", srv.port, api_key=manage) as admin:
        key = admin.api_key_create(APIKeyPermissionEnum.Write, "bridge")
        fingerprint = admin.api_key_status(key).fingerprint
        admin.api_key_revoke(fingerprint)
    bridge = procs.bridge(host="127.0.0.1", port=srv.port, api_key=key)
    driver = procs.agent("driver")
    assert driver.ask("transition", node=NODE, transition="configure") == {"success": False, "state": "unconfigured"}
    line = bridge.wait_log(r"configure failed: .*").group(0)
    assert fingerprint in line and "revoked" in line
    assert key not in bridge.log() and key.split("_")[1] not in bridge.log()


@pytest.mark.parametrize("policy", ["report", "delete"])
def test_key_revoked_while_active_fails_cleanly(keyed_server, procs, policy):
    """After revocation the bridge's next call (topic_create for a new topic) is refused:
    the node logs which key, applies on_error, and ends unconfigured; the key never shows."""
    srv, manage = keyed_server
    from mosaico_bridge.client import APIKeyPermissionEnum, MosaicoClient

    with MosaicoClient.connect("127.0.0.1", srv.port, api_key=manage) as admin:
        key = admin.api_key_create(APIKeyPermissionEnum.Write, "bridge")
        fingerprint = admin.api_key_status(key).fingerprint
        bridge = procs.bridge(host="127.0.0.1", port=srv.port, api_key=key, sequence_name=f"revoked_{policy}",
                              topics=["/fix", "/late"], on_error=policy)
        driver, publisher = procs.agent("driver"), procs.agent("publisher")
        assert driver.ask("transition", node=NODE, transition="configure")["success"]
        assert fingerprint in bridge.log()
        assert driver.ask("transition", node=NODE, transition="activate")["success"]
        sent = publisher.ask("replay", bag=str(shared_bag(HUSKY)), topics=["/fix"], rate=2000)["published"]
        driver.ask("wait_received", node="mosaico_bridge", counts=sent, timeout=60)
        admin.api_key_revoke(fingerprint)
        publisher.ask("advertise", topic="/late", type="std_msgs/msg/String")  # the next call: topic_create
        bridge.wait_log(rf"API key {fingerprint} revoked", timeout=30)
        bridge.wait_log(r"error while active", timeout=30)
        deadline = time.monotonic() + 30
        while (state := driver.ask("state", node=NODE)["state"]) != "unconfigured" and time.monotonic() < deadline:
            pass
        assert state == "unconfigured"
        log = bridge.log()
        assert "Traceback" in log
        assert key not in log and key.split("_")[1] not in log
        # the sequence stays as it was when the key was revoked: the policy's own calls are refused too,
        # and the node says so instead of hiding it
        assert re.search(r"(topic_notification_create|session_delete|sequence_notification_create) failed", log)
        assert f"revoked_{policy}" in admin.list_sequences()


def test_latched_transient_local_sample_published_before_activation_is_recorded(server, procs):
    from mosaico_bridge.client import MosaicoClient

    publisher = procs.agent("publisher")
    publisher.ask("latch", topic="/map_info", data="latched before the bridge existed")
    bridge = procs.bridge(host="127.0.0.1", port=server.port, sequence_name="latched", topics=["/map_info"])
    driver = procs.agent("driver")
    assert driver.ask("transition", node=NODE, transition="configure")["success"]
    assert driver.ask("transition", node=NODE, transition="activate")["success"]
    driver.ask("wait_received", node="mosaico_bridge", counts={"/map_info": 1}, timeout=30)
    assert driver.ask("transition", node=NODE, transition="deactivate")["success"]
    assert "TRANSIENT_LOCAL" in bridge.log()
    with MosaicoClient.connect("127.0.0.1", server.port) as client:
        table = client.topic_handler("latched", "/map_info").read()
        assert table.column("data").to_pylist() == ["latched before the bridge existed"]


@pytest.mark.parametrize("acks", ["per_batch", "end_of_stream"])
def test_server_lost_while_active_fails_cleanly(procs, tmp_path, acks):
    """The server process dies mid-recording: the node logs the cause, applies on_error
    (its calls fail too, and it says so) and returns to unconfigured; it does not hang.
    ``written`` counts only what the server acknowledged: never more than a restarted
    server holds; with per-batch acknowledgements every unacknowledged batch is spooled,
    with a server that acknowledges at the end of the stream only the rows it never
    acknowledged are counted dropped (and unacknowledged)."""
    import subprocess
    import sys

    port = free_port()
    cmd = ([sys.executable, "-m", "mosaico_bridge.cli.server"] if acks == "per_batch"
           else [sys.executable, str(REPO / "test" / "ros_procs" / "ack_server.py"), "--silent"])
    server = subprocess.Popen([*cmd, "--root", str(tmp_path / "r"), "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        bridge = procs.bridge(host="127.0.0.1", port=port, sequence_name="lost", topics=["/imu/data"],
                              max_batch_age_s=0.2, connect_timeout_s=20.0)
        driver, publisher = procs.agent("driver"), procs.agent("publisher")
        assert driver.ask("transition", node=NODE, transition="configure")["success"]
        assert driver.ask("transition", node=NODE, transition="activate")["success"]
        publisher.start("replay", bag=str(shared_bag(HUSKY)), topics=["/imu/data"], rate=2000)
        driver.ask("wait_received", node="mosaico_bridge", counts={"/imu/data": 3000}, timeout=60)
        server.kill()  # mid-replay: messages keep coming after the server is gone
        server.wait(timeout=30)
        sent = publisher.result(timeout=120)["published"]
        bridge.wait_log(r"error while active", timeout=60)
        deadline = time.monotonic() + 60
        while (state := driver.ask("state", node=NODE)["state"]) != "unconfigured" and time.monotonic() < deadline:
            pass
        assert state == "unconfigured"
        assert "Traceback" in bridge.log()
        # nothing received is lost: what the server did not take is in the local spool
        c = bridge.counters()[-1]["/imu/data"]
        assert c["received"] == c["written"] + c["spooled"] + c["dropped"]
        assert c["spooled"] > 0 and 3000 <= c["received"] <= sent["/imu/data"]
        if acks == "per_batch":
            assert c["dropped"] == 0 and c["written"] > 0, c
        else:
            assert c["dropped"] == c["unacknowledged"] and c["written"] == 0, c
        import pyarrow as pa

        spooled = list((tmp_path / "spool" / "lost").glob("*/imu/data.arrows"))
        assert len(spooled) == 1
        table = pa.ipc.open_stream(spooled[0]).read_all()
        assert table.num_rows == c["spooled"]
        stamps = table.column("timestamp_ns").to_pylist()
        assert stamps == sorted(stamps)
        sidecar = __import__("json").loads(spooled[0].with_suffix(".json").read_text())
        assert sidecar["resource_locator"] == "lost/imu/data" and sidecar["ontology_tag"] == "IMU"
        # once a server is back, spool_upload sends the spool as a new session of the sequence
        from conftest import run_cli

        from mosaico_bridge.server import MosaicoServer

        with MosaicoServer.start_background(tmp_path / "r", host="127.0.0.1", port=0) as back:
            from mosaico_bridge.client import MosaicoClient

            with MosaicoClient.connect("127.0.0.1", back.port) as ours:  # written <= what the server holds
                held = ours.topic_handler("lost", "/imu/data")
                assert held is not None and held.row_count >= c["written"], (held.row_count, c)
            up = run_cli("mosaico_bridge.cli.spool_upload", str(tmp_path / "spool"), "--host", "127.0.0.1",
                         "--port", str(back.port))
            assert up.returncode == 0, up.stderr
            assert f"lost/imu/data_recovered: {c['spooled']} rows uploaded" in up.stdout
            assert not list((tmp_path / "spool" / "lost").glob("*/imu/data.arrows"))  # uploaded, removed
            sdk_seq = mosaicolabs.MosaicoClient.connect("127.0.0.1", back.port)
            with sdk_seq as sdk:
                th = sdk.topic_handler("lost", "/imu/data_recovered")
                assert th.ontology_tag == "IMU"
                msgs = list(th.get_data_streamer())
                assert [m.timestamp_ns for m in msgs] == stamps
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=30)


def test_rows_are_readable_within_a_second_while_active(server, procs):
    """max_batch_age_s 0.1: a message is on the server, readable by the SDK, well within 1 s
    of its publication, while the node is still active (no flush, no deactivate)."""
    bridge = procs.bridge(host="127.0.0.1", port=server.port, sequence_name="fresh", topics=["/note"],
                          max_batch_age_s=0.1)
    driver, publisher = procs.agent("driver"), procs.agent("publisher")
    publisher.ask("advertise", topic="/note", type="std_msgs/msg/String")
    assert driver.ask("transition", node=NODE, transition="configure")["success"]
    assert driver.ask("transition", node=NODE, transition="activate")["success"]
    bridge.wait_log(r"recording /note", timeout=30)
    publisher.ask("matched", topic="/note")  # a volatile sample published before the match is lost
    with mosaicolabs.MosaicoClient.connect("127.0.0.1", server.port) as sdk:
        for i in range(3):
            publisher.ask("publish", topic="/note", data=f"note {i}")
            start = time.monotonic()
            while True:
                sdk.clear_topic_handlers_cache()  # a handler keeps the timestamp range it was made with
                th = sdk.topic_handler("fresh", "/note")
                try:
                    got = [m.data.data for m in th.get_data_streamer()] if th is not None else []
                except ValueError:  # the SDK's word for a topic without rows yet
                    got = []
                if f"note {i}" in got:
                    break
                assert time.monotonic() - start < 1.0, f"note {i} not readable within 1 s (read {got})"
            assert got == [f"note {k}" for k in range(i + 1)]
    assert driver.ask("state", node=NODE)["state"] == "active"
    assert driver.ask("transition", node=NODE, transition="deactivate")["success"]
    c = bridge.counters()[-1]["/note"]
    assert c["received"] == c["written"] == 3 and c["inflight"] == 0


def _vm_kib(pid: int, field: str) -> int:
    import pathlib

    return int(re.search(rf"{field}:\s+(\d+) kB", pathlib.Path(f"/proc/{pid}/status").read_text()).group(1))


@pytest.mark.parametrize("warm", [True, False])
def test_warm_memory_faults_in_the_heap_when_an_image_topic_is_subscribed(server, procs, warm):
    """warm_memory: when the first topic with a byte array (an Image) is subscribed, 3/4 of
    max_inflight_bytes (here 48 of 64 MiB) of the bridge's heap is faulted in before any
    message arrives; its RSS shows it. Off: nothing is warmed."""
    budget = 64 * 1024 * 1024
    bridge = procs.bridge(host="127.0.0.1", port=server.port, sequence_name=f"warm_{warm}",
                          topics=["/cam/image_raw", "/note"], max_inflight_bytes=budget, warm_memory=warm)
    driver, publisher = procs.agent("driver"), procs.agent("publisher")
    publisher.ask("advertise", topic="/note", type="std_msgs/msg/String")
    assert driver.ask("transition", node=NODE, transition="configure")["success"]
    assert driver.ask("transition", node=NODE, transition="activate")["success"]
    bridge.wait_log(r"recording /note", timeout=30)
    assert "warming the heap" not in bridge.log()  # a String has no byte array
    base = _vm_kib(bridge.proc.pid, "VmRSS")
    publisher.ask("advertise", topic="/cam/image_raw", type="sensor_msgs/msg/Image")
    bridge.wait_log(r"recording /cam/image_raw", timeout=30)
    if warm:
        assert re.search(r"/cam/image_raw carries byte arrays: warming the heap", bridge.log())
        wait_until(lambda: _vm_kib(bridge.proc.pid, "VmRSS") - base >= 0.9 * 3 * budget / 4 / 1024, timeout=30,
                   what="the bridge's RSS to grow by the warmed heap")
    else:
        assert "warming the heap" not in bridge.log()
        assert _vm_kib(bridge.proc.pid, "VmRSS") - base < 3 * budget / 4 / 1024 / 2
    assert driver.ask("transition", node=NODE, transition="deactivate")["success"]


def _record_images_beside_a_string(procs, server, sequence: str, **params):
    """A bridge recording /note (std_msgs/String, advertised first) and /cam/image_raw
    (640x480 images at 30 Hz for 2 s, started once /note is recorded) into ``sequence``;
    returns (bridge, driver, publisher) with the images being published."""
    bridge = procs.bridge(host="127.0.0.1", port=server.port, sequence_name=sequence,
                          topics=["/cam/image_raw", "/note"], **params)
    driver, publisher = procs.agent("driver"), procs.agent("publisher")
    publisher.ask("advertise", topic="/note", type="std_msgs/msg/String")
    assert driver.ask("transition", node=NODE, transition="configure")["success"]
    assert driver.ask("transition", node=NODE, transition="activate")["success"]
    bridge.wait_log(r"recording /note", timeout=30)
    publisher.start("images", topic="/cam/image_raw", hz=30, seconds=2, width=640, height=480)
    return bridge, driver, publisher


@pytest.mark.parametrize("receive_thread", [True, False])
def test_image_topics_are_taken_on_the_take_thread(server, procs, receive_thread):
    """receive_thread (default true): an Image topic is taken on the bridge's mb-take thread,
    a String topic by the executor; false: both by the executor. Either way every frame is
    stored whole (SHA-1 of each frame's data read back through the SDK)."""
    import mosaicolabs

    bridge, driver, publisher = _record_images_beside_a_string(procs, server, f"take_{receive_thread}",
                                                               receive_thread=receive_thread)
    line = bridge.wait_log(r"recording /cam/image_raw .*", timeout=30).group(0)
    out = publisher.result(timeout=60)
    assert out["published"] >= 55, out
    threads = thread_nices(bridge.proc.pid)
    assert ("mb-take" in threads) == receive_thread, threads
    assert ("mb-take thread" in line) == receive_thread, line
    assert not re.search(r"recording /note .*mb-take", bridge.log())
    driver.ask("wait_received", node="mosaico_bridge", counts={"/cam/image_raw": out["published"]}, timeout=60)
    assert driver.ask("transition", node=NODE, transition="deactivate")["success"]
    assert "mb-take" not in thread_nices(bridge.proc.pid)  # the take thread ends with the session
    c = bridge.counters()[-1]["/cam/image_raw"]
    assert c["received"] == c["written"] == out["published"] and c["dropped"] == 0, c
    with mosaicolabs.MosaicoClient.connect("127.0.0.1", server.port) as sdk:
        handler = sdk.topic_handler(f"take_{receive_thread}", "/cam/image_raw")
        got = [hashlib.sha1(bytes(m.data.data)).hexdigest() for m in handler.get_data_streamer()]
    assert got == out["sha1"]


def _policies(pid: int) -> dict[str, set[tuple[int, int]]]:
    """{OS thread name: {(scheduling policy, real-time priority)}} of a process's threads."""
    out: dict[str, set[tuple[int, int]]] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            tid = int(task.name)
            policy = os.sched_getscheduler(tid) & ~os.SCHED_RESET_ON_FORK
            out.setdefault(name, set()).add((policy, os.sched_getparam(tid).sched_priority))
        except OSError:
            continue  # the thread ended
    return out


def _realtime_permitted() -> bool:
    from mosaico_bridge.common.threads import realtime_refused

    return sys.platform.startswith("linux") and realtime_refused(7) is None


@pytest.mark.skipif(not _realtime_permitted(), reason="SCHED_FIFO needs Linux and CAP_SYS_NICE or an rtprio limit")
def test_realtime_priority_raises_the_take_participant_only(server, procs):
    """realtime_priority 7: an Image topic goes through a DDS participant of its own (node
    mosaico_bridge_take) whose receive threads run under SCHED_FIFO 7 with the mb-take thread;
    the node's own participant (a String topic), the executor, conversion and data threads
    keep SCHED_OTHER. Every message is stored; after deactivate no thread is left raised."""
    from mosaico_bridge.common.threads import RECEIVE_THREAD_NAME

    bridge, driver, publisher = _record_images_beside_a_string(procs, server, "realtime", realtime_priority=7)
    bridge.wait_log(r"recording /cam/image_raw .*mb-take", timeout=30)
    line = bridge.wait_log(r"go through node /mosaico_bridge_take .*", timeout=30).group(0)
    assert "realtime_priority 7: SCHED_FIFO for mb-take, dds." in line, line
    out = publisher.result(timeout=60)
    fifo, other = (os.SCHED_FIFO, 7), (os.SCHED_OTHER, 0)
    policies = wait_until(lambda: (p := _policies(bridge.proc.pid)).get("mb-take") == {fifo} and p, timeout=10,
                          what="the mb-take thread under SCHED_FIFO 7")
    receive = {name: p for name, p in policies.items() if RECEIVE_THREAD_NAME.fullmatch(name)}
    assert any(fifo in p for p in receive.values()), policies  # the take participant's
    assert any(other in p for p in receive.values()), policies  # the node's own participant's
    others = {name: p for name, p in policies.items() if name not in receive and name != "mb-take"}
    assert any(name.startswith("mb-convert") for name in others) and "python" in others, others
    assert all(p == {other} for p in others.values()), others
    driver.ask("wait_received", node="mosaico_bridge", counts={"/cam/image_raw": out["published"]}, timeout=60)
    assert driver.ask("transition", node=NODE, transition="deactivate")["success"]
    c = bridge.counters()[-1]["/cam/image_raw"]
    assert c["received"] == c["written"] == out["published"] and c["dropped"] == 0, c
    after = _policies(bridge.proc.pid)
    assert not any(fifo in p for p in after.values()), after  # the take participant is gone with the session
    assert driver.ask("transition", node=NODE, transition="cleanup")["success"]


def test_realtime_priority_without_the_privilege_fails_configure(server, procs):
    """Without CAP_SYS_NICE (dropped by setpriv when the test runs with it) and with an
    rtprio limit of 0, configure fails with a line naming the parameter and what is missing."""
    import resource
    import shutil

    if not sys.platform.startswith("linux"):
        pytest.skip("SCHED_FIFO is Linux")
    if resource.getrlimit(resource.RLIMIT_RTPRIO)[0] >= 7:
        pytest.skip("this process's rtprio limit allows priority 7 without any capability")
    wrapper = ["setpriv", "--bounding-set", "-sys_nice", "--inh-caps", "-sys_nice"] if _realtime_permitted() else []
    if wrapper and shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is needed to drop CAP_SYS_NICE")
    bridge = procs.bridge(_wrapper=wrapper, host="127.0.0.1", port=server.port, realtime_priority=7)
    driver = procs.agent("driver")
    assert driver.ask("transition", node=NODE, transition="configure") == {"success": False, "state": "unconfigured"}
    line = bridge.wait_log(r"configure refused: parameter 'realtime_priority'.*").group(0)
    assert "priority 7 not permitted" in line and "CAP_SYS_NICE" in line, line


#: Memory the bridge may take above max_inflight_bytes and above what a bare subscriber on the
#: same topic, at the same time, takes (the rmw layer's own samples: received and not yet
#: taken, fragments being reassembled; the same for any subscriber, 45-100 MiB under this
#: load, more on a loaded machine), in MiB: the converted record batch and the gRPC send
#: buffers of a DoPut, the Arrow memory pool's retained pages, allocator slack. Measured
#: 0-20 MiB on a quiet machine, up to 135 MiB beside a busy-looping process.
BRIDGE_OVERHEAD_MIB = 160


def _bare_subscriber(ros_domain: int, topic: str, msgtype: str):
    """bench/bare_sub.py (the baseline of bench_live.py) on ``topic``, started and subscribed."""
    import json
    import subprocess
    import sys

    from ros_util import ros_env

    proc = subprocess.Popen([sys.executable, str(REPO / "bench" / "bare_sub.py"), "--events", f"{topic}={msgtype}"],
                            stdout=subprocess.PIPE, text=True, env=ros_env(ros_domain), cwd=REPO)
    line = proc.stdout.readline()
    assert line and json.loads(line)["ready"], "bare subscriber did not start"
    return proc


def test_memory_budget_bounds_rss_under_a_fast_large_message_publisher(procs, tmp_path, ros_domain):
    """640x480 rgb8 frames (0.9 MB) at 200 Hz (184 MB/s) into a bridge with max_inflight_bytes
    16 MiB and a per-batch acknowledging server, and at the same time into a bare subscriber
    (1080p frames at 60 Hz make Fast DDS itself hold 0.1-1 GB in either subscriber, by how
    fast the publisher's sending threads run, which would drown the figure): the bridge's
    peak RSS grows by less than the bare subscriber's growth + the budget +
    BRIDGE_OVERHEAD_MIB, messages over the budget are dropped and counted, counters reconcile."""
    import json
    import subprocess
    import sys

    port = free_port()
    server = subprocess.Popen([sys.executable, str(REPO / "test" / "ros_procs" / "ack_server.py"), "--root",
                               str(tmp_path / "r"), "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    bare = None
    try:
        budget = 16 * 1024 * 1024
        bridge = procs.bridge(host="127.0.0.1", port=port, sequence_name="budget_run", topics=["/camera/image_raw"],
                              max_inflight_bytes=budget, connect_timeout_s=20.0, workers=2)
        driver, publisher = procs.agent("driver"), procs.agent("publisher")
        assert driver.ask("transition", node=NODE, transition="configure")["success"]
        assert driver.ask("transition", node=NODE, transition="activate")["success"]
        bare = _bare_subscriber(ros_domain, "/camera/image_raw", "sensor_msgs/msg/Image")
        base = _vm_kib(bridge.proc.pid, "VmRSS")
        out = publisher.ask("images", topic="/camera/image_raw", hz=200, seconds=4, width=640, height=480,
                            subscribers=2, timeout=180)
        driver.ask("wait_received", node="mosaico_bridge", counts={"/camera/image_raw": 1}, timeout=60)
        assert driver.ask("transition", node=NODE, transition="deactivate", timeout=180)["success"]
        peak = _vm_kib(bridge.proc.pid, "VmHWM")
        bare.send_signal(signal.SIGTERM)
        b = json.loads(bare.stdout.readline())
        bare.wait(timeout=30)
        c = bridge.counters()[-1]["/camera/image_raw"]
        assert c["received"] == c["written"] + c["spooled"] + c["dropped"], c
        assert c["inflight"] == 0 and c["spooled"] == 0 and c["written"] > 0
        assert c["received"] <= out["published"]
        growth_mib, bare_mib = (peak - base) / 1024, (b["hwm_kib"] - b["rss_kib"]) / 1024
        print(f"peak RSS growth: bridge {growth_mib:.0f} MiB, bare subscriber {bare_mib:.0f} MiB "
              f"({b['received']['/camera/image_raw']} received); counters {c}")
        assert growth_mib <= bare_mib + budget / 2**20 + BRIDGE_OVERHEAD_MIB, (growth_mib, bare_mib, c)
        if c["dropped"]:
            assert "reach max_inflight_bytes" in bridge.log()
    finally:
        if bare is not None and bare.poll() is None:
            bare.kill()
            bare.wait(timeout=30)
        server.kill()
        server.wait(timeout=30)
