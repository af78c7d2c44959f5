"""Serialized ROS message + message definition → Arrow record batch.

Public interface::

    from mosaico_bridge.conversion import make_converter, TopicConverter, ConversionError

    conv = make_converter("sensor_msgs/msg/Imu", typestore, encoding="cdr")
    batch = conv.convert(timestamps_ns, serialized_messages)   # pa.RecordBatch, conv.schema
    batches = conv.convert_batches(timestamps_ns, serialized_messages, first_index=i0)
    # list[pa.RecordBatch]; large Image/PointCloud2/uint8[] payloads are zero-copy slices

Known ROS types get the Arrow layout of their Mosaico ontology class
(:mod:`.ontology`); every other type gets a lossless layout derived from its
message definition (:mod:`.generic`). Serialized messages are decoded a batch
at a time by a decoding plan compiled from the message definition
(:mod:`.plan`); rosbags' per-message deserializer is the fallback and the
reference (``TopicConverter.convert_reference``). See :mod:`.converter`.
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
