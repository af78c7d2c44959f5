"""Processes for the ROS tests: the bridge node, and ros_agent.py helpers spoken to in JSON lines.

Every process gets ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` and the test run's
``ROS_DOMAIN_ID`` (shared/docs/ros2-from-pypi.md §2), and is stopped by its PID.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
AGENT = Path(__file__).resolve().parent / "ros_procs" / "ros_agent.py"


def ros_env(domain_id: int) -> dict:
    env = dict(os.environ)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env["ROS_DOMAIN_ID"] = str(domain_id)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("RCUTILS_COLORIZED_OUTPUT", "0")
    return env


class Agent:
    """A ros_agent.py process."""

    def __init__(self, domain_id: int, log_path: Path, dds_profile: Path | None = None) -> None:
        """``dds_profile``: a Fast DDS XML profile for this process (FASTDDS_DEFAULT_PROFILES_FILE)."""
        self._log = open(log_path, "w")
        env = ros_env(domain_id)
        if dds_profile is not None:
            env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(dds_profile)
        self.proc = subprocess.Popen(
            [sys.executable, str(AGENT)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
            text=True, env=env, cwd=REPO,
        )
        self._lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        assert self._next(60).get("ready"), "ros_agent did not start"

    def _read(self) -> None:
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _next(self, timeout: float) -> dict:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"ros_agent gave no answer within {timeout} s") from None
        if line is None:
            raise RuntimeError(f"ros_agent exited with {self.proc.wait()}")
        return json.loads(line)

    def start(self, cmd: str, **kw) -> None:
        """Send a command without waiting for its answer (get it with :meth:`result`)."""
        self._pending = cmd
        self.proc.stdin.write(json.dumps({"cmd": cmd, **kw}) + "\n")
        self.proc.stdin.flush()

    def result(self, timeout: float = 120) -> dict:
        out = self._next(timeout)
        if "error" in out:
            raise RuntimeError(f"ros_agent {self._pending}: {out['error']}")
        return out

    def ask(self, cmd: str, timeout: float = 120, **kw) -> dict:
        self.start(cmd, **kw)
        return self.result(timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.ask("quit", timeout=10)
                self.proc.wait(timeout=10)
            except Exception:  # noqa: BLE001
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()


class BridgeProcess:
    """``python -m mosaico_bridge.node`` with parameters; stderr+stdout go to a log file."""

    def __init__(self, domain_id: int, log_path: Path, params: dict, name: str = "mosaico_bridge",
                 wrapper: list[str] | tuple[str, ...] = ()) -> None:
        """``wrapper``: a command the node runs under (``setpriv ...``), default none."""
        args = [*wrapper, sys.executable, "-m", "mosaico_bridge.node", "--ros-args", "-r", f"__node:={name}"]
        for key, value in params.items():
            if isinstance(value, list):
                value = "[" + ",".join(json.dumps(v) for v in value) + "]"
            elif isinstance(value, str):
                value = json.dumps(value) if (value.startswith("{") or value == "") else value
            args += ["-p", f"{key}:={value}"]
        self.log_path = log_path
        self._log = open(log_path, "w")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=ros_env(domain_id), cwd=REPO)
        self.node = f"/{name}"

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_log(self, pattern: str, timeout: float = 30) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(pattern, self.log())
            if m:
                return m
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise TimeoutError(f"{pattern!r} not in the bridge log within {timeout} s:\n{self.log()[-3000:]}")

    def counters(self) -> list[dict]:
        """Every 'counters {...}' line the node logged, in order."""
        return [json.loads(m) for m in re.findall(r"counters (\{.*\})", self.log())]

    def signal(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()
