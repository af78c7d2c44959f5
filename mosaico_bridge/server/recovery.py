"""Opening a store root: the format marker, leftovers of earlier runs, loading, recovery.

At start-up the store

* checks the marker ``MOSAICO_STORE`` (``{"format": 1}``), or writes it in a new root;
* empties ``.trash/`` and removes staging folders (``.tmp-*``) that a crash left;
* loads every sequence and topic (:mod:`mosaico_bridge.server.catalog`); a folder that
  cannot be read is logged and skipped, never served;
* recounts the rows of a topic whose ``topic.json`` says a DoPut was still writing
  (the server stopped mid-stream) and leaves it unlocked;
* fully validates every chunk not yet validated (chunks of older stores, and chunks
  being written when the server stopped); a chunk that fails is moved to the topic's
  ``quarantine/`` folder, never served, and a topic notification says so;
* adds a sequence notification to each session that is open, was never finalized and
  has topics, saying that it was interrupted and how many rows it kept.

Timestamps are ns, sizes bytes.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa

from mosaico_bridge.common.files import atomic_write_json, make_dir
from mosaico_bridge.protocol.errors import InternalError, MosaicoError
from mosaico_bridge.server import catalog, chunks
from mosaico_bridge.server import notifications as notes
from mosaico_bridge.server.catalog import SequenceRecord, TopicRecord

logger = logging.getLogger("mosaico_bridge.server")

_LOAD_ERRORS = (OSError, ValueError, KeyError, TypeError, pa.ArrowException, MosaicoError)


def open_root(root: Path) -> None:
    """Create or check a store root; clean the leftovers of earlier runs.

    Raises:
        OSError: the root cannot be created or written.
        InternalError: the marker is unreadable or names a newer format (one line,
            no path: ``store marker MOSAICO_STORE ...``).
    """
    make_dir(root, parents=True, exist_ok=True)
    marker = root / catalog.MARKER
    if marker.exists():
        try:
            meta = catalog.read_json(marker)
        except (OSError, ValueError) as exc:
            raise InternalError(f"store marker {catalog.MARKER} is unreadable ({type(exc).__name__})") from None
        fmt = meta.get("format") if isinstance(meta, dict) else None
        if not isinstance(fmt, int) or isinstance(fmt, bool) or fmt < 1:
            raise InternalError(f"store marker {catalog.MARKER} holds no valid format number")
        if fmt > catalog.STORE_FORMAT:
            raise InternalError(
                f"store marker {catalog.MARKER} says format {fmt}; this server reads format {catalog.STORE_FORMAT}"
            )
    else:
        atomic_write_json(marker, {"format": catalog.STORE_FORMAT})
    make_dir(root / catalog.SEQUENCES, exist_ok=True)
    trash = root / catalog.TRASH
    if trash.exists():
        shutil.rmtree(trash, ignore_errors=True)
    make_dir(trash, exist_ok=True)


def remove_staging(folder: Path) -> None:
    """Remove the ``.tmp-*`` staging folders directly under ``folder``."""
    if not folder.is_dir():
        return
    for entry in folder.iterdir():
        if entry.name.startswith(catalog.STAGING_PREFIX):
            shutil.rmtree(entry, ignore_errors=True)


def load_all(root: Path, add: Callable[[SequenceRecord], None]) -> None:
    """Load every sequence under ``root/sequences`` and hand each to ``add``."""
    seq_root = root / catalog.SEQUENCES
    remove_staging(seq_root)
    for seq_dir in sorted(seq_root.iterdir()):
        if seq_dir.name.startswith(".") or not seq_dir.is_dir():
            continue
        try:
            seq = _load_sequence(seq_dir)
        except _LOAD_ERRORS as exc:
            logger.error("skipping unreadable sequence folder %s: %s", seq_dir.name, exc)
            continue
        add(seq)


def _load_sequence(seq_dir: Path) -> SequenceRecord:
    seq = catalog.load_sequence(seq_dir)
    topics_dir = seq_dir / catalog.TOPICS
    remove_staging(topics_dir)
    loaded: list[TopicRecord] = []
    if topics_dir.is_dir():
        for tdir in topics_dir.iterdir():
            if tdir.name.startswith(".") or not tdir.is_dir():
                continue
            try:
                topic = _load_topic(seq.locator, tdir)
            except _LOAD_ERRORS as exc:
                logger.error("skipping unreadable topic folder %s/%s: %s", seq_dir.name, tdir.name, exc)
                continue
            if topic.session_uuid not in seq.sessions:
                logger.warning("topic %s belongs to no known session; skipped", topic.locator)
                continue
            loaded.append(topic)
    for topic in sorted(loaded, key=lambda t: t.created_at_ns):
        seq.topics[topic.path] = topic
        seq.sessions[topic.session_uuid].topics.append(topic.path)
    return seq


def _load_topic(sequence: str, tdir: Path) -> TopicRecord:
    topic = catalog.load_topic(sequence, tdir)
    changed = False
    if topic.writing:
        logger.warning("topic %s was being written when the server stopped; recovering its data", topic.locator)
        for chunk in topic.chunks:
            chunk.validated = False  # its tail may be anything
        topic.writing = False
        topic.locked = False
        changed = True
    if any(not c.validated for c in topic.chunks):
        quarantine_invalid(topic)
        rescan(topic)
        changed = True
    if changed:
        topic.save()
    return topic


def quarantine_invalid(topic: TopicRecord) -> None:
    """Fully validate the chunks not validated yet; move the bad ones to ``quarantine/``.

    Each quarantined chunk gets a topic notification of type :data:`SERVER_NOTICE`.
    """
    kept = []
    for chunk in topic.chunks:
        path = topic.directory / chunk.file
        if chunk.validated or not path.exists():
            if path.exists():
                kept.append(chunk)
            continue
        reason = chunks.validate_chunk(path, topic.schema)
        if reason is None:
            chunk.validated = True
            kept.append(chunk)
            continue
        qdir = make_dir(topic.directory / catalog.QUARANTINE, exist_ok=True)
        os.replace(path, qdir / chunk.file)
        msg = f"chunk {chunk.file} failed validation at start-up and was quarantined, not served: {reason}"
        logger.error("topic %s: %s", topic.locator, msg)
        topic.notifications.append(notes.new_entry(topic.locator, notes.SERVER_NOTICE, msg))
        notes.save(topic.directory, topic.notifications)
    topic.chunks = kept


def rescan(topic: TopicRecord) -> None:
    """Recount rows, sizes, time bounds and order of every chunk from the files."""
    topic.row_count = 0
    topic.min_ts = topic.max_ts = None
    topic.ts_sorted = True
    for chunk in topic.chunks:
        path = topic.directory / chunk.file
        chunk.bytes = path.stat().st_size
        chunk.rows = 0
        chunk.sorted = True
        last = None
        for batch in chunks.iter_chunk_batches(path):
            if not batch.num_rows:
                continue
            ts = chunks.ts_array(batch)
            if chunk.sorted and (not chunks.is_sorted(ts) or (last is not None and int(ts[0]) < last)):
                chunk.sorted = False
            last = int(ts[-1])
            note_rows(topic, chunk, ts)


def note_rows(topic: TopicRecord, chunk: catalog.Chunk, ts) -> None:
    """Add the rows of one stored batch (timestamps ``ts``, int64 ns) to the statistics."""
    lo, hi = int(ts.min()), int(ts.max())
    if topic.ts_sorted and (not chunks.is_sorted(ts) or (topic.max_ts is not None and int(ts[0]) < topic.max_ts)):
        topic.ts_sorted = False
    chunk.rows += int(ts.size)
    topic.row_count += int(ts.size)
    topic.min_ts = lo if topic.min_ts is None else min(topic.min_ts, lo)
    topic.max_ts = hi if topic.max_ts is None else max(topic.max_ts, hi)


def note_interrupted_sessions(seq: SequenceRecord) -> None:
    """Notify each session of ``seq`` that is open with topics: a crash cut it."""
    for session in seq.sessions.values():
        if session.completed_at_ns is not None or not session.topics:
            continue
        topics = [seq.topics[p] for p in session.topics if p in seq.topics]
        rows = sum(t.row_count for t in topics)
        msg = (
            f"session {session.locator} was interrupted (the server or its writer stopped before "
            f"session_finalize); it kept {rows} rows in {len(topics)} topic(s)"
        )
        if any(n.get("msg") == msg for n in seq.notifications):
            continue
        logger.warning("sequence %s: %s", seq.locator, msg)
        seq.notifications.append(notes.new_entry(seq.locator, notes.SERVER_NOTICE, msg))
        try:
            notes.save(seq.directory, seq.notifications)
        except OSError as exc:
            logger.error("sequence %s: cannot store a notification: %s", seq.locator, exc.strerror)

