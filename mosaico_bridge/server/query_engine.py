"""Evaluation of catalog queries for the embedded server: ``query``,
``topic_filter_clusterize`` and ``topic_filter_intersect``. Pure functions, no Flight.

Input is the catalog as plain records (:class:`SequenceRecord`, :class:`TopicRecord`,
each topic with the Parquet chunks holding its rows) and the typed requests of
:mod:`mosaico_bridge.protocol.query`.

* Sequence and topic conditions (name, ``created_at_ns``, user metadata at dotted key
  paths) are checked on the records.
* Ontology conditions run on the stored rows with DataFusion: each condition becomes a
  SQL predicate over the chunk's columns (``"acceleration"['x'] > 5.0``). Before a chunk
  is read its Parquet row-group statistics (min / max per column) are tested with the
  same conditions as a ``pyarrow.dataset`` expression; a chunk none of whose row groups
  can match is skipped unread. :class:`ScanStats` counts both.
* Time windows (``topic_filter_clusterize`` / ``_intersect``) and the Flight-facing
  service live in :mod:`.query_actions`.

:func:`write_parquet_chunk` writes a closed chunk's record batches in the layout these
functions expect (rows sorted by ``timestamp_ns``, statistics on every column).
"""

from __future__ import annotations

import base64
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

if TYPE_CHECKING:
    import datafusion
    import pyarrow.dataset as ds

from ..protocol.errors import ErrorKind
from ..protocol.query import (
    ParsedQuery,
    Predicate,
    QueryError,
    QueryResponse,
    QueryResponseItem,
    QueryResponseSequence,
    QueryResponseTopic,
    TimestampRange,
    glob_to_regex,
    parse_query,
)

__all__ = [
    "QueryNotFound",
    "QueryResult",
    "ScanStats",
    "SequenceRecord",
    "TopicRecord",
    "evaluate_query",
    "matching_timestamps",
    "read_parquet_chunk",
    "write_parquet_chunk",
]

TIMESTAMP = "timestamp_ns"


def _session() -> datafusion.SessionContext:
    """A DataFusion session; the engine is imported on the first query (it costs ~0.5 s of
    start-up that a server that never answers a query, e.g. the one inside bag_import,
    should not pay)."""
    import datafusion

    return datafusion.SessionContext()


def _ds():
    """``pyarrow.dataset``, imported on first use, as :func:`_pq` (~0.15 s of start-up saved)."""
    import pyarrow.dataset
    return pyarrow.dataset


def _pq():
    import pyarrow.parquet
    return pyarrow.parquet

#: Default row-group size of :func:`write_parquet_chunk`, in rows.
DEFAULT_ROW_GROUP_ROWS = 16384


class QueryNotFound(QueryError):
    """A clusterize / intersect request names a topic the catalog does not hold."""

    kind = ErrorKind.NOT_FOUND


@dataclass(frozen=True)
class SequenceRecord:
    """A sequence of the catalog: name, user metadata (JSON object), creation time (ns)."""

    name: str
    user_metadata: Mapping[str, Any]
    created_at_ns: int


@dataclass(frozen=True)
class TopicRecord:
    """A topic of the catalog and the Parquet chunks of its rows.

    ``locator`` is ``<sequence>/<topic path>`` (e.g. ``run_1/imu/data``); ``files`` the
    chunk files written by :func:`write_parquet_chunk`.
    """

    locator: str
    ontology_tag: str
    user_metadata: Mapping[str, Any]
    created_at_ns: int
    files: tuple[Path, ...] = ()
    serialization_format: str = "default"

    @property
    def sequence(self) -> str:
        return self.locator.strip("/").split("/", 1)[0]

    @property
    def path(self) -> str:
        """Topic path without a leading slash (``imu/data``)."""
        return self.locator.strip("/").split("/", 1)[1].strip("/")


@dataclass
class ScanStats:
    """Chunk accounting of one evaluation.

    ``files_pruned``: chunks skipped because their statistics exclude every row;
    ``files_scanned``: chunks read; the rest (``files_total`` minus both) were not needed
    (an existence check stopped early). Row groups likewise.
    """

    files_total: int = 0
    files_pruned: int = 0
    files_scanned: int = 0
    row_groups_total: int = 0
    row_groups_pruned: int = 0

    def add(self, other: ScanStats) -> None:
        self.files_total += other.files_total
        self.files_pruned += other.files_pruned
        self.files_scanned += other.files_scanned
        self.row_groups_total += other.row_groups_total
        self.row_groups_pruned += other.row_groups_pruned


@dataclass
class QueryResult:
    """Reply of :func:`evaluate_query` and the chunk accounting behind it."""

    response: QueryResponse
    stats: ScanStats = field(default_factory=ScanStats)


# --------------------------------------------------------------------------------------
# Parquet chunks
# --------------------------------------------------------------------------------------


#: Parquet key-value metadata entry holding the chunk's original Arrow schema (IPC bytes,
#: base64): Parquet cannot declare a child non-nullable under a nullable parent.
SCHEMA_METADATA_KEY = b"mosaico:arrow_schema"


def _relaxed(t: pa.DataType) -> pa.DataType:
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, _relaxed(f.type), True, f.metadata) for f in t])
    if pa.types.is_list(t):
        return pa.list_(pa.field(t.value_field.name, _relaxed(t.value_type), True))
    if pa.types.is_large_list(t):
        return pa.large_list(pa.field(t.value_field.name, _relaxed(t.value_type), True))
    if pa.types.is_fixed_size_list(t):
        return pa.list_(pa.field(t.value_field.name, _relaxed(t.value_type), True), t.list_size)
    return t


def _restore(arr: pa.Array, t: pa.DataType) -> pa.Array:
    """Rebuild ``arr`` (read back with relaxed nullability) with the exact type ``t``."""
    if not (pa.types.is_struct(t) or _is_list(t)):
        return arr
    if arr.offset:
        arr = pa.concat_arrays([arr])
    mask = arr.is_null() if arr.null_count else None
    if pa.types.is_struct(t):
        children = [_restore(arr.field(i), t.field(i).type) for i in range(t.num_fields)]
        return pa.StructArray.from_arrays(children, fields=list(t), mask=mask)
    values = _restore(arr.values, t.value_type)
    if pa.types.is_fixed_size_list(t):
        return pa.FixedSizeListArray.from_arrays(values, type=t, mask=mask)
    cls = pa.LargeListArray if pa.types.is_large_list(t) else pa.ListArray
    return cls.from_arrays(arr.offsets, values, type=t, mask=mask)


def write_parquet_chunk(
    path: str | os.PathLike,
    batches: Iterable[pa.RecordBatch],
    *,
    schema: pa.Schema | None = None,
    row_group_rows: int = DEFAULT_ROW_GROUP_ROWS,
    compression: str = "zstd",
) -> Path:
    """Write the record batches of one closed chunk to a Parquet file at ``path``.

    Rows are sorted by ``timestamp_ns`` (stable: equal stamps keep their order), split
    into row groups of at most ``row_group_rows`` rows, with min / max statistics on every
    column, so :func:`matching_timestamps` can skip the chunk or its row groups. Columns
    are written nullable (Parquet has no non-null child under a nullable parent); the
    exact Arrow schema is kept in the file metadata and :func:`read_parquet_chunk`
    restores it. The file appears atomically (written beside, then renamed). ``schema``
    is needed only when ``batches`` is empty.

    Raises:
        ValueError: no batch and no schema, or no ``timestamp_ns`` column.
        OSError: the file cannot be written.
    """
    batch_list = list(batches)
    if not batch_list and schema is None:
        raise ValueError("write_parquet_chunk needs at least one record batch or a schema")
    table = pa.Table.from_batches(batch_list, schema=schema)
    if TIMESTAMP not in table.column_names:
        raise ValueError(f"chunk for {path} has no {TIMESTAMP} column")
    if table.num_rows > 1:
        ts = table.column(TIMESTAMP).to_numpy()
        if np.any(ts[1:] < ts[:-1]):
            table = table.sort_by([(TIMESTAMP, "ascending")])
    original = table.schema
    relaxed = pa.schema(
        [pa.field(f.name, _relaxed(f.type), True, f.metadata) for f in original],
        metadata={**(original.metadata or {}), SCHEMA_METADATA_KEY: base64.b64encode(original.serialize().to_pybytes())},
    )
    table = table.cast(relaxed)
    out = Path(path)
    tmp = out.with_name(out.name + ".part")
    _pq().write_table(
        table, tmp, row_group_size=max(1, int(row_group_rows)), compression=compression, write_statistics=True
    )
    os.replace(tmp, out)
    return out


def read_parquet_chunk(path: str | os.PathLike, columns: Sequence[str] | None = None) -> pa.Table:
    """A chunk written by :func:`write_parquet_chunk`, with its exact original Arrow schema
    (all columns, or the top-level ``columns`` named).

    Raises:
        OSError, pyarrow.ArrowInvalid: unreadable file.
    """
    table = _pq().read_table(path, columns=list(columns) if columns is not None else None)
    meta = table.schema.metadata or {}
    if SCHEMA_METADATA_KEY not in meta:
        return table
    original = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(meta[SCHEMA_METADATA_KEY])))
    keep = {k: v for k, v in (original.metadata or {}).items() if k != SCHEMA_METADATA_KEY}
    fields = [original.field(name) for name in table.column_names]
    arrays = [
        pa.chunked_array([_restore(c, f.type) for c in table.column(f.name).chunks], type=f.type) for f in fields
    ]
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=keep or None))


# --------------------------------------------------------------------------------------
# Catalog conditions
# --------------------------------------------------------------------------------------


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _comparable(a: Any, b: Any) -> bool:
    if _is_number(a) and _is_number(b):
        return True
    return type(a) is type(b) and isinstance(a, (str, bool))


def _equal(a: Any, b: Any) -> bool:
    return _comparable(a, b) and a == b


def _ordered(a: Any, b: Any) -> bool:
    return _comparable(a, b) and not isinstance(a, bool)


def _check(op: str, actual: Any, value: Any, regex_cache: dict[str, re.Pattern]) -> bool:
    """``actual <op> value`` for a catalog value present in the record."""
    if op == "$eq":
        return _equal(actual, value)
    if op == "$neq":
        return not _equal(actual, value)
    if op == "$in":
        return any(_equal(actual, v) for v in value)
    if op == "$match":
        if not isinstance(actual, str):
            return False
        rx = regex_cache.get(value)
        if rx is None:
            rx = regex_cache[value] = re.compile(glob_to_regex(value))
        return rx.match(actual) is not None
    if op in ("$between", "$outside"):
        lo, hi = value
        if not (_ordered(actual, lo) and _ordered(actual, hi)):
            return False
        inside = lo <= actual <= hi
        return inside if op == "$between" else not inside
    if not _ordered(actual, value):
        return False
    if op == "$lt":
        return actual < value
    if op == "$leq":
        return actual <= value
    if op == "$gt":
        return actual > value
    if op == "$geq":
        return actual >= value
    raise QueryError(f"operator `{op}` is not supported here")


_MISSING = object()


def _lookup(meta: Mapping[str, Any], path: str) -> Any:
    """Value at the dotted ``path`` of nested objects; a key holding dots also counts."""
    if path in meta:
        return meta[path]
    node: Any = meta
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _metadata_ok(preds: Sequence[Predicate], meta: Mapping[str, Any], cache: dict[str, re.Pattern]) -> bool:
    for p in preds:
        value = _lookup(meta, p.field)
        if p.op == "$ex":
            ok = value is not _MISSING
        elif p.op == "$nex":
            ok = value is _MISSING
        else:
            ok = value is not _MISSING and value is not None and _check(p.op, value, p.value, cache)
        if not ok:
            return False
    return True


def _sequence_ok(q: ParsedQuery, seq: SequenceRecord, cache: dict[str, re.Pattern]) -> bool:
    for p in q.sequence:
        actual: Any = seq.name if p.field == "name" else seq.created_at_ns
        if not _check(p.op, actual, p.value, cache):
            return False
    return _metadata_ok(q.sequence_metadata, seq.user_metadata, cache)


def _topic_name_ok(p: Predicate, topic: TopicRecord, cache: dict[str, re.Pattern]) -> bool:
    """Topic names compare without the leading ``/`` (``/imu/data`` == ``imu/data``)."""
    name = topic.path
    if p.op == "$match":
        return _check(p.op, name, p.value, cache) or _check(p.op, "/" + name, p.value, cache)
    value = [v.strip("/") for v in p.value] if isinstance(p.value, list) else p.value.strip("/")
    return _check(p.op, name, value, cache)


def _topic_ok(q: ParsedQuery, topic: TopicRecord, cache: dict[str, re.Pattern]) -> bool:
    for p in q.topic:
        if p.field == "name":
            ok = _topic_name_ok(p, topic, cache)
        else:
            actual = {
                "ontology_tag": topic.ontology_tag,
                "serialization_format": topic.serialization_format,
                "created_at_ns": topic.created_at_ns,
            }[p.field]
            ok = _check(p.op, actual, p.value, cache)
        if not ok:
            return False
    return _metadata_ok(q.topic_metadata, topic.user_metadata, cache)


# --------------------------------------------------------------------------------------
# Ontology conditions: SQL for DataFusion, dataset expressions for statistics
# --------------------------------------------------------------------------------------


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def _sql_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sql_literal(where: str, v: Any) -> str:
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise QueryError(f"ontology field `{where}`: value {v!r} is not a finite number")
        return repr(v)
    if isinstance(v, str):
        return "'" + v.replace("'", "''") + "'"
    raise QueryError(f"ontology field `{where}`: unsupported value {v!r}")


@dataclass
class _Compiled:
    sql: str
    prune: ds.Expression | None  # None: the condition cannot use statistics


def _leaf_check(where: str, arrow_type: pa.DataType, p: Predicate) -> None:
    values = p.value if isinstance(p.value, list) else [p.value]
    if p.op in ("$ex", "$nex"):
        return
    if pa.types.is_boolean(arrow_type):
        if p.op not in ("$eq", "$neq", "$in") or not all(isinstance(v, bool) for v in values):
            raise QueryError(f"ontology field `{where}` is boolean: use $eq / $neq / $in with true or false")
    elif pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type):
        if p.op == "$match" or not all(_is_number(v) for v in values):
            raise QueryError(f"ontology field `{where}` is numeric: `{p.op}` needs numbers, got {p.value!r}")
    elif pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        if not all(isinstance(v, str) for v in values):
            raise QueryError(f"ontology field `{where}` is a string: `{p.op}` needs strings, got {p.value!r}")
    else:
        raise QueryError(f"ontology field `{where}` has type {arrow_type} which cannot be queried")


def _compare_sql(col: str, op: str, value: Any, where: str) -> str:
    lit = (lambda v: _sql_literal(where, v))
    if op == "$eq":
        return f"{col} = {lit(value)}"
    if op == "$neq":
        return f"{col} <> {lit(value)}"
    if op in ("$lt", "$leq", "$gt", "$geq"):
        sym = {"$lt": "<", "$leq": "<=", "$gt": ">", "$geq": ">="}[op]
        return f"{col} {sym} {lit(value)}"
    if op == "$between":
        return f"({col} >= {lit(value[0])} AND {col} <= {lit(value[1])})"
    if op == "$outside":
        return f"({col} < {lit(value[0])} OR {col} > {lit(value[1])})"
    if op == "$in":
        return f"{col} IN ({', '.join(lit(v) for v in value)})"
    if op == "$match":
        return f"regexp_like({col}, {lit(glob_to_regex(value))})"
    if op == "$ex":
        return f"{col} IS NOT NULL"
    if op == "$nex":
        return f"{col} IS NULL"
    raise QueryError(f"ontology field `{where}`: unsupported operator `{op}`")


def _compare_expr(ref: ds.Expression, op: str, value: Any) -> ds.Expression | None:
    if op == "$eq":
        return ref == value
    if op == "$neq":
        return ref != value
    if op == "$lt":
        return ref < value
    if op == "$leq":
        return ref <= value
    if op == "$gt":
        return ref > value
    if op == "$geq":
        return ref >= value
    if op == "$between":
        return (ref >= value[0]) & (ref <= value[1])
    if op == "$outside":
        return (ref < value[0]) | (ref > value[1])
    if op == "$in":
        return ref.isin(value)
    return None  # $match, $ex, $nex: no statistics use


def _list_sql(col: str, spec: str, p: Predicate, where: str) -> str:
    """``[?]`` / ``[!]`` over a list of scalars, from list aggregates."""
    lit = (lambda v: _sql_literal(where, v))
    lo, hi = f"array_min({col})", f"array_max({col})"
    op, v = p.op, p.value
    if spec == "?":
        table = {
            "$eq": lambda: f"array_has({col}, {lit(v)})",
            "$neq": lambda: f"NOT ({lo} = {lit(v)} AND {hi} = {lit(v)})",
            "$gt": lambda: f"{hi} > {lit(v)}",
            "$geq": lambda: f"{hi} >= {lit(v)}",
            "$lt": lambda: f"{lo} < {lit(v)}",
            "$leq": lambda: f"{lo} <= {lit(v)}",
            "$in": lambda: f"array_has_any({col}, make_array({', '.join(lit(x) for x in v)}))",
        }
    else:
        table = {
            "$eq": lambda: f"({lo} = {lit(v)} AND {hi} = {lit(v)})",
            "$neq": lambda: f"NOT array_has({col}, {lit(v)})",
            "$gt": lambda: f"{lo} > {lit(v)}",
            "$geq": lambda: f"{lo} >= {lit(v)}",
            "$lt": lambda: f"{hi} < {lit(v)}",
            "$leq": lambda: f"{hi} <= {lit(v)}",
            "$between": lambda: f"({lo} >= {lit(v[0])} AND {hi} <= {lit(v[1])})",
        }
    if op not in table:
        raise QueryError(f"ontology field `{where}`: operator `{op}` is not supported with [{spec}]")
    return f"({col} IS NOT NULL AND cardinality({col}) > 0 AND {table[op]()})"


def _compile(p: Predicate, schema: pa.Schema, locator: str) -> _Compiled:
    """One ontology condition as SQL (and a statistics expression when it is plain)."""
    where = p.field
    segs = p.segments()
    names: list[str] = []
    t: pa.DataType | None = None
    sql = ""
    plain = True
    for i, (name, spec) in enumerate(segs):
        if t is None:
            idx = schema.get_field_index(name)
            if idx < 0:
                raise QueryError(f"ontology field `{where}`: topic `{locator}` has no column `{name}`")
            t = schema.field(idx).type
            sql = _sql_ident(name)
        else:
            if not pa.types.is_struct(t) or t.get_field_index(name) < 0:
                raise QueryError(f"ontology field `{where}`: no field `{name}` in topic `{locator}`")
            t = t.field(name).type
            sql = f"{sql}[{_sql_literal(where, name)}]"
        names.append(name)
        if spec is not None:
            if not _is_list(t):
                raise QueryError(f"ontology field `{where}`: `{name}` is not a list")
            plain = False
            if spec in ("?", "!"):
                if i != len(segs) - 1 or pa.types.is_struct(t.value_type) or _is_list(t.value_type):
                    raise QueryError(f"ontology field `{where}`: [{spec}] is supported on lists of scalars only")
                _leaf_check(where, t.value_type, p)
                return _Compiled(_list_sql(sql, spec, p, where), None)
            sql = f"{sql}[{int(spec) + 1}]"  # DataFusion lists are 1-based; out of range is NULL
            t = t.value_type
    assert t is not None
    if pa.types.is_struct(t) or _is_list(t):
        raise QueryError(f"ontology field `{where}` is a {'struct' if pa.types.is_struct(t) else 'list'}, not a value")
    _leaf_check(where, t, p)
    prune = _compare_expr(_ds().field(*names), p.op, p.value) if plain else None
    return _Compiled(_compare_sql(sql, p.op, p.value, where), prune)


def _time_window(rng: TimestampRange | None) -> tuple[list[str], list[ds.Expression]]:
    sql: list[str] = []
    exprs: list[ds.Expression] = []
    if rng is not None and rng.start_ns is not None:
        sql.append(f"{_sql_ident(TIMESTAMP)} >= {int(rng.start_ns)}")
        exprs.append(_ds().field(TIMESTAMP) >= int(rng.start_ns))
    if rng is not None and rng.end_ns is not None:
        sql.append(f"{_sql_ident(TIMESTAMP)} < {int(rng.end_ns)}")
        exprs.append(_ds().field(TIMESTAMP) < int(rng.end_ns))
    return sql, exprs


class _TopicScan:
    """Statistics pruning, then DataFusion over the chunks left."""

    def __init__(self, topic: TopicRecord, preds: Sequence[Predicate], rng: TimestampRange | None):
        self.topic = topic
        self.stats = ScanStats()
        files = [Path(f) for f in topic.files]
        self.stats.files_total = len(files)
        self.fragments: list[tuple[Path, ds.ParquetFileFragment]] = []
        if not files:
            self.where = "FALSE"
            return
        dataset = _ds().dataset([str(f) for f in files], format="parquet")
        compiled = [_compile(p, dataset.schema, topic.locator) for p in preds]
        time_sql, time_exprs = _time_window(rng)
        self.where = " AND ".join([f"({c.sql})" for c in compiled] + time_sql) or "TRUE"
        prune_exprs = [c.prune for c in compiled if c.prune is not None] + time_exprs
        prune = None
        for e in prune_exprs:
            prune = e if prune is None else prune & e
        for path, frag in zip(files, dataset.get_fragments()):
            total = frag.metadata.num_row_groups
            self.stats.row_groups_total += total
            if prune is not None:
                kept = len(frag.subset(filter=prune).row_groups)
                self.stats.row_groups_pruned += total - kept
                if kept == 0:
                    self.stats.files_pruned += 1
                    continue
            self.fragments.append((path, frag))

    def _sql(self, ctx: datafusion.SessionContext, i: int, path: Path, select: str, limit: str = "") -> pa.Table:
        name = f"chunk_{i}"
        ctx.register_parquet(name, str(path))
        try:
            return ctx.sql(f"SELECT {select} FROM {name} WHERE {self.where}{limit}").to_arrow_table()
        finally:
            ctx.deregister_table(name)

    def any_row(self) -> bool:
        ctx = _session()
        for i, (path, _) in enumerate(self.fragments):
            self.stats.files_scanned += 1
            if self._sql(ctx, i, path, "1 AS hit", " LIMIT 1").num_rows:
                return True
        return False

    def timestamps(self) -> np.ndarray:
        ctx = _session()
        parts = []
        for i, (path, _) in enumerate(self.fragments):
            self.stats.files_scanned += 1
            table = self._sql(ctx, i, path, _sql_ident(TIMESTAMP))
            if table.num_rows:
                parts.append(table.column(0).to_numpy().astype(np.int64, copy=False))
        if not parts:
            return np.empty(0, dtype=np.int64)
        return np.sort(np.concatenate(parts), kind="stable")


def matching_timestamps(
    topic: TopicRecord, predicates: Sequence[Predicate], timestamp_range: TimestampRange | None = None
) -> tuple[np.ndarray, ScanStats]:
    """Sorted ``timestamp_ns`` (int64 ns) of the topic's rows that satisfy every ontology
    condition, restricted to ``start_ns <= t < end_ns`` when a range is given.

    Raises:
        QueryError: a condition names a column the topic lacks, or does not fit its type.
    """
    scan = _TopicScan(topic, predicates, timestamp_range)
    ts = scan.timestamps()
    return ts, scan.stats


# --------------------------------------------------------------------------------------
# query
# --------------------------------------------------------------------------------------


def evaluate_query(
    query: ParsedQuery | Mapping[str, Any],
    sequences: Iterable[SequenceRecord],
    topics: Iterable[TopicRecord],
) -> QueryResult:
    """Answer a ``query`` body over the catalog (semantics of mosaicod 0.7).

    Topics qualify when their sequence passes the sequence conditions and they pass the
    topic conditions. Without ontology conditions every qualifying topic is returned.
    With them, the conditions are grouped by ontology tag; for each tag, the qualifying
    topics of that tag with at least one matching row are found; a sequence is kept when
    every tag group matched one of its topics, with the matching topics of all groups.
    Items come in sequence creation order, topics in creation order.

    Raises:
        QueryError: a malformed body, or an ontology field missing from a topic's schema.
    """
    q = query if isinstance(query, ParsedQuery) else parse_query(query)
    cache: dict[str, re.Pattern] = {}
    seqs = {s.name: s for s in sequences}
    ok_seqs = {name for name, s in seqs.items() if _sequence_ok(q, s, cache)}
    candidates = [t for t in topics if t.sequence in ok_seqs and _topic_ok(q, t, cache)]
    stats = ScanStats()
    if q.ontology:
        matched: dict[str, TopicRecord] = {}
        seq_sets: list[set[str]] = []
        for tag in q.ontology_tags():
            preds = [p for p in q.ontology if p.ontology_tag == tag]
            hits = set()
            for t in candidates:
                if t.ontology_tag != tag:
                    continue
                scan = _TopicScan(t, preds, None)
                found = scan.any_row()
                stats.add(scan.stats)
                if found:
                    matched[t.locator] = t
                    hits.add(t.sequence)
            seq_sets.append(hits)
        keep = set.intersection(*seq_sets) if seq_sets else set()
        selected = [t for t in candidates if t.locator in matched and t.sequence in keep]
    else:
        selected = candidates
    by_seq: dict[str, list[TopicRecord]] = {}
    for t in selected:
        by_seq.setdefault(t.sequence, []).append(t)
    items = []
    for name in sorted(by_seq, key=lambda n: (seqs[n].created_at_ns, n)):
        ts = sorted(by_seq[name], key=lambda t: (t.created_at_ns, t.locator))
        items.append(
            QueryResponseItem(
                QueryResponseSequence(name), tuple(QueryResponseTopic(t.locator, t.ontology_tag) for t in ts)
            )
        )
    return QueryResult(QueryResponse(tuple(items)), stats)
