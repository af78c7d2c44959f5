"""What a sequence writer needs from its client: the connections, the executor pool, the
memory budget and the IPC options of DoPut bodies, as one small object.

:class:`~mosaico_bridge.client.MosaicoClient` builds one at connect and hands it to every
:class:`~mosaico_bridge.client.SequenceWriter`; the writer never reaches into the client.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
from pyarrow import flight

from .budget import InflightBudget
from .control import ControlConnection
from .data import ConnectionPool
from .processing import ExecutorPool

#: Compressions of DoPut IPC bodies (``pyarrow.ipc.IpcWriteOptions(compression=...)``).
#: The default is ``none``: camera frames (the bulk of live data) barely compress (a noisy
#: 1080p rgb8 frame: lz4 1.00, zstd 0.97 of its size) while costing 4-11 ms of CPU per frame,
#: and on loopback or a LAN the bridge is bound by CPU, not by bandwidth. Choose lz4/zstd
#: for slow links and compressible data (point clouds of zeros, text, small messages).
COMPRESSIONS = ("none", "lz4", "zstd")


def check_compression(compression: str) -> str:
    """``compression`` lower-cased.

    Raises:
        ValueError: not one of :data:`COMPRESSIONS`.
    """
    value = str(compression).strip().lower()
    if value not in COMPRESSIONS:
        raise ValueError(f"compression must be one of {', '.join(COMPRESSIONS)}, got {compression!r}")
    return value


def put_options(compression: str) -> flight.FlightCallOptions | None:
    """Flight call options of a DoPut whose IPC bodies use ``compression`` (None for ``none``)."""
    value = check_compression(compression)
    if value == "none":
        return None
    return flight.FlightCallOptions(write_options=pa.ipc.IpcWriteOptions(compression=value))


@dataclass(frozen=True)
class Transport:
    """Control connection, data connection pool, executor pool and memory budget of one client."""

    control: ControlConnection
    pool: ConnectionPool
    processing: ExecutorPool
    budget: InflightBudget
    compression: str = "none"
