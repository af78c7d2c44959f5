"""Catalog queries of the Mosaico protocol: builders, request parsing, reply classes.

The ``query`` DoAction carries one JSON object with up to three sections, each the
output of one builder and all joined with AND::

    {"sequence": {"name": {"$match": "run_*"}, "user_metadata": {"site.id": {"$eq": 3}}},
     "topic":    {"ontology_tag": {"$eq": "IMU"}, "created_at_ns": {"$geq": 1700000000000000000}},
     "ontology": {"IMU.acceleration.x": {"$gt": 5.0}, "IMU.timestamp_ns": {"$lt": 1700000000000000000}}}

Each condition is ``{field: {operator: value}}``. Operators (``OPERATORS``): ``$eq $neq $lt
$leq $gt $geq`` take one value, ``$between`` / ``$outside`` a ``[min, max]`` pair (both
bounds inclusive in ``$between``), ``$in`` a non-empty list, ``$match`` a wildcard pattern
(``*`` any run, ``?`` one character, ``#`` one digit, ``[...]`` a character class; the
whole string must match, see :func:`glob_to_regex`), ``$ex`` / ``$nex`` (value null) that a
user-metadata key exists / does not exist. Ontology fields are ``<ontology tag>.<column
path>``; a list column takes one specifier: ``[N]`` (element N), ``[?]`` (any element),
``[!]`` (every element). The SDK ``mosaicolabs`` 0.7.0 produces these bodies; the builders
here produce the same JSON for the same calls (``test/test_query_builders.py``).

The reply to ``query`` is ``{"items": [{"sequence": name, "topics": [{"locator": ...,
"ontology_tag": ...}]}]}`` (:class:`QueryResponse`). ``topic_filter_clusterize`` and
``topic_filter_intersect`` reply with one Flight result per time window, each its own
envelope ``{"action": <name>, "response": {"ts": {"start_ns": a, "end_ns": b}, "id": n}}``
(:class:`TopicCluster`, :func:`cluster_envelopes`).

Server side, :func:`parse_query`, :func:`parse_clusterize_request` and
:func:`parse_intersect_request` turn request bodies into typed values and raise
:class:`QueryError` (one line naming the field) for malformed input.

This module imports only the standard library and pyarrow.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from .errors import InvalidArgumentError

if TYPE_CHECKING:
    from typing import Self

__all__ = [
    "OPERATORS",
    "ClusterizeRequest",
    "Expression",
    "IntersectRequest",
    "OntologyProxy",
    "ParsedQuery",
    "Predicate",
    "Query",
    "QueryError",
    "QueryField",
    "QueryOntologyCatalog",
    "QueryResponse",
    "QueryResponseItem",
    "QueryResponseSequence",
    "QueryResponseTopic",
    "QuerySequence",
    "QueryTopic",
    "TimestampRange",
    "TopicCluster",
    "cluster_envelopes",
    "glob_to_regex",
    "ontology_proxy",
    "parse_cluster_envelopes",
    "parse_clusterize_request",
    "parse_intersect_request",
    "parse_query",
    "topic_name_of_locator",
]

#: Every operator of the query language.
OPERATORS = frozenset(
    {"$eq", "$neq", "$lt", "$leq", "$gt", "$geq", "$between", "$outside", "$in", "$match", "$ex", "$nex"}
)
_ORDERING = frozenset({"$lt", "$leq", "$gt", "$geq"})
_RANGE = frozenset({"$between", "$outside"})

#: Names of the three query sections, as ``Query.to_dict`` keys them.
SECTION_SEQUENCE = "sequence"
SECTION_TOPIC = "topic"
SECTION_ONTOLOGY = "ontology"

#: Reply action names of the paged filter actions.
ACTION_QUERY = "query"
ACTION_CLUSTERIZE = "topic_filter_clusterize"
ACTION_INTERSECT = "topic_filter_intersect"

_USER_METADATA = "user_metadata"
_MAX_PATTERN = 256


class QueryError(InvalidArgumentError):
    """A malformed query, clusterize or intersect request (one line naming the field);
    the server reports it as ``invalid_argument``."""


# --------------------------------------------------------------------------------------
# Wildcard patterns
# --------------------------------------------------------------------------------------


def glob_to_regex(pattern: str) -> str:
    """Anchored regular expression (Python ``re`` and RE2 syntax) of a ``$match`` pattern.

    ``*`` is any run of characters, ``?`` one character, ``#`` one digit, ``[...]`` a
    character class copied as is; every other character matches itself. The pattern must
    match the whole string (mosaicod 0.7 ``$match`` rules, as the SDK documents them).

    Raises:
        QueryError: empty pattern, longer than 256 characters, or not a valid class.
    """
    if not pattern:
        raise QueryError("empty `$match` pattern")
    if len(pattern) > _MAX_PATTERN:
        raise QueryError(f"`$match` pattern longer than {_MAX_PATTERN} characters")
    out = ["^"]
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            if out[-1] != ".*":
                out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "#":
            out.append("[0-9]")
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                raise QueryError(f"`$match` pattern {pattern!r} has an unclosed `[`")
            out.append(pattern[i : end + 1])
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    out.append("$")
    regex = "".join(out)
    try:
        re.compile(regex)
    except re.error as exc:
        raise QueryError(f"`$match` pattern {pattern!r} is malformed: {exc}") from None
    return regex


# --------------------------------------------------------------------------------------
# Expressions and field accessors (client side)
# --------------------------------------------------------------------------------------

#: Domains an expression belongs to (which builder takes it).
DOMAIN_ONTOLOGY = "ontology"
DOMAIN_TOPIC = "topic"
DOMAIN_SEQUENCE = "sequence"


@dataclass(frozen=True)
class Expression:
    """One condition ``{path: {op: value}}`` of the builder ``domain``.

    ``path`` is dotted: ``IMU.acceleration.x`` (ontology), ``name``, ``created_at_ns`` or
    ``user_metadata.<key path>`` (sequence / topic).
    """

    path: str
    op: str
    value: Any
    domain: str = DOMAIN_ONTOLOGY

    def to_dict(self) -> dict[str, Any]:
        return {self.path: {self.op: self.value}}

    @property
    def ontology_tag(self) -> str:
        """First path segment (ontology expressions)."""
        return self.path.split(".", 1)[0]


_NUMERIC = (int, float)
_KIND_TYPES: dict[str, tuple[type, ...]] = {
    "numeric": _NUMERIC,
    "datetime": (datetime.date, datetime.time, datetime.datetime, int),
    "string": (str,),
    "bool": (bool,),
}
_KIND_OPERATORS: dict[str, frozenset[str]] = {
    "numeric": frozenset({"eq", "neq", "lt", "leq", "gt", "geq", "in_", "between", "outside"}),
    "datetime": frozenset({"eq", "neq", "lt", "leq", "gt", "geq", "in_", "between", "outside"}),
    "string": frozenset({"eq", "match", "lt", "leq", "gt", "geq", "in_", "between", "outside"}),
    "bool": frozenset({"eq"}),
    "dynamic": frozenset({"eq", "neq", "match", "in_", "lt", "leq", "gt", "geq", "between", "outside", "ex"}),
    "unsupported": frozenset(),
}


def _check_types(path: str, values: Sequence[Any], allowed: tuple[type, ...] | None) -> None:
    first = type(values[0])
    if any(type(v) is not first for v in values):
        raise TypeError(f"field `{path}`: all values must have one type, got {[type(v).__name__ for v in values]}")
    if allowed is not None and any(type(v) not in allowed for v in values):
        raise TypeError(
            f"field `{path}`: value of type {first.__name__} not accepted, expected one of "
            f"{', '.join(t.__name__ for t in allowed)}"
        )


class QueryField:
    """A leaf field of a query: its operators return :class:`Expression`.

    ``kind`` fixes the accepted value types and operators, as in the SDK 0.7.0:
    ``numeric`` (int, float), ``string`` (str; no ``neq``), ``bool`` (``eq`` only),
    ``datetime`` (date/time/datetime or int ns, sent as ISO text / decimal string),
    ``dynamic`` (user metadata: any scalar, plus ``ex``), ``unsupported`` (no operator).

    Operators raise TypeError for a value of the wrong type and ValueError for a bad
    range or an empty list; an operator the kind lacks is an AttributeError.
    """

    __slots__ = ("_domain", "_kind", "_path")

    def __init__(self, path: str, kind: str = "numeric", domain: str = DOMAIN_ONTOLOGY):
        if kind not in _KIND_OPERATORS:
            raise ValueError(f"unknown field kind {kind!r}")
        self._path = path
        self._kind = kind
        self._domain = domain

    @property
    def path(self) -> str:
        return self._path

    @property
    def kind(self) -> str:
        return self._kind

    def __repr__(self) -> str:
        return f"QueryField({self._path!r}, {self._kind!r})"

    def __getattribute__(self, name: str) -> Any:
        if name in _ALL_OPERATOR_METHODS:
            kind = object.__getattribute__(self, "_kind")
            if name not in _KIND_OPERATORS[kind]:
                path = object.__getattribute__(self, "_path")
                ops = ", ".join(sorted(_KIND_OPERATORS[kind])) or "none"
                raise AttributeError(f"field `{path}` ({kind}) has no operator `{name}`; operators: {ops}")
        return object.__getattribute__(self, name)

    # -- helpers
    def _make(self, op: str, value: Any) -> Expression:
        return Expression(self._path, op, value, self._domain)

    def _transform(self, value: Any) -> Any:
        if self._kind == "datetime":
            return str(value) if isinstance(value, int) else value.isoformat()
        return value

    def _scalar(self, op: str, value: Any, allowed: tuple[type, ...] | None) -> Expression:
        _check_types(self._path, [value], allowed)
        return self._make(op, self._transform(value))

    def _allowed(self, group: str) -> tuple[type, ...] | None:
        if self._kind != "dynamic":
            return _KIND_TYPES[self._kind]
        if group == "eq":
            return (int, float, str, bool)
        if group == "order":
            return (int, float, str)
        if group == "match":
            return (str,)
        return None

    @staticmethod
    def _unpack(values: tuple[Any, ...]) -> list[Any]:
        if len(values) == 1 and isinstance(values[0], (list, tuple)):
            return list(values[0])
        return list(values)

    def _pair(self, op: str, values: tuple[Any, ...]) -> Expression:
        vals = self._unpack(values)
        if len(vals) != 2:
            raise ValueError(f"field `{self._path}`: `{op}` takes exactly two values, got {len(vals)}")
        _check_types(self._path, vals, self._allowed("range"))
        if vals[0] > vals[1]:
            raise ValueError(f"field `{self._path}`: `{op}` range [{vals[0]}, {vals[1]}] has min > max")
        return self._make(op, [self._transform(v) for v in vals])

    # -- operators (availability per kind: see _KIND_OPERATORS)
    def eq(self, value: Any) -> Expression:
        return self._scalar("$eq", value, self._allowed("eq"))

    def neq(self, value: Any) -> Expression:
        return self._scalar("$neq", value, self._allowed("eq"))

    def lt(self, value: Any) -> Expression:
        return self._scalar("$lt", value, self._allowed("order"))

    def leq(self, value: Any) -> Expression:
        return self._scalar("$leq", value, self._allowed("order"))

    def gt(self, value: Any) -> Expression:
        return self._scalar("$gt", value, self._allowed("order"))

    def geq(self, value: Any) -> Expression:
        return self._scalar("$geq", value, self._allowed("order"))

    def match(self, pattern: str) -> Expression:
        return self._scalar("$match", pattern, self._allowed("match"))

    def in_(self, *values: Any) -> Expression:
        vals = self._unpack(values)
        if not vals:
            raise ValueError(f"field `{self._path}`: `in_` needs at least one value")
        _check_types(self._path, vals, self._allowed("in"))
        return self._make("$in", [self._transform(v) for v in vals])

    def between(self, *values: Any) -> Expression:
        return self._pair("$between", values)

    def outside(self, *values: Any) -> Expression:
        return self._pair("$outside", values)

    def ex(self, exists: bool) -> Expression:
        _check_types(self._path, [exists], (bool,))
        return self._make("$ex" if exists else "$nex", None)


_ALL_OPERATOR_METHODS = frozenset().union(*_KIND_OPERATORS.values())


def _leaf_kind(arrow_type: pa.DataType) -> str:
    if pa.types.is_boolean(arrow_type):
        return "bool"
    if pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type):
        return "numeric"
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "string"
    if (
        pa.types.is_date(arrow_type)
        or pa.types.is_time(arrow_type)
        or (pa.types.is_timestamp(arrow_type) and arrow_type.tz is None)
    ):
        return "datetime"
    return "unsupported"


def _is_list(arrow_type: pa.DataType) -> bool:
    return bool(
        pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type) or pa.types.is_fixed_size_list(arrow_type)
    )


class OntologyProxy:
    """Attribute access over an Arrow struct or list: ``proxy.acceleration.x`` is a
    :class:`QueryField` with path ``<tag>.acceleration.x``.

    A struct child that is itself a struct or a list gives another proxy. A list takes
    one element selector, ``proxy.covariance[0]``, ``.any()`` or ``.all()``, giving paths
    ``...covariance[0]``, ``[?]``, ``[!]``. Unknown names raise AttributeError.
    """

    __slots__ = ("_path", "_type")

    def __init__(self, path: str, arrow_type: pa.DataType):
        self._path = path
        self._type = arrow_type

    def __repr__(self) -> str:
        return f"OntologyProxy({self._path!r})"

    @property
    def fields(self) -> list[str]:
        """Names of the children (a struct proxy), else ``[]``."""
        if pa.types.is_struct(self._type):
            return [self._type.field(i).name for i in range(self._type.num_fields)]
        return []

    def _child(self, path: str, arrow_type: pa.DataType) -> OntologyProxy | QueryField:
        if pa.types.is_struct(arrow_type) or _is_list(arrow_type):
            return OntologyProxy(path, arrow_type)
        return QueryField(path, _leaf_kind(arrow_type))

    def __getattr__(self, name: str) -> OntologyProxy | QueryField:
        if name.startswith("_"):
            raise AttributeError(name)
        if _is_list(self._type):
            raise AttributeError(f"field `{self._path}` is a list: select elements with [i], .any() or .all() first")
        if not pa.types.is_struct(self._type) or self._type.get_field_index(name) < 0:
            raise AttributeError(f"no field `{name}` under `{self._path}`; fields: {', '.join(self.fields)}")
        return self._child(f"{self._path}.{name}", self._type.field(name).type)

    def _select(self, spec: str) -> OntologyProxy | QueryField:
        if not _is_list(self._type):
            raise TypeError(f"field `{self._path}` is not a list and cannot be indexed")
        return self._child(f"{self._path}[{spec}]", self._type.value_type)

    def __getitem__(self, index: int) -> OntologyProxy | QueryField:
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise TypeError(f"field `{self._path}`: list index must be a non-negative int, got {index!r}")
        return self._select(str(index))

    def any(self) -> OntologyProxy | QueryField:
        return self._select("?")

    def all(self) -> OntologyProxy | QueryField:
        return self._select("!")


def ontology_proxy(tag: str, schema: pa.Schema | Sequence[pa.Field]) -> OntologyProxy:
    """Root accessor (the ``Q`` of an ontology tag) over a topic's Arrow schema.

    ``schema`` holds the top-level columns; ``timestamp_ns: int64`` is added in front
    when missing (every Mosaico topic has it, ``docs/protocol.md`` § Write path).
    """
    fields = list(schema)
    if not any(f.name == "timestamp_ns" for f in fields):
        fields.insert(0, pa.field("timestamp_ns", pa.int64(), nullable=False))
    return OntologyProxy(tag, pa.struct(fields))


# --------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------


def _check_new(exprs: list[Expression], expr: Expression, domain: str) -> None:
    if not isinstance(expr, Expression) or expr.domain != domain:
        raise TypeError(f"a {domain} query takes {domain} expressions, got {expr!r}")
    if not expr.op.startswith("$"):
        raise ValueError(f"operator {expr.op!r} of `{expr.path}` must start with '$'")
    if any(e.path == expr.path for e in exprs):
        raise ValueError(f"field `{expr.path}` appears twice in one {domain} query")


def _merge(exprs: Iterable[Expression]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for e in exprs:
        out.update(e.to_dict())
    return out


class QueryOntologyCatalog:
    """Conditions on the values of stored rows (``ontology`` section), joined with AND.

    Build expressions with an ontology tag's ``Q`` accessor, e.g.
    ``QueryOntologyCatalog(IMU.Q.acceleration.x.gt(5.0)).with_expression(IMU.Q.timestamp_ns.lt(t))``.

    Raises:
        TypeError: an expression that is not an ontology expression.
        ValueError: a field given twice.
    """

    def __init__(self, *expressions: Expression):
        self._expressions: list[Expression] = []
        for e in expressions:
            self.with_expression(e)

    def with_expression(self, expr: Expression) -> QueryOntologyCatalog:
        _check_new(self._expressions, expr, DOMAIN_ONTOLOGY)
        self._expressions.append(expr)
        return self

    def name(self) -> str:
        return SECTION_ONTOLOGY

    def expressions(self) -> list[Expression]:
        return list(self._expressions)

    def to_dict(self) -> dict[str, Any]:
        return _merge(self._expressions)


class _CatalogBuilder:
    _domain = ""

    def __init__(self) -> None:
        self._expressions: list[Expression] = []

    def _add(self, expr: Expression) -> Self:
        _check_new(self._expressions, expr, self._domain)
        self._expressions.append(expr)
        return self

    def with_user_metadata(self, key: str, **operator: Any) -> Any:
        """Condition on ``user_metadata`` at the dotted ``key`` (e.g. ``"vehicle.id"``).

        Exactly one keyword names the operator: ``eq neq lt leq gt geq match between
        outside in_ ex`` (e.g. ``with_user_metadata("site", eq="lab")``).

        Raises:
            ValueError: no operator or more than one. AttributeError: unknown operator.
            TypeError: a value of the wrong type.
        """
        if len(operator) != 1:
            raise ValueError("with_user_metadata takes exactly one operator keyword")
        (op, value), = operator.items()
        fld = QueryField(f"{_USER_METADATA}.{key}", "dynamic", self._domain)
        return self._add(getattr(fld, op)(value))

    def with_name(self, name: str) -> Any:
        """Exact name."""
        return self._add(Expression("name", "$eq", name, self._domain))

    def with_name_match(self, pattern: str) -> Any:
        """Name matching a wildcard pattern (see :func:`glob_to_regex`)."""
        return self._add(Expression("name", "$match", f"{pattern}", self._domain))

    def with_created_timestamp(self, time_start: int | None = None, time_end: int | None = None) -> Any:
        """Creation time (ns since the Unix epoch) within ``[time_start, time_end]``; one
        bound may be None. A bound of 0 counts as absent (as in the SDK).

        Raises:
            ValueError: both bounds absent, or ``time_start > time_end``.
        """
        if not time_start and not time_end:
            raise ValueError("with_created_timestamp needs time_start or time_end")
        if time_start and not time_end:
            expr = Expression("created_at_ns", "$geq", time_start, self._domain)
        elif time_end and not time_start:
            expr = Expression("created_at_ns", "$leq", time_end, self._domain)
        else:
            assert time_start is not None and time_end is not None
            if time_start > time_end:
                raise ValueError("with_created_timestamp: time_start must not exceed time_end")
            expr = Expression("created_at_ns", "$between", [time_start, time_end], self._domain)
        return self._add(expr)

    def name(self) -> str:
        return self._domain

    def expressions(self) -> list[Expression]:
        return list(self._expressions)

    def to_dict(self) -> dict[str, Any]:
        plain = [e for e in self._expressions if not e.path.startswith(_USER_METADATA + ".")]
        meta = [e for e in self._expressions if e.path.startswith(_USER_METADATA + ".")]
        out = _merge(plain)
        if meta:
            out[_USER_METADATA] = {e.path.split(".", 1)[1]: {e.op: e.value} for e in meta}
        return out


class QuerySequence(_CatalogBuilder):
    """Conditions on sequences (``sequence`` section): name, ``created_at_ns``, user metadata."""

    _domain = DOMAIN_SEQUENCE

    @classmethod
    def _from_expressions(cls, *exprs: Expression) -> QuerySequence:
        q = cls()
        for e in exprs:
            q._add(e)
        return q


class QueryTopic(_CatalogBuilder):
    """Conditions on topics (``topic`` section): name, ontology tag, ``created_at_ns``, user metadata."""

    _domain = DOMAIN_TOPIC

    def with_ontology_tag(self, ontology_tag: str) -> QueryTopic:
        """Exact ontology tag (e.g. ``"IMU"``)."""
        return self._add(Expression("ontology_tag", "$eq", ontology_tag, self._domain))

    def with_name(self, name: str) -> QueryTopic:
        """Exact topic name (its path in the sequence, e.g. ``"/imu/data"``)."""
        return self._add(Expression("name", "$eq", f"{name}", self._domain))

    @classmethod
    def _from_expressions(cls, *exprs: Expression) -> QueryTopic:
        q = cls()
        for e in exprs:
            q._add(e)
        return q


QueryBuilder = QuerySequence | QueryTopic | QueryOntologyCatalog


class Query:
    """The whole ``query`` request body: at most one builder of each type, joined with AND.

    Raises:
        ValueError: two builders of one type.
    """

    def __init__(self, *queries: QueryBuilder):
        self._queries: list[QueryBuilder] = []
        self.append(*queries)

    def append(self, *queries: QueryBuilder) -> Query:
        for q in queries:
            if not isinstance(q, (QuerySequence, QueryTopic, QueryOntologyCatalog)):
                raise TypeError(f"not a query builder: {q!r}")
            if any(type(q) is type(p) for p in self._queries):
                raise ValueError(f"duplicate query builder type {type(q).__name__}")
            self._queries.append(q)
        return self

    @property
    def queries(self) -> list[QueryBuilder]:
        return list(self._queries)

    def to_dict(self) -> dict[str, Any]:
        return {q.name(): q.to_dict() for q in self._queries}


# --------------------------------------------------------------------------------------
# Replies
# --------------------------------------------------------------------------------------


def topic_name_of_locator(locator: str) -> str:
    """Topic name (``/`` + path) of a topic locator ``<sequence>/<path>``.

    Raises:
        QueryError: a locator without a topic path.
    """
    parts = locator.strip("/").split("/", 1)
    if len(parts) < 2 or not parts[1]:
        raise QueryError(f"topic locator `{locator}` has no topic path")
    return "/" + parts[1].strip("/")


def _get(d: Mapping[str, Any], key: str, typ: type, what: str) -> Any:
    if not isinstance(d, Mapping) or key not in d:
        raise QueryError(f"{what}: missing `{key}`")
    value = d[key]
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        raise QueryError(f"{what}: `{key}` must be {typ.__name__}, got {type(value).__name__}")
    return value


@dataclass(frozen=True)
class QueryResponseTopic:
    """A matching topic: ``locator`` ``<sequence>/<path>`` and its ontology tag."""

    locator: str
    ontology_tag: str

    @property
    def name(self) -> str:
        """``/`` + topic path (the SDK's ``QueryResponseItemTopic.name``)."""
        return topic_name_of_locator(self.locator)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> QueryResponseTopic:
        return cls(_get(d, "locator", str, "query reply topic"), _get(d, "ontology_tag", str, "query reply topic"))

    def to_dict(self) -> dict[str, Any]:
        return {"locator": self.locator, "ontology_tag": self.ontology_tag}


@dataclass(frozen=True)
class QueryResponseSequence:
    """The sequence of a reply item."""

    name: str


@dataclass(frozen=True)
class QueryResponseItem:
    """One sequence of a query reply with its matching topics."""

    sequence: QueryResponseSequence
    topics: tuple[QueryResponseTopic, ...]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> QueryResponseItem:
        topics = _get(d, "topics", list, "query reply item")
        return cls(
            QueryResponseSequence(_get(d, "sequence", str, "query reply item")),
            tuple(QueryResponseTopic.from_dict(t) for t in topics),
        )

    def to_dict(self) -> dict[str, Any]:
        return {"sequence": self.sequence.name, "topics": [t.to_dict() for t in self.topics]}


@dataclass(frozen=True)
class QueryResponse:
    """Reply of ``query``: items grouped by sequence. Iterable, indexable, ``len``."""

    items: tuple[QueryResponseItem, ...] = ()

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> QueryResponse:
        """Parse ``{"items": [...]}`` (the ``response`` of the envelope).

        Raises:
            QueryError: a missing key or a value of the wrong type.
        """
        return cls(tuple(QueryResponseItem.from_dict(i) for i in _get(d, "items", list, "query reply")))

    def to_dict(self) -> dict[str, Any]:
        return {"items": [i.to_dict() for i in self.items]}

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[QueryResponseItem]:
        return iter(self.items)

    def __getitem__(self, index: int) -> QueryResponseItem:
        return self.items[index]

    def is_empty(self) -> bool:
        return not self.items

    def to_query_sequence(self) -> QuerySequence:
        """A sequence query selecting exactly these sequences (``name $in [...]``).

        Raises:
            ValueError: the response is empty.
        """
        if not self.items:
            raise ValueError("cannot build a sequence query from an empty response")
        return QuerySequence._from_expressions(
            Expression("name", "$in", [i.sequence.name for i in self.items], DOMAIN_SEQUENCE)
        )

    def to_query_topic(self) -> QueryTopic:
        """A topic query selecting these topics by name (``name $in [...]``).

        Raises:
            ValueError: the response is empty.
        """
        if not self.items:
            raise ValueError("cannot build a topic query from an empty response")
        return QueryTopic._from_expressions(
            Expression("name", "$in", [t.name for i in self.items for t in i.topics], DOMAIN_TOPIC)
        )


def _opt_int(d: Mapping[str, Any], key: str, what: str) -> int | None:
    value = d.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise QueryError(f"{what}: `{key}` must be an integer (ns), got {type(value).__name__}")
    return value


@dataclass(frozen=True)
class TimestampRange:
    """Time window in ns; a None bound is open. As a request filter it keeps rows with
    ``start_ns <= t < end_ns`` (mosaicod 0.7)."""

    start_ns: int | None
    end_ns: int | None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], what: str = "timestamp_range") -> TimestampRange:
        """Parse ``{"start_ns": a, "end_ns": b}``.

        Raises:
            QueryError: not an object, a non-integer bound, or ``start_ns > end_ns``.
        """
        if not isinstance(d, Mapping):
            raise QueryError(f"{what} must be an object with start_ns / end_ns")
        unknown = set(d) - {"start_ns", "end_ns"}
        if unknown:
            raise QueryError(f"{what}: unknown field `{min(unknown)}`")
        start, end = _opt_int(d, "start_ns", what), _opt_int(d, "end_ns", what)
        if start is not None and end is not None and start > end:
            raise QueryError(f"{what}: start_ns {start} is after end_ns {end}")
        return cls(start, end)

    def to_dict(self) -> dict[str, Any]:
        return {"start_ns": self.start_ns, "end_ns": self.end_ns}


@dataclass(frozen=True)
class TopicCluster:
    """A time window ``[start_ns, end_ns]`` (both inclusive, ns) with a progressive ``id``."""

    id: int
    start_ns: int
    end_ns: int

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TopicCluster:
        """Parse ``{"ts": {"start_ns": a, "end_ns": b}, "id": n}``.

        Raises:
            QueryError: a missing key or a value of the wrong type.
        """
        ts = _get(d, "ts", Mapping, "cluster")
        return cls(
            _get(d, "id", int, "cluster"),
            _get(ts, "start_ns", int, "cluster ts"),
            _get(ts, "end_ns", int, "cluster ts"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {"ts": {"start_ns": self.start_ns, "end_ns": self.end_ns}, "id": self.id}

    def contains(self, t_ns: int) -> bool:
        return self.start_ns <= t_ns <= self.end_ns


def cluster_envelopes(action: str, clusters: Iterable[TopicCluster]) -> list[dict[str, Any]]:
    """One envelope per window, ``{"action": action, "response": cluster}`` (one Flight result each)."""
    return [{"action": action, "response": c.to_dict()} for c in clusters]


def parse_cluster_envelopes(action: str, envelopes: Iterable[Mapping[str, Any]]) -> list[TopicCluster]:
    """Windows of a paged ``topic_filter_clusterize`` / ``topic_filter_intersect`` reply.

    Raises:
        QueryError: an envelope of another action or without a response.
    """
    out = []
    for env in envelopes:
        if not isinstance(env, Mapping) or env.get("action") != action:
            raise QueryError(f"reply page is not a `{action}` envelope: {env!r}")
        if not isinstance(env.get("response"), Mapping):
            raise QueryError(f"`{action}` reply page has no response")
        out.append(TopicCluster.from_dict(env["response"]))
    return out


# --------------------------------------------------------------------------------------
# Request parsing (server side)
# --------------------------------------------------------------------------------------

_SEGMENT_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?:\[(\?|!|[0-9]+)\])?$")


@dataclass(frozen=True)
class Predicate:
    """One validated condition. ``field`` is the dotted path inside its section (for the
    ontology ``<tag>.<column path>``; for user metadata the key path after ``user_metadata``,
    with ``section`` ``sequence.user_metadata`` / ``topic.user_metadata``)."""

    section: str
    field: str
    op: str
    value: Any

    @property
    def ontology_tag(self) -> str:
        return self.field.split(".", 1)[0]

    @property
    def column_path(self) -> str:
        """The column path after the ontology tag (ontology predicates)."""
        return self.field.split(".", 1)[1]

    def segments(self) -> list[tuple[str, str | None]]:
        """Column path as ``[(name, list specifier or None), ...]`` (ontology predicates)."""
        out = []
        for seg in self.column_path.split("."):
            m = _SEGMENT_RE.match(seg)
            assert m is not None  # checked by the parser
            out.append((m.group(1), m.group(2)))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {self.field: {self.op: self.value}}


@dataclass(frozen=True)
class ParsedQuery:
    """A validated ``query`` body, per section (each a tuple of :class:`Predicate`)."""

    sequence: tuple[Predicate, ...] = ()
    sequence_metadata: tuple[Predicate, ...] = ()
    topic: tuple[Predicate, ...] = ()
    topic_metadata: tuple[Predicate, ...] = ()
    ontology: tuple[Predicate, ...] = ()

    @property
    def has_catalog_filter(self) -> bool:
        return bool(self.sequence or self.sequence_metadata or self.topic or self.topic_metadata)

    def ontology_tags(self) -> list[str]:
        """Ontology tags referenced, in first-use order."""
        return list(dict.fromkeys(p.ontology_tag for p in self.ontology))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, plain, meta in (
            (SECTION_SEQUENCE, self.sequence, self.sequence_metadata),
            (SECTION_TOPIC, self.topic, self.topic_metadata),
        ):
            if plain or meta:
                sec = _merge_preds(plain)
                if meta:
                    sec[_USER_METADATA] = _merge_preds(meta)
                out[name] = sec
        if self.ontology:
            out[SECTION_ONTOLOGY] = _merge_preds(self.ontology)
        return out


def _merge_preds(preds: Iterable[Predicate]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in preds:
        out.update(p.to_dict())
    return out


def _is_scalar(v: Any) -> bool:
    return isinstance(v, (int, float, str, bool))


def _is_orderable(v: Any) -> bool:
    return isinstance(v, (int, float, str)) and not isinstance(v, bool)


def _check_value(where: str, op: str, value: Any, allowed: tuple[type, ...] | None) -> None:
    """Check ``value`` for ``op``; ``allowed`` restricts scalar types (None: any scalar)."""

    def ok_type(v: Any) -> bool:
        if allowed is None:
            return _is_scalar(v)
        if isinstance(v, bool):
            return bool in allowed
        return isinstance(v, allowed)

    names = "/".join(t.__name__ for t in allowed) if allowed else "scalar"
    if op in ("$ex", "$nex"):
        return
    if op in ("$eq", "$neq"):
        if not ok_type(value):
            raise QueryError(f"query field `{where}`: `{op}` needs a {names} value, got {value!r}")
    elif op in _ORDERING:
        if not _is_orderable(value) or not ok_type(value):
            raise QueryError(f"query field `{where}`: `{op}` needs a number or string, got {value!r}")
    elif op in _RANGE:
        if (
            not isinstance(value, list)
            or len(value) != 2
            or not all(_is_orderable(v) and ok_type(v) for v in value)
            or isinstance(value[0], str) != isinstance(value[1], str)
        ):
            raise QueryError(f"query field `{where}`: `{op}` needs [min, max] of numbers or strings, got {value!r}")
        if value[0] > value[1]:
            raise QueryError(f"query field `{where}`: `{op}` range {value!r} has min > max")
    elif op == "$in":
        if not isinstance(value, list) or not value or not all(ok_type(v) for v in value):
            raise QueryError(f"query field `{where}`: `$in` needs a non-empty list of {names} values, got {value!r}")
    elif op == "$match":
        if not isinstance(value, str) or (allowed is not None and str not in allowed):
            raise QueryError(f"query field `{where}`: `$match` needs a string pattern, got {value!r}")
        try:
            glob_to_regex(value)
        except QueryError as exc:
            raise QueryError(f"query field `{where}`: {exc}") from None


def _op_of(where: str, cond: Any) -> tuple[str, Any]:
    if not isinstance(cond, Mapping) or len(cond) != 1:
        raise QueryError(f"query field `{where}`: expected {{operator: value}} with one operator, got {cond!r}")
    (op, value), = cond.items()
    if op not in OPERATORS:
        raise QueryError(f"query field `{where}`: unknown operator `{op}`")
    return op, value


_CATALOG_FIELDS: dict[str, dict[str, tuple[tuple[type, ...], frozenset[str]]]] = {
    SECTION_SEQUENCE: {
        "name": ((str,), frozenset({"$eq", "$neq", "$in", "$match"}) | _ORDERING),
        "created_at_ns": ((int,), frozenset({"$eq", "$neq", "$in"}) | _ORDERING | _RANGE),
    },
    SECTION_TOPIC: {
        "name": ((str,), frozenset({"$eq", "$neq", "$in", "$match"}) | _ORDERING),
        "ontology_tag": ((str,), frozenset({"$eq", "$neq", "$in", "$match"})),
        "serialization_format": ((str,), frozenset({"$eq", "$neq", "$in", "$match"})),
        "created_at_ns": ((int,), frozenset({"$eq", "$neq", "$in"}) | _ORDERING | _RANGE),
    },
}


def _metadata_predicates(section: str, prefix: str, body: Any, out: list[Predicate]) -> None:
    where_root = f"{section}.{_USER_METADATA}"
    if not isinstance(body, Mapping) or not body:
        raise QueryError(f"query field `{where_root}{'.' + prefix if prefix else ''}` must be a non-empty object")
    for key, cond in body.items():
        if not isinstance(key, str) or not key or any(not part for part in key.split(".")):
            raise QueryError(f"query field `{where_root}`: bad metadata key {key!r}")
        path = f"{prefix}.{key}" if prefix else key
        where = f"{where_root}.{path}"
        if isinstance(cond, Mapping) and cond and not any(str(k).startswith("$") for k in cond):
            _metadata_predicates(section, path, cond, out)  # nested object form
            continue
        op, value = _op_of(where, cond)
        _check_value(where, op, value, None)
        out.append(Predicate(f"{section}.{_USER_METADATA}", path, op, value))


def _catalog_section(section: str, body: Any) -> tuple[list[Predicate], list[Predicate]]:
    if not isinstance(body, Mapping):
        raise QueryError(f"query section `{section}` must be an object, got {type(body).__name__}")
    plain: list[Predicate] = []
    meta: list[Predicate] = []
    known = _CATALOG_FIELDS[section]
    for key, cond in body.items():
        if key == _USER_METADATA:
            _metadata_predicates(section, "", cond, meta)
            continue
        if key not in known:
            raise QueryError(f"query field `{section}.{key}` is unknown; fields: {', '.join(sorted(known))}, user_metadata")
        where = f"{section}.{key}"
        op, value = _op_of(where, cond)
        types, ops = known[key]
        if op not in ops:
            raise QueryError(f"query field `{where}`: operator `{op}` not supported on this field")
        _check_value(where, op, value, types)
        plain.append(Predicate(section, key, op, value))
    return plain, meta


def _ontology_section(body: Any, what: str = SECTION_ONTOLOGY) -> list[Predicate]:
    if not isinstance(body, Mapping):
        raise QueryError(f"query section `{what}` must be an object, got {type(body).__name__}")
    out = []
    for key, cond in body.items():
        if not isinstance(key, str) or "." not in key or not key.split(".", 1)[0]:
            raise QueryError(f"ontology field `{key}` must be `<ontology tag>.<field path>`")
        segs = key.split(".", 1)[1].split(".")
        specs = 0
        for seg in segs:
            m = _SEGMENT_RE.match(seg)
            if m is None:
                raise QueryError(f"ontology field `{key}`: bad path segment `{seg}`")
            specs += m.group(2) is not None
        if specs > 1:
            raise QueryError(f"ontology field `{key}`: at most one list specifier is allowed")
        op, value = _op_of(key, cond)
        _check_value(key, op, value, None)
        out.append(Predicate(SECTION_ONTOLOGY, key, op, value))
    return out


def parse_query(body: Any) -> ParsedQuery:
    """Validate a ``query`` DoAction body (see the module docstring).

    Field names are checked against the catalog fields here; ontology column paths are
    checked against each topic's schema when the query runs.

    Raises:
        QueryError: unknown section or field, unknown operator, value of the wrong type.
    """
    if not isinstance(body, Mapping):
        raise QueryError(f"query body must be a JSON object, got {type(body).__name__}")
    unknown = set(body) - {SECTION_SEQUENCE, SECTION_TOPIC, SECTION_ONTOLOGY}
    if unknown:
        raise QueryError(f"query section `{min(map(str, unknown))}` is unknown; sections: sequence, topic, ontology")
    seq, seq_meta = _catalog_section(SECTION_SEQUENCE, body.get(SECTION_SEQUENCE, {}))
    top, top_meta = _catalog_section(SECTION_TOPIC, body.get(SECTION_TOPIC, {}))
    onto = _ontology_section(body.get(SECTION_ONTOLOGY, {}))
    return ParsedQuery(tuple(seq), tuple(seq_meta), tuple(top), tuple(top_meta), tuple(onto))


@dataclass(frozen=True)
class ClusterizeRequest:
    """``topic_filter_clusterize`` body: the topic, the gap (ns; 0 = one window), the
    ontology conditions (all on one ontology tag), an optional time window."""

    locator: str
    clustering_dt_ns: int
    ontology: tuple[Predicate, ...]
    timestamp_range: TimestampRange | None = None

    def to_dict(self, include_timestamp_range: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "locator": self.locator,
            "clustering_dt_ns": self.clustering_dt_ns,
            "ontology": _merge_preds(self.ontology),
        }
        if include_timestamp_range:
            out["timestamp_range"] = self.timestamp_range.to_dict() if self.timestamp_range else None
        return out


@dataclass(frozen=True)
class IntersectRequest:
    """``topic_filter_intersect`` body: at least two topics of one sequence and a tolerance (ns)."""

    topics: tuple[ClusterizeRequest, ...]
    intersect_dt_ns: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "topics": [t.to_dict(include_timestamp_range=t.timestamp_range is not None) for t in self.topics],
            "intersect_dt_ns": self.intersect_dt_ns,
        }


def _non_negative(d: Mapping[str, Any], key: str, what: str) -> int:
    value = d.get(key)
    if value is None:
        return 0
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise QueryError(f"{what}: `{key}` must be a non-negative integer (ns), got {value!r}")
    return value


def parse_clusterize_request(body: Any, what: str = "topic_filter_clusterize") -> ClusterizeRequest:
    """Validate a ``topic_filter_clusterize`` body.

    Raises:
        QueryError: missing locator, negative gap, empty ontology or conditions on more
            than one ontology tag, bad time window.
    """
    if not isinstance(body, Mapping):
        raise QueryError(f"{what} body must be a JSON object")
    unknown = set(body) - {"locator", "clustering_dt_ns", "ontology", "timestamp_range"}
    if unknown:
        raise QueryError(f"{what}: unknown field `{min(map(str, unknown))}`")
    locator = _get(body, "locator", str, what)
    topic_name_of_locator(locator)
    dt = _non_negative(body, "clustering_dt_ns", what)
    preds = _ontology_section(body.get("ontology"), f"{what}.ontology")
    if not preds:
        raise QueryError(f"{what}: `ontology` must hold at least one condition")
    tags = {p.ontology_tag for p in preds}
    if len(tags) > 1:
        raise QueryError(f"{what}: `ontology` conditions must share one ontology tag, got {sorted(tags)}")
    tr = body.get("timestamp_range")
    return ClusterizeRequest(
        locator, dt, tuple(preds), TimestampRange.from_dict(tr, f"{what}.timestamp_range") if tr is not None else None
    )


def parse_intersect_request(body: Any) -> IntersectRequest:
    """Validate a ``topic_filter_intersect`` body.

    Raises:
        QueryError: fewer than two topics, topics of different sequences, a bad entry
            (as :func:`parse_clusterize_request`), a negative tolerance.
    """
    what = "topic_filter_intersect"
    if not isinstance(body, Mapping):
        raise QueryError(f"{what} body must be a JSON object")
    unknown = set(body) - {"topics", "intersect_dt_ns"}
    if unknown:
        raise QueryError(f"{what}: unknown field `{min(map(str, unknown))}`")
    topics = _get(body, "topics", list, what)
    if len(topics) < 2:
        raise QueryError(f"{what}: at least two topics are required, got {len(topics)}")
    reqs = tuple(parse_clusterize_request(t, f"{what}.topics[{i}]") for i, t in enumerate(topics))
    sequences = {r.locator.strip("/").split("/", 1)[0] for r in reqs}
    if len(sequences) > 1:
        raise QueryError(f"{what}: all topics must belong to one sequence, got {sorted(sequences)}")
    return IntersectRequest(reqs, _non_negative(body, "intersect_dt_ns", what))

