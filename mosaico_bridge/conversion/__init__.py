"""Serialized ROS message + message definition → Arrow record batch.

Public interface::

    from mosaico_bridge.conversion import make_converter, TopicConverter, ConversionError

    conv = make_converter("sensor_msgs/msg/Imu", typestore, encoding="cdr")
    batch = conv.convert(timestamps_ns, serialized_messages)   # pa.RecordBatch, conv.schema

Known ROS types get the Arrow layout of their Mosaico ontology class
(:mod:`.ontology`); every other type gets a lossless layout derived from its
message definition (:mod:`.generic`). See :mod:`.converter` for details.
"""

from .common import ConversionError
from .converter import TopicConverter, make_converter
from .generic import generic_ontology_tag
from .ontology import ONTOLOGY_LAYOUTS

__all__ = [
    "ONTOLOGY_LAYOUTS",
    "ConversionError",
    "TopicConverter",
    "generic_ontology_tag",
    "make_converter",
]
