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
from .client import MosaicoClient, ServerInfo
from .errors import ClientError, ServerRefusedError
from .handlers import SequenceHandler, Session, TopicHandler
from .security import APIKeyStatus
from .sequence_writer import SequenceWriter, SessionLevelErrorPolicy
from .topic_writer import TopicStats, TopicWriter

__all__ = [
    "APIKeyPermissionEnum",
    "APIKeyStatus",
    "AlreadyExistsError",
    "AuthenticationError",
    "ClientError",
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
    "UnauthenticatedError",
]
