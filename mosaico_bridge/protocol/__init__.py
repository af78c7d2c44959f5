"""The Mosaico wire protocol (mosaicod 0.7 JSON dialect) as typed values.

Imported by both :mod:`mosaico_bridge.client` and :mod:`mosaico_bridge.server`; it imports
neither. It performs no I/O: it turns values into bytes, Flight actions and descriptors and
back. ``docs/protocol.md`` in the repository describes the dialect.

* :mod:`.names`: locators and name rules, the ``timestamp_ns`` field name;
* :mod:`.messages`: DoAction names, request and response bodies, envelopes;
* :mod:`.descriptors`: DoPut / read descriptors, tickets, ``app_metadata``;
* :mod:`.auth`: API keys and the :class:`Permission` levels;
* :mod:`.errors`: :class:`ErrorKind` and the error classes both ends use.
"""

from .auth import (
    API_KEY_FINGERPRINT_RE,
    API_KEY_HEADER,
    API_KEY_RE,
    ENV_API_KEY,
    ENV_TLS_CERT_FILE,
    APIKeyPermissionEnum,
    Permission,
    api_key_fingerprint,
    make_api_key,
    validate_fingerprint,
)
from .descriptors import (
    TIMESTAMP_FIELD,
    PutAck,
    ResourceCommand,
    SequenceMetadata,
    SessionMetadata,
    TimeInterval,
    TopicMetadata,
    doput_descriptor,
    make_ticket,
    parse_command,
    parse_ticket,
    read_descriptor,
)
from .errors import (
    AlreadyExistsError,
    AuthenticationError,
    BadKeyError,
    ErrorKind,
    InternalError,
    InvalidArgumentError,
    LockedError,
    MalformedMessageError,
    MosaicoError,
    NotFoundError,
    PermissionDeniedError,
    TooLargeError,
    UnauthenticatedError,
)
from .messages import (
    BATCH_SIZE_SHARE,
    NOTIFICATION_ERROR,
    SERIALIZATION_FORMATS,
    Action,
)
from .names import (
    DEFAULT_PORT,
    MAX_NAME_LENGTH,
    TIMESTAMP_NS,
    location,
    parse_topic_locator,
    sequence_locator,
    session_locator,
    split_session_locator,
    split_topic_locator,
    topic_locator,
    topic_path,
    validate_sequence_name,
    validate_topic_name,
)

__all__ = [
    "API_KEY_FINGERPRINT_RE",
    "API_KEY_HEADER",
    "API_KEY_RE",
    "BATCH_SIZE_SHARE",
    "DEFAULT_PORT",
    "ENV_API_KEY",
    "ENV_TLS_CERT_FILE",
    "MAX_NAME_LENGTH",
    "NOTIFICATION_ERROR",
    "SERIALIZATION_FORMATS",
    "TIMESTAMP_FIELD",
    "TIMESTAMP_NS",
    "APIKeyPermissionEnum",
    "Action",
    "AlreadyExistsError",
    "AuthenticationError",
    "BadKeyError",
    "ErrorKind",
    "InternalError",
    "InvalidArgumentError",
    "LockedError",
    "MalformedMessageError",
    "MosaicoError",
    "NotFoundError",
    "Permission",
    "PermissionDeniedError",
    "PutAck",
    "ResourceCommand",
    "SequenceMetadata",
    "SessionMetadata",
    "TimeInterval",
    "TooLargeError",
    "TopicMetadata",
    "UnauthenticatedError",
    "api_key_fingerprint",
    "doput_descriptor",
    "location",
    "make_api_key",
    "make_ticket",
    "parse_command",
    "parse_ticket",
    "parse_topic_locator",
    "read_descriptor",
    "sequence_locator",
    "session_locator",
    "split_session_locator",
    "split_topic_locator",
    "topic_locator",
    "topic_path",
    "validate_fingerprint",
    "validate_sequence_name",
    "validate_topic_name",
]
