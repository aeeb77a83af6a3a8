"""An independent reader of the WAL, written from docs/FORMAT.md alone.

Pure Python plus the ``crc32c`` package; it shares no code with the Rust implementation, so a
log it decodes identically proves the document complete and the writer faithful to it. It
decodes events into the same wire tuples ``WalFsReader`` yields (docs/DESIGN.md), so the two
can be compared field by field.
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass, field
from typing import Any

import crc32c

SEGMENT_MAGIC = b"AQWALSEG"
RECORD_MAGIC = b"AQRC"
HEADER = 40
NAME = re.compile(r"^(\d{20})\.wal$")


class FormatError(Exception):
    def __init__(self, segment: str, offset: int, reason: str) -> None:
        super().__init__(f"{segment}@{offset}: {reason}")
        self.segment, self.offset, self.reason = segment, offset, reason


@dataclass
class Record:
    segment: str
    offset: int
    kind: int
    first_seq: int
    durable_through: int
    events: list[tuple[Any, ...]]


@dataclass
class Log:
    wal_id: int | None = None
    records: list[Record] = field(default_factory=list)
    end: tuple[str, int, str] | None = None  # where and why reading stopped early

    def events(self) -> list[tuple[int, tuple[Any, ...]]]:
        return [(r.first_seq + i, e) for r in self.records for i, e in enumerate(r.events)]


class Cursor:
    """postcard decoding (FORMAT.md §3)."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ValueError("unexpected end of payload")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def varint(self, limit_bits: int = 64) -> int:
        value, shift = 0, 0
        while True:
            (byte,) = self.take(1)
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
            shift += 7
            if shift >= limit_bits + 7:
                raise ValueError("varint too long")
        if value >= 1 << limit_bits:
            raise ValueError("varint out of range")
        return value

    def u8(self) -> int:
        return self.take(1)[0]

    def u32(self) -> int:
        return self.varint(32)

    def i64(self) -> int:
        z = self.varint(64)
        return (z >> 1) ^ -(z & 1)

    def i32(self) -> int:
        z = self.varint(32)
        return (z >> 1) ^ -(z & 1)

    def boolean(self) -> bool:
        b = self.u8()
        if b > 1:
            raise ValueError("bad bool")
        return b == 1

    def id(self) -> bytes:
        return self.take(16)

    def string(self) -> str:
        return self.take(self.varint(64)).decode("utf-8")

    def bytes_(self) -> bytes:
        return self.take(self.varint(64))

    def option(self, read: Any) -> Any:
        tag = self.u8()
        if tag == 0:
            return None
        if tag == 1:
            return read()
        raise ValueError("bad option tag")

    def strings(self) -> list[str]:
        return [self.string() for _ in range(self.varint(64))]

    def enum(self, n: int) -> int:
        v = self.u32()
        if v >= n:
            raise ValueError(f"unknown enum tag {v}")
        return v


def decode_spec(c: Cursor) -> tuple[Any, ...]:
    sid = c.id()
    handler = c.option(c.string)
    payload = c.bytes_()
    content_type = c.option(c.string)
    kind_tag = c.enum(3)
    if kind_tag == 0:
        kind: tuple[Any, ...] = (0,)
    elif kind_tag == 1:
        kind = (1, c.u32(), c.i64())
    else:
        kind = (2, c.string(), c.string(), c.option(c.u32), c.u32())
    misfire = (c.enum(3), c.option(c.u32), c.option(c.i64))
    max_attempts = c.u32()
    timeout = c.option(c.i64)
    key = c.option(c.string)
    hold = c.enum(2)
    b = c.enum(3)
    backoff: tuple[Any, ...] = (
        (0,) if b == 0 else (1, c.i64()) if b == 1 else (2, c.i64(), c.i64(), c.u32())
    )
    retry_on = (c.boolean(), c.boolean(), c.strings())
    metadata = (c.i32(), c.strings(), c.option(c.string))
    dedupe = c.option(c.string)
    return (
        sid,
        handler,
        payload,
        content_type,
        (kind, misfire),
        (max_attempts, timeout, key, hold, backoff, retry_on),
        metadata,
        dedupe,
    )


def decode_event(c: Cursor) -> tuple[Any, ...]:
    tag = c.enum(13)
    if tag == 0:
        return (0, decode_spec(c), c.i64(), c.i64())
    if tag == 1:
        return (1, c.id(), c.id(), c.u32(), c.i64(), c.i64())
    if tag == 2:
        return (2, c.id(), c.enum(9), c.enum(9), c.option(c.i64), c.option(c.string), c.i64())
    if tag == 3:
        return (3, c.id(), c.id(), c.i64())
    if tag == 4:
        return (4, c.id(), c.id(), c.enum(7), c.option(c.string), c.option(c.bytes_), c.i64())
    if tag in (5, 6):
        return (tag, c.id(), c.string(), c.i64(), c.i64())
    if tag in (7, 8):
        return (tag, c.id(), c.string(), c.i64())
    if tag == 9:
        return (9, c.id(), c.option(c.string), c.i64())
    if tag in (10, 11):
        return (tag, c.i64())
    return (12, c.i64(), c.i64())


def decode_payload(payload: bytes, count: int) -> list[tuple[Any, ...]]:
    c = Cursor(payload)
    events = [decode_event(c) for _ in range(count)]
    if c.pos != len(payload):
        raise ValueError("trailing bytes in payload")
    return events


def read_log(path: str | os.PathLike[str], max_record_size: int = 64 << 20) -> Log:
    """Reads every segment; raises FormatError on anything the document calls corruption.
    A damaged tail of the last segment ends the read (``Log.end``) instead: this reader does
    not implement the durable_through classification, it only reports where reading stopped."""
    names = []
    for name in sorted(os.listdir(path)):
        if name == "LOCK" or name.endswith(".wal.tmp"):
            continue
        m = NAME.match(name)
        if not m:
            raise FormatError(name, 0, "unexpected file")
        names.append((int(m.group(1)), name))
    log = Log()
    expected: int | None = None
    for index, (name_seq, name) in enumerate(names):
        last = index == len(names) - 1
        with open(os.path.join(path, name), "rb") as f:
            data = f.read()
        h = data[:HEADER]
        if len(h) < HEADER:
            raise FormatError(name, 0, "incomplete segment header")
        magic, version, flags, wal_id, first_seq, reserved, hcrc = struct.unpack("<8sIIQQII", h)
        if magic != SEGMENT_MAGIC:
            raise FormatError(name, 0, "bad segment magic")
        if crc32c.crc32c(h[:36]) != hcrc:
            raise FormatError(name, 0, "segment header crc")
        if version != 1 or flags or reserved:
            raise FormatError(name, 0, "version/flags")
        if log.wal_id is not None and wal_id != log.wal_id:
            raise FormatError(name, 0, "foreign segment")
        log.wal_id = wal_id
        if first_seq != name_seq or (expected is not None and first_seq != expected):
            raise FormatError(name, 0, "segment sequence")
        expected = first_seq
        pos = HEADER
        while pos < len(data):
            if data[pos : pos + 4] == b"\0\0\0\0" or (len(data) - pos < 4 and not any(data[pos:])):
                if any(data[pos:]):
                    return _stop(log, name, pos, "garbage after end marker", last)
                break
            rh = data[pos : pos + HEADER]
            if len(rh) < HEADER:
                return _stop(log, name, pos, "incomplete record header", last)
            rmagic, kind, r1, r2, r3, plen, count, fseq, durable, pcrc, rcrc = struct.unpack(
                "<4sBBBBIIQQII", rh
            )
            if rmagic != RECORD_MAGIC:
                return _stop(log, name, pos, "bad record magic", last)
            if crc32c.crc32c(rh[:36]) != rcrc:
                return _stop(log, name, pos, "record header crc", last)
            if (r1, r2, r3) != (0, 0, 0) or kind not in (1, 2):
                raise FormatError(name, pos, "record kind/reserved")
            if plen > max_record_size:
                raise FormatError(name, pos, "record too large")
            payload = data[pos + HEADER : pos + HEADER + plen]
            if len(payload) < plen:
                return _stop(log, name, pos, "incomplete payload", last)
            if crc32c.crc32c(payload) != pcrc:
                return _stop(log, name, pos, "payload crc", last)
            if fseq != expected:
                raise FormatError(name, pos, "sequence")
            if kind == 1 and (count < 1 or plen < 1):
                raise FormatError(name, pos, "empty events record")
            if kind == 2 and (count or plen):
                raise FormatError(name, pos, "sync mark with content")
            try:
                events = decode_payload(payload, count) if kind == 1 else []
            except (ValueError, UnicodeDecodeError) as e:
                raise FormatError(name, pos, f"decode: {e}") from e
            log.records.append(Record(name, pos, kind, fseq, durable, events))
            expected = fseq + count
            pos += HEADER + plen
    return log


def _stop(log: Log, name: str, pos: int, why: str, last: bool) -> Log:
    if not last:
        raise FormatError(name, pos, why)
    log.end = (name, pos, why)
    return log
