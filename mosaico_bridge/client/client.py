"""MosaicoClient: the gateway to a Mosaico server, with its four layers.

* control layer (:mod:`.control`): one Flight connection for DoAction, GetFlightInfo,
  ListFlights;
* data layer (:mod:`.data`): a pool of Flight connections, DoPut streams round-robin;
* processing layer (:mod:`.processing`): an executor pool converting messages to
  record batches;
* security layer (:mod:`.security`): TLS trust and the API key on every call.

Wire format: the mosaicod 0.7 JSON dialect (:mod:`mosaico_bridge.protocol`,
``docs/protocol.md``); design of the layers: ``docs/client.md``.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from ..common.threads import check_nice
from ..protocol import auth, names
from ..protocol import messages as msg
from ..protocol.auth import APIKeyPermissionEnum
from ..protocol.descriptors import read_descriptor
from ..protocol.errors import MosaicoError, NotFoundError
from ..protocol.messages import Notification
from .budget import DEFAULT_MAX_INFLIGHT_BYTES, InflightBudget
from .control import ControlConnection
from .data import DEFAULT_DATA_CONNECTIONS, ConnectionPool, LocalPutTarget
from .handlers import SequenceHandler, TopicHandler
from .processing import ExecutorPool
from .security import APIKeyStatus, SecurityConfig
from .sequence_writer import (
    DEFAULT_MAX_BATCH_AGE_S,
    SequenceWriter,
    SessionLevelErrorPolicy,
)
from .transport import Transport, check_compression

if TYPE_CHECKING:
    from typing import Self

    from .query import QueryResult

log = logging.getLogger("mosaico_bridge.client")

_H = TypeVar("_H")  # a handler type, for _cached_handler

_SENTINEL = object()

#: Default size of a record batch, in bytes, when the caller gives none: large enough for
#: Flight to run at full speed (1-8 MiB batches already reach ~1.5 GB/s on loopback),
#: small enough to bound latency (one batch of 1080p rgb8 frames is three frames).
#: Never above the server's limit.
DEFAULT_BATCH_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class ServerInfo:
    """Reply of the ``info`` action: version and message size limits in bytes."""

    version: str
    grpc_max_decode_message_size: int
    grpc_max_encode_message_size: int
    grpc_target_encode_message_size: int


class MosaicoClient:
    """A connected client. Get one with :meth:`connect` or :meth:`from_env`;
    constructing it directly raises RuntimeError. Use it in ``with`` or call
    :meth:`close`.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        timeout: float,
        control: ControlConnection,
        pool: ConnectionPool,
        processing: ExecutorPool,
        security: SecurityConfig,
        info: ServerInfo,
        budget: InflightBudget | None = None,
        compression: str = "none",
        sentinel: object = None,
    ) -> None:
        if sentinel is not _SENTINEL:
            raise RuntimeError("MosaicoClient cannot be constructed directly: use MosaicoClient.connect()")
        self.host = host
        self.port = port
        self.timeout = timeout
        self._control = control
        self._pool = pool
        self._processing = processing
        self._security = security
        self._info = info
        self._transport = Transport(control, pool, processing, budget or InflightBudget(), compression)
        self._sequence_handlers: dict[str, SequenceHandler] = {}
        self._topic_handlers: dict[str, TopicHandler] = {}
        self._lock = threading.Lock()
        self._closed = False

    # ------------------------------------------------------------------ factory
    @classmethod
    def connect(
        cls,
        host: str,
        port: int,
        timeout: float = 5,
        tls_cert_path: str | None = None,
        api_key: str | None = None,
        *,
        data_connections: int = DEFAULT_DATA_CONNECTIONS,
        workers: int | None = None,
        max_inflight_bytes: int = DEFAULT_MAX_INFLIGHT_BYTES,
        compression: str = "none",
        in_process_server: LocalPutTarget | None = None,
        worker_nice: int = 0,
    ) -> MosaicoClient:
        """Connect to the server at ``host:port`` and set up all four layers.

        Args:
            timeout: seconds to wait for the server's ``info`` reply, and per control call.
            tls_cert_path: PEM CA to trust; switches to ``grpc+tls``.
            api_key: ``msco_<32 alphanumerics>_<8-hex fingerprint>``, sent as the header
                ``mosaico-api-key-token`` on every call of the control connection and of
                every data connection (needs Read to connect). Only its fingerprint is
                ever logged or shown (``repr``, :attr:`api_key_fingerprint`).
            data_connections: size of the data layer's connection pool (default 4).
            workers: size of the processing layer's executor pool (default: CPU count, 2..8).
            max_inflight_bytes: memory budget shared by every topic writer of this client,
                from push to the server's acknowledgement, in bytes (default 256 MiB;
                :mod:`.budget`).
            compression: default compression of DoPut IPC bodies, ``none`` (default),
                ``lz4`` or ``zstd``; a writer may choose another.
            in_process_server: the server at ``host:port`` when it runs in this process
                (the embedded server, :class:`mosaico_bridge.server.MosaicoServer`):
                DoPut streams then hand it their record batches as objects, with no IPC
                encoding, gRPC or copy (``docs/protocol.md`` § In-process data path);
                ``compression`` then has no wire to act on. Control calls and reads
                still use Flight.
            worker_nice: added to the nice value of the executor pool's threads and of the
                data connections' writer threads (0..19, default 0: unchanged; Linux only).
                A recorder whose subscriptions share the CPU with this work sets it so that
                taking messages comes first (``docs/live-path.md`` § Priorities).

        Raises:
            ConnectionError: the server is unreachable or does not answer in time, or the
                TLS handshake fails (certificate not trusted, or TLS on one side only);
                the message names ``host:port``.
            AuthenticationError: at once, if the server refuses the API key (missing,
                malformed, unknown, revoked, expired, or below Read).
            ValueError: ``tls_cert_path`` is empty, cannot be read or holds no valid
                certificate; ``api_key`` holds characters a header cannot carry; or
                ``max_inflight_bytes`` < 1, an unknown ``compression``, or ``worker_nice``
                outside 0..19.
            FileNotFoundError: ``tls_cert_path`` does not exist.
        """
        compression = check_compression(compression)
        check_nice(worker_nice)
        budget = InflightBudget(max_inflight_bytes)
        security = SecurityConfig.create(tls_cert_path, api_key)
        control = ControlConnection(host, port, security, timeout)
        try:
            reply = control.wait_ready(timeout)
            info = ServerInfo(
                version=reply.version,
                grpc_max_decode_message_size=reply.grpc_max_decode_message_size,
                grpc_max_encode_message_size=reply.grpc_max_encode_message_size,
                grpc_target_encode_message_size=reply.grpc_target_encode_message_size,
            )
            pool = ConnectionPool(host, port, security, data_connections, in_process_server, worker_nice)
            processing = ExecutorPool(workers, worker_nice)
            processing.warm()
            for conn in pool.connections:
                conn.warm()
        except BaseException:
            control.close()
            raise
        log.info(
            "connected to Mosaico %s at %s (%d data connections%s, %d workers%s%s)",
            info.version,
            security.location(host, port),
            len(pool),
            ", in-process DoPut" if in_process_server is not None else "",
            processing.workers,
            f", nice +{worker_nice}" if worker_nice else "",
            f", key {security.api_key_fingerprint}" if security.api_key_fingerprint else "",
        )
        return cls(
            host=host,
            port=port,
            timeout=timeout,
            control=control,
            pool=pool,
            processing=processing,
            security=security,
            info=info,
            budget=budget,
            compression=compression,
            sentinel=_SENTINEL,
        )

    @classmethod
    def from_env(cls, host: str, port: int, timeout: float = 5, **kwargs: Any) -> MosaicoClient:
        """:meth:`connect` with ``MOSAICO_API_KEY`` and ``MOSAICO_TLS_CERT_FILE`` from the environment.

        An unset or empty variable means no key / plaintext. Raises as :meth:`connect`.
        """
        return cls.connect(
            host,
            port,
            timeout,
            tls_cert_path=os.environ.get(auth.ENV_TLS_CERT_FILE) or None,
            api_key=os.environ.get(auth.ENV_API_KEY) or None,
            **kwargs,
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the handlers, the data connections, the executor pool and the control connection."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.clear_sequence_handlers_cache()
        self.clear_topic_handlers_cache()
        self._pool.close()
        self._processing.close()
        self._control.close()

    def __repr__(self) -> str:
        fp = self._security.api_key_fingerprint
        return f"MosaicoClient({self._security.location(self.host, self.port)!r}, api_key_fingerprint={fp!r})"

    # ------------------------------------------------------------------ server
    def info(self) -> ServerInfo:
        """Server version and message size limits, as read at connect."""
        return self._info

    def version(self) -> str:
        """Version string of the server (``info`` action)."""
        return msg.InfoResponse.from_dict(self._control.request(msg.InfoRequest())).version

    @property
    def max_batch_size_bytes(self) -> int:
        """Largest record batch the server accepts from this client, in bytes (90 % of
        its ``grpc_max_decode_message_size``, ``docs/protocol.md`` § DoPut)."""
        return int(msg.BATCH_SIZE_SHARE * self._info.grpc_max_decode_message_size)

    @property
    def budget(self) -> InflightBudget:
        """The memory budget shared by this client's topic writers (bytes)."""
        return self._transport.budget

    @property
    def api_key_fingerprint(self) -> str | None:
        """The 8-hex fingerprint of the API key in use, or None (no key, or not ``msco_`` shaped)."""
        return self._security.api_key_fingerprint

    # ------------------------------------------------------------------ writing
    def _writer(
        self,
        sequence_name: str,
        metadata: Mapping[str, Any],
        on_error: SessionLevelErrorPolicy | str,
        max_batch_size_bytes: int | None,
        max_batch_size_records: int | None,
        create: bool,
        spool_dir: str | None,
        max_batch_age_s: float,
        compression: str | None,
    ) -> SequenceWriter:
        limit = min(self.max_batch_size_bytes, DEFAULT_BATCH_BYTES)
        if max_batch_size_bytes is not None:
            if max_batch_size_bytes < 1:
                raise ValueError(f"max_batch_size_bytes must be >= 1, got {max_batch_size_bytes}")
            limit = min(self.max_batch_size_bytes, int(max_batch_size_bytes))
        if max_batch_size_records is not None and max_batch_size_records < 1:
            raise ValueError(f"max_batch_size_records must be >= 1, got {max_batch_size_records}")
        return SequenceWriter(
            self._transport, sequence_name, metadata, SessionLevelErrorPolicy(on_error), limit,
            max_batch_size_records, create, spool_dir, max_batch_age_s=max_batch_age_s, compression=compression,
        )

    def sequence_create(
        self,
        sequence_name: str,
        metadata: Mapping[str, Any],
        on_error: SessionLevelErrorPolicy | str = SessionLevelErrorPolicy.Report,
        max_batch_size_bytes: int | None = None,
        max_batch_size_records: int | None = None,
        *,
        spool_dir: str | None = None,
        max_batch_age_s: float = DEFAULT_MAX_BATCH_AGE_S,
        compression: str | None = None,
    ) -> SequenceWriter:
        """A writer that creates the sequence ``sequence_name`` when it is opened
        (:meth:`SequenceWriter.open`, or entering its ``with`` block).

        ``max_batch_size_bytes`` defaults to :data:`DEFAULT_BATCH_BYTES` (16 MiB) and is
        capped at 90 % of the server's decode limit. A topic's batch is sent when it reaches
        that size, ``max_batch_size_records`` rows, or when its oldest message is
        ``max_batch_age_s`` seconds old (default 0.1). ``compression`` (``none``, ``lz4``,
        ``zstd``; default: the client's) compresses the DoPut IPC bodies. With
        ``spool_dir``, record batches the server can no longer take (stream failed) go to a
        local Arrow IPC spool there instead of being lost (:mod:`.spool`).

        Raises:
            InvalidArgumentError: invalid sequence name or metadata (before any call).
            ValueError: invalid limits, age or compression.
        """
        return self._writer(
            sequence_name, metadata, on_error, max_batch_size_bytes, max_batch_size_records, True, spool_dir,
            max_batch_age_s, compression,
        )

    def sequence_update(
        self,
        sequence_name: str,
        on_error: SessionLevelErrorPolicy | str = SessionLevelErrorPolicy.Report,
        max_batch_size_bytes: int | None = None,
        max_batch_size_records: int | None = None,
        *,
        spool_dir: str | None = None,
        max_batch_age_s: float = DEFAULT_MAX_BATCH_AGE_S,
        compression: str | None = None,
    ) -> SequenceWriter:
        """A writer for a new session on the existing sequence ``sequence_name``; options
        as :meth:`sequence_create`."""
        return self._writer(
            sequence_name, {}, on_error, max_batch_size_bytes, max_batch_size_records, False, spool_dir,
            max_batch_age_s, compression,
        )

    # ------------------------------------------------------------------ reading
    def query(self, *queries: Any, query: Any = None) -> QueryResult | None:
        """Search the server's catalog (DoAction ``query``; needs Read).

        ``queries`` are builders (:class:`~mosaico_bridge.client.query.QuerySequence`,
        ``QueryTopic``, ``QueryOntologyCatalog``), joined with AND; or give a ready
        :class:`~mosaico_bridge.client.query.Query` as ``query``. The JSON sent is the
        one the SDK 0.7.0 builders produce.

        Returns:
            a :class:`~mosaico_bridge.client.query.QueryResult` (sequences with their
            matching topics, whose ``clusterize()`` / the items' ``intersect()`` give the
            time windows of the matching rows), or None when the server sends no response.

        Raises:
            ValueError: no builder, or two of the same type.
            InvalidArgumentError: the server refuses the query (unknown field, operator ...).
            AuthenticationError, ConnectionError: as every call.
        """
        from .query import Query, QueryOntologyCatalog, QueryResult, run_query

        whole = query if query is not None else Query(*queries)
        response = run_query(self._control.result_bodies, query=whole)
        if response is None:
            return None
        ontology = next((q for q in whole.queries if isinstance(q, QueryOntologyCatalog)), None)
        return QueryResult(response, self._control.result_bodies, ontology)

    def list_sequences(self) -> list[str]:
        """Names of all sequences on the server (ListFlights)."""
        names = []
        for info in self._control.list_flights():
            path = info.descriptor.path
            if path:
                names.append(path[0].decode() if isinstance(path[0], bytes) else str(path[0]))
        return names

    def sequence_exists(self, sequence_name: str) -> bool:
        """True if the server holds the sequence.

        Raises:
            MosaicoError: a refusal other than NotFoundError (e.g. the key lacks Read).
            ConnectionError: the server is unreachable.
        """
        try:
            self._control.get_flight_info(read_descriptor(names.sequence_locator(sequence_name)))
            return True
        except NotFoundError:
            return False

    def _cached_handler(self, cache: dict[str, _H], locator: str, build: Callable[[Any], _H | None]) -> _H | None:
        """The cached handler of ``locator``, or ``build(FlightInfo)`` stored in ``cache``;
        None if the server refuses to describe the resource (not found, or any other
        refusal, as the Mosaico client design specifies)."""
        with self._lock:
            cached = cache.get(locator)
        if cached is not None:
            return cached
        try:
            info = self._control.get_flight_info(read_descriptor(locator))
        except MosaicoError as exc:
            log.debug("%s: %s", locator, exc)
            return None
        handler = build(info)
        if handler is not None:
            with self._lock:
                cache[locator] = handler
        return handler

    def sequence_handler(self, sequence_name: str) -> SequenceHandler | None:
        """Handler of a sequence (cached), or None if the server does not know it."""
        return self._cached_handler(
            self._sequence_handlers,
            names.sequence_locator(sequence_name),
            lambda info: SequenceHandler(self._control, info),
        )

    def topic_handler(self, sequence_name: str, topic_name: str) -> TopicHandler | None:
        """Handler of a topic (cached), or None if the server does not know it."""
        return self._cached_handler(
            self._topic_handlers,
            names.topic_locator(sequence_name, topic_name),
            lambda info: TopicHandler(self._control, info.endpoints[0]) if info.endpoints else None,
        )

    def clear_sequence_handlers_cache(self) -> None:
        with self._lock:
            self._sequence_handlers.clear()

    def clear_topic_handlers_cache(self) -> None:
        with self._lock:
            self._topic_handlers.clear()

    # ------------------------------------------------------------------ deleting
    def sequence_delete(self, sequence_name: str) -> None:
        """Delete a sequence and all its data (needs Delete permission)."""
        loc = names.validate_sequence_name(sequence_name)
        self._control.request(msg.SequenceDeleteRequest(loc))
        with self._lock:
            self._sequence_handlers.pop(loc, None)
            for key in [k for k in self._topic_handlers if k.startswith(loc + "/")]:
                del self._topic_handlers[key]

    def session_delete(self, session_locator: str) -> None:
        """Delete one session (its topics and data) by its locator, e.g. ``seq:<id>``."""
        self._control.request(msg.SessionDeleteRequest(session_locator))
        self.clear_sequence_handlers_cache()
        self.clear_topic_handlers_cache()

    # ------------------------------------------------------------------ notifications
    def _notifications(self, request: msg.LocatorRequest) -> list[Notification]:
        reply = self._control.request(request)
        return list(msg.NotificationListResponse.from_dict(reply, request.locator).notifications)

    def list_sequence_notifications(self, sequence_name: str) -> list[Notification]:
        """Notifications of a sequence, oldest first."""
        return self._notifications(msg.SequenceNotificationListRequest(names.sequence_locator(sequence_name)))

    def clear_sequence_notifications(self, sequence_name: str) -> None:
        self._control.request(msg.SequenceNotificationPurgeRequest(names.sequence_locator(sequence_name)))

    def list_topic_notifications(self, sequence_name: str, topic_name: str) -> list[Notification]:
        """Notifications of a topic, oldest first."""
        return self._notifications(msg.TopicNotificationListRequest(names.topic_locator(sequence_name, topic_name)))

    def clear_topic_notifications(self, sequence_name: str, topic_name: str) -> None:
        self._control.request(msg.TopicNotificationPurgeRequest(names.topic_locator(sequence_name, topic_name)))

    # ------------------------------------------------------------------ API keys
    @staticmethod
    def _fingerprint_arg(api_key_fingerprint: str) -> str:
        value = str(api_key_fingerprint).strip()
        whole = auth.api_key_fingerprint(value)
        if whole is not None:  # a whole key was given: use its fingerprint, never send the key
            return whole
        if not auth.API_KEY_FINGERPRINT_RE.match(value):
            raise ValueError("an API key fingerprint is 8 lowercase hex characters")
        return value

    def api_key_create(
        self, permission: APIKeyPermissionEnum, description: str, expires_at_ns: int | None = None
    ) -> str | None:
        """Create an API key (DoAction ``api_key_create``; the caller needs Manage).

        Args:
            permission: level of the new key (an :class:`APIKeyPermissionEnum` or its
                wire name ``"read"`` ...).
            description: free text, shown by :meth:`api_key_status`.
            expires_at_ns: the key stops working at this time, in ns since the Unix
                epoch; None: never.

        Returns:
            the new key ``msco_..._<fingerprint>``, or None if the server sent no key. The
            server keeps only a salted hash: this is the only time the key is seen.

        Raises:
            AuthenticationError: the client's key is refused or lacks Manage.
            ServerRefusedError: the server refuses the request (bad permission ...).
            ValueError: ``permission`` is not a permission level.
        """
        level = APIKeyPermissionEnum(permission)
        if expires_at_ns is not None and (isinstance(expires_at_ns, bool) or not isinstance(expires_at_ns, int)):
            raise ValueError("expires_at_ns must be an integer number of nanoseconds since the epoch")
        reply = msg.ApiKeyCreateResponse.from_dict(
            self._control.request(msg.ApiKeyCreateRequest(level.value, str(description), expires_at_ns))
        )
        if reply is None or not reply.api_key:
            return None
        log.info("created API key %s (%s)", auth.api_key_fingerprint(reply.api_key), level.value)
        return reply.api_key

    def api_key_status(self, api_key_fingerprint: str | None = None) -> APIKeyStatus | None:
        """Status of a key (DoAction ``api_key_status``; the caller needs Manage).

        Args:
            api_key_fingerprint: 8 hex characters (a whole key is reduced to its
                fingerprint); None: the key this client uses.

        Returns:
            an :class:`APIKeyStatus`, or None if the server sent no status.

        Raises:
            ValueError: no fingerprint given and the client has no ``msco_`` key, or the
                fingerprint is not 8 hex characters.
            NotFoundError: no key has that fingerprint.
            AuthenticationError: the client's key is refused or lacks Manage.
        """
        if api_key_fingerprint is None:
            fingerprint = self._security.api_key_fingerprint
            if not fingerprint:
                raise ValueError("no API key fingerprint given and the client has no API key")
        else:
            fingerprint = self._fingerprint_arg(api_key_fingerprint)
        reply = msg.ApiKeyStatusResponse.from_dict(self._control.request(msg.ApiKeyStatusRequest(fingerprint)))
        return APIKeyStatus.from_response(reply) if reply else None

    def api_key_revoke(self, api_key_fingerprint: str) -> None:
        """Revoke a key for good (DoAction ``api_key_revoke``; the caller needs Manage).

        Revoking a revoked key is a no-op. A revoked key is refused from its next call on.

        Raises:
            ValueError: the fingerprint is not 8 hex characters.
            NotFoundError: no key has that fingerprint.
            AuthenticationError: the client's key is refused or lacks Manage.
        """
        fingerprint = self._fingerprint_arg(api_key_fingerprint)
        self._control.request(msg.ApiKeyRevokeRequest(fingerprint))
        log.info("revoked API key %s", fingerprint)


__all__ = ["MosaicoClient", "MosaicoError", "Notification", "ServerInfo"]
