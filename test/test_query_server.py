"""Catalog search on the embedded server through real clients: the SDK (mosaicolabs 0.7.0)
and its command-line tool and example programs, and our own ``MosaicoClient.query``,
on shared bags imported with ``import_bags``; ground truth from rosbags."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_bag
from rosbags.highlevel import AnyReader

pytest.importorskip("mosaicolabs")

from mosaico_bridge.client import InvalidArgumentError, MosaicoClient
from mosaico_bridge.client.query import (
    IMU,
    QueryOntologyCatalog,
    QuerySequence,
    QueryTopic,
)
from mosaico_bridge.importer import import_bags
from mosaico_bridge.server import MosaicoServer

HUSKY = "ros1_husky_imu_odom_gps/husky_imu_odom_gps.bag"
NAV2 = "ros2_mcap_nav2_turtlebot/nav2_turtlebot.mcap"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("query_server")
    srv = MosaicoServer.start_background(root, host="127.0.0.1", port=0)
    try:
        with MosaicoClient.connect("127.0.0.1", srv.port) as client:
            import_bags(client, [shared_bag(HUSKY)], "husky_rain", metadata={"weather": "rain", "robot": {"model": "husky"}})
            import_bags(client, [shared_bag(NAV2)], "nav2_dry", metadata={"weather": "dry"})
        yield srv
    finally:
        srv.stop(timeout=30)


def _imu_accel_x() -> list[tuple[int, float]]:
    with AnyReader([shared_bag(HUSKY)]) as reader:
        conns = [c for c in reader.connections if c.topic == "/imu/data"]
        return [(t, reader.deserialize(raw, c.msgtype).linear_acceleration.x) for c, t, raw in reader.messages(conns)]


def _sdk(*args: str, port: int, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "MOSAICO_DAEMON_URL": f"127.0.0.1:{port}", "COLUMNS": "200"}
    return subprocess.run([str(BIN / "mosaico"), *args], capture_output=True, text=True, timeout=timeout,
                          env=env, stdin=subprocess.DEVNULL, check=False)


def test_value_query_and_windows_match_rosbags_with_both_clients(served):
    rows = _imu_accel_x()
    thr = float(np.quantile([v for _, v in rows], 0.9))
    expect = np.array(sorted(t for t, v in rows if v > thr), dtype=np.int64)
    from mosaicolabs import IMU as SdkIMU
    from mosaicolabs import MosaicoClient as SdkClient
    from mosaicolabs import QueryOntologyCatalog as SdkCatalog
    from mosaicolabs import QuerySequence as SdkSequence

    with SdkClient.connect("127.0.0.1", served.port) as sdk:
        got = sdk.query(SdkSequence().with_user_metadata("weather", eq="rain"), SdkCatalog(SdkIMU.Q.acceleration.x.gt(thr)))
        assert [(i.sequence.name, [t.name for t in i.topics]) for i in got] == [("husky_rain", ["/imu/data"])]
        sdk_windows = [(c.timerange.start, c.timerange.end) for c in got[0].topics[0].clusterize(1_000_000_000)]
    with MosaicoClient.connect("127.0.0.1", served.port) as ours:
        res = ours.query(QuerySequence().with_user_metadata("weather", eq="rain"),
                         QueryOntologyCatalog(IMU.Q.acceleration.x.gt(thr)))
        assert [(i.sequence.name, [t.name for t in i.topics]) for i in res] == [("husky_rain", ["/imu/data"])]
        windows = [(c.start_ns, c.end_ns) for c in res[0].topics[0].clusterize(1_000_000_000)]
        assert served.query_service.last_stats.files_scanned >= 1
        # dry sequences are excluded by the sequence condition, whatever their rows
        dry = ours.query(QuerySequence().with_user_metadata("weather", eq="dry"),
                         QueryOntologyCatalog(IMU.Q.acceleration.x.gt(thr)))
        assert dry is not None and len(dry) == 0
        # topic builders: ontology tag and name match
        by_tag = ours.query(QueryTopic().with_ontology_tag("MotionState"))
        assert sorted((i.sequence.name, t.name) for i in by_tag for t in i.topics) == [
            ("husky_rain", "/husky_velocity_controller/odom"), ("nav2_dry", "/odom")]
    assert windows == sdk_windows
    # every matching row lies in a window; windows start and end on matching rows
    starts = np.array([w[0] for w in windows])
    ends = np.array([w[1] for w in windows])
    idx = np.searchsorted(starts, expect, side="right") - 1
    assert (idx >= 0).all() and (expect <= ends[idx]).all()
    assert set(starts) <= set(expect) and set(ends) <= set(expect)


def test_malformed_queries_are_invalid_argument_naming_the_field(served):
    with MosaicoClient.connect("127.0.0.1", served.port) as ours:
        run = ours._control.result_bodies
        for body, field in (
            ({"ontology": {"IMU.acceleration.nope": {"$gt": 1}}}, "IMU.acceleration.nope"),
            ({"ontology": {"IMU.acceleration.x": {"$gt": "high"}}}, "IMU.acceleration.x"),
            ({"ontology": {"IMU.acceleration.x": {"$between_ish": 1}}}, "$between_ish"),
            ({"sequence": {"name": {"$shout": "x"}}}, "$shout"),
        ):
            with pytest.raises(InvalidArgumentError) as info:
                run("query", body)
            assert field in info.value.reason, info.value


def test_sdk_command_line_tool_lists_and_prints(served):
    listed = _sdk("sequence", "ls", port=served.port)
    assert listed.returncode == 0, listed.stderr
    lines = [line for line in listed.stdout.splitlines() if line.strip()]
    assert sorted(line.split(",")[0] for line in lines) == ["husky_rain", "nav2_dry"]
    husky = next(line for line in lines if line.startswith("husky_rain,"))
    stat = _sdk("sequence", "stat", husky, port=served.port)
    assert stat.returncode == 0 and "/imu/data" in stat.stdout and "weather=rain" in stat.stdout, stat.stdout
    topics = _sdk("topic", "ls", port=served.port)
    assert topics.returncode == 0
    imu = next(line for line in topics.stdout.splitlines() if line.startswith("husky_rain/imu/data,"))
    tstat = _sdk("topic", "stat", imu, port=served.port)
    assert tstat.returncode == 0 and "IMU" in tstat.stdout, tstat.stdout
    name, start, _end = imu.split(",")
    mcat = _sdk("topic", "mcat", f"{name},{start},{int(start) + 100_000_000}", port=served.port)
    assert mcat.returncode == 0
    records = [line for line in mcat.stdout.splitlines() if line.startswith("{")]
    assert records and all('"_ontology": "IMU"' in r for r in records)


@pytest.mark.parametrize("example", ["data_inspection", "query_catalogs"])
def test_sdk_example_programs_run_against_our_server(served, example):
    proc = subprocess.run([str(BIN / "mosaicolabs.examples"), example, "--host", "127.0.0.1", "--port", str(served.port)],
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
                          env={**os.environ, "COLUMNS": "200"}, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "husky_rain" in proc.stdout or "/imu/data" in proc.stdout, proc.stdout[-3000:]
