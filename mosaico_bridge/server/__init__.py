"""Embedded Mosaico-compatible server: a pyarrow Flight server over an on-disk store.

``MosaicoServer`` speaks the mosaicod 0.7 JSON dialect used by the SDK ``mosaicolabs``
0.7.0; ``MosaicoStore`` keeps sequences, topics, data and notifications under a root
directory; ``ApiKeyStore`` keeps the salted hashes of the API keys beside them
(``<root>/api_keys.json``). Errors are the classes of :mod:`mosaico_bridge.protocol.errors`.
"""

from mosaico_bridge.server.auth import (
    ApiKeyRecord,
    ApiKeyStore,
    AuthenticationFailed,
    KeyStoreError,
    Permission,
    PermissionDenied,
)
from mosaico_bridge.server.flight_server import (
    ACTION_PERMISSIONS,
    CALL_PERMISSIONS,
    SERVER_VERSION,
    MosaicoServer,
)
from mosaico_bridge.server.store import MosaicoStore

__all__ = [
    "ACTION_PERMISSIONS",
    "CALL_PERMISSIONS",
    "SERVER_VERSION",
    "ApiKeyRecord",
    "ApiKeyStore",
    "AuthenticationFailed",
    "KeyStoreError",
    "MosaicoServer",
    "MosaicoStore",
    "Permission",
    "PermissionDenied",
]
