"""Where serialized messages come from: bags (rosbags) and, later, live subscriptions."""

from .bag import (
    TIMESTAMP_SOURCES,
    BagSource,
    BagSourceError,
    BagTopic,
    check_distinct,
    default_timestamp,
)
from .header_stamp import HeaderStampError, has_header, header_stamp_reader
from .topic_filter import TopicFilter

__all__ = [
    "TIMESTAMP_SOURCES",
    "BagSource",
    "BagSourceError",
    "BagTopic",
    "HeaderStampError",
    "TopicFilter",
    "check_distinct",
    "default_timestamp",
    "has_header",
    "header_stamp_reader",
]
