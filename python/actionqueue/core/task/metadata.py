"""Task metadata: priority, tags and a description.

>>> m = TaskMetadata(priority=10, tags=["billing", "nightly"])
>>> m.tags
('billing', 'nightly')
>>> TaskMetadata.from_wire(m.to_wire()) == m
True
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from actionqueue.core._validate import (
    I32_MAX,
    I32_MIN,
    check_int,
    check_str,
    check_text,
    unpack,
    wrong_type,
)

__all__ = ["TaskMetadata"]

MetadataWire = tuple[int, list[str], str | None]


@dataclass(frozen=True, slots=True, init=False)
class TaskMetadata:
    """Descriptive data about a task.

    - ``priority``: an int32; higher runs first (default 0).
    - ``tags``: non-empty strings, kept in order with duplicates dropped, stored as a tuple.
    - ``description``: free text or ``None``.
    """

    priority: int
    tags: tuple[str, ...]
    description: str | None

    def __init__(
        self,
        priority: int = 0,
        tags: Iterable[str] = (),
        description: str | None = None,
    ) -> None:
        priority = check_int(priority, "priority", minimum=I32_MIN, maximum=I32_MAX)
        tt = type(tags)
        if (
            tt is not tuple
            and tt is not list
            and (isinstance(tags, (str, bytes)) or not isinstance(tags, Iterable))
        ):
            # A bare string would otherwise become one tag per character.
            raise wrong_type("tags", "a list or tuple of str", tags)
        if tags:
            tags = tuple(dict.fromkeys([check_str(t, "tag") for t in tags]))
        else:
            tags = ()
        if description is not None:
            if not isinstance(description, str):
                raise wrong_type("description", "a str or None", description)
            check_text(description, "description")
        object.__setattr__(self, "priority", priority)
        object.__setattr__(self, "tags", tags)
        object.__setattr__(self, "description", description)

    @classmethod
    def default(cls) -> TaskMetadata:
        """Priority 0, no tags, no description — the seed's ``::default()``."""
        return _DEFAULT_METADATA

    def to_wire(self) -> MetadataWire:
        """``(priority, tags, description)``."""
        return (self.priority, list(self.tags), self.description)

    @classmethod
    def from_wire(cls, t: Any) -> TaskMetadata:
        if t == _DEFAULT_WIRE:  # the common case, without re-validating
            return _DEFAULT_METADATA
        priority, tags, description = unpack(t, 3, "metadata")
        if not isinstance(tags, (list, tuple)):
            raise wrong_type("metadata tags wire value", "a list of str", tags)
        return cls(priority, tags, description)

    def __reduce__(self) -> tuple[Any, tuple[MetadataWire]]:
        return (TaskMetadata.from_wire, (self.to_wire(),))


_DEFAULT_METADATA = TaskMetadata()
_DEFAULT_WIRE = _DEFAULT_METADATA.to_wire()
