#!/usr/bin/env python3
"""What a bare subscriber loses of a camera load when something else wants the CPU or the GIL.

The question behind it (issue "Live data path", item 7): would moving the bridge's
conversion and upload into a worker process (fed through shared memory) let the ROS process
receive more? That only helps if the loss comes from contention for the GIL inside the
subscriber's process, not from contention for the machine's cores, which a worker process
still competes for (and adds a copy of every message to).

Each mode runs the same load (bench_live's scenarios, publishers in their own processes)
into bare_sub.py, a raw EventsExecutor subscriber that only counts, with:

  none       nothing else
  gil:D      a thread in the subscriber's process that runs Python code D of every 10 ms
  cpu:D      a separate process that spins D of every 10 ms (no GIL shared)
  mem:D      a separate process that copies 8 MiB buffers D of every 10 ms (memory
             bandwidth, as the bridge's writes and socket copies take it)

and prints received / published per round and the machine's busy share.

    .venv/bin/python bench/bench_contention.py [--scenario 4cam] [--modes none,gil:0.5,cpu:0.5] \
        [--rounds 2] [--seconds 10]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_live import PY, SCENARIOS, baseline

#: a process that spins for DUTY of every 10 ms, holding no lock any subscriber needs
SPINNER = ("import sys, time\n"
           "duty = float(sys.argv[1])\n"
           "while True:\n"
           "    t0 = time.perf_counter()\n"
           "    while time.perf_counter() - t0 < duty * 0.01:\n"
           "        pass\n"
           "    time.sleep((1 - duty) * 0.01)\n")


#: a process that copies 8 MiB buffers for DUTY of every 10 ms
COPIER = ("import sys, time\n"
          "import numpy as np\n"
          "duty = float(sys.argv[1])\n"
          "src, dst = np.ones(8 << 20, np.uint8), np.empty(8 << 20, np.uint8)\n"
          "while True:\n"
          "    t0 = time.perf_counter()\n"
          "    while time.perf_counter() - t0 < duty * 0.01:\n"
          "        np.copyto(dst, src)\n"
          "    time.sleep((1 - duty) * 0.01)\n")


def one_round(procs, mode: str, seconds: float, env: dict) -> tuple[int, int, float]:
    """(received, published, machine busy share) of one run of the load under ``mode``."""
    kind, _, duty = mode.partition(":")
    code = {"cpu": SPINNER, "mem": COPIER}.get(kind)
    spinner = subprocess.Popen([PY, "-c", code, duty]) if code else None
    try:
        published, received, info = baseline(procs, seconds, env, ["--gil-load", duty] if kind == "gil" else [])
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait(timeout=30)
    return sum(received.values()), sum(published.values()), info["busy"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenario", default="4cam", choices=sorted(SCENARIOS))
    ap.add_argument("--modes", default="none,gil:0.5,cpu:0.5",
                    help="comma-separated: none, gil:DUTY, cpu:DUTY, mem:DUTY (0 < DUTY < 1)")
    ap.add_argument("--rounds", type=int, default=2, help="rounds of every mode, interleaved")
    ap.add_argument("--seconds", type=float, default=10)
    args = ap.parse_args()
    modes = args.modes.split(",")
    for m in modes:
        kind, _, duty = m.partition(":")
        if kind not in ("none", "gil", "cpu", "mem") or (kind != "none" and not 0 < float(duty or 0) < 1):
            ap.error(f"bad mode {m!r}: none, gil:DUTY, cpu:DUTY or mem:DUTY with 0 < DUTY < 1")
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               ROS_DOMAIN_ID=os.environ.get("ROS_DOMAIN_ID") or str(random.randint(1, 101)))
    os.environ.update(env)
    procs = SCENARIOS[args.scenario]
    results: dict[str, list[tuple[int, int, float]]] = {m: [] for m in modes}
    for r in range(args.rounds):
        for m in modes:
            results[m].append(one_round(procs, m, args.seconds, env))
            print(f"round {r + 1} {m} done", file=sys.stderr, flush=True)
    print(f"{args.scenario}, {args.seconds:g} s per run, {os.cpu_count()} CPUs, {args.rounds} round(s) per mode; "
          "bare rclpy subscriber (raw, reliable, KEEP_ALL, EventsExecutor)")
    print(f"{'mode':<10}{'received/published per round':>34}{'median':>8}{'machine busy':>14}")
    for m, rows in results.items():
        ratios = [rx / pub if pub else float("nan") for rx, pub, _b in rows]
        per = ", ".join(f"{rx}/{pub} {q:.2f}" for (rx, pub, _b), q in zip(rows, ratios))
        busy = statistics.median(b for _r, _p, b in rows)
        print(f"{m:<10}{per:>34}{statistics.median(ratios):>8.2f}{busy:>13.0%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
