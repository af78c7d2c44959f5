"""The store's per-chunk compression choice: compressible data is compressed, noise is not,
and both read back equal."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from mosaico_bridge.server import chunks


def _batch(payload: bytes) -> pa.RecordBatch:
    return pa.record_batch(
        [pa.array([1, 2], pa.int64()), pa.array([payload, payload[::-1]], pa.binary())],
        names=["timestamp_ns", "data"],
    )


@pytest.mark.parametrize("codec", ["lz4", "zstd"])
def test_noise_stored_uncompressed_and_gradient_compressed(tmp_path, codec):
    noise = np.random.default_rng(3).integers(0, 256, 1_000_000, dtype=np.uint8).tobytes()
    gradient = (np.arange(1_000_000) // 4096 % 256).astype(np.uint8).tobytes()
    sizes = {}
    for name, payload in (("noise", noise), ("gradient", gradient)):
        batch = _batch(payload)
        w = chunks.ChunkWriter(tmp_path / f"{name}.arrow", batch.schema, codec)
        w.write(batch)
        sizes[name] = w.close()
        assert w.compression == ("none" if name == "noise" else codec)
        back = list(chunks.iter_chunk_batches(tmp_path / f"{name}.arrow"))
        assert len(back) == 1 and back[0].equals(batch)
    assert sizes["gradient"] < len(gradient) // 4  # compressed
    assert sizes["noise"] > 2 * len(noise)  # both rows, as they are


def test_empty_chunk_is_a_readable_stream(tmp_path):
    schema = _batch(b"x").schema
    w = chunks.ChunkWriter(tmp_path / "empty.arrow", schema, "lz4")
    w.close()
    with pa.ipc.open_stream(pa.memory_map(str(tmp_path / "empty.arrow"))) as reader:
        assert reader.schema.equals(schema)
        assert list(reader) == []
