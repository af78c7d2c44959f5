"""OS names and priorities for the bridge's own threads.

Python names its threads (``mosaico-convert_0``) only for Python; the OS keeps calling them
all ``python``. :func:`name_os_thread` copies the Python name to the OS (Linux
``prctl(PR_SET_NAME)``), so ``top -H``, ``ps -L``, ``perf`` and ``/proc/<pid>/task/<tid>/comm``
tell the conversion, data and acknowledgement threads from rclpy's executor thread.

:func:`worker_initializer` also lowers the priority of the threads that do the heavy work
(conversion, upload, the embedded server's writes), so that on a machine short of CPU the
threads that take messages from the rmw layer run first (``docs/live-path.md`` § Priorities).

:func:`set_realtime_priority` does the opposite for the threads that take messages, where the
user grants it (the node's ``realtime_priority``, ``docs/live-path.md`` § Real-time priority
for the receive threads).
"""

from __future__ import annotations

import functools
import os
import re
import sys
import threading
from collections.abc import Callable
from pathlib import Path

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


#: Highest SCHED_FIFO priority Linux gives (``sched_get_priority_max(SCHED_FIFO)``).
MAX_REALTIME_PRIORITY = 99

#: OS names of the rmw layer's receive threads: Fast DDS's listeners on a shared-memory
#: port or a socket (``dds.shm.7001``, ``dds.udp.7412``; not its ``dds.shm.wdog`` watchdog),
#: Cyclone DDS's ``recv``, ``recvUC`` and ``recvMC``.
RECEIVE_THREAD_NAME = re.compile(r"dds\.(shm|udp|tcp)\.\d+|recv(UC|MC)?")


def check_realtime_priority(priority: object) -> int:
    """``priority`` if it is an integer in 0..:data:`MAX_REALTIME_PRIORITY` (0: off).

    Raises:
        ValueError: otherwise, naming the value.
    """
    if (isinstance(priority, bool) or not isinstance(priority, int)
            or not 0 <= priority <= MAX_REALTIME_PRIORITY):
        raise ValueError(f"must be an integer in 0..{MAX_REALTIME_PRIORITY}, got {priority!r}")
    return priority


def set_realtime_priority(tid: int, priority: int) -> None:
    """Run thread ``tid`` (0: the calling thread) under SCHED_FIFO at ``priority`` (1..99),
    or back under SCHED_OTHER for ``priority`` 0. SCHED_RESET_ON_FORK is set, so processes
    the thread starts run at normal priority.

    Raises:
        PermissionError: the process has neither CAP_SYS_NICE nor an RLIMIT_RTPRIO of at
            least ``priority`` (``ulimit -r``, ``limits.conf`` ``rtprio``, systemd ``LimitRTPRIO``).
        OSError: off Linux, or the thread has ended (ProcessLookupError).
    """
    if not hasattr(os, "SCHED_FIFO"):
        raise OSError("SCHED_FIFO is not available on this system")
    policy = os.SCHED_FIFO if priority > 0 else os.SCHED_OTHER
    os.sched_setscheduler(tid, policy | os.SCHED_RESET_ON_FORK, os.sched_param(priority))


def realtime_refused(priority: int) -> str | None:
    """Why this process may not run threads under SCHED_FIFO at ``priority``, or None if it
    may: tried on a short-lived thread of its own, so no thread of the caller changes."""
    why: list[str] = []

    def attempt() -> None:
        try:
            set_realtime_priority(0, priority)
        except OSError as exc:
            why.append(f"{exc.strerror or exc} (needs CAP_SYS_NICE or an rtprio limit of at least "
                       f"{priority}: ulimit -r, limits.conf, systemd LimitRTPRIO)")

    t = threading.Thread(target=attempt, name="mosaico-rtcheck", daemon=True)
    t.start()
    t.join()
    return why[0] if why else None


def receive_threads() -> dict[int, str]:
    """{thread id: OS name} of this process's threads that :data:`RECEIVE_THREAD_NAME`
    matches. Empty off Linux."""
    out: dict[int, str] = {}
    try:
        tasks = list(Path("/proc/self/task").iterdir())
    except OSError:
        return out
    for task in tasks:
        try:
            name = (task / "comm").read_text().strip()
        except OSError:
            continue  # the thread ended
        if RECEIVE_THREAD_NAME.fullmatch(name):
            out[int(task.name)] = name
    return out
