"""OS names and priorities for the bridge's own threads.

Python names its threads (``mosaico-convert_0``) only for Python; the OS keeps calling them
all ``python``. :func:`name_os_thread` copies the Python name to the OS (Linux
``prctl(PR_SET_NAME)``), so ``top -H``, ``ps -L``, ``perf`` and ``/proc/<pid>/task/<tid>/comm``
tell the conversion, data and acknowledgement threads from rclpy's executor thread.

:func:`worker_initializer` also lowers the priority of the threads that do the heavy work
(conversion, upload, the embedded server's writes), so that on a machine short of CPU the
threads that take messages from the rmw layer run first (``docs/live-path.md`` § Priorities).
"""

from __future__ import annotations

import functools
import os
import sys
import threading
from collections.abc import Callable

_PR_SET_NAME = 15  # <linux/prctl.h>
_prctl = None


def os_thread_name(name: str) -> bytes:
    """The OS name for a Python thread name: ``mosaico-`` shortened to ``mb-``, cut to the
    15 bytes Linux keeps (``mosaico-convert_0`` → ``mb-convert_0``)."""
    if name.startswith("mosaico-"):
        name = "mb-" + name[len("mosaico-"):]
    return name.encode("utf-8", "replace")[:15]


def name_os_thread() -> None:
    """Give the calling thread its Python name in the OS (see :func:`os_thread_name`).

    Used as a ``ThreadPoolExecutor`` initializer and at the start of the bridge's threads.
    Does nothing off Linux or where libc has no ``prctl``; never raises.
    """
    global _prctl
    if not sys.platform.startswith("linux"):
        return
    try:
        if _prctl is None:
            import ctypes

            _prctl = ctypes.CDLL(None, use_errno=True).prctl
        _prctl(_PR_SET_NAME, os_thread_name(threading.current_thread().name), 0, 0, 0)
    except (OSError, AttributeError):
        pass


#: Highest nice value Linux gives a thread (lowest priority).
MAX_NICE = 19


def check_nice(nice: object) -> int:
    """``nice`` if it is an integer in 0..:data:`MAX_NICE`.

    Raises:
        ValueError: otherwise, naming the value.
    """
    if isinstance(nice, bool) or not isinstance(nice, int) or not 0 <= nice <= MAX_NICE:
        raise ValueError(f"worker_nice must be an integer in 0..{MAX_NICE}, got {nice!r}")
    return nice


def lower_thread_priority(nice: int) -> None:
    """Add ``nice`` (0..19) to the calling thread's nice value, capped at :data:`MAX_NICE`.

    Linux keeps a nice value per thread (``setpriority(PRIO_PROCESS, tid)``), and threads a
    thread starts inherit it; raising it needs no privilege. Does nothing for ``nice`` <= 0
    or off Linux; never raises (a thread that cannot be lowered runs at its old priority).
    """
    if nice <= 0 or not sys.platform.startswith("linux"):
        return
    try:
        tid = threading.get_native_id()
        current = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(MAX_NICE, current + nice))
    except OSError:
        pass


def _start_worker(nice: int) -> None:
    name_os_thread()
    lower_thread_priority(nice)


def worker_initializer(nice: int = 0) -> Callable[[], None]:
    """A ``ThreadPoolExecutor`` initializer: :func:`name_os_thread`, then
    :func:`lower_thread_priority` by ``nice``."""
    return functools.partial(_start_worker, nice)
