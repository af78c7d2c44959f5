"""The batch scheduler of a sequence writer: one thread that decides when each topic's
buffer becomes a record batch.

A topic's buffer is sent when it reaches its size or row limit (the producer wakes the
thread) or when its oldest message is ``max_batch_age_s`` old (the thread sleeps until the
earliest such deadline). The scheduler, :meth:`TopicWriter.flush` and
:meth:`TopicWriter.close` submit under the topic's submit lock, so the batches of a topic
are queued in order; the producer only appends.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from ..common.threads import name_os_thread

if TYPE_CHECKING:
    from .topic_writer import TopicWriter

log = logging.getLogger("mosaico_bridge.client")


class BatchScheduler:
    """Cuts the batches of the topic writers registered with it, on its own thread.

    Args:
        max_batch_age_s: longest time a message waits in a buffer, in seconds (> 0).
    """

    def __init__(self, max_batch_age_s: float, name: str = "mosaico-batches") -> None:
        self._age_s = float(max_batch_age_s)
        self._writers: list[TopicWriter] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def add(self, writer: TopicWriter) -> None:
        with self._lock:
            self._writers = [*self._writers, writer]
        self._wake.set()

    def wake(self) -> None:
        """A buffer is full: look at once."""
        self._wake.set()

    def stop(self) -> None:
        """Stop the thread (buffers left are sent by the writers' close)."""
        self._stop = True
        self._wake.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(30)

    def _run(self) -> None:
        name_os_thread()
        while not self._stop:
            self._wake.clear()
            now = time.monotonic_ns()
            earliest: int | None = None
            for writer in self._writers:
                due = writer.due(now)
                if due is not None and due <= now:
                    writer.submit_pending()
                    due = writer.due(time.monotonic_ns())
                if due is not None and (earliest is None or due < earliest):
                    earliest = due
            if earliest is None:
                timeout = self._age_s
            else:
                timeout = max(0.0, (earliest - time.monotonic_ns()) / 1e9)
            if timeout > 0:
                self._wake.wait(timeout)
