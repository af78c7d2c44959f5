"""``mosaico_server``: run the embedded Mosaico-compatible server on a local folder.

Example::

    mosaico_server --root ~/mosaico-data --port 6726

The server speaks the mosaicod 0.7 JSON dialect (the one the SDK ``mosaicolabs`` 0.7.0
uses) and runs until SIGINT or SIGTERM, then exits with status 0. Exit status 2 means a
bad command line or an unusable ``--root``; 1 means the server could not start (for
example the port is taken).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from typing import Optional, Sequence

PROG = "mosaico_server"

#: Seconds to wait for running calls (for example an idle open DoPut) after a stop signal.
SHUTDOWN_GRACE_S = 5.0


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
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging level (default: %(default)s)",
    )
    return parser


def _fail(message: str, code: int) -> int:
    print(f"{PROG}: error: {' '.join(str(message).split())}", file=sys.stderr)
    return code


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``mosaico_server``; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    log = logging.getLogger("mosaico_bridge.server")

    import pyarrow as pa

    from mosaico_bridge.server.flight_server import MosaicoServer
    from mosaico_bridge.server.store import MosaicoStore, StoreError

    root = os.path.abspath(os.path.expanduser(args.root))
    try:
        store = MosaicoStore(root)  # opened first, so a bad root is told apart from a bind error
    except (OSError, StoreError) as exc:
        return _fail(f"cannot use --root {root}: {exc}", 2)

    try:
        server = MosaicoServer(store, args.host, args.port, max_decode_message_size=args.max_message_size)
    except (pa.ArrowException, OSError, ValueError) as exc:
        return _fail(f"cannot start the server on {args.host}:{args.port}: {exc}", 1)

    stop = threading.Event()

    def _on_signal(signum, _frame):
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    log.info("data folder: %s", server.root)
    log.info("listening on %s (max message size %d bytes)", server.location, server.max_decode_message_size)
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
