"""OS names for the bridge's own threads.

Python names its threads (``mosaico-convert_0``) only for Python; the OS keeps calling them
all ``python``. :func:`name_os_thread` copies the Python name to the OS (Linux
``prctl(PR_SET_NAME)``), so ``top -H``, ``ps -L``, ``perf`` and ``/proc/<pid>/task/<tid>/comm``
tell the conversion, data and acknowledgement threads from rclpy's executor thread.
"""

from __future__ import annotations

import sys
import threading

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
