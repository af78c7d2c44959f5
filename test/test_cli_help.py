"""``--help`` of the console scripts gives examples and the exit codes; long work shows
progress (a bar on a terminal, a line per tenth in a log or pipe)."""

from __future__ import annotations

import re

import pytest
from conftest import run_cli
from test_bag_import_cli import imu_bag


@pytest.mark.parametrize("module, options", [
    ("mosaico_bridge.cli.bag_import", ["--dry-run", "--timestamp", "--on-error", "--metadata", "--root"]),
    ("mosaico_bridge.cli.spool_upload", ["--host", "--keep", "--timeout"]),
])
def test_help_has_examples_and_exit_codes(module, options):
    proc = run_cli(module, "--help")
    assert proc.returncode == 0 and proc.stderr == ""
    text = proc.stdout
    assert "examples:" in text
    prog = module.rsplit(".", 1)[1]
    assert len(re.findall(rf"^  {prog} \S", text, re.MULTILINE)) >= 2  # at least two example command lines
    assert re.search(r"exit status", text, re.IGNORECASE)
    for code in ("0", "1", "2", "130", "143"):
        assert re.search(rf"\b{code}\b", text.split("xit status", 1)[1]), code
    for opt in options:
        assert opt in text


def test_progress_lines_when_not_a_terminal(tmp_path):
    bag = imu_bag(tmp_path / "imu", count=3000)
    proc = run_cli("mosaico_bridge.cli.bag_import", str(bag), "--sequence", "s", "--root", str(tmp_path / "r"))
    assert proc.returncode == 0, proc.stderr
    lines = re.findall(r"^read (\d+)/3000 messages \((\d+) %\)$", proc.stdout, re.MULTILINE)
    assert len(lines) >= 5
    counts = [int(n) for n, _pct in lines]
    assert counts == sorted(counts) and counts[-1] == 3000
    assert all(int(p) == 100 * int(n) // 3000 for n, p in lines)
    quiet = run_cli("mosaico_bridge.cli.bag_import", str(bag), "--sequence", "q", "--root", str(tmp_path / "r"),
                    "--no-progress")
    assert quiet.returncode == 0 and "read " not in quiet.stdout
