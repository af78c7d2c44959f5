"""Embedded Mosaico-compatible Arrow Flight server.

:class:`MosaicoServer` is a plain :class:`pyarrow.flight.FlightServerBase` that speaks the
JSON dialect of ``mosaicod`` 0.7, the one the SDK ``mosaicolabs`` 0.7.0 uses, and keeps
its data in a :class:`~mosaico_bridge.server.store.MosaicoStore` on local disk. Every
wire string, body, descriptor, ticket and app_metadata goes through
:mod:`mosaico_bridge.protocol` (``docs/protocol.md``; this server implements the subset a
0.7.0 client needs plus deletes, notifications and time-range reads).

Errors reach the client as :class:`pyarrow.flight.FlightServerError` with a one-line
message and the :class:`~mosaico_bridge.protocol.ErrorKind` word in ``extra_info``; no
Python traceback is sent.

Access control (:mod:`mosaico_bridge.server.auth`): a server middleware reads the
header ``mosaico-api-key-token`` of every call, and every Flight call and every
action passes through :meth:`MosaicoServer._authorize` with the permission that
:data:`ACTION_PERMISSIONS` / :data:`CALL_PERMISSIONS` require. Each level includes the
ones below it (read < write < delete < manage).

* ``require_api_key=True``: every call needs a valid key of the required level. A
  missing, malformed, unknown, revoked or expired key is refused with gRPC
  UNAUTHENTICATED (``API key missing``, ``API key malformed``, ``API key f9010b9e
  unknown`` / ``revoked`` / ``expired``); a valid key below the level with
  PERMISSION_DENIED (``API key f9010b9e (read) lacks write permission for
  sequence_create``). Messages and logs name a key by its fingerprint only.
* ``require_api_key=False`` (passthrough, the default): the header is ignored and every
  call is allowed, except the ``api_key_*`` actions, which still need a valid Manage key
  (key management is never open; the first Manage key comes from
  ``mosaico_server --bootstrap-key``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from pyarrow import flight

from mosaico_bridge.protocol import auth as pauth
from mosaico_bridge.protocol import descriptors as desc
from mosaico_bridge.protocol import messages as msg
from mosaico_bridge.protocol import names
from mosaico_bridge.protocol.errors import (
    ErrorKind,
    NotFoundError,
    flight_reason,
)
from mosaico_bridge.protocol.messages import Action
from mosaico_bridge.server.access import (
    ACTION_DESCRIPTIONS,
    ACTION_PERMISSIONS,
    AUTH_MIDDLEWARE,
    CALL_PERMISSIONS,
    AccessControl,
    ApiKeyServerMiddlewareFactory,
    FailureThrottle,
    flight_error,
)
from mosaico_bridge.server.auth import (
    ApiKeyRecord,
    ApiKeyStore,
    Permission,
    UnknownFingerprint,
)
from mosaico_bridge.server.boundary import _SchemaRefusal, _translated
from mosaico_bridge.server.chunks import DEFAULT_COMPRESSION
from mosaico_bridge.server.put import LocalPutStream, PutStream
from mosaico_bridge.server.query_actions import QUERY_ACTIONS, QueryService
from mosaico_bridge.server.store import MosaicoStore

if TYPE_CHECKING:
    from typing import Self

logger = logging.getLogger("mosaico_bridge.server")

#: Folder under the store root holding the query service's Parquet copies of topic rows.
QUERY_CACHE_DIR = ".query_cache"

#: Version announced by the ``info`` action: the mosaicod release whose dialect we speak.
SERVER_VERSION = "0.7.0"

#: Default largest message the server accepts, in bytes (mosaicod default).
DEFAULT_MAX_DECODE_MESSAGE_SIZE = 50 * 1024 * 1024
#: Size DoGet batches aim at, in bytes (mosaicod default).
DEFAULT_TARGET_ENCODE_MESSAGE_SIZE = 25 * 1024 * 1024
#: Most rows in one DoGet batch (mosaicod ``MOSAICOD_MAX_BATCH_SIZE``).
DEFAULT_MAX_BATCH_ROWS = 8192


class MosaicoServer(flight.FlightServerBase):
    """A Mosaico server (mosaicod 0.7 JSON dialect) over a local on-disk store.

    The server accepts calls as soon as it is constructed. Use :meth:`start_background`
    for a server that also has a serving thread, and :meth:`stop` (or ``with``) to end it.

    Args:
        root: directory of the store (created if missing), or an open :class:`MosaicoStore`.
        host: interface to bind; ``port=0`` picks a free port (see :attr:`port`).
        max_decode_message_size: largest record batch or action body accepted, in bytes.
            Announced by ``info`` as ``grpc_max_decode_message_size``; the SDK sizes its
            DoPut batches to 90 % of it. pyarrow 26 does not let us set gRPC's own
            receive limit: ``FlightServerBase`` takes no gRPC options and Arrow's C++
            server sets the limit to unlimited (only a C++ ``builder_hook`` could change
            it), so the server checks each message itself, after gRPC has received it.
        tls_certificates: list of ``(cert_pem, key_pem)`` pairs (PEM bytes, or
            :class:`pyarrow.flight.CertKeyPair`); enables ``grpc+tls``.
        require_api_key: refuse calls without a valid API key of the level each call
            needs; False (default) is passthrough mode (see the module docstring).
        middleware: more server middleware factories, passed to FlightServerBase (the key
            ``mosaico_api_key`` is taken by the API-key middleware).
        max_encode_message_size: announced ``grpc_max_encode_message_size`` in bytes
            (default: ``max_decode_message_size``).
        target_encode_message_size: DoGet batch size target in bytes (default 25 MiB,
            capped at ``max_encode_message_size``).
        max_batch_rows: most rows per DoGet batch (default 8192).
        store_compression: compression of new chunk files' IPC buffers: ``none``,
            ``lz4`` or ``zstd`` (ignored when ``root`` is an open store).
        auth_failure_burst, auth_failure_rate: failed key checks a peer address may
            make at once, and per second after that, before its unverified keys are
            refused without a check (``throttled``).

    Raises:
        OSError: if ``root`` cannot be created or written.
        ValueError: if a size is not positive.
        pyarrow.ArrowException: if the address cannot be bound.
    """

    def __init__(
        self,
        root: str | os.PathLike | MosaicoStore,
        host: str = "127.0.0.1",
        port: int = names.DEFAULT_PORT,
        *,
        max_decode_message_size: int = DEFAULT_MAX_DECODE_MESSAGE_SIZE,
        tls_certificates: list | None = None,
        require_api_key: bool = False,
        middleware: dict | None = None,
        max_encode_message_size: int | None = None,
        target_encode_message_size: int = DEFAULT_TARGET_ENCODE_MESSAGE_SIZE,
        max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS,
        store_compression: str = DEFAULT_COMPRESSION,
        auth_failure_burst: int = 100,
        auth_failure_rate: float = 10.0,
    ):
        if int(max_decode_message_size) <= 0:
            raise ValueError("max_decode_message_size must be a positive number of bytes")
        if int(max_batch_rows) <= 0 or int(target_encode_message_size) <= 0:
            raise ValueError("max_batch_rows and target_encode_message_size must be positive")
        self._store = root if isinstance(root, MosaicoStore) else MosaicoStore(root, compression=store_compression)
        self._queries = QueryService(self._store, self._store.root / QUERY_CACHE_DIR)
        self._keys = ApiKeyStore(self._store.root)
        self._require_api_key = bool(require_api_key)
        self._access = AccessControl(
            self._keys, self._require_api_key, FailureThrottle(auth_failure_burst, auth_failure_rate)
        )
        self._host = host
        self._tls = bool(tls_certificates)
        self._max_decode = int(max_decode_message_size)
        self._max_encode = int(max_encode_message_size or max_decode_message_size)
        self._target_encode = min(int(target_encode_message_size), self._max_encode)
        self._max_batch_rows = int(max_batch_rows)
        self._thread: threading.Thread | None = None
        self._stopper: threading.Thread | None = None
        self._stop_lock = threading.Lock()
        self._actions: dict[str, Callable[[Any], dict | None]] = {
            Action.INFO: self._act_info,
            Action.SEQUENCE_CREATE: self._act_sequence_create,
            Action.SEQUENCE_DELETE: self._act_sequence_delete,
            Action.SESSION_CREATE: self._act_session_create,
            Action.SESSION_FINALIZE: self._act_session_finalize,
            Action.SESSION_DELETE: self._act_session_delete,
            Action.TOPIC_CREATE: self._act_topic_create,
            Action.TOPIC_DELETE: self._act_topic_delete,
            Action.SEQUENCE_NOTIFICATION_CREATE: self._act_sequence_notification_create,
            Action.SEQUENCE_NOTIFICATION_LIST: self._act_sequence_notification_list,
            Action.SEQUENCE_NOTIFICATION_PURGE: self._act_sequence_notification_purge,
            Action.TOPIC_NOTIFICATION_CREATE: self._act_topic_notification_create,
            Action.TOPIC_NOTIFICATION_LIST: self._act_topic_notification_list,
            Action.TOPIC_NOTIFICATION_PURGE: self._act_topic_notification_purge,
            Action.API_KEY_CREATE: self._act_api_key_create,
            Action.API_KEY_STATUS: self._act_api_key_status,
            Action.API_KEY_REVOKE: self._act_api_key_revoke,
        }
        if tls_certificates:
            tls_certificates = [
                pair if isinstance(pair, flight.CertKeyPair) else flight.CertKeyPair(*pair) for pair in tls_certificates
            ]
        all_middleware = dict(middleware or {})
        all_middleware[AUTH_MIDDLEWARE] = ApiKeyServerMiddlewareFactory(self._access)
        super().__init__(
            names.location(host, int(port), self._tls),
            tls_certificates=tls_certificates,
            middleware=all_middleware,
        )
        logger.info(
            "Mosaico server on %s serving the store %s (API keys %s)",
            self.location,
            self._store.root,
            "required" if self._require_api_key else "not required: passthrough",
        )

    # ------------------------------------------------------------------ lifecycle

    @property
    def store(self) -> MosaicoStore:
        """The on-disk store behind this server."""
        return self._store

    @property
    def root(self):
        """Absolute root directory of the store (a :class:`pathlib.Path`)."""
        return self._store.root

    @property
    def host(self) -> str:
        return self._host

    @property
    def location(self) -> str:
        """Flight URI of the server, e.g. ``grpc://127.0.0.1:6726``."""
        return names.location(self._host, self.port, self._tls)

    @property
    def query_service(self) -> QueryService:
        """The service answering ``query`` and ``topic_filter_*`` (``last_stats`` counts chunks)."""
        return self._queries

    @property
    def api_keys(self) -> ApiKeyStore:
        """The API keys of this server (``<root>/api_keys.json``)."""
        return self._keys

    @property
    def require_api_key(self) -> bool:
        """True if every call needs a valid API key; False in passthrough mode."""
        return self._require_api_key

    @property
    def tls(self) -> bool:
        """True if the server speaks ``grpc+tls``."""
        return self._tls

    @property
    def max_decode_message_size(self) -> int:
        """Largest accepted record batch / action body, in bytes."""
        return self._max_decode

    @classmethod
    def start_background(
        cls,
        root: str | os.PathLike | MosaicoStore,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        timeout: float = 10.0,
        **kw: Any,
    ) -> MosaicoServer:
        """Start a server with a daemon serving thread; return once it answers ``info``.

        ``timeout`` bounds the wait, in seconds. Other keywords go to the constructor
        (``tls_certificates=[(cert_pem, key_pem)]``, ``require_api_key=True`` ...); a
        server that refuses the probe for want of an API key counts as up.

        Raises:
            TimeoutError: if the server does not answer within ``timeout``.
            OSError, ValueError, pyarrow.ArrowException: as the constructor.
        """
        server = cls(root, host, port, **kw)
        thread = threading.Thread(target=server.serve, name=f"mosaico-server-{server.port}", daemon=True)
        server._thread = thread
        thread.start()
        try:
            server._wait_ready(timeout)
        except BaseException:
            server.stop()
            raise
        return server

    def _wait_ready(self, timeout: float) -> None:
        connect_host = "127.0.0.1" if self._host in ("0.0.0.0", "") else ("::1" if self._host == "::" else self._host)
        kwargs: dict[str, Any] = {}
        if self._tls:
            kwargs["disable_server_verification"] = True
        deadline = time.monotonic() + timeout
        last: BaseException | None = None
        with flight.FlightClient(names.location(connect_host, self.port, self._tls), **kwargs) as client:
            while time.monotonic() < deadline:
                try:
                    options = flight.FlightCallOptions(timeout=max(0.1, deadline - time.monotonic()))
                    list(client.do_action(flight.Action(Action.INFO, msg.InfoRequest().body()), options))
                    return
                except (flight.FlightUnauthenticatedError, flight.FlightUnauthorizedError):
                    return  # it answered: it is up, it just wants a key
                except flight.FlightError as exc:
                    last = exc
                    time.sleep(0.02)
        raise TimeoutError(f"Mosaico server on {self.location} did not answer within {timeout} s: {last}")

    def stop(self, timeout: float | None = None) -> bool:
        """Shut the server down and wait for running calls to end; safe to call twice.

        ``timeout`` (seconds) bounds the wait; None waits as long as calls run (a client
        holding an idle DoPut open keeps the server waiting). Returns True once the server
        has stopped, False if ``timeout`` passed first (the shutdown then goes on in a
        daemon thread). Must not be called from inside a Flight handler.
        """
        with self._stop_lock:
            if self._stopper is None:
                self._stopper = threading.Thread(target=self._shutdown_and_join, name="mosaico-server-stop", daemon=True)
                self._stopper.start()
            stopper = self._stopper
        stopper.join(timeout)
        if stopper.is_alive():
            logger.warning("Mosaico server on port %s: calls still running after %s s", self.port, timeout)
            return False
        return True

    def _shutdown_and_join(self) -> None:
        self.shutdown()
        if self._thread is not None:
            self._thread.join()
        logger.info("Mosaico server on port %s stopped", self.port)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type, exc_value, traceback) -> None:
        self.stop()

    # ------------------------------------------------------------------ access control

    def _check(self, api_key: str | None, required: Permission, call: str) -> ApiKeyRecord | None:
        """See :meth:`AccessControl.check`."""
        return self._access.check(api_key, required, call)

    def _authorize(self, context: flight.ServerCallContext, required: Permission, call: str) -> ApiKeyRecord | None:
        """Check that the caller of ``call`` holds ``required`` (see :meth:`_check`).

        Every Flight call and every action goes through here first; the key comes from
        the API-key middleware (``context.get_middleware(AUTH_MIDDLEWARE)``).
        """
        middleware = context.get_middleware(AUTH_MIDDLEWARE)
        api_key = middleware.api_key if middleware is not None else None
        return self._access.check(api_key, required, call, context.peer())

    # ------------------------------------------------------------------ DoAction

    def list_actions(self, context):
        self._authorize(context, CALL_PERMISSIONS["ListActions"], "ListActions")
        return [(name, text) for name, text in ACTION_DESCRIPTIONS.items()]

    def do_action(self, context, action):
        name = action.type
        with _translated(f"DoAction {name}"):
            required = ACTION_PERMISSIONS.get(name)
            self._authorize(context, required or Permission.Read, name if required else "DoAction")
            if required is None:
                raise flight_error(ErrorKind.INVALID_ARGUMENT, f"unknown action `{name}`")
            handler = self._actions.get(name)
            if handler is None and name not in QUERY_ACTIONS:
                raise flight_error(ErrorKind.INVALID_ARGUMENT, f"action `{name}` is not supported by this server")
            body = action.body
            if body is not None and body.size > self._max_decode:
                raise flight_error(
                    ErrorKind.TOO_LARGE,
                    f"action body of {body.size} bytes exceeds the limit of {self._max_decode} bytes",
                )
            if name in QUERY_ACTIONS:  # paged replies: one Result per window
                return self._queries.handle(name, msg.decode_body(body.to_pybytes() if body is not None else b""))
            request = msg.parse_request(name, body.to_pybytes() if body is not None else b"")
            response = handler(request)
            return [msg.response_envelope(name, response)]

    def _act_info(self, req: msg.InfoRequest) -> dict:
        return msg.InfoResponse(SERVER_VERSION, self._max_decode, self._max_encode, self._target_encode).to_dict()

    def _act_sequence_create(self, req: msg.SequenceCreateRequest) -> None:
        self._store.create_sequence(req.locator, req.user_metadata)

    def _act_sequence_delete(self, req: msg.SequenceDeleteRequest) -> None:
        self._store.delete_sequence(req.locator)

    def _act_session_create(self, req: msg.SessionCreateRequest) -> dict:
        session = self._store.create_session(req.locator)
        return msg.SessionCreateResponse(session.uuid, session.locator).to_dict()

    def _act_session_finalize(self, req: msg.SessionFinalizeRequest) -> None:
        self._store.finalize_session(req.session_uuid)

    def _act_session_delete(self, req: msg.SessionDeleteRequest) -> None:
        self._store.delete_session(req.locator)

    def _act_topic_create(self, req: msg.TopicCreateRequest) -> dict:
        topic = self._store.create_topic(
            req.session_uuid, req.locator, req.serialization_format, req.ontology_tag, req.user_metadata
        )
        return msg.TopicCreateResponse(topic.uuid).to_dict()

    def _act_topic_delete(self, req: msg.TopicDeleteRequest) -> None:
        self._store.delete_topic(req.locator)

    def _act_sequence_notification_create(self, req: msg.SequenceNotificationCreateRequest) -> None:
        self._store.add_sequence_notification(req.locator, req.notification_type, req.msg)

    @staticmethod
    def _notification_list(items: list) -> dict:
        return msg.NotificationListResponse(
            tuple(
                msg.Notification(n.name, n.notification_type, n.msg, msg.notification_datetime(n.created_at_ns))
                for n in items
            )
        ).to_dict()

    def _act_sequence_notification_list(self, req: msg.SequenceNotificationListRequest) -> dict:
        return self._notification_list(self._store.list_sequence_notifications(req.locator))

    def _act_sequence_notification_purge(self, req: msg.SequenceNotificationPurgeRequest) -> None:
        self._store.purge_sequence_notifications(req.locator)

    def _act_topic_notification_create(self, req: msg.TopicNotificationCreateRequest) -> None:
        self._store.add_topic_notification(req.locator, req.notification_type, req.msg)

    def _act_topic_notification_list(self, req: msg.TopicNotificationListRequest) -> dict:
        return self._notification_list(self._store.list_topic_notifications(req.locator))

    def _act_topic_notification_purge(self, req: msg.TopicNotificationPurgeRequest) -> None:
        self._store.purge_topic_notifications(req.locator)

    # API keys: the handlers run after _authorize has checked for a Manage key.

    def _act_api_key_create(self, req: msg.ApiKeyCreateRequest) -> dict:
        permission = Permission.from_wire(req.permission)
        api_key, _record = self._keys.create(permission, req.description, req.expires_at_ns)
        return msg.ApiKeyCreateResponse(api_key).to_dict()

    def _act_api_key_status(self, req: msg.ApiKeyStatusRequest) -> dict:
        try:
            record = self._keys.get(pauth.validate_fingerprint(req.fingerprint))
        except UnknownFingerprint as exc:
            raise NotFoundError(str(exc)) from None
        return msg.ApiKeyStatusResponse(**record.status()).to_dict()

    def _act_api_key_revoke(self, req: msg.ApiKeyRevokeRequest) -> None:
        try:
            self._keys.revoke(pauth.validate_fingerprint(req.fingerprint))
        except UnknownFingerprint as exc:
            raise NotFoundError(str(exc)) from None

    # ------------------------------------------------------------------ read path

    def _sequence_metadata(self, name: str) -> tuple[Any, bytes]:
        seq = self._store.get_sequence(name)
        sessions = tuple(
            desc.SessionMetadata(s.locator, s.created_at_ns, s.locked, tuple(s.topics), s.completed_at_ns)
            for s in seq.sessions
        )
        meta = desc.SequenceMetadata(seq.locator, seq.created_at_ns, dict(seq.user_metadata), sessions)
        return seq, meta.to_bytes()

    def _topic_endpoint(self, topic, cmd: desc.ResourceCommand) -> flight.FlightEndpoint:
        interval = None
        if topic.min_timestamp_ns is not None and topic.max_timestamp_ns is not None:
            interval = (topic.min_timestamp_ns, topic.max_timestamp_ns)
        window = None
        if cmd.timestamp_ns_start is not None or cmd.timestamp_ns_end is not None:
            window = self._store.window_stats(topic.locator, cmd.timestamp_ns_start, cmd.timestamp_ns_end)
        window_interval, window_rows = window if window is not None else (None, 0)
        meta = desc.TopicMetadata(
            resource_locator=topic.locator,
            created_at_ns=topic.created_at_ns,
            locked=topic.locked,
            ontology_tag=topic.ontology_tag,
            serialization_format=topic.serialization_format,
            user_metadata=dict(topic.user_metadata),
            total_bytes=topic.total_bytes,
            total_chunks_count=topic.chunk_count,
            total_row_count=topic.row_count,
            interval=desc.TimeInterval(*interval) if interval is not None else None,
            completed_at_ns=topic.completed_at_ns,
            has_window=window is not None,
            window_interval=desc.TimeInterval(*window_interval) if window_interval is not None else None,
            window_row_count=window_rows,
        ).to_bytes()
        ticket = desc.make_ticket(
            desc.ResourceCommand(
                resource_locator=topic.locator,
                timestamp_ns_start=cmd.timestamp_ns_start,
                timestamp_ns_end=cmd.timestamp_ns_end,
            )
        )
        return flight.FlightEndpoint(ticket, [], app_metadata=meta)

    def list_flights(self, context, criteria):
        with _translated("ListFlights"):
            self._authorize(context, CALL_PERMISSIONS["ListFlights"], "ListFlights")
            infos = []
            for name in self._store.sequence_names():
                try:
                    seq, meta = self._sequence_metadata(name)
                except NotFoundError:  # deleted meanwhile
                    continue
                total_rows = sum(t.row_count for t in seq.topics)
                total_bytes = sum(t.total_bytes for t in seq.topics)
                infos.append(
                    flight.FlightInfo(
                        pa.schema([]),
                        flight.FlightDescriptor.for_path(name),
                        [],
                        total_rows,
                        total_bytes,
                        app_metadata=meta,
                    )
                )
        return iter(infos)

    def get_flight_info(self, context, descriptor):
        with _translated("GetFlightInfo"):
            self._authorize(context, CALL_PERMISSIONS["GetFlightInfo"], "GetFlightInfo")
            cmd = desc.parse_command(descriptor)
            if "/" not in cmd.resource_locator:
                seq, meta = self._sequence_metadata(cmd.resource_locator)
                endpoints = [self._topic_endpoint(t, cmd) for t in seq.topics]
                return flight.FlightInfo(
                    pa.schema([]),
                    descriptor,
                    endpoints,
                    sum(t.row_count for t in seq.topics),
                    sum(t.total_bytes for t in seq.topics),
                    app_metadata=meta,
                )
            topic = self._store.get_topic(cmd.resource_locator)
            schema = topic.schema if topic.schema is not None else pa.schema([])
            return flight.FlightInfo(
                schema, descriptor, [self._topic_endpoint(topic, cmd)], topic.row_count, topic.total_bytes
            )

    def get_schema(self, context, descriptor):
        """The topic's stored schema (``docs/protocol.md`` § Read path).

        pyarrow 26 does not turn an exception raised here into a Flight status as it does
        for the other calls: it sends the message followed by a formatted Python
        traceback (server file paths included). Refusals therefore leave as
        :class:`_SchemaRefusal`, whose traceback pyarrow cannot format, so the client
        gets the one-line message only: ArrowKeyError for not found, ArrowInvalid for a
        bad descriptor, a generic ArrowException otherwise.
        """
        try:
            with _translated("GetSchema"):
                self._authorize(context, CALL_PERMISSIONS["GetSchema"], "GetSchema")
                cmd = desc.parse_command(descriptor)
                if "/" not in cmd.resource_locator:
                    raise flight_error(ErrorKind.INVALID_ARGUMENT, "GetSchema needs a topic locator `sequence/topic`")
                return flight.SchemaResult(self._store.topic_schema(cmd.resource_locator))
        except flight.FlightError as exc:
            raise _SchemaRefusal.of(exc) from None

    def do_get(self, context, ticket):
        with _translated("DoGet"):
            self._authorize(context, CALL_PERMISSIONS["DoGet"], "DoGet")
            cmd = desc.parse_ticket(ticket)
            if "/" not in cmd.resource_locator:
                raise flight_error(ErrorKind.INVALID_ARGUMENT, "DoGet ticket must name a topic `sequence/topic`")
            schema, batches = self._store.read(
                cmd.resource_locator,
                cmd.timestamp_ns_start,
                cmd.timestamp_ns_end,
                max_rows=self._max_batch_rows,
                max_bytes=self._target_encode,
            )
        return flight.GeneratorStream(schema, self._guarded(f"DoGet {cmd.resource_locator}", batches))

    @staticmethod
    def _guarded(call: str, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        with _translated(call):
            yield from batches

    def do_exchange(self, context, descriptor, reader, writer):
        self._authorize(context, CALL_PERMISSIONS["DoExchange"], "DoExchange")
        raise flight_error(ErrorKind.INVALID_ARGUMENT, "DoExchange is not supported by this server")

    # ------------------------------------------------------------------ write path

    def do_put(self, context, descriptor, reader, writer):
        """Store a DoPut stream as one chunk of a topic (``docs/protocol.md`` § DoPut).

        Each record batch is size-checked, fully validated (schema equal to the topic's),
        appended to the chunk file and flushed to the OS; then a PutResult carrying
        :class:`~mosaico_bridge.protocol.descriptors.PutAck` (rows and IPC body bytes of
        this stream so far) acknowledges it. Only the batch being written is held. With
        ``require_api_key`` the key is checked again before each batch and at the end, so
        a key revoked or expired meanwhile ends the stream with UNAUTHENTICATED. A stream
        that ends early for any reason keeps its rows, leaves the topic unlocked and, when
        the server cut it, adds a topic notification saying why.
        """
        with _translated("DoPut"):
            self._authorize(context, CALL_PERMISSIONS["DoPut"], "DoPut")
            cmd = desc.parse_command(descriptor)
            stream = PutStream(self._store, cmd.resource_locator, cmd.topic_uuid, reader.schema, self._max_decode,
                               lambda: self._recheck_key(context))
            complete = False
            try:
                while True:
                    try:
                        chunk = reader.read_chunk()
                    except StopIteration:
                        # A client that vanishes also ends the stream; gRPC marks the call cancelled.
                        complete = not context.is_cancelled()
                        if not complete:
                            logger.warning("DoPut %s: client went away; keeping what was received", stream.locator)
                        break
                    except (flight.FlightError, pa.ArrowException, OSError) as exc:
                        logger.warning("DoPut %s: stream broken (%s); keeping what was received", stream.locator, exc)
                        raise flight_error(ErrorKind.INVALID_ARGUMENT, "DoPut stream broken: unreadable message") from None
                    batch = chunk.data
                    if batch is None:
                        continue
                    ack = stream.write(batch)
                    del batch, chunk
                    writer.write(pa.py_buffer(ack.to_bytes()))
            finally:
                stream.end(complete)

    def open_local_put(self, topic_locator: str, topic_uuid: str, schema: pa.Schema) -> LocalPutStream:
        """A DoPut stream for a client in this process (``docs/protocol.md`` § In-process
        data path): what :meth:`do_put` does, without gRPC. Only a caller holding this
        object can reach it, so it takes no key; with ``require_api_key`` it is refused
        and the client must use Flight.

        Raises:
            pyarrow.flight.FlightServerError: as :meth:`do_put` (one line, ErrorKind word).
        """
        with _translated("DoPut"):
            if self._require_api_key:
                raise flight_error(ErrorKind.PERMISSION_DENIED, "in-process DoPut refused: this server requires API keys")
            return LocalPutStream(PutStream(self._store, topic_locator, topic_uuid, schema, self._max_decode))

    def _recheck_key(self, context: flight.ServerCallContext) -> str | None:
        """Check the caller's key again during a DoPut stream (require_api_key only).

        Returns:
            None while the key is valid, else the refusal (``API key f9010b9e revoked``);
            the key's record is re-read whenever the keys file changes.
        """
        if not self._require_api_key:
            return None
        try:
            self._authorize(context, CALL_PERMISSIONS["DoPut"], "DoPut")
        except (flight.FlightUnauthenticatedError, flight.FlightUnauthorizedError) as exc:
            return flight_reason(exc)
        return None
