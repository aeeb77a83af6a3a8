//! Byte layout of segment and record headers (the normative text is `docs/FORMAT.md`).
//!
//! ```text
//! segment header (40 bytes, at offset 0 of every segment file; integers little-endian)
//! +--------+---------+-------+--------+-----------+----------+------------+
//! | magic  | version | flags | wal_id | first_seq | reserved | header_crc |
//! | 8: "AQWALSEG" | u32 | u32 = 0 | u64 | u64   | 4 x 0x00 | u32        |
//! +--------+---------+-------+--------+-----------+----------+------------+
//!   0        8         12      16       24          32         36..40
//!   header_crc = crc32c(bytes 0..36)
//!
//! record header (40 bytes, followed by payload_len payload bytes)
//! +-------+------+----------+-------------+-------------+-----------+-----------------+-------------+------------+
//! | magic | kind | reserved | payload_len | event_count | first_seq | durable_through | payload_crc | header_crc |
//! | "AQRC"| u8   | 3 x 0x00 | u32         | u32         | u64       | u64             | u32         | u32        |
//! +-------+------+----------+-------------+-------------+-----------+-----------------+-------------+------------+
//!   0       4      5          8             12            16          24                32            36..40
//!   payload_crc = crc32c(payload); header_crc = crc32c(bytes 0..36) (covers payload_crc, so
//!   one chain of checksums covers every header field and every payload byte)
//! ```
//!
//! A record whose first four bytes are zero marks the end of a segment's records: what follows
//! must be zero too (preallocated space). No valid record starts with zero bytes.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use crate::error::CorruptionReason;
use crate::FORMAT_VERSION;

pub const SEGMENT_MAGIC: [u8; 8] = *b"AQWALSEG";
pub const SEGMENT_HEADER_LEN: usize = 40;
pub const RECORD_MAGIC: [u8; 4] = *b"AQRC";
pub const RECORD_HEADER_LEN: usize = 40;

/// What a record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordKind {
    /// `event_count >= 1` events, sequences `first_seq ..= first_seq + event_count - 1`.
    Events = 1,
    /// No events (`event_count = 0`, `payload_len = 0`, `first_seq` = the next sequence):
    /// written after the final sync of a clean close; certifies `durable_through`.
    SyncMark = 2,
}

impl RecordKind {
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::Events),
            2 => Some(Self::SyncMark),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    pub version: u32,
    pub wal_id: u64,
    pub first_seq: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    pub kind: RecordKind,
    pub payload_len: u32,
    pub event_count: u32,
    pub first_seq: u64,
    /// Every event with a sequence `<=` this was on stable storage when this record was
    /// written (0: nothing known). Recovery uses it to tell a crash's torn tail from damage to
    /// data that was already durable.
    pub durable_through: u64,
    pub payload_crc: u32,
}

impl RecordHeader {
    /// Sequence after this record's last event.
    pub fn next_seq(&self) -> u64 {
        self.first_seq.saturating_add(u64::from(self.event_count))
    }

    pub fn record_len(&self) -> u64 {
        RECORD_HEADER_LEN as u64 + u64::from(self.payload_len)
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        a.copy_from_slice(s);
    }
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(at..at + 8) {
        a.copy_from_slice(s);
    }
    u64::from_le_bytes(a)
}

fn put(b: &mut [u8], at: usize, v: &[u8]) {
    if let Some(s) = b.get_mut(at..at + v.len()) {
        s.copy_from_slice(v);
    }
}

impl SegmentHeader {
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut b = [0u8; SEGMENT_HEADER_LEN];
        put(&mut b, 0, &SEGMENT_MAGIC);
        put(&mut b, 8, &self.version.to_le_bytes());
        put(&mut b, 16, &self.wal_id.to_le_bytes());
        put(&mut b, 24, &self.first_seq.to_le_bytes());
        let crc = crc32c::crc32c(b.get(..36).unwrap_or_default());
        put(&mut b, 36, &crc.to_le_bytes());
        b
    }

    /// Parses and verifies a segment header. `b` may be short (then: incomplete header).
    pub fn decode(b: &[u8]) -> Result<Self, CorruptionReason> {
        let Some(b) = b.get(..SEGMENT_HEADER_LEN) else {
            return Err(CorruptionReason::IncompleteHeader);
        };
        if b.get(..8) != Some(&SEGMENT_MAGIC[..]) {
            return Err(CorruptionReason::BadMagic);
        }
        let stored = u32_at(b, 36);
        let computed = crc32c::crc32c(b.get(..36).unwrap_or_default());
        if stored != computed {
            return Err(CorruptionReason::CrcMismatch { stored, computed });
        }
        let version = u32_at(b, 8);
        if version != FORMAT_VERSION {
            return Err(CorruptionReason::UnsupportedVersion(version));
        }
        if u32_at(b, 12) != 0 || u32_at(b, 32) != 0 {
            return Err(CorruptionReason::Malformed(
                "segment flags/reserved bytes are not zero".into(),
            ));
        }
        Ok(Self {
            version,
            wal_id: u64_at(b, 16),
            first_seq: u64_at(b, 24),
        })
    }
}

impl RecordHeader {
    /// Writes the header into `b[..40]`, computing `header_crc`.
    pub fn encode_into(&self, b: &mut [u8]) {
        let Some(b) = b.get_mut(..RECORD_HEADER_LEN) else {
            return;
        };
        put(b, 0, &RECORD_MAGIC);
        put(b, 4, &[self.kind as u8, 0, 0, 0]);
        put(b, 8, &self.payload_len.to_le_bytes());
        put(b, 12, &self.event_count.to_le_bytes());
        put(b, 16, &self.first_seq.to_le_bytes());
        put(b, 24, &self.durable_through.to_le_bytes());
        put(b, 32, &self.payload_crc.to_le_bytes());
        let crc = crc32c::crc32c(b.get(..36).unwrap_or_default());
        put(b, 36, &crc.to_le_bytes());
    }

    /// Parses and verifies a record header (magic, checksum, kind, reserved bytes, the
    /// kind's shape). Does not look at the payload.
    pub fn decode(b: &[u8]) -> Result<Self, CorruptionReason> {
        let Some(b) = b.get(..RECORD_HEADER_LEN) else {
            return Err(CorruptionReason::IncompleteHeader);
        };
        if b.get(..4) != Some(&RECORD_MAGIC[..]) {
            return Err(CorruptionReason::BadMagic);
        }
        let stored = u32_at(b, 36);
        let computed = crc32c::crc32c(b.get(..36).unwrap_or_default());
        if stored != computed {
            return Err(CorruptionReason::CrcMismatch { stored, computed });
        }
        let raw_kind = b.get(4).copied().unwrap_or(0);
        let Some(kind) = RecordKind::from_u8(raw_kind) else {
            return Err(CorruptionReason::UnknownRecordKind(raw_kind));
        };
        if b.get(5..8) != Some(&[0u8, 0, 0][..]) {
            return Err(CorruptionReason::Malformed(
                "record reserved bytes are not zero".into(),
            ));
        }
        let h = Self {
            kind,
            payload_len: u32_at(b, 8),
            event_count: u32_at(b, 12),
            first_seq: u64_at(b, 16),
            durable_through: u64_at(b, 24),
            payload_crc: u32_at(b, 32),
        };
        let shape_ok = match kind {
            RecordKind::Events => h.event_count >= 1 && h.payload_len >= 1,
            RecordKind::SyncMark => h.event_count == 0 && h.payload_len == 0,
        };
        if !shape_ok {
            return Err(CorruptionReason::Malformed(format!(
                "{kind:?} record with {} events and {} payload bytes",
                h.event_count, h.payload_len
            )));
        }
        Ok(h)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_and_detect_every_bit_flip() {
        let h = RecordHeader {
            kind: RecordKind::Events,
            payload_len: 77,
            event_count: 3,
            first_seq: 42,
            durable_through: 41,
            payload_crc: 0xDEADBEEF,
        };
        let mut b = [0u8; RECORD_HEADER_LEN];
        h.encode_into(&mut b);
        assert_eq!(RecordHeader::decode(&b).unwrap(), h);
        for bit in 0..RECORD_HEADER_LEN * 8 {
            let mut c = b;
            c[bit / 8] ^= 1 << (bit % 8);
            assert!(RecordHeader::decode(&c).is_err(), "bit {bit}");
        }
        let s = SegmentHeader {
            version: FORMAT_VERSION,
            wal_id: 7,
            first_seq: 1,
        };
        let b = s.encode();
        assert_eq!(SegmentHeader::decode(&b).unwrap(), s);
        for bit in 0..SEGMENT_HEADER_LEN * 8 {
            let mut c = b;
            c[bit / 8] ^= 1 << (bit % 8);
            assert!(SegmentHeader::decode(&c).is_err(), "bit {bit}");
        }
        assert_eq!(
            SegmentHeader::decode(&b[..10]),
            Err(CorruptionReason::IncompleteHeader)
        );
    }
}
