"""Session splitting of the live bridge (``~/split_session``, ``max_session_duration_s``):
the open session is finalized and the next one opened without unsubscribing, and every
message of a numbered publisher is stored exactly once, in order, across the sessions'
topics (``/num``, ``/num_s2``, ...). Node, publisher and driver are separate processes.
"""

from __future__ import annotations

import time

import pytest
from test_bridge_node import NODE, procs  # noqa: F401 - the fixture

pytest.importorskip("rclpy")

SPLIT = f"{NODE}/split_session"


def stored_numbers(port: int, sequence: str) -> tuple[int, list[list[int]]]:
    """(number of sessions, the numbers stored in each session's /num topic, in session order;
    [] for a session without it)."""
    from mosaico_bridge.client import MosaicoClient

    with MosaicoClient.connect("127.0.0.1", port) as client:
        sessions = client.sequence_handler(sequence).sessions
        assert all(s.locked for s in sessions)
        out = []
        for n in range(1, len(sessions) + 1):
            th = client.topic_handler(sequence, "/num" if n == 1 else f"/num_s{n}")
            out.append([int(v) for v in th.read().column("data").to_pylist()] if th is not None else [])
        return len(sessions), out


def finish(bridge, driver, total: int) -> None:
    """Wait until the open session has received what the finalized ones did not (a timed
    split may finalize one meanwhile: then count again), then deactivate."""
    deadline = time.monotonic() + 90
    while True:
        # a timed split may come before the first discovery: a session without /num
        before = sum(c.get("/num", {}).get("received", 0) for c in bridge.counters())
        try:
            # start/result: ask() keeps its timeout for itself, the agent's wait gets this one
            driver.start("wait_received", node="mosaico_bridge", counts={"/num": total - before}, timeout=3)
            driver.result(timeout=30)
            break
        except RuntimeError:  # the agent's timeout
            assert time.monotonic() < deadline, f"{before} of {total} received in finalized sessions"
    assert driver.ask("transition", node=NODE, transition="deactivate", timeout=120)["success"]


def test_split_session_service_under_load_stores_every_message_once(server, procs):  # noqa: F811
    bridge = procs.bridge(host="127.0.0.1", port=server.port, sequence_name="split_run", topics=["/num"])
    driver, publisher = procs.agent("driver"), procs.agent("publisher")
    assert driver.ask("transition", node=NODE, transition="configure")["success"]
    refused = driver.ask("trigger", service=SPLIT)
    assert refused["success"] is False and "not active" in refused["message"]
    assert driver.ask("transition", node=NODE, transition="activate")["success"]
    total = 6000
    publisher.start("numbered", topic="/num", count=total, rate=1000)
    locators = []
    for _split in range(3):  # each session has received at least 500 messages when it is split
        driver.ask("wait_received", node="mosaico_bridge", counts={"/num": 500}, timeout=60)
        answer = driver.ask("trigger", service=SPLIT)
        assert answer["success"], answer
        locators.append(answer["message"])
    assert publisher.result(timeout=120)["published"] == total
    finish(bridge, driver, total)
    assert len(set(locators)) == 3
    sessions, numbers = stored_numbers(server.port, "split_run")
    assert sessions == 4
    assert all(len(n) >= 500 for n in numbers[:3]), [len(n) for n in numbers]
    assert [v for n in numbers for v in n] == list(range(total))  # each once, in order, no gap
    counters = bridge.counters()
    assert [c["/num"]["written"] for c in counters] == [len(n) for n in numbers]  # every session has /num
    assert all(c["/num"]["dropped"] == 0 for c in counters)


def test_max_session_duration_splits_without_losing_a_message(server, procs):  # noqa: F811
    bridge = procs.bridge(host="127.0.0.1", port=server.port, sequence_name="timed_run", topics=["/num"],
                          max_session_duration_s=1.5)
    driver, publisher = procs.agent("driver"), procs.agent("publisher")
    assert driver.ask("transition", node=NODE, transition="configure")["success"]
    assert driver.ask("transition", node=NODE, transition="activate")["success"]
    total = 2000
    assert publisher.ask("numbered", topic="/num", count=total, rate=500, timeout=120)["published"] == total
    finish(bridge, driver, total)
    assert "max_session_duration_s 1.5 reached" in bridge.log()
    sessions, numbers = stored_numbers(server.port, "timed_run")
    assert sessions >= 2, sessions  # 4 s of publishing, a split every 1.5 s (checked each second)
    assert [v for n in numbers for v in n] == list(range(total))
