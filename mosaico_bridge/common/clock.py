"""The one wall clock of mosaico_bridge."""

from __future__ import annotations

import time


def now_ns() -> int:
    """Current wall-clock time in nanoseconds since the Unix epoch (``time.time_ns``).

    Every ``*_at_ns`` field the project writes (creation, completion, notification,
    key expiry times) comes from here.
    """
    return time.time_ns()
