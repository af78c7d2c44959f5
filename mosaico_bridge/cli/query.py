"""``mosaico_query``: search a Mosaico server's catalog from the command line.

The filters map one to one onto the query builders of :mod:`mosaico_bridge.client.query`
(``QuerySequence``, ``QueryTopic``, ``QueryOntologyCatalog``), all joined with AND, and
the query runs as the ``query`` DoAction (:meth:`MosaicoClient.query`). With ``--windows``
every matching topic's time windows come from ``topic_filter_clusterize``.

Without ``--host`` an embedded server is started on ``--root`` (default ``./mosaico_data``,
the directory ``bag_import`` writes to).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .. import __version__
from ..client import AuthenticationError, MosaicoClient, MosaicoError
from ..client.query import (
    Expression,
    OntologyProxy,
    QueryField,
    QueryOntologyCatalog,
    QuerySequence,
    QueryTopic,
    TopicCluster,
    ontology_models,
    run_clusterize,
)
from ..embedded import EmbeddedServerError, ServerConfig, connect_or_embed
from ..protocol import auth, names
from ..protocol.errors import InvalidArgumentError
from ..protocol.query import QueryResponseTopic
from .bag_import import check_store_root
from .common import CliError, env_default, fail, setup_logging

PROG = "mosaico_query"
DEFAULT_ROOT = "./mosaico_data"

#: ``--sequence-meta`` / ``--topic-meta`` operator words -> builder keyword.
META_OPS = {"eq": "eq", "neq": "neq", "lt": "lt", "leq": "leq", "gt": "gt", "geq": "geq", "match": "match",
            "in": "in_"}
#: ``--where`` comparison symbols -> QueryField method.
WHERE_OPS = {">=": "geq", "<=": "leq", "==": "eq", "!=": "neq", ">": "gt", "<": "lt"}
_WHERE_CMP = re.compile(r"^\s*(?P<field>[^\s<>=!]+)\s*(?P<op>>=|<=|==|!=|>|<)\s*(?P<value>.+?)\s*$")
_WHERE_BETWEEN = re.compile(r"^\s*(?P<field>\S+)\s+between\s+(?P<lo>\S+)\s+(?P<hi>\S+)\s*$", re.IGNORECASE)
_SEGMENT = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:\[(?P<spec>\?|!|[0-9]+)\])?$")
#: Window condition for a topic without ``--where`` on its tag: every row (int64 ns).
_ALL_ROWS_NS = 2**63 - 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Search the catalog of a Mosaico server: sequences and topics by name, ontology tag and user "
            "metadata, and by the values of their rows (--where). All filters are joined with AND; without "
            "any filter every sequence and topic is listed. Prints the matching sequences with their "
            "matching topics and, with --windows, the time windows of each topic's matching rows."
        ),
        epilog=(
            "examples:\n"
            f"  {PROG}                                              # everything on the embedded server (./mosaico_data)\n"
            f"  {PROG} --sequence-match 'run_*' --tag IMU\n"
            f"  {PROG} --sequence-meta weather eq rain --sequence-meta robot.id in 3,4\n"
            f"  {PROG} --where 'IMU.acceleration.x > 5' --windows 1.0    # windows split at gaps > 1 s\n"
            f"  {PROG} --where 'GPS.position.x between 49.9 50.1' --json\n"
            f"  {PROG} --topic-name /imu/data --host mosaico.local --api-key $KEY --tls-cert ca.pem\n"
            "\n"
            "--where FIELD OP VALUE: FIELD is <ontology tag>.<field path> (e.g. IMU.acceleration.x,\n"
            "IMU.timestamp_ns, IMU.acceleration.covariance[0]; a list takes [N], [?] any element or [!] every\n"
            "element); OP one of > >= < <= == !=, or 'FIELD between LOW HIGH' (both inclusive). VALUE is a\n"
            "number, true/false, or text (quotes optional). Tags this version knows are checked here; the\n"
            "server checks every other tag against the topic's schema.\n"
            "--sequence-meta / --topic-meta KEY OP VALUE: KEY a dotted user-metadata path, OP one of\n"
            "eq neq lt leq gt geq match in; VALUE a number, true/false or text; for 'in' a comma-separated\n"
            "list; for 'match' a pattern (* any run, ? one character, # one digit, [...] a class).\n"
            "\n"
            "exit status:\n"
            "  0    the query ran (whether or not anything matched)\n"
            "  1    server failure: unreachable, refused the API key, failed\n"
            "  2    bad input: a malformed filter or option, a field or operator the server refuses\n"
            "       (the one-line error names it), an unusable --root"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    seq = p.add_argument_group("sequence filters")
    seq.add_argument("--sequence-name", metavar="NAME", help="exact sequence name")
    seq.add_argument("--sequence-match", metavar="GLOB", help="sequence name matching a wildcard pattern")
    seq.add_argument("--sequence-meta", nargs=3, action="append", default=[], metavar=("KEY", "OP", "VALUE"),
                     help="condition on the sequence's user metadata (repeatable)")
    top = p.add_argument_group("topic filters")
    top.add_argument("--topic-name", metavar="NAME", help="exact topic name, e.g. /imu/data")
    top.add_argument("--topic-match", metavar="GLOB", help="topic name matching a wildcard pattern, e.g. '/imu/*'")
    top.add_argument("--tag", metavar="TAG", help="ontology tag of the topic, e.g. IMU")
    top.add_argument("--topic-meta", nargs=3, action="append", default=[], metavar=("KEY", "OP", "VALUE"),
                     help="condition on the topic's user metadata (repeatable)")
    val = p.add_argument_group("value filters")
    val.add_argument("--where", action="append", default=[], metavar="'TAG.FIELD OP VALUE'",
                     help="condition on the rows of topics with that ontology tag (repeatable; see below)")
    out = p.add_argument_group("output")
    out.add_argument("--windows", type=float, metavar="DT_S",
                     help="print each matching topic's time windows of matching rows (all rows without --where on "
                          "its tag); a gap longer than DT_S seconds starts a new window, 0 gives one window")
    out.add_argument("--json", action="store_true", help="print one JSON object (for scripts) instead of text")
    out.add_argument("-v", "--verbose", action="count", default=0, help="log more (-v info, -vv debug)")
    out.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    srv = p.add_argument_group("server (default: embedded server on --root)")
    srv.add_argument("--host", metavar="H", help="Mosaico server host; without it an embedded server is used")
    srv.add_argument("--port", type=int, default=names.DEFAULT_PORT, metavar="P",
                     help=f"Mosaico server port (default {names.DEFAULT_PORT})")
    srv.add_argument("--api-key", metavar="K", default=env_default(auth.ENV_API_KEY),
                     help=f"API key with Read permission (default: ${auth.ENV_API_KEY}; prefer the variable: "
                          "arguments are visible to other users)")
    srv.add_argument("--tls-cert", metavar="PATH", default=env_default(auth.ENV_TLS_CERT_FILE),
                     help=f"CA certificate (PEM) to trust; enables TLS (default: ${auth.ENV_TLS_CERT_FILE})")
    srv.add_argument("--root", metavar="DIR", default=DEFAULT_ROOT,
                     help=f"data directory of the embedded server (default {DEFAULT_ROOT})")
    srv.add_argument("--timeout", type=float, default=5.0, metavar="S", help="connect timeout in seconds (default 5)")
    return p


# --------------------------------------------------------------------------------------
# Filters -> builders
# --------------------------------------------------------------------------------------


def parse_scalar(text: str) -> Any:
    """A command-line value: int, float, ``true``/``false``, or text (surrounding quotes removed)."""
    t = text.strip()
    if len(t) >= 2 and t[0] == t[-1] and t[0] in "'\"":
        return t[1:-1]
    low = t.lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        return int(t)
    except ValueError:
        pass
    try:
        f = float(t)
    except ValueError:
        return t
    return f if math.isfinite(f) else t


def _meta_value(op: str, text: str) -> Any:
    if op == "in":
        values = [parse_scalar(v) for v in text.split(",") if v.strip()]
        if not values:
            raise CliError("`in` needs a comma-separated list of values", 2)
        return values
    if op == "match":
        return text
    return parse_scalar(text)


def add_metadata(builder: QuerySequence | QueryTopic, option: str, key: str, op: str, value: str) -> None:
    """Add ``--sequence-meta`` / ``--topic-meta KEY OP VALUE`` to ``builder``.

    Raises:
        CliError (exit 2): unknown operator or a value the operator does not take, naming the option.
    """
    where = f"{option} {key} {op} {value}"
    if op not in META_OPS:
        raise CliError(f"{where}: unknown operator `{op}`; operators: {', '.join(META_OPS)}", 2)
    try:
        builder.with_user_metadata(key, **{META_OPS[op]: _meta_value(op, value)})
    except CliError as exc:
        raise CliError(f"{where}: {exc}", 2) from None
    except (TypeError, ValueError, AttributeError) as exc:
        raise CliError(f"{where}: {exc}", 2) from None


def _resolve_field(tag: str, path: str, where: str) -> QueryField | None:
    """The :class:`QueryField` at ``path`` under a tag this version knows; None for another tag."""
    model = ontology_models().get(tag)
    if model is None:
        return None
    node: OntologyProxy | QueryField = model.Q
    for seg in path.split("."):
        m = _SEGMENT.match(seg)
        if m is None:
            raise CliError(f"--where {where!r}: bad field path segment `{seg}`", 2)
        if not isinstance(node, OntologyProxy):
            raise CliError(f"--where {where!r}: `{node.path}` has no field `{seg}`", 2)
        try:
            node = getattr(node, m.group("name"))
            spec = m.group("spec")
            if spec is not None:
                if not isinstance(node, OntologyProxy):
                    raise CliError(f"--where {where!r}: `{m.group('name')}` is not a list", 2)
                node = node.any() if spec == "?" else node.all() if spec == "!" else node[int(spec)]
        except (AttributeError, TypeError) as exc:
            raise CliError(f"--where {where!r}: {exc}", 2) from None
    if not isinstance(node, QueryField):
        what = f"fields: {', '.join(node.fields)}" if node.fields else "a list: select [N], [?] or [!]"
        raise CliError(f"--where {where!r}: `{tag}.{path}` is not a leaf field; {what}", 2)
    return node


def parse_where(text: str) -> Expression:
    """One ``--where`` condition as an ontology :class:`Expression`.

    ``TAG.field.path OP value`` with OP one of ``> >= < <= == !=``, or
    ``TAG.field.path between LOW HIGH``. Fields of the tags of
    :func:`~mosaico_bridge.client.query.ontology_models` are checked here (name, type of the
    value, operator); other tags are sent as given for the server to check.

    Raises:
        CliError (exit 2): the condition cannot be parsed or does not fit the field.
    """
    m = _WHERE_BETWEEN.match(text)
    if m is not None:
        field, method, values = m.group("field"), "between", [parse_scalar(m.group("lo")), parse_scalar(m.group("hi"))]
    else:
        m = _WHERE_CMP.match(text)
        if m is None:
            raise CliError(f"--where {text!r}: expected 'TAG.FIELD OP VALUE' (OP one of > >= < <= == !=) "
                           "or 'TAG.FIELD between LOW HIGH'", 2)
        field, method, values = m.group("field"), WHERE_OPS[m.group("op")], [parse_scalar(m.group("value"))]
    if "." not in field or not field.split(".", 1)[0] or not field.split(".", 1)[1]:
        raise CliError(f"--where {text!r}: field `{field}` must be <ontology tag>.<field path>", 2)
    tag, path = field.split(".", 1)
    fld = _resolve_field(tag, path, text)
    try:
        if fld is None:
            if method == "between":
                if values[0] > values[1]:
                    raise ValueError(f"range [{values[0]}, {values[1]}] has min > max")
                return Expression(field, "$between", values)
            return Expression(field, f"${method}", values[0])
        if fld.kind == "numeric" and any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in values):
            raise TypeError(f"field `{field}` is numeric, got {', '.join(repr(v) for v in values)}")
        if fld.kind == "string":
            values = [m.group("value").strip().strip("'\"")] if method != "between" else [str(v) for v in values]
        op = getattr(fld, method)
        return op(*values)
    except (TypeError, ValueError, AttributeError) as exc:
        raise CliError(f"--where {text!r}: {exc}", 2) from None


def build_queries(args: argparse.Namespace) -> tuple[list[Any], QueryOntologyCatalog | None]:
    """The builders of the command line (empty: no filter) and the ontology catalog (or None).

    Raises:
        CliError (exit 2): a malformed filter, naming it.
    """
    builders: list[Any] = []
    seq = QuerySequence()
    try:
        if args.sequence_name is not None:
            seq.with_name(args.sequence_name)
        if args.sequence_match is not None:
            if args.sequence_name is not None:
                raise CliError("--sequence-name and --sequence-match both filter the name: give one", 2)
            seq.with_name_match(args.sequence_match)
    except ValueError as exc:
        raise CliError(f"sequence filter: {exc}", 2) from None
    for key, op, value in args.sequence_meta:
        add_metadata(seq, "--sequence-meta", key, op, value)
    if seq.expressions():
        builders.append(seq)
    top = QueryTopic()
    if args.topic_name is not None and args.topic_match is not None:
        raise CliError("--topic-name and --topic-match both filter the name: give one", 2)
    if args.topic_name is not None:
        top.with_name(args.topic_name)
    if args.topic_match is not None:
        top.with_name_match(args.topic_match)
    if args.tag is not None:
        top.with_ontology_tag(args.tag)
    for key, op, value in args.topic_meta:
        add_metadata(top, "--topic-meta", key, op, value)
    if top.expressions():
        builders.append(top)
    catalog = None
    if args.where:
        catalog = QueryOntologyCatalog()
        for text in args.where:
            expr = parse_where(text)
            try:
                catalog.with_expression(expr)
            except ValueError:
                raise CliError(f"--where {text!r}: field `{expr.path}` is already filtered by another --where", 2) from None
        builders.append(catalog)
    return builders, catalog


# --------------------------------------------------------------------------------------
# Running and printing
# --------------------------------------------------------------------------------------


def utc_text(t_ns: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`` of a time in ns since the Unix epoch."""
    dt = datetime.datetime.fromtimestamp(t_ns // 1_000_000_000, tz=datetime.UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{t_ns % 1_000_000_000:09d}Z"


def _windows(client: MosaicoClient, topic: QueryResponseTopic, catalog: QueryOntologyCatalog | None,
             dt_ns: int) -> list[TopicCluster]:
    own = [e for e in (catalog.expressions() if catalog else []) if e.ontology_tag == topic.ontology_tag]
    if not own:  # no value condition on this tag: windows of all rows
        own = [Expression(f"{topic.ontology_tag}.timestamp_ns", "$leq", _ALL_ROWS_NS)]
    def action(name: str, body: Mapping[str, Any]) -> list[bytes]:
        return client._control.result_bodies(name, dict(body))

    return run_clusterize(action, topic, QueryOntologyCatalog(*own), dt_ns)


def _refusal(host: str, port: int, exc: AuthenticationError) -> str:
    return f"authentication failed: the Mosaico server at {host}:{port} refused {exc.call}: {exc.reason}"


def _connect(args: argparse.Namespace):
    if not args.host:
        root = Path(args.root)
        if not root.is_dir():
            raise CliError(f"--root {root}: no such directory (import data with bag_import first, or give --host)", 2)
        check_store_root(root)
    config = ServerConfig(host=args.host or "", port=args.port, root=args.root, timeout=args.timeout,
                          tls_cert_path=args.tls_cert, api_key=args.api_key, data_connections=1)
    try:
        return connect_or_embed(config)
    except EmbeddedServerError as exc:
        raise CliError(f"--root {exc}", 2) from None
    except (FileNotFoundError, ValueError) as exc:
        raise CliError(f"--tls-cert: {exc}", 2) from None
    except ConnectionError as exc:
        raise CliError(str(exc), 1) from None
    except AuthenticationError as exc:
        raise CliError(_refusal(args.host or "127.0.0.1", args.port, exc), 1) from None


def run(args: argparse.Namespace) -> int:
    """Run the query; print the result. Returns the exit status (0)."""
    builders, catalog = build_queries(args)
    dt_ns: int | None = None
    if args.windows is not None:
        if not math.isfinite(args.windows) or args.windows < 0:
            raise CliError(f"--windows {args.windows}: must be a non-negative number of seconds", 2)
        dt_ns = round(args.windows * 1e9)
    with _connect(args) as conn:
        client = conn.client
        result = client.query(*builders)
        items = list(result) if result is not None else []
        out: list[dict] = []
        for item in items:
            topics = []
            for t in item.topics:
                entry: dict[str, Any] = {"name": t.name, "locator": t.locator, "ontology_tag": t.ontology_tag}
                if dt_ns is not None:
                    entry["windows"] = [
                        {"id": c.id, "start_ns": c.start_ns, "end_ns": c.end_ns,
                         "start": utc_text(c.start_ns), "end": utc_text(c.end_ns)}
                        for c in _windows(client, t.topic, catalog, dt_ns)
                    ]
                topics.append(entry)
            out.append({"name": item.sequence.name, "topics": topics})
    if args.json:
        print(json.dumps({"sequences": out}, indent=2))
        return 0
    for s in out:
        print(f"sequence {s['name']}")
        for t in s["topics"]:
            print(f"  topic {t['name']}  [{t['ontology_tag']}]  locator {t['locator']}")
            for w in t.get("windows", []):
                span = (w["end_ns"] - w["start_ns"]) / 1e9
                print(f"    window {w['id']}: {w['start']} .. {w['end']}  ({w['start_ns']} .. {w['end_ns']} ns, {span:.3f} s)")
    n_topics = sum(len(s["topics"]) for s in out)
    print(f"{len(out)} sequence{'s' if len(out) != 1 else ''}, {n_topics} topic{'s' if n_topics != 1 else ''} matched")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    try:
        return run(args)
    except CliError as exc:
        return fail(PROG, str(exc), exc.code)
    except InvalidArgumentError as exc:  # the server refused a filter: bad input, the reason names the field
        return fail(PROG, f"the server refused the query: {exc.reason if exc.call else exc}", 2)
    except AuthenticationError as exc:
        return fail(PROG, _refusal(args.host or "127.0.0.1", args.port, exc), 1)
    except BrokenPipeError:  # the output's reader stopped early (e.g. `| head`): not a server failure
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit flush
        return 0
    except (MosaicoError, ConnectionError) as exc:
        return fail(PROG, str(exc), 1)
    except KeyboardInterrupt:
        return fail(PROG, "interrupted", 130)


if __name__ == "__main__":
    sys.exit(main())
