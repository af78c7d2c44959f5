"""Security layer: TLS trust and API-key credentials attached to every Flight call.

The seed documents make this layer part of the client's lifecycle: with a
``tls_cert_path`` the client speaks ``grpc+tls`` and trusts that CA; with an
``api_key`` every call on the control connection and on every data connection carries
the header ``mosaico-api-key-token`` (protocol doc §1). The raw key is held only by the
middleware factory and never appears in a repr, a log line or an exception message:
only its fingerprint does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Optional

import pyarrow.flight as flight

from . import wire


class APIKeyPermissionEnum(Enum):
    """The four permission levels of an API key; each includes the ones before it."""

    Read = "read"
    Write = "write"
    Delete = "delete"
    Manage = "manage"

    @property
    def rank(self) -> int:
        """0 for Read up to 3 for Manage."""
        return list(APIKeyPermissionEnum).index(self)

    def allows(self, required: "APIKeyPermissionEnum") -> bool:
        """True if a key of this level may perform an operation that needs ``required``."""
        return self.rank >= required.rank


@dataclass(frozen=True)
class APIKeyStatus:
    """What the server knows of one API key (reply of ``api_key_status``).

    Times are in nanoseconds since the Unix epoch.
    """

    fingerprint: str
    permission: APIKeyPermissionEnum
    description: str
    created_at_ns: int
    expires_at_ns: Optional[int] = None
    revoked: bool = False

    @classmethod
    def from_response(cls, response: dict[str, Any]) -> "APIKeyStatus":
        return cls(
            fingerprint=str(response["fingerprint"]),
            permission=APIKeyPermissionEnum(response["permission"]),
            description=str(response.get("description", "")),
            created_at_ns=int(response["created_at_ns"]),
            expires_at_ns=(int(response["expires_at_ns"]) if response.get("expires_at_ns") is not None else None),
            revoked=bool(response.get("revoked", False)),
        )


def read_tls_root_certs(tls_cert_path: str | os.PathLike[str]) -> bytes:
    """Read a PEM CA certificate (or bundle) to trust.

    Raises:
        FileNotFoundError: if the path does not exist.
        ValueError: if it cannot be read or holds no PEM certificate.
    """
    path = os.fspath(tls_cert_path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"TLS certificate file not found: {path}")
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise ValueError(f"cannot read TLS certificate file {path}: {exc.strerror or exc}") from None
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise ValueError(f"TLS certificate file {path} holds no PEM certificate")
    return data


class _ApiKeyMiddleware(flight.ClientMiddleware):
    def __init__(self, header_value: bytes) -> None:
        self._header_value = header_value

    def sending_headers(self) -> dict[str, list[bytes]]:
        return {wire.API_KEY_HEADER: [self._header_value]}


class ApiKeyMiddlewareFactory(flight.ClientMiddlewareFactory):
    """Adds ``mosaico-api-key-token`` to every call made by a Flight client (§1)."""

    def __init__(self, api_key: str) -> None:
        self.__api_key = api_key.encode("utf-8")
        self.fingerprint: Optional[str] = wire.api_key_fingerprint(api_key)

    def start_call(self, info: flight.CallInfo) -> flight.ClientMiddleware:
        return _ApiKeyMiddleware(self.__api_key)

    def __repr__(self) -> str:
        return f"ApiKeyMiddlewareFactory(fingerprint={self.fingerprint!r})"


@dataclass
class SecurityConfig:
    """Everything a Flight client of this layer needs to reach the server safely.

    Attributes:
        tls_root_certs: PEM bytes of the CA to trust, or None for plaintext ``grpc://``.
        api_key_fingerprint: fingerprint of the key in use, or None.
    """

    tls_root_certs: Optional[bytes] = None
    api_key_fingerprint: Optional[str] = None
    _middleware: list[flight.ClientMiddlewareFactory] = field(default_factory=list, repr=False)

    @classmethod
    def create(cls, tls_cert_path: Optional[str] = None, api_key: Optional[str] = None) -> "SecurityConfig":
        """Build the layer from a CA path and an API key, either of them optional.

        Raises:
            FileNotFoundError, ValueError: from :func:`read_tls_root_certs`.
        """
        certs = read_tls_root_certs(tls_cert_path) if tls_cert_path else None
        if api_key:
            factory = ApiKeyMiddlewareFactory(api_key)
            return cls(certs, factory.fingerprint, [factory])
        return cls(certs, None, [])

    @property
    def tls(self) -> bool:
        return self.tls_root_certs is not None

    def location(self, host: str, port: int) -> str:
        return wire.location(host, port, self.tls)

    def new_flight_client(self, host: str, port: int) -> flight.FlightClient:
        """A Flight client for ``host:port`` with this layer's TLS trust and credentials."""
        kwargs: dict[str, Any] = {"middleware": list(self._middleware)}
        if self.tls_root_certs is not None:
            kwargs["tls_root_certs"] = self.tls_root_certs
        return flight.FlightClient(self.location(host, port), **kwargs)
