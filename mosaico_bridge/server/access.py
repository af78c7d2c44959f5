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
from typing import Callable, Optional

import pyarrow.flight as flight

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

    def __init__(self, api_key: Optional[str]) -> None:
        self._api_key = api_key

    @property
    def api_key(self) -> Optional[str]:
        """The key sent with the call, or None; never log it (use :attr:`fingerprint`)."""
        return self._api_key

    @property
    def fingerprint(self) -> Optional[str]:
        return pauth.api_key_fingerprint(self._api_key) if self._api_key else None

    def __repr__(self) -> str:
        return f"_ApiKeyCall(fingerprint={self.fingerprint!r})"


#: Stand-in for a call that carries several different keys: always "malformed".
_SEVERAL_KEYS = "<several API keys>"


class ApiKeyServerMiddlewareFactory(flight.ServerMiddlewareFactory):
    """Reads the API-key header of each call into an :class:`_ApiKeyCall`.

    GetSchema is checked here already (it needs Read): pyarrow 26 turns an error raised
    inside ``get_schema`` into a generic error carrying a server traceback, while an
    error raised from ``start_call`` reaches the client as a clean UNAUTHENTICATED.

    Args:
        check: ``check(api_key, required, call)``, raising a Flight error to refuse.
    """

    def __init__(self, check: Callable[[Optional[str], Permission, str], Optional[ApiKeyRecord]]) -> None:
        self._check = check

    def start_call(self, info: flight.CallInfo, headers: dict) -> _ApiKeyCall:
        values = headers.get(pauth.API_KEY_HEADER) or []
        keys = {v.decode("latin-1") if isinstance(v, bytes) else str(v) for v in values}
        api_key = None if not keys else keys.pop() if len(keys) == 1 else _SEVERAL_KEYS
        if info.method == flight.FlightMethod.GET_SCHEMA:
            self._check(api_key, CALL_PERMISSIONS["GetSchema"], "GetSchema")
        return _ApiKeyCall(api_key)


class AccessControl:
    """Decides whether a call may proceed.

    Args:
        keys: the key store of the server root.
        require_api_key: True: every call needs a valid key of its level; False
            (passthrough): only the ``api_key_*`` actions need one (a Manage key).
    """

    def __init__(self, keys: ApiKeyStore, require_api_key: bool) -> None:
        self._keys = keys
        self._require = bool(require_api_key)

    @property
    def require_api_key(self) -> bool:
        return self._require

    def check(self, api_key: Optional[str], required: Permission, call: str) -> Optional[ApiKeyRecord]:
        """Check that ``api_key`` may perform ``call``, which needs ``required``.

        Returns:
            the key's record, or None when passthrough mode lets the call through unchecked.
        Raises:
            pyarrow.flight.FlightUnauthenticatedError: key missing, malformed, unknown,
                revoked or expired.
            pyarrow.flight.FlightUnauthorizedError: valid key below ``required``
                (gRPC PERMISSION_DENIED).
            pyarrow.flight.FlightServerError: the keys file cannot be read.
        """
        if not self._require and required < Permission.Manage:
            return None
        try:
            return self._keys.authorize(api_key, required, call)
        except AuthenticationFailed as exc:
            logger.info("%s refused: %s", call, exc)
            raise flight.FlightUnauthenticatedError(str(exc)) from None
        except PermissionDenied as exc:
            logger.info("%s refused: %s", call, exc)
            raise flight.FlightUnauthorizedError(str(exc)) from None
        except KeyStoreError as exc:
            logger.error("%s refused: %s", call, exc)
            raise flight_error(ErrorKind.INTERNAL, "the server cannot read its API keys") from None

