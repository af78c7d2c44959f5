"""OS names and nice values of the client's threads (what top -H, perf and /proc show)."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import pyarrow.flight as flight
import pytest
from conftest import task_nice

from mosaico_bridge.client.data import DataConnection
from mosaico_bridge.client.processing import ExecutorPool
from mosaico_bridge.common.threads import check_nice, lower_thread_priority, name_os_thread, os_thread_name

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are Linux")


def _own_nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def test_os_thread_name_shortens_the_prefix_and_cuts_to_15_bytes():
    assert os_thread_name("mosaico-convert_0") == b"mb-convert_0"
    assert os_thread_name("mosaico-ack/run/camera/image_raw") == b"mb-ack/run/came"
    assert os_thread_name("worker") == b"worker"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl(PR_SET_NAME) is Linux")
def test_conversion_threads_carry_their_name_in_the_os():
    pool = ExecutorPool(2)
    try:
        def comm() -> str:
            return Path(f"/proc/self/task/{threading.get_native_id()}/comm").read_text().strip()

        names = {pool.submit(comm).result(timeout=10) for _ in range(20)}
    finally:
        pool.close()
    assert names and names <= {"mb-convert_0", "mb-convert_1"}, names


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl(PR_SET_NAME) is Linux")
def test_name_os_thread_in_a_plain_thread():
    seen = []

    def run() -> None:
        name_os_thread()
        seen.append(Path(f"/proc/self/task/{threading.get_native_id()}/comm").read_text().strip())

    t = threading.Thread(target=run, name="mosaico-batches")
    t.start()
    t.join(timeout=10)
    assert seen == ["mb-batches"]


@linux_only
def test_conversion_and_data_threads_run_at_the_raised_nice_value_and_the_caller_does_not():
    base = _own_nice()
    pool = ExecutorPool(2, nice=5)
    conn = DataConnection(0, flight.FlightClient("grpc://127.0.0.1:1"), nice=7)
    try:
        assert {pool.submit(_own_nice).result(timeout=10) for _ in range(20)} == {min(19, base + 5)}
        assert conn.submit(_own_nice).result(timeout=10) == min(19, base + 7)
        # /proc agrees with getpriority
        tid = conn.submit(threading.get_native_id).result(timeout=10)
        assert task_nice(Path(f"/proc/self/task/{tid}")) == ("mb-data-0_0", min(19, base + 7))
    finally:
        pool.close()
        conn.close()
    assert _own_nice() == base


@linux_only
def test_nice_zero_leaves_the_threads_at_the_callers_priority():
    base = _own_nice()
    pool = ExecutorPool(1)
    try:
        assert pool.submit(_own_nice).result(timeout=10) == base
    finally:
        pool.close()


@linux_only
def test_lower_thread_priority_caps_at_19():
    seen = []

    def run() -> None:
        lower_thread_priority(15)
        lower_thread_priority(15)
        seen.append(_own_nice())

    t = threading.Thread(target=run)
    t.start()
    t.join(timeout=10)
    assert seen == [19]


@pytest.mark.parametrize("nice", [-1, 20, True, 1.5, "3"])
def test_nice_outside_0_to_19_refused(nice):
    with pytest.raises(ValueError, match="worker_nice must be an integer in 0..19"):
        check_nice(nice)
    with pytest.raises(ValueError, match="worker_nice must be an integer in 0..19"):
        ExecutorPool(1, nice=nice)
