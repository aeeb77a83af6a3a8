"""WalFsWriter / WalFsReader: round trips, wire validation, sequences, limits, the lock."""

from __future__ import annotations

import enum
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from wal_samples import EVERY_EVENT, SPEC, uid

from actionqueue import _core, errors
from actionqueue.storage.wal import WalFsReader, WalFsWriter, repair, verify


def read_all(path: Path) -> list[tuple[int, tuple[object, ...]]]:
    return [(e.sequence, e.event) for e in WalFsReader(path)]


def test_every_event_kind_round_trips_through_the_log(tmp_path: Path) -> None:
    with WalFsWriter(tmp_path / "wal") as w:
        assert w.append(EVERY_EVENT, "immediate") == (1, len(EVERY_EVENT))
        for ev in EVERY_EVENT:
            w.append(ev, "deferred")
    got = read_all(tmp_path / "wal")
    assert [e for _, e in got] == EVERY_EVENT * 2
    assert [s for s, _ in got] == list(range(1, 2 * len(EVERY_EVENT) + 1))


def test_entries_name_segment_and_offset(tmp_path: Path) -> None:
    with WalFsWriter(tmp_path, segment_size=4096) as w:
        for i in range(300):
            w.append((12, i, i), "deferred")
    entries = list(WalFsReader(tmp_path))
    segments = sorted(p.name for p in tmp_path.glob("*.wal"))
    assert len(segments) > 2
    assert {e.segment for e in entries} == set(segments)
    assert entries[0].offset == 40
    for e in entries:
        data = (tmp_path / e.segment).read_bytes()
        assert data[e.offset : e.offset + 4] == b"AQRC"


def test_seek_starts_at_a_sequence(tmp_path: Path) -> None:
    with WalFsWriter(tmp_path, segment_size=4096) as w:
        for i in range(500):
            w.append((12, i, i), "deferred")
    r = WalFsReader(tmp_path)
    r.seek(321)
    got = list(r)
    assert got[0].sequence == 321
    assert got[0].event == (12, 320, 320)
    assert len(got) == 180


class Durability(enum.Enum):
    IMMEDIATE = 1
    DEFERRED = 2


class FakeCommand:
    def __init__(self, at: int) -> None:
        self.at = at

    def to_wire(self) -> tuple[int, int]:
        return (10, self.at)


def test_commands_with_to_wire_and_durability_enums_are_accepted(tmp_path: Path) -> None:
    with WalFsWriter(tmp_path) as w:
        assert w.append(FakeCommand(5), Durability.IMMEDIATE) == (1, 1)
        assert w.append([FakeCommand(6), (11, 7)], Durability.DEFERRED) == (2, 3)
        with pytest.raises(errors.ValidationError, match="IMMEDIATE or DEFERRED"):
            w.append((10, 1), "sometimes")
        with pytest.raises(errors.WrongTypeError, match="durability"):
            w.append((10, 1), 3)  # type: ignore[arg-type]
    assert read_all(tmp_path) == [(1, (10, 5)), (2, (10, 6)), (3, (11, 7))]


@pytest.mark.parametrize(
    ("event", "error", "message"),
    [
        (
            (1, uid(2), "not-an-id", 0, 5, 6),
            errors.WrongTypeError,
            r"RunCreate.task_id: expected 16 bytes",
        ),
        (
            (1, uid(2), b"short", 0, 5, 6),
            errors.ValidationError,
            r"RunCreate.task_id: an id is 16 bytes, got 5",
        ),
        ((1, uid(2), uid(0), 0, 5, 6), errors.ValidationError, r"RunCreate.task_id: the nil UUID"),
        (
            (1, uid(2), uid(1), "0", 5, 6),
            errors.WrongTypeError,
            r"RunCreate.ordinal: expected int, got str",
        ),
        (
            (1, uid(2), uid(1), -1, 5, 6),
            errors.ValidationError,
            r"RunCreate.ordinal: must be between 0",
        ),
        (
            (1, uid(2), uid(1), 0, 5),
            errors.ValidationError,
            r"RunCreate: expected a tuple of 6 items",
        ),
        (
            (2, uid(2), 3, 9, None, None, 7),
            errors.ValidationError,
            r"RunTransition.to: a run state is 0..8, got 9",
        ),
        ((4, uid(2), uid(3), 7, None, None, 9), errors.ValidationError, r"outcome is 0..6, got 7"),
        ((10, 2**64), errors.ValidationError, r"EnginePause.at: .* does not fit in 64 bits"),
        ((10, True), errors.WrongTypeError, r"EnginePause.at: expected int, got bool"),
        ((99, 1), errors.ValidationError, r"unknown tag 99"),
        ((), errors.ValidationError, r"empty tuple"),
        (
            (0, (*SPEC[:6], (1, "tags-not-a-list", None), None), 1, 2),
            errors.WrongTypeError,
            r"TaskMetadata.tags: expected a list of str",
        ),
        (
            (0, (*SPEC[:4], ((7,), (0, None, None)), *SPEC[5:]), 1, 2),
            errors.ValidationError,
            r"RunPolicy.kind: unknown tag 7",
        ),
    ],
)
def test_bad_wire_tuples_name_the_field(
    tmp_path: Path, event: tuple[object, ...], error: type[Exception], message: str
) -> None:
    with WalFsWriter(tmp_path) as w:
        with pytest.raises(error, match=message):
            w.append([(10, 1), event], "immediate")
        assert w.next_sequence == 1  # nothing written
    assert read_all(tmp_path) == []


def test_batch_errors_say_which_item(tmp_path: Path) -> None:
    with WalFsWriter(tmp_path) as w, pytest.raises(errors.WrongTypeError, match=r"events\[1\]"):
        w.append([(10, 1), (10, "x")], "deferred")


def test_expected_sequence_is_enforced(tmp_path: Path) -> None:
    with WalFsWriter(tmp_path) as w:
        w.append((10, 1), "deferred", expected_sequence=1)
        with pytest.raises(errors.SequenceError) as info:
            w.append((10, 2), "deferred", expected_sequence=5)
        assert (info.value.expected, info.value.got) == (2, 5)
        assert w.append((10, 2), "deferred", expected_sequence=2) == (2, 2)


def test_oversized_record_is_refused_and_nothing_written(tmp_path: Path) -> None:
    with WalFsWriter(tmp_path, max_record_size=1000) as w:
        big = (9, uid(1), "x" * 2000, 1)
        with pytest.raises(
            errors.RecordTooLargeError, match="exceeds the maximum record size of 1000"
        ) as info:
            w.append(big, "immediate")
        assert info.value.max_size == 1000
        assert w.stats().appends == 0
        w.append((10, 1), "immediate")
    assert read_all(tmp_path) == [(1, (10, 1))]


def test_second_writer_in_this_process_is_refused(tmp_path: Path) -> None:
    w = WalFsWriter(tmp_path)
    with pytest.raises(errors.DataDirLockedError, match="is locked") as info:
        WalFsWriter(tmp_path)
    assert info.value.path == str(tmp_path)
    w.close()
    WalFsWriter(tmp_path).close()


@pytest.mark.timeout(30)
def test_second_writer_in_another_process_is_refused(tmp_path: Path) -> None:
    w = WalFsWriter(tmp_path)
    code = textwrap.dedent(f"""
        from actionqueue.storage.wal import WalFsWriter
        from actionqueue.errors import DataDirLockedError
        try:
            WalFsWriter({str(tmp_path)!r})
        except DataDirLockedError as e:
            print("refused", e.path)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20)
    assert out.stdout.strip() == f"refused {tmp_path}", out.stderr
    w.close()


def test_garbage_file_in_the_wal_directory_is_reported_by_name(tmp_path: Path) -> None:
    with WalFsWriter(tmp_path) as w:
        w.append((10, 1), "immediate")
    (tmp_path / "backup.tar").write_bytes(b"junk")
    for opener in (WalFsWriter, WalFsReader, verify):
        with pytest.raises(errors.DataDirError, match=r"backup\.tar") as info:
            opener(tmp_path)
        assert info.value.path.endswith("backup.tar")


def test_garbage_segment_is_a_hard_error_not_silently_removed(tmp_path: Path) -> None:
    tmp_path.mkdir(exist_ok=True)
    junk = tmp_path / "00000000000000000001.wal"
    junk.write_bytes(b"this is not a WAL segment, it is a text file" * 3)
    with pytest.raises(errors.WalCorruptionError, match="bad magic") as info:
        WalFsWriter(tmp_path)
    assert info.value.segment == str(junk)
    assert info.value.offset == 0
    assert junk.exists()


def test_closed_writer_refuses_work(tmp_path: Path) -> None:
    w = WalFsWriter(tmp_path)
    w.close()
    w.close()
    with pytest.raises(errors.ClosedError):
        w.append((10, 1), "deferred")


def test_stats_and_verify(tmp_path: Path) -> None:
    with WalFsWriter(tmp_path) as w:
        w.append([(10, 1), (11, 2)], "immediate")
        w.append((10, 3), "deferred")
        w.flush()
        s = w.stats()
        assert (s.appends, s.events) == (2, 3)
        assert s.syncs >= 2
        assert w.synced_sequence == 3
    v = verify(tmp_path)
    assert (v.events, v.first_sequence, v.last_sequence, v.torn_tail) == (3, 1, 3, None)
    r = repair(tmp_path)
    assert r.segment is None
    assert not r.truncated


def test_reopen_continues_and_reports_nothing_to_recover(tmp_path: Path) -> None:
    with WalFsWriter(tmp_path) as w:
        w.append((10, 1), "immediate")
    with WalFsWriter(tmp_path) as w:
        rep = w.recovery_report
        assert not rep.truncated
        assert rep.last_sequence == 1
        assert w.append((11, 2), "immediate") == (2, 2)


def test_sync_interval_syncs_deferred_appends(tmp_path: Path) -> None:
    import time

    with WalFsWriter(tmp_path, sync_interval=0.01) as w:
        w.append((10, 1), "deferred")
        deadline = time.monotonic() + 5
        while w.synced_sequence < 1:
            assert time.monotonic() < deadline
            time.sleep(0.005)
    with pytest.raises(errors.ValidationError, match="sync_interval"):
        WalFsWriter(tmp_path, sync_interval=-1)


def test_codec_helpers_round_trip(tmp_path: Path) -> None:
    payload = _core.encode_events(EVERY_EVENT)
    assert _core.decode_events(payload, len(EVERY_EVENT)) == EVERY_EVENT
    with pytest.raises(errors.CodecError):
        _core.decode_events(payload[:-1], len(EVERY_EVENT))
