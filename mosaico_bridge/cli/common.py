"""Pieces shared by the console scripts: metadata parsing, logging, one-line errors."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import yaml


class CliError(Exception):
    """An error reported as one line on standard error, with exit code ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def parse_metadata(value: str | None) -> dict[str, Any]:
    """``--metadata``: a JSON object, or the path of a JSON or YAML file holding one.

    Raises:
        CliError: naming the value if it is neither.
    """
    if not value:
        return {}
    text = value
    source = "--metadata"
    if not value.lstrip().startswith("{"):
        path = Path(value)
        if not path.is_file():
            raise CliError(f"--metadata: {value!r} is neither a JSON object nor an existing file", 2)
        text = path.read_text(encoding="utf-8")
        source = str(path)
    try:
        data = json.loads(text) if text.lstrip().startswith("{") else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise CliError(f"{source}: not valid JSON or YAML: {' '.join(str(exc).split())}", 2) from None
    if not isinstance(data, dict):
        raise CliError(f"{source}: metadata must be a JSON object / YAML mapping", 2)
    return data


def setup_logging(verbose: int) -> None:
    """Quiet by default (the command reports its own errors in one line); -v info, -vv debug."""
    level = logging.CRITICAL if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def fail(prog: str, message: str, code: int) -> int:
    """Print ``prog: error: message`` as one line on standard error; return ``code``."""
    print(f"{prog}: error: {' '.join(message.split())}", file=sys.stderr)
    return code


def env_default(name: str) -> str | None:
    return os.environ.get(name) or None


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"
