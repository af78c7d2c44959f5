"""``bag_import`` refuses metadata JSON cannot carry and stores it cannot read with one
line on standard error and exit 2, before anything is created (separate processes)."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli
from test_bag_import_cli import CLI, imu_bag, one_error_line


def nested(depth: int) -> dict:
    """An object nesting ``depth`` levels: {"a": {"a": ... {"a": 1}}}."""
    value: object = 1
    for _ in range(depth):
        value = {"a": value}
    return value  # type: ignore[return-value]


@pytest.mark.parametrize(
    "name, text, words",
    [
        ("date.yaml", "recorded: 2024-05-01\n", ["recorded", "2024-05-01", "date"]),
        ("stamp.yaml", "at: 2024-05-01 10:00:00\n", ["at", "date"]),
        ("blob.yaml", "blob: !!binary aGVsbG8=\n", ["blob", "binary"]),
        ("nan.yaml", "gain: .nan\n", ["gain", "nan"]),
        ("key.yaml", "1: one\n", ["key 1", "not a string"]),
        ("nan.json", '{"gain": NaN}', ["NaN"]),
        ("inf.json", '{"gain": [1, -Infinity]}', ["-Infinity"]),
        ("deep.json", '{"a":' * 5000 + "1" + "}" * 5000, ["nests deeper than"]),  # RecursionError in json
        ("deep100.json", json.dumps(nested(100)), ["nests deeper than"]),  # was refused by the server, exit 1
    ],
)
def test_metadata_json_cannot_carry(tmp_path, name, text, words):
    bag = imu_bag(tmp_path / "imu", count=5)
    meta = tmp_path / name
    meta.write_text(text)
    root = tmp_path / "r"
    proc = run_cli(CLI, str(bag), "--sequence", "s", "--root", str(root), "--metadata", str(meta))
    assert proc.returncode == 2, proc.stderr
    line = one_error_line(proc)
    assert str(meta) in line
    for word in words:
        assert word in line, line
    assert not root.exists()  # refused before the store was touched


def test_metadata_inline_infinity(tmp_path):
    bag = imu_bag(tmp_path / "imu", count=5)
    proc = run_cli(CLI, str(bag), "--sequence", "s", "--root", str(tmp_path / "r"), "--metadata", '{"x": Infinity}')
    assert proc.returncode == 2
    assert "--metadata: Infinity" in one_error_line(proc)


def test_metadata_at_the_depth_limit_is_stored(tmp_path):
    """The deepest metadata accepted goes through the server and comes back equal."""
    from mosaico_bridge.cli.common import METADATA_MAX_DEPTH
    from mosaico_bridge.client import MosaicoClient
    from mosaico_bridge.server import MosaicoServer

    bag = imu_bag(tmp_path / "imu", count=5)
    meta = tmp_path / "deep.json"
    meta.write_text(json.dumps(nested(METADATA_MAX_DEPTH)))
    root = tmp_path / "r"
    proc = run_cli(CLI, str(bag), "--sequence", "s", "--root", str(root), "--metadata", str(meta))
    assert proc.returncode == 0, proc.stderr
    with MosaicoServer.start_background(root, host="127.0.0.1", port=0) as srv, \
            MosaicoClient.connect("127.0.0.1", srv.port) as c:
        assert c.sequence_handler("s").user_metadata == nested(METADATA_MAX_DEPTH)


@pytest.mark.parametrize(
    "marker, words",
    [
        (b"garbage", ["MOSAICO_STORE", "not a store marker"]),
        (b"\xff\xfe", ["MOSAICO_STORE", "not a store marker"]),
        (b"[1]", ["MOSAICO_STORE", "not a store marker"]),
        (b'{"format": "one"}', ["MOSAICO_STORE", "no valid store format"]),
        (b'{"format": 99}', ["format 99", "newer"]),
    ],
)
def test_store_marker_unreadable_or_newer(tmp_path, marker, words):
    bag = imu_bag(tmp_path / "imu", count=5)
    root = tmp_path / "r"
    root.mkdir()
    (root / "MOSAICO_STORE").write_bytes(marker)
    proc = run_cli(CLI, str(bag), "--sequence", "s", "--root", str(root))
    assert proc.returncode == 2, proc.stderr
    line = one_error_line(proc)
    assert str(root) in line
    for word in words:
        assert word in line, line
    assert sorted(p.name for p in root.iterdir()) == ["MOSAICO_STORE"]  # nothing written beside it
    assert (root / "MOSAICO_STORE").read_bytes() == marker


def test_root_is_a_file(tmp_path):
    bag = imu_bag(tmp_path / "imu", count=5)
    (tmp_path / "r").write_text("x")
    proc = run_cli(CLI, str(bag), "--sequence", "s", "--root", str(tmp_path / "r"))
    assert proc.returncode == 2
    assert "not a directory" in one_error_line(proc)
