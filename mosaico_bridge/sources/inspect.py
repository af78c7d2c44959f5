"""A dry run of a bag import: what :func:`mosaico_bridge.importer.import_bags` would
write, and every problem it would refuse, found by reading the bags only.

Per selected topic: the ROS type, the Arrow layout (an ontology tag, or the generic
layout derived from the message definition) from
:func:`mosaico_bridge.conversion.make_converter`, the message count, the first and last
timestamp (ns, as the import would stamp the rows), and the estimated Arrow bytes
(:meth:`TopicConverter.estimate_row_bytes` summed over the serialized messages).
Messages are read, not decoded, so a message that does not deserialize is found only by
a real import. Nothing is written anywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..conversion import ConversionError, make_converter
from ..protocol import names
from ..protocol.errors import InvalidArgumentError
from .bag import BagSource, BagSourceError
from .topic_filter import TopicFilter


@dataclass
class TopicReport:
    """One selected topic. Times in ns; ``arrow_bytes`` is None when the type has no converter."""

    topic: str
    msgtype: str
    encoding: str
    timestamp_source: str
    ontology_tag: str | None = None
    is_generic: bool = False
    messages: int = 0
    first_ns: int | None = None
    last_ns: int | None = None
    arrow_bytes: int | None = 0
    serialized_bytes: int = 0
    problem: str | None = None

    @property
    def layout(self) -> str:
        if self.ontology_tag is None:
            return "-"
        return f"generic ({self.ontology_tag})" if self.is_generic else self.ontology_tag


@dataclass
class ImportPlan:
    """What an import of ``bags`` would do. ``problems`` are the one-line errors a real
    import would stop at, in the order it checks them (the first is the one it gives)."""

    bags: list[str]
    sequence: str
    topics: list[TopicReport] = field(default_factory=list)
    skipped_topics: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def messages(self) -> int:
        return sum(t.messages for t in self.topics)

    @property
    def arrow_bytes(self) -> int:
        return sum(t.arrow_bytes or 0 for t in self.topics)


def inspect_bags(
    bags: Sequence[Path | str],
    sequence: str,
    *,
    topic_filter: TopicFilter | None = None,
    timestamp: str = "log",
    sequence_exists: Callable[[str], bool] | None = None,
    on_start: Callable[[BagSource], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> ImportPlan:
    """Read ``bags`` as an import into ``sequence`` would; return the plan and its problems.

    Args:
        timestamp: ``"log"`` or ``"header"`` (see :class:`BagSource`).
        sequence_exists: asks the target whether ``sequence`` exists already (None: not asked).
        on_start: called with the opened source; on_progress: with messages read since the last call.

    Raises:
        BagSourceError: a bag is missing, given twice, not a bag or corrupt: nothing can
            be listed (a real import stops there too).
        ValueError: unknown ``timestamp``.
    """
    plan = ImportPlan(bags=[str(b) for b in bags], sequence=sequence)
    try:
        names.validate_sequence_name(sequence)
    except InvalidArgumentError as exc:
        plan.problems.append(str(exc))
    with BagSource(bags, topic_filter, timestamp=timestamp) as source:
        plan.skipped_topics = list(source.skipped_topics)
        if not source.topics:
            plan.problems.append(
                f"no topic selected in {', '.join(map(str, bags))} "
                f"(bag topics: {', '.join(source.skipped_topics) or 'none'})"
            )
        reports: dict[str, TopicReport] = {}
        converters: dict[str, Any] = {}
        conversion_problems, name_problems = [], []
        for name, t in source.topics.items():
            report = TopicReport(name, t.msgtype, t.encoding, t.timestamp_source)
            try:
                conv = make_converter(t.msgtype, source.typestore, t.encoding)
                converters[name] = conv
                report.ontology_tag, report.is_generic = conv.ontology_tag, conv.is_generic
            except ConversionError as exc:
                report.problem, report.arrow_bytes = str(exc), None
                conversion_problems.append(str(exc))
            try:
                names.validate_topic_name(name)
            except InvalidArgumentError as exc:
                report.problem = "; ".join(filter(None, [report.problem, str(exc)]))
                name_problems.append(str(exc))
            reports[name] = report
        plan.problems += conversion_problems + name_problems
        if sequence_exists is not None and sequence_exists(sequence):
            plan.problems.append(f"sequence {sequence!r} already exists on the server")
        if on_start:
            on_start(source)
        count = 0
        for topic, t_ns, raw in source.messages():
            r = reports[topic]
            r.messages += 1
            r.serialized_bytes += len(raw)
            if r.first_ns is None or t_ns < r.first_ns:
                r.first_ns = t_ns
            if r.last_ns is None or t_ns > r.last_ns:
                r.last_ns = t_ns
            converter = converters.get(topic)
            if converter is not None and r.arrow_bytes is not None:
                r.arrow_bytes += converter.estimate_row_bytes(len(raw))
            count += 1
            if on_progress and count >= 4096:
                on_progress(count)
                count = 0
        if on_progress and count:
            on_progress(count)
        plan.topics = [reports[n] for n in sorted(reports)]
    return plan


__all__ = ["BagSourceError", "ImportPlan", "TopicReport", "inspect_bags"]
