"""Names and locators of sequences, sessions and topics, and the rules they follow.

``docs/protocol.md`` § Names: a sequence name starts with a letter or digit and holds only
``[A-Za-z0-9_-]``; a topic name (after its leading ``/``) starts with a letter or digit
and holds only ``[A-Za-z0-9_/-]``, with no empty segment; both are at most
:data:`MAX_NAME_LENGTH` characters. Locators: ``seq``, ``seq/topic/path``, ``seq:<id>``.
"""

from __future__ import annotations

import re

from .errors import InvalidArgumentError, MalformedMessageError

#: Name of the envelope column every topic schema starts with: the row's time in
#: nanoseconds since the Unix epoch, ``int64`` NOT NULL (``docs/protocol.md`` § Arrow layouts).
TIMESTAMP_NS = "timestamp_ns"

#: Longest sequence name and longest topic path, in characters (a name is also a folder
#: name on a server's disk, where 255 bytes is the usual limit).
MAX_NAME_LENGTH = 128

#: Default port of a Mosaico server.
DEFAULT_PORT = 6726

#: Separator between the sequence and the session id in a session locator.
SESSION_LOCATOR_SEP = ":"

_SEQUENCE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_TOPIC_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_/-]*$")


def location(host: str, port: int, tls: bool) -> str:
    """Flight URI of a server: ``grpc://host:port`` or ``grpc+tls://host:port``.

    An IPv6 address is put in brackets (``grpc://[::1]:6726``).
    """
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{'grpc+tls' if tls else 'grpc'}://{host}:{port}"


def sequence_locator(name: str) -> str:
    """Locator of a sequence: the name with surrounding whitespace and one leading ``/`` removed."""
    name = name.strip()
    return name.removeprefix("/")


def validate_sequence_name(name: object) -> str:
    """Return the sequence locator of ``name``.

    Raises:
        InvalidArgumentError: the name is not a string, is empty or too long, does not
            start with a letter or digit, or holds characters outside ``[A-Za-z0-9_-]``.
    """
    if not isinstance(name, str):
        raise InvalidArgumentError(f"sequence name must be a string, got {type(name).__name__}")
    loc = sequence_locator(name)
    if len(loc) > MAX_NAME_LENGTH:
        raise InvalidArgumentError(
            f"invalid sequence name {loc[:32]!r}...: {len(loc)} characters, at most {MAX_NAME_LENGTH}"
        )
    if not _SEQUENCE_NAME_RE.match(loc):
        raise InvalidArgumentError(
            f"invalid sequence name {name!r}: it must start with a letter or digit and "
            "hold only letters, digits, '_' and '-'"
        )
    return loc


def topic_path(topic: str) -> str:
    """Topic name without surrounding whitespace and its leading ``/``."""
    topic = topic.strip()
    return topic.removeprefix("/")


def validate_topic_name(topic: object) -> str:
    """Return the topic path of ``topic`` (no leading ``/``).

    Raises:
        InvalidArgumentError: the name is not a string, is empty or too long, does not
            start with a letter or digit after the leading ``/``, has an empty segment,
            or holds characters outside ``[A-Za-z0-9_/-]``.
    """
    if not isinstance(topic, str):
        raise InvalidArgumentError(f"topic name must be a string, got {type(topic).__name__}")
    path = topic_path(topic)
    if len(path) > MAX_NAME_LENGTH:
        raise InvalidArgumentError(
            f"invalid topic name {path[:32]!r}...: {len(path)} characters, at most {MAX_NAME_LENGTH}"
        )
    if not _TOPIC_NAME_RE.match(path) or "//" in path or path.endswith("/"):
        raise InvalidArgumentError(
            f"invalid topic name {topic!r}: it must start with a letter or digit after the "
            "leading '/' and hold only letters, digits, '_', '-' and '/'"
        )
    return path


def topic_locator(sequence: str, topic: str) -> str:
    """``seq/topic/path``: the sequence locator, ``/``, the topic without its leading ``/``."""
    return f"{sequence_locator(sequence)}/{topic_path(topic)}"


def session_locator(sequence: str, session_id: str) -> str:
    """Locator of a session: ``seq:<id>`` (the id is a ULID in mosaicod)."""
    return f"{sequence_locator(sequence)}{SESSION_LOCATOR_SEP}{session_id}"


def split_session_locator(locator: str) -> tuple[str, str]:
    """Split ``seq:<id>`` into ``("seq", "<id>")``.

    Raises:
        MalformedMessageError: the locator has no ``:`` or an empty part.
    """
    seq, sep, ident = sequence_locator(locator).partition(SESSION_LOCATOR_SEP)
    if not sep or not seq or not ident:
        raise MalformedMessageError(f"session locator {locator!r} must look like 'sequence:id'")
    return seq, ident


def split_topic_locator(locator: str) -> tuple[str, str]:
    """Split ``seq/topic/path`` into ``("seq", "topic/path")``.

    Raises:
        MalformedMessageError: the locator has fewer than two segments.
    """
    loc = sequence_locator(locator)
    seq, sep, topic = loc.partition("/")
    if not sep or not seq or not topic:
        raise MalformedMessageError(f"topic locator {locator!r} must have at least two segments")
    return seq, topic


def parse_topic_locator(locator: str) -> tuple[str, str]:
    """Split and validate ``seq/topic/path``: ``(sequence locator, topic path)``.

    Raises:
        InvalidArgumentError: fewer than two segments, or an invalid name.
    """
    seq, topic = split_topic_locator(locator)
    return validate_sequence_name(seq), validate_topic_name(topic)
