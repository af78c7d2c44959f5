"""The three query actions of the embedded server (``query``, ``topic_filter_clusterize``,
``topic_filter_intersect``) over the store: catalog records, time windows, replies.

* Windows follow mosaicod 0.7: consecutive matching timestamps belong to one window while
  their gap is at most ``clustering_dt_ns`` (0: one window over all matches); intersection
  walks the per-topic windows, always advancing the one that ends first, and emits the
  overlap of the current windows when ``max(start) <= min(end) + intersect_dt_ns``
  (a near miss is widened by the tolerance, split in two halves).
* The catalog: the store keeps Arrow IPC chunks (what was received survives a crash);
  the query service keeps a Parquet copy of each topic's rows with row-group statistics
  under ``<root>/.query_cache``, written once per topic state (uuid and row count) and
  reused while the topic does not change, so a value query skips the chunks whose
  statistics exclude it.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ..protocol.messages import Action, encode_body, response_envelope
from ..protocol.query import (
    ClusterizeRequest,
    IntersectRequest,
    QueryError,
    TimestampRange,
    TopicCluster,
    cluster_envelopes,
    parse_clusterize_request,
    parse_intersect_request,
)
from .query_engine import (
    DEFAULT_ROW_GROUP_ROWS,
    QueryNotFound,
    ScanStats,
    SequenceRecord,
    TopicRecord,
    evaluate_query,
    matching_timestamps,
    write_parquet_chunk,
)

QUERY_ACTIONS = (Action.QUERY, Action.TOPIC_FILTER_CLUSTERIZE, Action.TOPIC_FILTER_INTERSECT)

# --------------------------------------------------------------------------------------
# Windows
# --------------------------------------------------------------------------------------


def clusterize(
    timestamps: Sequence[int] | np.ndarray,
    clustering_dt_ns: int | None = None,
    timestamp_range: TimestampRange | None = None,
) -> list[TopicCluster]:
    """Windows of matching timestamps (ns): a new window starts where the gap to the
    previous timestamp exceeds ``clustering_dt_ns`` (a gap equal to it stays in the
    window); None or 0 gives one window ``[min, max]``. ``timestamp_range`` keeps
    ``start_ns <= t < end_ns`` first. Every window starts and ends on a matching
    timestamp; ids count from 0 in time order.

    Raises:
        ValueError: a negative ``clustering_dt_ns``.
    """
    if clustering_dt_ns is not None and clustering_dt_ns < 0:
        raise ValueError(f"clustering_dt_ns must be >= 0, got {clustering_dt_ns}")
    ts = np.sort(np.asarray(timestamps, dtype=np.int64), kind="stable")
    if timestamp_range is not None:
        if timestamp_range.start_ns is not None:
            ts = ts[ts >= timestamp_range.start_ns]
        if timestamp_range.end_ns is not None:
            ts = ts[ts < timestamp_range.end_ns]
    if ts.size == 0:
        return []
    if not clustering_dt_ns:
        return [TopicCluster(0, int(ts[0]), int(ts[-1]))]
    breaks = np.flatnonzero(np.diff(ts) > clustering_dt_ns) + 1
    starts = np.concatenate(([0], breaks))
    ends = np.concatenate((breaks - 1, [ts.size - 1]))
    return [TopicCluster(i, int(ts[s]), int(ts[e])) for i, (s, e) in enumerate(zip(starts, ends))]


def intersect(windows: Sequence[Sequence[TopicCluster]], intersect_dt_ns: int = 0) -> list[TopicCluster]:
    """Windows where every topic's windows overlap, within ``intersect_dt_ns`` (ns).

    Walks the per-topic window lists (each in time order), always advancing the list
    whose current window ends first; when ``max(start) <= min(end) + intersect_dt_ns`` it
    emits ``[max(start), min(end)]``, or for a near miss (``max(start) > min(end)``)
    ``[max(start) - dt // 2, min(end) + (dt - dt // 2)]``. A topic without windows gives
    no intersection. Ids count from 0.

    Raises:
        ValueError: a negative ``intersect_dt_ns``.
    """
    if intersect_dt_ns < 0:
        raise ValueError(f"intersect_dt_ns must be >= 0, got {intersect_dt_ns}")
    lists = [list(w) for w in windows]
    if not lists or any(not w for w in lists):
        return []
    pos = [0] * len(lists)
    out: list[TopicCluster] = []
    lo_half = intersect_dt_ns // 2
    hi_half = intersect_dt_ns - lo_half
    while True:
        current = [w[i] for w, i in zip(lists, pos)]
        max_start = max(c.start_ns for c in current)
        ends = [c.end_ns for c in current]
        min_end = min(ends)
        if max_start <= min_end + intersect_dt_ns:
            if max_start <= min_end:
                out.append(TopicCluster(len(out), max_start, min_end))
            else:
                out.append(TopicCluster(len(out), max_start - lo_half, min_end + hi_half))
        k = ends.index(min_end)
        pos[k] += 1
        if pos[k] >= len(lists[k]):
            return out


def _topic_by_locator(topics: Iterable[TopicRecord], locator: str) -> TopicRecord:
    want = locator.strip("/")
    for t in topics:
        if t.locator.strip("/") == want:
            return t
    raise QueryNotFound(f"topic `{locator}` not found")


def _windows_of(req: ClusterizeRequest, topics: Sequence[TopicRecord], stats: ScanStats) -> list[TopicCluster]:
    topic = _topic_by_locator(topics, req.locator)
    tag = req.ontology[0].ontology_tag
    if tag != topic.ontology_tag:
        raise QueryError(f"ontology field `{req.ontology[0].field}`: topic `{topic.locator}` has tag `{topic.ontology_tag}`")
    ts, s = matching_timestamps(topic, req.ontology, req.timestamp_range)
    stats.add(s)
    return clusterize(ts, req.clustering_dt_ns)


def topic_filter_clusterize(
    request: ClusterizeRequest | Mapping[str, Any], topics: Iterable[TopicRecord]
) -> tuple[list[TopicCluster], ScanStats]:
    """Windows of one topic's matching rows (``topic_filter_clusterize``).

    Raises:
        QueryError: a malformed request, conditions on another tag than the topic's.
        QueryNotFound: no topic with that locator.
    """
    req = request if isinstance(request, ClusterizeRequest) else parse_clusterize_request(request)
    stats = ScanStats()
    return _windows_of(req, list(topics), stats), stats


def topic_filter_intersect(
    request: IntersectRequest | Mapping[str, Any], topics: Iterable[TopicRecord]
) -> tuple[list[TopicCluster], ScanStats]:
    """Windows where all listed topics match at once (``topic_filter_intersect``).

    Raises:
        QueryError: a malformed request (see ``parse_intersect_request``).
        QueryNotFound: a topic the catalog does not hold.
    """
    req = request if isinstance(request, IntersectRequest) else parse_intersect_request(request)
    all_topics = list(topics)
    stats = ScanStats()
    per_topic = [_windows_of(r, all_topics, stats) for r in req.topics]
    return intersect(per_topic, req.intersect_dt_ns), stats


# --------------------------------------------------------------------------------------
# Catalog from a store (stop-gap until the store writes Parquet chunks itself)
# --------------------------------------------------------------------------------------


def catalog_from_store(
    store: Any, cache_dir: str | os.PathLike, *, chunk_rows: int = 65536, row_group_rows: int = DEFAULT_ROW_GROUP_ROWS
) -> tuple[list[SequenceRecord], list[TopicRecord]]:
    """Catalog records of every sequence of a :class:`~mosaico_bridge.server.store.MosaicoStore`
    (used through ``sequence_names``, ``get_sequence`` and ``read`` only), with each topic's
    rows as Parquet chunks of about ``chunk_rows`` rows under ``cache_dir``.

    Chunks are written once per topic state (topic uuid and row count in the directory
    name) and reused while the topic does not change; topics being written are read as
    they are. Once the store writes a Parquet chunk when a chunk closes, build the
    records from those files instead.

    Raises:
        OSError: ``cache_dir`` cannot be written.
    """
    cache = Path(cache_dir)
    sequences: list[SequenceRecord] = []
    topics: list[TopicRecord] = []
    for name in store.sequence_names():
        info = store.get_sequence(name)
        sequences.append(SequenceRecord(name, dict(info.user_metadata), info.created_at_ns))
        for t in info.topics:
            files: tuple[Path, ...] = ()
            if t.row_count:
                state = cache / f"{t.uuid}-{t.row_count}"
                done = state / "complete"
                if not done.exists():
                    for old in cache.glob(f"{t.uuid}-*"):  # earlier states of this topic
                        shutil.rmtree(old, ignore_errors=True)
                    state.mkdir(parents=True, exist_ok=True)
                    schema, batches = store.read(t.locator, max_rows=row_group_rows)
                    pending: list[pa.RecordBatch] = []
                    rows, n = 0, 0
                    for batch in batches:
                        pending.append(batch)
                        rows += batch.num_rows
                        if rows >= chunk_rows:
                            write_parquet_chunk(state / f"{n:06d}.parquet", pending, schema=schema,
                                                row_group_rows=row_group_rows)
                            pending, rows, n = [], 0, n + 1
                    if pending:
                        write_parquet_chunk(state / f"{n:06d}.parquet", pending, schema=schema,
                                            row_group_rows=row_group_rows)
                    done.write_text("")
                files = tuple(sorted(state.glob("*.parquet")))
            topics.append(
                TopicRecord(t.locator, t.ontology_tag, dict(t.user_metadata), t.created_at_ns, files,
                            t.serialization_format)
            )
    return sequences, topics


class QueryService:
    """Answers the three query actions for a server; thread-safe.

    Args:
        store: the server's :class:`~mosaico_bridge.server.store.MosaicoStore`.
        cache_dir: where the Parquet copies of the topics' rows are kept.
    """

    def __init__(self, store: Any, cache_dir: str | Path) -> None:
        self._store = store
        self._cache = Path(cache_dir)
        self._lock = threading.Lock()
        #: rows scanned / chunks read and skipped by the last query (for tests and benchmarks)
        self.last_stats = ScanStats()

    def _catalog(self) -> tuple[list[SequenceRecord], list[TopicRecord]]:
        with self._lock:
            return catalog_from_store(self._store, self._cache)

    def handle(self, name: str, body: Mapping[str, Any]) -> list[bytes]:
        """The Result bodies answering action ``name`` (one envelope, or one per window).

        Raises:
            QueryError (InvalidArgumentError): a malformed request, naming the field.
            QueryNotFound (NotFoundError): a topic the catalog does not hold.
        """
        sequences, topics = self._catalog()
        if name == Action.QUERY:
            result = evaluate_query(body, sequences, topics)
            self.last_stats = result.stats
            return [response_envelope(name, result.response.to_dict())]
        if name == Action.TOPIC_FILTER_CLUSTERIZE:
            clusters, stats = topic_filter_clusterize(body, topics)
        else:
            clusters, stats = topic_filter_intersect(body, topics)
        self.last_stats = stats
        return [encode_body(env) for env in cluster_envelopes(name, clusters)]
