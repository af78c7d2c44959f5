"""DoAction messages of the mosaicod 0.7 JSON dialect, as typed dataclasses.

Every request and response body is a JSON object. A request is
``Action(type=<name>, body=<JSON>)``; the reply is a stream of Result bodies that, joined,
hold one envelope ``{"action": <name>, "response": {...}}`` (``docs/protocol.md``
§ DoAction). Each dataclass here has ``to_dict()`` (what goes on the wire) and
``from_dict(d)`` (checked parse, raising :class:`MalformedMessageError` that names the
action and the key). Both our client and our server build and read bodies only through
this module.
"""

from __future__ import annotations

import datetime
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from .errors import MalformedMessageError

JsonDict = dict[str, Any]


class Action:
    """DoAction type strings (``docs/protocol.md`` § DoAction)."""

    INFO = "info"
    SEQUENCE_CREATE = "sequence_create"
    SEQUENCE_DELETE = "sequence_delete"
    SESSION_CREATE = "session_create"
    SESSION_FINALIZE = "session_finalize"
    SESSION_DELETE = "session_delete"
    TOPIC_CREATE = "topic_create"
    TOPIC_DELETE = "topic_delete"
    SEQUENCE_NOTIFICATION_CREATE = "sequence_notification_create"
    SEQUENCE_NOTIFICATION_LIST = "sequence_notification_list"
    SEQUENCE_NOTIFICATION_PURGE = "sequence_notification_purge"
    TOPIC_NOTIFICATION_CREATE = "topic_notification_create"
    TOPIC_NOTIFICATION_LIST = "topic_notification_list"
    TOPIC_NOTIFICATION_PURGE = "topic_notification_purge"
    QUERY = "query"
    TOPIC_FILTER_CLUSTERIZE = "topic_filter_clusterize"
    TOPIC_FILTER_INTERSECT = "topic_filter_intersect"
    # Key management: not used by SDK 0.7.0; an intermediate mosaicod had these names.
    API_KEY_CREATE = "api_key_create"
    API_KEY_STATUS = "api_key_status"
    API_KEY_REVOKE = "api_key_revoke"

    @classmethod
    def names(cls) -> list[str]:
        """Every action name, in declaration order."""
        return [v for k, v in vars(cls).items() if k.isupper() and isinstance(v, str)]


#: Serialization formats a topic may declare in ``topic_create``.
SERIALIZATION_FORMATS = ("default", "ragged", "image")

#: The only notification type of 0.7.
NOTIFICATION_ERROR = "error"

#: Share of the server's ``grpc_max_decode_message_size`` a client record batch may use.
BATCH_SIZE_SHARE = 0.9

#: Deepest nesting of JSON objects and arrays accepted in a body.
MAX_JSON_DEPTH = 64


# --------------------------------------------------------------------------------------
# JSON bodies and envelopes
# --------------------------------------------------------------------------------------


def _refuse_constant(name: str) -> float:
    raise MalformedMessageError(f"JSON holds {name}, which is not a number")


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of a JSON value, stopping once past ``limit``."""
    stack = [(value, 1)]
    deepest = 0
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if deepest > limit:
            return deepest
        if isinstance(item, dict):
            stack.extend((v, level + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, level + 1) for v in item)
    return deepest


def encode_body(payload: Mapping[str, Any]) -> bytes:
    """JSON-encode a body or envelope (UTF-8).

    Raises:
        MalformedMessageError: the payload holds NaN / Infinity or a value JSON cannot carry.
    """
    try:
        return json.dumps(payload, separators=(",", ":"), allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise MalformedMessageError(f"body cannot be sent as JSON: {exc}") from None


def decode_body(body: bytes | memoryview | None) -> JsonDict:
    """Parse a JSON body; an empty body is ``{}``.

    Raises:
        MalformedMessageError: not UTF-8 JSON, not an object, NaN / Infinity, or nested
            deeper than :data:`MAX_JSON_DEPTH`.
    """
    if body is None or len(body) == 0:
        return {}
    try:
        value = json.loads(bytes(body).decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedMessageError(f"body is not JSON: {exc}") from None
    except RecursionError:
        raise MalformedMessageError(f"JSON nests deeper than {MAX_JSON_DEPTH} levels") from None
    if not isinstance(value, dict):
        raise MalformedMessageError("body is not a JSON object")
    if _depth(value, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise MalformedMessageError(f"JSON nests deeper than {MAX_JSON_DEPTH} levels")
    return value


def response_envelope(name: str, response: Mapping[str, Any] | None) -> bytes:
    """Server side: the Result body ``{"action": name, "response": {...}}``."""
    return encode_body({"action": name, "response": dict(response) if response is not None else None})


def parse_envelope(name: str, joined: bytes) -> JsonDict | None:
    """Client side: the ``response`` object of one envelope, or None for "no response".

    An empty body, ``"action": "empty"`` or a missing ``response`` mean no response.

    Raises:
        MalformedMessageError: not JSON, a non-object response, or a reply for another action.
    """
    if not joined:
        return None
    envelope = decode_body(joined)
    returned = envelope.get("action")
    if returned is None or returned == "empty":
        return None
    if returned != name:
        raise MalformedMessageError(f"reply to action {name!r} is for action {returned!r}")
    response = envelope.get("response")
    if response is None:
        return None
    if not isinstance(response, dict):
        raise MalformedMessageError(f"reply to action {name!r} has a non-object response")
    return response


def parse_response(name: str, bodies: list[bytes]) -> JsonDict | None:
    """Client side: join the Result bodies of one reply and return its ``response`` (or None)."""
    return parse_envelope(name, b"".join(bodies))


# --------------------------------------------------------------------------------------
# Checked field access
# --------------------------------------------------------------------------------------

T = TypeVar("T")
_MISSING: Any = object()


def _get(d: Mapping[str, Any], key: str, kind: type[T], where: str, default: Any = _MISSING) -> T:
    """``d[key]`` checked to be a ``kind`` (``bool`` is no ``int``); a None or absent value
    gives ``default`` when one is given.

    Raises:
        MalformedMessageError: naming ``where`` and ``key``.
    """
    value = d.get(key)
    if value is None:
        if default is _MISSING:
            raise MalformedMessageError(f"{where} lacks {key!r}")
        return default() if callable(default) else default  # type: ignore[no-any-return]
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise MalformedMessageError(f"{where} field {key!r} must be an integer")
    if kind is float and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise MalformedMessageError(f"{where} field {key!r} must be a number")
    if kind is not int and kind is not float and not isinstance(value, kind):
        raise MalformedMessageError(f"{where} field {key!r} must be a {_json_name(kind)}")
    result: T = value
    return result


def _json_name(kind: type) -> str:
    return {str: "string", dict: "JSON object", list: "JSON array", bool: "boolean"}.get(kind, kind.__name__)


def _opt_int(d: Mapping[str, Any], key: str, where: str) -> int | None:
    return _get(d, key, int, where, None)


def _request(name: str) -> str:
    return f"{name} request"


def _reply(name: str) -> str:
    return f"reply to {name!r}"


# --------------------------------------------------------------------------------------
# Requests
# --------------------------------------------------------------------------------------


class Request:
    """Base of the request bodies; ``ACTION`` is the DoAction type."""

    ACTION: ClassVar[str]

    def to_dict(self) -> JsonDict:
        raise NotImplementedError

    def body(self) -> bytes:
        return encode_body(self.to_dict())


@dataclass(frozen=True)
class InfoRequest(Request):
    ACTION: ClassVar[str] = Action.INFO

    def to_dict(self) -> JsonDict:
        return {}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> InfoRequest:
        return cls()


@dataclass(frozen=True)
class LocatorRequest(Request):
    """A body holding only ``{"locator": ...}``; subclasses name the action."""

    locator: str

    def to_dict(self) -> JsonDict:
        return {"locator": self.locator}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Any:
        return cls(locator=_get(d, "locator", str, _request(cls.ACTION)))


@dataclass(frozen=True)
class SequenceCreateRequest(Request):
    ACTION: ClassVar[str] = Action.SEQUENCE_CREATE
    locator: str
    user_metadata: JsonDict = field(default_factory=dict)

    def to_dict(self) -> JsonDict:
        return {"locator": self.locator, "user_metadata": dict(self.user_metadata)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SequenceCreateRequest:
        where = _request(cls.ACTION)
        return cls(_get(d, "locator", str, where), _get(d, "user_metadata", dict, where, dict))


@dataclass(frozen=True)
class SequenceDeleteRequest(LocatorRequest):
    ACTION: ClassVar[str] = Action.SEQUENCE_DELETE


@dataclass(frozen=True)
class SessionCreateRequest(LocatorRequest):
    ACTION: ClassVar[str] = Action.SESSION_CREATE


@dataclass(frozen=True)
class SessionDeleteRequest(LocatorRequest):
    """``locator`` is the session locator ``seq:<id>``."""

    ACTION: ClassVar[str] = Action.SESSION_DELETE


@dataclass(frozen=True)
class SessionFinalizeRequest(Request):
    ACTION: ClassVar[str] = Action.SESSION_FINALIZE
    session_uuid: str

    def to_dict(self) -> JsonDict:
        return {"session_uuid": self.session_uuid}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SessionFinalizeRequest:
        return cls(_get(d, "session_uuid", str, _request(cls.ACTION)))


@dataclass(frozen=True)
class TopicCreateRequest(Request):
    """``locator`` is ``seq/topic/path``; ``serialization_format`` one of
    :data:`SERIALIZATION_FORMATS`."""

    ACTION: ClassVar[str] = Action.TOPIC_CREATE
    session_uuid: str
    locator: str
    serialization_format: str
    ontology_tag: str
    user_metadata: JsonDict = field(default_factory=dict)

    def to_dict(self) -> JsonDict:
        return {
            "session_uuid": self.session_uuid,
            "locator": self.locator,
            "serialization_format": self.serialization_format,
            "ontology_tag": self.ontology_tag,
            "user_metadata": dict(self.user_metadata),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TopicCreateRequest:
        where = _request(cls.ACTION)
        fmt = _get(d, "serialization_format", str, where)
        if fmt not in SERIALIZATION_FORMATS:
            raise MalformedMessageError(
                f"{where} field 'serialization_format' must be one of {', '.join(SERIALIZATION_FORMATS)}, got {fmt!r}"
            )
        return cls(
            _get(d, "session_uuid", str, where),
            _get(d, "locator", str, where),
            fmt,
            _get(d, "ontology_tag", str, where),
            _get(d, "user_metadata", dict, where, dict),
        )


@dataclass(frozen=True)
class TopicDeleteRequest(LocatorRequest):
    ACTION: ClassVar[str] = Action.TOPIC_DELETE


@dataclass(frozen=True)
class NotificationCreateRequest(Request):
    """``locator`` is ``seq`` (sequence notification) or ``seq/topic`` (topic notification)."""

    ACTION: ClassVar[str] = Action.SEQUENCE_NOTIFICATION_CREATE
    locator: str
    msg: str
    notification_type: str = NOTIFICATION_ERROR

    def to_dict(self) -> JsonDict:
        return {"locator": self.locator, "notification_type": self.notification_type, "msg": self.msg}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Any:
        where = _request(cls.ACTION)
        return cls(
            _get(d, "locator", str, where),
            _get(d, "msg", str, where),
            _get(d, "notification_type", str, where, NOTIFICATION_ERROR),
        )


@dataclass(frozen=True)
class SequenceNotificationCreateRequest(NotificationCreateRequest):
    ACTION: ClassVar[str] = Action.SEQUENCE_NOTIFICATION_CREATE


@dataclass(frozen=True)
class TopicNotificationCreateRequest(NotificationCreateRequest):
    ACTION: ClassVar[str] = Action.TOPIC_NOTIFICATION_CREATE


@dataclass(frozen=True)
class SequenceNotificationListRequest(LocatorRequest):
    ACTION: ClassVar[str] = Action.SEQUENCE_NOTIFICATION_LIST


@dataclass(frozen=True)
class SequenceNotificationPurgeRequest(LocatorRequest):
    ACTION: ClassVar[str] = Action.SEQUENCE_NOTIFICATION_PURGE


@dataclass(frozen=True)
class TopicNotificationListRequest(LocatorRequest):
    ACTION: ClassVar[str] = Action.TOPIC_NOTIFICATION_LIST


@dataclass(frozen=True)
class TopicNotificationPurgeRequest(LocatorRequest):
    ACTION: ClassVar[str] = Action.TOPIC_NOTIFICATION_PURGE


@dataclass(frozen=True)
class ApiKeyCreateRequest(Request):
    """``permission`` is a wire name (``read`` ...); ``expires_at_ns`` ns since the epoch or None."""

    ACTION: ClassVar[str] = Action.API_KEY_CREATE
    permission: str
    description: str = ""
    expires_at_ns: int | None = None

    def to_dict(self) -> JsonDict:
        body: JsonDict = {"permission": self.permission, "description": self.description}
        if self.expires_at_ns is not None:
            body["expires_at_ns"] = int(self.expires_at_ns)
        return body

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ApiKeyCreateRequest:
        where = _request(cls.ACTION)
        return cls(
            _get(d, "permission", str, where),
            _get(d, "description", str, where, ""),
            _opt_int(d, "expires_at_ns", where),
        )


@dataclass(frozen=True)
class FingerprintRequest(Request):
    """``{"fingerprint": "<8 hex>"}``."""

    ACTION: ClassVar[str] = Action.API_KEY_STATUS
    fingerprint: str

    def to_dict(self) -> JsonDict:
        return {"fingerprint": self.fingerprint}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Any:
        return cls(_get(d, "fingerprint", str, _request(cls.ACTION)))


@dataclass(frozen=True)
class ApiKeyStatusRequest(FingerprintRequest):
    ACTION: ClassVar[str] = Action.API_KEY_STATUS


@dataclass(frozen=True)
class ApiKeyRevokeRequest(FingerprintRequest):
    ACTION: ClassVar[str] = Action.API_KEY_REVOKE


#: Action name -> request class, for the server's parsing.
REQUESTS: dict[str, Any] = {
    cls.ACTION: cls
    for cls in (
        InfoRequest,
        SequenceCreateRequest,
        SequenceDeleteRequest,
        SessionCreateRequest,
        SessionFinalizeRequest,
        SessionDeleteRequest,
        TopicCreateRequest,
        TopicDeleteRequest,
        SequenceNotificationCreateRequest,
        SequenceNotificationListRequest,
        SequenceNotificationPurgeRequest,
        TopicNotificationCreateRequest,
        TopicNotificationListRequest,
        TopicNotificationPurgeRequest,
        ApiKeyCreateRequest,
        ApiKeyStatusRequest,
        ApiKeyRevokeRequest,
    )
}


def parse_request(name: str, body: bytes | memoryview | None) -> Any:
    """Server side: decode the body of action ``name`` into its request dataclass.

    Raises:
        MalformedMessageError: the body is not a JSON object, or a key is missing or of
            the wrong type (the message names the action and the key).
        KeyError: ``name`` has no request class here.
    """
    return REQUESTS[name].from_dict(decode_body(body))


# --------------------------------------------------------------------------------------
# Responses
# --------------------------------------------------------------------------------------

_SEMVER = re.compile(r"^(\d+)\.(\d+)\.(\d+)(?:-(.+))?$")


@dataclass(frozen=True)
class InfoResponse:
    """Reply of ``info``: server version and message size limits in bytes.

    All three size keys are mandatory for SDK 0.7.0 clients.
    """

    version: str
    grpc_max_decode_message_size: int
    grpc_max_encode_message_size: int
    grpc_target_encode_message_size: int

    def to_dict(self) -> JsonDict:
        match = _SEMVER.match(self.version)
        if not match:
            raise MalformedMessageError(f"server version {self.version!r} is not semver")
        semver: JsonDict = {"major": int(match[1]), "minor": int(match[2]), "patch": int(match[3])}
        if match[4]:
            semver["pre"] = match[4]
        return {
            "version": self.version,
            "semver": semver,
            "config": {
                "grpc_max_decode_message_size": int(self.grpc_max_decode_message_size),
                "grpc_max_encode_message_size": int(self.grpc_max_encode_message_size),
                "grpc_target_encode_message_size": int(self.grpc_target_encode_message_size),
            },
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> InfoResponse:
        where = _reply(Action.INFO)
        if d is None:
            raise MalformedMessageError(f"server sent no {where}")
        config = _get(d, "config", dict, where)
        return cls(
            version=str(_get(d, "version", str, where)),
            grpc_max_decode_message_size=_get(config, "grpc_max_decode_message_size", int, where),
            grpc_max_encode_message_size=_get(config, "grpc_max_encode_message_size", int, where),
            grpc_target_encode_message_size=_get(config, "grpc_target_encode_message_size", int, where),
        )


@dataclass(frozen=True)
class SessionCreateResponse:
    """Reply of ``session_create``: the session's uuid (for ``topic_create`` and
    ``session_finalize``) and its locator ``seq:<id>``."""

    uuid: str
    locator: str

    def to_dict(self) -> JsonDict:
        return {"uuid": self.uuid, "locator": self.locator}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> SessionCreateResponse:
        where = _reply(Action.SESSION_CREATE)
        if d is None:
            raise MalformedMessageError(f"server sent no {where}")
        return cls(_get(d, "uuid", str, where), _get(d, "locator", str, where))


@dataclass(frozen=True)
class TopicCreateResponse:
    """Reply of ``topic_create``: the topic's uuid (goes into the DoPut descriptor)."""

    uuid: str

    def to_dict(self) -> JsonDict:
        return {"uuid": self.uuid}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> TopicCreateResponse:
        where = _reply(Action.TOPIC_CREATE)
        if d is None:
            raise MalformedMessageError(f"server sent no {where}")
        return cls(_get(d, "uuid", str, where))


def notification_datetime(created_at_ns: int) -> str:
    """``created_datetime`` of a notification: ISO-8601 UTC with microseconds and a
    trailing `` UTC``, e.g. ``2025-01-31T12:00:00.123456 UTC``."""
    seconds, nanos = divmod(int(created_at_ns), 1_000_000_000)
    stamp = datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)
    return f"{stamp.strftime('%Y-%m-%dT%H:%M:%S')}.{nanos // 1000:06d} UTC"


@dataclass(frozen=True)
class Notification:
    """A stored notification; ``name`` is ``seq`` or ``seq/topic``, ``created_datetime``
    ISO-8601 text (see :func:`notification_datetime`)."""

    name: str
    notification_type: str
    message: str
    created_datetime: str

    def to_dict(self) -> JsonDict:
        return {
            "name": self.name,
            "notification_type": self.notification_type,
            "msg": self.message,
            "created_datetime": self.created_datetime,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], default_name: str = "") -> Notification:
        where = "notification"
        return cls(
            name=_get(d, "name", str, where, default_name),
            notification_type=_get(d, "notification_type", str, where, NOTIFICATION_ERROR),
            message=_get(d, "msg", str, where, ""),
            created_datetime=_get(d, "created_datetime", str, where, ""),
        )


@dataclass(frozen=True)
class NotificationListResponse:
    """Reply of ``*_notification_list``."""

    notifications: tuple[Notification, ...] = ()

    def to_dict(self) -> JsonDict:
        return {"notifications": [n.to_dict() for n in self.notifications]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None, default_name: str = "") -> NotificationListResponse:
        if d is None:
            return cls()
        items = _get(d, "notifications", list, _reply("notification_list"), list)
        return cls(tuple(Notification.from_dict(n, default_name) for n in items if isinstance(n, dict)))


@dataclass(frozen=True)
class ApiKeyCreateResponse:
    """Reply of ``api_key_create``: the only message that ever carries a whole key."""

    api_key: str

    def to_dict(self) -> JsonDict:
        return {"api_key": self.api_key}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> ApiKeyCreateResponse | None:
        if d is None:
            return None
        return cls(_get(d, "api_key", str, _reply(Action.API_KEY_CREATE)))


@dataclass(frozen=True)
class ApiKeyStatusResponse:
    """Reply of ``api_key_status``; times in ns since the Unix epoch, ``expires_at_ns``
    None for a key that does not expire. ``permission`` is a wire name."""

    fingerprint: str
    permission: str
    description: str
    created_at_ns: int
    expires_at_ns: int | None = None
    revoked: bool = False

    def to_dict(self) -> JsonDict:
        return {
            "fingerprint": self.fingerprint,
            "permission": self.permission,
            "description": self.description,
            "created_at_ns": int(self.created_at_ns),
            "expires_at_ns": int(self.expires_at_ns) if self.expires_at_ns is not None else None,
            "revoked": bool(self.revoked),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> ApiKeyStatusResponse | None:
        if d is None:
            return None
        where = _reply(Action.API_KEY_STATUS)
        return cls(
            fingerprint=_get(d, "fingerprint", str, where),
            permission=_get(d, "permission", str, where),
            description=_get(d, "description", str, where, ""),
            created_at_ns=_get(d, "created_at_ns", int, where),
            expires_at_ns=_opt_int(d, "expires_at_ns", where),
            revoked=_get(d, "revoked", bool, where, False),
        )


def finite_json(value: Any) -> bool:
    """True if ``value`` (a JSON-like tree) holds no NaN or infinite float."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return False
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return True


Encoder = Callable[[Any], JsonDict]
