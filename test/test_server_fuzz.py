"""Property-based tests (hypothesis) of the server boundary.

Random JSON bodies against every action, random descriptors and tickets against the read
calls, and random record batches, valid or with corrupted IPC bytes, against DoPut. For
every example the server answers (a result or a Flight error naming an ErrorKind other
than ``internal``), keeps running, writes nothing outside its root, and still serves what
it held before. One server serves the whole module; its root is on tmpfs when there is
one, so the fsyncs of the store stay cheap.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pytest
from pyarrow import flight

hypothesis = pytest.importorskip("hypothesis")
import wire_bodies as wire
from conftest import wait_until
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_server import SCHEMA, rows

from mosaico_bridge.protocol import auth as pauth
from mosaico_bridge.protocol.errors import ErrorKind, kind_of
from mosaico_bridge.server import MosaicoServer, Permission

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = int(os.environ.get("MOSAICO_FUZZ_EXAMPLES", "2000"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

REFERENCE = "reference-held-before"
NAMES = ["a", "b", "fz", "fz/t", "fz/x/y", "fz:01ARZ3NDEKTSV4RRFFQ69G5FAV", "/fz", "", " ", "fz/",
         "x" * 129, "../etc", "fz/../x", "fz/%2F", "\u00e9", "\x00"]


class Fuzzed:
    def __init__(self) -> None:
        shm = Path("/dev/shm")
        self.outer = Path(tempfile.mkdtemp(prefix="mosaico-fuzz-", dir=shm if shm.is_dir() else None))
        self.root = self.outer / "root"
        self.server = MosaicoServer.start_background(self.root, port=0)
        key, _ = self.server.api_keys.create(Permission.Manage)
        self.opts = flight.FlightCallOptions(headers=[(pauth.API_KEY_HEADER.encode(), key.encode())], timeout=30)
        self.client = flight.FlightClient(self.server.location)
        store = self.server.store
        store.create_sequence(REFERENCE, {"kept": True})
        session = store.create_session(REFERENCE)
        self.ref_topic = store.create_topic(session.uuid, f"{REFERENCE}/t", "default", "Floating64", {})
        w = store.open_writer(f"{REFERENCE}/t", self.ref_topic.uuid, SCHEMA)
        w.write(rows([1, 2, 3]))
        w.finish()
        store.finalize_session(session.uuid)
        self.fz_session = store.create_session(REFERENCE)
        self.count = 0

    def answered(self, call) -> None:
        """Run ``call``; a refusal must be a Flight error of a known, non-internal kind."""
        self.count += 1
        try:
            call()
        except (flight.FlightUnauthenticatedError, flight.FlightUnauthorizedError):
            pass
        except flight.FlightUnavailableError:
            # the client's own transport gave up sending (e.g. a corrupted batch claiming
            # buffers larger than memory): the server must still answer at once
            list(self.client.do_action(flight.Action("info", b"{}"), self.opts))
        except flight.FlightError as exc:
            kind = kind_of(exc)
            assert kind is not None and kind is not ErrorKind.INTERNAL, f"{type(exc).__name__}: {exc}"
        except pa.ArrowException as exc:  # GetSchema refusals (see MosaicoServer.get_schema)
            assert "Traceback" not in str(exc) and "internal" not in str(exc), exc

    def check_intact(self) -> None:
        assert sorted(p.name for p in self.outer.iterdir()) == ["root"], "wrote outside its root"
        info = self.client.get_flight_info(wire.read_descriptor(f"{REFERENCE}/t"), self.opts)
        table = self.client.do_get(info.endpoints[0].ticket, self.opts).read_all()
        assert table.column("timestamp_ns").to_pylist() == [1, 2, 3]

    def close(self) -> None:
        self.client.close()
        self.server.stop()
        shutil.rmtree(self.outer, ignore_errors=True)


@pytest.fixture(scope="module")
def fz():
    f = Fuzzed()
    try:
        yield f
    finally:
        f.close()


json_leaf = (st.none() | st.booleans() | st.integers(min_value=-(2**80), max_value=2**80)
             | st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(NAMES) | st.text(max_size=12))
json_value = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=3)
                          | st.dictionaries(st.sampled_from(["a", "k", "locator", ""]), inner, max_size=3), max_leaves=4)
FIELDS = ["locator", "user_metadata", "session_uuid", "serialization_format", "ontology_tag", "notification_type",
          "msg", "permission", "description", "expires_at_ns", "fingerprint", "uuid", "name"]
bodies = st.one_of(
    st.dictionaries(st.sampled_from(FIELDS), json_value, max_size=6).map(lambda d: json.dumps(d).encode()),
    json_value.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=64),
)


def test_random_bodies_against_every_action(fz):
    actions = wire.Action.names() + ["no_such_action", ""]

    @FUZZ
    @given(name=st.sampled_from(actions), body=bodies)
    def prop(name, body):
        fz.answered(lambda: list(fz.client.do_action(flight.Action(name, body), fz.opts)))

    prop()
    fz.check_intact()
    assert fz.count >= EXAMPLES


descriptor_bodies = st.one_of(
    st.dictionaries(st.sampled_from(["resource_locator", "timestamp_ns_start", "timestamp_ns_end", "topic_uuid"]),
                    json_value, max_size=4).map(lambda d: json.dumps(d).encode()),
    st.builds(lambda loc, a, b: json.dumps({"resource_locator": loc, "timestamp_ns_start": a, "timestamp_ns_end": b}).encode(),
              st.sampled_from(NAMES + [REFERENCE, f"{REFERENCE}/t"]),
              st.none() | st.integers(min_value=-(2**70), max_value=2**70),
              st.none() | st.integers(min_value=-(2**70), max_value=2**70)),
    st.binary(max_size=48),
)


def test_random_descriptors_and_tickets_against_the_read_calls(fz):
    @FUZZ
    @given(call=st.sampled_from(["info", "schema", "get", "path"]), body=descriptor_bodies)
    def prop(call, body):
        c, o = fz.client, fz.opts
        if call == "info":
            fz.answered(lambda: c.get_flight_info(flight.FlightDescriptor.for_command(body), o))
        elif call == "schema":
            fz.answered(lambda: c.get_schema(flight.FlightDescriptor.for_command(body), o))
        elif call == "get":
            fz.answered(lambda: c.do_get(flight.Ticket(body), o).read_all())
        else:
            fz.answered(lambda: c.get_flight_info(flight.FlightDescriptor.for_path(body.decode("latin-1")), o))

    prop()
    fz.check_intact()


def _ipc(batch: pa.RecordBatch) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as w:
        w.write_batch(batch)
    return sink.getvalue().to_pybytes()


STR_SCHEMA = pa.schema([pa.field("timestamp_ns", pa.int64(), nullable=False), pa.field("s", pa.string()),
                        pa.field("v", pa.list_(pa.float32()))])


@st.composite
def batches(draw):
    n = draw(st.integers(min_value=1, max_value=6))
    ts = draw(st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), min_size=n, max_size=n))
    strings = draw(st.lists(st.none() | st.text(max_size=8), min_size=n, max_size=n))
    lists = draw(st.lists(st.none() | st.lists(st.floats(width=32, allow_nan=False), max_size=3), min_size=n, max_size=n))
    batch = pa.record_batch([pa.array(ts, pa.int64()), pa.array(strings, pa.string()),
                             pa.array(lists, pa.list_(pa.float32()))], schema=STR_SCHEMA)
    raw = bytearray(_ipc(batch))
    flips = draw(st.lists(st.tuples(st.integers(min_value=0, max_value=len(raw) - 1), st.integers(0, 255)), max_size=4))
    for pos, value in flips:
        raw[pos] = value
    return bytes(raw)


_PUT_WORKER = """
import json, struct, sys
import pyarrow as pa, pyarrow.flight as flight
from mosaico_bridge.protocol import descriptors
client = flight.FlightClient(sys.argv[1])
src = sys.stdin.buffer
while True:
    head = src.read(4)
    if len(head) < 4:
        break
    meta = json.loads(src.read(struct.unpack("<I", head)[0]))
    raw = src.read(meta["size"])
    try:
        reader = pa.ipc.open_stream(raw)
        schema, batch = reader.schema, reader.read_next_batch()
    except (pa.ArrowException, StopIteration, OSError):
        print(json.dumps({"sent": False}), flush=True)
        continue
    answer = {"sent": True, "rows": batch.num_rows}
    try:
        writer, _ = client.do_put(descriptors.doput_descriptor(meta["locator"], meta["uuid"]), schema)
        writer.write_batch(batch)
        writer.done_writing()
        writer.close()
        answer["error"] = None
    except flight.FlightError as exc:
        extra = getattr(exc, "extra_info", None) or b""
        answer.update(error=type(exc).__name__, kind=extra.decode("ascii", "replace"), text=str(exc)[:300])
    except pa.ArrowException as exc:
        answer.update(error="client", text=str(exc)[:300])
    print(json.dumps(answer), flush=True)
"""


class PutWorker:
    """A client process that decodes and DoPuts IPC bytes: a corrupted batch may crash
    pyarrow's client-side writer (abort), which must not take pytest down with it."""

    def __init__(self, location: str) -> None:
        self.location = location
        self.crashes = 0
        self._start()

    def _start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", _PUT_WORKER, self.location], cwd=REPO,
                                     env={**os.environ, "PYTHONPATH": str(REPO)}, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)

    def put(self, raw: bytes, locator: str, topic_uuid: str) -> dict | None:
        """The worker's answer, or None if the client process died on this batch."""
        meta = json.dumps({"size": len(raw), "locator": locator, "uuid": topic_uuid}).encode()
        try:
            self.proc.stdin.write(struct.pack("<I", len(meta)) + meta + raw)
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except BrokenPipeError:
            line = b""
        if line:
            return json.loads(line)
        self.crashes += 1
        self.proc.wait(timeout=30)
        self._start()
        return None

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def test_random_record_batches_against_doput(fz):
    store = fz.server.store
    made = {"n": 0, "seq": None, "session": None}
    held: dict[str, int] = {}
    worker = PutWorker(fz.server.location)

    def fresh_topic() -> tuple[str, str]:
        if made["n"] % 200 == 0:  # a new sequence now and then keeps sequence.json small
            made["seq"] = f"fuzz-{made['n']}"
            store.create_sequence(made["seq"], {})
            made["session"] = store.create_session(made["seq"]).uuid
        made["n"] += 1
        locator = f"{made['seq']}/t{made['n']}"
        return locator, store.create_topic(made["session"], locator, "default", "Generic", {}).uuid

    @FUZZ
    @given(raw=batches())
    def prop(raw):
        locator, topic_uuid = fresh_topic()
        answer = worker.put(raw, locator, topic_uuid)
        fz.count += 1
        if answer is not None and answer["sent"] and answer.get("error") == "FlightServerError":
            assert answer["kind"] and answer["kind"] != "internal", answer
        # whatever happened to the client, the server answers and holds all or nothing
        list(fz.client.do_action(flight.Action("info", b"{}"), fz.opts))
        def finished_topic():
            t = store.get_topic(locator)
            return None if t.writing else t

        info = wait_until(finished_topic, timeout=30, what="the DoPut to end")
        rows_sent = answer["rows"] if answer and answer["sent"] else None
        assert info.row_count == 0 or info.row_count == rows_sent, (info.row_count, answer)
        held[locator] = info.row_count

    try:
        prop()
    finally:
        worker.close()
    fz.check_intact()
    assert sum(1 for n in held.values() if n) > 0
    # everything the topics hold is sound and reads back
    for locator, n in list(held.items())[:: max(1, len(held) // 200)]:
        if n:
            _, out = store.read(locator)
            got = 0
            for b in out:
                b.validate(full=True)
                got += b.num_rows
            assert got == n, locator
