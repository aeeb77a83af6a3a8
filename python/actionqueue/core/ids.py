"""Identifiers: :class:`TaskId`, :class:`RunId` and :class:`AttemptId`.

Each wraps a 128-bit UUID, stored as its 16 raw bytes (which is also how ids cross into the
Rust core). Generated ids are UUID v4; any non-nil UUID is accepted from outside. Ids of one
class are totally ordered by their bytes; ids of different classes never compare equal and
cannot be ordered against each other (mixing a ``RunId`` up with a ``TaskId`` is a bug).

>>> tid = TaskId("6f1c2a9e-3b7d-4c2e-9a51-0d8e7f6a5b4c")
>>> tid
TaskId('6f1c2a9e-3b7d-4c2e-9a51-0d8e7f6a5b4c')
>>> TaskId.from_bytes(tid.bytes) == tid
True
>>> TaskId.new() != TaskId.new()
True
"""

from __future__ import annotations

import builtins
import os
from typing import Any, ClassVar, NoReturn, TypeVar
from uuid import UUID

from actionqueue.errors import InvalidIdError, WrongTypeError

__all__ = ["AttemptId", "RunId", "TaskId"]

_I = TypeVar("_I", bound="_Id")

_NIL = bytes(16)
_new = object.__new__


# Id generation is on the submit hot path: one os.urandom call per id costs a syscall, so ids
# are drawn from a pool filled 256 at a time (same bits as uuid.uuid4(): version 4, RFC 4122
# variant, from the OS CSPRNG). list.pop() is atomic, so threads need no lock; a child process
# drops the inherited pool so parent and child never hand out the same ids.
_POOL_IDS = 256
_POOL_BYTES = 16 * _POOL_IDS
_V4_MASK = int.from_bytes((b"\xff" * 6 + b"\x0f\xff\x3f" + b"\xff" * 7) * _POOL_IDS, "big")
_V4_BITS = int.from_bytes((bytes(6) + b"\x40\x00\x80" + bytes(7)) * _POOL_IDS, "big")
_pool: list[builtins.bytes] = []
_pop_random = _pool.pop


def _fresh_block() -> builtins.bytes:
    """``_POOL_IDS`` fresh version-4 ids, joined (one ``os.urandom`` call)."""
    raw = int.from_bytes(os.urandom(_POOL_BYTES), "big")
    return ((raw & _V4_MASK) | _V4_BITS).to_bytes(_POOL_BYTES, "big")


def _refill() -> None:
    data = _fresh_block()
    _pool.extend([data[i : i + 16] for i in range(0, _POOL_BYTES, 16)])


def random_ids(n: int) -> list[builtins.bytes]:
    """``n`` fresh version-4 ids (16 bytes each) from the id pool. Unlike a small
    ``os.urandom`` call (a ``getrandom`` syscall that releases the GIL, so a busy thread may
    have to wait its turn to get it back), this costs a syscall only once per pool refill."""
    out = []
    pop = _pop_random
    for _ in range(n):
        while True:
            try:
                out.append(pop())  # one atomic pop per id: threads never share one
                break
            except IndexError:
                _refill()
    return out


def random_id_bytes(n: int) -> builtins.bytes:
    """``16 * n`` random bytes: ``n`` ids of :func:`random_ids`, joined. Whole blocks of
    ``_POOL_IDS`` ids come straight from the OS (no id object per id: what a batch of a
    thousand tasks draws), the rest from the pool."""
    blocks, rest = divmod(n, _POOL_IDS)
    if not blocks:
        return b"".join(random_ids(n))
    parts = [_fresh_block() for _ in range(blocks)]
    if rest:
        parts.append(b"".join(random_ids(rest)))
    return b"".join(parts)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_pool.clear)


class _Id:
    """Shared implementation; only the concrete subclasses are public."""

    __slots__ = ("_b",)
    _b: builtins.bytes
    _kind: ClassVar[str] = "id"

    def __init__(self, value: object) -> None:
        cls = type(self)
        if type(value) is cls:
            b = value._b
        elif isinstance(value, str):
            b = _parse_str(value, cls._kind)
        elif isinstance(value, UUID):
            b = value.bytes
        elif isinstance(value, (bytes, bytearray, memoryview)):
            b = bytes(value)
            if len(b) != 16:
                raise InvalidIdError(f"{cls._kind} must be 16 bytes, got {len(b)} bytes: {b!r}")
        else:
            raise WrongTypeError(
                f"{cls._kind} must be a {cls.__name__}, uuid.UUID, str or 16 bytes, "
                f"got {type(value).__name__} {value!r}"
            )
        if b == _NIL:
            raise InvalidIdError(f"{cls._kind} must not be the nil UUID, got {value!r}")
        _set_b(self, b)

    # --- constructors --------------------------------------------------------------------

    @classmethod
    def new(cls: type[_I]) -> _I:
        """A fresh random (version 4) id."""
        while True:
            try:
                b = _pop_random()
                break
            except IndexError:
                _refill()
        obj = _new(cls)
        _set_b(obj, b)
        return obj

    @classmethod
    def from_str(cls: type[_I], text: str) -> _I:
        """Parse the text form (hyphenated, braces, ``urn:uuid:`` or 32 hex digits)."""
        if not isinstance(text, str):
            raise WrongTypeError(f"{cls._kind} text must be a str, got {type(text).__name__}")
        return cls(text)

    @classmethod
    def from_bytes(cls: type[_I], data: builtins.bytes) -> _I:
        """Build from 16 raw bytes (the wire form)."""
        # The hot path from the Rust core: skip the generic dispatch of __init__.
        if type(data) is bytes and len(data) == 16 and data != _NIL:
            obj = _new(cls)
            _set_b(obj, data)
            return obj
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise WrongTypeError(
                f"{cls._kind} bytes must be bytes, got {type(data).__name__} {data!r}"
            )
        return cls(data)

    @classmethod
    def from_uuid(cls: type[_I], value: UUID) -> _I:
        if not isinstance(value, UUID):
            raise WrongTypeError(
                f"{cls._kind} must be a uuid.UUID, got {type(value).__name__} {value!r}"
            )
        return cls(value)

    from_wire = from_bytes

    # --- views ---------------------------------------------------------------------------

    @property
    def bytes(self) -> builtins.bytes:
        """The 16 raw bytes (big-endian UUID, as ``uuid.UUID.bytes``)."""
        return self._b

    @property
    def uuid(self) -> UUID:
        return UUID(bytes=self._b)

    @property
    def hex(self) -> str:
        return self._b.hex()

    def to_wire(self) -> builtins.bytes:
        """The form that crosses into the Rust core: 16 raw bytes."""
        return self._b

    def __str__(self) -> str:
        h = self._b.hex()
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}('{self}')"

    # --- value semantics -----------------------------------------------------------------

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __hash__(self) -> int:
        return hash(self._b)

    def __eq__(self, other: object) -> bool:
        if type(other) is type(self):
            return self._b == other._b
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        if type(other) is type(self):
            return self._b != other._b
        return NotImplemented

    def __lt__(self, other: object) -> bool:
        if type(other) is type(self):
            return self._b < other._b
        return NotImplemented

    def __le__(self, other: object) -> bool:
        if type(other) is type(self):
            return self._b <= other._b
        return NotImplemented

    def __gt__(self, other: object) -> bool:
        if type(other) is type(self):
            return self._b > other._b
        return NotImplemented

    def __ge__(self, other: object) -> bool:
        if type(other) is type(self):
            return self._b >= other._b
        return NotImplemented

    # Immutable, so copies can be the object itself; pickling goes through the raw bytes
    # because the default slot-state protocol would call the blocked __setattr__.
    def __copy__(self: _I) -> _I:
        return self

    def __deepcopy__(self: _I, memo: Any) -> _I:
        return self

    def __reduce__(self) -> tuple[Any, tuple[builtins.bytes]]:
        return (type(self).from_bytes, (self._b,))


def _parse_str(text: str, kind: str) -> bytes:
    try:
        return UUID(text).bytes
    except ValueError:
        raise InvalidIdError(
            f"{kind} must be a UUID like '6f1c2a9e-3b7d-4c2e-9a51-0d8e7f6a5b4c', got {text!r}"
        ) from None


# Writes the slot directly, bypassing the immutability guard in __setattr__.
_set_b = vars(_Id)["_b"].__set__


class TaskId(_Id):
    """Identifies a task (durable intent). See the module docs for the accepted forms."""

    __slots__ = ()
    _kind = "task_id"


class RunId(_Id):
    """Identifies one run (scheduled occurrence) of a task."""

    __slots__ = ()
    _kind = "run_id"


class AttemptId(_Id):
    """Identifies one attempt (try) of a run."""

    __slots__ = ()
    _kind = "attempt_id"
