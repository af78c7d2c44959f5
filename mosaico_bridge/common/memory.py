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

import functools
import platform
import threading

from .threads import name_os_thread

#: ``mallopt`` parameters (<malloc.h>)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

#: Allocations up to this size come from the heap, where freed memory is reused; glibc
#: accepts at most 32 MiB on 64-bit systems. Larger ones are still mapped and unmapped.
MMAP_THRESHOLD_BYTES = 32 << 20

#: :func:`warm_heap` allocates and touches its memory in pieces of this size (bytes), below
#: MMAP_THRESHOLD_BYTES so that they come from the heap
WARM_PIECE_BYTES = 8 << 20

#: what keep_freed_memory retains (bytes); 0 until it has succeeded in this process
_retain_bytes = 0
#: one small allocation per warmed region, never freed: it separates the region from the top
#: of the heap, so that freeing the region never reaches the trim threshold
_fences: list[int] = []


def keep_freed_memory(retain_bytes: int) -> bool:
    """Make glibc's malloc keep up to ``retain_bytes`` (bytes) of freed memory for reuse
    instead of returning it to the OS, and serve allocations up to 32 MiB from the heap.

    Process-wide, so called by the console scripts only (``bridge_node``), never on import.
    Peak RSS does not grow from it (memory is reused, not added); after a burst, RSS stays
    up to ``retain_bytes`` above what is in use.

    Returns:
        True if both thresholds were set; False off glibc (nothing changes).
    """
    global _retain_bytes
    lib = libc()
    if lib is None:
        return False
    ok = bool(lib.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(lib.mallopt(M_TRIM_THRESHOLD, int(retain_bytes)))
    _retain_bytes = int(retain_bytes) if ok else 0
    return ok


@functools.cache
def libc():
    """glibc through ctypes (``malloc``, ``realloc``, ``free`` and ``mallopt`` typed), or None
    off glibc. Loaded once per process."""
    if platform.libc_ver()[0] != "glibc":
        return None
    import ctypes

    try:
        lib = ctypes.CDLL(None)
        lib.malloc.restype = ctypes.c_void_p
        lib.malloc.argtypes = [ctypes.c_size_t]
        lib.realloc.restype = ctypes.c_void_p
        lib.realloc.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        lib.free.restype = None
        lib.free.argtypes = [ctypes.c_void_p]
        lib.mallopt  # noqa: B018 - AttributeError if absent
    except (OSError, AttributeError):
        return None
    return lib


def warm_heap(nbytes: int, name: str = "mb-warm") -> threading.Thread | None:
    """Fault in up to ``nbytes`` (bytes) of the calling thread's malloc arena, in the
    background, and leave it free for that thread's next allocations.

    The pieces are allocated on the calling thread (so in its arena) and written and freed
    by a thread named ``name``: the first touch of each page, which on a VM can cost a fault
    in the host (``docs/live-path.md`` § Warm memory), is paid there, without the GIL, instead
    of by the first large messages the caller allocates. Needs :func:`keep_freed_memory`
    first (else the freed memory would go back to the OS); at most 3/4 of what it retains.
    RSS rises by the warmed bytes at once; it does not add to the peak of a load that fills
    them with messages.

    Returns:
        The started thread (join it to wait), or None if nothing is warmed (off glibc,
        without keep_freed_memory, ``nbytes`` below one piece, or malloc failed).
    """
    lib = libc()
    count = min(int(nbytes), 3 * _retain_bytes // 4) // WARM_PIECE_BYTES
    if lib is None or count <= 0:
        return None
    pieces = []
    for _ in range(count):
        p = lib.malloc(WARM_PIECE_BYTES)
        if not p:
            break
        pieces.append(p)
    fence = lib.malloc(64)
    if not pieces or not fence:
        for p in pieces:
            lib.free(p)
        return None
    _fences.append(fence)

    def touch() -> None:
        import ctypes

        name_os_thread()
        for p in pieces:
            ctypes.memset(p, 0, WARM_PIECE_BYTES)  # a foreign call: runs without the GIL
            lib.free(p)  # back to the arena it came from (the caller's)

    thread = threading.Thread(target=touch, name=name, daemon=True)
    thread.start()
    return thread
