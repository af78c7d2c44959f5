"""``spool_upload``: send what a bridge spooled locally (server lost, key revoked) to a
Mosaico server, once it is reachable again.

Each spooled topic ``<spool>/<sequence>/<session>/<topic path>.arrows`` (with its JSON
sidecar) becomes the topic ``<topic>_recovered`` of ``<sequence>`` (created if the
server does not have it), written in a session of its own. It keeps its ontology tag,
serialization format, metadata and schema; the suffix is needed because a topic name is
used once per sequence and the failed session already holds the topic.

Every sidecar and Arrow file is checked before anything is created. Progress is
recorded in ``<spool>/<sequence>/<session>/.upload.json``, so a run that stopped half-way
(server lost again, Ctrl-C) can simply be started again: topics already uploaded are
skipped, a topic left half-written by the stopped run is deleted and sent again.
Uploaded sessions are removed from the spool unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from .. import __version__
from ..client import MosaicoClient, MosaicoError, SessionLevelErrorPolicy
from ..common.imports import keep_pandas_out
from ..embedded import ServerConfig, connect_or_embed
from ..protocol import auth, names
from ..protocol.descriptors import TIMESTAMP_FIELD
from ..protocol.errors import InvalidArgumentError
from ..protocol.messages import SERIALIZATION_FORMATS
from .common import CliError, Interrupted, StopSignals, env_default, fail, setup_logging

PROG = "spool_upload"
SUFFIX = "_recovered"
#: Progress record of one spooled session (a name no topic path can have: it starts with a dot).
PROGRESS_FILE = ".upload.json"

EPILOG = f"""\
examples:
  {PROG} ./mosaico_spool --host mosaico.local
  {PROG} /var/lib/bridge/spool --host 10.0.0.5 --port 6726 --tls-cert ca.pem --keep

Run it again after a failure: topics already uploaded are skipped.
Exit status: 0 on success (or nothing to upload), 1 when the server failed or refused,
2 on bad input (missing spool, unreadable sidecar or Arrow file), 130/143 when stopped
by SIGINT/SIGTERM (the topic being sent is deleted; run again to finish).
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, description=__doc__.split("\n\n")[0].replace("``", "'"), epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("spool", metavar="SPOOL_DIR", help="the bridge's spool_dir (default of the node: ./mosaico_spool)")
    p.add_argument("--host", required=True, metavar="H", help="Mosaico server host")
    p.add_argument("--port", type=int, default=names.DEFAULT_PORT, metavar="P",
                   help=f"Mosaico server port (default {names.DEFAULT_PORT})")
    p.add_argument("--api-key", metavar="K", default=env_default(auth.ENV_API_KEY),
                   help=f"API key with Write permission (default: ${auth.ENV_API_KEY})")
    p.add_argument("--tls-cert", metavar="PATH", default=env_default(auth.ENV_TLS_CERT_FILE),
                   help=f"CA certificate (PEM) to trust (default: ${auth.ENV_TLS_CERT_FILE})")
    p.add_argument("--timeout", type=float, default=5.0, metavar="S", help="connect timeout in seconds (default 5)")
    p.add_argument("--keep", action="store_true", help="keep the spool files after a successful upload")
    p.add_argument("-v", "--verbose", action="count", default=0, help="log more (-v info, -vv debug)")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return p


@dataclass
class SpooledTopic:
    """One spooled topic, checked: its files, where it goes, and how many rows it holds."""

    arrows: Path
    key: str  # path of the .arrows file relative to its session directory
    sequence: str
    topic: str  # the target topic name, with leading '/' and the suffix
    ontology_tag: str
    serialization_format: str
    user_metadata: dict[str, Any]
    schema: pa.Schema
    rows: int
    batches: int
    truncated: bool  # the file ends in an incomplete record batch (writer stopped mid-write)


def check_topic(session_dir: Path, arrows: Path) -> SpooledTopic:
    """Read and check one spooled topic (sidecar fields, Arrow schema, every batch).

    Raises:
        CliError (exit 2): naming the file and what is wrong with it.
    """
    sidecar_path = arrows.with_suffix(".json")
    sequence = session_dir.parent.name
    try:
        sidecar = json.loads(sidecar_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CliError(f"{sidecar_path}: sidecar missing (every .arrows file has one)", 2) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise CliError(f"{sidecar_path}: unreadable sidecar: {exc}", 2) from None
    if not isinstance(sidecar, dict):
        raise CliError(f"{sidecar_path}: unreadable sidecar: not a JSON object", 2)

    def field(name: str, kind: type, default: Any = None) -> Any:
        value = sidecar.get(name, default)
        if not isinstance(value, kind):
            raise CliError(f"{sidecar_path}: field {name!r} must be a {kind.__name__}, got {value!r}", 2)
        return value

    locator = field("resource_locator", str)
    try:
        seq, path = names.split_topic_locator(locator)
        names.validate_topic_name("/" + path + SUFFIX)
    except (InvalidArgumentError, ValueError) as exc:
        raise CliError(f"{sidecar_path}: bad resource_locator {locator!r}: {exc}", 2) from None
    if seq != sequence:
        raise CliError(f"{sidecar_path}: resource_locator {locator!r} is not in sequence {sequence!r} "
                       f"(the spool directory it is in)", 2)
    tag = field("ontology_tag", str)
    if not tag:
        raise CliError(f"{sidecar_path}: field 'ontology_tag' is empty", 2)
    fmt = field("serialization_format", str, "default")
    if fmt not in SERIALIZATION_FORMATS:
        raise CliError(f"{sidecar_path}: serialization_format {fmt!r} is not one of {', '.join(SERIALIZATION_FORMATS)}", 2)
    meta = dict(field("user_metadata", dict, {}) or {})
    meta["_spool_"] = {"reason": str(sidecar.get("reason", "")), "file": arrows.name}

    rows = batches = 0
    truncated = False
    try:
        reader = pa.ipc.open_stream(arrows)
    except (OSError, pa.ArrowException) as exc:
        raise CliError(f"{arrows}: not an Arrow IPC stream: {' '.join(str(exc).split())}", 2) from None
    with reader:
        schema = reader.schema
        if len(schema) == 0 or not schema.field(0).equals(TIMESTAMP_FIELD):
            raise CliError(f"{arrows}: schema does not start with timestamp_ns: int64 not null", 2)
        try:
            for batch in reader:
                rows += batch.num_rows
                batches += 1
        except (OSError, pa.ArrowException):
            truncated = True  # a bridge stopped in the middle of a batch: the complete ones are kept
    return SpooledTopic(arrows, arrows.relative_to(session_dir).as_posix(), sequence, "/" + path + SUFFIX,
                        tag, fmt, meta, schema, rows, batches, truncated)


def read_progress(session_dir: Path) -> dict[str, dict[str, Any]]:
    """``{key: {"topic", "rows"}}`` of the topics of a session already uploaded."""
    path = session_dir / PROGRESS_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CliError(f"{path}: unreadable progress record: {exc} (delete it to upload the session again)", 2) from None
    done = data.get("uploaded") if isinstance(data, dict) else None
    if not isinstance(done, dict):
        raise CliError(f"{path}: unreadable progress record (delete it to upload the session again)", 2)
    return done


def write_progress(session_dir: Path, done: dict[str, dict[str, Any]]) -> None:
    """Replace the progress record atomically (temporary file, fsync, rename)."""
    path = session_dir / PROGRESS_FILE
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"uploaded": done}, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def upload_topic(client: MosaicoClient, t: SpooledTopic, stop: StopSignals) -> str:
    """Send one spooled topic in a session of its own; return what happened, for the user.

    A topic of that name already on the server is either complete (a run stopped before
    it could record it: recorded now, not sent twice) or half-written by a stopped run
    (its open session is deleted, then the topic is sent again).

    Raises:
        CliError (exit 1): the server holds a complete topic of that name with other data.
        Interrupted: a stop signal arrived (the session being written is deleted).
        MosaicoError, ConnectionError: from the server.
    """
    leftover = _existing(client, t)
    if leftover == "complete":
        return "already on the server, recorded"
    if leftover is not None:
        client.session_delete(leftover)
    exists = client.sequence_exists(t.sequence)
    writer = (client.sequence_update(t.sequence, on_error=SessionLevelErrorPolicy.Delete) if exists
              else client.sequence_create(t.sequence, {"recovered_from_spool": True},
                                          on_error=SessionLevelErrorPolicy.Delete))
    with writer as session, pa.ipc.open_stream(t.arrows) as reader:
        tw = session.topic_create(t.topic, t.user_metadata, schema=reader.schema, ontology_tag=t.ontology_tag,
                                  serialization_format=t.serialization_format)
        for _ in range(t.batches):
            stop.check()
            tw.push_batch(reader.read_next_batch())
    return "uploaded" + (" (the file ends in an incomplete record batch, left out)" if t.truncated else "")


def _existing(client: MosaicoClient, t: SpooledTopic) -> str | None:
    """None if the server has no topic ``t.topic`` in ``t.sequence``; ``"complete"`` if
    it has it, closed, with ``t.rows`` rows; else the locator of the open session holding it.

    Raises:
        CliError (exit 1): a closed topic of that name with another row count.
    """
    seq = client.sequence_handler(t.sequence)
    if seq is None or t.topic not in seq.topics:
        return None
    locator = names.topic_locator(t.sequence, t.topic)
    session = next((s for s in seq.sessions if locator in s.topics), None)
    handler = seq.get_topic_handler(t.topic)
    complete = session is not None and session.completed_at_ns is not None
    if complete and handler is not None and handler.row_count == t.rows:
        return "complete"
    if session is not None and not session.locked:  # open, or closed after an error: partial
        if len(session.topics) == 1:
            return session.locator
        raise CliError(f"{t.arrows}: the server holds a partial {t.sequence}{t.topic} in session {session.locator} "
                       f"together with other topics; delete that session first", 1)
    rows = handler.row_count if handler is not None else "?"
    raise CliError(f"{t.arrows}: the server already holds {t.sequence}{t.topic} with {rows} rows, "
                   f"not the {t.rows} of this spool file; rename or delete one of them", 1)


def main(argv: Sequence[str] | None = None) -> int:
    keep_pandas_out()
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    spool = Path(args.spool)
    try:
        if not spool.is_dir():
            raise CliError(f"spool directory not found: {spool}", 2)
        sessions = sorted(p for p in spool.glob("*/*") if p.is_dir())
        # every file is checked before anything is created on the server
        plan: list[tuple[Path, list[SpooledTopic], dict[str, dict[str, Any]]]] = []
        for session_dir in sessions:
            try:
                names.validate_sequence_name(session_dir.parent.name)
            except InvalidArgumentError as exc:
                raise CliError(f"{session_dir.parent}: not a sequence of the spool: {exc}", 2) from None
            topics = [check_topic(session_dir, f) for f in sorted(session_dir.rglob("*.arrows"))]
            plan.append((session_dir, topics, read_progress(session_dir)))
        if not any(topics for _d, topics, _p in plan):
            print(f"{spool}: nothing to upload")
            return 0
        with StopSignals() as stop:
            try:
                connection = connect_or_embed(ServerConfig(host=args.host, port=args.port, timeout=args.timeout,
                                                           tls_cert_path=args.tls_cert, api_key=args.api_key))
            except (FileNotFoundError, ValueError) as exc:
                raise CliError(f"--tls-cert: {exc}", 2) from None
            with connection:
                client = connection.client
                for session_dir, topics, done in plan:
                    for t in topics:
                        label = f"{t.sequence}{t.topic}"
                        if t.key in done:
                            print(f"{label}: already uploaded ({done[t.key]['rows']} rows), skipped", flush=True)
                            continue
                        stop.check()
                        try:
                            what = upload_topic(client, t, stop)
                        except Interrupted as exc:
                            raise CliError(f"{exc}; {label} was not finished and is deleted from the server; "
                                           f"run {PROG} again to finish", exc.exit_code) from None
                        done[t.key] = {"topic": t.topic, "rows": t.rows}
                        write_progress(session_dir, done)
                        print(f"{label}: {t.rows} rows {what}", flush=True)
                    if not args.keep:
                        shutil.rmtree(session_dir)
        return 0
    except CliError as exc:
        return fail(PROG, str(exc), exc.code)
    except Interrupted as exc:
        return fail(PROG, f"{exc}; nothing more was sent; run {PROG} again to finish", exc.exit_code)
    except (MosaicoError, ConnectionError, ValueError, OSError) as exc:
        return fail(PROG, f"{exc} (run {PROG} again once the server is back: uploaded topics are skipped)", 1)


if __name__ == "__main__":
    sys.exit(main())
