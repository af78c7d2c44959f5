"""Helpers shared by every part of mosaico_bridge: durable file writes and the clock."""

from mosaico_bridge.common.clock import now_ns
from mosaico_bridge.common.files import (
    DATA_MODE,
    DIR_MODE,
    SECRET_MODE,
    atomic_write_bytes,
    atomic_write_json,
    make_dir,
)

__all__ = ["DATA_MODE", "DIR_MODE", "SECRET_MODE", "atomic_write_bytes", "atomic_write_json", "make_dir", "now_ns"]
