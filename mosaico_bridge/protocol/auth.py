"""API keys and permission levels, as both ends of the wire know them.

``docs/protocol.md`` § Security: a key is ``msco_`` + 32 lowercase alphanumerics + ``_`` +
8 hex characters; those last 8 are its fingerprint, the only part ever logged or shown.
Every call carries the key in the header :data:`API_KEY_HEADER`.
"""

from __future__ import annotations

import enum
import re

from .errors import InvalidArgumentError

#: gRPC metadata header carrying the API key on every call.
API_KEY_HEADER = "mosaico-api-key-token"

#: Environment variables read by ``MosaicoClient.from_env`` and the command-line tools.
ENV_API_KEY = "MOSAICO_API_KEY"
ENV_TLS_CERT_FILE = "MOSAICO_TLS_CERT_FILE"

#: Shape of an API key: ``msco_`` + 32 lowercase alphanumerics + ``_`` + 8 hex.
API_KEY_RE = re.compile(r"^msco_([a-z0-9]{32})_([0-9a-f]{8})$")

#: Shape of an API key fingerprint: 8 lowercase hex characters.
API_KEY_FINGERPRINT_RE = re.compile(r"^[0-9a-f]{8}$")


class Permission(enum.Enum):
    """The four levels of an API key; each includes the ones before it.

    Read: ``info``, lists, handlers, reads (GetFlightInfo, GetSchema, DoGet), queries,
    notification lists. Write: also creating sequences, sessions and topics,
    ``session_finalize``, DoPut, notification create. Delete: also deleting sequences,
    sessions and topics, notification purge. Manage: also ``api_key_create`` /
    ``api_key_status`` / ``api_key_revoke``. The value is the wire name.
    """

    Read = "read"
    Write = "write"
    Delete = "delete"
    Manage = "manage"

    @property
    def rank(self) -> int:
        """0 for Read up to 3 for Manage."""
        return _RANKS[self]

    def allows(self, required: Permission) -> bool:
        """True if a key of this level may make a call that needs ``required``."""
        return self.rank >= required.rank

    def __lt__(self, other: Permission) -> bool:
        return self.rank < other.rank

    def __le__(self, other: Permission) -> bool:
        return self.rank <= other.rank

    def __gt__(self, other: Permission) -> bool:
        return self.rank > other.rank

    def __ge__(self, other: Permission) -> bool:
        return self.rank >= other.rank

    @property
    def wire_name(self) -> str:
        return self.value

    @classmethod
    def from_wire(cls, name: object) -> Permission:
        """The level named ``read`` / ``write`` / ``delete`` / ``manage`` (case-insensitive).

        Raises:
            InvalidArgumentError: for any other value.
        """
        if isinstance(name, str):
            try:
                return cls(name.strip().lower())
            except ValueError:
                pass
        raise InvalidArgumentError(f"permission must be one of read, write, delete, manage; got {name!r}")


_RANKS = {p: i for i, p in enumerate(Permission)}

#: The name the Mosaico client documents for :class:`Permission`.
APIKeyPermissionEnum = Permission


def api_key_fingerprint(api_key: str | None) -> str | None:
    """The 8-hex fingerprint that ends a well-formed API key, or None."""
    match = API_KEY_RE.match(api_key or "")
    return match.group(2) if match else None


def make_api_key(secret: str, fingerprint: str) -> str:
    """``msco_<secret>_<fingerprint>``: 32 lowercase alphanumerics, 8 hex.

    Raises:
        InvalidArgumentError: the parts do not have that shape (the message never holds the secret).
    """
    key = f"msco_{secret}_{fingerprint}"
    if not API_KEY_RE.match(key):
        raise InvalidArgumentError("an API key needs 32 lowercase alphanumerics and an 8-hex fingerprint")
    return key


def validate_fingerprint(value: object) -> str:
    """Return ``value`` if it is an 8-hex fingerprint.

    Raises:
        InvalidArgumentError: otherwise; the message never repeats the value (it may be a
            whole key sent by mistake).
    """
    if not isinstance(value, str) or not API_KEY_FINGERPRINT_RE.match(value):
        raise InvalidArgumentError("fingerprint must be 8 lowercase hex characters")
    return value
