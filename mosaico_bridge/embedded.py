"""One way to reach a Mosaico server for every entry point (bag_import, spool_upload, the
bridge node): connect to ``host:port``, or, without a host, start the embedded
Mosaico-compatible server (:class:`mosaico_bridge.server.MosaicoServer`) on a local
directory and connect to it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .client import DEFAULT_MAX_INFLIGHT_BYTES, MosaicoClient
from .client.data import DEFAULT_DATA_CONNECTIONS
from .protocol import names
from .protocol.errors import MosaicoError

if TYPE_CHECKING:
    from typing import Self

    from .server import MosaicoServer

log = logging.getLogger("mosaico_bridge.embedded")

#: Data directory of the embedded server when none is given.
DEFAULT_ROOT = "./mosaico_data"


class EmbeddedServerError(OSError):
    """The embedded server cannot start on its root directory; the message names the directory."""


@dataclass(frozen=True)
class ServerConfig:
    """Where the data goes and how the client is set up.

    ``host`` empty: the embedded server on ``root`` (loopback, a free port). Timeouts in
    seconds, sizes in bytes; ``api_key`` and ``tls_cert_path`` are used as given (callers
    read ``$MOSAICO_API_KEY`` / ``$MOSAICO_TLS_CERT_FILE``).
    """

    host: str = ""
    port: int = names.DEFAULT_PORT
    root: str = DEFAULT_ROOT
    timeout: float = 5.0
    tls_cert_path: str | None = None
    api_key: str | None = field(default=None, repr=False)
    data_connections: int = DEFAULT_DATA_CONNECTIONS
    workers: int | None = None
    max_inflight_bytes: int = DEFAULT_MAX_INFLIGHT_BYTES
    compression: str = "none"
    worker_nice: int = 0

    @property
    def embedded(self) -> bool:
        return not self.host


class Connection:
    """A connected client and, when embedded, the server it talks to; :meth:`close` closes both."""

    def __init__(self, client: MosaicoClient, server: MosaicoServer | None, root: Path | None) -> None:
        self.client = client
        self.server = server
        self.root = root  # the embedded server's data directory, or None

    @property
    def host(self) -> str:
        return self.client.host

    @property
    def port(self) -> int:
        return self.client.port

    def close(self) -> None:
        """Close the client, then stop the embedded server (if any). Idempotent."""
        try:
            self.client.close()
        finally:
            if self.server is not None:
                self.server.stop()
                self.server = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect_or_embed(config: ServerConfig) -> Connection:
    """Connect as ``config`` says; start the embedded server first when ``config.host`` is empty.

    Raises:
        EmbeddedServerError: the embedded server's root cannot be created or used.
        ConnectionError, AuthenticationError, ValueError, FileNotFoundError: as
            :meth:`MosaicoClient.connect`; an embedded server started here is stopped again.
    """
    server = None
    root = None
    host, port = config.host, config.port
    if config.embedded:
        from .server import MosaicoServer

        root = Path(config.root)
        try:
            root.mkdir(parents=True, exist_ok=True)
            # Constructed, never serve()d: the gRPC server answers from construction on, and
            # pyarrow's serve() shuts the server down on SIGINT / SIGTERM, before the caller
            # could apply an on-error policy or finalize what it received.
            server = MosaicoServer(root, host="127.0.0.1", port=0)
        except (OSError, MosaicoError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise EmbeddedServerError(f"{root}: cannot start the embedded server: {reason}") from None
        host, port = "127.0.0.1", server.port
        log.info("embedded Mosaico server on %s (port %d)", root.resolve(), port)
    try:
        client = MosaicoClient.connect(
            host, port, timeout=config.timeout, tls_cert_path=config.tls_cert_path, api_key=config.api_key,
            data_connections=config.data_connections, workers=config.workers,
            max_inflight_bytes=config.max_inflight_bytes, compression=config.compression,
            in_process_server=server, worker_nice=config.worker_nice,
        )
    except BaseException:
        if server is not None:
            server.stop()
        raise
    return Connection(client, server, root)
