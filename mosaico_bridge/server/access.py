"""Access control of the embedded server: permission tables, the API-key middleware, checks.

A server middleware reads the header ``mosaico-api-key-token`` of every call; every
Flight call and every action passes through :meth:`AccessControl.check` with the
permission that :data:`ACTION_PERMISSIONS` / :data:`CALL_PERMISSIONS` require (each
level includes the ones below it: read < write < delete < manage). Refusals are gRPC
UNAUTHENTICATED (key missing, malformed, unknown, revoked or expired) or
PERMISSION_DENIED (valid key below the level); messages and logs name a key by its
fingerprint only (``docs/protocol.md`` § Security).
"""

from __future__ import annotations

import logging
import threading
import time

from pyarrow import flight

from mosaico_bridge.protocol import auth as pauth
from mosaico_bridge.protocol.errors import ErrorKind, extra_info
from mosaico_bridge.protocol.messages import Action
from mosaico_bridge.server.auth import (
    ApiKeyRecord,
    ApiKeyStore,
    AuthenticationFailed,
    KeyStoreError,
    Permission,
    PermissionDenied,
)

logger = logging.getLogger("mosaico_bridge.server")


def flight_error(kind: ErrorKind, message: str) -> flight.FlightServerError:
    """A Flight error carrying ``message`` (one line) and the ErrorKind word in extra_info."""
    return flight.FlightServerError(message, extra_info=extra_info(kind))


#: Key of the API-key middleware in the server's middleware dict (``context.get_middleware``).
AUTH_MIDDLEWARE = "mosaico_api_key"


#: Permission each DoAction type requires (SDK 0.7.0 docstrings).
ACTION_PERMISSIONS: dict[str, Permission] = {
    Action.INFO: Permission.Read,
    Action.SEQUENCE_NOTIFICATION_LIST: Permission.Read,
    Action.TOPIC_NOTIFICATION_LIST: Permission.Read,
    Action.SEQUENCE_CREATE: Permission.Write,
    Action.SESSION_CREATE: Permission.Write,
    Action.TOPIC_CREATE: Permission.Write,
    Action.SESSION_FINALIZE: Permission.Write,
    Action.SEQUENCE_NOTIFICATION_CREATE: Permission.Write,
    Action.TOPIC_NOTIFICATION_CREATE: Permission.Write,
    Action.SEQUENCE_DELETE: Permission.Delete,
    Action.SESSION_DELETE: Permission.Delete,
    Action.TOPIC_DELETE: Permission.Delete,
    Action.SEQUENCE_NOTIFICATION_PURGE: Permission.Delete,
    Action.TOPIC_NOTIFICATION_PURGE: Permission.Delete,
    Action.QUERY: Permission.Read,
    Action.TOPIC_FILTER_CLUSTERIZE: Permission.Read,
    Action.TOPIC_FILTER_INTERSECT: Permission.Read,
    Action.API_KEY_CREATE: Permission.Manage,
    Action.API_KEY_STATUS: Permission.Manage,
    Action.API_KEY_REVOKE: Permission.Manage,
}

#: Permission each Flight call requires; DoAction is checked per action type instead
#: (an action this server does not know needs Read, so that only a valid key learns so).
CALL_PERMISSIONS: dict[str, Permission] = {
    "ListFlights": Permission.Read,
    "GetFlightInfo": Permission.Read,
    "GetSchema": Permission.Read,
    "DoGet": Permission.Read,
    "ListActions": Permission.Read,
    "DoExchange": Permission.Read,
    "DoPut": Permission.Write,
}

ACTION_DESCRIPTIONS: dict[str, str] = {
    Action.INFO: "server version and gRPC size limits",
    Action.SEQUENCE_CREATE: "create a sequence {locator, user_metadata}",
    Action.SEQUENCE_DELETE: "delete a sequence and all its data {locator}",
    Action.SESSION_CREATE: "open a session {locator} -> {uuid, locator}",
    Action.SESSION_FINALIZE: "finalize (lock) a session {session_uuid}",
    Action.SESSION_DELETE: "delete an unlocked session {locator}",
    Action.TOPIC_CREATE: "create a topic {session_uuid, locator, serialization_format, ontology_tag, user_metadata} -> {uuid}",
    Action.TOPIC_DELETE: "delete an unlocked topic {locator}",
    Action.SEQUENCE_NOTIFICATION_CREATE: "store a sequence notification {locator, notification_type, msg}",
    Action.SEQUENCE_NOTIFICATION_LIST: "list sequence notifications {locator}",
    Action.SEQUENCE_NOTIFICATION_PURGE: "delete sequence notifications {locator}",
    Action.TOPIC_NOTIFICATION_CREATE: "store a topic notification {locator, notification_type, msg}",
    Action.TOPIC_NOTIFICATION_LIST: "list topic notifications {locator}",
    Action.TOPIC_NOTIFICATION_PURGE: "delete topic notifications {locator}",
    Action.QUERY: "search the catalog {sequence?, topic?, ontology?} -> {items: [{sequence, topics}]}",
    Action.TOPIC_FILTER_CLUSTERIZE: "time windows of a topic's matching rows {locator, ontology, ...} (paged)",
    Action.TOPIC_FILTER_INTERSECT: "time windows where several topics match at once {topics, intersect_dt_ns} (paged)",
    Action.API_KEY_CREATE: "create an API key {permission, description, expires_at_ns?} -> {api_key}",
    Action.API_KEY_STATUS: "status of an API key {fingerprint} -> {fingerprint, permission, description, "
    "created_at_ns, expires_at_ns, revoked}",
    Action.API_KEY_REVOKE: "revoke an API key {fingerprint}",
}


class _ApiKeyCall(flight.ServerMiddleware):
    """Per-call middleware instance: the ``mosaico-api-key-token`` header as received.

    Handlers reach it with ``context.get_middleware(AUTH_MIDDLEWARE)``. Its repr shows the
    key's fingerprint only.
    """

    def __init__(self, api_key: str | None) -> None:
        self._api_key = api_key

    @property
    def api_key(self) -> str | None:
        """The key sent with the call, or None; never log it (use :attr:`fingerprint`)."""
        return self._api_key

    @property
    def fingerprint(self) -> str | None:
        return pauth.api_key_fingerprint(self._api_key) if self._api_key else None

    def __repr__(self) -> str:
        return f"_ApiKeyCall(fingerprint={self.fingerprint!r})"


#: Stand-in for a call that carries several different keys: always "malformed".
_SEVERAL_KEYS = "<several API keys>"


class ApiKeyServerMiddlewareFactory(flight.ServerMiddlewareFactory):
    """Reads the API-key header of each call into an :class:`_ApiKeyCall`, and refuses
    early what the header alone shows.

    ``start_call`` runs before the handler reads anything of the call's stream (a
    DoPut's record batches), so with ``require_api_key`` a call whose header holds no
    key, or a malformed one, is refused here at once. GetSchema is checked here in full
    (it needs Read): an error raised inside pyarrow 26's ``get_schema`` reaches the client
    as a generic error, while one raised from ``start_call`` is a clean UNAUTHENTICATED.
    gRPC has read a unary request (a DoAction body) before this point; pyarrow gives no
    way to bound gRPC's receive size (see :class:`~mosaico_bridge.server.MosaicoServer`).
    """

    def __init__(self, access: AccessControl) -> None:
        self._access = access

    def start_call(self, info: flight.CallInfo, headers: dict) -> _ApiKeyCall:
        values = headers.get(pauth.API_KEY_HEADER) or []
        keys = {v.decode("latin-1") if isinstance(v, bytes) else str(v) for v in values}
        api_key = None if not keys else keys.pop() if len(keys) == 1 else _SEVERAL_KEYS
        if info.method == flight.FlightMethod.GET_SCHEMA:
            self._access.check(api_key, CALL_PERMISSIONS["GetSchema"], "GetSchema")
        else:
            self._access.precheck(api_key, str(info.method.name))
        return _ApiKeyCall(api_key)


class FailureThrottle:
    """Token bucket of failed key checks per peer address (the port is ignored).

    Each failure takes a token; a peer holds at most ``burst`` tokens, refilled at
    ``rate`` per second. A peer with no token left gets its unverified keys refused
    without a scrypt until tokens come back. Keys already verified are never throttled.
    Thread-safe; forgets idle peers.
    """

    def __init__(self, burst: float = 100.0, rate: float = 10.0, max_peers: int = 10_000) -> None:
        self._burst = float(burst)
        self._rate = float(rate)
        self._max_peers = int(max_peers)
        self._buckets: dict[str, tuple[float, float]] = {}  # host -> (tokens, monotonic time)
        self._lock = threading.Lock()

    @staticmethod
    def host(peer: str | None) -> str:
        """``ipv4:127.0.0.1:5555`` -> ``ipv4:127.0.0.1``; ``ipv6:[::1]:5555`` -> ``ipv6:[::1]``."""
        if not peer:
            return "unknown"
        head, sep, tail = peer.rpartition(":")
        return head if sep and tail.isdigit() else peer

    def _tokens(self, host: str, now: float) -> float:
        tokens, stamp = self._buckets.get(host, (self._burst, now))
        return min(self._burst, tokens + (now - stamp) * self._rate)

    def allows(self, peer: str | None) -> bool:
        """True if ``peer`` may have one more key hashed."""
        with self._lock:
            return self._tokens(self.host(peer), time.monotonic()) >= 1.0

    def failed(self, peer: str | None) -> None:
        """Count one failed check of ``peer``."""
        now = time.monotonic()
        host = self.host(peer)
        with self._lock:
            if len(self._buckets) >= self._max_peers:
                full = [h for h in self._buckets if self._tokens(h, now) >= self._burst]
                for h in full or list(self._buckets)[: self._max_peers // 10]:
                    del self._buckets[h]
            self._buckets[host] = (max(0.0, self._tokens(host, now) - 1.0), now)


class RateLimitedLog:
    """At most ``per_second`` log lines a second; the rest are counted and summed up in
    one line when logging resumes."""

    def __init__(self, per_second: int = 10) -> None:
        self._limit = int(per_second)
        self._window = 0
        self._count = 0
        self._dropped = 0
        self._lock = threading.Lock()

    def log(self, level: int, fmt: str, *args: object) -> None:
        window = int(time.monotonic())
        with self._lock:
            if window != self._window:
                dropped, self._dropped = self._dropped, 0
                self._window, self._count = window, 0
                if dropped:
                    logger.log(logging.WARNING, "%d more refused calls were not logged", dropped)
            if self._count >= self._limit:
                self._dropped += 1
                return
            self._count += 1
        logger.log(level, fmt, *args)


class AccessControl:
    """Decides whether a call may proceed.

    Args:
        keys: the key store of the server root.
        require_api_key: True: every call needs a valid key of its level; False
            (passthrough): only the ``api_key_*`` actions need one (a Manage key).
        throttle: failed-attempt throttle per peer (default: 100 failures at once,
            then 10 a second).
    """

    def __init__(self, keys: ApiKeyStore, require_api_key: bool, throttle: FailureThrottle | None = None) -> None:
        self._keys = keys
        self._require = bool(require_api_key)
        self._throttle = throttle or FailureThrottle()
        self._log = RateLimitedLog()

    @property
    def require_api_key(self) -> bool:
        return self._require

    def precheck(self, api_key: str | None, call: str) -> None:
        """With ``require_api_key``, refuse a missing or malformed key from the header alone.

        Raises:
            pyarrow.flight.FlightUnauthenticatedError: ``API key missing`` / ``malformed``.
        """
        if not self._require:
            return
        reason = "missing" if not api_key else "malformed" if pauth.api_key_fingerprint(api_key) is None else None
        if reason is not None:
            exc = AuthenticationFailed(reason)
            self._log.log(logging.INFO, "%s refused: %s", call, exc)
            raise flight.FlightUnauthenticatedError(str(exc))

    def check(
        self, api_key: str | None, required: Permission, call: str, peer: str | None = None
    ) -> ApiKeyRecord | None:
        """Check that ``api_key`` may perform ``call``, which needs ``required``.

        ``peer`` (``context.peer()``) keys the failed-attempt throttle.

        Returns:
            the key's record, or None when passthrough mode lets the call through unchecked.
        Raises:
            pyarrow.flight.FlightUnauthenticatedError: key missing, malformed, unknown,
                revoked, expired, or throttled.
            pyarrow.flight.FlightUnauthorizedError: valid key below ``required``
                (gRPC PERMISSION_DENIED).
            pyarrow.flight.FlightServerError: the keys file cannot be read.
        """
        if not self._require and required < Permission.Manage:
            return None
        try:
            return self._keys.authorize(api_key, required, call, allow_kdf=self._throttle.allows(peer))
        except AuthenticationFailed as exc:
            if exc.reason in ("unknown", "revoked", "expired"):
                self._throttle.failed(peer)
            self._log.log(logging.INFO, "%s refused: %s", call, exc)
            raise flight.FlightUnauthenticatedError(str(exc)) from None
        except PermissionDenied as exc:
            self._log.log(logging.INFO, "%s refused: %s", call, exc)
            raise flight.FlightUnauthorizedError(str(exc)) from None
        except KeyStoreError as exc:
            logger.error("%s refused: %s", call, exc)
            raise flight_error(ErrorKind.INTERNAL, "the server cannot read its API keys") from None
