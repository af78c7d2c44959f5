"""Security: TLS, API keys and permissions, end to end.

Real processes and the real SDK ``mosaicolabs`` 0.7.0, no mocks: a throw-away CA and
server certificate (``tls_util``, built with ``cryptography``), an embedded server with
``require_api_key=True`` shared by the module for the permission matrix, and the
``mosaico_server`` / ``bag_import`` console scripts as subprocesses. Every wait is a
bounded poll.
"""

from __future__ import annotations

import re
import secrets
import signal
import string
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pytest
from pyarrow import flight

pytest.importorskip("cryptography")
mosaicolabs = pytest.importorskip("mosaicolabs")

import wire_bodies as wire
from conftest import REPO, free_port, run_cli, wait_until
from tls_util import make_ca, make_server_cert

from mosaico_bridge.client import (
    APIKeyPermissionEnum,
    APIKeyStatus,
    AuthenticationError,
    MosaicoClient,
    NotFoundError,
)
from mosaico_bridge.server import (
    ACTION_PERMISSIONS,
    CALL_PERMISSIONS,
    MosaicoServer,
    Permission,
)
from mosaico_bridge.server.auth import KEYS_FILE, ApiKeyStore, AuthenticationFailed

KEY_RE = re.compile(r"^msco_[a-z0-9]{32}_[0-9a-f]{8}$")
LEVELS = ["read", "write", "delete", "manage"]


def _random_key() -> str:
    """A well-formed key that no server issued."""
    body = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(32))
    return f"msco_{body}_{secrets.token_hex(4)}"


def _fp(key: str) -> str:
    return key.rsplit("_", 1)[1]


# --------------------------------------------------------------------------------------
# a raw Flight client that sends any header value (independent of our client code)
# --------------------------------------------------------------------------------------


class _Header(flight.ClientMiddleware):
    def __init__(self, value: bytes) -> None:
        self._value = value

    def sending_headers(self):
        return {"mosaico-api-key-token": [self._value]}


class _HeaderFactory(flight.ClientMiddlewareFactory):
    def __init__(self, value: str) -> None:
        self._value = value.encode()

    def start_call(self, info):
        return _Header(self._value)


def raw_client(location: str, ca_pem: bytes, api_key: str | None) -> flight.FlightClient:
    middleware = [_HeaderFactory(api_key)] if api_key is not None else []
    return flight.FlightClient(location, tls_root_certs=ca_pem, middleware=middleware)


def act(client: flight.FlightClient, name: str, payload: dict):
    bodies = [r.body.to_pybytes() for r in client.do_action(wire.action(name, payload))]
    return wire.parse_response(name, bodies)


SCHEMA = pa.schema([pa.field("timestamp_ns", pa.int64(), nullable=False), pa.field("v", pa.float64())])


def _rows(n: int = 5) -> pa.RecordBatch:
    return pa.record_batch([pa.array(range(1, n + 1), pa.int64()), pa.array([0.5] * n)], schema=SCHEMA)


def _put(client: flight.FlightClient, locator: str, topic_uuid: str) -> None:
    writer, _ = client.do_put(wire.doput_descriptor(locator, topic_uuid), SCHEMA)
    writer.write_batch(_rows())
    writer.done_writing()
    writer.close()


def _refusal(exc: BaseException) -> tuple[str, str]:
    """(``unauthenticated`` | ``permission_denied`` | ``other``, the server's message)."""
    text = str(exc)
    message = re.sub(r"^Flight returned [a-z ]+ error, with message: ", "", text).split(". Detail:")[0]
    if isinstance(exc, flight.FlightUnauthenticatedError) or ". Detail: Unauthenticated" in text:
        return "unauthenticated", message
    if isinstance(exc, flight.FlightUnauthorizedError) or ". Detail: Unauthorized" in text:
        return "permission_denied", message
    return "other", message


# --------------------------------------------------------------------------------------
# module fixtures: PKI and one secured server
# --------------------------------------------------------------------------------------


@dataclass(repr=False)
class Pki:
    ca_pem: bytes
    ca_path: Path
    other_ca_path: Path
    cert_path: Path
    key_path: Path
    pair: tuple[bytes, bytes]


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca, other = make_ca("mosaico-test-ca"), make_ca("some-other-ca")
    cert_pem, key_pem = make_server_cert(ca)
    (d / "server.pem").write_bytes(cert_pem)
    (d / "server.key").write_bytes(key_pem)
    return Pki(ca.cert_pem, ca.write(d / "ca.pem"), other.write(d / "other-ca.pem"),
               d / "server.pem", d / "server.key", (cert_pem, key_pem))


@dataclass
class Secured:
    # repr=False: pytest prints fixtures of failing tests; keys stay out of test reports too
    server: MosaicoServer
    keys: dict[str, str] = field(repr=False)  # level -> key
    bad: dict[str, str | None] = field(repr=False)  # missing / malformed / unknown / revoked / expired
    clients: dict[str, flight.FlightClient] = field(repr=False)
    pki: Pki = field(repr=False)

    def connect(self, key: str | None, timeout: float = 5, **kw) -> MosaicoClient:
        return MosaicoClient.connect("127.0.0.1", self.server.port, timeout=timeout,
                                     tls_cert_path=str(self.pki.ca_path), api_key=key, **kw)


SHARED_SEQ, SHARED_TOPIC = "shared", "shared/data"


@pytest.fixture(scope="module")
def secured(tmp_path_factory, pki):
    root = tmp_path_factory.mktemp("secured") / "store"
    server = MosaicoServer.start_background(root, port=0, tls_certificates=[pki.pair], require_api_key=True)
    try:
        manage, _ = server.api_keys.create(Permission.Manage, "matrix admin")  # what --bootstrap-key does
        keys = {"manage": manage}
        with MosaicoClient.connect("127.0.0.1", server.port, timeout=5, tls_cert_path=str(pki.ca_path),
                                   api_key=manage) as admin:
            for level in ("read", "write", "delete"):
                keys[level] = admin.api_key_create(APIKeyPermissionEnum(level), f"matrix {level}")
            revoked = admin.api_key_create(APIKeyPermissionEnum.Manage, "revoked at once")
            admin.api_key_revoke(_fp(revoked))
            expired = admin.api_key_create(APIKeyPermissionEnum.Manage, "born expired", expires_at_ns=time.time_ns() - 1)
        bad = {"missing": None, "malformed": "msco_not-a-key", "unknown": _random_key(),
               "revoked": revoked, "expired": expired}
        clients = {name: raw_client(server.location, pki.ca_pem, key) for name, key in {**keys, **bad}.items()}
        admin_raw = clients["manage"]
        act(admin_raw, wire.Action.SEQUENCE_CREATE, wire.sequence_create_request(SHARED_SEQ, {}))
        session = act(admin_raw, wire.Action.SESSION_CREATE, wire.session_create_request(SHARED_SEQ))
        topic = act(admin_raw, wire.Action.TOPIC_CREATE,
                    wire.topic_create_request(session["uuid"], SHARED_SEQ, "/data", "default", "Floating64", {}))
        _put(admin_raw, SHARED_TOPIC, topic["uuid"])
        act(admin_raw, wire.Action.SESSION_FINALIZE, wire.session_finalize_request(session["uuid"]))
        yield Secured(server, keys, bad, clients, pki)
        for c in clients.values():
            c.close()
    finally:
        server.stop(timeout=10)


# --------------------------------------------------------------------------------------
# the operations of the matrix: (required level as the issue states it, op)
# each op sets up what it needs with the Manage client, then makes exactly one call
# --------------------------------------------------------------------------------------


def _seq(admin, tag):
    act(admin, wire.Action.SEQUENCE_CREATE, wire.sequence_create_request(tag, {}))
    return tag


def _session(admin, tag):
    _seq(admin, tag)
    return act(admin, wire.Action.SESSION_CREATE, wire.session_create_request(tag))


def _topic(admin, tag):
    session = _session(admin, tag)
    created = act(admin, wire.Action.TOPIC_CREATE,
                  wire.topic_create_request(session["uuid"], tag, "/t", "default", "Floating64", {}))
    return wire.topic_locator(tag, "/t"), created["uuid"]


def _fresh_fingerprint(admin, tag):
    key = act(admin, wire.Action.API_KEY_CREATE, wire.api_key_create_request("read", tag, None))["api_key"]
    return _fp(key)


A = wire.Action
OPERATIONS: dict[str, tuple[str, Callable]] = {
    A.INFO: ("read", lambda c, a, t: act(c, A.INFO, {})),
    A.SEQUENCE_NOTIFICATION_LIST: ("read", lambda c, a, t: act(c, A.SEQUENCE_NOTIFICATION_LIST,
                                                               wire.locator_request(_seq(a, t)))),
    A.TOPIC_NOTIFICATION_LIST: ("read", lambda c, a, t: act(c, A.TOPIC_NOTIFICATION_LIST,
                                                            wire.locator_request(_topic(a, t)[0]))),
    A.SEQUENCE_CREATE: ("write", lambda c, a, t: act(c, A.SEQUENCE_CREATE, wire.sequence_create_request(t, {}))),
    A.SESSION_CREATE: ("write", lambda c, a, t: act(c, A.SESSION_CREATE, wire.session_create_request(_seq(a, t)))),
    A.TOPIC_CREATE: ("write", lambda c, a, t: act(c, A.TOPIC_CREATE, wire.topic_create_request(
        _session(a, t)["uuid"], t, "/t", "default", "Floating64", {}))),
    A.SESSION_FINALIZE: ("write", lambda c, a, t: act(c, A.SESSION_FINALIZE,
                                                      wire.session_finalize_request(_session(a, t)["uuid"]))),
    A.SEQUENCE_NOTIFICATION_CREATE: ("write", lambda c, a, t: act(c, A.SEQUENCE_NOTIFICATION_CREATE,
                                                                  wire.notification_create_request(_seq(a, t), "boom"))),
    A.TOPIC_NOTIFICATION_CREATE: ("write", lambda c, a, t: act(c, A.TOPIC_NOTIFICATION_CREATE,
                                                               wire.notification_create_request(_topic(a, t)[0], "boom"))),
    A.SEQUENCE_DELETE: ("delete", lambda c, a, t: act(c, A.SEQUENCE_DELETE, wire.sequence_delete_request(_seq(a, t)))),
    A.SESSION_DELETE: ("delete", lambda c, a, t: act(c, A.SESSION_DELETE,
                                                     wire.session_delete_request(_session(a, t)["locator"]))),
    A.TOPIC_DELETE: ("delete", lambda c, a, t: act(c, A.TOPIC_DELETE, {"locator": _topic(a, t)[0]})),
    A.SEQUENCE_NOTIFICATION_PURGE: ("delete", lambda c, a, t: act(c, A.SEQUENCE_NOTIFICATION_PURGE,
                                                                  wire.locator_request(_seq(a, t)))),
    A.TOPIC_NOTIFICATION_PURGE: ("delete", lambda c, a, t: act(c, A.TOPIC_NOTIFICATION_PURGE,
                                                               wire.locator_request(_topic(a, t)[0]))),
    A.API_KEY_CREATE: ("manage", lambda c, a, t: act(c, A.API_KEY_CREATE, wire.api_key_create_request("read", t, None))),
    A.API_KEY_STATUS: ("manage", lambda c, a, t: act(c, A.API_KEY_STATUS,
                                                     wire.api_key_fingerprint_request(_fresh_fingerprint(a, t)))),
    A.API_KEY_REVOKE: ("manage", lambda c, a, t: act(c, A.API_KEY_REVOKE,
                                                     wire.api_key_fingerprint_request(_fresh_fingerprint(a, t)))),
    "DoPut": ("write", lambda c, a, t: _put(c, *_topic(a, t))),
    "GetFlightInfo": ("read", lambda c, a, t: c.get_flight_info(wire.read_descriptor(SHARED_SEQ))),
    "ListFlights": ("read", lambda c, a, t: list(c.list_flights())),
    "GetSchema": ("read", lambda c, a, t: c.get_schema(wire.read_descriptor(SHARED_TOPIC))),
    "DoGet": ("read", lambda c, a, t: c.do_get(
        a.get_flight_info(wire.read_descriptor(SHARED_TOPIC)).endpoints[0].ticket).read_all()),
    "ListActions": ("read", lambda c, a, t: list(c.list_actions())),
}


def test_server_tables_match_the_issue():
    """Every action of the dialect has a level, and it is the one the issue gives."""
    actions = set(wire.Action.names())
    assert set(ACTION_PERMISSIONS) == actions
    for name, (level, _) in OPERATIONS.items():
        table = ACTION_PERMISSIONS if name in actions else CALL_PERMISSIONS
        assert table[name] == Permission.from_wire(level), name


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_permission_matrix(secured, level, operation):
    required, op = OPERATIONS[operation]
    tag = f"m_{level}_{operation}"
    client, admin = secured.clients[level], secured.clients["manage"]
    if LEVELS.index(level) >= LEVELS.index(required):
        op(client, admin, tag)  # allowed: the call succeeds
        return
    with pytest.raises(Exception) as info:
        op(client, admin, tag)
    kind, message = _refusal(info.value)
    assert kind == "permission_denied", info.value
    fp = _fp(secured.keys[level])
    assert message == f"API key {fp} ({level}) lacks {required} permission for {operation}"


@pytest.mark.parametrize("bad", ["missing", "malformed", "unknown", "revoked", "expired"])
@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_invalid_keys_are_refused_everywhere(secured, bad, operation):
    _, op = OPERATIONS[operation]
    with pytest.raises(Exception) as info:
        op(secured.clients[bad], secured.clients["manage"], f"x_{bad}_{operation}")
    kind, message = _refusal(info.value)
    assert kind == "unauthenticated", info.value
    key = secured.bad[bad]
    expected = f"API key {bad}" if bad in ("missing", "malformed") else f"API key {_fp(key)} {bad}"
    assert message == expected
    assert key is None or key not in str(info.value)


def test_same_fingerprint_other_secret_is_unknown(secured):
    fp = _fp(secured.keys["manage"])
    forged = _random_key()[:-8] + fp
    with (
        raw_client(secured.server.location, secured.pki.ca_pem, forged) as c,
        pytest.raises(flight.FlightUnauthenticatedError, match=f"API key {fp} unknown"),
    ):
        act(c, A.INFO, {})


# --------------------------------------------------------------------------------------
# our client: TLS trust, key lifecycle, errors
# --------------------------------------------------------------------------------------


def test_tls_trusted_ca_connects_others_are_refused(secured, pki):
    with secured.connect(secured.keys["read"]) as c:
        assert c.version() == "0.7.0"
        assert repr(c).startswith(f"MosaicoClient('grpc+tls://127.0.0.1:{secured.server.port}'")
    where = f"127.0.0.1:{secured.server.port}"
    started = time.monotonic()
    with pytest.raises(ConnectionError) as other:
        MosaicoClient.connect("127.0.0.1", secured.server.port, timeout=5, tls_cert_path=str(pki.other_ca_path),
                              api_key=secured.keys["read"])
    assert where in str(other.value) and "not trusted" in str(other.value) and str(pki.other_ca_path) in str(other.value)
    with pytest.raises(ConnectionError) as plain:
        MosaicoClient.connect("127.0.0.1", secured.server.port, timeout=5, api_key=secured.keys["read"])
    assert where in str(plain.value) and "TLS" in str(plain.value)
    assert time.monotonic() - started < 5, "TLS mismatches must not wait for the whole timeout"


def test_tls_client_against_plaintext_server(tmp_path, pki):
    with (
        MosaicoServer.start_background(tmp_path / "plain", port=0) as srv,
        pytest.raises(ConnectionError, match="does not speak TLS"),
    ):
        MosaicoClient.connect("127.0.0.1", srv.port, timeout=5, tls_cert_path=str(pki.ca_path))


def test_tls_cert_path_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        MosaicoClient.connect("127.0.0.1", 1, tls_cert_path=str(tmp_path / "missing.pem"))
    with pytest.raises(ValueError):
        MosaicoClient.connect("127.0.0.1", 1, tls_cert_path=str(tmp_path))  # a directory
    junk = tmp_path / "junk.pem"
    junk.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    with pytest.raises(ValueError):
        MosaicoClient.connect("127.0.0.1", 1, tls_cert_path=str(junk))
    with pytest.raises(ValueError):
        MosaicoClient.connect("127.0.0.1", 1, tls_cert_path="")


def test_connect_refuses_bad_keys_at_once(secured):
    for bad, key in secured.bad.items():
        started = time.monotonic()
        with pytest.raises(AuthenticationError) as info:
            secured.connect(key, timeout=5)
        assert time.monotonic() - started < 2, bad
        assert bad in str(info.value)
        if key:
            assert key not in str(info.value) and key not in repr(info.value)


def test_key_lifecycle_status_revoke_expire(secured):
    with secured.connect(secured.keys["manage"]) as admin:
        me = admin.api_key_status()
        assert isinstance(me, APIKeyStatus) and me.permission is APIKeyPermissionEnum.Manage
        assert me.fingerprint == admin.api_key_fingerprint == _fp(secured.keys["manage"])

        key = admin.api_key_create(APIKeyPermissionEnum.Write, "short-lived", expires_at_ns=time.time_ns() + 400_000_000)
        assert KEY_RE.match(key)
        st = admin.api_key_status(_fp(key))
        assert (st.permission, st.description, st.revoked) == (APIKeyPermissionEnum.Write, "short-lived", False)
        assert st.expires_at_ns is not None and st.created_at_ns < st.expires_at_ns
        assert admin.api_key_status(key).fingerprint == _fp(key)  # a whole key is reduced to its fingerprint

        with secured.connect(key) as c:  # works until it expires
            def refused() -> bool:
                try:
                    c.list_sequences()
                    return False
                except AuthenticationError as exc:
                    assert f"API key {_fp(key)} expired" in str(exc)
                    return True
            wait_until(refused, timeout=5, what="the key to expire")

        other = admin.api_key_create(APIKeyPermissionEnum.Read, "to revoke")
        with secured.connect(other) as c:
            assert SHARED_SEQ in c.list_sequences()
            th = c.topic_handler(SHARED_SEQ, "/data")
            admin.api_key_revoke(_fp(other))
            admin.api_key_revoke(_fp(other))  # twice is fine
            with pytest.raises(AuthenticationError, match=f"API key {_fp(other)} revoked"):
                c.list_sequences()
            with pytest.raises(AuthenticationError, match=f"API key {_fp(other)} revoked"):
                _ = th.schema  # GetSchema (pyarrow reports this refusal as a plain OSError)
            with pytest.raises(AuthenticationError, match=f"API key {_fp(other)} revoked"):
                th.read()  # DoGet
        assert admin.api_key_status(_fp(other)).revoked is True
        with pytest.raises(NotFoundError):
            admin.api_key_status("00000000" if _fp(other) != "00000000" else "00000001")
        with pytest.raises(ValueError):
            admin.api_key_revoke("not-a-fingerprint")


def test_our_client_writes_with_write_key_on_every_data_connection(secured):
    with secured.connect(secured.keys["write"], data_connections=3) as c:
        with c.sequence_create("ours_write", {"by": "test"}) as sw:
            for i in range(3):  # three topics: one per data connection (round-robin)
                sw.topic_create(f"/t{i}", {}, schema=SCHEMA, ontology_tag="Floating64").push_batch(_rows(10 + i))
        sh = c.sequence_handler("ours_write")
        assert sh is not None
    with secured.connect(secured.keys["read"]) as c:  # read back with a Read key
        for i in range(3):
            th = c.topic_handler("ours_write", f"/t{i}")
            assert th is not None and th.locked
            assert th.schema.equals(SCHEMA)  # GetSchema
            assert th.read().num_rows == 10 + i  # DoGet
    with secured.connect(secured.keys["read"]) as c:
        with (
            pytest.raises(AuthenticationError, match="lacks write permission for sequence_create"),
            c.sequence_create("ours_refused", {}),
        ):
            pass
        assert "ours_refused" not in c.list_sequences()


def test_from_env(secured, monkeypatch):
    monkeypatch.setenv("MOSAICO_API_KEY", secured.keys["read"])
    monkeypatch.setenv("MOSAICO_TLS_CERT_FILE", str(secured.pki.ca_path))
    with MosaicoClient.from_env("127.0.0.1", secured.server.port, timeout=5) as c:
        assert c.api_key_fingerprint == _fp(secured.keys["read"])
        assert SHARED_SEQ in c.list_sequences()
    with mosaicolabs.MosaicoClient.from_env("127.0.0.1", secured.server.port, timeout=5) as c:
        assert SHARED_SEQ in c.list_sequences()


# --------------------------------------------------------------------------------------
# the real SDK
# --------------------------------------------------------------------------------------


def test_sdk_write_key_writes_read_key_only_reads(secured):
    from mosaicolabs import Message, String

    def sdk(level: str):
        return mosaicolabs.MosaicoClient.connect("127.0.0.1", secured.server.port, timeout=5,
                                                 tls_cert_path=str(secured.pki.ca_path), api_key=secured.keys[level])

    with sdk("write") as c:
        with c.sequence_create("sdk_run", {"site": "lab"}) as sw:
            log = sw.topic_create("/log", {}, String)
            for i in range(50):
                log.push(Message(timestamp_ns=1_000 + i, data=String(data=f"line {i}")))
        assert "sdk_run" in c.list_sequences()
    with sdk("read") as c:
        with (
            pytest.raises(flight.FlightUnauthorizedError, match="lacks write permission for sequence_create"),
            c.sequence_create("sdk_refused", {}) as sw,
        ):
            sw.topic_create("/log", {}, String)
        with pytest.raises(flight.FlightUnauthorizedError, match="lacks delete permission for sequence_delete"):
            c.sequence_delete("sdk_run")
        names = c.list_sequences()
        assert "sdk_run" in names and "sdk_refused" not in names
        sh = c.sequence_handler("sdk_run")
        assert sh is not None and sh.topics == ["/log"] and sh.user_metadata == {"site": "lab"}
        th = c.topic_handler("sdk_run", "/log")
        assert th is not None and th.ontology_tag == "String"
        got = [m.get_data(String).data for m in th.get_data_streamer()]
        assert got == [f"line {i}" for i in range(50)]
    with pytest.raises(ConnectionError):  # the SDK retries until its timeout, then gives up
        mosaicolabs.MosaicoClient.connect("127.0.0.1", secured.server.port, timeout=1,
                                          tls_cert_path=str(secured.pki.ca_path), api_key=secured.bad["revoked"])


# --------------------------------------------------------------------------------------
# passthrough mode
# --------------------------------------------------------------------------------------


def test_passthrough_allows_data_but_not_key_management(tmp_path, caplog):
    with MosaicoServer.start_background(tmp_path / "open", port=0) as srv:
        manage, _ = srv.api_keys.create(Permission.Manage, "admin")
        with MosaicoClient.connect("127.0.0.1", srv.port, timeout=5) as anyone:
            with anyone.sequence_create("open_run", {}):
                pass
            assert anyone.list_sequences() == ["open_run"]
            with pytest.raises(AuthenticationError, match="API key missing"):
                anyone.api_key_create(APIKeyPermissionEnum.Read, "nope")
        with MosaicoClient.connect("127.0.0.1", srv.port, timeout=5, api_key=_random_key()) as stale:
            assert stale.list_sequences() == ["open_run"]  # the header is ignored for data
        with MosaicoClient.connect("127.0.0.1", srv.port, timeout=5, api_key=manage) as admin:
            read = admin.api_key_create(APIKeyPermissionEnum.Read, "reader")
        with (
            MosaicoClient.connect("127.0.0.1", srv.port, timeout=5, api_key=read) as reader,
            pytest.raises(AuthenticationError, match=r"\(read\) lacks manage permission for api_key_status"),
        ):
            reader.api_key_status()


# --------------------------------------------------------------------------------------
# the key never leaks: storage, logs, reprs, messages; console scripts
# --------------------------------------------------------------------------------------


def _secrets_of(key: str) -> list[bytes]:
    """The key and its secret part: neither may appear anywhere."""
    return [key.encode(), key.split("_")[1].encode()]


def _assert_absent(keys: list[str], blobs: dict[str, bytes]) -> None:
    for key in keys:
        for needle in _secrets_of(key):
            for where, blob in blobs.items():
                assert needle not in blob, f"API key {_fp(key)} found in {where}"


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_keys_file_holds_salted_hashes_only(secured):
    path = secured.server.root / KEYS_FILE
    assert (path.stat().st_mode & 0o777) == 0o600
    import json

    records = json.loads(path.read_text())["keys"]
    assert {r["fingerprint"] for r in records} >= {_fp(k) for k in secured.keys.values()}
    salts = [r["hash"]["salt"] for r in records]
    assert len(set(salts)) == len(salts) and all(r["hash"]["kdf"] == "scrypt" for r in records)
    _assert_absent(list(secured.keys.values()) + [secured.bad["revoked"], secured.bad["expired"]],
                   _tree(secured.server.root))


def test_key_never_in_logs_reprs_or_messages(tmp_path, pki, caplog):
    caplog.set_level("DEBUG")
    with MosaicoServer.start_background(tmp_path / "store", port=0, tls_certificates=[pki.pair],
                                        require_api_key=True) as srv:
        manage, _ = srv.api_keys.create(Permission.Manage, "admin")
        seen: list[str] = []
        with MosaicoClient.connect("127.0.0.1", srv.port, timeout=5, tls_cert_path=str(pki.ca_path),
                                   api_key=manage) as admin:
            seen.append(repr(admin))
            seen.append(repr(admin._security))
            read = admin.api_key_create(APIKeyPermissionEnum.Read, "reader")
            seen.append(repr(admin.api_key_status(read)))
            with MosaicoClient.connect("127.0.0.1", srv.port, timeout=5, tls_cert_path=str(pki.ca_path),
                                       api_key=read) as reader:
                seen.append(repr(reader))
                for call in (lambda: reader.sequence_create("nope", {}).__enter__(),
                             lambda: reader.api_key_revoke(_fp(manage))):
                    with pytest.raises(AuthenticationError) as info:
                        call()
                    seen += [str(info.value), repr(info.value)]
            with pytest.raises(ValueError) as info:  # a malformed key given as fingerprint
                admin.api_key_revoke("msco_" + read.split("_")[1])
            seen.append(str(info.value))
            admin.api_key_revoke(read)  # a whole key: reduced to its fingerprint
            with pytest.raises(AuthenticationError) as info:
                MosaicoClient.connect("127.0.0.1", srv.port, timeout=5, tls_cert_path=str(pki.ca_path), api_key=read)
            seen += [str(info.value), repr(info.value)]
        assert _fp(read) in caplog.text  # the fingerprint may appear
        _assert_absent([manage, read], {"caplog": caplog.text.encode(), "reprs and messages": "\n".join(seen).encode(),
                                        **_tree(srv.root)})


def test_console_scripts_bootstrap_serve_import_and_keep_keys_secret(tmp_path, pki):
    root = tmp_path / "store"
    # --bootstrap-key: exactly one line on stdout, the key; exit 0
    boot = run_cli("mosaico_bridge.cli.server", "--root", str(root), "--bootstrap-key", timeout=60)
    assert boot.returncode == 0, boot.stderr
    lines = boot.stdout.splitlines()
    assert len(lines) == 1 and KEY_RE.match(lines[0]), boot.stdout
    manage = lines[0]
    assert _fp(manage) in boot.stderr and manage not in boot.stderr

    port = free_port()
    out, err = tmp_path / "server.out", tmp_path / "server.err"
    with open(out, "w") as so, open(err, "w") as se:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mosaico_bridge.cli.server", "--root", str(root), "--port", str(port),
             "--require-api-key", "--tls-cert", str(pki.cert_path), "--tls-key", str(pki.key_path),
             "--log-level", "DEBUG"],
            cwd=REPO, stdout=so, stderr=se, stdin=subprocess.DEVNULL,
        )
    logs: dict[str, bytes] = {}
    try:
        with MosaicoClient.connect("127.0.0.1", port, timeout=20, tls_cert_path=str(pki.ca_path), api_key=manage) as c:
            assert c.api_key_status().permission is APIKeyPermissionEnum.Manage  # the bootstrap key is Manage
            write = c.api_key_create(APIKeyPermissionEnum.Write, "importer")
            read = c.api_key_create(APIKeyPermissionEnum.Read, "viewer")
        common = ["--host", "127.0.0.1", "--port", str(port), "--tls-cert", str(pki.ca_path), "--no-progress"]

        ok = run_cli("mosaico_bridge.cli.bag_import", "--sequence", "cli_run", "--api-key", write, "-vv", *common,
                     timeout=120)
        assert ok.returncode == 0, ok.stderr

        wrong = _random_key()
        for key, words in ((wrong, ["refused", f"API key {_fp(wrong)} unknown"]),
                           (read, ["refused", f"API key {_fp(read)} (read) lacks write permission"])):
            bad = run_cli("mosaico_bridge.cli.bag_import", "--sequence", "cli_bad", "--api-key", key, *common,
                          timeout=120)
            assert bad.returncode != 0
            errs = [ln for ln in bad.stderr.splitlines() if ln.strip()]
            assert len(errs) == 1 and errs[0].startswith("bag_import: error: authentication failed"), bad.stderr
            for w in words:
                assert w in errs[0], errs[0]
            logs[f"bag_import {_fp(key)} stdout"] = bad.stdout.encode()
            logs[f"bag_import {_fp(key)} stderr"] = bad.stderr.encode()
            _assert_absent([key], {"bag_import stderr": bad.stderr.encode(), "stdout": bad.stdout.encode()})
        logs["bag_import ok stdout"] = ok.stdout.encode()
        logs["bag_import ok stderr"] = ok.stderr.encode()
        with MosaicoClient.connect("127.0.0.1", port, timeout=10, tls_cert_path=str(pki.ca_path), api_key=read) as c:
            assert c.list_sequences() == ["cli_run"]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    assert proc.returncode == 0
    logs["server stdout"], logs["server stderr"] = out.read_bytes(), err.read_bytes()
    assert f"grpc+tls://127.0.0.1:{port}".encode() in logs["server stderr"]
    assert _fp(read).encode() in logs["server stderr"]  # the refusal is logged by fingerprint
    _assert_absent([manage, write, read, wrong], {**logs, **_tree(root)})


def test_keys_file_changes_are_seen_by_other_processes(tmp_path):
    """Two key stores on one root stand for two processes (a running server and
    ``mosaico_server --bootstrap-key``): each sees the other's changes at its next call."""
    server_side, other = ApiKeyStore(tmp_path), ApiKeyStore(tmp_path)
    with pytest.raises(AuthenticationFailed, match="unknown"):
        server_side.authenticate(_random_key())
    key, record = other.create(Permission.Write, "made elsewhere")
    assert server_side.authorize(key, Permission.Write, "DoPut").fingerprint == record.fingerprint
    other.revoke(record.fingerprint)
    with pytest.raises(AuthenticationFailed, match=f"API key {record.fingerprint} revoked"):
        server_side.authenticate(key)
    assert [r.fingerprint for r in ApiKeyStore(tmp_path).records()] == [record.fingerprint]


def test_server_cli_refuses_unusable_tls_files(tmp_path, pki):
    _, stray_key = make_server_cert(make_ca("stray"))
    (tmp_path / "stray.key").write_bytes(stray_key)
    for extra, flag in (([str(pki.cert_path), "--tls-key", str(tmp_path / "stray.key")], "--tls-cert"),
                        ([str(tmp_path / "missing.pem"), "--tls-key", str(pki.key_path)], "--tls-cert")):
        proc = run_cli("mosaico_bridge.cli.server", "--root", str(tmp_path / "s"), "--port", "0", "--tls-cert", *extra,
                       timeout=60)
        errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("mosaico_server: error:")]
        assert proc.returncode == 2 and len(errors) == 1, proc.stderr
        assert errors[0].startswith(f"mosaico_server: error: {flag}"), errors[0]
    alone = run_cli("mosaico_bridge.cli.server", "--root", str(tmp_path / "s"), "--tls-cert", str(pki.cert_path),
                    timeout=60)
    assert alone.returncode == 2 and "--tls-cert and --tls-key go together" in alone.stderr
