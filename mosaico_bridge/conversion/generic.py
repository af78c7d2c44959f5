"""Generic (definition-derived) Arrow layout for any ROS message type.

Used for every type without an ontology layout (custom types, ``test_msgs``,
``turtlesim``, ``rosgraph_msgs/Log``, ...). The layout is derived from the
message definition in the typestore (``typestore.fielddefs``: rosbags
``Nodetype`` BASE / NAME / ARRAY / SEQUENCE) and is lossless and columnar:

================================  ===================================================
ROS field                         Arrow type
================================  ===================================================
``bool``                          ``bool``
``int8..int64``, ``uint8..64``    same-width integer
``byte``                          ``int8`` (rosbags decodes a ``byte`` scalar as signed)
``char``                          ``uint8``
``float32`` / ``float64``         ``float`` / ``double`` (``float128`` → ``double``)
``string`` (bounded or not)       ``string``
fixed array ``T[N]``              ``fixed_size_list<T, N>`` (``T`` as above, so
                                  ``uint8[N]``/``char[N]`` → ``uint8`` items,
                                  ``byte[N]`` → ``int8`` items)
sequence ``T[]`` / ``T[<=N]``     ``list<T>`` (``uint8[]``/``char[]`` →
                                  ``list<uint8>``, ``byte[]`` → ``list<int8>``)
nested message                    ``struct`` (``builtin_interfaces/Time``/``Duration``
                                  and ROS 1 ``time``/``duration`` →
                                  ``struct<sec: int32, nanosec: uint32>``)
================================  ===================================================

Byte arrays are lists of integers, not ``binary``: the SDK's ``Unmodeled``
adapter turns every ROS array/sequence field back into a ROS message from a
Python ``list`` (it rejects ``bytes``), so a generic topic reads back into a
bag. The ``list<uint8>`` values buffer of a large ``uint8[]`` can still be a
zero-copy slice of the serialized message (:mod:`.plan`).

Column and struct field names are the ROS field names. Every field is
``NOT NULL`` (a ROS message always carries every field); list items are
``NOT NULL`` too. The Mosaico SDK decodes such a topic with a dynamically
built ``Unmodeled`` class (it accepts any Arrow schema on read; ``docs/protocol.md`` § Read path).

Ontology tag of a generic topic: see :func:`generic_ontology_tag`.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from rosbags.interfaces import Nodetype
from rosbags.typesys.base import normalize_fieldname

from .common import (
    Column,
    ConversionError,
    FieldSpec,
    Leaf,
    MessageList,
    NumericList,
    StringList,
    Struct,
)
from .ontology import SDK_ONTOLOGY_TAGS

__all__ = ["BASE_ARROW_TYPES", "generic_layout", "generic_ontology_tag"]

#: ROS primitive type → Arrow type (scalars).
BASE_ARROW_TYPES = {
    "bool": pa.bool_(),
    "byte": pa.int8(),
    "char": pa.uint8(),
    "int8": pa.int8(),
    "uint8": pa.uint8(),
    "int16": pa.int16(),
    "uint16": pa.uint16(),
    "int32": pa.int32(),
    "uint32": pa.uint32(),
    "int64": pa.int64(),
    "uint64": pa.uint64(),
    "float32": pa.float32(),
    "float64": pa.float64(),
    "float128": pa.float64(),
    "string": pa.string(),
}

_MAX_DEPTH = 64

_SDK_TAGS_LOWER = frozenset(t.lower() for t in SDK_ONTOLOGY_TAGS)


def generic_ontology_tag(msgtype: str) -> str:
    """Ontology tag of a topic written with the generic layout.

    The last segment of the ROS type name (``turtlesim/msg/Color`` → ``Color``),
    which is what the SDK 0.7.0 ROS injector uses for its ``Unmodeled``
    topics, so both tools tag such topics alike. Exception: when that name is
    (case-insensitively) the tag of an ontology class the SDK models, the
    package is prefixed (``turtlesim/msg/Pose`` → ``turtlesim_Pose``), so a
    query for the modeled tag (``Pose``) never returns topics whose schema is
    not that ontology. The SDK reads either form: an unknown tag gets a
    dynamically built ``Unmodeled`` class.
    """
    parts = msgtype.split("/")
    name = parts[-1]
    if name.lower() in _SDK_TAGS_LOWER:
        return f"{parts[0]}_{name}"
    return name


def _float128(values: list[Any]) -> list[Any]:
    return [float(v) for v in values]


def _field_column(typestore: Any, attr: str, desc: Any, depth: int, msgtype: str) -> Column:
    node, content = desc
    if node == Nodetype.BASE:
        base = content[0]
        convert = _float128 if base == "float128" else None
        return Leaf(attr, BASE_ARROW_TYPES[base], convert=convert)
    if node == Nodetype.NAME:
        return _struct(typestore, content, attr, depth + 1)
    if node in (Nodetype.ARRAY, Nodetype.SEQUENCE):
        (elem_node, elem_content), size = content
        fixed = size if node == Nodetype.ARRAY and size > 0 else None
        if elem_node == Nodetype.BASE:
            base = elem_content[0]
            if base == "string":
                return StringList(attr, size=fixed, item_nullable=False)
            return NumericList(attr, BASE_ARROW_TYPES[base], size=fixed, item_nullable=False)
        if elem_node == Nodetype.NAME:
            element = _struct(typestore, elem_content, None, depth + 1)
            return MessageList(attr, element, size=fixed, item_nullable=False)
    raise ConversionError(f"{msgtype}: field {attr!r} has an unsupported definition {desc!r}")


def _struct(typestore: Any, msgtype: str, src: Any, depth: int) -> Struct:
    if depth > _MAX_DEPTH:
        raise ConversionError(f"{msgtype}: message definition nests deeper than {_MAX_DEPTH} levels")
    try:
        _, fields = typestore.fielddefs[msgtype]
    except KeyError:
        raise ConversionError(f"{msgtype}: no message definition in the typestore") from None
    specs = [
        FieldSpec(
            name,
            _field_column(typestore, normalize_fieldname(name), desc, depth, msgtype),
            nullable=False,
        )
        for name, desc in fields
    ]
    return Struct(specs, src=src)


def generic_layout(typestore: Any, msgtype: str) -> Struct:
    """Arrow layout derived from the message definition of ``msgtype``.

    Returns:
        A struct whose children are the top-level columns (one per ROS field).

    Raises:
        ConversionError: ``msgtype`` or a nested type has no definition in the
            typestore, or a field definition is not supported.
    """
    return _struct(typestore, msgtype, None, 0)
