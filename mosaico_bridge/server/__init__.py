"""Embedded Mosaico-compatible server: a pyarrow Flight server over an on-disk store.

``MosaicoServer`` speaks the mosaicod 0.7 JSON dialect used by the SDK ``mosaicolabs``
0.7.0; ``MosaicoStore`` keeps sequences, topics, data and notifications under a root
directory.
"""

from mosaico_bridge.server.flight_server import (
    ACTION_PERMISSIONS,
    CALL_PERMISSIONS,
    SERVER_VERSION,
    MosaicoServer,
    Permission,
)
from mosaico_bridge.server.store import (
    AlreadyExists,
    BadKey,
    InvalidArgument,
    Locked,
    MosaicoStore,
    NotFound,
    StoreError,
)

__all__ = [
    "ACTION_PERMISSIONS",
    "CALL_PERMISSIONS",
    "SERVER_VERSION",
    "AlreadyExists",
    "BadKey",
    "InvalidArgument",
    "Locked",
    "MosaicoServer",
    "MosaicoStore",
    "NotFound",
    "Permission",
    "StoreError",
]
