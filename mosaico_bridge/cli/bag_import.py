"""``bag_import``: import ROS bags into a Mosaico sequence.

Without ``--host`` the data goes to an embedded Mosaico-compatible server running in
this process on ``--root`` (default ``./mosaico_data``); ``mosaico_server --root DIR``
serves that directory afterwards. Without a bag, a small sample bag is written first.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .. import __version__
from ..client import (
    COMPRESSIONS,
    AuthenticationError,
    MosaicoClient,
    MosaicoError,
    SessionLevelErrorPolicy,
)
from ..client.security import SecurityConfig
from ..common.imports import keep_pandas_out
from ..conversion import ConversionError
from ..embedded import EmbeddedServerError, ServerConfig, connect_or_embed
from ..importer import BagImportError, ImportSummary, import_bags
from ..protocol import auth, names
from ..protocol.errors import InvalidArgumentError
from ..server.catalog import STORE_FORMAT
from ..sources import (
    TIMESTAMP_SOURCES,
    BagSourceError,
    TopicFilter,
    check_distinct,
    default_timestamp,
)
from .common import (
    CliError,
    Interrupted,
    StopSignals,
    env_default,
    fail,
    human_bytes,
    parse_metadata,
    setup_logging,
)

#: Default --max-inflight-bytes, a quarter of the live node's. On a 3.9 GB camera + lidar bag
#: into the embedded server, 64 MiB imports as fast as 128 MiB (3.1-3.5 s either way) with
#: ~65 MiB less peak RSS (254-260 MiB); over Flight to a server process 128 MiB is ~18 %
#: faster (5.3 s against 6.2 s) for 306 MiB instead of 243 MiB.
IMPORT_MAX_INFLIGHT_BYTES = 64 * 1024 * 1024

PROG = "bag_import"
#: Marker file of the embedded server's store (mosaico_bridge.server.store layout).
STORE_MARKER = "MOSAICO_STORE"
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
            f"  {PROG} run1.mcap --sequence run_1                      # embedded server, ./mosaico_data\n"
            f"  {PROG} run1.mcap --sequence run_1 --dry-run            # what would be written; writes nothing\n"
            f"  {PROG} day1/ --sequence day_1 --topics '/imu/.*' /fix --exclude /camera/image_raw\n"
            f"  {PROG} run.bag --sequence run_2 --timestamp header     # rows stamped with header.stamp\n"
            f"  {PROG} run.bag --sequence run_2 --host mosaico.local --api-key $KEY --tls-cert ca.pem\n"
            "\n"
            "Ctrl-C or SIGTERM stops reading and applies --on-error (report: keep what was written; delete:\n"
            "remove the sequence) while the server is still up, then says in one line what is left.\n"
            "\n"
            "exit status:\n"
            "  0    success (--dry-run: no problem found)\n"
            "  1    failed import: server unreachable, refused or failed mid-way\n"
            "  2    bad input, nothing written: bag missing, corrupt or given twice, unknown type, bad name,\n"
            "       existing sequence, bad --metadata, unreadable --root store\n"
            "  130  stopped by SIGINT (Ctrl-C);  143  stopped by SIGTERM"
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
    w.add_argument("--timestamp", choices=list(TIMESTAMP_SOURCES), default="log",
                   help="row timestamp_ns: 'log', the bag's log (receive) time; 'header', the message's "
                        "header.stamp where its type starts with a std_msgs/Header, else the log time (default log)")
    w.add_argument("--on-error", choices=["report", "delete"], default="report",
                   help="on failure, 'report': keep what was written and store an error notification; "
                        "'delete': remove the sequence (default report)")
    w.add_argument("--max-batch-bytes", type=int, metavar="B",
                   help="largest record batch in bytes (default 16 MiB; never above 90%% of the server's message limit)")
    w.add_argument("--max-batch-records", type=int, metavar="N", help="largest record batch in rows (default: no limit)")
    w.add_argument("--data-connections", type=int, default=4, metavar="N",
                   help="Flight data connections, topics striped round-robin (default 4)")
    w.add_argument("--workers", type=int, metavar="N", help="conversion threads (default: CPU count, 2..8)")
    w.add_argument("--max-inflight-bytes", type=int, default=IMPORT_MAX_INFLIGHT_BYTES, metavar="B",
                   help="bytes of messages read but not yet acknowledged by the server; reading waits past it, "
                        f"so memory does not grow with the bag (default {IMPORT_MAX_INFLIGHT_BYTES // 2**20} MiB)")
    w.add_argument("--compression", choices=list(COMPRESSIONS), default="none",
                   help="compression of the Arrow IPC bodies on the wire (default none)")
    w.add_argument("--dry-run", action="store_true",
                   help="read the bags and print, per topic, the ROS type, the Arrow layout, the message count, "
                        "the time range and the estimated Arrow bytes, plus every problem the import would refuse; "
                        "write nothing (with --host the server is only asked whether the sequence exists)")
    out = p.add_argument_group("output")
    out.add_argument("--no-progress", action="store_true", help="no progress bar (terminal) or progress lines (log, pipe)")
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
                        ("--max-batch-bytes", args.max_batch_bytes), ("--max-batch-records", args.max_batch_records),
                        ("--max-inflight-bytes", args.max_inflight_bytes)):
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
    check_distinct(bags)
    # check the security options before anything touches the server
    for flag, tls_cert, api_key in (("--tls-cert", args.tls_cert, None), ("--api-key", None, args.api_key)):
        try:
            SecurityConfig.create(tls_cert, api_key)
        except (FileNotFoundError, ValueError) as exc:
            raise CliError(f"{flag}: {exc}", 2) from None

    if args.dry_run:
        try:
            return _dry_run(args, bags, topic_filter, console)
        finally:
            if sample_dir is not None:
                sample_dir.cleanup()

    with StopSignals(on_force=_forced) as stop:
        try:
            stop.check()
            client, server, host, port = _connect(args)
            try:
                with client:
                    started: list[bool] = []
                    try:
                        summary = _import(client, bags, args, topic_filter, metadata, console, stop, started)
                    except Interrupted as exc:
                        if not started:
                            raise
                        raise CliError(_after_interrupt(client, args, exc), exc.exit_code, prefix=False) from None
                    except AuthenticationError as exc:
                        raise CliError(_refusal(host, port, exc), 1) from None
            finally:
                if server is not None:
                    server.stop()
        except Interrupted as exc:  # before the import started: nothing was written
            raise CliError(f"{exc}; nothing was written", exc.exit_code, prefix=False) from None
        finally:
            if sample_dir is not None:
                sample_dir.cleanup()
    print_summary(summary, console)
    if server is not None:
        console.print(
            f"data stored in {Path(args.root).resolve()}; serve it with: "
            f"mosaico_server --root {args.root} --port {names.DEFAULT_PORT}"
        )
    return 0


def _connect(args: argparse.Namespace) -> tuple[MosaicoClient, Any | None, str, int]:
    """The client of the import and, without ``--host``, the embedded server on ``--root``
    (both through :func:`mosaico_bridge.embedded.connect_or_embed`).

    Returns ``(client, server or None, host, port)``; the caller stops the server after
    closing the client.

    Raises:
        CliError: bad ``--root`` / ``--tls-cert`` (2), unreachable or refusing server (1).
    """
    if not args.host:
        check_store_root(Path(args.root))
    config = ServerConfig(
        host=args.host or "", port=args.port, root=args.root, timeout=args.timeout, tls_cert_path=args.tls_cert,
        api_key=args.api_key, data_connections=args.data_connections, workers=args.workers,
        max_inflight_bytes=args.max_inflight_bytes, compression=args.compression,
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
    return connection.client, connection.server, connection.host, connection.port


def _dry_run(args: argparse.Namespace, bags: list[Path], topic_filter: TopicFilter, console) -> int:
    """``--dry-run``: print the import plan; exit 2 with the error a real import would give."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from ..sources.inspect import inspect_bags

    client = None
    exists: Callable[[str], bool]
    if args.host:
        try:
            client = MosaicoClient.connect(args.host, args.port, timeout=args.timeout, tls_cert_path=args.tls_cert,
                                           api_key=args.api_key, data_connections=1)
        except (FileNotFoundError, ValueError) as exc:
            raise CliError(f"--tls-cert: {exc}", 2) from None
        except ConnectionError as exc:
            raise CliError(str(exc), 1) from None
        except AuthenticationError as exc:
            raise CliError(_refusal(args.host, args.port, exc), 1) from None
        exists = client.sequence_exists
    else:
        root = Path(args.root)
        check_store_root(root)
        # read-only look at the store layout (mosaico_bridge.server.store): sequences/<name>/
        def exists(name: str) -> bool:
            return (root / "sequences" / name).is_dir()
    progress = Progress(TextColumn("[bold]reading"), BarColumn(), MofNCompleteColumn(), TextColumn("msgs"),
                        TimeElapsedColumn(), console=console, transient=True,
                        disable=args.no_progress or not console.is_terminal)
    task = None

    def on_start(source) -> None:
        nonlocal task
        task = progress.add_task("read", total=source.message_count)

    def on_progress(n: int) -> None:
        if task is not None:
            progress.advance(task, n)

    try:
        with StopSignals() as stop, progress:
            def checked(n: int) -> None:
                stop.check()
                on_progress(n)

            plan = inspect_bags(bags, args.sequence, topic_filter=topic_filter, timestamp=args.timestamp,
                                sequence_exists=exists, on_start=on_start, on_progress=checked)
    except Interrupted as exc:
        raise CliError(f"{exc}; dry run stopped, nothing was written", exc.exit_code, prefix=False) from None
    finally:
        if client is not None:
            client.close()
    print_plan(plan, console)
    if plan.problems:
        console.print("problems an import would refuse:")
        for problem in plan.problems:
            console.print(f"  - {problem}", soft_wrap=True)
        raise CliError(plan.problems[0], 2)
    console.print(f"dry run: nothing written; the import would write {plan.messages} messages "
                  f"(~{human_bytes(plan.arrow_bytes)} of Arrow data) into the new sequence {args.sequence}")
    return 0


def print_plan(plan, console) -> None:
    """The dry-run table: one row per selected topic."""
    from rich.table import Table

    table = Table(title=f"dry run: sequence {plan.sequence}", title_justify="left")
    for name, justify in (("topic", "left"), ("ROS type", "left"), ("ontology tag / layout", "left"),
                          ("timestamp", "left"), ("messages", "right"), ("first", "left"), ("last", "left"),
                          ("est. Arrow", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for t in plan.topics:
        table.add_row(
            t.topic, t.msgtype, t.layout if t.problem is None else f"[red]{t.problem}[/red]", t.timestamp_source,
            str(t.messages), _iso(t.first_ns), _iso(t.last_ns),
            human_bytes(t.arrow_bytes) if t.arrow_bytes is not None else "-",
        )
    table.add_section()
    table.add_row(f"{len(plan.topics)} topics", "", "", "", str(plan.messages), "", "", human_bytes(plan.arrow_bytes))
    console.print(table)
    if plan.skipped_topics:
        console.print(f"skipped topics: {', '.join(plan.skipped_topics)}")


def _iso(t_ns: int | None) -> str:
    """``t_ns`` (ns since the Unix epoch) as UTC ISO 8601 with milliseconds."""
    if t_ns is None:
        return "-"
    import datetime

    dt = datetime.datetime.fromtimestamp(t_ns // 1_000_000_000, tz=datetime.UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{(t_ns % 1_000_000_000) // 1_000_000:03d}Z"


def check_store_root(root: Path) -> None:
    """Check, without writing, that ``root`` can hold the embedded server's store: absent,
    an empty or unrelated directory, or a store whose marker ``<root>/MOSAICO_STORE``
    (``{"format": N}``, layout in :mod:`mosaico_bridge.server.store`) this version reads.

    Raises:
        CliError (exit 2): ``root`` is a file, or its marker is unreadable, corrupt or of
            a newer format.
    """
    if not root.exists():
        return
    if not root.is_dir():
        raise CliError(f"--root {root}: not a directory", 2)
    marker = root / STORE_MARKER
    if not marker.exists():
        return
    try:
        fmt = json.loads(marker.read_bytes().decode("utf-8")).get("format")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError, RecursionError) as exc:
        raise CliError(f"--root {root}: {STORE_MARKER} is not a store marker ({type(exc).__name__}): "
                       f"is this a Mosaico store? move the file away or pick another --root", 2) from None
    if not isinstance(fmt, int) or isinstance(fmt, bool) or fmt < 1:
        raise CliError(f"--root {root}: {STORE_MARKER} names no valid store format ({fmt!r})", 2)
    if fmt > STORE_FORMAT:
        raise CliError(f"--root {root}: the store has format {fmt}, newer than format {STORE_FORMAT} that this "
                       f"version reads; use a newer mosaico_bridge or another --root", 2)


def _forced(signum: int) -> None:
    print(f"{PROG}: {signal.Signals(signum).name} again: stopped at once, the on-error policy may not have run",
          file=sys.stderr, flush=True)


def _after_interrupt(client: MosaicoClient, args: argparse.Namespace, exc: Interrupted) -> str:
    """One line saying what the on-error policy left on the server, as the server tells it."""
    seq = args.sequence
    policy = f"--on-error {args.on_error}"
    try:
        handler = client.sequence_handler(seq)
    except (MosaicoError, ConnectionError) as err:
        return f"{exc}; {policy} was applied but the server could not be asked what is left: {err}"
    if handler is None:
        return f"{exc}; sequence {seq!r} deleted ({policy})"
    rows = sum(t.row_count for t in (handler.get_topic_handler(n) for n in handler.topics) if t is not None)
    open_sessions = [s for s in handler.sessions if s.completed_at_ns is None]
    if args.on_error == "delete":
        return (f"{exc}; {policy} could not delete sequence {seq!r}: it is left on the server with "
                f"{rows} rows on {len(handler.topics)} topics")
    state = "closed with an error notification" if not open_sessions else "NOT closed (the server did not answer)"
    return f"{exc}; sequence {seq!r} kept: {rows} rows on {len(handler.topics)} topics, session {state} ({policy})"


def _refusal(host: str, port: int, exc: AuthenticationError) -> str:
    """One line for a refused API key: the server's reason names the key's fingerprint, never the key."""
    return f"authentication failed: the Mosaico server at {host}:{port} refused {exc.call}: {exc.reason}"


def _import(client, bags, args, topic_filter, metadata, console, stop: StopSignals, started: list) -> ImportSummary:
    """Run :func:`import_bags` with a progress bar; ``started`` gets an item once the
    sequence is about to be created (past that point an interrupt leaves something to report)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    progress = Progress(
        TextColumn("[bold]importing"), BarColumn(), MofNCompleteColumn(), TextColumn("msgs"),
        TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=True,
        disable=args.no_progress or not console.is_terminal,
    )
    task = None

    def on_start(source) -> None:
        nonlocal task
        stop.check()
        if not console.is_terminal:
            console.print(f"importing {source.message_count} messages of {len(source.topics)} topics "
                          f"into sequence {args.sequence}", soft_wrap=True)
        task = progress.add_task("import", total=source.message_count)
        started.append(True)

    done = 0
    step = [0]  # last 10 % step printed (logs and pipes get a line per step, a terminal a bar)

    def on_progress(n: int) -> None:
        nonlocal done
        stop.check()  # raised inside the importer's session: the on-error policy runs
        if task is not None:
            progress.advance(task, n)
        done += n
        total = progress.tasks[0].total if progress.tasks else None
        if not console.is_terminal and not args.no_progress and total:
            now = min(10, int(10 * done / total))
            if now > step[0]:
                step[0] = now
                console.print(f"read {done}/{int(total)} messages ({100 * done // int(total)} %)", soft_wrap=True)

    with progress, default_timestamp(args.timestamp):  # BagSource of import_bags reads it
        return import_bags(
            client, bags, args.sequence, topic_filter=topic_filter, metadata=metadata,
            on_error=SessionLevelErrorPolicy(args.on_error), max_batch_size_bytes=args.max_batch_bytes,
            max_batch_size_records=args.max_batch_records, on_start=on_start, on_progress=on_progress,
        )


def main(argv: Sequence[str] | None = None) -> int:
    keep_pandas_out()
    from rich.console import Console

    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
    try:
        return run(args, console)
    except CliError as exc:
        if not exc.prefix:
            print(f"{PROG}: {' '.join(str(exc).split())}", file=sys.stderr)
            return exc.code
        return fail(PROG, str(exc), exc.code)
    except (BagSourceError, ConversionError, BagImportError) as exc:
        return fail(PROG, str(exc), 2)
    except ValueError as exc:
        return fail(PROG, str(exc), 2)
    except InvalidArgumentError as exc:  # a local check (no call) is bad input; a server refusal is a failed import
        return fail(PROG, str(exc), 2 if exc.call is None else 1)
    except (MosaicoError, ConnectionError) as exc:
        return fail(PROG, str(exc), 1)
    except KeyboardInterrupt:  # outside the main thread, or before the handlers were installed
        return fail(PROG, "interrupted", 130)


if __name__ == "__main__":
    sys.exit(main())
