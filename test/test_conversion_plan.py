"""Decoding plans (vectorized path) against the rosbags reference path.

* every topic of every shared bag: plan record batch == reference record batch;
* zero copy: large Image / CompressedImage / PointCloud2 / generic ``uint8[]``
  payloads are slices of the serialized message;
* errors name the absolute message index and its timestamp;
* generic byte arrays read back through the SDK's ``Unmodeled`` adapter;
* property-based (hypothesis): random messages of every type of rosbags'
  Humble (CDR, both endiannesses) and Noetic (ROS 1) stores, and of generated
  custom types; corrupted messages convert or fail exactly as the reference.
"""

from __future__ import annotations

import math
import random
from functools import cache

import numpy as np
import pyarrow as pa
import pytest
from conftest import SHARED_BAGS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rosbags.interfaces import Nodetype
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.base import normalize_fieldname
from test_conversion import read_bag, ros1_store, ros2_store

from mosaico_bridge.conversion import ConversionError, TopicConverter, make_converter
from mosaico_bridge.conversion.converter import LARGE_MESSAGE_BYTES
from mosaico_bridge.conversion.plan import ByteRuns, PlanMismatch

EXAMPLES = 2000
PROPERTY = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # nothing written into the repository
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def same_rows(a, b) -> bool:
    """Deep equality of to_pylist() rows treating NaN == NaN (and -0.0 == 0.0 as Python does)."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_rows(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same_rows(x, y) for x, y in zip(a, b))
    return a == b


def assert_same_batch(got: pa.RecordBatch, ref: pa.RecordBatch) -> None:
    got.validate(full=True)
    assert got.schema == ref.schema
    assert got.num_rows == ref.num_rows
    if not got.equals(ref):  # NaN != NaN for Arrow; compare values
        assert same_rows(got.to_pylist(), ref.to_pylist())


# --------------------------------------------------------------------------- #
# Shared bags
# --------------------------------------------------------------------------- #

BAG_TOPICS = [(rel, topic) for rel, topics in SHARED_BAGS.items() for topic in topics]


@pytest.mark.parametrize("rel,topic", BAG_TOPICS)
def test_plan_equals_reference_on_shared_bags(rel, topic):
    t = read_bag(rel)[topic]
    assert t.msgtype == SHARED_BAGS[rel][topic][0]
    conv = t.converter()
    assert conv.plan is not None, f"{t.msgtype} has no decoding plan"
    ref = conv.convert_reference(t.timestamps, t.raws)
    assert_same_batch(conv.convert_columnar(t.timestamps, t.raws), ref)
    # Default path, in uneven chunks and as one call; record batches per chunk too.
    assert_same_batch(conv.convert(t.timestamps, t.raws), ref)
    rng = random.Random(len(t.raws))
    pos, parts = 0, []
    while pos < len(t.raws):
        size = rng.choice([1, 2, 7, 100, 1000])
        parts.extend(conv.convert_batches(t.timestamps[pos:pos + size], t.raws[pos:pos + size], pos))
        pos += size
    assert pa.Table.from_batches(parts).combine_chunks().to_batches()[0].equals(ref) or same_rows(
        pa.Table.from_batches(parts).to_pylist(), ref.to_pylist()
    )


def test_plan_input_types_bytes_memoryview_arrow_buffer():
    t = read_bag("ros2_mcap_nav2_turtlebot/nav2_turtlebot.mcap")["/tf"]
    conv = t.converter()
    raws = t.raws[:300]
    ref = conv.convert_reference(t.timestamps[:300], raws)
    for wrap in (bytes, bytearray, memoryview, pa.py_buffer):
        assert conv.convert(t.timestamps[:300], [wrap(r) for r in raws]).equals(ref), wrap
    assert conv.convert(np.array(t.timestamps[:300], dtype=np.int64), raws).equals(ref)
    assert conv.convert(pa.array(t.timestamps[:300], type=pa.int64()), raws).equals(ref)


def test_mixed_endianness_batch_equals_reference():
    store = ros2_store()
    Pose = store.types["geometry_msgs/msg/PoseStamped"]
    Hdr, Tm = store.types["std_msgs/msg/Header"], store.types["builtin_interfaces/msg/Time"]
    P, Pt, Q = (store.types[f"geometry_msgs/msg/{n}"] for n in ("Pose", "Point", "Quaternion"))
    msgs = [
        Pose(header=Hdr(stamp=Tm(sec=i, nanosec=2 * i), frame_id="f" * i),
             pose=P(position=Pt(x=i, y=1.5, z=-2.0), orientation=Q(x=0.0, y=0.0, z=0.0, w=1.0)))
        for i in range(6)
    ]
    raws = [bytes(store.serialize_cdr(m, "geometry_msgs/msg/PoseStamped", little_endian=i % 2 == 0))
            for i, m in enumerate(msgs)]
    conv = make_converter("geometry_msgs/msg/PoseStamped", store)
    ref = conv.convert_reference(list(range(6)), raws)
    assert conv.convert(list(range(6)), raws).equals(ref)
    with pytest.raises(PlanMismatch, match="endianness"):
        conv.convert_columnar(list(range(6)), raws)
    assert conv.convert_columnar(list(range(3)), raws[0::2]).equals(conv.convert_reference(list(range(3)), raws[0::2]))
    assert conv.convert_columnar(list(range(3)), raws[1::2]).equals(conv.convert_reference(list(range(3)), raws[1::2]))


# --------------------------------------------------------------------------- #
# Zero copy
# --------------------------------------------------------------------------- #


def _inside(buf: pa.Buffer, message: pa.Buffer) -> bool:
    return message.address <= buf.address and buf.address + buf.size <= message.address + message.size


def _header(store, frame="cam"):
    Hdr, Tm = store.types["std_msgs/msg/Header"], store.types["builtin_interfaces/msg/Time"]
    kw = {"stamp": Tm(sec=5, nanosec=6), "frame_id": frame}
    if "seq" in dict(store.fielddefs["std_msgs/msg/Header"][1]):
        kw["seq"] = 3
    return Hdr(**kw)


@pytest.mark.parametrize("encoding", ["cdr", "ros1"])
def test_large_image_payload_is_a_slice_of_the_serialized_message(encoding):
    store = ros2_store() if encoding == "cdr" else ros1_store()
    Img = store.types["sensor_msgs/msg/Image"]
    h, w = 480, 640
    pixels = [np.full(h * w * 3, i, dtype=np.uint8) for i in range(3)]
    msgs = [Img(header=_header(store), height=h, width=w, encoding="rgb8", is_bigendian=0,
                step=w * 3, data=px) for px in pixels]
    small = Img(header=_header(store), height=1, width=2, encoding="mono8", is_bigendian=0, step=2,
                data=np.array([1, 2], dtype=np.uint8))
    msgs.insert(1, small)
    ser = (lambda m: store.serialize_cdr(m, "sensor_msgs/msg/Image")) if encoding == "cdr" else (
        lambda m: store.serialize_ros1(m, "sensor_msgs/msg/Image"))
    raws = [pa.py_buffer(bytes(ser(m))) for m in msgs]
    conv = make_converter("sensor_msgs/msg/Image", store, encoding)
    ts = [10, 20, 30, 40]
    batches = conv.convert_batches(ts, raws)
    assert [b.num_rows for b in batches] == [1, 1, 1, 1]
    for batch, raw, m in zip(batches, raws, msgs):
        data = batch.column("data")
        payload = data.buffers()[2]
        if len(raw) >= LARGE_MESSAGE_BYTES:
            assert _inside(payload, raw), "pixel data was copied"
        assert data[0].as_py() == np.asarray(m.data).tobytes()
    ref = conv.convert_reference(ts, raws)
    assert pa.Table.from_batches(batches).equals(pa.Table.from_batches([ref]))
    assert conv.convert(ts, raws).equals(ref)
    # bytes and memoryview inputs are wrapped without a copy as well.
    for wrap in (bytes, memoryview):
        inputs = [wrap(r) for r in raws]
        b = conv.convert_batches(ts[:1], inputs[:1])[0]
        assert _inside(b.column("data").buffers()[2], pa.py_buffer(inputs[0]))


def test_large_compressed_image_and_pointcloud_payloads_are_slices():
    store = ros2_store()
    Cmp = store.types["sensor_msgs/msg/CompressedImage"]
    payload = np.frombuffer(b"\xff\xd8" + bytes(200_000), dtype=np.uint8)
    raw = pa.py_buffer(bytes(store.serialize_cdr(
        Cmp(header=_header(store), format="jpeg", data=payload), "sensor_msgs/msg/CompressedImage")))
    conv = make_converter("sensor_msgs/msg/CompressedImage", store)
    (batch,) = conv.convert_batches([1], [raw])
    assert _inside(batch.column("data").buffers()[2], raw)
    assert batch.column("data")[0].as_py() == payload.tobytes()

    PC, PF = store.types["sensor_msgs/msg/PointCloud2"], store.types["sensor_msgs/msg/PointField"]
    cloud = np.arange(3 * 20_000, dtype=np.float32)
    raw = pa.py_buffer(bytes(store.serialize_cdr(
        PC(header=_header(store), height=1, width=20_000,
           fields=[PF(name=n, offset=4 * i, datatype=7, count=1) for i, n in enumerate("xyz")],
           is_bigendian=False, point_step=12, row_step=240_000, data=cloud.view(np.uint8), is_dense=True),
        "sensor_msgs/msg/PointCloud2")))
    conv = make_converter("sensor_msgs/msg/PointCloud2", store)
    (batch,) = conv.convert_batches([1], [raw])
    assert _inside(batch.column("data").buffers()[2], raw)
    assert batch.equals(conv.convert_reference([1], [raw]))


def test_generic_uint8_sequence_is_list_uint8_zero_copy():
    store = get_typestore(Stores.EMPTY)
    store.register(get_types_from_msg("string name\nuint8[] blob\nbyte[] signed\nfloat64 x", "my_msgs/msg/Blob"))
    Blob = store.types["my_msgs/msg/Blob"]
    blob = np.arange(100_000, dtype=np.int64).astype(np.uint8)
    msg = Blob(name="b", blob=blob, signed=np.array([-1, 5], dtype=np.int8), x=2.5)
    raw = pa.py_buffer(bytes(store.serialize_cdr(msg, "my_msgs/msg/Blob")))
    conv = make_converter("my_msgs/msg/Blob", store)
    assert conv.is_generic
    assert conv.schema.field("blob").type == pa.list_(pa.field("item", pa.uint8(), nullable=False))
    assert conv.schema.field("signed").type == pa.list_(pa.field("item", pa.int8(), nullable=False))
    (batch,) = conv.convert_batches([1], [raw])
    values = batch.column("blob").values
    assert _inside(values.buffers()[1], raw)
    assert np.array_equal(values.to_numpy(), blob)
    assert batch.column("signed").to_pylist() == [[-1, 5]]
    assert batch.equals(conv.convert_reference([1], [raw]))


def test_generic_byte_arrays_read_back_through_the_sdk_unmodeled_adapter():
    """The SDK rebuilds a ROS message from a generic row (lists for every array field)."""
    from mosaicolabs.bridges.ros.adapters.unmodeled import pack_unmodeled

    store = get_typestore(Stores.ROS2_HUMBLE)
    store.register(get_types_from_msg(
        "uint8[] data\nbyte[] signed\nuint8[4] fixed\nint32[] ints\ngeometry_msgs/Point[] points\n"
        "std_msgs/Header header", "my_msgs/msg/Bytes"))
    T = store.types
    msg = T["my_msgs/msg/Bytes"](
        data=np.array([0, 7, 255], dtype=np.uint8), signed=np.array([-128, 0, 127], dtype=np.int8),
        fixed=np.array([1, 2, 3, 4], dtype=np.uint8), ints=np.array([5, -6], dtype=np.int32),
        points=[T["geometry_msgs/msg/Point"](x=1.0, y=2.0, z=3.0)],
        header=T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=1, nanosec=2), frame_id="f"),
    )
    raw = bytes(store.serialize_cdr(msg, "my_msgs/msg/Bytes"))
    conv = make_converter("my_msgs/msg/Bytes", store)
    row = conv.convert([1], [raw]).to_pylist()[0]
    row.pop("timestamp_ns")
    rebuilt = T["my_msgs/msg/Bytes"](**pack_unmodeled(row, store.get_msgdef("my_msgs/msg/Bytes").fields, store))
    assert bytes(store.serialize_cdr(rebuilt, "my_msgs/msg/Bytes")) == raw


def test_byte_runs_of_small_batches_are_gathered():
    t = read_bag("ros2_mcap_cdr_test/cdr_test")["/array_topic"]
    conv = t.converter()
    cols = conv.plan.decode(t.raws)
    assert cols.n == len(t.raws)
    assert not any(isinstance(v, ByteRuns) for v in cols.values.values())  # fixed uint8[3] arrays
    assert conv.convert_columnar(t.timestamps, t.raws).equals(conv.convert_reference(t.timestamps, t.raws))


# --------------------------------------------------------------------------- #
# Errors
# --------------------------------------------------------------------------- #


def test_error_names_absolute_index_and_timestamp():
    t = read_bag("ros1_husky_imu_odom_gps/husky_imu_odom_gps.bag")["/imu/data"]
    conv = t.converter()
    raws = list(t.raws[:50])
    raws[17] = raws[17][:-3]
    with pytest.raises(ConversionError) as info:
        conv.convert(t.timestamps[:50], raws, first_index=1000)
    err = info.value
    assert (err.index, err.position, err.timestamp_ns) == (1017, 17, t.timestamps[17])
    assert f"message 1017 (timestamp_ns {t.timestamps[17]})" in str(err)
    assert not isinstance(err, ValueError)
    with pytest.raises(ConversionError) as info:
        conv.convert_batches(t.timestamps[:50], raws, first_index=5)
    assert info.value.index == 22
    # A value that does not fit the layout (Image width > 2**31-1) names its message too.
    store = ros2_store()
    Img = store.types["sensor_msgs/msg/Image"]
    ok = Img(header=_header(store), height=1, width=1, encoding="mono8", is_bigendian=0, step=1,
             data=np.array([1], dtype=np.uint8))
    bad = Img(header=_header(store), height=1, width=2**31, encoding="mono8", is_bigendian=0, step=1,
              data=np.array([1], dtype=np.uint8))
    raws = [bytes(store.serialize_cdr(m, "sensor_msgs/msg/Image")) for m in (ok, ok, bad)]
    conv = make_converter("sensor_msgs/msg/Image", store)
    with pytest.raises(ConversionError, match=r"message 12 \(timestamp_ns 300\).*Image Arrow layout") as info:
        conv.convert([100, 200, 300], raws, first_index=10)
    assert info.value.index == 12


def test_make_converter_compiles_the_plan_eagerly():
    conv = make_converter("nav_msgs/msg/Odometry", ros2_store())
    assert conv.plan is not None and conv.plan.msgtype == "nav_msgs/msg/Odometry"
    assert "plan=True" in repr(conv)


# --------------------------------------------------------------------------- #
# Property-based tests
# --------------------------------------------------------------------------- #

_INT_RANGES = {
    "byte": (-128, 127), "char": (0, 255), "int8": (-128, 127), "uint8": (0, 255),
    "int16": (-(2**15), 2**15 - 1), "uint16": (0, 2**16 - 1), "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1), "int64": (-(2**63), 2**63 - 1), "uint64": (0, 2**64 - 1),
}
_NUMPY = {
    "bool": np.bool_, "byte": np.int8, "char": np.uint8, "int8": np.int8, "uint8": np.uint8,
    "int16": np.int16, "uint16": np.uint16, "int32": np.int32, "uint32": np.uint32,
    "int64": np.int64, "uint64": np.uint64, "float32": np.float32, "float64": np.float64,
}
_STRINGS = st.one_of(st.just(""), st.sampled_from(["map", "base_link", "jpeg", "rgb8; png compressed"]),
                     st.text(max_size=6))


def _scalar(base: str):
    if base == "bool":
        return st.booleans()
    if base in _INT_RANGES:
        lo, hi = _INT_RANGES[base]
        return st.one_of(st.sampled_from([0, 1, lo, hi]), st.integers(lo, hi))
    if base == "float32":
        return st.floats(width=32)
    if base == "float64":
        return st.one_of(st.sampled_from([-1.0, 0.0, 0.5]), st.floats())
    if base == "string":
        return _STRINGS
    raise AssertionError(base)


def _strategy(store, desc, depth=0):
    node, content = desc
    if node == Nodetype.BASE:
        return _scalar(content[0])
    if node == Nodetype.NAME:
        return _message(store, content, depth + 1)
    (elem_node, elem), size = content
    fixed = node == Nodetype.ARRAY
    lo, hi = (size, size) if fixed else (0, min(size, 3) if size else 3)
    if elem_node == Nodetype.NAME:
        return st.lists(_message(store, elem, depth + 1), min_size=lo, max_size=hi)
    base = elem[0]
    if base == "string":
        return st.lists(_STRINGS, min_size=lo, max_size=hi)
    if base in ("uint8", "char", "byte") and not fixed:
        return st.binary(max_size=12).map(lambda b, t=_NUMPY[base]: np.frombuffer(b, dtype=np.uint8).view(t))
    return st.lists(_scalar(base), min_size=lo, max_size=hi).map(lambda v, t=_NUMPY[base]: np.array(v, dtype=t))


_MESSAGES: dict = {}


def _message(store, msgtype, depth=0):
    key = (id(store), msgtype)
    if key not in _MESSAGES:
        cls = store.types[msgtype]
        fields = store.fielddefs[msgtype][1]
        _MESSAGES[key] = st.deferred(lambda: st.builds(
            cls, **{normalize_fieldname(n): _strategy(store, d, depth) for n, d in fields}))
    return _MESSAGES[key]


@cache
def _converter(store_key: str, msgtype: str, encoding: str) -> TopicConverter:
    return make_converter(msgtype, _STORES[store_key](), encoding)


def _serialize(store, msg, msgtype, encoding, little):
    if encoding == "ros1":
        return bytes(store.serialize_ros1(msg, msgtype))
    return bytes(store.serialize_cdr(msg, msgtype, little_endian=little))


def _check_batch(conv: TopicConverter, raws: list) -> None:
    ts = [1_000 * i for i in range(len(raws))]
    try:
        ref = conv.convert_reference(ts, raws)
    except ConversionError:
        with pytest.raises(ConversionError):
            conv.convert(ts, raws)
        return
    assert_same_batch(conv.convert_columnar(ts, raws), ref)


@cache
def _humble():
    return get_typestore(Stores.ROS2_HUMBLE)


@cache
def _noetic():
    return get_typestore(Stores.ROS1_NOETIC)


@cache
def _custom():
    """Custom types generated from a seed: nested messages, fixed/bounded/unbounded
    arrays of every primitive, strings and bounded strings, in random orders (so
    every CDR alignment case comes up)."""
    store = get_typestore(Stores.ROS2_HUMBLE)
    rng = random.Random(20240601)
    prims = list(_NUMPY) + ["string"]
    nested = ["builtin_interfaces/Time", "geometry_msgs/Point", "std_msgs/Header"]
    names = []
    for i in range(40):
        lines = []
        for j in range(rng.randint(1, 7)):
            elem = rng.choice(prims + nested) if rng.random() < 0.8 else rng.choice(prims)
            if elem == "string" and rng.random() < 0.3:
                elem = "string<=4"
                suffix = ""
            else:
                suffix = rng.choice(["", "", f"[{rng.randint(1, 3)}]", "[]", f"[<={rng.randint(1, 3)}]"])
            lines.append(f"{elem}{suffix} f{j}")
        if names and rng.random() < 0.6:
            lines.insert(rng.randint(0, len(lines)),
                         f"{rng.choice(names)}{rng.choice(['', '[]', '[2]'])} sub")
        name = f"fuzz_msgs/msg/T{i}"
        store.register(get_types_from_msg("\n".join(lines), name))
        names.append(f"fuzz_msgs/T{i}")
    return store


_STORES = {"humble": _humble, "noetic": _noetic, "custom": _custom}
HUMBLE_TYPES = sorted(_humble().fielddefs)
NOETIC_TYPES = sorted(_noetic().fielddefs)
CUSTOM_TYPES = sorted(t for t in _custom().fielddefs if t.startswith("fuzz_msgs/"))


def _batches(store_key: str, types: list, encodings: list):
    store = _STORES[store_key]()

    @st.composite
    def case(draw):
        msgtype = draw(st.sampled_from(types))
        encoding = draw(st.sampled_from(encodings))
        little = draw(st.booleans())
        msgs = draw(st.lists(_message(store, msgtype), min_size=1, max_size=3))
        return msgtype, encoding, [_serialize(store, m, msgtype, encoding, little) for m in msgs]

    return case()


@PROPERTY
@given(_batches("humble", HUMBLE_TYPES, ["cdr"]))
def test_property_humble_types_cdr_both_endiannesses(case):
    msgtype, encoding, raws = case
    _check_batch(_converter("humble", msgtype, encoding), raws)


@PROPERTY
@given(_batches("noetic", NOETIC_TYPES, ["ros1"]))
def test_property_noetic_types_ros1(case):
    msgtype, encoding, raws = case
    _check_batch(_converter("noetic", msgtype, encoding), raws)


@PROPERTY
@given(_batches("custom", CUSTOM_TYPES, ["cdr", "ros1"]))
def test_property_generated_custom_types(case):
    msgtype, encoding, raws = case
    _check_batch(_converter("custom", msgtype, encoding), raws)


@PROPERTY
@given(_batches("custom", CUSTOM_TYPES + ["sensor_msgs/msg/Imu", "tf2_msgs/msg/TFMessage"], ["cdr", "ros1"]),
       st.data())
def test_property_corrupted_messages_fail_or_convert_like_the_reference(case, data):
    """Truncated, extended or bit-flipped messages: the default path (plan, then
    fallback) gives the reference result or the same kind of error."""
    msgtype, encoding, raws = case
    i = data.draw(st.integers(0, len(raws) - 1))
    raw = bytearray(raws[i])
    how = data.draw(st.sampled_from(["truncate", "extend", "flip"]))
    if how == "truncate":
        del raw[data.draw(st.integers(0, max(0, len(raw) - 1))):]
    elif how == "extend":
        raw += bytes(data.draw(st.integers(1, 9)))
    elif raw:
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] ^= 1 << data.draw(st.integers(0, 7))
    raws = [*raws[:i], bytes(raw), *raws[i + 1:]]
    conv = _converter("custom", msgtype, encoding)
    ts = list(range(len(raws)))
    try:
        ref = conv.convert_reference(ts, raws)
    except ConversionError as exc:
        with pytest.raises(ConversionError) as info:
            conv.convert(ts, raws)
        assert info.value.index == exc.index
        return
    assert_same_batch(conv.convert(ts, raws), ref)


def test_convert_batches_splits_by_rows_and_bytes():
    t = read_bag("ros2_mcap_nav2_turtlebot/nav2_turtlebot.mcap")["/tf"]
    conv = t.converter()
    ref = conv.convert_reference(t.timestamps, t.raws)
    conv.PLAN_CHUNK_ROWS = 700  # instance overrides of the class limits
    batches = conv.convert_batches(t.timestamps, t.raws)
    assert [b.num_rows for b in batches[:-1]] == [700] * (len(batches) - 1)
    assert pa.Table.from_batches(batches).equals(pa.Table.from_batches([ref]))
    conv.PLAN_CHUNK_BYTES = 10_000
    batches = conv.convert_batches(t.timestamps, t.raws)
    start = 0
    for b in batches:
        chunk = t.raws[start:start + b.num_rows]
        assert sum(map(len, chunk)) <= 10_000 or len(chunk) == 1
        assert sum(map(len, t.raws[start:start + b.num_rows + 1])) > 10_000 or b is batches[-1]
        start += b.num_rows
    assert pa.Table.from_batches(batches).equals(pa.Table.from_batches([ref]))
    assert conv.convert(t.timestamps, t.raws).equals(ref)
