"""Breaking the WAL on purpose: truncation at every offset, every bit flipped, SIGKILL,
many threads, repair."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from actionqueue import errors
from actionqueue.storage.wal import WalFsReader, WalFsWriter, repair

HEADER = 40


def read_all(path: Path) -> list[tuple[int, tuple[object, ...]]]:
    return [(e.sequence, e.event) for e in WalFsReader(path)]


def record_ends(segment: bytes) -> list[tuple[int, int]]:
    """(end offset, event count) of every record of a segment, from the record headers."""
    out = []
    pos = HEADER
    while pos + HEADER <= len(segment) and segment[pos : pos + 4] == b"AQRC":
        length = int.from_bytes(segment[pos + 8 : pos + 12], "little")
        count = int.from_bytes(segment[pos + 12 : pos + 16], "little")
        pos += HEADER + length
        out.append((pos, count))
    return out


def write_sample_log(path: Path, records: int, **opts: int) -> list[tuple[int, tuple[object, ...]]]:
    with WalFsWriter(path, **opts) as w:
        for i in range(records):
            batch = [(12, i, k) for k in range(1 + i % 4)]  # batches of 1..4 events
            w.append(batch, "immediate" if i % 3 == 0 else "deferred")
    return read_all(path)


@pytest.mark.timeout(120)
def test_truncation_at_every_offset_of_the_last_segment_recovers_the_committed_prefix(
    fast_dir: Path,
) -> None:
    opts = {"segment_size": 4096, "preallocate": 512}
    full = write_sample_log(fast_dir, 260, **opts)
    segments = sorted(fast_dir.glob("*.wal"))
    assert len(segments) >= 3
    last = segments[-1]
    original = last.read_bytes()
    before_last = sum(1 for s, _ in full if s < int(last.stem))
    ends = record_ends(original)
    assert ends, "the last segment holds records"
    boundaries = {HEADER} | {end for end, _ in ends}
    for cut in range(len(original) + 1):
        last.write_bytes(original[:cut])
        with WalFsWriter(fast_dir, **opts) as w:
            report = w.recovery_report
        committed = before_last + sum(n for end, n in ends if end <= cut)
        got = read_all(fast_dir)
        assert got == full[:committed], f"cut at {cut}"
        assert report.last_sequence == committed, f"cut at {cut}"
        torn = cut < HEADER or (cut < ends[-1][0] and cut not in boundaries)
        assert report.truncated == torn, f"cut at {cut}"
        # Put the original bytes back (recovery may have removed or cut the file).
        for extra in fast_dir.glob("*.wal"):
            if extra > last:
                extra.unlink()
        last.write_bytes(original)


@pytest.mark.timeout(120)
def test_every_bit_flip_is_detected_never_wrong_data(fast_dir: Path) -> None:
    opts = {"segment_size": 1 << 20, "preallocate": 64}
    full = write_sample_log(fast_dir, 6, **opts)
    (segment,) = fast_dir.glob("*.wal")
    original = segment.read_bytes()
    ends = record_ends(original)
    events_end = ends[-2][0]  # the last record is the sync mark written at close
    assert ends[-1] == (events_end + HEADER, 0)
    outcomes = {"hard": 0, "tail": 0}
    for bit in range(len(original) * 8):
        data = bytearray(original)
        data[bit // 8] ^= 1 << (bit % 8)
        segment.write_bytes(data)
        if bit // 8 < events_end:
            # Damage to records certified durable (by later records or the close mark).
            with pytest.raises(errors.WalCorruptionError) as info:
                WalFsWriter(fast_dir, **opts)
            assert info.value.segment == str(segment)
            outcomes["hard"] += 1
        else:
            # The close's sync mark or the zero padding: a crash-like tail, cut and reported.
            with WalFsWriter(fast_dir, **opts) as w:
                report = w.recovery_report
            assert report.truncated, f"bit {bit} undetected"
            assert report.bytes_dropped > 0
            assert read_all(fast_dir)[: len(full)] == full
            outcomes["tail"] += 1
        segment.write_bytes(original)
    assert outcomes["hard"] == events_end * 8
    assert outcomes["tail"] == (len(original) - events_end) * 8


CHILD = textwrap.dedent("""
    import os, sys
    from actionqueue.storage.wal import WalFsWriter
    w = WalFsWriter(sys.argv[1], segment_size=64 * 1024)
    out = os.fdopen(1, "w", buffering=1)
    i = w.next_sequence
    while True:
        n = 1 + i % 3
        first, last = w.append([(12, i + k, i + k) for k in range(n)], "immediate")
        assert first == i
        out.write(f"{last}\\n")
        i = last + 1
""")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("trial", range(3))
def test_sigkill_loses_no_acknowledged_immediate_append(tmp_path: Path, trial: int) -> None:
    rng = random.Random(trial)
    acked = 0
    for _round in range(2):  # kill, reopen, append more, kill again
        target = acked + rng.randrange(50, 400)
        with subprocess.Popen(
            [sys.executable, "-c", CHILD, str(tmp_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ) as proc:
            assert proc.stdout is not None
            assert proc.stderr is not None
            for line in proc.stdout:
                acked = int(line)
                if acked >= target:
                    break
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            assert acked >= target, proc.stderr.read()
        got = read_all(tmp_path)
        assert len(got) >= acked
        assert got == [(s, (12, s, s)) for s in range(1, len(got) + 1)]


@pytest.mark.timeout(60)
def test_many_threads_appending_immediate_share_fsyncs(tmp_path: Path) -> None:
    threads, per_thread = 32, 40
    results: list[list[int]] = [[] for _ in range(threads)]
    with WalFsWriter(tmp_path) as w:
        barrier = threading.Barrier(threads)

        def run(t: int) -> None:
            barrier.wait()
            for i in range(per_thread):
                first, _ = w.append((12, t, i), "immediate")
                results[t].append(first)

        pool = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
        for th in pool:
            th.start()
        for th in pool:
            th.join(timeout=50)
            assert not th.is_alive(), "deadlock"
        stats = w.stats()
    seqs = sorted(s for r in results for s in r)
    assert seqs == list(range(1, threads * per_thread + 1))
    assert stats.appends == threads * per_thread
    assert stats.syncs < stats.appends / 4, stats
    got = read_all(tmp_path)
    assert sorted(e[1:] for _, e in got) == sorted(
        (t, i) for t in range(threads) for i in range(per_thread)
    )
    # Each thread's appends are in its own order in the log.
    for t in range(threads):
        assert [e[2] for _, e in got if e[1] == t] == list(range(per_thread))


def test_middle_corruption_is_a_hard_error_and_repair_reports_before_cutting(
    tmp_path: Path,
) -> None:
    full = write_sample_log(tmp_path, 240, segment_size=4096, preallocate=0)
    segments = sorted(tmp_path.glob("*.wal"))
    assert len(segments) >= 3
    victim = segments[1]
    data = bytearray(victim.read_bytes())
    first_record = record_ends(bytes(data))[0]
    data[HEADER + HEADER] ^= 0x10  # the first payload byte of the first record
    victim.write_bytes(data)
    with pytest.raises(errors.WalCorruptionError, match="crc mismatch") as info:
        list(WalFsReader(tmp_path))
    assert (info.value.segment, info.value.offset) == (str(victim), HEADER)
    # The writer checks only the last segment at open; the reader (replay) finds it.
    report = repair(tmp_path)
    assert report.segment == str(victim)
    assert report.offset == HEADER
    assert not report.truncated
    assert not report.crash_tail
    kept = int(victim.stem) - 1
    assert report.last_good_sequence == kept
    assert report.events_after == len(full) - kept - first_record[1]
    assert report.later_segments == tuple(str(s) for s in segments[2:])
    assert victim.read_bytes() == bytes(data)  # reporting changed nothing
    report = repair(tmp_path, truncate_at_first_corruption=True)
    assert report.truncated
    assert read_all(tmp_path) == full[:kept]
    with WalFsWriter(tmp_path) as w:
        assert w.next_sequence == kept + 1


@pytest.mark.parametrize("torn", [b"", b"\0" * 10, b"AQWAL"], ids=["empty", "zeros", "magic"])
def test_damage_before_a_torn_newest_segment_is_a_hard_error(tmp_path: Path, torn: bytes) -> None:
    # Deferred appends only: no record certifies another durable, so only the rule "a segment
    # followed by another file is sealed" tells this damage from a crash tail.
    with WalFsWriter(tmp_path, segment_size=4096, preallocate=0) as w:
        for i in range(120):
            w.append([(12, i, 0)], "deferred")
    *_, sealed, newest = sorted(tmp_path.glob("*.wal"))
    newest.write_bytes(torn)  # a crash while creating the newest segment
    data = bytearray(sealed.read_bytes())
    data[HEADER + HEADER] ^= 0x01  # the first payload byte of its first record
    sealed.write_bytes(data)
    with pytest.raises(errors.WalCorruptionError, match="crc mismatch") as info:
        WalFsWriter(tmp_path)
    assert (info.value.segment, info.value.offset) == (str(sealed), HEADER)
    assert sealed.read_bytes() == bytes(data)
    assert newest.read_bytes() == torn  # nothing removed either
    # Undamaged, the torn segment is removed and reported, and every sealed record kept.
    data[HEADER + HEADER] ^= 0x01
    sealed.write_bytes(data)
    kept = int(newest.stem) - 1
    with WalFsWriter(tmp_path) as w:
        report = w.recovery_report
        assert report.truncated
        assert report.removed_files == (str(newest),)
        assert report.last_sequence == kept
    assert not newest.exists()
    assert [seq for seq, _ in read_all(tmp_path)] == list(range(1, kept + 1))


def test_repair_refuses_while_a_writer_holds_the_lock(tmp_path: Path) -> None:
    with WalFsWriter(tmp_path), pytest.raises(errors.DataDirLockedError):
        repair(tmp_path)


def test_leftover_temporary_segment_is_removed_and_reported(tmp_path: Path) -> None:
    write_sample_log(tmp_path, 3)
    tmp = tmp_path / "00000000000000000999.wal.tmp"
    tmp.write_bytes(b"half-created")
    with WalFsWriter(tmp_path) as w:
        assert w.recovery_report.removed_files == (str(tmp),)
    assert not tmp.exists()


def test_copy_of_a_live_log_is_readable(tmp_path: Path) -> None:
    # A copy taken while the writer runs (like a crash) reads up to the last record.
    w = WalFsWriter(tmp_path / "a")
    w.append([(10, 1), (11, 2)], "immediate")
    shutil.copytree(tmp_path / "a", tmp_path / "b", ignore=shutil.ignore_patterns("LOCK"))
    w.close()
    assert read_all(tmp_path / "b") == [(1, (10, 1)), (2, (11, 2))]
