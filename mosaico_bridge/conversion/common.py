"""Column builders shared by the ontology layouts and the generic layout.

A layout is a tree of :class:`Column` objects. Each column knows its Arrow type
and builds one Arrow array from a list of *source objects* (deserialized ROS
messages as returned by ``rosbags`` ``Typestore.deserialize_cdr`` /
``deserialize_ros1``, or nested message objects inside them). Building is
columnar: a column reads one attribute from every source object in one pass
(``operator.attrgetter`` over the list) and hands the whole list to pyarrow or
numpy, so there is no per-message dict or model round trip.

Columns hold no mutable state, so one layout can build record batches from
several threads at once.

Arrow conventions reproduced here come from the Mosaico protocol reference
(``shared/docs/mosaico-protocol.md`` §5): the ``header`` struct, the
``Time`` struct, the covariance mixin (``covariance`` ``list<double>`` +
``covariance_type`` ``int16``) used by the geometric ontology types.
"""

from __future__ import annotations

from operator import attrgetter
from typing import Any, Callable, Optional, Sequence

import numpy as np
import pyarrow as pa
from rosbags.interfaces import Nodetype

__all__ = [
    "ConversionError",
    "Column",
    "Leaf",
    "Nulls",
    "Constant",
    "FieldSpec",
    "Struct",
    "NumericList",
    "StringList",
    "Binary",
    "MessageList",
    "Covariance",
    "CovarianceType",
    "HeaderColumn",
    "Predicate",
    "FirstEntryNot",
    "AtLeast",
    "TIME_TYPE",
    "HEADER_TYPE",
    "resolve_path",
]


class ConversionError(ValueError):
    """A ROS message type or a serialized message cannot be turned into Arrow.

    The message is one line and names the ROS message type (and, for a message
    that fails to deserialize, its index in the batch).

    Attributes:
        msgtype: the ROS message type concerned, if known.
        index: index (0-based) of the offending message in the ``convert``
            input, or None when the error is not about one message.
    """

    def __init__(self, message: str, *, msgtype: Optional[str] = None, index: Optional[int] = None):
        super().__init__(message)
        self.msgtype = msgtype
        self.index = index


# --------------------------------------------------------------------------- #
# Arrow types of the Mosaico envelope pieces (protocol doc §5)
# --------------------------------------------------------------------------- #

#: ``Time`` ontology struct: ROS ``stamp.sec`` / ``stamp.nanosec``.
TIME_TYPE = pa.struct(
    [
        pa.field("seconds", pa.int32(), nullable=False),
        pa.field("nanoseconds", pa.uint32(), nullable=False),
    ]
)

#: ``header`` struct carried by every ontology type with a header mixin.
HEADER_TYPE = pa.struct(
    [
        pa.field("timestamp", TIME_TYPE),
        pa.field("frame_id", pa.string()),
        pa.field("sample_counter", pa.uint64()),
    ]
)

#: Covariance mixin column types.
COVARIANCE_TYPE = pa.list_(pa.float64())
COVARIANCE_KIND_TYPE = pa.int16()


# --------------------------------------------------------------------------- #
# Type-definition helpers (used to check that a layout fits a definition)
# --------------------------------------------------------------------------- #


def _field_desc(typestore: Any, msgtype: str, name: str):
    """Return the rosbags field description ``(Nodetype, content)`` of ``msgtype.name``."""
    try:
        _, fields = typestore.fielddefs[msgtype]
    except KeyError:
        raise KeyError(f"type {msgtype} has no definition in the typestore") from None
    for fname, desc in fields:
        if fname == name:
            return desc
    raise KeyError(f"type {msgtype} has no field {name!r}")


def resolve_path(typestore: Any, msgtype: str, path: str):
    """Walk a dotted attribute path through message definitions.

    Args:
        typestore: rosbags typestore holding the definitions.
        msgtype: type of the object the path starts from, e.g. ``"nav_msgs/msg/Odometry"``.
        path: dotted ROS field path, e.g. ``"pose.pose.position"``.

    Returns:
        The rosbags field description ``(Nodetype, content)`` of the last field.

    Raises:
        KeyError: a field on the path does not exist, or an intermediate field
            is not a nested message.
    """
    current = msgtype
    desc = None
    parts = path.split(".")
    for i, part in enumerate(parts):
        desc = _field_desc(typestore, current, part)
        if i < len(parts) - 1:
            if desc[0] != Nodetype.NAME:
                raise KeyError(f"field {part!r} of {current} is not a message")
            current = desc[1]
    return desc


def _nested_type(typestore: Any, msgtype: str, path: Optional[str]) -> str:
    """Message type reached by ``path`` from ``msgtype`` (``msgtype`` itself if no path)."""
    if not path:
        return msgtype
    desc = resolve_path(typestore, msgtype, path)
    if desc[0] != Nodetype.NAME:
        raise KeyError(f"field {path!r} of {msgtype} is not a message")
    return desc[1]


def _element_type(typestore: Any, msgtype: str, path: str):
    """Element description of the array/sequence field ``path`` of ``msgtype``."""
    desc = resolve_path(typestore, msgtype, path)
    if desc[0] not in (Nodetype.ARRAY, Nodetype.SEQUENCE):
        raise KeyError(f"field {path!r} of {msgtype} is not an array or sequence")
    return desc[1][0]


def _getter(path: Optional[str]) -> Optional[Callable[[Any], Any]]:
    return attrgetter(path) if path else None


def _values(getter: Optional[Callable[[Any], Any]], objs: Sequence[Any]) -> list:
    return list(map(getter, objs)) if getter is not None else list(objs)


def _offsets(lengths: np.ndarray) -> np.ndarray:
    """int32 Arrow offsets for a run of list/binary lengths."""
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if offsets[-1] > np.iinfo(np.int32).max:
        raise OverflowError(
            f"{offsets[-1]} elements/bytes in one column exceed the 2 GiB limit of one record batch"
        )
    return offsets.astype(np.int32)


def _mask(valid: Optional[np.ndarray]) -> Optional[pa.Array]:
    """Arrow null mask (True = null) from a validity vector, or None if all valid."""
    if valid is None or bool(valid.all()):
        return None
    return pa.array(~valid, type=pa.bool_())


# --------------------------------------------------------------------------- #
# Columns
# --------------------------------------------------------------------------- #


class Column:
    """One Arrow column (or nested child) built from a list of source objects.

    Subclasses set :attr:`type` and implement :meth:`build` and :meth:`check`.
    """

    type: pa.DataType

    def build(self, objs: Sequence[Any]) -> pa.Array:
        """Build an array of ``len(objs)`` rows of type :attr:`type`."""
        raise NotImplementedError

    def check(self, typestore: Any, msgtype: str) -> None:
        """Raise ``KeyError`` if the ROS fields this column reads are not in ``msgtype``."""

    def fixed_bytes(self) -> int:
        """Rough fixed Arrow size of one row of this column, in bytes (payload excluded)."""
        return _fixed_bytes(self.type)


def _fixed_bytes(t: pa.DataType) -> int:
    if pa.types.is_struct(t):
        return 1 + sum(_fixed_bytes(t.field(i).type) for i in range(t.num_fields))
    if pa.types.is_fixed_size_list(t):
        return 1 + t.list_size * _fixed_bytes(t.value_type)
    if pa.types.is_list(t) or pa.types.is_string(t) or pa.types.is_binary(t):
        return 5
    if pa.types.is_boolean(t) or pa.types.is_null(t):
        return 1
    try:
        return t.bit_width // 8 + 1
    except ValueError:
        return 8


class Leaf(Column):
    """A scalar ROS field read by a dotted attribute path.

    Args:
        src: dotted attribute path from the source object (``"linear_acceleration.x"``).
        arrow_type: Arrow type of the column.
        convert: optional function applied to the whole list of values (not per value).
    """

    def __init__(
        self,
        src: str,
        arrow_type: pa.DataType,
        convert: Optional[Callable[[list], Any]] = None,
    ):
        self.src = src
        self.type = arrow_type
        self._get = attrgetter(src)
        self._convert = convert

    def build(self, objs):
        values = list(map(self._get, objs))
        if self._convert is not None:
            values = self._convert(values)
        return pa.array(values, type=self.type)

    def check(self, typestore, msgtype):
        resolve_path(typestore, msgtype, self.src)


class Nulls(Column):
    """An all-null column (an optional ontology field that ROS does not carry)."""

    def __init__(self, arrow_type: pa.DataType):
        self.type = arrow_type

    def build(self, objs):
        return pa.nulls(len(objs), type=self.type)


class Constant(Column):
    """The same value in every row."""

    def __init__(self, arrow_type: pa.DataType, value: Any):
        self.type = arrow_type
        self._value = value

    def build(self, objs):
        return pa.array([self._value] * len(objs), type=self.type)


class Predicate:
    """Row validity rule used to null out an optional ontology struct."""

    def mask(self, objs: Sequence[Any]) -> np.ndarray:
        """Boolean vector, True where the row is valid."""
        raise NotImplementedError

    def check(self, typestore: Any, msgtype: str) -> None:
        """Raise ``KeyError`` if the ROS fields read by the rule are missing."""


class FirstEntryNot(Predicate):
    """Valid where ``array_field[0] != value`` (e.g. ROS ``orientation_covariance[0] == -1``
    marks "no orientation" in ``sensor_msgs/Imu``)."""

    def __init__(self, src: str, value: float):
        self.src = src
        self._get = attrgetter(src)
        self._value = value

    def mask(self, objs):
        return np.fromiter(
            (len(a) > 0 and a[0] != self._value for a in map(self._get, objs)),
            dtype=bool,
            count=len(objs),
        )

    def check(self, typestore, msgtype):
        _element_type(typestore, msgtype, self.src)


class AtLeast(Predicate):
    """Valid where the scalar field ``src >= value``."""

    def __init__(self, src: str, value: float):
        self.src = src
        self._get = attrgetter(src)
        self._value = value

    def mask(self, objs):
        return np.fromiter(map(self._get, objs), dtype=np.float64, count=len(objs)) >= self._value

    def check(self, typestore, msgtype):
        resolve_path(typestore, msgtype, self.src)


class FieldSpec:
    """One named child of a :class:`Struct`."""

    __slots__ = ("name", "column", "nullable")

    def __init__(self, name: str, column: Column, nullable: bool = True):
        self.name = name
        self.column = column
        self.nullable = nullable

    def arrow_field(self) -> pa.Field:
        return pa.field(self.name, self.column.type, nullable=self.nullable)


class Struct(Column):
    """A struct whose children are built from the same source objects.

    Args:
        fields: the children, in Arrow order.
        src: optional dotted path; if given, the children read from the nested
            message at that path instead of the source object itself.
        valid: optional :class:`Predicate` (evaluated on the source objects,
            after ``src``); rows where it is False become null.
    """

    def __init__(
        self,
        fields: Sequence[FieldSpec],
        src: Optional[str] = None,
        valid: Optional[Predicate] = None,
    ):
        self.fields = list(fields)
        self.src = src
        self._get = _getter(src)
        self._valid = valid
        self.arrow_fields = [f.arrow_field() for f in self.fields]
        self.type = pa.struct(self.arrow_fields)

    def build_children(self, objs) -> list:
        """Build the child arrays (used for the top-level columns of a record batch)."""
        return [f.column.build(objs) for f in self.fields]

    def build(self, objs):
        objs = _values(self._get, objs)
        children = self.build_children(objs)
        mask = _mask(self._valid.mask(objs)) if self._valid is not None else None
        if not children:
            # pyarrow cannot infer the length of a struct without children.
            return pa.array([{}] * len(objs), type=self.type) if mask is None else pa.array(
                [None if m else {} for m in mask.to_pylist()], type=self.type
            )
        return pa.StructArray.from_arrays(children, fields=self.arrow_fields, mask=mask)

    def check(self, typestore, msgtype):
        inner = _nested_type(typestore, msgtype, self.src)
        for f in self.fields:
            f.column.check(typestore, inner)
        if self._valid is not None:
            self._valid.check(typestore, inner)


def _as_numpy(value: Any, dtype: np.dtype) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    return np.asarray(value, dtype=dtype)


class NumericList(Column):
    """A ROS array/sequence of numbers or bools (numpy arrays from rosbags).

    Args:
        src: dotted attribute path, or None to use the source objects themselves.
        item_type: Arrow type of one element.
        size: fixed length (``fixed_size_list``) or None (``list``).
        item_nullable: nullability of the list item field.
    """

    def __init__(
        self,
        src: Optional[str],
        item_type: pa.DataType,
        size: Optional[int] = None,
        item_nullable: bool = True,
    ):
        self.src = src
        self._get = _getter(src)
        self.item_type = item_type
        self._np_dtype = np.dtype(item_type.to_pandas_dtype())
        self.size = size
        item = pa.field("item", item_type, nullable=item_nullable)
        self.type = pa.list_(item, size) if size else pa.list_(item)

    def _flat(self, arrays: list) -> np.ndarray:
        if not arrays:
            return np.empty(0, dtype=self._np_dtype)
        flat = np.concatenate([_as_numpy(a, self._np_dtype).reshape(-1) for a in arrays])
        if flat.dtype != self._np_dtype:
            flat = flat.astype(self._np_dtype)
        return flat

    def build(self, objs):
        arrays = _values(self._get, objs)
        values = pa.array(self._flat(arrays), type=self.item_type)
        if self.size:
            if len(values) != self.size * len(arrays):
                raise ValueError(f"fixed array {self.src!r} does not have {self.size} elements")
            return pa.FixedSizeListArray.from_arrays(values, type=self.type)
        lengths = np.fromiter(map(len, arrays), dtype=np.int64, count=len(arrays))
        return pa.ListArray.from_arrays(pa.array(_offsets(lengths)), values, type=self.type)

    def check(self, typestore, msgtype):
        if self.src:
            _element_type(typestore, msgtype, self.src)


class StringList(Column):
    """A ROS array/sequence of strings (Python lists from rosbags)."""

    def __init__(self, src: Optional[str], size: Optional[int] = None, item_nullable: bool = True):
        self.src = src
        self._get = _getter(src)
        self.size = size
        item = pa.field("item", pa.string(), nullable=item_nullable)
        self.type = pa.list_(item, size) if size else pa.list_(item)

    def build(self, objs):
        lists = _values(self._get, objs)
        flat = [s for lst in lists for s in lst]
        values = pa.array(flat, type=pa.string())
        if self.size:
            return pa.FixedSizeListArray.from_arrays(values, type=self.type)
        lengths = np.fromiter(map(len, lists), dtype=np.int64, count=len(lists))
        return pa.ListArray.from_arrays(pa.array(_offsets(lengths)), values, type=self.type)

    def check(self, typestore, msgtype):
        if self.src:
            _element_type(typestore, msgtype, self.src)


class Binary(Column):
    """A ROS ``uint8[]`` / ``byte[]`` / ``char[]`` field as Arrow ``binary``.

    rosbags gives these as numpy ``uint8``/``int8`` arrays (views into the
    serialized message); they are concatenated once into the Arrow data buffer,
    with no per-byte Python work.
    """

    type = pa.binary()

    def __init__(self, src: Optional[str]):
        self.src = src
        self._get = _getter(src)

    def build(self, objs):
        chunks = _values(self._get, objs)
        n = len(chunks)
        views = [
            c.view(np.uint8).reshape(-1)
            if isinstance(c, np.ndarray)
            else np.frombuffer(bytes(c), dtype=np.uint8)
            for c in chunks
        ]
        lengths = np.fromiter(map(len, views), dtype=np.int64, count=n)
        offsets = _offsets(lengths)
        data = np.concatenate(views) if n else np.empty(0, dtype=np.uint8)
        return pa.Array.from_buffers(
            pa.binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data)]
        )

    def check(self, typestore, msgtype):
        if self.src:
            _element_type(typestore, msgtype, self.src)

    def fixed_bytes(self) -> int:
        return 5


class MessageList(Column):
    """A ROS array/sequence of nested messages as ``list<struct>``.

    Args:
        src: dotted attribute path of the array/sequence field, or None.
        element: column building one element (usually a :class:`Struct`)
            from the flattened list of nested messages.
        size: fixed length (``fixed_size_list``) or None (``list``).
        item_nullable: nullability of the list item field.
    """

    def __init__(
        self,
        src: Optional[str],
        element: Column,
        size: Optional[int] = None,
        item_nullable: bool = True,
    ):
        self.src = src
        self._get = _getter(src)
        self.element = element
        self.size = size
        item = pa.field("item", element.type, nullable=item_nullable)
        self.type = pa.list_(item, size) if size else pa.list_(item)

    def build(self, objs):
        lists = _values(self._get, objs)
        flat = [m for lst in lists for m in lst]
        values = self.element.build(flat)
        if self.size:
            return pa.FixedSizeListArray.from_arrays(values, type=self.type)
        lengths = np.fromiter(map(len, lists), dtype=np.int64, count=len(lists))
        return pa.ListArray.from_arrays(pa.array(_offsets(lengths)), values, type=self.type)

    def check(self, typestore, msgtype):
        if not self.src:
            return
        node, content = _element_type(typestore, msgtype, self.src)
        if node != Nodetype.NAME:
            raise KeyError(f"field {self.src!r} of {msgtype} is not a list of messages")
        self.element.check(typestore, content)


class Covariance(Column):
    """Covariance mixin ``covariance: list<double>`` from a ROS ``float64[N]`` field.

    Following the Mosaico ROS bridge convention, the covariance is kept only if
    at least one entry is > 0 (an all-zero ROS covariance means "unknown");
    otherwise the row is null.
    """

    type = COVARIANCE_TYPE

    def __init__(self, src: str):
        self.src = src
        self._get = attrgetter(src)

    def build(self, objs):
        arrays = list(map(self._get, objs))
        n = len(arrays)
        if n == 0:
            return pa.array([], type=self.type)
        lengths = np.fromiter(map(len, arrays), dtype=np.int64, count=n)
        if (lengths == lengths[0]).all():
            # Fixed-size ROS covariance (float64[9] / float64[36]): one 2-D pass.
            matrix = np.concatenate(arrays).astype(np.float64, copy=False).reshape(n, -1)
            valid = (matrix > 0).any(axis=1)
            flat = matrix[valid].reshape(-1)
        else:
            valid = np.fromiter(
                (bool((np.asarray(a) > 0).any()) for a in arrays), dtype=bool, count=n
            )
            kept = [np.asarray(a, dtype=np.float64) for a, v in zip(arrays, valid) if v]
            flat = np.concatenate(kept) if kept else np.empty(0, dtype=np.float64)
        lengths = np.where(valid, lengths, 0)
        return pa.ListArray.from_arrays(
            pa.array(_offsets(lengths)),
            pa.array(flat, type=pa.float64()),
            type=self.type,
            mask=_mask(valid),
        )

    def check(self, typestore, msgtype):
        _element_type(typestore, msgtype, self.src)


class CovarianceType(Column):
    """``covariance_type: int16`` read from a ROS field, null where the
    covariance itself is null (same rule as :class:`Covariance`)."""

    type = COVARIANCE_KIND_TYPE

    def __init__(self, cov_src: str, type_src: str):
        self.cov_src = cov_src
        self.type_src = type_src
        self._get_cov = attrgetter(cov_src)
        self._get_type = attrgetter(type_src)

    def build(self, objs):
        kinds = list(map(self._get_type, objs))
        valid = np.fromiter(
            (bool((np.asarray(a) > 0).any()) for a in map(self._get_cov, objs)),
            dtype=bool,
            count=len(objs),
        )
        return pa.array(kinds, type=self.type, mask=~valid)

    def check(self, typestore, msgtype):
        _element_type(typestore, msgtype, self.cov_src)
        resolve_path(typestore, msgtype, self.type_src)


class HeaderColumn(Column):
    """``header`` struct from a ROS ``std_msgs/Header`` field.

    Mapping: ``stamp.sec`` → ``timestamp.seconds``, ``stamp.nanosec`` →
    ``timestamp.nanoseconds``, ``frame_id`` → ``frame_id``, ROS 1 ``seq`` →
    ``sample_counter`` (null for ROS 2, which has no ``seq``). A header with an
    empty ``frame_id`` and a zero stamp is written as null (protocol doc §5).
    """

    type = HEADER_TYPE

    def __init__(self, src: str = "header"):
        self.src = src
        self._get = attrgetter(src)
        self._time_fields = HEADER_TYPE.field("timestamp").type
        self._fields = [HEADER_TYPE.field(i) for i in range(HEADER_TYPE.num_fields)]

    def build(self, objs):
        headers = list(map(self._get, objs))
        n = len(headers)
        stamps = [h.stamp for h in headers]
        sec = np.fromiter((s.sec for s in stamps), dtype=np.int64, count=n)
        nsec = np.fromiter((s.nanosec for s in stamps), dtype=np.int64, count=n)
        frames = [h.frame_id for h in headers]
        empty = np.fromiter((not f for f in frames), dtype=bool, count=n)
        valid = ~(empty & (sec == 0) & (nsec == 0))
        timestamp = pa.StructArray.from_arrays(
            [pa.array(sec, type=pa.int32()), pa.array(nsec, type=pa.uint32())],
            fields=list(self._time_fields),
        )
        if n and hasattr(headers[0], "seq"):
            counter = pa.array([h.seq for h in headers], type=pa.uint64())
        else:
            counter = pa.nulls(n, type=pa.uint64())
        return pa.StructArray.from_arrays(
            [timestamp, pa.array(frames, type=pa.string()), counter],
            fields=self._fields,
            mask=_mask(valid),
        )

    def check(self, typestore, msgtype):
        resolve_path(typestore, msgtype, f"{self.src}.stamp.sec")
        resolve_path(typestore, msgtype, f"{self.src}.stamp.nanosec")
        resolve_path(typestore, msgtype, f"{self.src}.frame_id")
