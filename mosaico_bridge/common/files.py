"""The one atomic-write helper of mosaico_bridge, and the file modes it uses.

A file is replaced atomically: the bytes go to a temporary file in the same folder
(``.<name>.<random>.tmp``), which is flushed and fsync'ed, then renamed over the target
with :func:`os.replace`, and the folder is fsync'ed so the rename survives a crash.
A reader therefore sees either the old or the new content, never a mix.

Modes: :data:`DATA_MODE` (0640) for data and metadata files, :data:`SECRET_MODE` (0600)
for secrets such as the API keys file, :data:`DIR_MODE` (0750) for folders. The modes
are set with :func:`os.chmod` after creation, so the process umask cannot widen them.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path
from typing import Any

#: Mode of data and metadata files (owner read/write, group read).
DATA_MODE = 0o640
#: Mode of files holding secrets (owner read/write only).
SECRET_MODE = 0o600
#: Mode of folders (owner all, group read/enter).
DIR_MODE = 0o750

#: Prefix of the temporary files made by :func:`atomic_write_bytes`.
TMP_PREFIX = "."
TMP_SUFFIX = ".tmp"


def fsync_dir(path: str | os.PathLike) -> None:
    """fsync a folder so that renames and creations in it are durable (best effort)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, mode: int = DATA_MODE) -> None:
    """Replace ``path`` with ``data`` atomically, with file mode ``mode``.

    Raises:
        OSError: if the folder cannot be written; the temporary file is removed then.
    """
    target = Path(path)
    tmp = target.with_name(f"{TMP_PREFIX}{target.name}.{os.getpid()}.{secrets.token_hex(4)}{TMP_SUFFIX}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(target.parent)


def atomic_write_json(path: str | os.PathLike, value: Any, mode: int = DATA_MODE) -> None:
    """:func:`atomic_write_bytes` of ``value`` as UTF-8 JSON (sorted keys; NaN/Infinity refused).

    Raises:
        ValueError: if ``value`` holds NaN or Infinity. TypeError: not JSON-serialisable.
        OSError: as :func:`atomic_write_bytes`.
    """
    data = json.dumps(value, indent=1, sort_keys=True, allow_nan=False).encode("utf-8")
    atomic_write_bytes(path, data, mode)


def make_dir(path: str | os.PathLike, mode: int = DIR_MODE, *, parents: bool = False, exist_ok: bool = False) -> Path:
    """Create a folder with mode ``mode`` (umask-proof); returns its path.

    Raises:
        FileExistsError: if it exists and not ``exist_ok``. OSError: cannot be created.
    """
    target = Path(path)
    if parents:
        for parent in reversed(target.parents):
            if not parent.exists():
                with contextlib.suppress(FileExistsError):
                    os.mkdir(parent, mode)
                    os.chmod(parent, mode)
    try:
        os.mkdir(target, mode)
    except FileExistsError:
        if not exist_ok or not target.is_dir():
            raise
        return target
    os.chmod(target, mode)
    return target
