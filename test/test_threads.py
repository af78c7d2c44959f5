"""OS names of the client's threads (what top -H, perf and /proc show)."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

from mosaico_bridge.client.processing import ExecutorPool
from mosaico_bridge.common.threads import name_os_thread, os_thread_name


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
