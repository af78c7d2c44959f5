"""The Mosaico client of mosaico_bridge: ``from mosaico_bridge.client import MosaicoClient``."""

from .client import MosaicoClient, Notification, ServerInfo
from .errors import AuthenticationError, MosaicoError, NotFoundError, ServerRefusedError
from .handlers import SequenceHandler, Session, TopicHandler
from .security import APIKeyPermissionEnum, APIKeyStatus
from .sequence_writer import SequenceWriter, SessionLevelErrorPolicy
from .topic_writer import TopicStats, TopicWriter

__all__ = [
    "APIKeyPermissionEnum",
    "APIKeyStatus",
    "AuthenticationError",
    "MosaicoClient",
    "MosaicoError",
    "NotFoundError",
    "Notification",
    "SequenceHandler",
    "SequenceWriter",
    "ServerInfo",
    "ServerRefusedError",
    "Session",
    "SessionLevelErrorPolicy",
    "TopicHandler",
    "TopicStats",
    "TopicWriter",
]
