"""The server-side query engine on real data.

Two shared bags are imported with ``import_bags`` into an embedded server; each topic's
stored rows are then written as several Parquet chunks with ``write_parquet_chunk``.
Value queries, windows and chunk skipping are checked against ground truth read straight
from the bags with rosbags.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from conftest import shared_bag
from rosbags.highlevel import AnyReader
from rosbags.typesys import Stores, get_typestore

from mosaico_bridge.client.query import (
    GPS,
    IMU,
    MotionState,
    Query,
    QueryOntologyCatalog,
    QuerySequence,
    QueryTopic,
)
from mosaico_bridge.protocol.query import QueryError, TimestampRange, parse_query
from mosaico_bridge.server import query_actions as qa
from mosaico_bridge.server import query_engine as qe

HUSKY = "ros1_husky_imu_odom_gps/husky_imu_odom_gps.bag"
NAV2 = "ros2_mcap_nav2_turtlebot/nav2_turtlebot.mcap"
CHUNK_ROWS = 2000  # rows per Parquet chunk (the IMU topic gets 6 chunks)
ROW_GROUP_ROWS = 500


def _bag_rows(path: Path, topic: str, getter):
    """[(log time ns, getter(message))] of one bag topic, from rosbags."""
    out = []
    with AnyReader([path], default_typestore=get_typestore(Stores.ROS2_HUMBLE)) as reader:
        conns = [c for c in reader.connections if c.topic == topic]
        for conn, t, raw in reader.messages(connections=conns):
            out.append((t, getter(reader.deserialize(raw, conn.msgtype))))
    return out


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    """Import both bags, write Parquet chunks; yield (sequences, topics by locator)."""
    from mosaico_bridge.client import MosaicoClient
    from mosaico_bridge.importer import import_bags
    from mosaico_bridge.server import MosaicoServer
    from mosaico_bridge.server.store import MosaicoStore

    husky, nav2 = shared_bag(HUSKY), shared_bag(NAV2)
    base = tmp_path_factory.mktemp("query_engine")
    root = base / "root"
    srv = MosaicoServer.start_background(root, host="127.0.0.1", port=0)
    try:
        with MosaicoClient.connect("127.0.0.1", srv.port) as client:
            import_bags(client, [husky], "husky_run", metadata={"robot": {"model": "husky", "wheels": 4}, "site": "field"})
            import_bags(client, [nav2], "nav2_sim", metadata={"robot": {"model": "turtlebot", "wheels": 2}})
    finally:
        srv.stop()
    store = MosaicoStore(root)
    sequences, topics, originals = [], {}, {}
    for name in ("husky_run", "nav2_sim"):
        info = store.get_sequence(name)
        sequences.append(qe.SequenceRecord(name, dict(info.user_metadata), info.created_at_ns))
        for t in info.topics:
            if t.row_count == 0:
                continue
            schema, batches = store.read(t.locator, max_rows=ROW_GROUP_ROWS)
            batches = list(batches)
            originals[t.locator] = pa.Table.from_batches(batches, schema=schema)
            files, pending, rows = [], [], 0
            chunk_dir = base / "parquet" / t.locator.replace("/", "__")
            chunk_dir.mkdir(parents=True)
            for batch in batches:
                pending.append(batch)
                rows += batch.num_rows
                if rows >= CHUNK_ROWS:
                    files.append(qe.write_parquet_chunk(chunk_dir / f"{len(files):04d}.parquet", pending,
                                                        row_group_rows=ROW_GROUP_ROWS))
                    pending, rows = [], 0
            if pending:
                files.append(qe.write_parquet_chunk(chunk_dir / f"{len(files):04d}.parquet", pending,
                                                    row_group_rows=ROW_GROUP_ROWS))
            topics[t.locator] = qe.TopicRecord(t.locator, t.ontology_tag, dict(t.user_metadata), t.created_at_ns,
                                               tuple(files), t.serialization_format)
    return sequences, topics, originals, root


@pytest.fixture(scope="module")
def imu_truth():
    """[(log time, linear_acceleration.x, angular_velocity covariance)] of /imu/data."""
    return _bag_rows(shared_bag(HUSKY), "/imu/data",
                     lambda m: (m.linear_acceleration.x, np.asarray(m.angular_velocity_covariance)))


def _run(catalog, body):
    seqs, topics = catalog[0], catalog[1]
    return qe.evaluate_query(body, seqs, topics.values())


def _listing(result):
    return [(i.sequence.name, [t.locator for t in i.topics]) for i in result.response]


def test_chunks_written_with_statistics(catalog):
    topics = catalog[1]
    imu = topics["husky_run/imu/data"]
    assert len(imu.files) == 6
    import pyarrow.parquet as pq

    rows = 0
    for f in imu.files:
        md = pq.ParquetFile(f).metadata
        rows += md.num_rows
        stats = md.row_group(0).column(0).statistics
        assert stats is not None and stats.has_min_max
    assert rows == 11865
    for locator, original in catalog[2].items():
        back = pa.concat_tables([qe.read_parquet_chunk(f) for f in catalog[1][locator].files])
        assert back.schema.equals(original.schema), locator
        assert back.equals(original), locator


def test_value_query_equals_rosbags_ground_truth(catalog, imu_truth):
    values = np.array([v[0] for _, v in imu_truth])
    thr = float(np.quantile(values, 0.9))
    expect = np.sort(np.array([t for t, v in imu_truth if v[0] > thr], dtype=np.int64))
    assert 0 < expect.size < len(imu_truth)

    body = Query(QueryOntologyCatalog(IMU.Q.acceleration.x.gt(thr))).to_dict()
    result = _run(catalog, body)
    assert _listing(result) == [("husky_run", ["husky_run/imu/data"])]

    ts, stats = qe.matching_timestamps(catalog[1]["husky_run/imu/data"], parse_query(body).ontology)
    np.testing.assert_array_equal(ts, expect)
    assert stats.files_scanned + stats.files_pruned == stats.files_total == 6


def test_clusterize_windows_cover_every_match(catalog, imu_truth):
    thr = float(np.quantile([v[0] for _, v in imu_truth], 0.95))
    expect = np.sort(np.array([t for t, v in imu_truth if v[0] > thr], dtype=np.int64))
    dt = 50_000_000  # 50 ms
    onto = QueryOntologyCatalog(IMU.Q.acceleration.x.gt(thr)).to_dict()
    clusters, _ = qa.topic_filter_clusterize(
        {"locator": "husky_run/imu/data", "clustering_dt_ns": dt, "ontology": onto, "timestamp_range": None},
        catalog[1].values(),
    )
    assert len(clusters) == 1 + int(np.count_nonzero(np.diff(expect) > dt))
    assert [c.id for c in clusters] == list(range(len(clusters)))
    matched = set(expect.tolist())
    for c in clusters:
        assert c.start_ns in matched and c.end_ns in matched
    for a, b in itertools.pairwise(clusters):
        assert b.start_ns - a.end_ns > dt
    starts = np.array([c.start_ns for c in clusters])
    idx = np.searchsorted(starts, expect, side="right") - 1
    assert np.all(idx >= 0)
    assert np.all(expect <= np.array([clusters[i].end_ns for i in idx]))

    whole, _ = qa.topic_filter_clusterize({"locator": "husky_run/imu/data", "ontology": onto}, catalog[1].values())
    assert [(c.start_ns, c.end_ns) for c in whole] == [(int(expect[0]), int(expect[-1]))]

    # timestamp_range keeps start <= t < end
    lo, hi = int(expect[len(expect) // 4]), int(expect[len(expect) // 2])
    part, _ = qa.topic_filter_clusterize(
        {"locator": "husky_run/imu/data", "ontology": onto, "timestamp_range": {"start_ns": lo, "end_ns": hi}},
        catalog[1].values(),
    )
    inside = expect[(expect >= lo) & (expect < hi)]
    assert [(c.start_ns, c.end_ns) for c in part] == [(int(inside[0]), int(inside[-1]))]


def test_time_predicate_reads_one_chunk(catalog, imu_truth):
    imu = catalog[1]["husky_run/imu/data"]
    import pyarrow.parquet as pq

    third = pq.read_table(imu.files[2], columns=["timestamp_ns"]).column(0).to_numpy()
    lo, hi = int(third[100]), int(third[300])
    body = QueryOntologyCatalog(IMU.Q.timestamp_ns.between([lo, hi])).to_dict()
    ts, stats = qe.matching_timestamps(imu, parse_query({"ontology": body}).ontology)
    expect = np.sort(np.array([t for t, _ in imu_truth if lo <= t <= hi], dtype=np.int64))
    np.testing.assert_array_equal(ts, expect)
    assert (stats.files_scanned, stats.files_pruned, stats.files_total) == (1, 5, 6)
    assert stats.row_groups_pruned >= stats.row_groups_total - 2


def test_impossible_value_reads_no_chunk(catalog, imu_truth):
    top = max(v[0] for _, v in imu_truth)
    result = _run(catalog, {"ontology": {"IMU.acceleration.x": {"$gt": top + 1.0}}})
    assert _listing(result) == []
    assert result.stats.files_scanned == 0 and result.stats.files_pruned == result.stats.files_total == 6


def test_existence_query_stops_at_first_matching_chunk(catalog):
    result = _run(catalog, {"ontology": {"IMU.acceleration.x": {"$gt": -1000.0}}})
    assert _listing(result) == [("husky_run", ["husky_run/imu/data"])]
    assert result.stats.files_scanned == 1


def test_list_any_element(catalog, imu_truth):
    """``[?]`` over the angular-velocity covariance (kept only when some entry is > 0)."""
    probe = 0.0
    covs = [c for _, (_, c) in imu_truth]
    expect = np.array([t for t, (_, c) in imu_truth if np.any(c > 0) and c.max() > probe], dtype=np.int64)
    body = QueryOntologyCatalog(IMU.Q.angular_velocity.covariance.any().gt(probe)).to_dict()
    ts, _ = qe.matching_timestamps(catalog[1]["husky_run/imu/data"], parse_query({"ontology": body}).ontology)
    np.testing.assert_array_equal(ts, np.sort(expect))
    idx = QueryOntologyCatalog(IMU.Q.angular_velocity.covariance[4].geq(float(covs[0][4]))).to_dict()
    ts4, _ = qe.matching_timestamps(catalog[1]["husky_run/imu/data"], parse_query({"ontology": idx}).ontology)
    expect4 = [t for t, (_, c) in imu_truth if np.any(c > 0) and c[4] >= covs[0][4]]
    np.testing.assert_array_equal(ts4, np.sort(np.array(expect4, dtype=np.int64)))


def test_catalog_conditions(catalog):
    all_husky = sorted(t for t in catalog[1] if t.startswith("husky_run/"))
    cases = [
        (QuerySequence().with_name("husky_run"), {"husky_run"}),
        (QuerySequence().with_name_match("*_sim"), {"nav2_sim"}),
        (QuerySequence().with_name_match("husky?run"), {"husky_run"}),
        (QuerySequence().with_user_metadata("robot.model", eq="turtlebot"), {"nav2_sim"}),
        (QuerySequence().with_user_metadata("robot.wheels", gt=3), {"husky_run"}),
        (QuerySequence().with_user_metadata("robot.wheels", between=[1, 4]), {"husky_run", "nav2_sim"}),
        (QuerySequence().with_user_metadata("site", ex=True), {"husky_run"}),
        (QuerySequence().with_user_metadata("site", ex=False), {"nav2_sim"}),
        (QuerySequence().with_user_metadata("robot.model", in_=["husky", "x"]), {"husky_run"}),
        (QuerySequence().with_user_metadata("robot.model", match="turtle*"), {"nav2_sim"}),
        (QuerySequence().with_created_timestamp(time_start=1), {"husky_run", "nav2_sim"}),
        (QuerySequence().with_created_timestamp(time_end=1), set()),
    ]
    for builder, expect in cases:
        got = {i.sequence.name for i in _run(catalog, {"sequence": builder.to_dict()}).response}
        assert got == expect, builder.to_dict()
    husky = _run(catalog, {"sequence": QuerySequence().with_name("husky_run").to_dict()}).response
    assert sorted(t.locator for t in husky[0].topics) == all_husky

    topic_cases = [
        (QueryTopic().with_name("/imu/data"), ["husky_run/imu/data"]),
        (QueryTopic().with_name("imu/data"), ["husky_run/imu/data"]),
        (QueryTopic().with_name_match("*odom"), ["husky_run/husky_velocity_controller/odom", "nav2_sim/odom"]),
        (QueryTopic().with_ontology_tag("GPS"), ["husky_run/fix"]),
        (QueryTopic().with_ontology_tag("Pose"), ["nav2_sim/amcl_pose"]),
    ]
    for builder, expect in topic_cases:
        got = sorted(t.locator for i in _run(catalog, {"topic": builder.to_dict()}).response for t in i.topics)
        assert got == expect, builder.to_dict()

    resp = _run(catalog, {"topic": QueryTopic().with_name_match("*odom").to_dict()}).response
    again = _run(catalog, {"topic": resp.to_query_topic().to_dict(), "sequence": resp.to_query_sequence().to_dict()})
    assert _listing(again) == _listing(_run(catalog, {"topic": QueryTopic().with_name_match("*odom").to_dict()}))


def test_sections_join_with_and(catalog, imu_truth):
    thr = float(np.quantile([v[0] for _, v in imu_truth], 0.5))
    onto = QueryOntologyCatalog(IMU.Q.acceleration.x.gt(thr))
    assert _listing(_run(catalog, Query(QuerySequence().with_name("nav2_sim"), onto).to_dict())) == []
    assert _listing(_run(catalog, Query(QueryTopic().with_ontology_tag("GPS"), onto).to_dict())) == []
    both = Query(QuerySequence().with_user_metadata("robot.wheels", eq=4), onto).to_dict()
    assert _listing(_run(catalog, both)) == [("husky_run", ["husky_run/imu/data"])]


def test_ontology_groups_by_tag_intersect_sequences(catalog, imu_truth):
    """IMU and MotionState conditions: only the sequence with matches for both tags stays."""
    odom = _bag_rows(shared_bag(HUSKY), "/husky_velocity_controller/odom", lambda m: m.twist.twist.linear.x)
    vmax = max(v for _, v in odom)
    onto = QueryOntologyCatalog(IMU.Q.acceleration.x.gt(-1000.0), MotionState.Q.velocity.linear.x.geq(vmax))
    got = _listing(_run(catalog, {"ontology": onto.to_dict()}))
    assert got == [("husky_run", ["husky_run/husky_velocity_controller/odom", "husky_run/imu/data"])] or got == [
        ("husky_run", ["husky_run/imu/data", "husky_run/husky_velocity_controller/odom"])
    ]
    only_motion = QueryOntologyCatalog(MotionState.Q.velocity.linear.x.gt(-1000.0))
    assert {i.sequence.name for i in _run(catalog, {"ontology": only_motion.to_dict()}).response} == {
        "husky_run", "nav2_sim"}


def test_intersect_imu_and_gps(catalog, imu_truth):
    fix = _bag_rows(shared_bag(HUSKY), "/fix", lambda m: m.latitude)
    lat_mid = float(np.median([v for _, v in fix]))
    thr = float(np.quantile([v[0] for _, v in imu_truth], 0.8))
    imu_t = np.sort(np.array([t for t, v in imu_truth if v[0] > thr], dtype=np.int64))
    gps_t = np.sort(np.array([t for t, v in fix if v > lat_mid], dtype=np.int64))
    dt = 200_000_000
    body = {
        "topics": [
            {"locator": "husky_run/imu/data", "clustering_dt_ns": dt,
             "ontology": QueryOntologyCatalog(IMU.Q.acceleration.x.gt(thr)).to_dict()},
            {"locator": "husky_run/fix", "clustering_dt_ns": 2 * dt,
             "ontology": QueryOntologyCatalog(GPS.Q.position.x.gt(lat_mid)).to_dict()},
        ],
        "intersect_dt_ns": 0,
    }
    windows, stats = qa.topic_filter_intersect(body, catalog[1].values())
    assert windows and stats.files_scanned >= 2
    imu_w = qa.clusterize(imu_t, dt)
    gps_w = qa.clusterize(gps_t, 2 * dt)
    for w in windows:
        assert any(c.start_ns <= w.start_ns and w.end_ns <= c.end_ns for c in imu_w)
        assert any(c.start_ns <= w.start_ns and w.end_ns <= c.end_ns for c in gps_w)
    # every pair of overlapping windows is reported
    overlaps = sum(1 for a in imu_w for b in gps_w if max(a.start_ns, b.start_ns) <= min(a.end_ns, b.end_ns))
    assert len(windows) == overlaps


def test_intersect_rules_of_mosaicod():
    c = qa.clusterize
    assert [(w.start_ns, w.end_ns) for w in qa.intersect([c([100, 110, 500, 510], 50), c([105, 115, 495, 505], 50)])] \
        == [(105, 110), (500, 505)]
    assert [(w.start_ns, w.end_ns) for w in qa.intersect([c([100, 140], 50), c([155, 200], 50)], 20)] == [(145, 150)]
    assert [(w.start_ns, w.end_ns) for w in qa.intersect([c([100, 200], 150), c([120, 180], 100), c([130, 170], 100)])] \
        == [(130, 170)]
    assert qa.intersect([c([100, 150], 100), c([300, 400], 100)], 10) == []
    assert qa.intersect([c([100], 10), []]) == []
    assert [(w.start_ns, w.end_ns) for w in c([10, 15, 20], 5)] == [(10, 20)]
    assert [(w.start_ns, w.end_ns) for w in c([10, 16], 5)] == [(10, 10), (16, 16)]
    assert [(w.start_ns, w.end_ns) for w in c([100, 200, 300, 1000, 1100, 2000], 100, TimestampRange(500, 1500))] \
        == [(1000, 1100)]


@pytest.mark.parametrize(
    "body,needle",
    [
        ({"ontology": {"IMU.acceleration.w": {"$gt": 1.0}}}, "IMU.acceleration.w"),
        ({"ontology": {"IMU.nothing": {"$gt": 1.0}}}, "IMU.nothing"),
        ({"ontology": {"IMU.acceleration.x": {"$match": "1*"}}}, "IMU.acceleration.x"),
        ({"ontology": {"IMU.header.frame_id": {"$gt": 1}}}, "IMU.header.frame_id"),
        ({"ontology": {"IMU.acceleration": {"$eq": 1}}}, "IMU.acceleration"),
        ({"ontology": {"IMU.acceleration.x[0]": {"$eq": 1}}}, "IMU.acceleration.x"),
        ({"ontology": {"IMU.acceleration.covariance[?]": {"$match": "a"}}}, "IMU.acceleration.covariance[?]"),
    ],
)
def test_bad_ontology_field_is_query_error(catalog, body, needle):
    with pytest.raises(QueryError) as err:
        _run(catalog, body)
    assert needle in str(err.value)


def test_clusterize_errors(catalog):
    onto = {"IMU.acceleration.x": {"$gt": 0.0}}
    with pytest.raises(qe.QueryNotFound):
        qa.topic_filter_clusterize({"locator": "husky_run/none", "ontology": onto}, catalog[1].values())
    with pytest.raises(QueryError, match="tag"):
        qa.topic_filter_clusterize({"locator": "husky_run/fix", "ontology": onto}, catalog[1].values())


def test_frame_id_string_conditions(catalog):
    frames = defaultdict(int)
    for _, fid in _bag_rows(shared_bag(HUSKY), "/imu/data", lambda m: m.header.frame_id):
        frames[fid] += 1
    (fid, n), = frames.items() if len(frames) == 1 else (max(frames.items(), key=lambda kv: kv[1]),)
    imu = catalog[1]["husky_run/imu/data"]
    for cond in ({"$eq": fid}, {"$match": fid[:2] + "*"}, {"$in": [fid, "zzz"]}):
        ts, _ = qe.matching_timestamps(imu, parse_query({"ontology": {"IMU.header.frame_id": cond}}).ontology)
        assert ts.size == n, cond


# --------------------------------------------------------------------------------------
# End to end: the three actions on a Flight server, called by the SDK mosaicolabs 0.7.0
# --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def query_server(catalog):
    """The embedded server itself over the catalog's store: its DoAction answers the three
    query actions (paged clusterize / intersect replies)."""
    from mosaico_bridge.server import MosaicoServer

    srv = MosaicoServer.start_background(catalog[3], host="127.0.0.1", port=0)
    yield srv
    srv.stop()


def test_sdk_query_clusterize_intersect_end_to_end(query_server, imu_truth):
    from mosaicolabs import GPS as SdkGPS
    from mosaicolabs import IMU as SdkIMU
    from mosaicolabs import MosaicoClient as SdkClient
    from mosaicolabs import QueryOntologyCatalog as SdkCatalog
    from mosaicolabs import QuerySequence as SdkSequence

    thr = float(np.quantile([v[0] for _, v in imu_truth], 0.95))
    expect = np.sort(np.array([t for t, v in imu_truth if v[0] > thr], dtype=np.int64))
    dt = 50_000_000
    with SdkClient.connect("127.0.0.1", query_server.port) as sdk:
        resp = sdk.query(SdkSequence().with_user_metadata("robot.model", eq="husky"),
                         SdkCatalog(SdkIMU.Q.acceleration.x.gt(thr)))
        assert resp is not None and len(resp) == 1
        item = resp[0]
        assert item.sequence.name == "husky_run"
        assert [(t.locator, t.ontology_tag, t.name) for t in item.topics] == [
            ("husky_run/imu/data", "IMU", "/imu/data")]
        clusters = item.topics[0].clusterize(dt)
        assert len(clusters) == 1 + int(np.count_nonzero(np.diff(expect) > dt))
        assert (clusters[0].timerange.start, clusters[-1].timerange.end) == (int(expect[0]), int(expect[-1]))
        whole = item.topics[0].clusterize()
        assert [(c.timerange.start, c.timerange.end) for c in whole] == [(int(expect[0]), int(expect[-1]))]

        gps = sdk.query(SdkCatalog(SdkGPS.Q.position.x.gt(-90.0)))
        assert [t.locator for i in gps for t in i.topics] == ["husky_run/fix"]
        windows = item.topics[0].intersect(gps[0].topics[0], intersect_dt_ns=0, override_clustering_dt_ns=dt)
        assert windows, "IMU windows inside the GPS span intersect it"
        for w in windows:
            assert any(c.timerange.start <= w.timerange.start and w.timerange.end <= c.timerange.end for c in clusters)

        assert sdk.query(SdkSequence().with_name("no_such_sequence")).is_empty()


def test_our_client_functions_end_to_end(query_server, imu_truth):
    from pyarrow import flight

    from mosaico_bridge.client.query import run_clusterize, run_query

    thr = float(np.quantile([v[0] for _, v in imu_truth], 0.9))
    with flight.FlightClient(f"grpc://127.0.0.1:{query_server.port}") as fc:
        import json

        def run(name, payload):
            return [r.body.to_pybytes() for r in fc.do_action(flight.Action(name, json.dumps(payload).encode()))]

        onto = QueryOntologyCatalog(IMU.Q.acceleration.x.gt(thr))
        resp = run_query(run, QueryTopic().with_name("/imu/data"), onto)
        assert [(i.sequence.name, [t.locator for t in i.topics]) for i in resp] == [
            ("husky_run", ["husky_run/imu/data"])]
        windows = run_clusterize(run, resp[0].topics[0], onto, 0)
        expect = sorted(t for t, v in imu_truth if v[0] > thr)
        assert [(w.start_ns, w.end_ns) for w in windows] == [(expect[0], expect[-1])]
        with pytest.raises(flight.FlightError, match="IMU.acceleration.w"):
            run("query", {"ontology": {"IMU.acceleration.w": {"$gt": 1.0}}})
