"""Our query builders against the SDK ``mosaicolabs`` 0.7.0 builders: same calls, same JSON.

Each case is one function over a namespace exposing ``Query``, ``QuerySequence``,
``QueryTopic``, ``QueryOntologyCatalog`` and the ontology classes; it runs once with the
SDK's and once with ours, and the two bodies must serialize to identical JSON (sorted
keys, so ``5`` and ``5.0`` differ). The bodies also go through our server-side parser.
"""

from __future__ import annotations

import datetime
import json
import types

import pyarrow as pa
import pytest

from mosaico_bridge.client import query as ours_mod
from mosaico_bridge.protocol import query as proto

mosaicolabs = pytest.importorskip("mosaicolabs")
from mosaicolabs.comm.do_action import _DoActionQueryResponse
from mosaicolabs.comm.do_action_page import _DoActionPageResponseFilterClusterize

T0 = 1_700_000_000_000_000_000


def _ns(mod, tags):
    ns = types.SimpleNamespace(
        Query=mod.Query,
        QuerySequence=mod.QuerySequence,
        QueryTopic=mod.QueryTopic,
        QueryOntologyCatalog=mod.QueryOntologyCatalog,
    )
    for tag in tags:
        setattr(ns, tag, getattr(mod, tag))
    return ns


TAGS = ["IMU", "GPS", "Pose", "MotionState", "Temperature", "String", "Image", "Velocity", "RobotJoint",
        "Magnetometer", "Pressure", "Floating64", "Boolean", "Transform", "Vector3d"]
SDK = _ns(mosaicolabs, TAGS)
OURS = _ns(ours_mod, TAGS)

CASES = {
    # --- sequence
    "seq_name": lambda n: n.QuerySequence().with_name("run_01"),
    "seq_name_match": lambda n: n.QuerySequence().with_name_match("run_*"),
    "seq_created_start": lambda n: n.QuerySequence().with_created_timestamp(time_start=T0),
    "seq_created_end": lambda n: n.QuerySequence().with_created_timestamp(time_end=T0),
    "seq_created_both": lambda n: n.QuerySequence().with_created_timestamp(T0, T0 + 10),
    "seq_created_zero_start": lambda n: n.QuerySequence().with_created_timestamp(0, T0),
    "seq_meta_eq_str": lambda n: n.QuerySequence().with_user_metadata("project", eq="Apollo"),
    "seq_meta_nested_lt": lambda n: n.QuerySequence().with_user_metadata("environment.visibility", lt=50),
    "seq_meta_between": lambda n: n.QuerySequence().with_user_metadata("a.b.c", between=(14, 24)),
    "seq_meta_in": lambda n: n.QuerySequence().with_user_metadata("site", in_=["lab", "yard"]),
    "seq_meta_ex": lambda n: n.QuerySequence().with_user_metadata("calib", ex=True),
    "seq_meta_nex": lambda n: n.QuerySequence().with_user_metadata("calib", ex=False),
    "seq_meta_bool": lambda n: n.QuerySequence().with_user_metadata("ok", eq=True),
    "seq_meta_neq_float": lambda n: n.QuerySequence().with_user_metadata("v", neq=1.5),
    "seq_meta_match": lambda n: n.QuerySequence().with_user_metadata("driver", match="J*"),
    "seq_meta_outside": lambda n: n.QuerySequence().with_user_metadata("t", outside=[1.0, 2.0]),
    "seq_mixed": lambda n: n.QuerySequence().with_name_match("test_drive*")
    .with_user_metadata("environment.visibility", lt=50).with_user_metadata("x", geq="b")
    .with_created_timestamp(T0, T0 + 1),
    # --- topic
    "topic_name": lambda n: n.QueryTopic().with_name("/imu/data"),
    "topic_name_match": lambda n: n.QueryTopic().with_name_match("*imu*"),
    "topic_tag": lambda n: n.QueryTopic().with_ontology_tag(n.IMU.ontology_tag()),
    "topic_created": lambda n: n.QueryTopic().with_created_timestamp(time_start=T0),
    "topic_meta": lambda n: n.QueryTopic().with_user_metadata("camera_id.serial_number", eq="ABC123_XYZ"),
    "topic_mixed": lambda n: n.QueryTopic().with_ontology_tag("GPS").with_name_match("/fix#")
    .with_user_metadata("rate", gt=9).with_created_timestamp(time_end=T0),
    # --- ontology
    "imu_acc_gt": lambda n: n.QueryOntologyCatalog(n.IMU.Q.acceleration.x.gt(5.0)),
    "imu_two": lambda n: n.QueryOntologyCatalog(n.IMU.Q.acceleration.x.lt(-4.0))
    .with_expression(n.IMU.Q.acceleration.y.gt(5.0)),
    "imu_timestamp": lambda n: n.QueryOntologyCatalog(n.IMU.Q.timestamp_ns.gt(1700134567)),
    "imu_ts_between": lambda n: n.QueryOntologyCatalog(n.IMU.Q.timestamp_ns.between([T0, T0 + 5])),
    "imu_frame_id_eq": lambda n: n.QueryOntologyCatalog(n.IMU.Q.header.frame_id.eq("imu_link")),
    "imu_frame_id_match": lambda n: n.QueryOntologyCatalog(n.IMU.Q.header.frame_id.match("imu*")),
    "imu_stamp_sec": lambda n: n.QueryOntologyCatalog(n.IMU.Q.header.timestamp.seconds.geq(10)),
    "imu_orientation_w": lambda n: n.QueryOntologyCatalog(n.IMU.Q.orientation.w.leq(0.5)),
    "imu_cov_index": lambda n: n.QueryOntologyCatalog(n.IMU.Q.acceleration.covariance[0].gt(0.1)),
    "imu_cov_any": lambda n: n.QueryOntologyCatalog(n.IMU.Q.angular_velocity.covariance.any().lt(1.0)),
    "imu_cov_all": lambda n: n.QueryOntologyCatalog(n.IMU.Q.angular_velocity.covariance.all().geq(0.0)),
    "imu_in_varargs": lambda n: n.QueryOntologyCatalog(n.IMU.Q.header.sample_counter.in_(1, 2, 3)),
    "imu_in_list": lambda n: n.QueryOntologyCatalog(n.IMU.Q.acceleration.covariance_type.in_([0, 1])),
    "imu_neq": lambda n: n.QueryOntologyCatalog(n.IMU.Q.acceleration.z.neq(9.81)),
    "imu_outside": lambda n: n.QueryOntologyCatalog(n.IMU.Q.acceleration.z.outside(9.0, 10.5)),
    "gps_position": lambda n: n.QueryOntologyCatalog(n.GPS.Q.position.x.between([44.0, 45.0]))
    .with_expression(n.GPS.Q.status.satellites.geq(8)),
    "gps_status": lambda n: n.QueryOntologyCatalog(n.GPS.Q.status.status.eq(0)),
    "pose": lambda n: n.QueryOntologyCatalog(n.Pose.Q.position.x.gt(1.0), n.Pose.Q.orientation.z.lt(0.0)),
    "motion_state": lambda n: n.QueryOntologyCatalog(n.MotionState.Q.velocity.linear.x.gt(0.5)),
    "temperature": lambda n: n.QueryOntologyCatalog(n.Temperature.Q.value.gt(300.0)),
    "string_data": lambda n: n.QueryOntologyCatalog(n.String.Q.data.match("*error*")),
    "string_between": lambda n: n.QueryOntologyCatalog(n.String.Q.data.between("a", "m")),
    "image_width": lambda n: n.QueryOntologyCatalog(n.Image.Q.width.geq(640), n.Image.Q.encoding.eq("rgb8")),
    "velocity": lambda n: n.QueryOntologyCatalog(n.Velocity.Q.angular.z.lt(-0.1)),
    "robot_joint_names": lambda n: n.QueryOntologyCatalog(n.RobotJoint.Q.names.any().eq("wheel")),
    "magnetometer": lambda n: n.QueryOntologyCatalog(n.Magnetometer.Q.magnetic_field.x.gt(1e-5)),
    "pressure": lambda n: n.QueryOntologyCatalog(n.Pressure.Q.value.between(9e4, 1.1e5)),
    "float64": lambda n: n.QueryOntologyCatalog(n.Floating64.Q.data.gt(3)),
    "boolean": lambda n: n.QueryOntologyCatalog(n.Boolean.Q.data.eq(True)),
    "transform": lambda n: n.QueryOntologyCatalog(n.Transform.Q.translation.x.gt(0.0)),
    "multi_tag": lambda n: n.QueryOntologyCatalog(n.IMU.Q.acceleration.x.gt(1.0), n.GPS.Q.position.z.lt(300.0)),
    # --- whole queries
    "query_all": lambda n: n.Query(
        n.QuerySequence().with_user_metadata("environment.visibility", lt=50).with_name_match("test_drive*"),
        n.QueryTopic().with_ontology_tag("IMU"),
        n.QueryOntologyCatalog().with_expression(n.IMU.Q.acceleration.x.gt(5.0))
        .with_expression(n.IMU.Q.timestamp_ns.gt(1700134567)),
    ),
    "query_empty_builders": lambda n: n.Query(n.QuerySequence(), n.QueryTopic(), n.QueryOntologyCatalog()),
}


def _body(built):
    return built.to_dict()


def _canon(d):
    return json.dumps(d, sort_keys=True)


@pytest.mark.parametrize("name", sorted(CASES))
def test_builder_json_equals_sdk(name):
    case = CASES[name]
    sdk_built, our_built = case(SDK), case(OURS)
    assert _canon(_body(our_built)) == _canon(_body(sdk_built))


def test_query_append_equals_sdk():
    for n in (SDK, OURS):
        q = n.Query(n.QuerySequence().with_name("s"))
        q.append(n.QueryOntologyCatalog(n.Vector3d.Q.z.geq(-1.0)), n.QueryTopic().with_name("/a"))
        n.result = q.to_dict()
    assert _canon(OURS.result) == _canon(SDK.result)


def test_case_table_is_large_enough():
    assert len(CASES) >= 30


def _wrap(built):
    """A builder as a full ``query`` body (what MosaicoClient.query sends)."""
    if isinstance(built, proto.Query):
        return built.to_dict()
    return {built.name(): built.to_dict()}


@pytest.mark.parametrize("name", sorted(CASES))
def test_server_parser_accepts_and_round_trips(name):
    built = CASES[name](OURS)
    body = _wrap(built)
    parsed = proto.parse_query(json.loads(json.dumps(body)))
    expect = {k: v for k, v in body.items() if v}
    assert _canon(parsed.to_dict()) == _canon(expect)


def test_query_body_matches_sdk_client_payload():
    seq = OURS.QuerySequence().with_name("a")
    onto = OURS.QueryOntologyCatalog(OURS.IMU.Q.acceleration.x.gt(1.0))
    body = ours_mod.query_body(seq, onto)
    sdk_seq = SDK.QuerySequence().with_name("a")
    sdk_onto = SDK.QueryOntologyCatalog(SDK.IMU.Q.acceleration.x.gt(1.0))
    assert _canon(body) == _canon({q.name(): q.to_dict() for q in (sdk_seq, sdk_onto)})
    with pytest.raises(ValueError, match="duplicate"):
        ours_mod.query_body(seq, OURS.QuerySequence())
    with pytest.raises(ValueError):
        ours_mod.query_body()


# Calls the SDK refuses; ours must refuse them too.
BAD = {
    "created_no_bounds": lambda n: n.QuerySequence().with_created_timestamp(),
    "created_reversed": lambda n: n.QueryTopic().with_created_timestamp(T0 + 1, T0),
    "between_reversed": lambda n: n.IMU.Q.acceleration.x.between(5.0, 1.0),
    "between_three": lambda n: n.IMU.Q.acceleration.x.between(1.0, 2.0, 3.0),
    "in_empty": lambda n: n.IMU.Q.acceleration.x.in_(),
    "numeric_bool": lambda n: n.IMU.Q.acceleration.x.eq(True),
    "numeric_str": lambda n: n.IMU.Q.acceleration.x.gt("5"),
    "mixed_types": lambda n: n.IMU.Q.acceleration.x.in_(1, 2.0),
    "string_no_neq": lambda n: n.IMU.Q.header.frame_id.neq("a"),
    "bool_no_gt": lambda n: n.Boolean.Q.data.gt(True),
    "unknown_field": lambda n: n.IMU.Q.acceleration.w,
    "list_attr": lambda n: n.IMU.Q.acceleration.covariance.x,
    "index_not_list": lambda n: n.IMU.Q.acceleration[0],
    "meta_two_ops": lambda n: n.QuerySequence().with_user_metadata("a", eq=1, lt=2),
    "meta_no_op": lambda n: n.QuerySequence().with_user_metadata("a"),
    "meta_unknown_op": lambda n: n.QuerySequence().with_user_metadata("a", like="x"),
    "meta_match_int": lambda n: n.QueryTopic().with_user_metadata("a", match=3),
    "dup_key": lambda n: n.QueryOntologyCatalog(n.IMU.Q.acceleration.x.gt(1.0), n.IMU.Q.acceleration.x.lt(3.0)),
    "dup_name": lambda n: n.QuerySequence().with_name("a").with_name_match("b*"),
    "dup_builder": lambda n: n.Query(n.QueryTopic(), n.QueryTopic()),
    "topic_expr_in_catalog": lambda n: n.QueryOntologyCatalog(n.QueryTopic().with_name("a").expressions()[0]),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_calls_refused_like_sdk(name):
    with pytest.raises((ValueError, TypeError, AttributeError, NotImplementedError)):
        BAD[name](SDK)
    with pytest.raises((ValueError, TypeError, AttributeError)):
        BAD[name](OURS)


def test_duplicate_builder_is_value_error():
    with pytest.raises(ValueError, match="QueryTopic"):
        OURS.Query(OURS.QueryTopic(), OURS.QueryTopic())


def _leaf_paths_sdk(schema, prefix=""):
    out = {}
    for key, val in schema.items():
        path = f"{prefix}.{key}" if prefix else key
        if val is None:
            out[path] = "unsupported"
        elif "type" in val and isinstance(val["type"], str):
            kind = val["type"]
            if kind == "_QueryableList":
                out[path] = "list"
                out.update(_leaf_paths_sdk(val["struct"], path + "[]"))
            elif kind.endswith("ListType") or kind == "ListType":
                out[path] = "list"
            else:
                out[path] = {"_QueryableNumeric": "numeric", "_QueryableString": "string",
                             "_QueryableBool": "bool", "_QueryableDateTime": "datetime"}[kind]
        else:
            out.update(_leaf_paths_sdk(val, path))
    return out


def _leaf_paths_ours(arrow_type: pa.DataType, prefix=""):
    out = {}
    for i in range(arrow_type.num_fields):
        f = arrow_type.field(i)
        path = f"{prefix}.{f.name}" if prefix else f.name
        t = f.type
        if pa.types.is_struct(t):
            out.update(_leaf_paths_ours(t, path))
        elif proto._is_list(t):
            out[path] = "list"
            if pa.types.is_struct(t.value_type):
                out.update(_leaf_paths_ours(t.value_type, path + "[]"))
        else:
            out[path] = proto._leaf_kind(t)
    return out


def test_every_tag_accessor_has_the_sdk_field_paths():
    """The ``Q`` of each of our tags offers exactly the SDK class's queryable paths and kinds."""
    checked = 0
    for tag, model in ours_mod.ontology_models().items():
        sdk_cls = getattr(mosaicolabs, tag, None)
        if sdk_cls is None or not hasattr(sdk_cls, "Q"):
            continue
        sdk_paths = _leaf_paths_sdk(sdk_cls.Q._queryable_schema)
        our_paths = _leaf_paths_ours(model.Q._type)
        assert our_paths == sdk_paths, tag
        checked += 1
    assert checked >= 25


def test_datetime_kind_transforms_like_sdk():
    f = proto.QueryField("X.t", "datetime")
    assert f.gt(5).value == "5"
    d = datetime.date(2024, 1, 2)
    assert f.eq(d).value == "2024-01-02"


# --------------------------------------------------------------------------------------
# Replies
# --------------------------------------------------------------------------------------

REPLY = {
    "items": [
        {"sequence": "run_a", "topics": [{"locator": "run_a/imu/data", "ontology_tag": "IMU"},
                                          {"locator": "run_a/fix", "ontology_tag": "GPS"}]},
        {"sequence": "run_b", "topics": [{"locator": "run_b/imu/data", "ontology_tag": "IMU"}]},
    ]
}


def test_query_response_round_trip_and_sdk_parse():
    resp = proto.QueryResponse.from_dict(REPLY)
    assert resp.to_dict() == REPLY
    assert len(resp) == 2 and [i.sequence.name for i in resp] == ["run_a", "run_b"]
    assert [t.name for t in resp[0].topics] == ["/imu/data", "/fix"]
    sdk = _DoActionQueryResponse.from_dict(resp.to_dict()).query_response
    assert [(i.sequence.name, [(t.locator, t.ontology_tag, t.name) for t in i.topics]) for i in sdk] == [
        (i.sequence.name, [(t.locator, t.ontology_tag, t.name) for t in i.topics]) for i in resp
    ]
    assert _canon(resp.to_query_sequence().to_dict()) == _canon(sdk.to_query_sequence().to_dict())
    assert _canon(resp.to_query_topic().to_dict()) == _canon(sdk.to_query_topic().to_dict())
    assert proto.QueryResponse.from_dict({"items": []}).is_empty()
    with pytest.raises(ValueError):
        proto.QueryResponse().to_query_sequence()


@pytest.mark.parametrize(
    "bad", [{}, {"items": {}}, {"items": [{"topics": []}]}, {"items": [{"sequence": "s", "topics": [{"locator": 1}]}]}]
)
def test_query_response_malformed(bad):
    with pytest.raises(proto.QueryError):
        proto.QueryResponse.from_dict(bad)


def test_cluster_reply_round_trip_and_sdk_parse():
    clusters = [proto.TopicCluster(0, 10, 20), proto.TopicCluster(1, 35, 35)]
    envs = proto.cluster_envelopes(proto.ACTION_CLUSTERIZE, clusters)
    assert envs[0] == {"action": "topic_filter_clusterize", "response": {"ts": {"start_ns": 10, "end_ns": 20}, "id": 0}}
    assert proto.parse_cluster_envelopes(proto.ACTION_CLUSTERIZE, json.loads(json.dumps(envs))) == clusters
    sdk = _DoActionPageResponseFilterClusterize.from_list([e["response"] for e in envs]).clusters
    assert [(c.id, c.timerange.start, c.timerange.end) for c in sdk] == [(c.id, c.start_ns, c.end_ns) for c in clusters]
    with pytest.raises(proto.QueryError):
        proto.parse_cluster_envelopes(proto.ACTION_INTERSECT, envs)


def test_clusterize_and_intersect_requests_match_sdk_payloads():
    """Our client payloads parse and equal what the SDK's payload builders send."""
    from mosaicolabs.query.response import (
        QueryResponseItemTopic,
        _build_clusterize_payload,
        _build_intersect_payload,
    )
    from mosaicolabs.query.topic_cluster import TimestampRange as SdkRange

    sdk_imu = QueryResponseItemTopic(locator="run_a/imu/data", ontology_tag="IMU")
    sdk_gps = QueryResponseItemTopic(locator="run_a/fix", ontology_tag="GPS")
    sdk_exprs = [SDK.IMU.Q.acceleration.x.gt(1.0), SDK.IMU.Q.acceleration.y.lt(2.0), SDK.GPS.Q.position.x.gt(3.0)]
    sdk_imu._set_query_expressions(sdk_exprs)
    sdk_gps._set_query_expressions(sdk_exprs)
    onto = OURS.QueryOntologyCatalog(OURS.IMU.Q.acceleration.x.gt(1.0), OURS.IMU.Q.acceleration.y.lt(2.0),
                                     OURS.GPS.Q.position.x.gt(3.0))
    imu = proto.QueryResponseTopic("run_a/imu/data", "IMU")
    gps = proto.QueryResponseTopic("run_a/fix", "GPS")

    seen = {}

    def run(name, payload):
        seen[name] = json.loads(json.dumps(payload))
        return []

    ours_mod.run_clusterize(run, imu, onto, 50, proto.TimestampRange(5, 500))
    assert _canon(seen["topic_filter_clusterize"]) == _canon(_build_clusterize_payload(sdk_imu, 50, SdkRange(5, 500)))
    req = proto.parse_clusterize_request(seen["topic_filter_clusterize"])
    assert req.clustering_dt_ns == 50 and req.timestamp_range == proto.TimestampRange(5, 500)
    assert [p.field for p in req.ontology] == ["IMU.acceleration.x", "IMU.acceleration.y"]

    ours_mod.run_intersect(run, [imu, gps], onto, 7, {"IMU": 3})
    assert _canon(seen["topic_filter_intersect"]) == _canon(_build_intersect_payload([sdk_imu, sdk_gps], 7, {"IMU": 3}))
    ireq = proto.parse_intersect_request(seen["topic_filter_intersect"])
    assert ireq.intersect_dt_ns == 7 and [t.clustering_dt_ns for t in ireq.topics] == [3, 0]


# --------------------------------------------------------------------------------------
# Server-side validation
# --------------------------------------------------------------------------------------

MALFORMED = {
    "not_object": ([], "query body"),
    "unknown_section": ({"layer": {}}, "layer"),
    "unknown_seq_field": ({"sequence": {"title": {"$eq": "a"}}}, "sequence.title"),
    "unknown_topic_field": ({"topic": {"size": {"$gt": 1}}}, "topic.size"),
    "unknown_operator": ({"sequence": {"name": {"$like": "a"}}}, "$like"),
    "two_operators": ({"sequence": {"name": {"$eq": "a", "$neq": "b"}}}, "sequence.name"),
    "name_wrong_type": ({"sequence": {"name": {"$eq": 5}}}, "sequence.name"),
    "created_float": ({"topic": {"created_at_ns": {"$gt": 1.5}}}, "topic.created_at_ns"),
    "created_bool": ({"topic": {"created_at_ns": {"$eq": True}}}, "topic.created_at_ns"),
    "created_match": ({"topic": {"created_at_ns": {"$match": "1*"}}}, "topic.created_at_ns"),
    "between_one": ({"ontology": {"IMU.acceleration.x": {"$between": [1.0]}}}, "IMU.acceleration.x"),
    "between_reversed": ({"ontology": {"IMU.acceleration.x": {"$between": [2.0, 1.0]}}}, "IMU.acceleration.x"),
    "in_empty": ({"ontology": {"IMU.acceleration.x": {"$in": []}}}, "IMU.acceleration.x"),
    "gt_list": ({"ontology": {"IMU.acceleration.x": {"$gt": [1]}}}, "IMU.acceleration.x"),
    "no_tag": ({"ontology": {"acceleration": {"$gt": 1}}}, "acceleration"),
    "bad_segment": ({"ontology": {"IMU.acc-x": {"$gt": 1}}}, "IMU.acc-x"),
    "two_specifiers": ({"ontology": {"IMU.a[0].b[?]": {"$gt": 1}}}, "IMU.a[0].b[?]"),
    "match_unclosed": ({"ontology": {"String.data": {"$match": "[ab"}}}, "String.data"),
    "meta_bad_op": ({"sequence": {"user_metadata": {"a.b": {"$near": 1}}}}, "sequence.user_metadata.a.b"),
    "meta_not_object": ({"topic": {"user_metadata": 3}}, "topic.user_metadata"),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_parse_query_rejects_malformed(name):
    body, needle = MALFORMED[name]
    with pytest.raises(proto.QueryError) as err:
        proto.parse_query(body)
    assert needle in str(err.value)
    assert err.value.kind == "invalid_argument"
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "body",
    [
        {"locator": "s/t", "ontology": {}},
        {"locator": "s", "ontology": {"IMU.acceleration.x": {"$gt": 1}}},
        {"locator": "s/t", "clustering_dt_ns": -1, "ontology": {"IMU.acceleration.x": {"$gt": 1}}},
        {"locator": "s/t", "ontology": {"IMU.acceleration.x": {"$gt": 1}, "GPS.position.x": {"$gt": 1}}},
        {"locator": "s/t", "ontology": {"IMU.acceleration.x": {"$gt": 1}}, "timestamp_range": {"start_ns": 9, "end_ns": 3}},
        {"locator": "s/t", "ontology": {"IMU.acceleration.x": {"$gt": 1}}, "colour": 1},
    ],
)
def test_parse_clusterize_rejects_malformed(body):
    with pytest.raises(proto.QueryError):
        proto.parse_clusterize_request(body)


def test_parse_intersect_rejects_malformed():
    one = {"locator": "s/a", "ontology": {"IMU.acceleration.x": {"$gt": 1}}}
    other_seq = {"locator": "z/b", "ontology": {"IMU.acceleration.x": {"$gt": 1}}}
    with pytest.raises(proto.QueryError, match="at least two"):
        proto.parse_intersect_request({"topics": [one]})
    with pytest.raises(proto.QueryError, match="one sequence"):
        proto.parse_intersect_request({"topics": [one, other_seq]})
    with pytest.raises(proto.QueryError, match="intersect_dt_ns"):
        proto.parse_intersect_request({"topics": [one, dict(one, locator="s/b")], "intersect_dt_ns": -5})


@pytest.mark.parametrize(
    "pattern,hits,misses",
    [
        ("experiment*", ["experiment1-car", "experiment"], ["xexperiment"]),
        ("[a-z]*1-car", ["experiment1-car"], ["1-car", "E1-car"]),
        ("experiment?-[a-z]*", ["experiment1-car"], ["experiment12-car"]),
        ("car#/[a-z]*/[a-z]**", ["car1/imu/front"], ["carX/imu/front"]),
        ("v1.0+b", ["v1.0+b"], ["v100+b", "v1x0+b"]),
        ("plain", ["plain"], ["plainer", "a plain"]),
    ],
)
def test_glob_to_regex(pattern, hits, misses):
    import re

    rx = re.compile(proto.glob_to_regex(pattern))
    assert all(rx.match(h) for h in hits)
    assert not any(rx.match(m) for m in misses)
