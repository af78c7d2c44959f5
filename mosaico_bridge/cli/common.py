"""Pieces shared by the console scripts: metadata parsing, logging, one-line errors,
and SIGINT / SIGTERM as a request to stop."""

from __future__ import annotations

import datetime
import json
import logging
import math
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from ..protocol.messages import MAX_JSON_DEPTH

if TYPE_CHECKING:
    from typing import Self


class CliError(Exception):
    """An error reported as one line on standard error, with exit code ``code``;
    ``prog: error: message``, or ``prog: message`` when ``prefix`` is False."""

    def __init__(self, message: str, code: int = 1, prefix: bool = True) -> None:
        super().__init__(message)
        self.code = code
        self.prefix = prefix


def parse_metadata(value: str | None) -> dict[str, Any]:
    """``--metadata``: a JSON object, or the path of a JSON or YAML file holding one.

    The result is checked to be plain JSON (see :func:`check_json_value`), so that what
    the server stores is exactly what was given.

    Raises:
        CliError (exit 2): naming the value or file and, for a bad value, where it is.
    """
    if not value:
        return {}
    text = value
    source = "--metadata"
    if not value.lstrip().startswith("{"):
        path = Path(value)
        if not path.is_file():
            raise CliError(f"--metadata: {value!r} is neither a JSON object nor an existing file", 2)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CliError(f"--metadata {path}: cannot read: {exc}", 2) from None
        source = f"--metadata {path}"
    try:
        if text.lstrip().startswith("{"):
            data = json.loads(text, parse_constant=_refuse_json_constant)
        else:
            import yaml  # YAML metadata only: the import costs ~8 ms of every start

            try:
                data = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise _BadText(exc) from None
    except (json.JSONDecodeError, _BadText) as exc:
        raise CliError(f"{source}: not valid JSON or YAML: {' '.join(str(exc).split())}", 2) from None
    except _NotJson as exc:
        raise CliError(f"{source}: {exc}", 2) from None
    except RecursionError:
        raise CliError(f"{source}: nests deeper than {METADATA_MAX_DEPTH} levels", 2) from None
    if not isinstance(data, dict):
        raise CliError(f"{source}: metadata must be a JSON object / YAML mapping", 2)
    try:
        check_json_value(data, METADATA_MAX_DEPTH)
    except _NotJson as exc:
        raise CliError(f"{source}: {exc}", 2) from None
    return data


#: Deepest nesting of objects / arrays in metadata: a body may nest MAX_JSON_DEPTH
#: levels counting its scalars (protocol/messages.py), and the sequence_create body puts
#: the metadata one level below its top.
METADATA_MAX_DEPTH = MAX_JSON_DEPTH - 2


class _BadText(ValueError):
    """A YAML parse error, carried out of the branch that imported yaml."""


class _NotJson(Exception):
    """A metadata value that JSON cannot carry as given."""


def _refuse_json_constant(name: str) -> Any:
    raise _NotJson(f"{name} is not a JSON number (give a string or null)")


def check_json_value(value: Any, max_depth: int) -> None:
    """Check that ``value`` is plain JSON: objects with string keys, arrays, strings,
    finite numbers, booleans and null, nested at most ``max_depth`` levels.

    Raises:
        _NotJson: naming the first offending place (``a.b[2]``) and what is there, e.g. a
            YAML date or ``!!binary`` value, NaN or Infinity, a non-string key.
    """
    stack: list[tuple[Any, str, int]] = [(value, "", 1)]
    while stack:
        item, where, depth = stack.pop()
        at = f" at {where if len(where) <= 60 else '...' + where[-57:]}" if where else ""
        if depth > max_depth and isinstance(item, (dict, list)):
            raise _NotJson(f"nests deeper than {max_depth} levels{at}")
        if isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str):
                    raise _NotJson(f"key {key!r}{at} is a {type(key).__name__}, not a string (quote it)")
                stack.append((child, f"{where}.{key}" if where else key, depth + 1))
        elif isinstance(item, list):
            stack.extend((child, f"{where}[{i}]", depth + 1) for i, child in enumerate(item))
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise _NotJson(f"{item!r}{at} is not a JSON number (give a string or null)")
        elif isinstance(item, (datetime.date, datetime.datetime)):
            raise _NotJson(f"{item.isoformat()}{at} is a YAML date/time, not JSON (quote it to keep it as text)")
        elif isinstance(item, (bytes, bytearray)):
            raise _NotJson(f"the value{at} is binary data (!!binary), which JSON cannot carry")
        elif item is not None and not isinstance(item, (str, int, bool)):
            raise _NotJson(f"the value{at} is a {type(item).__name__}, which JSON cannot carry")


class Interrupted(Exception):
    """The command was asked to stop by a signal (SIGINT: Ctrl-C; SIGTERM: ``timeout``,
    CI cancellation, ``docker stop``). ``exit_code`` is the shell convention 128 + signal number."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.signal_name = signal.Signals(signum).name
        super().__init__(f"interrupted by {self.signal_name}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class StopSignals:
    """SIGINT and SIGTERM turned into a stop request that the work loop checks.

    Inside ``with``, the first of the two signals is recorded (:attr:`signum`) and
    :meth:`check` raises :class:`Interrupted` from then on, so the command can stop
    reading, apply its on-error policy while its connections (and an embedded server)
    are still up, and say what it did. A second signal ends the process at once with
    exit code 128 + signal number, after ``on_force`` printed its line. Outside the main
    thread (signals can only be handled there) the object only records nothing.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, on_force: Callable[[int], None] | None = None) -> None:
        self.signum: int | None = None
        self._on_force = on_force
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> Self:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
            return
        if self._on_force is not None:
            self._on_force(signum)
        os._exit(128 + signum)

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def check(self) -> None:
        """Raise :class:`Interrupted` if a stop signal arrived."""
        if self.signum is not None:
            raise Interrupted(self.signum)


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
