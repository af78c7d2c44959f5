"""Topic selection shared by bag import and the live bridge.

A pattern selects a topic if it equals the topic name or, read as a Python regular
expression, matches the whole name (``re.fullmatch``), as rosbag2's ``--regex`` does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class TopicFilter:
    """Include / exclude patterns. No include pattern means "every topic".

    Raises:
        ValueError: on construction, naming a pattern that is not a valid regular expression.
    """

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    _compiled: tuple[tuple[re.Pattern[str], ...], tuple[re.Pattern[str], ...]] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "_compiled", (self._compile(self.include), self._compile(self.exclude)))

    @classmethod
    def of(cls, include: Iterable[str] | None = None, exclude: Iterable[str] | None = None) -> TopicFilter:
        return cls(tuple(include or ()), tuple(exclude or ()))

    @staticmethod
    def _compile(patterns: Sequence[str]) -> tuple[re.Pattern[str], ...]:
        compiled = []
        for pattern in patterns:
            try:
                compiled.append(re.compile(pattern))
            except re.error as exc:
                raise ValueError(f"invalid topic pattern {pattern!r}: {exc}") from None
        return tuple(compiled)

    @staticmethod
    def _any(name: str, raw: Sequence[str], compiled: Sequence[re.Pattern[str]]) -> bool:
        return any(name == p or rx.fullmatch(name) for p, rx in zip(raw, compiled))

    def __call__(self, topic: str) -> bool:
        inc, exc = self._compiled
        if self.include and not self._any(topic, self.include, inc):
            return False
        return not self._any(topic, self.exclude, exc)
