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


# ------------------------------------------------------------ real-time priority
def _permitted() -> bool:
    from mosaico_bridge.common.threads import realtime_refused

    return realtime_refused(5) is None


needs_rt = pytest.mark.skipif(not sys.platform.startswith("linux") or not _permitted(),
                              reason="SCHED_FIFO needs Linux and CAP_SYS_NICE or an rtprio limit")
DROP_SYS_NICE = ["setpriv", "--bounding-set", "-sys_nice", "--inh-caps", "-sys_nice"]


@pytest.mark.parametrize("priority", [-1, 100, True, "5", 2.0])
def test_realtime_priority_outside_0_to_99_refused(priority):
    from mosaico_bridge.common.threads import check_realtime_priority

    with pytest.raises(ValueError, match=rf"must be an integer in 0\.\.99, got {priority!r}"):
        check_realtime_priority(priority)


@needs_rt
def test_set_realtime_priority_changes_only_the_named_thread_and_back():
    from mosaico_bridge.common.threads import set_realtime_priority

    ready, done = threading.Event(), threading.Event()
    tids = []

    def run() -> None:
        tids.append(threading.get_native_id())
        ready.set()
        done.wait(10)

    t = threading.Thread(target=run)
    t.start()
    try:
        assert ready.wait(10)
        set_realtime_priority(tids[0], 7)
        assert os.sched_getscheduler(tids[0]) & ~os.SCHED_RESET_ON_FORK == os.SCHED_FIFO
        assert os.sched_getparam(tids[0]).sched_priority == 7
        assert os.sched_getscheduler(0) == os.SCHED_OTHER  # the caller is untouched
        set_realtime_priority(tids[0], 0)
        assert os.sched_getscheduler(tids[0]) & ~os.SCHED_RESET_ON_FORK == os.SCHED_OTHER
    finally:
        done.set()
        t.join(10)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SCHED_FIFO is Linux")
def test_realtime_refused_says_why_without_the_privilege():
    """In a process without CAP_SYS_NICE and with an rtprio limit of 0 (setpriv drops the
    capability when the test runs as root), the check names what is missing."""
    import resource
    import shutil
    import subprocess

    if resource.getrlimit(resource.RLIMIT_RTPRIO)[0] >= 5:
        pytest.skip("this process's rtprio limit allows priority 5 without any capability")
    prefix = DROP_SYS_NICE if _permitted() else []
    if prefix and shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is needed to drop CAP_SYS_NICE")
    code = "from mosaico_bridge.common.threads import realtime_refused as r; print(r(5))"
    out = subprocess.run([*prefix, sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "Operation not permitted" in out.stdout and "CAP_SYS_NICE" in out.stdout, out.stdout


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/task is Linux")
def test_receive_threads_finds_threads_by_their_os_name_only():
    from mosaico_bridge.common.threads import receive_threads

    ready, done = threading.Event(), threading.Event()
    names = ["dds.shm.7411", "dds.udp.7400", "recvUC", "dds.shm.wdog", "dds.ev.1", "recvX"]
    tids: dict[str, int] = {}

    def run(name: str) -> None:
        import ctypes

        ctypes.CDLL(None).prctl(15, name.encode(), 0, 0, 0)
        tids[name] = threading.get_native_id()
        if len(tids) == len(names):
            ready.set()
        done.wait(10)

    threads = [threading.Thread(target=run, args=(n,)) for n in names]
    for t in threads:
        t.start()
    try:
        assert ready.wait(10)
        found = receive_threads()
        assert {tids[n]: n for n in names[:3]}.items() <= found.items()
        assert not {tids[n] for n in names[3:]} & set(found)
    finally:
        done.set()
        for t in threads:
            t.join(10)
