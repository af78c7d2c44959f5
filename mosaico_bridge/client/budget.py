"""One memory budget for everything a client holds between a producer and the server's
acknowledgement: serialized messages waiting to be converted, record batches converting,
uploading, and sent but not yet acknowledged.

Every topic writer of a client charges the same :class:`InflightBudget`. A live producer
(the bridge's subscription callbacks) uses :meth:`InflightBudget.try_acquire` and drops what
does not fit; a bag reader uses :meth:`InflightBudget.acquire` and waits, so its memory does
not grow with the bag.
"""

from __future__ import annotations

import threading

#: Default budget, in bytes.
DEFAULT_MAX_INFLIGHT_BYTES = 256 * 1024 * 1024


class InflightBudget:
    """A byte budget shared by threads.

    A charge larger than the whole budget is granted when nothing else is charged (so one
    message above the budget is not refused for ever); otherwise a charge is granted only
    while ``used + n <= limit``. The lock is held only for the arithmetic.

    Raises:
        ValueError: ``limit`` < 1.
    """

    def __init__(self, limit: int = DEFAULT_MAX_INFLIGHT_BYTES) -> None:
        if limit < 1:
            raise ValueError(f"max_inflight_bytes must be >= 1, got {limit}")
        self.limit = int(limit)
        self._used = 0
        self._peak = 0
        self._waiters = 0
        self._lock = threading.Lock()  # taken directly where nobody waits: cheaper than the Condition
        self._cond = threading.Condition(self._lock)

    @property
    def used(self) -> int:
        """Bytes charged now."""
        return self._used

    @property
    def peak(self) -> int:
        """Most bytes charged at once since the budget was made."""
        return self._peak

    def _fits(self, n: int) -> bool:
        return self._used == 0 or self._used + n <= self.limit

    def try_acquire(self, n: int) -> bool:
        """Charge ``n`` bytes if they fit now; never waits. True if charged."""
        with self._lock:
            if not self._fits(n):
                return False
            self._used += n
            self._peak = max(self._peak, self._used)
            return True

    def acquire(self, n: int, timeout: float | None = None) -> bool:
        """Charge ``n`` bytes, waiting until they fit (at most ``timeout`` seconds; None: no limit).

        Returns:
            True if charged, False if ``timeout`` passed first.
        """
        with self._cond:
            if not self._fits(n):
                self._waiters += 1
                try:
                    if not self._cond.wait_for(lambda: self._fits(n), timeout):
                        return False
                finally:
                    self._waiters -= 1
            self._used += n
            self._peak = max(self._peak, self._used)
            return True

    def release(self, n: int) -> None:
        """Give back ``n`` bytes charged before."""
        if n <= 0:
            return
        with self._cond:
            self._used -= n
            if self._waiters:
                self._cond.notify_all()
