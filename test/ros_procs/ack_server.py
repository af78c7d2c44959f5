#!/usr/bin/env python3
"""A Mosaico server process that acknowledges every stored record batch of a DoPut stream
with a PutResult whose app_metadata is ``protocol.descriptors.PutAck(rows=<rows of the
stream stored so far>)``: the embedded server plus per-batch acknowledgements, for the
tests of the client's acknowledged writes.

    ack_server.py --root DIR --port P

The acknowledgement of batch k is sent when the server asks the stream for batch k+1,
that is after batch k was written to its chunk file (flushed to the operating system).
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # this checkout's mosaico_bridge

from mosaico_bridge.protocol.descriptors import PutAck
from mosaico_bridge.server import MosaicoServer


class AckingServer(MosaicoServer):
    def do_put(self, context, descriptor, reader, writer):
        state = {"rows": 0, "pending": 0}

        class AckingReader:
            schema = reader.schema

            def read_chunk(self):
                if state["pending"]:  # the previous batch is stored: acknowledge it
                    state["rows"] += state["pending"]
                    state["pending"] = 0
                    writer.write(pa.py_buffer(PutAck(rows=state["rows"]).to_bytes()))
                chunk = reader.read_chunk()
                if chunk.data is not None:
                    state["pending"] = chunk.data.num_rows
                return chunk

            def __getattr__(self, name):
                return getattr(reader, name)

        return super().do_put(context, descriptor, AckingReader(), writer)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    server = AckingServer(args.root, host="127.0.0.1", port=args.port)
    signal.signal(signal.SIGTERM, lambda *_: server.shutdown())
    print(f"listening on {server.port}", flush=True)
    server.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
