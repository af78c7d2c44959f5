"""``spool_upload`` can be run again after a partial failure (it resumes: topics already
uploaded are skipped, a topic half-written by the stopped run is sent again, nothing is
sent twice), and checks every sidecar before it creates anything. Separate processes;
the result is read back with the SDK ``mosaicolabs``."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import REPO, ServerProcess, free_port, run_cli
from spool_util import T0_NS, imu_batches, write_spool
from test_cli_interrupt import read_line

mosaicolabs = pytest.importorskip("mosaicolabs")

CLI = "mosaico_bridge.cli.spool_upload"


def stamps_of(port, sequence, topic):
    with mosaicolabs.MosaicoClient.connect("127.0.0.1", port) as sdk:
        th = sdk.topic_handler(sequence, topic)
        assert th is not None, f"no {sequence}{topic}"
        return [m.timestamp_ns for m in th.get_data_streamer()]


def test_rerun_after_the_server_was_lost_mid_upload(tmp_path):
    conv, small = imu_batches(3, 100)
    _conv, big = imu_batches(8000, 1)  # one row per batch: seconds to send
    spool = tmp_path / "spool"
    write_spool(spool, "lost", "01SESSION", {"a/imu": small, "b/imu": big}, conv)
    root, port = tmp_path / "srv", free_port()
    server = ServerProcess(root, port=port)
    try:
        up = subprocess.Popen([sys.executable, "-m", CLI, str(spool), "--host", "127.0.0.1", "--port", str(port)],
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        read_line(up, "lost/a/imu_recovered: 300 rows uploaded")
        server.proc.kill()  # lost again while /b/imu is being sent
        server.proc.wait(timeout=30)
        _out, err = up.communicate(timeout=120)
        assert up.returncode == 1, err
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("spool_upload: error: ") and "run spool_upload again" in lines[0]
        assert (spool / "lost" / "01SESSION" / "b" / "imu.arrows").exists()  # kept for the next run

        server = ServerProcess(root, port=port)
        again = run_cli(CLI, str(spool), "--host", "127.0.0.1", "--port", str(port))
        assert again.returncode == 0, again.stderr
        assert "lost/a/imu_recovered: already uploaded (300 rows), skipped" in again.stdout
        assert "lost/b/imu_recovered: 8000 rows uploaded" in again.stdout
        assert not (spool / "lost" / "01SESSION").exists()
        # each topic once, complete, in order
        assert stamps_of(port, "lost", "/a/imu_recovered") == [T0_NS + i * 1_000_000 for i in range(300)]
        assert stamps_of(port, "lost", "/b/imu_recovered") == [T0_NS + i * 1_000_000 for i in range(8000)]
        with mosaicolabs.MosaicoClient.connect("127.0.0.1", port) as sdk:
            seq = sdk.sequence_handler("lost")
            assert sorted(seq.topics) == ["/a/imu_recovered", "/b/imu_recovered"]
            assert all(s.completed_timestamp is not None for s in seq.sessions)
            assert sdk.topic_handler("lost", "/a/imu_recovered").user_metadata["robot"] == "r1"
    finally:
        server.stop()


def test_keep_then_run_again_sends_nothing_twice(tmp_path, server):
    conv, batches = imu_batches(2, 50)
    spool = tmp_path / "spool"
    write_spool(spool, "seq", "01A", {"imu": batches}, conv)
    args = [CLI, str(spool), "--host", "127.0.0.1", "--port", str(server.port), "--keep"]
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    assert "seq/imu_recovered: 100 rows uploaded" in first.stdout
    second = run_cli(*args)
    assert second.returncode == 0, second.stderr
    assert "seq/imu_recovered: already uploaded (100 rows), skipped" in second.stdout
    # a run that stopped after the upload but before recording it: found complete on the server
    (spool / "seq" / "01A" / ".upload.json").unlink()
    third = run_cli(*args)
    assert third.returncode == 0, third.stderr
    assert "seq/imu_recovered: 100 rows already on the server, recorded" in third.stdout
    assert len(stamps_of(server.port, "seq", "/imu_recovered")) == 100


def _bad_sidecar(path):
    path.write_text("{not json")


def _no_sidecar(path):
    path.unlink()


def _no_tag(path):
    d = json.loads(path.read_text())
    del d["ontology_tag"]
    path.write_text(json.dumps(d))


def _other_sequence(path):
    d = json.loads(path.read_text())
    d["resource_locator"] = "elsewhere/b"
    path.write_text(json.dumps(d))


def _bad_format(path):
    d = json.loads(path.read_text())
    d["serialization_format"] = "zip"
    path.write_text(json.dumps(d))


def _garbage_arrows(path):
    path.with_suffix(".arrows").write_bytes(b"not arrow at all")


@pytest.mark.parametrize("breaker, words", [
    (_bad_sidecar, ["b.json", "unreadable sidecar"]),
    (_no_sidecar, ["b.json", "sidecar missing"]),
    (_no_tag, ["b.json", "ontology_tag"]),
    (_other_sequence, ["b.json", "elsewhere/b", "not in sequence 'seq'"]),
    (_bad_format, ["b.json", "serialization_format 'zip'"]),
    (_garbage_arrows, ["b.arrows", "not an Arrow IPC stream"]),
])
def test_broken_spool_file_creates_nothing(tmp_path, server, client, breaker, words):
    conv, batches = imu_batches(1, 10)
    spool = tmp_path / "spool"
    write_spool(spool, "seq", "01A", {"a": batches, "b": batches}, conv)
    breaker(spool / "seq" / "01A" / "b.json")
    proc = run_cli(CLI, str(spool), "--host", "127.0.0.1", "--port", str(server.port))
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("spool_upload: error: "), proc.stderr
    for word in words:
        assert word in lines[0], lines[0]
    assert client.list_sequences() == []  # checked before anything was created
    assert (spool / "seq" / "01A" / "a.arrows").exists()


def test_incomplete_last_batch_is_left_out(tmp_path, server):
    """A bridge killed while writing a batch leaves a partial one at the end of the file."""
    conv, batches = imu_batches(3, 40)
    spool = tmp_path / "spool"
    write_spool(spool, "seq", "01A", {"imu": batches}, conv)
    arrows = spool / "seq" / "01A" / "imu.arrows"
    data = arrows.read_bytes()
    arrows.write_bytes(data[: len(data) - 300])
    proc = run_cli(CLI, str(spool), "--host", "127.0.0.1", "--port", str(server.port))
    assert proc.returncode == 0, proc.stderr
    assert "seq/imu_recovered: 80 rows uploaded (the file ends in an incomplete record batch, left out)" in proc.stdout
    assert stamps_of(server.port, "seq", "/imu_recovered") == [T0_NS + i * 1_000_000 for i in range(80)]
