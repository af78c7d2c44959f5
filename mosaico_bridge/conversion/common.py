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
(``docs/protocol.md`` § Arrow layouts): the ``header`` struct, the
``Time`` struct, the covariance mixin (``covariance`` ``list<double>`` +
``covariance_type`` ``int16``) used by the geometric ontology types.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import attrgetter
from typing import Any

import numpy as np
import pyarrow as pa
from rosbags.interfaces import Nodetype

from .plan import (
    ByteRuns,
    ColumnarBatch,
    MessageLists,
    PrimitiveLists,
    StringLists,
    Strings,
)

__all__ = [
    "HEADER_TYPE",
    "TIME_TYPE",
    "AtLeast",
    "Binary",
    "Column",
    "ColumnarUnsupported",
    "Constant",
    "ConversionError",
    "Covariance",
    "CovarianceType",
    "FieldSpec",
    "FirstEntryNot",
    "HeaderColumn",
    "Leaf",
    "MessageList",
    "Nulls",
    "NumericList",
    "Predicate",
    "StringList",
    "Struct",
    "arrow_from_numpy",
    "arrow_strings",
    "resolve_path",
]


class ConversionError(Exception):
    """A ROS message type or a serialized message cannot be turned into Arrow.

    Base class of the errors of :mod:`mosaico_bridge.conversion` (not a
    ``ValueError``). The message is one line and names the ROS message type
    (and, for one bad message, its absolute index in the topic and its
    timestamp: ``message <index> (timestamp_ns <t>)``).

    Attributes:
        msgtype: the ROS message type concerned, if known.
        index: absolute index (0-based) of the offending message in the topic
            (``first_index`` given to ``convert`` + position in the batch), or
            None when the error is not about one message.
        timestamp_ns: timestamp (ns) of the offending message, or None.
        position: position (0-based) of the offending message in the
            ``messages`` given to the failing call (``index - first_index``),
            or None.
    """

    def __init__(
        self,
        message: str,
        *,
        msgtype: str | None = None,
        index: int | None = None,
        timestamp_ns: int | None = None,
        position: int | None = None,
    ):
        super().__init__(message)
        self.msgtype = msgtype
        self.index = index
        self.timestamp_ns = timestamp_ns
        self.position = position


# --------------------------------------------------------------------------- #
# Arrow types of the Mosaico envelope pieces (``docs/protocol.md`` § Arrow layouts)
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


def _field_desc(typestore: Any, msgtype: str, name: str) -> Any:
    """Return the rosbags field description ``(Nodetype, content)`` of ``msgtype.name``."""
    try:
        _, fields = typestore.fielddefs[msgtype]
    except KeyError:
        raise KeyError(f"type {msgtype} has no definition in the typestore") from None
    for fname, desc in fields:
        if fname == name:
            return desc
    raise KeyError(f"type {msgtype} has no field {name!r}")


def resolve_path(typestore: Any, msgtype: str, path: str) -> Any:
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


def _nested_type(typestore: Any, msgtype: str, path: str | None) -> str:
    """Message type reached by ``path`` from ``msgtype`` (``msgtype`` itself if no path)."""
    if not path:
        return msgtype
    desc = resolve_path(typestore, msgtype, path)
    if desc[0] != Nodetype.NAME:
        raise KeyError(f"field {path!r} of {msgtype} is not a message")
    return desc[1]


def _element_type(typestore: Any, msgtype: str, path: str) -> Any:
    """Element description of the array/sequence field ``path`` of ``msgtype``."""
    desc = resolve_path(typestore, msgtype, path)
    if desc[0] not in (Nodetype.ARRAY, Nodetype.SEQUENCE):
        raise KeyError(f"field {path!r} of {msgtype} is not an array or sequence")
    return desc[1][0]


def _getter(path: str | None) -> Callable[[Any], Any] | None:
    return attrgetter(path) if path else None


def _values(getter: Callable[[Any], Any] | None, objs: Sequence[Any]) -> list[Any]:
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


def _mask(valid: np.ndarray | None) -> pa.Array | None:
    """Arrow null mask (True = null) from a validity vector, or None if all valid."""
    if valid is None or bool(valid.all()):
        return None
    return pa.array(~valid, type=pa.bool_())


# -- columnar helpers (numpy -> Arrow without pa.array's per-call overhead) --

_NUMPY_OF_ARROW: dict[pa.DataType, np.dtype] = {
    pa.int8(): np.dtype(np.int8), pa.int16(): np.dtype(np.int16), pa.int32(): np.dtype(np.int32),
    pa.int64(): np.dtype(np.int64), pa.uint8(): np.dtype(np.uint8), pa.uint16(): np.dtype(np.uint16),
    pa.uint32(): np.dtype(np.uint32), pa.uint64(): np.dtype(np.uint64),
    pa.float32(): np.dtype(np.float32), pa.float64(): np.dtype(np.float64),
}


class ColumnarUnsupported(Exception):
    """A column (or a decoded field shape) has no columnar build; use the
    object path (:meth:`Column.build`)."""


def _bitmap(valid: np.ndarray | None) -> pa.Buffer | None:
    """Arrow validity bitmap from a bool vector (True = valid), None if all valid."""
    if valid is None or bool(valid.all()):
        return None
    return pa.py_buffer(np.packbits(valid, bitorder="little"))


def arrow_from_numpy(values: np.ndarray, arrow_type: pa.DataType, valid: np.ndarray | None = None) -> pa.Array:
    """1-D numpy array → Arrow array of ``arrow_type`` (a primitive type).

    Integers are range-checked when narrowed or re-signed.

    Raises:
        OverflowError: an integer does not fit ``arrow_type``.
        ColumnarUnsupported: ``arrow_type`` is not a primitive numeric/bool type.
    """
    n = len(values)
    if pa.types.is_boolean(arrow_type):
        bits = np.packbits(values.astype(np.bool_, copy=False), bitorder="little")
        return pa.Array.from_buffers(arrow_type, n, [_bitmap(valid), pa.py_buffer(bits)])
    target = _NUMPY_OF_ARROW.get(arrow_type)
    if target is None:
        raise ColumnarUnsupported(f"no numpy type for {arrow_type}")
    if values.dtype != target:
        if values.dtype.kind in "iub" and target.kind in "iu" and n:
            info = np.iinfo(target)
            lo, hi = int(values.min()), int(values.max())
            if lo < info.min or hi > info.max:
                bad = lo if lo < info.min else hi
                raise OverflowError(f"value {bad} does not fit {arrow_type}")
        values = values.astype(target)
    values = np.ascontiguousarray(values)
    return pa.Array.from_buffers(arrow_type, n, [_bitmap(valid), pa.py_buffer(values)])


def arrow_strings(values: Sequence[str]) -> pa.Array:
    """Arrow ``string`` array from Python strings, without ``pa.array`` (which
    imports pandas on first use, ~0.5 s)."""
    encoded = [v.encode() for v in values]
    lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return pa.Array.from_buffers(
        pa.string(), len(encoded), [None, _offsets_buffer(offsets), pa.py_buffer(b"".join(encoded))]
    )


def _offsets_buffer(offsets: np.ndarray) -> pa.Buffer:
    if len(offsets) and offsets[-1] > np.iinfo(np.int32).max:
        raise OverflowError(
            f"{offsets[-1]} elements/bytes in one column exceed the 2 GiB limit of one record batch"
        )
    return pa.py_buffer(offsets.astype(np.int32))


def _list_array(
    list_type: pa.DataType,
    n: int,
    offsets: np.ndarray | None,
    values: pa.Array,
    valid: np.ndarray | None = None,
) -> pa.Array:
    """``list``/``fixed_size_list`` array from int64 offsets (ignored for fixed size) and values."""
    if pa.types.is_fixed_size_list(list_type):
        return pa.Array.from_buffers(list_type, n, [_bitmap(valid)], children=[values])
    assert offsets is not None
    return pa.Array.from_buffers(
        list_type, n, [_bitmap(valid), _offsets_buffer(offsets)], children=[values]
    )


def _fixed_offsets(n: int, width: int) -> np.ndarray:
    return np.arange(n + 1, dtype=np.int64) * width


def _string_array(value: Any) -> pa.Array:
    if isinstance(value, Strings):
        return value.arrow()
    raise ColumnarUnsupported(f"expected strings, got {type(value).__name__}")


def _numeric(value: Any) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    raise ColumnarUnsupported(f"expected a primitive field, got {type(value).__name__}")


def _row_any_positive(value: Any, n: int) -> tuple[Any, ...]:
    """(valid rows: some entry > 0, row lengths, flat float64 values) of a numeric array field."""
    if isinstance(value, np.ndarray) and value.ndim == 2:
        matrix = value.astype(np.float64, copy=False)
        valid = (matrix > 0).any(axis=1)
        lengths = np.full(n, matrix.shape[1], dtype=np.int64)
        return valid, lengths, matrix, None
    if isinstance(value, PrimitiveLists):
        flat = value.values.astype(np.float64, copy=False)
        pos = np.zeros(len(flat) + 1, dtype=np.int64)
        np.cumsum(flat > 0, out=pos[1:])
        valid = (pos[value.offsets[1:]] - pos[value.offsets[:-1]]) > 0
        return valid, np.diff(value.offsets), None, flat
    raise ColumnarUnsupported(f"expected a numeric array field, got {type(value).__name__}")


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

    def build_columnar(self, cols: ColumnarBatch) -> pa.Array:
        """Build an array of ``cols.n`` rows from decoded columns (:mod:`.plan`).

        Same result as :meth:`build` on the deserialized messages.

        Raises:
            ColumnarUnsupported: no columnar build for this column / field shape.
            OverflowError: a value does not fit the Arrow type.
            pyarrow.ArrowInvalid: a string is not valid UTF-8.
        """
        raise ColumnarUnsupported(type(self).__name__)

    def supports_columnar(self) -> bool:
        """Whether :meth:`build_columnar` is implemented for this column (and its children)."""
        return False

    def fixed_bytes(self) -> int:
        """Rough fixed Arrow size of one row of this column, in bytes (payload excluded)."""
        return _fixed_bytes(self.type)


def _fixed_bytes(t: pa.DataType) -> int:
    if pa.types.is_struct(t):
        return 1 + sum(_fixed_bytes(t.field(i).type) for i in range(t.num_fields))
    if pa.types.is_fixed_size_list(t):
        return 1 + int(t.list_size) * _fixed_bytes(t.value_type)
    if pa.types.is_list(t) or pa.types.is_string(t) or pa.types.is_binary(t):
        return 5
    if pa.types.is_boolean(t) or pa.types.is_null(t):
        return 1
    try:
        return int(t.bit_width) // 8 + 1
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
        convert: Callable[[list[Any]], Any] | None = None,
        convert_columnar: Callable[[Any, pa.DataType], pa.Array] | None = None,
    ):
        self.src = src
        self.type = arrow_type
        self._get = attrgetter(src)
        self._convert = convert
        self._convert_columnar = convert_columnar

    def build(self, objs: Sequence[Any]) -> pa.Array:
        values = list(map(self._get, objs))
        if self._convert is not None:
            values = self._convert(values)
        return pa.array(values, type=self.type)

    def supports_columnar(self) -> bool:
        return self._convert is None or self._convert_columnar is not None

    def build_columnar(self, cols: ColumnarBatch) -> pa.Array:
        assert self.src is not None  # supports_columnar() is False without a source field
        value = cols.get(self.src)
        if self._convert_columnar is not None:
            return self._convert_columnar(value, self.type)
        if self._convert is not None:
            raise ColumnarUnsupported(f"{self.src}: conversion without a columnar form")
        if pa.types.is_string(self.type):
            return _string_array(value)
        return arrow_from_numpy(_numeric(value), self.type)

    def check(self, typestore: Any, msgtype: str) -> None:
        resolve_path(typestore, msgtype, self.src)


class Nulls(Column):
    """An all-null column (an optional ontology field that ROS does not carry)."""

    def __init__(self, arrow_type: pa.DataType):
        self.type = arrow_type

    def build(self, objs: Sequence[Any]) -> pa.Array:
        return pa.nulls(len(objs), type=self.type)

    def supports_columnar(self) -> bool:
        return True

    def build_columnar(self, cols: ColumnarBatch) -> pa.Array:
        return pa.nulls(cols.n, type=self.type)


class Constant(Column):
    """The same value in every row."""

    def __init__(self, arrow_type: pa.DataType, value: Any):
        self.type = arrow_type
        self._value = value

    def build(self, objs: Sequence[Any]) -> pa.Array:
        return pa.array([self._value] * len(objs), type=self.type)

    def supports_columnar(self) -> bool:
        return True

    def build_columnar(self, cols: ColumnarBatch) -> pa.Array:
        if pa.types.is_string(self.type):
            return arrow_strings([self._value] * cols.n)
        return arrow_from_numpy(np.full(cols.n, self._value), self.type)


class Predicate:
    """Row validity rule used to null out an optional ontology struct."""

    def mask(self, objs: Sequence[Any]) -> np.ndarray:
        """Boolean vector, True where the row is valid."""
        raise NotImplementedError

    def check(self, typestore: Any, msgtype: str) -> None:
        """Raise ``KeyError`` if the ROS fields read by the rule are missing."""

    def mask_columnar(self, cols: ColumnarBatch) -> np.ndarray:
        """Same as :meth:`mask`, from decoded columns."""
        raise ColumnarUnsupported(type(self).__name__)


class FirstEntryNot(Predicate):
    """Valid where ``array_field[0] != value`` (e.g. ROS ``orientation_covariance[0] == -1``
    marks "no orientation" in ``sensor_msgs/Imu``)."""

    def __init__(self, src: str, value: float):
        self.src = src
        self._get = attrgetter(src)
        self._value = value

    def mask(self, objs: Sequence[Any]) -> np.ndarray:
        return np.fromiter(
            (len(a) > 0 and a[0] != self._value for a in map(self._get, objs)),
            dtype=bool,
            count=len(objs),
        )

    def mask_columnar(self, cols: ColumnarBatch) -> np.ndarray:
        value = cols.get(self.src)
        if isinstance(value, np.ndarray) and value.ndim == 2:
            if value.shape[1] == 0:
                return np.zeros(cols.n, dtype=bool)
            return value[:, 0] != self._value
        if isinstance(value, PrimitiveLists):
            lengths = np.diff(value.offsets)
            firsts = np.zeros(cols.n, dtype=np.float64)
            has = lengths > 0
            firsts[has] = value.values[value.offsets[:-1][has]]
            return has & (firsts != self._value)
        raise ColumnarUnsupported(f"{self.src}: not an array")

    def check(self, typestore: Any, msgtype: str) -> None:
        _element_type(typestore, msgtype, self.src)


class AtLeast(Predicate):
    """Valid where the scalar field ``src >= value``."""

    def __init__(self, src: str, value: float):
        self.src = src
        self._get = attrgetter(src)
        self._value = value

    def mask(self, objs: Sequence[Any]) -> np.ndarray:
        return np.fromiter(map(self._get, objs), dtype=np.float64, count=len(objs)) >= self._value

    def mask_columnar(self, cols: ColumnarBatch) -> np.ndarray:
        return _numeric(cols.get(self.src)).astype(np.float64) >= self._value

    def check(self, typestore: Any, msgtype: str) -> None:
        resolve_path(typestore, msgtype, self.src)


class FieldSpec:
    """One named child of a :class:`Struct`."""

    __slots__ = ("column", "name", "nullable")

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
        src: str | None = None,
        valid: Predicate | None = None,
    ):
        self.fields = list(fields)
        self.src = src
        self._get = _getter(src)
        self._valid = valid
        self.arrow_fields = [f.arrow_field() for f in self.fields]
        self.type = pa.struct(self.arrow_fields)

    def build_children(self, objs: Sequence[Any]) -> list[Any]:
        """Build the child arrays (used for the top-level columns of a record batch)."""
        return [f.column.build(objs) for f in self.fields]

    def build(self, objs: Sequence[Any]) -> pa.Array:
        objs = _values(self._get, objs)
        children = self.build_children(objs)
        mask = _mask(self._valid.mask(objs)) if self._valid is not None else None
        if not children:
            # pyarrow cannot infer the length of a struct without children.
            return pa.array([{}] * len(objs), type=self.type) if mask is None else pa.array(
                [None if m else {} for m in mask.to_pylist()], type=self.type
            )
        return pa.StructArray.from_arrays(children, fields=self.arrow_fields, mask=mask)

    def supports_columnar(self) -> bool:
        return all(f.column.supports_columnar() for f in self.fields)

    def build_children_columnar(self, cols: ColumnarBatch) -> list[Any]:
        """Child arrays from decoded columns (the top-level columns of a record batch)."""
        return [f.column.build_columnar(cols) for f in self.fields]

    def build_columnar(self, cols: ColumnarBatch) -> pa.Array:
        cols = cols.scope(self.src)
        children = self.build_children_columnar(cols)
        valid = self._valid.mask_columnar(cols) if self._valid is not None else None
        return pa.Array.from_buffers(self.type, cols.n, [_bitmap(valid)], children=children)

    def check(self, typestore: Any, msgtype: str) -> None:
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
        src: str | None,
        item_type: pa.DataType,
        size: int | None = None,
        item_nullable: bool = True,
    ):
        self.src = src
        self._get = _getter(src)
        self.item_type = item_type
        self._np_dtype = np.dtype(item_type.to_pandas_dtype())
        self.size = size
        item = pa.field("item", item_type, nullable=item_nullable)
        self.type = pa.list_(item, size) if size else pa.list_(item)

    def _flat(self, arrays: list[Any]) -> np.ndarray:
        if not arrays:
            return np.empty(0, dtype=self._np_dtype)
        flat = np.concatenate([_as_numpy(a, self._np_dtype).reshape(-1) for a in arrays])
        if flat.dtype != self._np_dtype:
            flat = flat.astype(self._np_dtype)
        return flat

    def build(self, objs: Sequence[Any]) -> pa.Array:
        arrays = _values(self._get, objs)
        values = pa.array(self._flat(arrays), type=self.item_type)
        if self.size:
            if len(values) != self.size * len(arrays):
                raise ValueError(f"fixed array {self.src!r} does not have {self.size} elements")
            return pa.FixedSizeListArray.from_arrays(values, type=self.type)
        lengths = np.fromiter(map(len, arrays), dtype=np.int64, count=len(arrays))
        return pa.ListArray.from_arrays(pa.array(_offsets(lengths)), values, type=self.type)

    def supports_columnar(self) -> bool:
        return self.src is not None

    def build_columnar(self, cols: ColumnarBatch) -> pa.Array:
        assert self.src is not None  # supports_columnar() is False without a source field
        value = cols.get(self.src)
        n = cols.n
        if isinstance(value, np.ndarray) and value.ndim == 2:
            values = arrow_from_numpy(value.reshape(-1), self.item_type)
            offsets = _fixed_offsets(n, value.shape[1])
        elif isinstance(value, PrimitiveLists):
            values = arrow_from_numpy(value.values, self.item_type)
            offsets = value.offsets
        elif isinstance(value, ByteRuns):
            if self._np_dtype.itemsize != 1:
                raise ColumnarUnsupported(f"{self.src}: byte run for {self.item_type}")
            offsets = value.offsets()
            values = pa.Array.from_buffers(self.item_type, int(offsets[-1]), [None, value.data_buffer()])
        else:
            raise ColumnarUnsupported(f"{self.src}: not a numeric array")
        if self.size and len(values) != self.size * n:
            raise ValueError(f"fixed array {self.src!r} does not have {self.size} elements")
        return _list_array(self.type, n, offsets, values)

    def check(self, typestore: Any, msgtype: str) -> None:
        if self.src:
            _element_type(typestore, msgtype, self.src)


class StringList(Column):
    """A ROS array/sequence of strings (Python lists from rosbags)."""

    def __init__(self, src: str | None, size: int | None = None, item_nullable: bool = True):
        self.src = src
        self._get = _getter(src)
        self.size = size
        item = pa.field("item", pa.string(), nullable=item_nullable)
        self.type = pa.list_(item, size) if size else pa.list_(item)

    def build(self, objs: Sequence[Any]) -> pa.Array:
        lists = _values(self._get, objs)
        flat = [s for lst in lists for s in lst]
        values = pa.array(flat, type=pa.string())
        if self.size:
            return pa.FixedSizeListArray.from_arrays(values, type=self.type)
        lengths = np.fromiter(map(len, lists), dtype=np.int64, count=len(lists))
        return pa.ListArray.from_arrays(pa.array(_offsets(lengths)), values, type=self.type)

    def supports_columnar(self) -> bool:
        return self.src is not None

    def build_columnar(self, cols: ColumnarBatch) -> pa.Array:
        assert self.src is not None  # supports_columnar() is False without a source field
        value = cols.get(self.src)
        if not isinstance(value, StringLists):
            raise ColumnarUnsupported(f"{self.src}: not a string array")
        return _list_array(self.type, cols.n, value.offsets, value.strings.arrow())

    def check(self, typestore: Any, msgtype: str) -> None:
        if self.src:
            _element_type(typestore, msgtype, self.src)


class Binary(Column):
    """A ROS ``uint8[]`` / ``byte[]`` / ``char[]`` field as Arrow ``binary``.

    rosbags gives these as numpy ``uint8``/``int8`` arrays (views into the
    serialized message); they are concatenated once into the Arrow data buffer,
    with no per-byte Python work.
    """

    type = pa.binary()

    def __init__(self, src: str | None):
        self.src = src
        self._get = _getter(src)

    def build(self, objs: Sequence[Any]) -> pa.Array:
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

    def supports_columnar(self) -> bool:
        return self.src is not None

    def build_columnar(self, cols: ColumnarBatch) -> pa.Array:
        assert self.src is not None  # supports_columnar() is False without a source field
        value = cols.get(self.src)
        n = cols.n
        if isinstance(value, ByteRuns):
            return pa.Array.from_buffers(
                pa.binary(), n, [None, _offsets_buffer(value.offsets()), value.data_buffer()]
            )
        if isinstance(value, np.ndarray) and value.ndim == 2:
            data = np.ascontiguousarray(value).view(np.uint8).reshape(-1)
            offsets = _fixed_offsets(n, value.shape[1])
            return pa.Array.from_buffers(
                pa.binary(), n, [None, _offsets_buffer(offsets), pa.py_buffer(data)]
            )
        raise ColumnarUnsupported(f"{self.src}: not a byte array")

    def check(self, typestore: Any, msgtype: str) -> None:
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
        src: str | None,
        element: Column,
        size: int | None = None,
        item_nullable: bool = True,
    ):
        self.src = src
        self._get = _getter(src)
        self.element = element
        self.size = size
        item = pa.field("item", element.type, nullable=item_nullable)
        self.type = pa.list_(item, size) if size else pa.list_(item)

    def build(self, objs: Sequence[Any]) -> pa.Array:
        lists = _values(self._get, objs)
        flat = [m for lst in lists for m in lst]
        values = self.element.build(flat)
        if self.size:
            return pa.FixedSizeListArray.from_arrays(values, type=self.type)
        lengths = np.fromiter(map(len, lists), dtype=np.int64, count=len(lists))
        return pa.ListArray.from_arrays(pa.array(_offsets(lengths)), values, type=self.type)

    def supports_columnar(self) -> bool:
        return self.src is not None and self.element.supports_columnar()

    def build_columnar(self, cols: ColumnarBatch) -> pa.Array:
        assert self.src is not None  # supports_columnar() is False without a source field
        value = cols.get(self.src)
        if not isinstance(value, MessageLists):
            raise ColumnarUnsupported(f"{self.src}: not a message array")
        values = self.element.build_columnar(value.elements)
        return _list_array(self.type, cols.n, value.offsets, values)

    def check(self, typestore: Any, msgtype: str) -> None:
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

    def build(self, objs: Sequence[Any]) -> pa.Array:
        arrays = list(map(self._get, objs))
        n = len(arrays)
        if n == 0:
            return pa.array([], type=self.type)
        lengths = np.fromiter(map(len, arrays), dtype=np.int64, count=n)
        if (lengths == lengths[0]).all():
            # Fixed-size ROS covariance (float64[9] / float64[36]): one 2-D pass.
            matrix = np.concatenate(arrays).astype(np.float64, copy=False).reshape(n, -1)
            valid = np.asarray((matrix > 0).any(axis=1))
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

    def supports_columnar(self) -> bool:
        return True

    def build_columnar(self, cols: ColumnarBatch) -> pa.Array:
        n = cols.n
        valid, lengths, matrix, flat = _row_any_positive(cols.get(self.src), n)
        if matrix is not None:
            kept = matrix[valid].reshape(-1)
        else:
            keep = np.repeat(valid, lengths)
            kept = flat[keep]
        lengths = np.where(valid, lengths, 0)
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return _list_array(
            self.type, n, offsets, arrow_from_numpy(kept, pa.float64()), valid=valid if n else None
        )

    def check(self, typestore: Any, msgtype: str) -> None:
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

    def build(self, objs: Sequence[Any]) -> pa.Array:
        kinds = list(map(self._get_type, objs))
        valid = np.fromiter(
            (bool((np.asarray(a) > 0).any()) for a in map(self._get_cov, objs)),
            dtype=bool,
            count=len(objs),
        )
        return pa.array(kinds, type=self.type, mask=~valid)

    def supports_columnar(self) -> bool:
        return True

    def build_columnar(self, cols: ColumnarBatch) -> pa.Array:
        valid = _row_any_positive(cols.get(self.cov_src), cols.n)[0]
        return arrow_from_numpy(_numeric(cols.get(self.type_src)), self.type, valid=valid)

    def check(self, typestore: Any, msgtype: str) -> None:
        _element_type(typestore, msgtype, self.cov_src)
        resolve_path(typestore, msgtype, self.type_src)


class HeaderColumn(Column):
    """``header`` struct from a ROS ``std_msgs/Header`` field.

    Mapping: ``stamp.sec`` → ``timestamp.seconds``, ``stamp.nanosec`` →
    ``timestamp.nanoseconds``, ``frame_id`` → ``frame_id``, ROS 1 ``seq`` →
    ``sample_counter`` (null for ROS 2, which has no ``seq``). A header with an
    empty ``frame_id`` and a zero stamp is written as null (``docs/protocol.md`` § Arrow layouts).
    """

    type = HEADER_TYPE

    def __init__(self, src: str = "header"):
        self.src = src
        self._get = attrgetter(src)
        self._time_fields = HEADER_TYPE.field("timestamp").type
        self._fields = [HEADER_TYPE.field(i) for i in range(HEADER_TYPE.num_fields)]

    def build(self, objs: Sequence[Any]) -> pa.Array:
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

    def supports_columnar(self) -> bool:
        return True

    def build_columnar(self, cols: ColumnarBatch) -> pa.Array:
        n = cols.n
        h = cols.scope(self.src)
        sec = _numeric(h.get("stamp.sec"))
        nsec = _numeric(h.get("stamp.nanosec"))
        frames = h.get("frame_id")
        if not isinstance(frames, Strings):
            raise ColumnarUnsupported("header.frame_id is not a string")
        valid = ~((frames.lengths == 0) & (sec == 0) & (nsec == 0))
        timestamp = pa.Array.from_buffers(
            self._time_fields,
            n,
            [None],
            children=[arrow_from_numpy(sec, pa.int32()), arrow_from_numpy(nsec, pa.uint32())],
        )
        if h.has("seq"):
            counter = arrow_from_numpy(_numeric(h.get("seq")), pa.uint64())
        else:
            counter = pa.nulls(n, type=pa.uint64())
        return pa.Array.from_buffers(
            HEADER_TYPE, n, [_bitmap(valid)], children=[timestamp, frames.arrow(), counter]
        )

    def check(self, typestore: Any, msgtype: str) -> None:
        resolve_path(typestore, msgtype, f"{self.src}.stamp.sec")
        resolve_path(typestore, msgtype, f"{self.src}.stamp.nanosec")
        resolve_path(typestore, msgtype, f"{self.src}.frame_id")
