"""Notifications of sequences and topics (``docs/protocol.md`` § Notifications).

A notification is ``{name, notification_type, msg, created_at_ns}``, where ``name`` is
``seq`` or ``seq/topic``. Clients store them with the ``*_notification_create`` actions;
the server adds its own (type :data:`SERVER_NOTICE` or ``error``) when it refuses or
cuts a DoPut stream, quarantines a chunk, or finds a session interrupted by a crash.
Each owner keeps its list in ``notifications.json`` in its folder, replaced atomically.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mosaico_bridge.common.clock import now_ns
from mosaico_bridge.common.files import atomic_write_json
from mosaico_bridge.protocol.errors import InvalidArgumentError
from mosaico_bridge.server.catalog import NOTIFICATIONS_FILE

#: Type of the notifications the server writes about its own findings.
SERVER_NOTICE = "server"

#: Longest notification message kept, in characters (longer ones are cut).
MAX_MESSAGE = 4096


@dataclass(frozen=True)
class Notification:
    """A stored notification; ``name`` is ``seq`` or ``seq/topic``, ``created_at_ns`` ns."""

    name: str
    notification_type: str
    msg: str
    created_at_ns: int


def new_entry(name: str, notification_type: object, msg: object) -> dict:
    """The stored form of a new notification.

    Raises:
        InvalidArgumentError: ``notification_type`` is not a non-empty string.
    """
    if not isinstance(notification_type, str) or not notification_type.strip():
        raise InvalidArgumentError("notification_type must be a non-empty string")
    return {
        "name": name,
        "notification_type": notification_type,
        "msg": str(msg)[:MAX_MESSAGE],
        "created_at_ns": now_ns(),
    }


def save(directory: Path | None, entries: list) -> None:
    """Write a notification list to ``directory/notifications.json`` (None: owner deleted).

    Raises: OSError.
    """
    if directory is not None:
        atomic_write_json(directory / NOTIFICATIONS_FILE, entries)


def snapshot(entries: list) -> list[Notification]:
    """Immutable copies of stored notifications, oldest first."""
    return [Notification(**n) for n in entries]
