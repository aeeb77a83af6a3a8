"""The Rust writer's logs, decoded by a reader written only from docs/FORMAT.md."""

from __future__ import annotations

import random
from pathlib import Path

import crc32c
import pytest
from independent_reader import FormatError, read_log
from wal_samples import EVERY_EVENT, random_event

from actionqueue import _core
from actionqueue.storage.wal import WalFsReader, WalFsWriter


def test_crc32c_package_agrees_with_the_core() -> None:
    assert crc32c.crc32c(b"123456789") == _core.crc32c(b"123456789") == 0xE3069283


def test_every_event_kind_decodes_identically(tmp_path: Path) -> None:
    with WalFsWriter(tmp_path) as w:
        w.append(EVERY_EVENT, "immediate")
        for e in EVERY_EVENT:
            w.append(e, "deferred")
    log = read_log(tmp_path)
    assert log.end is None
    assert [e for _, e in log.events()] == EVERY_EVENT * 2
    assert log.records[0].first_seq == 1
    assert len(log.records[0].events) == len(EVERY_EVENT)
    assert log.records[-1].kind == 2  # the close's sync mark
    assert log.records[-1].durable_through == 2 * len(EVERY_EVENT)
    assert log.records[1].durable_through == len(EVERY_EVENT)  # the first append was synced


@pytest.mark.parametrize("seed", range(3))
def test_random_multi_segment_logs_decode_identically(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    with WalFsWriter(tmp_path, segment_size=8192, preallocate=1024) as w:
        for _ in range(300):
            batch = [random_event(rng) for _ in range(rng.randrange(1, 5))]
            w.append(batch, rng.choice(["immediate", "deferred", "deferred", "deferred"]))
    ours = [(e.sequence, e.event) for e in WalFsReader(tmp_path)]
    theirs = read_log(tmp_path)
    assert len({r.segment for r in theirs.records}) > 3
    assert theirs.events() == ours
    offsets = {(e.segment, e.offset) for e in WalFsReader(tmp_path)}
    assert offsets <= {(r.segment, r.offset) for r in theirs.records}


def test_worked_example_of_the_document(tmp_path: Path) -> None:
    with WalFsWriter(tmp_path, preallocate=0) as w:
        w.append((10, 15), "deferred")
    data = next(tmp_path.glob("*.wal")).read_bytes()
    rec = data[40:82]
    assert rec[:16] == bytes.fromhex("4151524301000000020000000100000001")[:16]
    assert rec[16:32] == (1).to_bytes(8, "little") + (0).to_bytes(8, "little")
    assert rec[32:36] == crc32c.crc32c(b"\x0a\x1e").to_bytes(4, "little")
    assert rec[36:40] == crc32c.crc32c(rec[:36]).to_bytes(4, "little")
    assert rec[40:] == b"\x0a\x1e"


def test_independent_reader_stops_where_the_writer_would_cut(tmp_path: Path) -> None:
    with WalFsWriter(tmp_path, preallocate=0) as w:
        for i in range(5):
            w.append((12, i, i), "immediate")
    seg = next(tmp_path.glob("*.wal"))
    data = seg.read_bytes()
    seg.write_bytes(data[:-42])  # drop the sync mark (40 B) and the last payload byte
    log = read_log(tmp_path)
    assert log.end is not None
    assert log.end[2] == "incomplete payload"
    assert [e for _, e in log.events()] == [(12, i, i) for i in range(4)]
    with WalFsWriter(tmp_path) as w:
        assert w.recovery_report.truncated
        assert w.recovery_report.offset == log.end[1]


def test_independent_reader_rejects_a_flipped_middle_bit(tmp_path: Path) -> None:
    with WalFsWriter(tmp_path, segment_size=4096, preallocate=0) as w:
        for i in range(300):
            w.append((12, i, i), "deferred")
    first = sorted(tmp_path.glob("*.wal"))[0]
    data = bytearray(first.read_bytes())
    data[100] ^= 4
    first.write_bytes(data)
    with pytest.raises(FormatError):
        read_log(tmp_path)
