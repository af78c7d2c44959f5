"""Keep the memory of freed large messages in the process (glibc malloc).

A live camera topic allocates one large ``bytes`` per message on the executor thread (rclpy
copies each serialized message into one) and frees it on another thread once the server
has acknowledged it. The number in flight rises while a write stalls and falls after.
With glibc's adaptive thresholds, the memory freed at the end of such a burst goes back to
the operating system (heap trim) and the next burst faults it in, zeroed, again:
``test/test_memory.py`` counts 238 page faults per 6 MiB message for bursts of 20. In a 10 s
run of one 1080p camera at full rate the executor thread spent 0.6–1.2 s in the kernel
that way, 0.2–0.3 s with the thresholds fixed (``docs/live-path.md``).
"""

from __future__ import annotations

import platform

#: ``mallopt`` parameters (<malloc.h>)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

#: Allocations up to this size come from the heap, where freed memory is reused; glibc
#: accepts at most 32 MiB on 64-bit systems. Larger ones are still mapped and unmapped.
MMAP_THRESHOLD_BYTES = 32 << 20


def keep_freed_memory(retain_bytes: int) -> bool:
    """Make glibc's malloc keep up to ``retain_bytes`` (bytes) of freed memory for reuse
    instead of returning it to the OS, and serve allocations up to 32 MiB from the heap.

    Process-wide, so called by the console scripts only (``bridge_node``), never on import.
    Peak RSS does not grow from it (memory is reused, not added); after a burst, RSS stays
    up to ``retain_bytes`` above what is in use.

    Returns:
        True if both thresholds were set; False off glibc (nothing changes).
    """
    if platform.libc_ver()[0] != "glibc":
        return False
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(mallopt(M_TRIM_THRESHOLD, int(retain_bytes)))
