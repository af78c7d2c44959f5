"""Bags as a source of serialized messages: ROS 1 (.bag) and ROS 2 (sqlite3, MCAP,
split) through ``rosbags.highlevel.AnyReader``.

Messages come out in log-time order across all selected topics, as
``(topic, timestamp_ns, serialized message)``. The timestamp is, in nanoseconds, the
bag's log time (receive time of the recorder, since the Unix epoch) or, with
``timestamp="header"``, the message's ``header.stamp`` where its type starts with a
``std_msgs/msg/Header`` (:mod:`.header_stamp`), else the log time.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rosbags.highlevel import AnyReader, AnyReaderError
from rosbags.typesys import Stores, get_typestore

from .header_stamp import HeaderStampError, header_stamp_reader
from .topic_filter import TopicFilter

if TYPE_CHECKING:
    from typing import Self

log = logging.getLogger("mosaico_bridge.sources")

#: Typestore used for bags that store no message definitions (old rosbag2 metadata).
FALLBACK_STORE = Stores.ROS2_HUMBLE


#: Where row timestamps come from: the bag's log time, or the message's header.stamp.
TIMESTAMP_SOURCES = ("log", "header")

#: The timestamp source of a BagSource built without one (see :func:`default_timestamp`).
_DEFAULT_TIMESTAMP: contextvars.ContextVar[str] = contextvars.ContextVar("mosaico_bag_timestamp", default="log")


@contextlib.contextmanager
def default_timestamp(source: str) -> Iterator[None]:
    """Within the block, a :class:`BagSource` made without ``timestamp`` uses ``source``
    (``"log"`` or ``"header"``): for callers that build their BagSource through code that
    does not pass the choice on (``importer.import_bags``).

    Raises:
        ValueError: ``source`` is not one of :data:`TIMESTAMP_SOURCES`.
    """
    if source not in TIMESTAMP_SOURCES:
        raise ValueError(f"timestamp source must be one of {', '.join(TIMESTAMP_SOURCES)}, got {source!r}")
    token = _DEFAULT_TIMESTAMP.set(source)
    try:
        yield
    finally:
        _DEFAULT_TIMESTAMP.reset(token)


class _FallbackTypestore:
    """:data:`FALLBACK_STORE`, loaded only when a bag stores no message definitions.

    rosbags' AnyReader reads nothing of its ``default_typestore`` but ``fielddefs``, and
    only for such bags; building the store costs ~40 ms of every import otherwise.
    """

    @property
    def fielddefs(self) -> dict:
        return get_typestore(FALLBACK_STORE).fielddefs


class BagSourceError(ValueError):
    """A bag that cannot be opened or read; the message names the bag."""


@dataclass(frozen=True)
class BagTopic:
    """One topic of the opened bags.

    ``encoding`` is ``"cdr"`` (ROS 2) or ``"ros1"``; ``message_count`` comes from the
    bag index and ``connections`` counts the publishers recorded on it;
    ``timestamp_source`` is ``"log"`` or ``"header"`` (what :meth:`BagSource.messages`
    yields as the timestamp of this topic's messages).
    """

    name: str
    msgtype: str
    encoding: str
    message_count: int
    connections: int
    timestamp_source: str = "log"


class BagSource:
    """The selected topics of one or more bags of the same ROS generation.

    Use as a context manager::

        with BagSource([Path("run.mcap")], TopicFilter.of(["/imu/.*"])) as bag:
            for topic, t_ns, raw in bag.messages():
                ...

    ``timestamp``: ``"log"`` (bag log time) or ``"header"`` (header.stamp where the type
    has one); None takes the :func:`default_timestamp` of the caller (``"log"``).

    Raises:
        ValueError (constructor): an unknown ``timestamp``.
        BagSourceError (on ``open``): a path is missing, given twice, not a bag, corrupt,
            or a topic carries two types.
    """

    def __init__(
        self,
        paths: Sequence[Path | str],
        topic_filter: TopicFilter | None = None,
        timestamp: str | None = None,
    ) -> None:
        if not paths:
            raise BagSourceError("no bag given")
        self.paths = [Path(p) for p in paths]
        self.topic_filter = topic_filter or TopicFilter()
        self.timestamp = _DEFAULT_TIMESTAMP.get() if timestamp is None else timestamp
        if self.timestamp not in TIMESTAMP_SOURCES:
            raise ValueError(f"timestamp source must be one of {', '.join(TIMESTAMP_SOURCES)}, got {self.timestamp!r}")
        self._stamp_readers: dict[str, object] = {}
        self._reader: AnyReader | None = None
        self.topics: dict[str, BagTopic] = {}
        self.skipped_topics: list[str] = []

    # ---------------------------------------------------------------- lifecycle
    def open(self) -> Self:
        for path in self.paths:
            if not path.exists():
                raise BagSourceError(f"bag not found: {path}")
        check_distinct(self.paths)
        try:
            reader = AnyReader(self.paths, default_typestore=_FallbackTypestore())  # type: ignore[arg-type]
            reader.open()
        except (AnyReaderError, Exception) as exc:  # noqa: BLE001 - rosbags raises many unrelated error classes on a bad bag; re-raised as BagSourceError
            raise BagSourceError(f"cannot open bag {', '.join(map(str, self.paths))}: {_one_line(exc)}") from None
        self._reader = reader
        self._index_topics()
        return self

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def __enter__(self) -> Self:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- content
    @property
    def reader(self) -> AnyReader:
        if self._reader is None:
            raise RuntimeError("BagSource is not open")
        return self._reader

    @property
    def typestore(self):  # rosbags Typestore with every definition the bags hold
        return self.reader.typestore

    @property
    def encoding(self) -> str:
        return "cdr" if self.reader.is2 else "ros1"

    @property
    def message_count(self) -> int:
        """Messages on the selected topics."""
        return sum(t.message_count for t in self.topics.values())

    @property
    def start_time_ns(self) -> int:
        return int(self.reader.start_time)

    @property
    def end_time_ns(self) -> int:
        return int(self.reader.end_time)

    def _index_topics(self) -> None:
        by_topic: dict[str, list] = {}
        for conn in self.reader.connections:
            by_topic.setdefault(conn.topic, []).append(conn)
        for name in sorted(by_topic):
            conns = by_topic[name]
            if not self.topic_filter(name):
                self.skipped_topics.append(name)
                continue
            types = sorted({c.msgtype for c in conns})
            if len(types) > 1:
                raise BagSourceError(f"topic {name} carries several message types: {', '.join(types)}")
            reader = None
            if self.timestamp == "header":
                reader = header_stamp_reader(types[0], self.typestore, self.encoding)
                if reader is not None:
                    self._stamp_readers[name] = reader
            self.topics[name] = BagTopic(
                name=name,
                msgtype=types[0],
                encoding=self.encoding,
                message_count=sum(c.msgcount for c in conns),
                connections=len(conns),
                timestamp_source="header" if reader is not None else "log",
            )

    def messages(self) -> Iterator[tuple[str, int, memoryview | bytes]]:
        """Yield ``(topic, timestamp_ns, serialized_message)`` of the selected topics in
        log-time order; ``timestamp_ns`` as the topic's ``timestamp_source`` says.

        Raises:
            BagSourceError: if the bag turns out corrupt while reading, or (header
                timestamps) a message is too short to hold its header.stamp.
        """
        conns = [c for c in self.reader.connections if c.topic in self.topics]
        if not conns:
            return
        stamps = self._stamp_readers
        try:
            for conn, timestamp, rawdata in self.reader.messages(connections=conns):
                read_stamp = stamps.get(conn.topic)
                if read_stamp is not None:
                    try:
                        timestamp = read_stamp(rawdata)  # type: ignore[operator]
                    except HeaderStampError as exc:
                        raise BagSourceError(
                            f"topic {conn.topic} in {', '.join(map(str, self.paths))}, message logged at "
                            f"{timestamp} ns: cannot read header.stamp: {exc}"
                        ) from None
                yield conn.topic, timestamp, rawdata
        except BagSourceError:
            raise
        except Exception as exc:  # noqa: BLE001 - a corrupt bag surfaces as any error of rosbags' readers; re-raised as BagSourceError
            raise BagSourceError(f"corrupt bag {', '.join(map(str, self.paths))}: {_one_line(exc)}") from None


def check_distinct(paths: Sequence[Path | str]) -> None:
    """Refuse a recording given twice: the same file or directory (after resolving
    symbolic links, or a hard link to it), or a rosbag2 directory together with one of
    the files inside it (its split files are read through the directory).

    Raises:
        BagSourceError: naming both paths.
    """
    seen: list[tuple[Path, Path]] = []  # (as given, resolved)
    for given in map(Path, paths):
        resolved = given.resolve()
        for other, other_resolved in seen:
            if resolved == other_resolved or _same_file(resolved, other_resolved):
                raise BagSourceError(f"bag given twice: {other} and {given} are the same bag")
            if other_resolved in resolved.parents:
                raise BagSourceError(f"bag given twice: {given} is inside the bag directory {other}; give the directory once")
            if resolved in other_resolved.parents:
                raise BagSourceError(f"bag given twice: {other} is inside the bag directory {given}; give the directory once")
        seen.append((given, resolved))


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:
        return False


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if isinstance(exc, LookupError) or len(text) < 16:
        text = f"{type(exc).__name__} {text}".strip()
    return text
