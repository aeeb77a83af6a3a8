from __future__ import annotations

import copy
import pickle
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actionqueue.core.ids import AttemptId, RunId, TaskId, random_id_bytes, random_ids
from actionqueue.errors import ActionQueueError, InvalidIdError, WrongTypeError

ID_CLASSES = [TaskId, RunId, AttemptId]
SAMPLE = "6f1c2a9e-3b7d-4c2e-9a51-0d8e7f6a5b4c"

non_nil_bytes = st.binary(min_size=16, max_size=16).filter(lambda b: b != bytes(16))
non_nil_uuids = non_nil_bytes.map(lambda b: uuid.UUID(bytes=b))


@pytest.mark.parametrize("cls", ID_CLASSES)
def test_new_is_uuid4_and_unique(cls: type[TaskId]) -> None:
    ids = {cls.new() for _ in range(1000)}
    assert len(ids) == 1000
    for i in list(ids)[:50]:
        assert i.uuid.version == 4
        assert i.uuid.variant == uuid.RFC_4122


@pytest.mark.parametrize("cls", ID_CLASSES)
def test_constructor_accepts_every_form(cls: type[TaskId]) -> None:
    u = uuid.UUID(SAMPLE)
    forms: list[object] = [SAMPLE, u, u.bytes, bytearray(u.bytes), memoryview(u.bytes)]
    forms += [SAMPLE.upper(), "{" + SAMPLE + "}", "urn:uuid:" + SAMPLE, u.hex]
    expected = cls(u)
    for f in forms:
        assert cls(f) == expected
    assert cls(expected) == expected
    assert cls.from_str(SAMPLE) == expected
    assert cls.from_bytes(u.bytes) == expected
    assert cls.from_uuid(u) == expected
    assert cls.from_wire(expected.to_wire()) == expected


def test_views() -> None:
    t = TaskId(SAMPLE)
    assert str(t) == SAMPLE
    assert repr(t) == f"TaskId('{SAMPLE}')"
    assert repr(RunId(SAMPLE)) == f"RunId('{SAMPLE}')"
    assert t.bytes == uuid.UUID(SAMPLE).bytes
    assert t.uuid == uuid.UUID(SAMPLE)
    assert t.hex == uuid.UUID(SAMPLE).hex
    assert t.to_wire() == t.bytes


@pytest.mark.parametrize("cls", ID_CLASSES)
@pytest.mark.parametrize(
    "nil", [bytes(16), uuid.UUID(int=0), "00000000-0000-0000-0000-000000000000"]
)
def test_nil_rejected(cls: type[TaskId], nil: object) -> None:
    with pytest.raises(InvalidIdError, match="nil") as ei:
        cls(nil)
    assert cls._kind in str(ei.value)
    assert isinstance(ei.value, ValueError)
    assert isinstance(ei.value, ActionQueueError)


def test_nil_rejected_by_from_bytes_fast_path() -> None:
    with pytest.raises(InvalidIdError, match="task_id must not be the nil UUID"):
        TaskId.from_bytes(bytes(16))


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("not-a-uuid", r"task_id must be a UUID .* got 'not-a-uuid'"),
        ("", r"task_id must be a UUID .* got ''"),
        (b"\x01" * 15, r"task_id must be 16 bytes, got 15 bytes"),
        (b"\x01" * 17, r"task_id must be 16 bytes, got 17 bytes"),
    ],
)
def test_malformed_rejected(value: object, match: str) -> None:
    with pytest.raises(InvalidIdError, match=match):
        TaskId(value)


@pytest.mark.parametrize("value", [1, 1.5, None, [1], uuid.UUID(SAMPLE).int, True])
def test_wrong_types_rejected(value: object) -> None:
    with pytest.raises(
        WrongTypeError, match=r"task_id must be a TaskId, uuid.UUID, str or 16"
    ) as ei:
        TaskId(value)
    assert type(value).__name__ in str(ei.value)
    assert isinstance(ei.value, TypeError)


def test_other_id_class_rejected() -> None:
    r = RunId.new()
    with pytest.raises(WrongTypeError, match="got RunId"):
        TaskId(r)  # type: ignore[arg-type]


def test_typed_constructors_check_types() -> None:
    with pytest.raises(WrongTypeError, match="task_id text must be a str"):
        TaskId.from_str(b"x" * 16)  # type: ignore[arg-type]
    with pytest.raises(WrongTypeError, match="task_id bytes must be bytes"):
        TaskId.from_bytes(SAMPLE)  # type: ignore[arg-type]
    with pytest.raises(WrongTypeError, match=r"task_id must be a uuid.UUID, got str"):
        TaskId.from_uuid(SAMPLE)  # type: ignore[arg-type]
    with pytest.raises(InvalidIdError, match="16 bytes, got 3"):
        TaskId.from_bytes(b"abc")
    assert TaskId.from_bytes(bytearray(uuid.UUID(SAMPLE).bytes)) == TaskId(SAMPLE)


def test_immutable() -> None:
    t = TaskId.new()
    with pytest.raises(AttributeError):
        t._b = bytes(16)  # type: ignore[misc]
    with pytest.raises(AttributeError):
        t.foo = 1  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        del t._b


def test_classes_are_distinct() -> None:
    t, r = TaskId(SAMPLE), RunId(SAMPLE)
    assert t != r
    assert t != uuid.UUID(SAMPLE)
    assert t != SAMPLE
    assert len({t, r}) == 2
    with pytest.raises(TypeError):
        _ = t < r  # type: ignore[operator]
    with pytest.raises(TypeError):
        _ = t <= SAMPLE  # type: ignore[operator]


def test_copy_and_pickle() -> None:
    t = AttemptId.new()
    assert copy.copy(t) is t
    assert copy.deepcopy(t) is t
    for proto in range(pickle.HIGHEST_PROTOCOL + 1):
        u = pickle.loads(pickle.dumps(t, protocol=proto))
        assert u == t
        assert type(u) is AttemptId


def test_slots_no_dict() -> None:
    assert not hasattr(TaskId.new(), "__dict__")


@given(non_nil_uuids)
def test_roundtrip_str_bytes_uuid(u: uuid.UUID) -> None:
    for cls in ID_CLASSES:
        i = cls(u)
        assert cls(str(i)) == i
        assert cls.from_bytes(i.bytes) == i
        assert cls.from_uuid(i.uuid) == i
        assert str(i) == str(u)
        assert hash(cls(str(u))) == hash(i)


@given(non_nil_bytes, non_nil_bytes)
def test_order_is_byte_order(a: bytes, b: bytes) -> None:
    x, y = RunId.from_bytes(a), RunId.from_bytes(b)
    assert (x < y) == (a < b)
    assert (x <= y) == (a <= b)
    assert (x > y) == (a > b)
    assert (x >= y) == (a >= b)
    assert (x == y) == (a == b)
    assert (x != y) == (a != b)
    # Byte order is also UUID int order and canonical-string order.
    assert (x < y) == (x.uuid.int < y.uuid.int) == (str(x) < str(y))


@given(st.lists(non_nil_bytes, max_size=30))
def test_sorting_matches_bytes(items: list[bytes]) -> None:
    assert [i.bytes for i in sorted(TaskId.from_bytes(b) for b in items)] == sorted(items)


@pytest.mark.parametrize("n", [0, 1, 255, 256, 257, 1000, 2048])
def test_random_id_bytes_are_fresh_uuid4s(n: int) -> None:
    """Whole blocks come straight from the OS, the rest from the pool: every id is a
    version-4 RFC 4122 UUID, none repeats (within the call or with the pool's)."""
    data = random_id_bytes(n)
    assert len(data) == 16 * n
    ids = [uuid.UUID(bytes=data[i : i + 16]) for i in range(0, len(data), 16)]
    assert all(u.version == 4 and u.variant == uuid.RFC_4122 for u in ids)
    pooled = [uuid.UUID(bytes=b) for b in random_ids(300)]
    assert len(set(ids) | set(pooled)) == n + 300
