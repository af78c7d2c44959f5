"""Client side of catalog queries: ontology accessors, builders, and the three actions.

The query JSON and the reply classes live in :mod:`mosaico_bridge.protocol.query`; this
module re-exports them and adds what needs the rest of the client:

* one :class:`OntologyModel` per ontology tag of the conversion layouts
  (``mosaico_bridge.conversion.ontology.ONTOLOGY_LAYOUTS``), reachable as module
  attributes: ``from mosaico_bridge.client.query import IMU`` then
  ``IMU.Q.acceleration.x.gt(5.0)`` (paths as the SDK 0.7.0 ``.Q`` proxies build them);
* :func:`run_query`, :func:`run_clusterize`, :func:`run_intersect`: the ``query``,
  ``topic_filter_clusterize`` and ``topic_filter_intersect`` DoActions over any callable
  ``run(action_name, payload) -> list[bytes]`` returning the Flight Result bodies
  (e.g. a lambda over ``pyarrow.flight.FlightClient.do_action``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import lru_cache
from typing import Any

import pyarrow as pa

from ..conversion.converter import TIMESTAMP_FIELD
from ..conversion.ontology import ONTOLOGY_LAYOUTS
from ..protocol.query import (
    ACTION_CLUSTERIZE,
    ACTION_INTERSECT,
    ACTION_QUERY,
    Expression,
    OntologyProxy,
    Query,
    QueryBuilder,
    QueryError,
    QueryField,
    QueryOntologyCatalog,
    QueryResponse,
    QueryResponseItem,
    QueryResponseSequence,
    QueryResponseTopic,
    QuerySequence,
    QueryTopic,
    TimestampRange,
    TopicCluster,
    ontology_proxy,
    parse_cluster_envelopes,
)

__all__ = [
    "Expression",
    "OntologyModel",
    "OntologyProxy",
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
    "ontology_models",
    "ontology_schemas",
    "query_body",
    "run_clusterize",
    "run_intersect",
    "run_query",
]

#: ``run(action_name, payload) -> Result bodies``: how these functions reach a server.
ActionRunner = Callable[[str, Mapping[str, Any]], Sequence[bytes]]


class OntologyModel:
    """An ontology tag with its query accessor ``Q`` (an :class:`OntologyProxy`)."""

    def __init__(self, tag: str, schema: pa.Schema):
        self._tag = tag
        self.schema = schema
        self.Q = ontology_proxy(tag, schema)

    def ontology_tag(self) -> str:
        return self._tag

    def __repr__(self) -> str:
        return f"OntologyModel({self._tag!r})"


@lru_cache(maxsize=1)
def ontology_schemas() -> dict[str, pa.Schema]:
    """Ontology tag -> topic schema (``timestamp_ns`` + the layout's columns), from the
    conversion layouts; the first layout of a tag wins (all layouts of a tag share the
    SDK class's struct)."""
    out: dict[str, pa.Schema] = {}
    for layout in ONTOLOGY_LAYOUTS.values():
        if layout.tag not in out:
            out[layout.tag] = pa.schema([TIMESTAMP_FIELD, *layout.root.arrow_fields])
    return out


@lru_cache(maxsize=1)
def ontology_models() -> dict[str, OntologyModel]:
    """Ontology tag -> :class:`OntologyModel` for every tag of the conversion layouts."""
    return {tag: OntologyModel(tag, schema) for tag, schema in ontology_schemas().items()}


def __getattr__(name: str) -> OntologyModel:
    models = ontology_models()
    if name in models:
        return models[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def query_body(*queries: QueryBuilder, query: Query | None = None) -> dict[str, Any]:
    """The ``query`` DoAction body for builders or a prebuilt :class:`Query`.

    Raises:
        ValueError: no query, both forms, or two builders of one type.
    """
    if queries and query is not None:
        raise ValueError("pass builders or query=, not both")
    if queries:
        return Query(*queries).to_dict()
    if query is not None:
        return query.to_dict()
    raise ValueError("expected query builders or a Query object")


def _envelopes(bodies: Iterable[bytes]) -> list[dict[str, Any]]:
    out = []
    for body in bodies:
        for line in bytes(body).splitlines():
            if line.strip():
                out.append(json.loads(line))
    return out


def run_query(run: ActionRunner, *queries: QueryBuilder, query: Query | None = None) -> QueryResponse | None:
    """Run ``query`` and parse its reply; None when the server sends no response.

    This is what ``MosaicoClient.query(*queries, query=None)`` does.

    Raises:
        ValueError: as :func:`query_body`. QueryError: a malformed reply.
        Whatever ``run`` raises for a server error.
    """
    body = query_body(*queries, query=query)
    joined = b"".join(bytes(b) for b in run(ACTION_QUERY, body))
    if not joined.strip():
        return None
    envelope = json.loads(joined)
    if envelope.get("action") in (None, "empty") or envelope.get("response") is None:
        return None
    if envelope["action"] != ACTION_QUERY:
        raise QueryError(f"reply to `query` is for action `{envelope['action']}`")
    return QueryResponse.from_dict(envelope["response"])


def _topic_payload(
    topic: QueryResponseTopic,
    ontology: QueryOntologyCatalog | None,
    clustering_dt_ns: int | None,
    timestamp_range: TimestampRange | None,
    include_timestamp_range: bool,
) -> dict[str, Any]:
    exprs = [e for e in (ontology.expressions() if ontology else []) if e.ontology_tag == topic.ontology_tag]
    payload: dict[str, Any] = {
        "locator": topic.locator,
        "clustering_dt_ns": clustering_dt_ns if clustering_dt_ns is not None else 0,
        "ontology": {k: v for e in exprs for k, v in e.to_dict().items()},
    }
    if include_timestamp_range:
        payload["timestamp_range"] = timestamp_range.to_dict() if timestamp_range else None
    return payload


def run_clusterize(
    run: ActionRunner,
    topic: QueryResponseTopic,
    ontology: QueryOntologyCatalog | None,
    clustering_dt_ns: int | None = None,
    timestamp_range: TimestampRange | None = None,
) -> list[TopicCluster]:
    """Time windows where ``topic`` matches the conditions of ``ontology`` on its tag.

    ``clustering_dt_ns``: largest gap (ns) inside one window; None or 0 gives one window.

    Raises:
        QueryError: a malformed reply. Whatever ``run`` raises for a server error.
    """
    payload = _topic_payload(topic, ontology, clustering_dt_ns, timestamp_range, True)
    return parse_cluster_envelopes(ACTION_CLUSTERIZE, _envelopes(run(ACTION_CLUSTERIZE, payload)))


def run_intersect(
    run: ActionRunner,
    topics: Sequence[QueryResponseTopic],
    ontology: QueryOntologyCatalog | None,
    intersect_dt_ns: int = 0,
    clustering_map: Mapping[str, int] | None = None,
    override_clustering_dt_ns: int | None = None,
) -> list[TopicCluster]:
    """Time windows where every topic of ``topics`` matches at once (within
    ``intersect_dt_ns``); ``clustering_map`` gives a gap per ontology tag, else
    ``override_clustering_dt_ns`` (None: 0).

    Raises:
        QueryError: a malformed reply. Whatever ``run`` raises for a server error.
    """
    entries = []
    for t in topics:
        dt = clustering_map.get(t.ontology_tag, override_clustering_dt_ns) if clustering_map else override_clustering_dt_ns
        entries.append(_topic_payload(t, ontology, dt, None, False))
    payload = {"topics": entries, "intersect_dt_ns": intersect_dt_ns}
    return parse_cluster_envelopes(ACTION_INTERSECT, _envelopes(run(ACTION_INTERSECT, payload)))


class TopicResult:
    """A topic of a query result, bound to the client that ran the query.

    ``locator``, ``ontology_tag`` and ``name`` as in :class:`QueryResponseTopic`;
    :meth:`clusterize` asks the server for the time windows where the topic's rows
    match the query's ontology conditions on its tag.
    """

    def __init__(self, topic: QueryResponseTopic, run: ActionRunner, ontology: QueryOntologyCatalog | None) -> None:
        self.topic = topic
        self._run = run
        self._ontology = ontology

    @property
    def locator(self) -> str:
        return self.topic.locator

    @property
    def ontology_tag(self) -> str:
        return self.topic.ontology_tag

    @property
    def name(self) -> str:
        return self.topic.name

    def clusterize(
        self, clustering_dt_ns: int | None = None, timestamp_range: TimestampRange | None = None
    ) -> list[TopicCluster]:
        """Time windows (ns) of the matching rows; a gap above ``clustering_dt_ns`` starts a new
        window, None or 0 gives one ``[first, last]`` window; ``timestamp_range`` restricts the
        rows (start inclusive, end exclusive)."""
        return run_clusterize(self._run, self.topic, self._ontology, clustering_dt_ns, timestamp_range)

    def __repr__(self) -> str:
        return f"TopicResult({self.locator!r}, {self.ontology_tag!r})"


class SequenceResult:
    """A sequence of a query result with its matching topics (:class:`TopicResult`)."""

    def __init__(self, item: QueryResponseItem, run: ActionRunner, ontology: QueryOntologyCatalog | None) -> None:
        self.item = item
        self.sequence = item.sequence
        self.topics = [TopicResult(t, run, ontology) for t in item.topics]
        self._run = run
        self._ontology = ontology

    def intersect(
        self,
        topics: Sequence[TopicResult] | None = None,
        intersect_dt_ns: int = 0,
        clustering_map: Mapping[str, int] | None = None,
        override_clustering_dt_ns: int | None = None,
    ) -> list[TopicCluster]:
        """Time windows (ns) where every topic (default: all of this sequence's) matches at once."""
        chosen = [t.topic for t in (topics if topics is not None else self.topics)]
        return run_intersect(
            self._run, chosen, self._ontology, intersect_dt_ns, clustering_map, override_clustering_dt_ns
        )


class QueryResult:
    """What :meth:`MosaicoClient.query` returns: the server's :class:`QueryResponse`
    (``response``), iterable as :class:`SequenceResult` items, ``len``,
    ``to_query_sequence()``, ``to_query_topic()``."""

    def __init__(self, response: QueryResponse, run: ActionRunner, ontology: QueryOntologyCatalog | None) -> None:
        self.response = response
        self.items = [SequenceResult(i, run, ontology) for i in response.items]

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[SequenceResult]:
        return iter(self.items)

    def __getitem__(self, index: int) -> SequenceResult:
        return self.items[index]

    def to_query_sequence(self) -> QuerySequence:
        return self.response.to_query_sequence()

    def to_query_topic(self) -> QueryTopic:
        return self.response.to_query_topic()
