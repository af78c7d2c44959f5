"""``mosaico_server``: run the embedded Mosaico-compatible server on a local folder.

Example::

    mosaico_server --root ~/mosaico-data --port 6726

    # with TLS and API keys
    mosaico_server --root ~/mosaico-data --bootstrap-key      # prints a Manage key once
    mosaico_server --root ~/mosaico-data --require-api-key --tls-cert server.pem --tls-key server.key

The server speaks the mosaicod 0.7 JSON dialect (the one the SDK ``mosaicolabs`` 0.7.0
uses) and runs until SIGINT or SIGTERM, then exits with status 0. Exit status 2 means a
bad command line, an unusable ``--root`` or unusable TLS files; 1 means the server could
not start (for example the port is taken).

``--bootstrap-key`` creates a Manage API key in ``<root>/api_keys.json``, prints it as the
only line on standard output and exits 0 (the server keeps only a salted hash, so the key
cannot be shown again). Use it to create further keys with ``api_key_create``.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence

from ..common.imports import keep_pandas_out
from ..common.memory import keep_freed_memory

PROG = "mosaico_server"

#: Seconds to wait for running calls (for example an idle open DoPut) after a stop signal.
SHUTDOWN_GRACE_S = 5.0
#: Freed memory (bytes) the server process keeps for the next record batches it receives
SERVER_RETAIN_BYTES = 256 << 20


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0..65535: {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from mosaico_bridge.server.flight_server import DEFAULT_MAX_DECODE_MESSAGE_SIZE

    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Run a Mosaico-compatible Arrow Flight server that stores sequences in a local folder. "
            "Clients such as the mosaicolabs SDK connect to grpc://HOST:PORT."
        ),
        epilog="The server runs until SIGINT (Ctrl-C) or SIGTERM, then exits with status 0.",
    )
    parser.add_argument("--root", required=True, metavar="DIR", help="folder of the store (created if missing)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: %(default)s)")
    parser.add_argument(
        "--port", type=_port, default=6726, help="TCP port; 0 picks a free one (default: %(default)s)"
    )
    parser.add_argument(
        "--max-message-size",
        type=_positive_int,
        default=DEFAULT_MAX_DECODE_MESSAGE_SIZE,
        metavar="BYTES",
        help="largest record batch or request the server accepts, in bytes; clients size their "
        "batches from it (default: %(default)s)",
    )
    parser.add_argument(
        "--compression",
        choices=["none", "lz4", "zstd"],
        default=None,
        help="compression of the Arrow IPC buffers of new chunk files (default: lz4); "
        "data reads back the same with every setting",
    )
    sec = parser.add_argument_group("security")
    sec.add_argument("--tls-cert", metavar="PEM", help="server certificate chain (PEM); with --tls-key enables TLS (grpc+tls)")
    sec.add_argument("--tls-key", metavar="PEM", help="private key (PEM) of --tls-cert")
    sec.add_argument(
        "--require-api-key",
        action="store_true",
        help="refuse calls without a valid API key (header mosaico-api-key-token) of the level each call needs; "
        "without it every call is allowed except API key management, which always needs a Manage key",
    )
    sec.add_argument(
        "--bootstrap-key",
        action="store_true",
        help="create a Manage API key under --root, print it once on standard output and exit",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging level (default: %(default)s)",
    )
    return parser


def _fail(message: str, code: int) -> int:
    print(f"{PROG}: error: {' '.join(str(message).split())}", file=sys.stderr)
    return code


def _read_tls(cert_path: str, key_path: str) -> tuple[bytes, bytes]:
    """Read and check the server certificate and key (PEM).

    Raises:
        ValueError: naming the file, if a file cannot be read or the pair is not valid.
    """
    import ssl

    pems = []
    for flag, path in (("--tls-cert", cert_path), ("--tls-key", key_path)):
        try:
            with open(path, "rb") as fh:
                pems.append(fh.read())
        except OSError as exc:
            raise ValueError(f"{flag} {path}: {exc.strerror or exc}") from None
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert_path, key_path)
    except (ssl.SSLError, ValueError) as exc:
        raise ValueError(
            f"--tls-cert {cert_path} / --tls-key {key_path}: not a PEM certificate chain and its matching "
            f"private key ({exc})"
        ) from None
    return pems[0], pems[1]


def _bootstrap_key(root: str, log: logging.Logger) -> int:
    from mosaico_bridge.server.auth import ApiKeyStore, KeyStoreError, Permission

    try:
        keys = ApiKeyStore(root)
        api_key, record = keys.create(Permission.Manage, "bootstrap key (mosaico_server --bootstrap-key)")
    except KeyStoreError as exc:
        return _fail(str(exc), 2)
    print(api_key, flush=True)
    log.info("Manage API key %s stored (salted hash only) in %s; it is printed once, above", record.fingerprint, keys.path)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``mosaico_server``; returns the exit status."""
    # pyarrow would import pandas at the first record batch a client sends (~0.25 s on a
    # small machine, which every client of a fresh server waited for)
    keep_pandas_out()
    # gRPC receives every record batch into new buffers; glibc's adaptive thresholds gave
    # their memory back after each (12 MB MADV_DONTNEED of a thread's heap, 15 per 100
    # 1080p frames) and faulted it in again for the next (common/memory.py)
    keep_freed_memory(SERVER_RETAIN_BYTES)
    parser = build_parser()
    args = parser.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    log = logging.getLogger("mosaico_bridge.server")

    import pyarrow as pa

    from mosaico_bridge.protocol.errors import MosaicoError
    from mosaico_bridge.server.flight_server import MosaicoServer
    from mosaico_bridge.server.store import MosaicoStore

    root = os.path.abspath(os.path.expanduser(args.root))
    try:
        store = MosaicoStore(root, **({"compression": args.compression} if args.compression else {}))  # opened first, so a bad root is told apart from a bind error
    except OSError as exc:
        return _fail(f"cannot use --root {root}: {exc.strerror or exc}", 2)
    except MosaicoError as exc:
        return _fail(f"cannot use --root {root}: {exc.reason}", 2)

    if args.bootstrap_key:
        return _bootstrap_key(root, log)

    tls_certificates = None
    if args.tls_cert:
        try:
            tls_certificates = [_read_tls(args.tls_cert, args.tls_key)]
        except ValueError as exc:
            return _fail(str(exc), 2)

    from mosaico_bridge.server.auth import ApiKeyStore, KeyStoreError

    key_count = 0
    if args.require_api_key:
        try:
            key_count = len(ApiKeyStore(root).records())
        except KeyStoreError as exc:
            return _fail(str(exc), 2)

    try:
        server = MosaicoServer(
            store,
            args.host,
            args.port,
            max_decode_message_size=args.max_message_size,
            tls_certificates=tls_certificates,
            require_api_key=args.require_api_key,
        )
    except (pa.ArrowException, OSError, ValueError) as exc:
        return _fail(f"cannot start the server on {args.host}:{args.port}: {exc}", 1)

    loopback = args.host in ("127.0.0.1", "localhost", "::1") or args.host.startswith("127.")
    if not args.require_api_key and not loopback:
        log.warning(
            "serving %s without API keys: anyone who reaches it can read, write and delete data; "
            "use --require-api-key (and TLS)", server.location,
        )
    if args.require_api_key:
        if not key_count:
            log.warning(
                "API keys are required but none exists yet: create one with "
                "mosaico_server --root %s --bootstrap-key", root,
            )
        if tls_certificates is None and not loopback:
            log.warning("API keys travel in clear text: give --tls-cert and --tls-key")

    stop = threading.Event()

    def _on_signal(signum, _frame):
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    log.info("data folder: %s", server.root)
    log.info(
        "listening on %s (max message size %d bytes, API keys %s)",
        server.location,
        server.max_decode_message_size,
        "required" if server.require_api_key else "not required",
    )
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    if not server.stop(timeout=SHUTDOWN_GRACE_S):
        # A client still holds a call open (e.g. an idle DoPut). Every received batch is
        # already on disk and the store recovers open topics on the next start.
        log.warning("exiting without waiting for the running calls")
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
