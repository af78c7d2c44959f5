"""Serialized ROS messages of one topic → Arrow record batches.

One code path for every source of serialized messages: a rosbags bag reader
(``AnyReader.messages()`` yields raw bytes + the typestore) or a live rclpy
subscription created with ``raw=True``. :func:`make_converter` picks the
layout and compiles the decoding plan (:mod:`.plan`) once per topic;
:meth:`TopicConverter.convert` / :meth:`TopicConverter.convert_batches` then
turn batches of serialized messages into record batches.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
from rosbags.interfaces import Nodetype
from rosbags.typesys import Stores, get_typestore

from .common import ColumnarUnsupported, ConversionError, Struct, arrow_from_numpy
from .generic import generic_layout, generic_ontology_tag
from .ontology import ONTOLOGY_LAYOUTS
from .plan import DecodePlan, PlanMismatch, PlanUnsupported, compile_plan

__all__ = ["ENCODINGS", "LARGE_MESSAGE_BYTES", "TIMESTAMP_FIELD", "TopicConverter", "make_converter"]

logger = logging.getLogger(__name__)

#: Envelope column of every Mosaico topic (``docs/protocol.md`` § DoPut).
TIMESTAMP_FIELD = pa.field("timestamp_ns", pa.int64(), nullable=False)

#: Supported serialization encodings → (message definition encoding, ROS version).
ENCODINGS = {"cdr": ("ros2msg", 2), "ros1": ("ros1msg", 1)}


#: A serialized message at least this large (bytes) of a type with a
#: ``uint8[]``-like payload gets its own record batch in
#: :meth:`TopicConverter.convert_batches`, whose payload column is a zero-copy
#: slice of the message.
LARGE_MESSAGE_BYTES = 64 * 1024

#: Errors of the plan path that send a chunk to the reference path (which
#: either converts it or raises the precise :class:`ConversionError`).
_PLAN_ERRORS = (PlanMismatch, ColumnarUnsupported, OverflowError, pa.ArrowException, ValueError)

Messages = Sequence[bytes | bytearray | memoryview | pa.Buffer]


class TopicConverter:
    """Converts serialized messages of one ROS message type into record batches.

    Build it with :func:`make_converter`. Instances are immutable after
    construction and the ``convert*`` methods are thread-safe.

    Two implementations produce identical record batches:

    * the *plan path* (default): the serialized messages of a batch are decoded
      together with numpy by the type's :class:`~.plan.DecodePlan`, straight
      into the Arrow arrays of the layout (``Column.build_columnar``);
    * the *reference path* (:meth:`convert_reference`): rosbags deserializes
      each message into a Python object and the layout reads the objects
      (``Column.build``). Used for what a plan cannot decode, for a chunk the
      plan rejects (a corrupt message: the reference path names it), and as
      the reference in tests.

    Attributes:
        msgtype: ROS message type, rosbags naming (``"sensor_msgs/msg/Imu"``).
        encoding: serialization of the input messages, ``"cdr"`` or ``"ros1"``.
        ontology_tag: Mosaico ontology tag for ``topic_create``.
        serialization_format: ``"default"`` or ``"image"`` (Image/CompressedImage).
        schema: Arrow schema of every record batch: ``timestamp_ns: int64 NOT NULL``
            followed by the ontology fields as top-level columns; no schema metadata.
        topic_metadata: JSON-serialisable topic user metadata ``{"_ros_": {...}}``
            with ``msgtype``; ``msgdef`` (message definition text, with nested
            definitions, as rosbags generates it, always in ROS 2 terms) and
            ``msgdef_encoding`` (``"ros2msg"``); for ROS 1 types also
            ``msgdef_ros1`` (the bag's own definition text, see :func:`ros2_msgdef`);
            ``message_encoding`` (``"cdr"`` / ``"ros1"``); ``layout`` (``"ontology"`` / ``"generic"``); ``md5sum``
            (ROS 1) or ``type_hash`` (ROS 2, RIHS01); ``enums`` (the type's
            constants, if any). ``msgtype``, ``msgdef`` and ``enums`` are the
            keys the SDK's ROS bridge reads back.
        is_generic: True when the layout is derived from the message definition.
        plan: the compiled :class:`~.plan.DecodePlan`, or None when the type
            (or its layout) is converted by the reference path only.
    """

    #: Messages deserialized and converted together by the reference path.
    CHUNK_ROWS = 512
    #: Messages decoded together by the plan path (one record batch each in
    #: :meth:`convert_batches`).
    PLAN_CHUNK_ROWS = 4096
    #: Serialized bytes decoded together by the plan path (a chunk ends before
    #: it would exceed this, unless it has a single message); bounds the
    #: transient memory of a decode.
    PLAN_CHUNK_BYTES = 4 * 1024 * 1024

    def __init__(
        self,
        *,
        msgtype: str,
        typestore: Any,
        encoding: str,
        ontology_tag: str,
        serialization_format: str,
        root: Struct,
        topic_metadata: dict[str, Any],
        is_generic: bool,
        plan: DecodePlan | None = None,
    ):
        self.msgtype = msgtype
        self.encoding = encoding
        self.ontology_tag = ontology_tag
        self.serialization_format = serialization_format
        self.topic_metadata = topic_metadata
        self.is_generic = is_generic
        self._root = root
        self.schema = pa.schema([TIMESTAMP_FIELD, *root.arrow_fields])
        self._deserialize = (
            typestore.deserialize_cdr if encoding == "cdr" else typestore.deserialize_ros1
        )
        self._fixed_row_bytes = 8 + sum(f.column.fixed_bytes() for f in root.fields)
        self.plan = plan if plan is not None and root.supports_columnar() else None

    @property
    def has_byte_arrays(self) -> bool:
        """The type (or a nested type) has a ``uint8[]``-like field decoded by the plan
        path: its large messages (images, point clouds) become zero-copy record batches."""
        return self.plan is not None and self.plan.has_byte_runs

    def __repr__(self) -> str:
        return (
            f"TopicConverter({self.msgtype!r}, encoding={self.encoding!r}, "
            f"ontology_tag={self.ontology_tag!r}, generic={self.is_generic}, "
            f"plan={self.plan is not None})"
        )

    # -- errors ---------------------------------------------------------------

    def _deserialize_error(
        self, exc: Exception, index: int, raw: Any, ts: int | None, position: int
    ) -> ConversionError:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        return ConversionError(
            f"{self.msgtype}: message {index} (timestamp_ns {ts}) cannot be deserialized "
            f"({self.encoding}, {len(raw)} bytes): {detail}",
            msgtype=self.msgtype,
            index=index,
            timestamp_ns=ts,
            position=position,
        )

    def _timestamps(self, timestamps_ns: pa.Array | Sequence[int], n: int) -> pa.Array:
        if len(timestamps_ns) != n:
            raise ConversionError(
                f"{self.msgtype}: {len(timestamps_ns)} timestamps for {n} messages",
                msgtype=self.msgtype,
            )
        try:
            if isinstance(timestamps_ns, pa.Array):
                ts = timestamps_ns.cast(pa.int64()) if timestamps_ns.type != pa.int64() else timestamps_ns
            else:
                # numpy, not pa.array: pa.array imports pandas on first use (~0.5 s).
                if isinstance(timestamps_ns, np.ndarray):
                    values = timestamps_ns
                else:
                    values = np.fromiter(timestamps_ns, dtype=np.int64, count=n)
                if values.dtype.kind not in "iu":
                    raise TypeError(f"timestamps of dtype {values.dtype}")
                ts = arrow_from_numpy(values, pa.int64())
        except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
            if not isinstance(timestamps_ns, (pa.Array, np.ndarray)) and any(t is None for t in timestamps_ns):
                raise ConversionError(
                    f"{self.msgtype}: a timestamp is missing (None)", msgtype=self.msgtype
                ) from None
            raise ConversionError(
                f"{self.msgtype}: invalid timestamps: {exc}", msgtype=self.msgtype
            ) from exc
        if ts.null_count:
            raise ConversionError(f"{self.msgtype}: a timestamp is missing (None)", msgtype=self.msgtype)
        return ts

    # -- reference path ---------------------------------------------------------

    def deserialize(self, messages: Messages) -> list[Any]:
        """Deserialize serialized messages into rosbags message objects.

        Raises:
            ConversionError: a message does not deserialize; the error names the
                message type and the index of the message in ``messages``.
        """
        deserialize = self._deserialize
        msgtype = self.msgtype
        out: list[Any] = []
        append = out.append
        for index, raw in enumerate(messages):
            try:
                append(deserialize(raw, msgtype))
            except Exception as exc:  # rosbags raises SerdeError, struct.error, IndexError...
                raise self._deserialize_error(exc, index, raw, None, index) from exc
        return out

    def convert_reference(
        self,
        timestamps_ns: pa.Array | Sequence[int],
        messages: Messages,
        first_index: int = 0,
    ) -> pa.RecordBatch:
        """:meth:`convert` through rosbags message objects (the reference path).

        Messages are deserialized one by one with rosbags and the layout reads
        the objects, in chunks of :attr:`CHUNK_ROWS`. Same arguments, result
        and errors as :meth:`convert`.
        """
        ts = self._timestamps(timestamps_ns, len(messages))
        return pa.RecordBatch.from_arrays(
            [ts, *self._reference_columns(ts, messages, first_index)], schema=self.schema
        )

    def _reference_columns(self, ts: pa.Array, messages: Messages, first_index: int) -> list[Any]:
        deserialize = self._deserialize
        msgtype = self.msgtype
        chunk = self.CHUNK_ROWS
        parts = []
        objs: list[Any] = []
        append = objs.append
        start = 0
        for index, raw in enumerate(messages):
            try:
                append(deserialize(raw if not isinstance(raw, pa.Buffer) else memoryview(raw), msgtype))
            except Exception as exc:  # rosbags raises SerdeError, struct.error, IndexError...
                raise self._deserialize_error(
                    exc, first_index + index, raw, ts[index].as_py(), index
                ) from exc
            if len(objs) == chunk:
                parts.append(self._columns(objs, start, first_index, ts))
                start += chunk
                objs = []
                append = objs.append
        if objs or not parts:
            parts.append(self._columns(objs, start, first_index, ts))
        if len(parts) == 1:
            return parts[0]
        return [pa.concat_arrays(list(chunks)) for chunks in zip(*parts)]

    def _columns(self, objs: list[Any], start: int = 0, first_index: int = 0, ts: pa.Array | None = None) -> list[Any]:
        """Top-level column arrays for deserialized messages ``objs``.

        On failure (a value that does not fit its Arrow type, e.g. an image
        width above 2**31-1), the messages are retried one by one so that the
        error names the first offending message (``first_index + start`` + its
        position).
        """
        try:
            return self._root.build_children(objs)
        except Exception as exc:
            index = None
            for i, obj in enumerate(objs):
                try:
                    self._root.build_children([obj])
                except Exception:  # noqa: BLE001 - same failure as the batch above, one row
                    index = start + i
                    break
            detail = " ".join(str(exc).split()) or type(exc).__name__
            t = ts[index].as_py() if ts is not None and index is not None else None
            where = (
                f"message {first_index + index} (timestamp_ns {t})" if index is not None else "messages"
            )
            raise ConversionError(
                f"{self.msgtype}: {where} cannot be converted to the {self.ontology_tag} "
                f"Arrow layout: {detail}",
                msgtype=self.msgtype,
                index=first_index + index if index is not None else None,
                timestamp_ns=t,
                position=index,
            ) from exc

    def from_messages(
        self, timestamps_ns: pa.Array | Sequence[int], objs: list[Any]
    ) -> pa.RecordBatch:
        """Build a record batch from already deserialized rosbags message objects.

        Same result as :meth:`convert` for the serialized form of ``objs``.
        """
        if not isinstance(timestamps_ns, pa.Array):
            timestamps_ns = pa.array(timestamps_ns, type=pa.int64())
        return pa.RecordBatch.from_arrays([timestamps_ns, *self._columns(objs)], schema=self.schema)

    # -- plan path ----------------------------------------------------------------

    def convert_columnar(
        self, timestamps_ns: pa.Array | Sequence[int], messages: Messages
    ) -> pa.RecordBatch:
        """One record batch through the decoding plan only, with no fallback.

        For tests and benchmarks: compares with :meth:`convert_reference`.

        Raises:
            ConversionError: no plan for this type, or bad timestamps.
            PlanMismatch, ColumnarUnsupported, OverflowError, pyarrow.ArrowInvalid:
                the plan cannot convert these messages.
        """
        if self.plan is None:
            raise ConversionError(f"{self.msgtype}: no decoding plan", msgtype=self.msgtype)
        ts = self._timestamps(timestamps_ns, len(messages))
        cols = self.plan.decode(messages)
        return pa.RecordBatch.from_arrays(
            [ts, *self._root.build_children_columnar(cols)], schema=self.schema
        )

    def _chunks(self, messages: Messages) -> list[tuple[int, int]]:
        """(start, stop) ranges of the plan path's record batches.

        At most :attr:`PLAN_CHUNK_ROWS` messages and :attr:`PLAN_CHUNK_BYTES`
        bytes per range (a single message may be larger); with byte-run
        payloads, each message of :data:`LARGE_MESSAGE_BYTES` or more alone.
        """
        n = len(messages)
        rows, limit = self.PLAN_CHUNK_ROWS, self.PLAN_CHUNK_BYTES
        lens = np.fromiter(map(len, messages), dtype=np.int64, count=n)
        large = (
            lens >= LARGE_MESSAGE_BYTES
            if self.plan is not None and self.plan.has_byte_runs
            else np.zeros(n, dtype=bool)
        )
        if n <= rows and int(lens.sum()) <= limit and not bool(large.any()):
            return [(0, n)]
        out = []
        start = 0
        size = 0
        for i, (length, alone) in enumerate(zip(lens.tolist(), large.tolist())):
            if alone:
                if i > start:
                    out.append((start, i))
                out.append((i, i + 1))
                start, size = i + 1, 0
                continue
            if i > start and (size + length > limit or i - start >= rows):
                out.append((start, i))
                start, size = i, 0
            size += length
        if start < n:
            out.append((start, n))
        return out

    def _convert_chunk(self, ts: pa.Array, messages: Messages, first_index: int) -> pa.RecordBatch:
        if self.plan is not None:
            try:
                cols = self.plan.decode(messages)
                columns = self._root.build_children_columnar(cols)
                return pa.RecordBatch.from_arrays([ts, *columns], schema=self.schema)
            except _PLAN_ERRORS:
                pass  # the reference path converts the chunk or names the bad message
        return pa.RecordBatch.from_arrays(
            [ts, *self._reference_columns(ts, messages, first_index)], schema=self.schema
        )

    def convert_batches(
        self,
        timestamps_ns: pa.Array | Sequence[int],
        messages: Messages,
        first_index: int = 0,
    ) -> list[pa.RecordBatch]:
        """Convert serialized messages into record batches, zero-copy for large payloads.

        Messages are decoded in chunks of at most :attr:`PLAN_CHUNK_ROWS`
        messages and :attr:`PLAN_CHUNK_BYTES` bytes, one record batch each.
        For a type with a ``uint8[]``-like payload (``Image.data``,
        ``CompressedImage.data``, ``PointCloud2.data``, a generic ``uint8[]``),
        a message of at least :data:`LARGE_MESSAGE_BYTES` bytes is a record
        batch of its own whose payload column's data buffer is a slice of that
        serialized message (no copy; the batch keeps the message alive).

        Args:
            timestamps_ns: one timestamp per message, nanoseconds (bag record
                time or receive time); becomes the ``timestamp_ns`` column.
            messages: serialized messages (``encoding``), same order; ``bytes``,
                ``memoryview`` or ``pa.Buffer``.
            first_index: index of ``messages[0]`` in its topic, used in errors.

        Returns:
            Record batches with schema :attr:`schema`, in input order, one row
            per message in total (an empty input gives one empty batch).

        Raises:
            ConversionError: as :meth:`convert`.
        """
        n = len(messages)
        ts = self._timestamps(timestamps_ns, n)
        if n == 0:
            return [self._convert_chunk(ts, messages, first_index)]
        return [
            self._convert_chunk(ts.slice(a, b - a), messages[a:b], first_index + a)
            for a, b in self._chunks(messages)
        ]

    def convert(
        self,
        timestamps_ns: pa.Array | Sequence[int],
        messages: Messages,
        first_index: int = 0,
    ) -> pa.RecordBatch:
        """Convert serialized messages into one record batch.

        Decodes with the type's plan (:meth:`convert_batches`) and concatenates
        the chunks, so the result is a single record batch whatever the input
        size (for large payloads :meth:`convert_batches` avoids that copy).

        Args:
            timestamps_ns: one timestamp per message, nanoseconds (bag record
                time or receive time); becomes the ``timestamp_ns`` column.
            messages: serialized messages (``encoding``), same order; ``bytes``,
                ``memoryview`` or ``pa.Buffer``.
            first_index: index of ``messages[0]`` in its topic (for a caller
                converting a topic batch by batch); errors name the message by
                ``first_index`` + its position.

        Returns:
            A record batch with schema :attr:`schema`, one row per message, in
            the input order.

        Raises:
            ConversionError: lengths differ, a timestamp is missing, a message
                does not deserialize or a value does not fit its Arrow type
                (names type, ``message <absolute index> (timestamp_ns <t>)``).
        """
        batches = self.convert_batches(timestamps_ns, messages, first_index)
        if len(batches) == 1:
            return batches[0]
        return pa.concat_batches(batches)

    def estimate_row_bytes(self, raw_size: int) -> int:
        """Rough Arrow size of one row, in bytes, for a serialized message of ``raw_size`` bytes.

        Fixed part from the schema (value widths, validity, offsets) plus the
        serialized size as an upper bound for strings, arrays and binary payloads.
        Meant for sizing batches, not for exact accounting.
        """
        return self.estimate_bytes(1, raw_size)

    def estimate_bytes(self, rows: int, raw_bytes: int) -> int:
        """:meth:`estimate_row_bytes` summed over ``rows`` rows whose serialized messages
        total ``raw_bytes`` bytes (one call for a group of messages)."""
        return self._fixed_row_bytes * int(rows) + max(0, int(raw_bytes))


def _walk_types(typestore: Any, msgtype: str, seen: set[Any], top: str) -> None:
    """Collect ``msgtype`` and every nested message type it uses."""
    if msgtype in seen:
        return
    if msgtype not in typestore.fielddefs:
        what = "" if msgtype == top else f"nested type {msgtype} used by "
        raise ConversionError(
            f"{what}{top}: no message definition in the typestore (cannot convert)",
            msgtype=top,
        )
    seen.add(msgtype)
    for _, (node, content) in typestore.fielddefs[msgtype][1]:
        if node == Nodetype.NAME:
            _walk_types(typestore, content, seen, top)
        elif node in (Nodetype.ARRAY, Nodetype.SEQUENCE) and content[0][0] == Nodetype.NAME:
            _walk_types(typestore, content[0][1], seen, top)


def _json_value(value: Any) -> Any:
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    try:
        return value.item()  # numpy scalar
    except AttributeError:
        return str(value)


def ros2_msgdef(typestore: Any, msgtype: str) -> str:
    """Definition text of a ROS 1 type in ROS 2 terms (``ros2msg``, with nested definitions).

    Every type the ROS 2 Kilted typestore knows (``std_msgs/msg/Header``,
    ``geometry_msgs/msg/*`` ...) takes its ROS 2 definition (so ``Header`` has no
    ``seq``); types it does not know (custom ones) keep the bag's definition.

    Raises:
        rosbags TypesysError: if the definitions cannot be combined.
    """
    target = get_typestore(Stores.ROS2_KILTED)
    missing: dict[str, Any] = {}
    stack = [msgtype]
    while stack:
        name = stack.pop()
        if name in target.fielddefs or name in missing:
            continue
        missing[name] = typestore.fielddefs[name]
        for _, (node, content) in typestore.fielddefs[name][1]:
            if node == Nodetype.NAME:
                stack.append(content)
            elif node in (Nodetype.ARRAY, Nodetype.SEQUENCE) and content[0][0] == Nodetype.NAME:
                stack.append(content[0][1])
    if missing:
        target.register(missing)
    text: str = target.generate_msgdef(msgtype, ros_version=2)[0]
    return text


def _topic_metadata(typestore: Any, msgtype: str, encoding: str, is_generic: bool) -> dict[str, Any]:
    msgdef_encoding, ros_version = ENCODINGS[encoding]
    ros: dict[str, Any] = {
        "msgtype": msgtype,
        "message_encoding": encoding,
        "layout": "generic" if is_generic else "ontology",
    }
    try:
        msgdef, md5 = typestore.generate_msgdef(msgtype, ros_version=ros_version)
        ros["msgdef"] = msgdef
        ros["msgdef_encoding"] = msgdef_encoding
        if ros_version == 1:
            ros["md5sum"] = md5
            # Readers that write ROS 2 bags (the SDK's extractor) register ``msgdef`` in a
            # ROS 2 typestore, which refuses a ROS 1 std_msgs/Header (it has ``seq``): give
            # them the definition in ROS 2 terms, and keep the ROS 1 text beside it.
            ros["msgdef_ros1"] = msgdef
            ros["msgdef"] = ros2_msgdef(typestore, msgtype)
            ros["msgdef_encoding"] = "ros2msg"
    except Exception as exc:  # noqa: BLE001  # pragma: no cover - rosbags refuses unusual definitions
        logger.warning("%s: message definition text not generated: %s", msgtype, exc)
    if ros_version == 2:
        try:
            ros["type_hash"] = typestore.hash_rihs01(msgtype)
        except Exception as exc:  # noqa: BLE001  # pragma: no cover - optional metadata
            logger.debug("%s: no RIHS01 type hash: %s", msgtype, exc)
    consts = typestore.fielddefs[msgtype][0]
    if consts:
        ros["enums"] = {name: _json_value(value) for name, _, value in consts}
    return {"_ros_": ros}


def make_converter(msgtype: str, typestore: Any, encoding: str = "cdr") -> TopicConverter:
    """Make the converter for one ROS message type.

    Args:
        msgtype: ROS message type in rosbags naming, ``"pkg/msg/Name"`` (ROS 1
            types too, e.g. ``"tf/msg/tfMessage"``).
        typestore: rosbags ``Typestore`` holding the message definition (for
            bags: ``AnyReader(...).typestore``).
        encoding: ``"cdr"`` (ROS 2 serialized message) or ``"ros1"`` (ROS 1
            serialized message, as ``AnyReader`` returns for ROS 1 bags).

    Returns:
        A :class:`TopicConverter`. Types listed in
        :data:`~.ontology.ONTOLOGY_LAYOUTS` get their Mosaico ontology layout;
        every other type (or a known type whose definition lacks a field the
        ontology needs) gets the generic layout from :mod:`.generic`.

    Raises:
        ConversionError: unknown encoding, or no definition for ``msgtype`` (or
            for a nested type) in the typestore.
    """
    if encoding not in ENCODINGS:
        raise ConversionError(
            f"{msgtype}: unsupported encoding {encoding!r} (expected one of {sorted(ENCODINGS)})",
            msgtype=msgtype,
        )
    types: set[Any] = set()
    _walk_types(typestore, msgtype, types, msgtype)

    root: Struct | None = None
    tag = fmt = ""
    layout = ONTOLOGY_LAYOUTS.get(msgtype)
    if layout is not None:
        try:
            layout.root.check(typestore, msgtype)
            root, tag, fmt = layout.root, layout.tag, layout.serialization_format
        except KeyError as exc:
            logger.warning(
                "%s: definition does not fit the %s ontology (%s); using the generic layout",
                msgtype,
                layout.tag,
                exc.args[0] if exc.args else exc,
            )
    is_generic = root is None
    if is_generic:
        try:
            root = generic_layout(typestore, msgtype)
        except ConversionError as exc:
            raise ConversionError(f"{msgtype}: cannot convert: {exc}", msgtype=msgtype) from None
        tag, fmt = generic_ontology_tag(msgtype), "default"

    # Generate rosbags' (de)serializers now: they are cached lazily, and doing
    # it here keeps concurrent convert() calls from racing on the cache.
    for name in sorted(types):
        try:
            typestore.get_msgdef(name)
        except Exception as exc:
            raise ConversionError(
                f"{msgtype}: cannot build a deserializer for {name}: {exc}", msgtype=msgtype
            ) from exc

    # Compile the decoding plan now (warm start: no work left for the first message).
    plan: DecodePlan | None
    try:
        plan = compile_plan(typestore, msgtype, encoding)
    except PlanUnsupported as exc:
        logger.info("%s: no decoding plan (%s); rosbags deserializes each message", msgtype, exc)
        plan = None

    assert root is not None  # set by the ontology table or the generic layout above
    return TopicConverter(
        plan=plan,
        msgtype=msgtype,
        typestore=typestore,
        encoding=encoding,
        ontology_tag=tag,
        serialization_format=fmt,
        root=root,
        topic_metadata=_topic_metadata(typestore, msgtype, encoding, is_generic),
        is_generic=is_generic,
    )
