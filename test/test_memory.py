"""glibc keeps the memory of freed large messages for reuse (``common/memory.py``)."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest
from conftest import REPO

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")

#: bursts of 6 MiB messages, as a camera topic's in-flight messages rise while a write
#: stalls and fall once it is acknowledged: 20 allocated, then all but 2 freed, oldest first
FAULTS_PER_MESSAGE = """
import json, resource, sys
from mosaico_bridge.common.memory import keep_freed_memory
tuned = keep_freed_memory(256 << 20) if sys.argv[1] == "tuned" else None
src, held = bytearray(6 << 20), []
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def burst():
    while len(held) < 20:
        held.append(bytes(src))
    del held[:-2]
burst()  # the first burst maps the memory
f0, n = faults(), 0
for _ in range(10):
    n += 20 - len(held)
    burst()
print(json.dumps({"tuned": tuned, "faults": (faults() - f0) / n}))
"""


def run_snippet(code: str, *args: str) -> dict:
    """Run ``code`` in a fresh interpreter (malloc settings are process-wide); its last JSON line."""
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=120, cwd=REPO, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def faults_per_message(mode: str) -> dict:
    return run_snippet(FAULTS_PER_MESSAGE, mode)


def test_freed_large_messages_are_reused_without_page_faults():
    default, tuned = faults_per_message("default"), faults_per_message("tuned")
    assert tuned["tuned"] is True
    # with glibc's adaptive thresholds the memory freed after a burst goes back to the OS
    # and the next burst faults it in again (else this test would show nothing)
    assert default["faults"] > 10, default
    # kept: the next burst reuses it (a 6 MiB message is 1,536 pages; none faults)
    assert tuned["faults"] <= 1.0, (tuned, default)
    print(f"page faults per 6 MiB message: default thresholds {default['faults']:.1f}, kept {tuned['faults']:.1f}")


#: 8 messages of 6 MiB allocated on the thread that warmed its heap (48 MiB within 64 MiB)
FAULTS_AFTER_WARM = """
import json, resource, sys
from mosaico_bridge.common.memory import keep_freed_memory, warm_heap
keep = sys.argv[1] == "keep"
if keep:
    keep_freed_memory(256 << 20)
src = bytearray(6 << 20)
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
thread = warm_heap(int(sys.argv[2]))
if thread is not None:
    thread.join()
f0 = faults()
held = [bytes(src) for _ in range(8)]
print(json.dumps({"warmed": thread is not None, "faults": (faults() - f0) / 8}))
"""


def faults_after_warm(keep: str, nbytes: int) -> dict:
    return run_snippet(FAULTS_AFTER_WARM, keep, str(nbytes))


def test_warm_heap_lets_the_first_large_messages_reuse_faulted_pages():
    cold, warm = faults_after_warm("keep", 0), faults_after_warm("keep", 64 << 20)
    assert cold["warmed"] is False and warm["warmed"] is True
    # a 6 MiB message in new memory faults in most of its 1,536 pages (else this shows nothing)
    assert cold["faults"] > 500, cold
    # in the warmed heap: none (the pieces were touched and freed by the mb-warm thread)
    assert warm["faults"] <= 1.0, (warm, cold)
    print(f"page faults per 6 MiB message: cold {cold['faults']:.0f}, warmed {warm['faults']:.1f}")


def test_warm_heap_needs_the_kept_thresholds():
    # without keep_freed_memory the freed pieces would go back to the OS: nothing is warmed
    assert faults_after_warm("default", 64 << 20)["warmed"] is False
