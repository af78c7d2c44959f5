"""Time to refuse an API key, per kind of bad key, on an embedded server (loopback).

Prints the median of N DoAction ``info`` calls for each kind, and the ratio of each to
the wrong-secret case (an existing fingerprint with another secret): a ratio near 1 for
an unknown fingerprint means the refusal time does not tell which fingerprints exist.

    python bench/bench_server_auth.py [N]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time

from pyarrow import flight

from mosaico_bridge.protocol import auth as pauth
from mosaico_bridge.server import MosaicoServer, Permission


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    with tempfile.TemporaryDirectory() as root:
        srv = MosaicoServer.start_background(root, port=0, require_api_key=True, auth_failure_burst=10**6)
        key, record = srv.api_keys.create(Permission.Read)
        other_fp = "0badf00d" if record.fingerprint != "0badf00d" else "0badf00e"
        cases = {
            "valid (verified)": key,
            "wrong secret": pauth.make_api_key("a" * 32, record.fingerprint),
            "unknown fingerprint": pauth.make_api_key("a" * 32, other_fp),
            "malformed": "msco_nope",
        }
        times: dict[str, float] = {}
        with flight.FlightClient(srv.location) as c:
            for name, k in cases.items():
                opts = flight.FlightCallOptions(headers=[(pauth.API_KEY_HEADER.encode(), k.encode())])
                samples = []
                for _ in range(n):
                    t = time.perf_counter()
                    try:
                        list(c.do_action(flight.Action("info", b"{}"), opts))
                    except flight.FlightUnauthenticatedError:
                        pass
                    samples.append(time.perf_counter() - t)
                times[name] = statistics.median(samples)
        srv.stop()
    base = times["wrong secret"]
    for name, t in times.items():
        print(f"{name:22s} {t * 1000:8.2f} ms   ratio to wrong secret {t / base:5.2f}")


if __name__ == "__main__":
    main()
