"""Security layer: TLS trust and API-key credentials attached to every Flight call.

This layer is part of the client's lifecycle (``docs/client.md`` § Security): with a
``tls_cert_path`` the client speaks ``grpc+tls`` and trusts that CA; with an
``api_key`` every call on the control connection and on every data connection carries
the header ``mosaico-api-key-token`` (``docs/protocol.md`` § Security). The raw key is held only by the
middleware factory and never appears in a repr, a log line or an exception message:
only its fingerprint does.
"""

from __future__ import annotations

import os
import re
import ssl
from dataclasses import dataclass, field
from typing import Any

from pyarrow import flight

from ..protocol import auth
from ..protocol.auth import APIKeyPermissionEnum
from ..protocol.messages import ApiKeyStatusResponse
from ..protocol.names import location


@dataclass(frozen=True)
class APIKeyStatus:
    """What the server knows of one API key (reply of ``api_key_status``).

    Times are in nanoseconds since the Unix epoch.
    """

    fingerprint: str
    permission: APIKeyPermissionEnum
    description: str
    created_at_ns: int
    expires_at_ns: int | None = None
    revoked: bool = False

    @classmethod
    def from_response(cls, response: ApiKeyStatusResponse) -> APIKeyStatus:
        """From the typed ``api_key_status`` reply.

        Raises:
            InvalidArgumentError: the reply names an unknown permission level.
        """
        return cls(
            fingerprint=response.fingerprint,
            permission=APIKeyPermissionEnum.from_wire(response.permission),
            description=response.description,
            created_at_ns=response.created_at_ns,
            expires_at_ns=response.expires_at_ns,
            revoked=response.revoked,
        )


def read_tls_root_certs(tls_cert_path: str | os.PathLike[str]) -> bytes:
    """Read a PEM CA certificate (or bundle) to trust; return its bytes.

    Every certificate in the file must parse (checked with the standard :mod:`ssl`).

    Raises:
        FileNotFoundError: if the path does not exist.
        ValueError: if the path is empty, cannot be read (a directory, no permission) or
            holds no valid PEM certificate.
    """
    path = os.fspath(tls_cert_path)
    if not path:
        raise ValueError("TLS certificate path is empty")
    if not os.path.exists(path):
        raise FileNotFoundError(f"TLS certificate file not found: {path}")
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise ValueError(f"cannot read TLS certificate file {path}: {exc.strerror or exc}") from None
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise ValueError(f"TLS certificate file {path} holds no PEM certificate")
    try:
        ssl.create_default_context(cadata=data.decode("ascii"))
    except (UnicodeDecodeError, ssl.SSLError, ValueError) as exc:
        raise ValueError(f"TLS certificate file {path} holds an invalid PEM certificate: {exc}") from None
    return data


_HANDSHAKE_REASON = re.compile(r"SSL_ERROR_SSL: error:[0-9A-Fa-f]+:SSL routines::([^.;]+)")


def tls_failure(exc: BaseException, tls: bool, tls_cert_path: str | None = None) -> tuple[bool, str] | None:
    """Explain a connection failure caused by a TLS mismatch between client and server.

    Args:
        exc: the error a Flight call raised (or its translation).
        tls: True if the client used ``grpc+tls``.
        tls_cert_path: the CA file the client trusts, for the message.

    Returns:
        None if ``exc`` is not a TLS problem, else ``(permanent, explanation)``:
        ``permanent`` is True for a failed handshake (certificate not trusted, server
        without TLS), which retrying cannot fix, and False for a plaintext client whose
        connection the server closed (a TLS server does that; so may a server going down).
    """
    text = str(exc)
    if tls and "handshake failed" in text.lower():
        match = _HANDSHAKE_REASON.search(text)
        reason = match.group(1).strip() if match else "handshake failed"
        if "wrong version number" in reason or "packet length too long" in reason:
            return True, "the server does not speak TLS (connect without a TLS certificate)"
        if "certificate verify failed" in reason:
            trusted = f"the CA in {tls_cert_path}" if tls_cert_path else "the system's CAs"
            return True, f"the server's certificate is not trusted by {trusted} ({reason})"
        return True, f"TLS handshake failed ({reason})"
    if tls and "peer name" in text.lower():
        return True, "the server's certificate is not valid for this host name"
    if not tls and "socket closed" in text.lower():
        return False, "the server closed the connection; it may require TLS (give the CA certificate to trust)"
    return None


class _ApiKeyMiddleware(flight.ClientMiddleware):  # type: ignore[misc]  # pyarrow has no type stubs
    def __init__(self, header_value: bytes) -> None:
        self._header_value = header_value

    def sending_headers(self) -> dict[str, list[bytes]]:
        return {auth.API_KEY_HEADER: [self._header_value]}

    def __repr__(self) -> str:
        return "_ApiKeyMiddleware()"


class ApiKeyMiddlewareFactory(flight.ClientMiddlewareFactory):  # type: ignore[misc]  # pyarrow has no type stubs
    """Adds ``mosaico-api-key-token`` to every call made by a Flight client (``docs/protocol.md`` § Security).

    Surrounding whitespace (a newline read from a file) is removed from the key. Only
    :attr:`fingerprint` (None for a key of another shape) is ever shown.

    Raises:
        ValueError: if the key is empty or holds characters a gRPC header cannot carry
            (the message does not repeat the key).
    """

    def __init__(self, api_key: str) -> None:
        api_key = str(api_key).strip()
        if not api_key:
            raise ValueError("API key is empty")
        if not all(0x20 <= ord(ch) < 0x7F for ch in api_key):
            raise ValueError("API key holds characters other than printable ASCII")
        self.__api_key = api_key.encode("ascii")
        self.fingerprint: str | None = auth.api_key_fingerprint(api_key)

    def start_call(self, info: flight.CallInfo) -> flight.ClientMiddleware:
        return _ApiKeyMiddleware(self.__api_key)

    def __repr__(self) -> str:
        return f"ApiKeyMiddlewareFactory(fingerprint={self.fingerprint!r})"


@dataclass
class SecurityConfig:
    """Everything a Flight client of this layer needs to reach the server safely.

    Attributes:
        tls_root_certs: PEM bytes of the CA to trust, or None for plaintext ``grpc://``.
        api_key_fingerprint: fingerprint of the key in use, or None (no key, or a key
            not of the form ``msco_<32>_<8 hex>``).
        tls_cert_path: where ``tls_root_certs`` came from, for messages.
    """

    tls_root_certs: bytes | None = field(default=None, repr=False)
    api_key_fingerprint: str | None = None
    _middleware: list[flight.ClientMiddlewareFactory] = field(default_factory=list, repr=False)
    tls_cert_path: str | None = None

    @classmethod
    def create(cls, tls_cert_path: str | None = None, api_key: str | None = None) -> SecurityConfig:
        """Build the layer from a CA path and an API key, either of them optional.

        ``tls_cert_path=None`` means plaintext; an empty string is an error. An empty or
        None ``api_key`` means no header.

        Raises:
            FileNotFoundError, ValueError: from :func:`read_tls_root_certs`.
            ValueError: if the key holds characters a header cannot carry.
        """
        path = os.fspath(tls_cert_path) if tls_cert_path is not None else None
        certs = read_tls_root_certs(path) if path is not None else None
        if api_key and str(api_key).strip():
            factory = ApiKeyMiddlewareFactory(api_key)
            return cls(certs, factory.fingerprint, [factory], tls_cert_path=path)
        return cls(certs, None, [], tls_cert_path=path)

    @property
    def tls(self) -> bool:
        return self.tls_root_certs is not None

    def location(self, host: str, port: int) -> str:
        return location(host, port, self.tls)

    def new_flight_client(self, host: str, port: int) -> flight.FlightClient:
        """A Flight client for ``host:port`` with this layer's TLS trust and credentials."""
        kwargs: dict[str, Any] = {"middleware": list(self._middleware)}
        if self.tls_root_certs is not None:
            kwargs["tls_root_certs"] = self.tls_root_certs
        return flight.FlightClient(self.location(host, port), **kwargs)
