"""Processing layer: an executor pool that converts messages into Arrow record batches.

Conversion of batch k+1 runs here while the data layer uploads batch k (the client
design's processing layer, ``docs/client.md``). Workers are threads: the heavy parts of conversion (CDR decoding
of arrays, Arrow building) and of upload release the GIL.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from ..common.threads import check_nice, worker_initializer

T = TypeVar("T")


def default_workers() -> int:
    """Default pool size: the CPU count, at least 2, at most 8."""
    return max(2, min(8, os.cpu_count() or 2))


class ExecutorPool:
    """A pool of ``workers`` conversion threads, their nice value raised by ``nice``
    (0..19; :func:`~mosaico_bridge.common.threads.lower_thread_priority`).

    Raises:
        ValueError: if ``workers`` < 1 or ``nice`` is outside 0..19.
    """

    def __init__(self, workers: int | None = None, nice: int = 0) -> None:
        workers = default_workers() if workers is None else workers
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        check_nice(nice)
        self.workers = workers
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mosaico-convert",
                                        initializer=worker_initializer(nice))

    def submit(self, fn: Callable[..., T], *args: object) -> Future[T]:
        return self._pool.submit(fn, *args)

    def warm(self) -> None:
        """Start every worker thread now rather than on the first batches."""
        barrier = threading.Barrier(self.workers + 1)
        futures = [self._pool.submit(barrier.wait, 5.0) for _ in range(self.workers)]
        try:
            barrier.wait(5.0)
        except threading.BrokenBarrierError:
            pass
        for fut in futures:
            fut.exception()

    def close(self) -> None:
        self._pool.shutdown(wait=True)
