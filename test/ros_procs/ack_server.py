#!/usr/bin/env python3
"""A Mosaico server process for the tests of the client's acknowledged writes.

    ack_server.py --root DIR --port P [--silent]

Without ``--silent``: the embedded server itself, which acknowledges every stored record
batch with a PutAck. With ``--silent``: the same server sending no PutResult at all, as
mosaicod does; a client then counts a stream's rows as acknowledged when it ends.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # this checkout's mosaico_bridge

from mosaico_bridge.common.imports import keep_pandas_out
from mosaico_bridge.server import MosaicoServer


class _NoResults:
    """A FlightMetadataWriter that sends nothing."""

    def write(self, _buf: object) -> None:
        return None


class SilentServer(MosaicoServer):
    """The embedded server without PutResults (acknowledgement only at the end of a stream)."""

    def do_put(self, context, descriptor, reader, writer):
        return super().do_put(context, descriptor, reader, _NoResults())


def main() -> int:
    keep_pandas_out()  # as mosaico_server does: no pandas import at the first record batch
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--silent", action="store_true", help="send no PutResult (acknowledge at the end of a stream)")
    args = ap.parse_args()
    server = (SilentServer if args.silent else MosaicoServer)(args.root, host="127.0.0.1", port=args.port)
    signal.signal(signal.SIGTERM, lambda *_: server.shutdown())
    print(f"listening on {server.port}", flush=True)
    server.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
