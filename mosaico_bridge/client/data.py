"""Data layer: a pool of Flight connections, topic DoPut streams striped round-robin.

Each :class:`DataConnection` owns one Flight client and one writer thread. A topic is
bound to one connection when it is created (round-robin over the pool), and every
write and the close of its DoPut stream run on that connection's thread, in the order
they were submitted: record batches of a topic reach the server in order, while
different topics upload in parallel on different connections (the client design's
data layer, ``docs/client.md``).

When the server runs in the client's own process (the embedded server), a pool may be
given it as ``in_process``: DoPut streams then go to its ``open_local_put`` instead of
Flight, still on the connection's thread and in the same order (``docs/protocol.md``
§ In-process data path).
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

import pyarrow as pa
from pyarrow import flight

from ..common.threads import check_nice, worker_initializer
from ..protocol.descriptors import doput_descriptor
from .errors import translate
from .security import SecurityConfig

log = logging.getLogger("mosaico_bridge.client")
T = TypeVar("T")

#: Default number of data connections.
DEFAULT_DATA_CONNECTIONS = 4


class LocalPutTarget(Protocol):
    """A server in this process that takes DoPut streams without Flight."""

    def open_local_put(self, topic_locator: str, topic_uuid: str, schema: pa.Schema) -> Any:
        """A stream with ``write_batch``, ``done_writing``, ``close`` and ``read`` (the
        PutAck bytes, None at the end), raising what a Flight DoPut would."""


class DataConnection:
    """One Flight client of the pool and the thread that writes on it."""

    def __init__(self, index: int, client: flight.FlightClient, in_process: LocalPutTarget | None = None,
                 nice: int = 0) -> None:
        self.index = index
        self.client = client
        self._in_process = in_process
        # Raised by ``nice``: this thread encodes and sends the batches, and with the
        # embedded server it also writes them to the store.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"mosaico-data-{index}",
                                          initializer=worker_initializer(nice))

    def submit(self, fn: Callable[..., T], *args: object) -> Future[T]:
        """Run ``fn(*args)`` on this connection's writer thread, after everything submitted before."""
        return self._thread.submit(fn, *args)

    def warm(self) -> None:
        """Start the writer thread now rather than on the first batch."""
        self._thread.submit(lambda: None).result()

    def open_put(
        self, topic_locator: str, topic_uuid: str, schema: pa.Schema,
        options: flight.FlightCallOptions | None = None,
    ) -> tuple[flight.FlightStreamWriter, flight.FlightMetadataReader]:
        """Open the DoPut stream of one topic (``docs/protocol.md`` § DoPut); ``options``
        may carry IPC write options (body compression).

        Raises:
            ServerRefusedError, ConnectionError: if the server refuses or is unreachable.
        """
        try:
            if self._in_process is not None:
                stream = self._in_process.open_local_put(topic_locator, topic_uuid, schema)
                return stream, stream
            writer, reader = self.client.do_put(doput_descriptor(topic_locator, topic_uuid), schema, options=options)
            return writer, reader
        except (flight.FlightError, pa.ArrowException, OSError) as exc:
            raise translate("DoPut", exc) from None

    def close(self) -> None:
        self._thread.shutdown(wait=True)
        self.client.close()


class ConnectionPool:
    """``size`` data connections to one server, handed out round-robin; their writer
    threads' nice value is raised by ``nice`` (0..19).

    Raises:
        ValueError: if ``size`` < 1 or ``nice`` is outside 0..19.
    """

    def __init__(
        self, host: str, port: int, security: SecurityConfig, size: int = DEFAULT_DATA_CONNECTIONS,
        in_process: LocalPutTarget | None = None, nice: int = 0,
    ) -> None:
        if size < 1:
            raise ValueError(f"data_connections must be >= 1, got {size}")
        check_nice(nice)
        self.connections = [
            DataConnection(i, security.new_flight_client(host, port), in_process, nice) for i in range(size)
        ]
        self._next = itertools.cycle(self.connections)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.connections)

    def next(self) -> DataConnection:
        """The connection for the next topic (round-robin, thread-safe)."""
        with self._lock:
            return next(self._next)

    def close(self) -> None:
        for conn in self.connections:
            conn.close()
