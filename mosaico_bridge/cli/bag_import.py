"""``bag_import``: import ROS bags into a Mosaico sequence.

Without ``--host`` the data goes to an embedded Mosaico-compatible server running in
this process on ``--root`` (default ``./mosaico_data``); ``mosaico_server --root DIR``
serves that directory afterwards. Without a bag, a small sample bag is written first.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Optional, Sequence

from .. import __version__
from ..client import AuthenticationError, MosaicoError, SessionLevelErrorPolicy
from ..protocol import auth, names
from ..protocol.errors import InvalidArgumentError
from ..client.security import SecurityConfig
from ..conversion import ConversionError
from ..embedded import EmbeddedServerError, ServerConfig, connect_or_embed
from ..importer import BagImportError, ImportSummary, import_bags
from ..sources import BagSourceError, TopicFilter
from .common import CliError, env_default, fail, human_bytes, parse_metadata, setup_logging

PROG = "bag_import"
DEFAULT_ROOT = "./mosaico_data"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Import ROS 1 / ROS 2 bags (.bag, sqlite3 .db3, .mcap, split bags) into one Mosaico sequence. "
            "Every topic is converted to Arrow: known types to the Mosaico ontology (IMU, GPS, Image, ...), "
            "every other type to a lossless layout derived from its message definition."
        ),
        epilog=(
            "examples:\n"
            f"  {PROG} run1.mcap --sequence run_1\n"
            f"  {PROG} day1/ --sequence day_1 --topics '/imu/.*' /fix --exclude /camera/image_raw\n"
            f"  {PROG} run.bag --sequence run_2 --host mosaico.local --api-key $KEY --tls-cert ca.pem\n"
            "Exit status: 0 on success, 1 on a failed import, 2 on bad input."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("bags", nargs="*", metavar="BAG", help="bag files or rosbag2 directories (one recording; "
                   "split bags: give the directory). None: write and import a small sample bag.")
    p.add_argument("--sequence", "-s", required=True, metavar="NAME",
                   help="name of the new sequence: letters, digits, '_' and '-', starting with a letter or digit")
    srv = p.add_argument_group("server (default: embedded server on --root)")
    srv.add_argument("--host", metavar="H", help="Mosaico server host; without it an embedded server is used")
    srv.add_argument("--port", type=int, default=names.DEFAULT_PORT, metavar="P",
                     help=f"Mosaico server port (default {names.DEFAULT_PORT})")
    srv.add_argument("--api-key", metavar="K", default=env_default(auth.ENV_API_KEY),
                     help=f"API key with Write permission; only its fingerprint is ever shown "
                          f"(default: ${auth.ENV_API_KEY}; prefer the variable: arguments are visible to other users)")
    srv.add_argument("--tls-cert", metavar="PATH", default=env_default(auth.ENV_TLS_CERT_FILE),
                     help=f"CA certificate (PEM) to trust; enables TLS (default: ${auth.ENV_TLS_CERT_FILE})")
    srv.add_argument("--root", metavar="DIR", default=DEFAULT_ROOT,
                     help=f"data directory of the embedded server (default {DEFAULT_ROOT})")
    srv.add_argument("--timeout", type=float, default=5.0, metavar="S", help="connect timeout in seconds (default 5)")
    sel = p.add_argument_group("topic selection")
    sel.add_argument("--topics", nargs="+", metavar="PATTERN", default=[],
                     help="import only these topics: exact names or regular expressions matching the whole name")
    sel.add_argument("--exclude", nargs="+", metavar="PATTERN", default=[],
                     help="skip these topics (exact names or regular expressions)")
    w = p.add_argument_group("writing")
    w.add_argument("--metadata", metavar="JSON_OR_FILE", help="sequence metadata: a JSON object or a JSON/YAML file")
    w.add_argument("--on-error", choices=["report", "delete"], default="report",
                   help="on failure, 'report': keep what was written and store an error notification; "
                        "'delete': remove the sequence (default report)")
    w.add_argument("--max-batch-bytes", type=int, metavar="B",
                   help="largest record batch in bytes (default 16 MiB; never above 90%% of the server's message limit)")
    w.add_argument("--max-batch-records", type=int, metavar="N", help="largest record batch in rows (default: no limit)")
    w.add_argument("--data-connections", type=int, default=4, metavar="N",
                   help="Flight data connections, topics striped round-robin (default 4)")
    w.add_argument("--workers", type=int, metavar="N", help="conversion threads (default: CPU count, 2..8)")
    out = p.add_argument_group("output")
    out.add_argument("--no-progress", action="store_true", help="no progress bar")
    out.add_argument("-v", "--verbose", action="count", default=0, help="log more (-v info, -vv debug)")
    out.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return p


def print_summary(summary: ImportSummary, console) -> None:
    from rich.table import Table

    table = Table(title=f"sequence {summary.sequence}", title_justify="left")
    table.add_column("topic")
    table.add_column("ROS type")
    table.add_column("ontology tag")
    table.add_column("messages", justify="right")
    table.add_column("bytes", justify="right")
    for t in summary.topics:
        msgs = f"{t.messages}" if not t.dropped else f"{t.messages} ({t.dropped} dropped)"
        table.add_row(t.topic, t.msgtype, t.ontology_tag, msgs, human_bytes(t.bytes))
    table.add_section()
    table.add_row(f"{len(summary.topics)} topics", "", "", str(summary.messages), human_bytes(summary.bytes))
    console.print(table)
    rate = summary.messages / summary.seconds if summary.seconds else 0.0
    mbps = summary.serialized_bytes / summary.seconds / 1e6 if summary.seconds else 0.0
    console.print(f"{summary.messages} messages in {summary.seconds:.2f} s ({rate:,.0f} msg/s, {mbps:.1f} MB/s of bag data)")
    if summary.skipped_topics:
        console.print(f"skipped topics: {', '.join(summary.skipped_topics)}")


def run(args: argparse.Namespace, console) -> int:
    metadata = parse_metadata(args.metadata)
    try:
        topic_filter = TopicFilter.of(args.topics, args.exclude)
        names.validate_sequence_name(args.sequence)
    except (ValueError, InvalidArgumentError) as exc:
        raise CliError(str(exc), 2) from None
    for name, value in (("--data-connections", args.data_connections), ("--workers", args.workers),
                        ("--max-batch-bytes", args.max_batch_bytes), ("--max-batch-records", args.max_batch_records)):
        if value is not None and value < 1:
            raise CliError(f"{name} must be >= 1, got {value}", 2)

    bags = [Path(b) for b in args.bags]
    sample_dir = None
    if not bags:
        from ..sources.sample import write_sample_bag

        sample_dir = tempfile.TemporaryDirectory(prefix="mosaico_sample_")
        bags = [write_sample_bag(Path(sample_dir.name) / "sample_robot_run")]
        console.print(f"no bag given: importing a sample bag written to {bags[0]} (pass BAG ... for your own)")
    for bag in bags:
        if not bag.exists():
            raise CliError(f"bag not found: {bag}", 2)

    # check the security options before anything touches the server
    for flag, tls_cert, api_key in (("--tls-cert", args.tls_cert, None), ("--api-key", None, args.api_key)):
        try:
            SecurityConfig.create(tls_cert, api_key)
        except (FileNotFoundError, ValueError) as exc:
            raise CliError(f"{flag}: {exc}", 2) from None

    connection = None
    try:
        config = ServerConfig(
            host=args.host or "", port=args.port, root=args.root, timeout=args.timeout, tls_cert_path=args.tls_cert,
            api_key=args.api_key, data_connections=args.data_connections, workers=args.workers,
        )
        host, port = (args.host, args.port) if args.host else ("127.0.0.1", 0)
        try:
            connection = connect_or_embed(config)
        except EmbeddedServerError as exc:
            raise CliError(f"--root {exc}", 2) from None
        except (FileNotFoundError, ValueError) as exc:
            raise CliError(f"--tls-cert: {exc}", 2) from None
        except ConnectionError as exc:
            raise CliError(str(exc), 1) from None
        except AuthenticationError as exc:
            raise CliError(_refusal(host, port, exc), 1) from None
        client, server = connection.client, connection.server
        host, port = connection.host, connection.port
        try:
            with client:
                summary = _import(client, bags, args, topic_filter, metadata, console)
        except AuthenticationError as exc:
            raise CliError(_refusal(host, port, exc), 1) from None
        print_summary(summary, console)
        if server is not None:
            console.print(
                f"data stored in {Path(args.root).resolve()}; serve it with: "
                f"mosaico_server --root {args.root} --port {names.DEFAULT_PORT}"
            )
        return 0
    finally:
        if connection is not None:
            connection.close()
        if sample_dir is not None:
            sample_dir.cleanup()


def _refusal(host: str, port: int, exc: AuthenticationError) -> str:
    """One line for a refused API key: the server's reason names the key's fingerprint, never the key."""
    return f"authentication failed: the Mosaico server at {host}:{port} refused {exc.call}: {exc.reason}"


def _import(client, bags, args, topic_filter, metadata, console) -> ImportSummary:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    progress = Progress(
        TextColumn("[bold]importing"), BarColumn(), MofNCompleteColumn(), TextColumn("msgs"),
        TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=True,
        disable=args.no_progress or not console.is_terminal,
    )
    task = None

    def on_start(source) -> None:
        nonlocal task
        task = progress.add_task("import", total=source.message_count)

    def on_progress(n: int) -> None:
        if task is not None:
            progress.advance(task, n)

    with progress:
        return import_bags(
            client, bags, args.sequence, topic_filter=topic_filter, metadata=metadata,
            on_error=SessionLevelErrorPolicy(args.on_error), max_batch_size_bytes=args.max_batch_bytes,
            max_batch_size_records=args.max_batch_records, on_start=on_start, on_progress=on_progress,
        )


def main(argv: Optional[Sequence[str]] = None) -> int:
    from rich.console import Console

    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
    try:
        return run(args, console)
    except CliError as exc:
        return fail(PROG, str(exc), exc.code)
    except (BagSourceError, ConversionError, BagImportError) as exc:
        return fail(PROG, str(exc), 2)
    except ValueError as exc:
        return fail(PROG, str(exc), 2)
    except InvalidArgumentError as exc:  # a local check (no call) is bad input; a server refusal is a failed import
        return fail(PROG, str(exc), 2 if exc.call is None else 1)
    except (MosaicoError, ConnectionError) as exc:
        return fail(PROG, str(exc), 1)
    except KeyboardInterrupt:
        return fail(PROG, "interrupted; the on-error policy was applied to the sequence", 130)


if __name__ == "__main__":
    sys.exit(main())
