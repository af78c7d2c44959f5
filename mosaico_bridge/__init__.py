"""mosaico_bridge: ROS 2 and ROS bags into the Mosaico data platform over Arrow Flight."""

__version__ = "0.1.0"
