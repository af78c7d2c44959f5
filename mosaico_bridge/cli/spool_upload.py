"""``spool_upload``: send what a bridge spooled locally (server lost, key revoked) to a
Mosaico server, once it is reachable again.

Each ``<spool>/<sequence>/<session>/`` becomes a new session of ``<sequence>`` (the
sequence is created if the server does not have it). A spooled topic keeps its ontology
tag, serialization format, metadata and schema; its name gets the suffix
``_recovered`` (a topic name is used once per sequence, and the failed session already
holds the topic). Uploaded sessions are removed from the spool unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Optional, Sequence

import pyarrow as pa

from .. import __version__
from ..client import MosaicoClient, MosaicoError
from ..protocol import auth, names
from ..embedded import ServerConfig, connect_or_embed
from .common import CliError, env_default, fail, setup_logging

PROG = "spool_upload"
SUFFIX = "_recovered"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0].replace("``", "'"))
    p.add_argument("spool", metavar="SPOOL_DIR", help="the bridge's spool_dir (default of the node: ./mosaico_spool)")
    p.add_argument("--host", required=True, metavar="H", help="Mosaico server host")
    p.add_argument("--port", type=int, default=names.DEFAULT_PORT, metavar="P",
                   help=f"Mosaico server port (default {names.DEFAULT_PORT})")
    p.add_argument("--api-key", metavar="K", default=env_default(auth.ENV_API_KEY),
                   help=f"API key (default: ${auth.ENV_API_KEY})")
    p.add_argument("--tls-cert", metavar="PATH", default=env_default(auth.ENV_TLS_CERT_FILE),
                   help=f"CA certificate (PEM) to trust (default: ${auth.ENV_TLS_CERT_FILE})")
    p.add_argument("--keep", action="store_true", help="keep the spool files after a successful upload")
    p.add_argument("-v", "--verbose", action="count", default=0, help="log more (-v info, -vv debug)")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return p


def upload_session(client: MosaicoClient, sequence: str, session_dir: Path) -> dict[str, int]:
    """Upload one spooled session; return ``{topic: rows}``.

    Raises:
        CliError: a sidecar is missing or unreadable. MosaicoError, ConnectionError: from the server.
    """
    files = sorted(session_dir.rglob("*.arrows"))
    rows: dict[str, int] = {}
    if not files:
        return rows
    writer = (client.sequence_update(sequence) if client.sequence_exists(sequence)
              else client.sequence_create(sequence, {"recovered_from_spool": True}))
    with writer as session:
        for path in files:
            try:
                sidecar = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                raise CliError(f"{path.with_suffix('.json')}: unreadable sidecar: {exc}") from None
            _seq, topic = names.split_topic_locator(sidecar["resource_locator"])
            with pa.ipc.open_stream(path) as reader:
                meta = dict(sidecar.get("user_metadata") or {})
                meta["_spool_"] = {"reason": sidecar.get("reason", ""), "file": path.name}
                tw = session.topic_create(
                    "/" + topic + SUFFIX, meta, schema=reader.schema, ontology_tag=sidecar["ontology_tag"],
                    serialization_format=sidecar.get("serialization_format", "default"),
                )
                for batch in reader:
                    tw.push_batch(batch)
                    rows[tw.name] = rows.get(tw.name, 0) + batch.num_rows
    return rows


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    spool = Path(args.spool)
    try:
        if not spool.is_dir():
            raise CliError(f"spool directory not found: {spool}", 2)
        sessions = sorted(p for p in spool.glob("*/*") if p.is_dir())
        if not sessions:
            print(f"{spool}: nothing to upload")
            return 0
        try:
            connection = connect_or_embed(ServerConfig(host=args.host, port=args.port, tls_cert_path=args.tls_cert,
                                                       api_key=args.api_key))
        except (FileNotFoundError, ValueError) as exc:
            raise CliError(f"--tls-cert: {exc}", 2) from None
        with connection:
            client = connection.client
            for session_dir in sessions:
                sequence = session_dir.parent.name
                rows = upload_session(client, sequence, session_dir)
                for topic, n in rows.items():
                    print(f"{sequence}{topic}: {n} rows uploaded")
                if not args.keep:
                    shutil.rmtree(session_dir)
        return 0
    except CliError as exc:
        return fail(PROG, str(exc), exc.code)
    except (MosaicoError, ConnectionError, ValueError) as exc:
        return fail(PROG, str(exc), 1)


if __name__ == "__main__":
    sys.exit(main())
