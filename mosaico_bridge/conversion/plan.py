"""Decoding plans: a batch of serialized messages of one type → numpy columns.

A :class:`DecodePlan` is compiled once per (message type, encoding) from the
message definition in a rosbags typestore (``typestore.fielddefs``). It
decodes a whole batch of serialized messages with numpy over their bytes,
without building one Python object per message, into a
:class:`ColumnarBatch` (field path → column). The ontology and generic
layouts (:mod:`.common`) build their Arrow arrays from it
(``Column.build_columnar``).

Wire formats (what rosbags' ``serialize_cdr`` / ``serialize_ros1`` write):

* CDR (ROS 2): a 4-byte encapsulation header (byte 1: ``0x00`` big-endian,
  ``0x01`` little-endian), then the fields in definition order, each
  primitive aligned to its size relative to the start of the payload (after
  the header). ``string``: ``uint32`` length including the NUL terminator,
  the bytes, NUL. Sequence: ``uint32`` count, then the elements (a sequence of
  8-byte primitives is aligned only when non-empty, as rosbags does). Fixed
  arrays: the elements, no count. Nested messages: their fields inline.
* ROS 1: little-endian, no alignment, ``string`` = ``uint32`` length (no NUL)
  + bytes, sequences = ``uint32`` count + elements; ``time``/``duration``
  are the two 32-bit fields of ``builtin_interfaces/Time``/``Duration``.

The walk keeps one cursor per *instance* (a message, or an element of a
sequence of messages) in a numpy vector: fixed-size runs of primitives are
read in one gather per run (with one layout per start alignment residue), a
variable-size field (string, sequence) advances each cursor by its own
length. Sequences of messages whose elements are fixed-size are expanded
with one vector operation; others are walked element index by element index
(vectorized across messages). Every read is bounds-checked against its
message; any inconsistency raises :class:`PlanMismatch` and the caller falls
back to rosbags' per-message deserializer, which reports the precise error.

What a plan cannot express (``float128``, wide strings, unknown nodes) makes
:func:`compile_plan` raise :class:`PlanUnsupported`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
from rosbags.interfaces import Nodetype
from rosbags.typesys.base import normalize_fieldname

__all__ = [
    "ByteRuns",
    "ColumnarBatch",
    "DecodePlan",
    "MessageLists",
    "PlanMismatch",
    "PlanUnsupported",
    "PrimitiveLists",
    "StringLists",
    "Strings",
    "compile_plan",
]

#: Size in bytes of each ROS primitive (CDR and ROS 1 alike).
PRIMITIVE_SIZES = {
    "bool": 1, "byte": 1, "char": 1, "int8": 1, "uint8": 1, "int16": 2, "uint16": 2,
    "int32": 4, "uint32": 4, "int64": 8, "uint64": 8, "float32": 4, "float64": 8,
}

#: numpy kind+size of each primitive (byte order added per batch). ``bool`` is
#: read as ``u1`` and turned into ``bool`` (non-zero = True, as ``struct '?'``).
_NP_CODES = {
    "bool": "u1", "byte": "i1", "char": "u1", "int8": "i1", "uint8": "u1", "int16": "i2",
    "uint16": "u2", "int32": "i4", "uint32": "u4", "int64": "i8", "uint64": "u8",
    "float32": "f4", "float64": "f8",
}

#: Element types kept as raw byte runs (zero-copy candidates).
BYTE_ELEMENTS = frozenset({"uint8", "byte", "char"})

_MAX_DEPTH = 64


class PlanMismatch(Exception):
    """The bytes of a batch do not decode with the plan (truncated message, bad
    length, wrong encapsulation, trailing bytes...). The caller falls back to
    rosbags, which names the message and the problem."""


class PlanUnsupported(Exception):
    """The message definition uses something a plan does not decode."""


# --------------------------------------------------------------------------- #
# Decoded columns
# --------------------------------------------------------------------------- #


def _rows(buf: np.ndarray, starts: np.ndarray, size: int) -> np.ndarray:
    """``(len(starts), size)`` copy of ``buf[s:s+size]`` for every start (each in bounds).

    Indexes a strided window view instead of building one index per byte
    (an order of magnitude faster for runs of tens of bytes).
    """
    windows = np.lib.stride_tricks.as_strided(
        buf, shape=(len(buf) - size + 1, size), strides=(buf.strides[0], buf.strides[0]), writeable=False
    )
    return windows[starts]


class _Source:
    """The bytes of one batch: one numpy ``uint8`` buffer, plus the Arrow buffer
    it came from when the batch is a single serialized message (zero copy)."""

    __slots__ = ("arrow", "buf", "rows2d", "starts")

    def __init__(self, buf: np.ndarray, arrow: pa.Buffer | None, starts: np.ndarray, lens: np.ndarray):
        self.buf = buf
        self.arrow = arrow
        self.starts = starts
        # All messages of the same length: a (n, length) view lets fixed runs of
        # the top-level message be sliced instead of gathered.
        n = len(lens)
        self.rows2d: np.ndarray | None = None
        if n and int(lens[0]) > 0 and bool((lens == lens[0]).all()):
            self.rows2d = buf[: n * int(lens[0])].reshape(n, int(lens[0]))

    def gather(self, starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
        """Concatenated bytes ``buf[s:s+l]`` for every (s, l), as a new uint8 array."""
        k = len(lens)
        if k == 0:
            return np.empty(0, dtype=np.uint8)
        l0 = int(lens[0])
        if bool((lens == l0).all()):
            if l0 == 0:
                return np.empty(0, dtype=np.uint8)
            if k == 1:
                s = int(starts[0])
                return self.buf[s : s + l0].copy()
            return _rows(self.buf, starts, l0).reshape(-1)
        total = int(lens.sum())
        if total == 0:
            return np.empty(0, dtype=np.uint8)
        if total > 64 * k:  # long runs: one slice copy per run beats an index per byte
            return np.concatenate([self.buf[s : s + ln] for s, ln in zip(starts.tolist(), lens.tolist())])
        maxl = int(lens.max())
        if maxl * k <= 4 * total + 4096:
            # Short runs of varied lengths: one (k, maxl) window gather, then keep
            # the first lens[i] bytes of row i (rows near the buffer end are
            # shifted back so the window stays inside the buffer).
            clamped = np.minimum(starts, len(self.buf) - maxl)
            shift = (starts - clamped)[:, None]
            col = np.arange(maxl)
            keep = (col >= shift) & (col < shift + lens[:, None])
            return _rows(self.buf, clamped, maxl)[keep]
        offsets = np.zeros(k, dtype=np.int64)
        np.cumsum(lens[:-1], out=offsets[1:])
        idx = np.arange(total, dtype=np.int64) + np.repeat(starts - offsets, lens)
        return self.buf[idx]


def _offsets_from_counts(counts: np.ndarray) -> np.ndarray:
    out = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=out[1:])
    return out


class Strings:
    """``k`` strings decoded lazily: start offsets and byte lengths in the batch buffer."""

    __slots__ = ("_arrow", "lengths", "src", "starts")

    def __init__(self, src: _Source, starts: np.ndarray, lengths: np.ndarray):
        self.src = src
        self.starts = starts
        self.lengths = lengths
        self._arrow: pa.Array | None = None

    def __len__(self) -> int:
        return len(self.lengths)

    def arrow(self) -> pa.Array:
        """Arrow ``string`` array (UTF-8 validated).

        Raises:
            pyarrow.ArrowInvalid: a string is not valid UTF-8.
        """
        if self._arrow is None:
            data = self.src.gather(self.starts, self.lengths)
            offsets = _offsets_from_counts(self.lengths)
            if offsets[-1] > np.iinfo(np.int32).max:
                raise OverflowError("strings of one column exceed 2 GiB")
            arr = pa.Array.from_buffers(
                pa.string(),
                len(self.lengths),
                [None, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(data)],
            )
            arr.validate(full=True)
            self._arrow = arr
        return self._arrow


class StringLists:
    """A string array/sequence field: list offsets (``k + 1``) into :attr:`strings`."""

    __slots__ = ("offsets", "strings")

    def __init__(self, offsets: np.ndarray, strings: Strings):
        self.offsets = offsets
        self.strings = strings


class PrimitiveLists:
    """A sequence of primitives: list offsets (``k + 1``) and flat native values."""

    __slots__ = ("offsets", "values")

    def __init__(self, offsets: np.ndarray, values: np.ndarray):
        self.offsets = offsets
        self.values = values


class ByteRuns:
    """A ``uint8[]``/``byte[]``/``char[]`` sequence: byte runs in the batch buffer.

    :meth:`data_buffer` gives the concatenated bytes; when the batch is one
    serialized message given as (or wrapped into) an Arrow buffer, it is a
    zero-copy slice of that message.
    """

    __slots__ = ("lengths", "src", "starts")

    def __init__(self, src: _Source, starts: np.ndarray, lengths: np.ndarray):
        self.src = src
        self.starts = starts
        self.lengths = lengths

    def offsets(self) -> np.ndarray:
        return _offsets_from_counts(self.lengths)

    def data_buffer(self) -> pa.Buffer:
        if len(self.lengths) == 1 and self.src.arrow is not None:
            return self.src.arrow.slice(int(self.starts[0]), int(self.lengths[0]))
        return pa.py_buffer(self.src.gather(self.starts, self.lengths))


class MessageLists:
    """An array/sequence of nested messages: list offsets (``k + 1``) into the
    :class:`ColumnarBatch` of all elements."""

    __slots__ = ("elements", "offsets")

    def __init__(self, offsets: np.ndarray, elements: ColumnarBatch):
        self.offsets = offsets
        self.elements = elements


Value = np.ndarray | Strings | StringLists | PrimitiveLists | ByteRuns | MessageLists


class ColumnarBatch:
    """``n`` decoded instances of one message type: dotted field path → column.

    Paths use rosbags' attribute names (``normalize_fieldname``); nested
    message fields are flattened (``"header.stamp.sec"``). A primitive scalar
    is a 1-D numpy array of ``n`` native values (``bool`` as ``np.bool_``), a
    fixed array ``T[N]`` a ``(n, N)`` array; other fields use the classes of
    this module.
    """

    __slots__ = ("n", "prefix", "values")

    def __init__(self, n: int, values: dict[str, Value], prefix: str = ""):
        self.n = n
        self.values = values
        self.prefix = prefix

    def get(self, path: str) -> Value:
        return self.values[self.prefix + path]

    def has(self, path: str) -> bool:
        return (self.prefix + path) in self.values

    def scope(self, path: str | None) -> ColumnarBatch:
        """The nested message at ``path`` (same rows)."""
        if not path:
            return self
        return ColumnarBatch(self.n, self.values, f"{self.prefix}{path}.")


# --------------------------------------------------------------------------- #
# Plan items
# --------------------------------------------------------------------------- #


@dataclass
class _Prim:
    path: str
    base: str
    count: int  # 0 = scalar, N = fixed array

    @property
    def size(self) -> int:
        return PRIMITIVE_SIZES[self.base]

    @property
    def nbytes(self) -> int:
        return self.size * max(1, self.count)


class _Run:
    """Consecutive fixed-size primitives, read together."""

    def __init__(self, fields: list[_Prim], cdr: bool):
        self.fields = fields
        self.cdr = cdr
        # residue (start offset mod 8, relative to the CDR payload) -> (offsets, size)
        self.layouts: list[tuple[list[int], int]] = []
        for r in range(8 if cdr else 1):
            cur = r
            offs = []
            for f in fields:
                if cdr:
                    a = f.size
                    cur = (cur + a - 1) & -a
                offs.append(cur - r)
                cur += f.nbytes
            self.layouts.append((offs, cur - r))
        self.first_align = fields[0].size if cdr else 1
        self.max_align = max(f.size for f in fields) if cdr else 1


@dataclass
class _Zero:
    """A field rosbags' ROS 1 deserializer skips (``structure_needs_at_least_one_member``)."""

    path: str


@dataclass
class _Str:
    path: str
    count: int  # 0 scalar, N fixed array, -1 sequence


@dataclass
class _Seq:
    path: str
    base: str


@dataclass
class _Msgs:
    path: str
    plan: DecodePlan
    count: int  # N fixed array, -1 sequence


Item = _Run | _Zero | _Str | _Seq | _Msgs

#: Sequences of a message type serialized as 0 bytes (ROS 1 ``Empty``) longer
#: than this are left to rosbags.
_MAX_EMPTY_ELEMENTS = 1 << 20


def _min_bytes(item: Item, cdr: bool) -> int:
    """Fewest serialized bytes ``item`` can take (alignment padding excluded)."""
    if isinstance(item, _Run):
        return sum(f.nbytes for f in item.fields)
    if isinstance(item, _Zero):
        return 0
    if isinstance(item, _Str):
        one = 5 if cdr else 4
        return one if item.count == 0 else (4 if item.count < 0 else item.count * one)
    if isinstance(item, _Seq):
        return 4
    return 4 if item.count < 0 else item.count * item.plan.min_size


class _State:
    """Cursors of ``k`` instances being decoded."""

    __slots__ = ("base", "end", "le", "max_seq", "pos", "src", "top")

    def __init__(
        self, src: _Source, le: bool, pos: np.ndarray, base: np.ndarray, end: np.ndarray, top: bool, max_seq: int
    ) -> None:
        self.src = src
        self.le = le
        self.pos = pos
        self.base = base
        self.end = end
        self.top = top  # instances are the batch's messages, in order
        self.max_seq = max_seq


def _dtype(code: str, le: bool) -> np.dtype:
    return np.dtype(("<" if le else ">") + code)


def _empty(f: _Prim, k: int) -> np.ndarray:
    shape = (k, f.count) if f.count else (k,)
    return np.empty(shape, dtype=np.bool_ if f.base == "bool" else _NP_CODES[f.base])


def _field(block: np.ndarray, f: _Prim, off: int, le: bool) -> np.ndarray:
    """Native, contiguous values of primitive ``f`` at byte ``off`` of every row of ``block``."""
    v = block[:, off : off + f.nbytes].view(_dtype(_NP_CODES[f.base], le))
    if not f.count:
        v = v.reshape(-1)
    if f.base == "bool":
        return v != 0
    return np.ascontiguousarray(v, dtype=_NP_CODES[f.base])


class DecodePlan:
    """Compiled decoder of one message type for one encoding.

    Build with :func:`compile_plan`. Immutable; :meth:`decode` is thread-safe.

    Attributes:
        msgtype: ROS message type (rosbags naming).
        cdr: True for CDR (ROS 2), False for ROS 1.
        has_byte_runs: the type (or a nested type) has a ``uint8[]``/``byte[]``/
            ``char[]`` sequence (large-payload candidate for zero copy).
        fixed_size: serialized size of the message body when it has no
            variable-size field (in a sequence: with an aligned start), else None.
    """

    def __init__(self, msgtype: str, items: list[Item], cdr: bool, max_seq: int):
        self.msgtype = msgtype
        self.items = items
        self.cdr = cdr
        self.max_seq = max_seq
        self.has_byte_runs: bool = any(
            isinstance(i, _Seq) and i.base in BYTE_ELEMENTS
            or isinstance(i, _Msgs) and i.plan.has_byte_runs
            for i in items
        )
        self.fixed_size: int | None = None
        self.align = 1
        runs = [i for i in items if not isinstance(i, _Zero)]
        if not runs:
            self.fixed_size = 0
        elif len(runs) == 1 and isinstance(runs[0], _Run):
            run = runs[0]
            # Regular stride: every element starts aligned to its largest alignment.
            size = run.layouts[0][1]
            if run.first_align == run.max_align and size % run.max_align == 0:
                self.fixed_size = size
                self.align = run.max_align
        # Minimum serialized size of one instance, in bytes (bounds a sequence
        # count before anything is allocated for it).
        self.min_size = sum(_min_bytes(i, cdr) for i in items)

    # -- top level ----------------------------------------------------------

    def decode(self, messages: Sequence[Any]) -> ColumnarBatch:
        """Decode serialized messages (``bytes``, ``memoryview`` or ``pa.Buffer``).

        Returns:
            A :class:`ColumnarBatch` of ``len(messages)`` rows.

        Raises:
            PlanMismatch: a message does not decode with this plan, or the batch
                mixes big- and little-endian CDR messages (split it).
        """
        n = len(messages)
        lens = np.fromiter(map(len, messages), dtype=np.int64, count=n)
        if n == 1:
            only = messages[0]
            arrow = only if isinstance(only, pa.Buffer) else pa.py_buffer(only)
            buf = np.frombuffer(arrow, dtype=np.uint8)
        else:
            arrow = None
            buf = np.frombuffer(b"".join(messages), dtype=np.uint8) if n else np.empty(0, np.uint8)
        starts = np.zeros(n, dtype=np.int64)
        if n > 1:
            np.cumsum(lens[:-1], out=starts[1:])
        src = _Source(buf, arrow, starts, lens)
        end = starts + lens
        le = True
        if self.cdr and n:
            if bool((lens < 4).any()):
                raise PlanMismatch("message shorter than the CDR header")
            b0 = buf[starts]
            b1 = buf[starts + 1]
            if bool((b0 != 0).any()) or bool((b1 > 1).any()):
                raise PlanMismatch("unsupported CDR encapsulation")
            le = bool(b1[0] == 1)
            if bool((b1 != b1[0]).any()):
                raise PlanMismatch("mixed endianness")
            base = starts + 4
        else:
            base = starts
        st = _State(src, le, base.copy(), base, end, True, self.max_seq)
        out: dict[str, Value] = {}
        self._walk(st, out, "", False)
        if n:
            if self.cdr:
                if bool((st.pos + 3 < end).any()):
                    raise PlanMismatch("trailing bytes")
            elif bool((st.pos != end).any()):
                raise PlanMismatch("message size mismatch")
        return ColumnarBatch(n, out)

    @staticmethod
    def endianness(messages: Sequence[Any]) -> list[int]:
        """CDR byte 1 of each message (1 = little-endian), -1 when too short."""
        return [m[1] if len(m) >= 2 else -1 for m in messages]

    # -- walk ---------------------------------------------------------------

    def _walk(self, st: _State, out: dict[str, Value], prefix: str, measure: bool) -> None:
        for item in self.items:
            if isinstance(item, _Run):
                self._run(item, st, out, prefix, measure)
            elif isinstance(item, _Str):
                self._strings(item, st, out, prefix, measure)
            elif isinstance(item, _Seq):
                self._sequence(item, st, out, prefix, measure)
            elif isinstance(item, _Msgs):
                self._messages(item, st, out, prefix, measure)
            elif not measure:  # _Zero
                out[prefix + item.path] = np.zeros(len(st.pos), dtype=np.uint8)

    def _align(self, st: _State, pos: np.ndarray, a: int, base: np.ndarray | None = None) -> np.ndarray:
        if not self.cdr or a == 1:
            return pos
        b = st.base if base is None else base
        return b + ((pos - b + (a - 1)) & -a)

    def _check(self, cond: np.ndarray, what: str) -> None:
        if bool(cond.any()):
            raise PlanMismatch(what)

    def _u32(self, st: _State, pos: np.ndarray) -> np.ndarray:
        k = len(pos)
        if k == 0:
            return np.empty(0, dtype=np.int64)
        raw = _rows(st.src.buf, pos, 4)
        return raw.view(_dtype("u4", st.le)).reshape(k).astype(np.int64)

    def _run(self, run: _Run, st: _State, out: dict[str, Value], prefix: str, measure: bool) -> None:
        pos = st.pos
        k = len(pos)
        if k == 0:
            if not measure:
                for f in run.fields:
                    out[prefix + f.path] = _empty(f, 0)
            return
        if self.cdr:
            resid = (pos - st.base) & 7
            r0 = int(resid[0])
            if bool((resid == r0).all()):
                groups: list[Any] = [(None, r0)]
            else:
                groups = [(np.flatnonzero(resid == r), int(r)) for r in np.unique(resid)]
        else:
            groups = [(None, 0)]
        if len(groups) == 1:
            offs, size = run.layouts[groups[0][1]]
            self._check(pos + size > st.end, "message too short")
            if not measure:
                block = self._block(st, pos, size)
                for f, off in zip(run.fields, offs):
                    out[prefix + f.path] = _field(block, f, off, st.le)
            st.pos = pos + size
            return
        new = pos.copy()
        if not measure:
            for f in run.fields:
                out[prefix + f.path] = _empty(f, k)
        for idx, r in groups:
            offs, size = run.layouts[r]
            p = pos[idx]
            self._check(p + size > st.end[idx], "message too short")
            if not measure:
                block = _rows(st.src.buf, p, size)
                for f, off in zip(run.fields, offs):
                    out[prefix + f.path][idx] = _field(block, f, off, st.le)  # type: ignore[index]  # an ndarray from _empty() above
            new[idx] = p + size
        st.pos = new

    def _block(self, st: _State, p: np.ndarray, size: int) -> np.ndarray:
        rows2d = st.src.rows2d
        if st.top and rows2d is not None:
            rel = p - st.src.starts
            r0 = int(rel[0])
            if bool((rel == r0).all()):
                return rows2d[:, r0 : r0 + size]
        return _rows(st.src.buf, p, size)

    def _count(self, st: _State, what: str) -> np.ndarray:
        pos = self._align(st, st.pos, 4)
        self._check(pos + 4 > st.end, f"{what}: message too short")
        count = self._u32(st, pos)
        st.pos = pos + 4
        self._check(count > st.max_seq, f"{what}: sequence too long")
        return count

    def _one_string(
        self, st: _State, pos: np.ndarray, base: np.ndarray, end: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(content starts, content lengths, new cursors) of one string per instance."""
        if self.cdr:
            pos = base + ((pos - base + 3) & -4)
        self._check(pos + 4 > end, "string: message too short")
        length = self._u32(st, pos)
        after = pos + 4 + length
        self._check(after > end, "string: length beyond the message")
        if self.cdr:
            self._check(length < 1, "string: zero CDR length")
            if len(after):
                self._check(st.src.buf[after - 1] != 0, "string: missing terminator")
            length = length - 1
        return pos + 4, length, after

    def _strings(self, item: _Str, st: _State, out: dict[str, Value], prefix: str, measure: bool) -> None:
        if item.count == 0:
            s, ln, st.pos = self._one_string(st, st.pos, st.base, st.end)
            if not measure:
                out[prefix + item.path] = Strings(st.src, s, ln)
            return
        k = len(st.pos)
        if item.count < 0:
            count = self._count(st, item.path)
            self._check(st.pos + count * (5 if self.cdr else 4) > st.end, "string sequence too long")
        else:
            count = np.full(k, item.count, dtype=np.int64)
        offsets = _offsets_from_counts(count)
        total = int(offsets[-1])
        starts = np.empty(total, dtype=np.int64)
        lens = np.empty(total, dtype=np.int64)
        pos = st.pos.copy()
        act = np.arange(k)
        maxc = int(count.max()) if k else 0
        for j in range(maxc):
            act = act[count[act] > j]
            s, ln, after = self._one_string(st, pos[act], st.base[act], st.end[act])
            flat = offsets[act] + j
            starts[flat] = s
            lens[flat] = ln
            pos[act] = after
        st.pos = pos
        if not measure:
            out[prefix + item.path] = StringLists(offsets, Strings(st.src, starts, lens))

    def _sequence(self, item: _Seq, st: _State, out: dict[str, Value], prefix: str, measure: bool) -> None:
        count = self._count(st, item.path)
        size = PRIMITIVE_SIZES[item.base]
        nbytes = count * size
        self._check(st.pos + nbytes > st.end, f"{item.path}: sequence beyond the message")
        pos = st.pos
        if self.cdr and size > 4:
            pos = np.where(count > 0, self._align(st, pos, size), pos)
            self._check(pos + nbytes > st.end, f"{item.path}: sequence beyond the message")
        st.pos = pos + nbytes
        if measure:
            return
        if item.base in BYTE_ELEMENTS:
            out[prefix + item.path] = ByteRuns(st.src, pos, nbytes)
            return
        data = st.src.gather(pos, nbytes).view(_dtype(_NP_CODES[item.base], st.le))
        values = (data != 0) if item.base == "bool" else data.astype(_NP_CODES[item.base], copy=False)
        out[prefix + item.path] = PrimitiveLists(_offsets_from_counts(count), values)

    def _messages(self, item: _Msgs, st: _State, out: dict[str, Value], prefix: str, measure: bool) -> None:
        sub = item.plan
        k = len(st.pos)
        if item.count < 0:
            count = self._count(st, item.path)
            self._check(st.pos + count * sub.min_size > st.end, f"{item.path}: sequence too long")
        else:
            count = np.full(k, item.count, dtype=np.int64)
        offsets = _offsets_from_counts(count)
        total = int(offsets[-1])
        if sub.min_size == 0 and total > _MAX_EMPTY_ELEMENTS:
            raise PlanMismatch(f"{item.path}: {total} elements of an empty message type")
        if sub.fixed_size is not None:
            first = np.where(count > 0, self._align(st, st.pos, sub.align), st.pos)
            after = first + count * sub.fixed_size
            self._check(after > st.end, f"{item.path}: elements beyond the message")
            st.pos = np.where(count > 0, after, st.pos)
            if measure:
                return
            rows = np.repeat(np.arange(k), count)
            within = np.arange(total, dtype=np.int64) - offsets[rows]
            elem_pos = first[rows] + within * sub.fixed_size
        else:
            rows = np.repeat(np.arange(k), count)
            elem_pos = np.empty(total, dtype=np.int64)
            pos = st.pos.copy()
            act = np.arange(k)
            maxc = int(count.max()) if k else 0
            for j in range(maxc):
                act = act[count[act] > j]
                elem_pos[offsets[act] + j] = pos[act]
                es = _State(st.src, st.le, pos[act], st.base[act], st.end[act], False, st.max_seq)
                sub._walk(es, {}, "", True)
                pos[act] = es.pos
            st.pos = pos
            if measure:
                return
        es = _State(st.src, st.le, elem_pos, st.base[rows], st.end[rows], False, st.max_seq)
        elems: dict[str, Value] = {}
        sub._walk(es, elems, "", False)
        out[prefix + item.path] = MessageLists(offsets, ColumnarBatch(total, elems))


# --------------------------------------------------------------------------- #
# Compilation
# --------------------------------------------------------------------------- #


def _flatten(typestore: Any, msgtype: str, cdr: bool, prefix: str, depth: int, items: list[Any], plans: dict[str, Any]) -> None:
    if depth > _MAX_DEPTH:
        raise PlanUnsupported(f"{msgtype}: nests deeper than {_MAX_DEPTH} levels")
    try:
        _, fields = typestore.fielddefs[msgtype]
    except KeyError:
        raise PlanUnsupported(f"{msgtype}: no definition") from None
    for name, (node, content) in fields:
        path = prefix + normalize_fieldname(name)
        if node == Nodetype.BASE:
            base = content[0]
            if not cdr and name == "structure_needs_at_least_one_member":
                items.append(_Zero(path))
            elif base == "string":
                items.append(_Str(path, 0))
            elif base in PRIMITIVE_SIZES:
                items.append(_Prim(path, base, 0))
            else:
                raise PlanUnsupported(f"{msgtype}.{name}: primitive {base}")
        elif node == Nodetype.NAME:
            _flatten(typestore, content, cdr, path + ".", depth + 1, items, plans)
        elif node in (Nodetype.ARRAY, Nodetype.SEQUENCE):
            (elem_node, elem), size = content
            count = size if node == Nodetype.ARRAY else -1
            if node == Nodetype.ARRAY and size <= 0:
                raise PlanUnsupported(f"{msgtype}.{name}: array of size {size}")
            if elem_node == Nodetype.BASE:
                base = elem[0]
                if base == "string":
                    items.append(_Str(path, count))
                elif base not in PRIMITIVE_SIZES:
                    raise PlanUnsupported(f"{msgtype}.{name}: primitive {base}")
                elif count > 0:
                    items.append(_Prim(path, base, count))
                else:
                    items.append(_Seq(path, base))
            elif elem_node == Nodetype.NAME:
                items.append(_Msgs(path, _compile(typestore, elem, cdr, depth + 1, plans), count))
            else:
                raise PlanUnsupported(f"{msgtype}.{name}: element node {elem_node}")
        else:
            raise PlanUnsupported(f"{msgtype}.{name}: node {node}")


def _compile(typestore: Any, msgtype: str, cdr: bool, depth: int, plans: dict[str, Any]) -> DecodePlan:
    if msgtype in plans:
        return plans[msgtype]
    flat: list[Any] = []
    _flatten(typestore, msgtype, cdr, "", depth, flat, plans)
    items: list[Item] = []
    run: list[_Prim] = []
    for it in flat:
        if isinstance(it, _Prim):
            run.append(it)
            continue
        if run:
            items.append(_Run(run, cdr))
            run = []
        items.append(it)
    if run:
        items.append(_Run(run, cdr))
    plan = DecodePlan(msgtype, items, cdr, int(getattr(typestore, "max_sequence_length", 2**32 - 1)))
    plans[msgtype] = plan
    return plan


def compile_plan(typestore: Any, msgtype: str, encoding: str) -> DecodePlan:
    """Compile the decoding plan of ``msgtype``.

    Args:
        typestore: rosbags typestore with the definition of ``msgtype`` and of
            every nested type.
        msgtype: ROS message type (rosbags naming, ``pkg/msg/Name``).
        encoding: ``"cdr"`` or ``"ros1"``.

    Raises:
        PlanUnsupported: the definition uses something a plan cannot decode
            (the caller keeps rosbags' per-message deserializer).
    """
    if encoding not in ("cdr", "ros1"):
        raise PlanUnsupported(f"encoding {encoding!r}")
    return _compile(typestore, msgtype, encoding == "cdr", 0, {})
