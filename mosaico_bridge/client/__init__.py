"""The Mosaico client of mosaico_bridge: ``from mosaico_bridge.client import MosaicoClient``."""

from ..protocol.auth import APIKeyPermissionEnum, Permission
from ..protocol.errors import (
    AlreadyExistsError,
    AuthenticationError,
    InvalidArgumentError,
    LockedError,
    MosaicoError,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
)
from ..protocol.messages import Notification
from .budget import DEFAULT_MAX_INFLIGHT_BYTES, InflightBudget
from .client import MosaicoClient, ServerInfo
from .errors import ClientError, ServerRefusedError
from .handlers import SequenceHandler, Session, TopicHandler
from .security import APIKeyStatus
from .sequence_writer import (
    DEFAULT_MAX_BATCH_AGE_S,
    SequenceWriter,
    SessionLevelErrorPolicy,
    WriterState,
)
from .topic_writer import TopicStats, TopicWriter
from .transport import COMPRESSIONS, Transport

__all__ = [
    "COMPRESSIONS",
    "DEFAULT_MAX_BATCH_AGE_S",
    "DEFAULT_MAX_INFLIGHT_BYTES",
    "APIKeyPermissionEnum",
    "APIKeyStatus",
    "AlreadyExistsError",
    "AuthenticationError",
    "ClientError",
    "InflightBudget",
    "InvalidArgumentError",
    "LockedError",
    "MosaicoClient",
    "MosaicoError",
    "NotFoundError",
    "Notification",
    "Permission",
    "PermissionDeniedError",
    "SequenceHandler",
    "SequenceWriter",
    "ServerInfo",
    "ServerRefusedError",
    "Session",
    "SessionLevelErrorPolicy",
    "TopicHandler",
    "TopicStats",
    "TopicWriter",
    "Transport",
    "UnauthenticatedError",
    "WriterState",
]
