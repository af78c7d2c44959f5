"""The Mosaico wire format, in one place.

This module alone knows the strings and JSON shapes that travel over Arrow Flight
between a Mosaico client and a Mosaico server in the JSON dialect of ``mosaicod``
0.7 (the one the official SDK ``mosaicolabs`` 0.7.0 speaks). Both our client and our
embedded server build and parse messages only through it, so a change of dialect is a
change of this file. Section numbers refer to ``shared/docs/mosaico-protocol.md``.

Nothing here performs I/O: functions take and return plain values, ``bytes``,
:class:`pyarrow.flight.Action` and :class:`pyarrow.flight.FlightDescriptor`.
"""

from __future__ import annotations

import datetime
import json
import re
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import pyarrow as pa
import pyarrow.flight as flight

# --------------------------------------------------------------------------------------
# §1 Connection
# --------------------------------------------------------------------------------------

#: gRPC metadata header carrying the API key on every call (§1).
API_KEY_HEADER = "mosaico-api-key-token"

#: Default port of a Mosaico server.
DEFAULT_PORT = 6726

#: Environment variables read by ``MosaicoClient.from_env`` (§1).
ENV_API_KEY = "MOSAICO_API_KEY"
ENV_TLS_CERT_FILE = "MOSAICO_TLS_CERT_FILE"

#: Share of the server's ``grpc_max_decode_message_size`` a client batch may use (§1).
BATCH_SIZE_SHARE = 0.9

#: Shape of an API key: ``msco_`` + 32 lowercase alphanumerics + ``_`` + 8 hex (§1).
API_KEY_RE = re.compile(r"^msco_([a-z0-9]{32})_([0-9a-f]{8})$")


#: Shape of an API key fingerprint: 8 lowercase hex characters (§1).
API_KEY_FINGERPRINT_RE = re.compile(r"^[0-9a-f]{8}$")


def api_key_fingerprint(api_key: str) -> Optional[str]:
    """Return the 8-hex fingerprint that ends a well-formed API key, or None (§1)."""
    match = API_KEY_RE.match(api_key or "")
    return match.group(2) if match else None


def make_api_key(secret: str, fingerprint: str) -> str:
    """``msco_<secret>_<fingerprint>``: 32 lowercase alphanumerics, 8 hex (§1).

    Raises:
        WireError: if the parts do not have that shape (the message never holds the secret).
    """
    key = f"msco_{secret}_{fingerprint}"
    if not API_KEY_RE.match(key):
        raise WireError("an API key needs 32 lowercase alphanumerics and an 8-hex fingerprint")
    return key


def location(host: str, port: int, tls: bool) -> str:
    """Flight URI of a server: ``grpc://host:port`` or ``grpc+tls://host:port`` (§1).

    An IPv6 address is put in brackets (``grpc://[::1]:6726``).
    """
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{'grpc+tls' if tls else 'grpc'}://{host}:{port}"


# --------------------------------------------------------------------------------------
# §2 DoAction names
# --------------------------------------------------------------------------------------


class Action:
    """DoAction type strings of the mosaicod 0.7 JSON dialect (§2)."""

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
    # Key management: not in SDK 0.7.0; an intermediate mosaicod had these names (§1, §8).
    API_KEY_CREATE = "api_key_create"
    API_KEY_STATUS = "api_key_status"
    API_KEY_REVOKE = "api_key_revoke"


#: Serialization formats accepted by ``topic_create`` (§2).
SERIALIZATION_FORMATS = ("default", "ragged", "image")

#: The only notification type in 0.7 (§2).
NOTIFICATION_ERROR = "error"


class WireError(ValueError):
    """A message that does not have the shape the protocol requires."""


def encode_body(payload: Mapping[str, Any]) -> bytes:
    """JSON-encode a DoAction request body or response envelope (UTF-8 bytes)."""
    return json.dumps(payload, separators=(",", ":")).encode("utf-8")


def decode_body(body: bytes | memoryview | None) -> dict[str, Any]:
    """Parse a JSON DoAction body; an empty body is ``{}``.

    Raises:
        WireError: if the body is not a JSON object.
    """
    if body is None or len(body) == 0:
        return {}
    try:
        value = json.loads(bytes(body).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WireError(f"action body is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise WireError("action body is not a JSON object")
    return value


def action(name: str, payload: Mapping[str, Any]) -> flight.Action:
    """Build the Flight action ``name`` with a JSON body (§2)."""
    return flight.Action(name, encode_body(payload))


def response_envelope(name: str, response: Optional[Mapping[str, Any]]) -> bytes:
    """Server side: the single Result body ``{"action": name, "response": {...}}`` (§2)."""
    return encode_body({"action": name, "response": dict(response) if response is not None else None})


def parse_response(name: str, bodies: list[bytes]) -> Optional[dict[str, Any]]:
    """Client side: join the Result bodies and return the ``response`` object, or None.

    An empty stream, ``"action": "empty"`` or a missing ``response`` mean "no response"
    (§2). A response for another action is a protocol error.

    Raises:
        WireError: if the reply is not JSON or answers a different action.
    """
    joined = b"".join(bodies)
    if not joined:
        return None
    envelope = decode_body(joined)
    returned = envelope.get("action")
    if returned is None or returned == "empty":
        return None
    if returned != name:
        raise WireError(f"reply to action {name!r} is for action {returned!r}")
    response = envelope.get("response")
    if response is None:
        return None
    if not isinstance(response, dict):
        raise WireError(f"reply to action {name!r} has a non-object response")
    return response


# Request bodies, one function per action (§2 table). ----------------------------------


def info_request() -> dict[str, Any]:
    return {}


def sequence_create_request(sequence: str, user_metadata: Mapping[str, Any]) -> dict[str, Any]:
    return {"locator": sequence_locator(sequence), "user_metadata": dict(user_metadata)}


def session_create_request(sequence: str) -> dict[str, Any]:
    return {"locator": sequence_locator(sequence)}


def session_finalize_request(session_uuid: str) -> dict[str, Any]:
    return {"session_uuid": session_uuid}


def session_delete_request(session_locator: str) -> dict[str, Any]:
    return {"locator": session_locator}


def sequence_delete_request(sequence: str) -> dict[str, Any]:
    return {"locator": sequence_locator(sequence)}


def topic_create_request(
    session_uuid: str,
    sequence: str,
    topic: str,
    serialization_format: str,
    ontology_tag: str,
    user_metadata: Mapping[str, Any],
) -> dict[str, Any]:
    if serialization_format not in SERIALIZATION_FORMATS:
        raise WireError(f"serialization_format must be one of {SERIALIZATION_FORMATS}, got {serialization_format!r}")
    return {
        "session_uuid": session_uuid,
        "locator": topic_locator(sequence, topic),
        "serialization_format": serialization_format,
        "ontology_tag": ontology_tag,
        "user_metadata": dict(user_metadata),
    }


def topic_delete_request(sequence: str, topic: str) -> dict[str, Any]:
    return {"locator": topic_locator(sequence, topic)}


def notification_create_request(locator: str, msg: str) -> dict[str, Any]:
    return {"locator": locator, "notification_type": NOTIFICATION_ERROR, "msg": msg}


def locator_request(locator: str) -> dict[str, Any]:
    """Body of the ``*_notification_list`` / ``*_notification_purge`` actions (§2)."""
    return {"locator": locator}


def api_key_create_request(permission: str, description: str, expires_at_ns: Optional[int]) -> dict[str, Any]:
    body: dict[str, Any] = {"permission": permission, "description": description}
    if expires_at_ns is not None:
        body["expires_at_ns"] = int(expires_at_ns)
    return body


def api_key_fingerprint_request(fingerprint: str) -> dict[str, Any]:
    """Body of ``api_key_status`` and ``api_key_revoke``: ``{"fingerprint": "<8 hex>"}``."""
    return {"fingerprint": fingerprint}


def api_key_create_response(api_key: str) -> dict[str, Any]:
    """Server side: the ``api_key_create`` reply ``{"api_key": "msco_..."}``; the only
    message that ever carries a whole key."""
    return {"api_key": api_key}


def api_key_status_response(
    fingerprint: str,
    permission: str,
    description: str,
    created_at_ns: int,
    expires_at_ns: Optional[int],
    revoked: bool,
) -> dict[str, Any]:
    """Server side: the ``api_key_status`` reply; times in ns since the Unix epoch,
    ``expires_at_ns`` None for a key that does not expire."""
    return {
        "fingerprint": fingerprint,
        "permission": permission,
        "description": description,
        "created_at_ns": int(created_at_ns),
        "expires_at_ns": int(expires_at_ns) if expires_at_ns is not None else None,
        "revoked": bool(revoked),
    }


# Server side: required keys and JSON types of each request body (§2 table). ----------

_REQUEST_FIELDS: dict[str, dict[str, type]] = {
    Action.INFO: {},
    Action.SEQUENCE_CREATE: {"locator": str},
    Action.SEQUENCE_DELETE: {"locator": str},
    Action.SESSION_CREATE: {"locator": str},
    Action.SESSION_FINALIZE: {"session_uuid": str},
    Action.SESSION_DELETE: {"locator": str},
    Action.TOPIC_CREATE: {"session_uuid": str, "locator": str, "serialization_format": str, "ontology_tag": str},
    Action.TOPIC_DELETE: {"locator": str},
    Action.SEQUENCE_NOTIFICATION_CREATE: {"locator": str, "msg": str},
    Action.SEQUENCE_NOTIFICATION_LIST: {"locator": str},
    Action.SEQUENCE_NOTIFICATION_PURGE: {"locator": str},
    Action.TOPIC_NOTIFICATION_CREATE: {"locator": str, "msg": str},
    Action.TOPIC_NOTIFICATION_LIST: {"locator": str},
    Action.TOPIC_NOTIFICATION_PURGE: {"locator": str},
    Action.API_KEY_CREATE: {"permission": str},
    Action.API_KEY_STATUS: {"fingerprint": str},
    Action.API_KEY_REVOKE: {"fingerprint": str},
}

#: Optional request keys per action: JSON type and the value used when absent (§2).
_REQUEST_DEFAULTS: dict[str, dict[str, tuple[type, Any]]] = {
    Action.SEQUENCE_CREATE: {"user_metadata": (dict, dict)},
    Action.TOPIC_CREATE: {"user_metadata": (dict, dict)},
    Action.SEQUENCE_NOTIFICATION_CREATE: {"notification_type": (str, lambda: NOTIFICATION_ERROR)},
    Action.TOPIC_NOTIFICATION_CREATE: {"notification_type": (str, lambda: NOTIFICATION_ERROR)},
    Action.API_KEY_CREATE: {"description": (str, str), "expires_at_ns": (int, lambda: None)},
}


def parse_request(name: str, body: bytes | memoryview | None) -> dict[str, Any]:
    """Server side: decode the JSON body of action ``name`` and check its keys (§2).

    Missing optional keys (``user_metadata``, ``notification_type``) get their
    defaults (``{}``, ``"error"``). Keys not in the table pass through unchecked, and
    so does the whole body of an action the table does not know.

    Raises:
        WireError: if the body is not a JSON object, or a required key is missing or
            has the wrong JSON type; the message names the action and the key.
    """
    payload = decode_body(body)
    for key, kind in _REQUEST_FIELDS.get(name, {}).items():
        if key not in payload:
            raise WireError(f"{name} request lacks {key!r}")
        if not isinstance(payload[key], kind):
            raise WireError(f"{name} request field {key!r} must be a {kind.__name__}")
    for key, (kind, default) in _REQUEST_DEFAULTS.get(name, {}).items():
        if payload.get(key) is None:
            payload[key] = default()
        elif not isinstance(payload[key], kind):
            raise WireError(f"{name} request field {key!r} must be a {kind.__name__}")
    return payload


# Response bodies the server must send (§2 table). -------------------------------------


def info_response(version: str, max_decode: int, max_encode: int, target_encode: int) -> dict[str, Any]:
    """The ``info`` reply; all three config keys are mandatory for SDK 0.7.0 (§2)."""
    match = re.match(r"^(\d+)\.(\d+)\.(\d+)(?:-(.+))?$", version)
    if not match:
        raise WireError(f"server version {version!r} is not semver")
    semver: dict[str, Any] = {"major": int(match[1]), "minor": int(match[2]), "patch": int(match[3])}
    if match[4]:
        semver["pre"] = match[4]
    return {
        "version": version,
        "semver": semver,
        "config": {
            "grpc_max_decode_message_size": int(max_decode),
            "grpc_max_encode_message_size": int(max_encode),
            "grpc_target_encode_message_size": int(target_encode),
        },
    }


def session_create_response(session_uuid: str, session_locator: str) -> dict[str, Any]:
    return {"uuid": session_uuid, "locator": session_locator}


def topic_create_response(topic_uuid: str) -> dict[str, Any]:
    return {"uuid": topic_uuid}


def notifications_response(notifications: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Each notification: ``name``, ``notification_type``, ``msg``, ``created_datetime`` (§2)."""
    return {"notifications": [dict(n) for n in notifications]}


def notification_datetime(created_at_ns: int) -> str:
    """``created_datetime`` of a notification: ISO-8601 UTC with microseconds and a
    trailing `` UTC``, e.g. ``2025-01-31T12:00:00.123456 UTC`` (§2)."""
    seconds, nanos = divmod(int(created_at_ns), 1_000_000_000)
    stamp = datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc)
    return f"{stamp.strftime('%Y-%m-%dT%H:%M:%S')}.{nanos // 1000:06d} UTC"


def notification_entry(name: str, notification_type: str, msg: str, created_at_ns: int) -> dict[str, Any]:
    """One item of a ``*_notification_list`` reply; ``name`` is ``seq`` or ``seq/topic`` (§2)."""
    return {
        "name": name,
        "notification_type": notification_type,
        "msg": msg,
        "created_datetime": notification_datetime(created_at_ns),
    }


def require(response: Optional[Mapping[str, Any]], name: str, *keys: str) -> dict[str, Any]:
    """Check that a reply carries ``keys``; return it as a dict.

    Raises:
        WireError: naming the action and the missing key.
    """
    if response is None:
        raise WireError(f"server sent no reply to {name!r}")
    missing = [k for k in keys if k not in response]
    if missing:
        raise WireError(f"reply to {name!r} lacks {', '.join(missing)}")
    return dict(response)


# --------------------------------------------------------------------------------------
# Names and locators (§3 step 1 and 4, §6)
# --------------------------------------------------------------------------------------

_SEQUENCE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_TOPIC_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_/-]*$")


def sequence_locator(name: str) -> str:
    """Locator of a sequence: the name with one leading ``/`` and whitespace stripped (§6)."""
    name = name.strip()
    return name[1:] if name.startswith("/") else name


def validate_sequence_name(name: str) -> str:
    """Return the sequence locator of ``name``.

    Raises:
        ValueError: if the name is empty, does not start with an alphanumeric or holds
            characters outside ``[A-Za-z0-9_-]`` (§3 step 1).
    """
    if not isinstance(name, str):
        raise ValueError(f"sequence name must be a string, got {type(name).__name__}")
    loc = sequence_locator(name)
    if not _SEQUENCE_NAME_RE.match(loc):
        raise ValueError(
            f"invalid sequence name {name!r}: it must start with a letter or digit and "
            "hold only letters, digits, '_' and '-'"
        )
    return loc


def topic_path(topic: str) -> str:
    """Topic name without its leading ``/`` (§3 step 4)."""
    topic = topic.strip()
    return topic[1:] if topic.startswith("/") else topic


def validate_topic_name(topic: str) -> str:
    """Return the topic path of ``topic``.

    Raises:
        ValueError: if the name is empty, does not start with an alphanumeric after the
            leading ``/``, or holds characters outside ``[A-Za-z0-9_/-]`` (§3 step 4).
    """
    path = topic_path(topic)
    if not _TOPIC_NAME_RE.match(path) or "//" in path or path.endswith("/"):
        raise ValueError(
            f"invalid topic name {topic!r}: it must start with a letter or digit after the "
            "leading '/' and hold only letters, digits, '_', '-' and '/'"
        )
    return path


def topic_locator(sequence: str, topic: str) -> str:
    """``seq/topic/path``: the sequence locator, ``/``, the topic without its leading ``/`` (§3)."""
    return f"{sequence_locator(sequence)}/{topic_path(topic)}"


#: Separator between the sequence and the session id in a session locator (§2).
SESSION_LOCATOR_SEP = ":"


def session_locator(sequence: str, session_id: str) -> str:
    """Locator of a session: ``seq:<id>`` (the id is a ULID in mosaicod) (§2)."""
    return f"{sequence_locator(sequence)}{SESSION_LOCATOR_SEP}{session_id}"


def split_session_locator(locator: str) -> tuple[str, str]:
    """Split ``seq:<id>`` into ``("seq", "<id>")``.

    Raises:
        WireError: if the locator has no ``:`` or an empty part.
    """
    seq, sep, ident = sequence_locator(locator).partition(SESSION_LOCATOR_SEP)
    if not sep or not seq or not ident:
        raise WireError(f"session locator {locator!r} must look like 'sequence:id'")
    return seq, ident


def split_topic_locator(locator: str) -> tuple[str, str]:
    """Split ``seq/topic/path`` into ``("seq", "topic/path")``.

    Raises:
        WireError: if the locator has fewer than two segments (§4).
    """
    loc = sequence_locator(locator)
    seq, sep, topic = loc.partition("/")
    if not sep or not seq or not topic:
        raise WireError(f"topic locator {locator!r} must have at least two segments")
    return seq, topic


# --------------------------------------------------------------------------------------
# §3 DoPut descriptor, §4 read descriptors and tickets
# --------------------------------------------------------------------------------------

#: Name and type of the envelope column every topic schema starts with (§5).
TIMESTAMP_FIELD = pa.field("timestamp_ns", pa.int64(), nullable=False)


def doput_descriptor(topic_locator_: str, topic_uuid: str) -> flight.FlightDescriptor:
    """DoPut command descriptor ``{"resource_locator", "topic_uuid"}`` (§3 step 4)."""
    return flight.FlightDescriptor.for_command(
        json.dumps({"resource_locator": topic_locator_, "topic_uuid": topic_uuid})
    )


@dataclass(frozen=True)
class ResourceCommand:
    """A decoded command descriptor: a DoPut target or a read request (§3, §4)."""

    resource_locator: str
    topic_uuid: Optional[str] = None
    timestamp_ns_start: Optional[int] = None
    timestamp_ns_end: Optional[int] = None


def read_descriptor(
    locator: str, timestamp_ns_start: Optional[int] = None, timestamp_ns_end: Optional[int] = None
) -> flight.FlightDescriptor:
    """GetFlightInfo / GetSchema command descriptor for a sequence or ``seq/topic`` (§4).

    ``timestamp_ns_start`` is inclusive and ``timestamp_ns_end`` exclusive, in nanoseconds.
    """
    cmd: dict[str, Any] = {"resource_locator": locator}
    if timestamp_ns_start is not None:
        cmd["timestamp_ns_start"] = int(timestamp_ns_start)
    if timestamp_ns_end is not None:
        cmd["timestamp_ns_end"] = int(timestamp_ns_end)
    return flight.FlightDescriptor.for_command(json.dumps(cmd))


def parse_command(descriptor: flight.FlightDescriptor) -> ResourceCommand:
    """Decode a command descriptor (§3, §4).

    Raises:
        WireError: if the descriptor is not a command or its JSON lacks ``resource_locator``.
    """
    if descriptor.descriptor_type != flight.DescriptorType.CMD:
        raise WireError("expected a command descriptor")
    body = decode_body(descriptor.command)
    locator = body.get("resource_locator")
    if not isinstance(locator, str) or not locator.strip():
        raise WireError("descriptor lacks resource_locator")

    def _opt_int(key: str) -> Optional[int]:
        value = body.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise WireError(f"descriptor field {key} must be an integer")
        return value

    uuid = body.get("topic_uuid")
    return ResourceCommand(
        resource_locator=sequence_locator(locator),
        topic_uuid=str(uuid) if uuid is not None else None,
        timestamp_ns_start=_opt_int("timestamp_ns_start"),
        timestamp_ns_end=_opt_int("timestamp_ns_end"),
    )


def make_ticket(cmd: ResourceCommand) -> flight.Ticket:
    """Our opaque DoGet ticket: the JSON read command of one topic (§4: ticket is opaque)."""
    body: dict[str, Any] = {"resource_locator": cmd.resource_locator}
    if cmd.timestamp_ns_start is not None:
        body["timestamp_ns_start"] = cmd.timestamp_ns_start
    if cmd.timestamp_ns_end is not None:
        body["timestamp_ns_end"] = cmd.timestamp_ns_end
    return flight.Ticket(encode_body(body))


def parse_ticket(ticket: flight.Ticket) -> ResourceCommand:
    """Decode a ticket made by :func:`make_ticket`.

    Raises:
        WireError: if the ticket is not ours.
    """
    return parse_command(flight.FlightDescriptor.for_command(ticket.ticket))


# --------------------------------------------------------------------------------------
# §4 FlightInfo / FlightEndpoint app_metadata
# --------------------------------------------------------------------------------------


def session_app_metadata(
    locator: str,
    created_at_ns: int,
    locked: bool,
    topics: list[str],
    completed_at_ns: Optional[int] = None,
) -> dict[str, Any]:
    """One item of ``sessions`` in the sequence app_metadata (§4).

    ``topics`` are ``seq/topic`` locators; ``completed_at_ns`` is left out when None.
    """
    session: dict[str, Any] = {
        "locator": locator,
        "created_at_ns": int(created_at_ns),
        "locked": bool(locked),
        "topics": list(topics),
    }
    if completed_at_ns is not None:
        session["completed_at_ns"] = int(completed_at_ns)
    return session


def sequence_app_metadata(
    locator: str,
    created_at_ns: int,
    user_metadata: Mapping[str, Any],
    sessions: list[Mapping[str, Any]],
) -> bytes:
    """Sequence ``FlightInfo.app_metadata`` (§4).

    Each session: ``locator``, ``created_at_ns``, ``locked`` (bool), optional
    ``completed_at_ns``, and ``topics`` as ``seq/topic`` locators.
    """
    return encode_body(
        {
            "resource_locator": locator,
            "created_at_ns": int(created_at_ns),
            "user_metadata": dict(user_metadata),
            "sessions": [dict(s) for s in sessions],
        }
    )


def topic_app_metadata(
    locator: str,
    created_at_ns: int,
    locked: bool,
    ontology_tag: str,
    serialization_format: str,
    user_metadata: Mapping[str, Any],
    total_bytes: int,
    total_chunks_count: int,
    total_row_count: int,
    interval: Optional[tuple[int, int]],
    completed_at_ns: Optional[int] = None,
    time_window: Optional[tuple[Optional[tuple[int, int]], int]] = None,
) -> bytes:
    """Topic ``FlightEndpoint.app_metadata`` (§4).

    ``interval`` is ``(start_ns, end_ns)`` of the stored rows; ``time_window`` is
    ``((start_ns, end_ns), row_count)`` of the rows inside the asked-for time range, if
    one was asked. A window holding no rows is ``(None, 0)``: the ``interval`` is then
    left out, which the SDK reads as "no data" (its sequence streamer skips the topic).
    """
    data_info: dict[str, Any] = {
        "total_bytes": int(total_bytes),
        "total_chunks_count": int(total_chunks_count),
        "total_row_count": int(total_row_count),
    }
    if interval is not None:
        data_info["interval"] = {"start_ns": int(interval[0]), "end_ns": int(interval[1])}
    meta: dict[str, Any] = {
        "resource_locator": locator,
        "created_at_ns": int(created_at_ns),
        "locked": bool(locked),
        "ontology_tag": ontology_tag,
        "serialization_format": serialization_format,
        "user_metadata": dict(user_metadata),
        "data_info": data_info,
    }
    if completed_at_ns is not None:
        meta["completed_at_ns"] = int(completed_at_ns)
    if time_window is not None:
        window_interval, rows = time_window
        window: dict[str, Any] = {"row_count": int(rows)}
        if window_interval is not None:
            window["interval"] = {"start_ns": int(window_interval[0]), "end_ns": int(window_interval[1])}
        meta["time_window_info"] = window
    return encode_body(meta)


# --------------------------------------------------------------------------------------
# Error kinds (§6)
# --------------------------------------------------------------------------------------


class ErrorKind:
    """Category of a server error, carried in ``FlightError.extra_info`` (§6).

    mosaicod 0.7 reports most failures with one gRPC code; a pyarrow server cannot set
    codes such as NOT_FOUND without leaking a Python traceback, so our server puts one
    of these ASCII words in ``extra_info`` instead. Clients of other servers get None.
    """

    INVALID_ARGUMENT = "invalid_argument"
    NOT_FOUND = "not_found"
    ALREADY_EXISTS = "already_exists"
    LOCKED = "locked"
    BAD_KEY = "bad_key"
    TOO_LARGE = "too_large"
    INTERNAL = "internal"


_ERROR_KINDS = frozenset(
    v for k, v in vars(ErrorKind).items() if not k.startswith("_") and isinstance(v, str)
)


def error_extra_info(kind: str) -> bytes:
    """Bytes for ``FlightError(..., extra_info=...)`` of an error of ``kind``."""
    if kind not in _ERROR_KINDS:
        raise WireError(f"unknown error kind {kind!r}")
    return kind.encode("ascii")


def error_kind(exc: BaseException) -> Optional[str]:
    """The :class:`ErrorKind` of a Flight error raised by our server, or None."""
    extra = getattr(exc, "extra_info", None)
    if not extra:
        return None
    try:
        kind = bytes(extra).decode("ascii")
    except (UnicodeDecodeError, TypeError):
        return None
    return kind if kind in _ERROR_KINDS else None
