"""Local spool: where a topic writer puts record batches the server can no longer take.

When a DoPut stream fails (server lost, key revoked) a writer with a spool keeps
accepting messages, converts them as usual and appends the record batches to a local
Arrow IPC stream file instead, so no message already received is lost. Layout::

    <root>/<sequence>/<session id>/<topic path>.arrows   Arrow IPC stream (the topic schema)
    <root>/<sequence>/<session id>/<topic path>.json     locator, ontology tag, serialization
                                                         format, user metadata, first error

Read a spooled topic back with ``pyarrow.ipc.open_stream(path).read_all()``.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa


class SpoolFile:
    """One topic's spool file; opened on the first batch. Thread-safe."""

    def __init__(self, path: Path, schema: pa.Schema, sidecar: Mapping[str, Any]) -> None:
        self.path = path
        self.schema = schema
        self._sidecar = dict(sidecar)
        self._lock = threading.Lock()
        self._sink: Any | None = None
        self._writer: pa.ipc.RecordBatchStreamWriter | None = None
        self.rows = 0

    def write(self, batch: pa.RecordBatch, reason: str) -> None:
        """Append ``batch``; ``reason`` (the first error) goes into the sidecar.

        Raises:
            OSError: if the file cannot be written.
        """
        with self._lock:
            if self._writer is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                sidecar = {**self._sidecar, "reason": reason}
                tmp = self.path.with_suffix(".json.tmp")
                tmp.write_text(json.dumps(sidecar, indent=1), encoding="utf-8")
                os.replace(tmp, self.path.with_suffix(".json"))
                self._sink = open(self.path, "ab")  # noqa: SIM115 - stays open across batches; closed in close()
                self._writer = pa.ipc.new_stream(self._sink, self.schema)
            assert self._sink is not None
            self._writer.write_batch(batch)
            self._sink.flush()
            self.rows += batch.num_rows

    def close(self) -> None:
        with self._lock:
            if self._writer is not None and self._sink is not None:
                self._writer.close()
                self._sink.close()
                self._writer = self._sink = None


class Spool:
    """A spool directory. ``root`` is created on first use."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def topic(
        self,
        sequence: str,
        session_locator: str,
        topic_path: str,
        schema: pa.Schema,
        sidecar: Mapping[str, Any],
    ) -> SpoolFile:
        """The spool file of one topic of one session (not created until written)."""
        session_id = session_locator.rpartition(":")[2] or "session"
        return SpoolFile(self.root / sequence / session_id / f"{topic_path}.arrows", schema, sidecar)
