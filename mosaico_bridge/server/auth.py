"""API keys of the embedded server: generation, salted-hash storage, checks.

A key looks like ``msco_`` + 32 lowercase alphanumerics + ``_`` + 8 hex characters
(``docs/protocol.md`` § Security), for example ``msco_s3l8gcdwuadege3pkhou0k0n2t5omfij_f9010b9e``. The
last 8 hex characters are the key's **fingerprint**: random, unique on one server, and
the only part of a key that is ever logged, shown in an error message or returned by
``api_key_status``. The 32 characters before it are the secret (about 165 bits).

The server never stores a key. The keys file ``<root>/api_keys.json`` (mode 0600,
replaced atomically: temporary file, fsync, :func:`os.replace`) holds one record per key::

    {"format": 1,
     "keys": [{"fingerprint": "f9010b9e",
               "permission": "write",              # read | write | delete | manage
               "description": "ingestion robot 3",
               "created_at_ns": 1767225600000000000,
               "expires_at_ns": null,              # or ns since the Unix epoch
               "revoked": false,
               "revoked_at_ns": null,
               "hash": {"kdf": "scrypt", "n": 16384, "r": 8, "p": 1,
                        "salt": "<16 random bytes, hex>",
                        "digest": "<scrypt(key, salt), 32 bytes, hex>"}}]}

The hash is :func:`hashlib.scrypt` of the whole key (UTF-8) with a per-key random salt.
Checking a key costs one scrypt (about 40 ms); once a key has matched its record, the
process remembers a SHA-256 of it (in memory only) so that later calls skip the scrypt.
The file is re-read whenever it changes on disk, so a key created with
``mosaico_server --bootstrap-key`` or revoked by another process is seen at the next call.
Changes from several processes are serialised with an advisory lock on
``<root>/api_keys.json.lock``.

Timestamps are nanoseconds since the Unix epoch (``*_ns``).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import os
import secrets
import stat
import string
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mosaico_bridge.common import clock
from mosaico_bridge.common.files import SECRET_MODE, atomic_write_bytes
from mosaico_bridge.protocol import auth as pauth
from mosaico_bridge.protocol.auth import Permission
from mosaico_bridge.protocol.errors import InvalidArgumentError

try:  # advisory inter-process lock; POSIX only
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger("mosaico_bridge.server")

#: Name of the keys file under the store root.
KEYS_FILE = "api_keys.json"
KEYS_FORMAT = 1

#: scrypt cost: 16 MiB of memory and about 40 ms per check (RFC 7914 interactive parameters).
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
DIGEST_BYTES = 32

_SECRET_ALPHABET = string.ascii_lowercase + string.digits
_SECRET_LENGTH = 32


class KeyStoreError(Exception):
    """The keys file cannot be read or written, or holds something unexpected."""


class UnknownFingerprint(KeyError):
    """No key with that fingerprint (``api_key_status`` / ``api_key_revoke``)."""

    def __str__(self) -> str:
        return f"API key {self.args[0]} unknown"


class AuthenticationFailed(Exception):
    """The call carries no usable API key: missing, malformed, unknown, revoked or expired.

    ``reason`` is one of those five words; the message names the fingerprint when
    there is one (``API key f9010b9e revoked``), never the key.
    """

    def __init__(self, reason: str, fingerprint: str | None = None) -> None:
        self.reason = reason
        self.fingerprint = fingerprint
        super().__init__(f"API key {fingerprint} {reason}" if fingerprint else f"API key {reason}")


class PermissionDenied(Exception):
    """A valid key whose level is below what the call needs."""

    def __init__(self, record: ApiKeyRecord, required: Permission, call: str) -> None:
        self.fingerprint = record.fingerprint
        self.required = required
        super().__init__(
            f"API key {record.fingerprint} ({record.permission.wire_name}) lacks "
            f"{required.wire_name} permission for {call}"
        )


@dataclass(frozen=True)
class ApiKeyRecord:
    """What the server keeps of one key (never the key itself).

    ``hash`` holds the KDF name, its parameters, the salt and the digest (hex).
    """

    fingerprint: str
    permission: Permission
    description: str
    created_at_ns: int
    expires_at_ns: int | None
    revoked: bool
    revoked_at_ns: int | None
    hash: dict

    def expired(self, now_ns: int) -> bool:
        """True once ``now_ns`` has reached ``expires_at_ns``."""
        return self.expires_at_ns is not None and now_ns >= self.expires_at_ns

    def status(self) -> dict[str, Any]:
        """The ``api_key_status`` response: fingerprint, permission, description,
        created_at_ns, expires_at_ns (or None), revoked."""
        return {
            "fingerprint": self.fingerprint,
            "permission": self.permission.wire_name,
            "description": self.description,
            "created_at_ns": self.created_at_ns,
            "expires_at_ns": self.expires_at_ns,
            "revoked": self.revoked,
        }

    def to_json(self) -> dict[str, Any]:
        return {**self.status(), "revoked_at_ns": self.revoked_at_ns, "hash": dict(self.hash)}

    @classmethod
    def from_json(cls, item: Any) -> ApiKeyRecord:
        if not isinstance(item, dict):
            raise ValueError("key record is not an object")  # noqa: TRY004 - malformed stored JSON is a ValueError, which callers catch
        fingerprint = item.get("fingerprint")
        if not isinstance(fingerprint, str) or not pauth.API_KEY_FINGERPRINT_RE.match(fingerprint):
            raise ValueError("key record has no valid fingerprint")
        digest = item.get("hash")
        if not isinstance(digest, dict) or digest.get("kdf") != "scrypt":
            raise ValueError(f"key {fingerprint}: unsupported hash")
        for name in ("n", "r", "p"):
            if not isinstance(digest.get(name), int):
                raise ValueError(f"key {fingerprint}: scrypt parameter {name} missing")  # noqa: TRY004 - malformed stored JSON is a ValueError, which callers catch
        bytes.fromhex(str(digest.get("salt", "")))
        bytes.fromhex(str(digest.get("digest", "")))
        expires = item.get("expires_at_ns")
        revoked_at = item.get("revoked_at_ns")
        return cls(
            fingerprint=fingerprint,
            permission=Permission.from_wire(item.get("permission")),
            description=str(item.get("description", "")),
            created_at_ns=int(item.get("created_at_ns", 0)),
            expires_at_ns=int(expires) if expires is not None else None,
            revoked=bool(item.get("revoked", False)),
            revoked_at_ns=int(revoked_at) if revoked_at is not None else None,
            hash=dict(digest),
        )


def _scrypt(api_key: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        api_key.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=DIGEST_BYTES, maxmem=256 * 1024 * 1024
    )


def hash_key(api_key: str) -> dict[str, Any]:
    """Salted scrypt hash of a key, as stored in the keys file."""
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(api_key, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return {"kdf": "scrypt", "n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P, "salt": salt.hex(), "digest": digest.hex()}


#: ``AuthenticationFailed.reason`` of a key refused unhashed because its peer failed too often.
THROTTLED = "throttled: too many failed API key attempts from this address, retry later"

_DUMMY: dict[str, Any] = {}
_DUMMY_LOCK = threading.Lock()


def _dummy_hash() -> dict[str, Any]:
    """A hash record no key matches, with the same scrypt cost as real records."""
    with _DUMMY_LOCK:
        if not _DUMMY:
            _DUMMY.update(hash_key(pauth.make_api_key("0" * _SECRET_LENGTH, "00000000")))
        return _DUMMY


def key_matches(api_key: str, stored: dict[str, Any]) -> bool:
    """True if ``api_key`` hashes to ``stored`` (constant-time comparison)."""
    digest = _scrypt(api_key, bytes.fromhex(stored["salt"]), stored["n"], stored["r"], stored["p"])
    return hmac.compare_digest(digest, bytes.fromhex(stored["digest"]))


class ApiKeyStore:
    """The API keys of one server root, kept in ``<root>/api_keys.json``.

    Thread-safe; several processes may share one root (changes are serialised with an
    advisory file lock and each process re-reads the file when it changes).

    The file is read at first use, not here: a server in passthrough mode never needs it
    unless a key-management call arrives. Every method raises :class:`KeyStoreError` if
    the file cannot be read or parsed.

    Args:
        root: the store root directory (must exist).
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self._root = Path(root)
        self._path = self._root / KEYS_FILE
        self._lock_path = self._root / (KEYS_FILE + ".lock")
        self._lock = threading.RLock()
        self._records: dict[str, ApiKeyRecord] = {}
        self._stamp: tuple | None = ("not read yet",)
        #: fingerprint -> SHA-256 of the key that matched its record (memory only).
        self._verified: dict[str, bytes] = {}

    @property
    def path(self) -> Path:
        """Path of the keys file (it may not exist yet)."""
        return self._path

    # ------------------------------------------------------------------ file

    def _file_stamp(self) -> tuple | None:
        try:
            st = os.stat(self._path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise KeyStoreError(f"cannot read {self._path}: {exc.strerror}") from None
        return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_mode)

    def _refresh(self) -> None:
        """Re-read the keys file if it changed on disk (caller holds ``_lock``)."""
        stamp = self._file_stamp()
        if stamp == self._stamp:
            return
        if stamp is None:
            records: dict[str, ApiKeyRecord] = {}
        else:
            if stat.S_IMODE(stamp[3]) & 0o077:
                logger.warning("keys file %s was readable by others; setting its mode to 0600", self._path)
                with contextlib.suppress(OSError):
                    os.chmod(self._path, 0o600)
            try:
                data = json.loads(self._path.read_bytes().decode("utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise KeyStoreError(f"cannot read the keys file {self._path}: {exc}") from None
            if not isinstance(data, dict) or data.get("format") != KEYS_FORMAT or not isinstance(data.get("keys"), list):
                raise KeyStoreError(f"{self._path} is not a keys file of format {KEYS_FORMAT}")
            records = {}
            for item in data["keys"]:
                try:
                    record = ApiKeyRecord.from_json(item)
                except (ValueError, TypeError, InvalidArgumentError) as exc:
                    raise KeyStoreError(f"{self._path}: {exc}") from None
                records[record.fingerprint] = record
        # a key whose record changed (e.g. re-created) must be checked against the new hash
        old = self._records
        self._verified = {
            fp: d for fp, d in self._verified.items() if fp in records and fp in old and records[fp].hash == old[fp].hash
        }
        self._records = records
        self._stamp = self._file_stamp()

    def _save(self) -> None:
        body = {"format": KEYS_FORMAT, "keys": [r.to_json() for r in self._records.values()]}
        try:
            atomic_write_bytes(self._path, json.dumps(body, indent=1, sort_keys=True).encode("utf-8"), SECRET_MODE)
        except OSError as exc:
            raise KeyStoreError(f"cannot write the keys file {self._path}: {exc.strerror or exc}") from None
        self._stamp = self._file_stamp()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """Hold the thread lock and the inter-process file lock; load the newest file first."""
        with self._lock:
            fd = None
            try:
                if fcntl is not None:
                    try:
                        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
                    except OSError as exc:
                        raise KeyStoreError(f"cannot lock {self._lock_path}: {exc.strerror}") from None
                    fcntl.flock(fd, fcntl.LOCK_EX)
                self._refresh()
                yield
            finally:
                if fd is not None:
                    fcntl.flock(fd, fcntl.LOCK_UN)
                    os.close(fd)

    # ------------------------------------------------------------------ management

    def create(
        self, permission: Permission, description: str = "", expires_at_ns: int | None = None
    ) -> tuple[str, ApiKeyRecord]:
        """Make a new key; store its salted hash.

        Args:
            permission: level of the new key.
            description: free text shown by ``api_key_status``.
            expires_at_ns: the key stops working at this time (ns since the epoch); None: never.

        Returns:
            ``(api_key, record)``. The key is not kept anywhere: hand it to its owner once.

        Raises:
            KeyStoreError: if the keys file cannot be written.
        """
        permission = Permission(permission)
        secret = "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(_SECRET_LENGTH))
        with self._transaction():
            fingerprint = secrets.token_hex(4)
            while fingerprint in self._records:
                fingerprint = secrets.token_hex(4)
            api_key = pauth.make_api_key(secret, fingerprint)
            record = ApiKeyRecord(
                fingerprint=fingerprint,
                permission=permission,
                description=str(description),
                created_at_ns=clock.now_ns(),
                expires_at_ns=int(expires_at_ns) if expires_at_ns is not None else None,
                revoked=False,
                revoked_at_ns=None,
                hash=hash_key(api_key),
            )
            self._records[fingerprint] = record
            try:
                self._save()
            except BaseException:
                del self._records[fingerprint]
                raise
        logger.info(
            "created API key %s (%s%s)",
            fingerprint,
            permission.wire_name,
            f", expires at {record.expires_at_ns} ns" if record.expires_at_ns is not None else "",
        )
        return api_key, record

    def get(self, fingerprint: str) -> ApiKeyRecord:
        """The record of a fingerprint.

        Raises:
            UnknownFingerprint: if no key has it.
        """
        with self._lock:
            self._refresh()
            record = self._records.get(fingerprint)
        if record is None:
            raise UnknownFingerprint(fingerprint)
        return record

    def records(self) -> list[ApiKeyRecord]:
        """All records, in creation order."""
        with self._lock:
            self._refresh()
            return list(self._records.values())

    def revoke(self, fingerprint: str) -> ApiKeyRecord:
        """Revoke a key for good (revoking twice is a no-op).

        Raises:
            UnknownFingerprint: if no key has that fingerprint.
            KeyStoreError: if the keys file cannot be written.
        """
        with self._transaction():
            record = self._records.get(fingerprint)
            if record is None:
                raise UnknownFingerprint(fingerprint)
            if record.revoked:
                return record
            updated = replace(record, revoked=True, revoked_at_ns=clock.now_ns())
            self._records[fingerprint] = updated
            try:
                self._save()
            except BaseException:
                self._records[fingerprint] = record
                raise
        logger.info("revoked API key %s", fingerprint)
        return updated

    # ------------------------------------------------------------------ checks

    def is_verified(self, api_key: str) -> bool:
        """True if ``api_key`` already matched its record in this process (no scrypt needed)."""
        fingerprint = pauth.api_key_fingerprint(api_key)
        if fingerprint is None:
            return False
        with self._lock:
            verified = self._verified.get(fingerprint)
        return verified is not None and hmac.compare_digest(verified, hashlib.sha256(api_key.encode("utf-8")).digest())

    def authenticate(
        self, api_key: str | None, now_ns: int | None = None, *, allow_kdf: bool = True
    ) -> ApiKeyRecord:
        """The record of a valid key.

        A key not yet verified in this process costs one scrypt, whether its fingerprint
        exists or not (an unknown one is hashed against a dummy record), so the time of
        a refusal does not tell which fingerprints exist. ``allow_kdf=False`` refuses
        such a key without hashing (``throttled``); verified keys still pass.

        Raises:
            AuthenticationFailed: ``missing`` (None or empty), ``malformed`` (not
                ``msco_<32>_<8 hex>``), ``unknown`` (no such key), ``revoked``,
                ``expired`` or ``throttled``.
            KeyStoreError: if the keys file became unreadable.
        """
        if not api_key:
            raise AuthenticationFailed("missing")
        fingerprint = pauth.api_key_fingerprint(api_key)
        if fingerprint is None:
            raise AuthenticationFailed("malformed")
        with self._lock:
            self._refresh()
            record = self._records.get(fingerprint)
            verified = self._verified.get(fingerprint)
        quick = hashlib.sha256(api_key.encode("utf-8")).digest()
        if record is None or verified is None or not hmac.compare_digest(verified, quick):
            if not allow_kdf:
                raise AuthenticationFailed(THROTTLED, fingerprint)
            if record is None:
                key_matches(api_key, _dummy_hash())  # same cost as a wrong secret
                raise AuthenticationFailed("unknown", fingerprint)
            if not key_matches(api_key, record.hash):
                raise AuthenticationFailed("unknown", fingerprint)
            with self._lock:
                current = self._records.get(fingerprint)
                if current is not None and current.hash == record.hash:
                    self._verified[fingerprint] = quick
        if record.revoked:
            raise AuthenticationFailed("revoked", fingerprint)
        if record.expired(clock.now_ns() if now_ns is None else now_ns):
            raise AuthenticationFailed("expired", fingerprint)
        return record

    def authorize(
        self, api_key: str | None, required: Permission, call: str, *, allow_kdf: bool = True
    ) -> ApiKeyRecord:
        """:meth:`authenticate`, then check the level.

        Raises:
            AuthenticationFailed: see :meth:`authenticate`.
            PermissionDenied: the key is valid but below ``required``.
        """
        record = self.authenticate(api_key, allow_kdf=allow_kdf)
        if record.permission < required:
            raise PermissionDenied(record, required, call)
        return record
