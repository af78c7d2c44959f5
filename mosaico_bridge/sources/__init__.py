"""Where serialized messages come from: bags (rosbags) and, later, live subscriptions."""

from .bag import BagSource, BagSourceError, BagTopic, check_distinct
from .topic_filter import TopicFilter

__all__ = ["BagSource", "BagSourceError", "BagTopic", "TopicFilter", "check_distinct"]
