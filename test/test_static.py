"""Static checks run by the test command: ruff on the whole tree, ``mypy --strict`` on
protocol/ and client/, plain mypy on the rest of the package."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO


def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)


def test_ruff_clean():
    proc = _run(sys.executable, "-m", "ruff", "check", "mosaico_bridge", "test", "bench", "launch")
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]


def test_mypy_strict_on_protocol_and_client():
    proc = _run(sys.executable, "-m", "mypy", "--strict", "mosaico_bridge/protocol", "mosaico_bridge/client")
    assert proc.returncode == 0, proc.stdout[-5000:]


def test_mypy_on_the_package():
    proc = _run(sys.executable, "-m", "mypy", "mosaico_bridge")
    assert proc.returncode == 0, proc.stdout[-5000:]
