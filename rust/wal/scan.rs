//! Reading records back: one sequential pass over segments, every check of `docs/FORMAT.md`,
//! and the classification of a bad spot as *crash tail* or *corruption*.
//!
//! [`Scanner`] yields each verified record (header checked, payload checksummed, sequence
//! continuous) with its payload in a reused buffer, then a [`Tail`] describing how the log ends.
//! It never truncates anything itself: the writer (at open), [`super::repair`] and the reader
//! decide what to do with the tail. The rules (each names the crash or fault it handles):
//!
//! * **Clean end**: the end of the file, or a zero word where a record would start followed by
//!   zeros only (preallocated space never written).
//! * **Crash tail** (`Tail::damage` is set): damage (incomplete header/payload, bad magic, CRC
//!   mismatch) in the *last* segment such that no valid record after it claims that the damaged
//!   spot was already durable. Handles: a crash during `write` (torn record), a power loss that
//!   kept some of the unsynced pages and not others (a hole, possibly followed by intact records
//!   that were never synced, which the tail scan counts), a crash while creating a segment (the
//!   last segment is shorter than a header and holds only a prefix of one, or zeros).
//! * **Corruption** (hard [`CoreError::WalCorruption`]): damage in any older segment (they are
//!   synced and trimmed before the next one is created, so no crash can tear them); damage in
//!   the last segment when a later valid record's `durable_through` says the damaged record had
//!   been synced (bit rot, a bad disk, someone editing the file); and everything that a checksum
//!   does not excuse — a checksum-valid record that does not decode, a sequence regression or
//!   gap, an unknown record kind, a segment from another WAL, an unsupported version.
//! * **Too large for this reader** (hard [`CoreError::RecordOverReadLimit`], not corruption):
//!   a record whose header claims more payload than the reader's maximum is checked without
//!   allocating for it (payload streamed through the checksum in fixed-size chunks). Intact,
//!   it was written by a writer configured with a larger maximum; damaged or running past the
//!   end of the file, it is damage like any other record and the rules above decide.
//! * **A live writer** (the reader takes no lock): before damage or a short read is believed,
//!   the spot is read again from the file, past the read buffer and with the file's length
//!   taken again (stale preallocated zeros, a record being written, a file grown, or trimmed
//!   by rotation); a spot certified durable is read once more before it is called corruption.
//!   A log nobody writes reads the same bytes again, so no verdict above changes (FORMAT §6).
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::dir::SegmentEntry;
use super::format::{
    RecordHeader, SegmentHeader, RECORD_HEADER_LEN, RECORD_MAGIC, SEGMENT_HEADER_LEN, SEGMENT_MAGIC,
};
use crate::error::CorruptionReason;
use crate::{CoreError, Result};

const READ_BUFFER: usize = 256 * 1024;

/// Valid records found after a bad spot (by searching for record magics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TailScan {
    pub records: u64,
    pub events: u64,
    pub bytes: u64,
    pub max_durable_through: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    pub reason: CorruptionReason,
    /// The segment header itself is unusable: the file holds nothing to keep.
    pub whole_segment: bool,
    pub after: TailScan,
}

/// How the scanned log ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tail {
    /// Index (into the scanned segment list) of the last segment; `None` without segments.
    pub seg: Option<usize>,
    /// Where the valid records of that segment end (the truncation point for a crash tail).
    pub offset: u64,
    /// The file's length when scanned.
    pub file_len: u64,
    /// The header of the last segment, when usable.
    pub header: Option<SegmentHeader>,
    /// The sequence the next record must start at (`None`: no segment read).
    pub next_seq: Option<u64>,
    /// Set when the log ends in a crash tail that must be cut off at `offset`.
    pub damage: Option<Damage>,
}

pub enum Item {
    /// A verified record; its payload is in [`Scanner::payload`].
    Record {
        seg: usize,
        offset: u64,
        header: RecordHeader,
    },
    End(Tail),
}

enum Step {
    Record(RecordHeader),
    /// An intact record (both checksums verified, its payload streamed through CRC32C in
    /// fixed-size chunks) whose payload is larger than this reader's maximum: written by a
    /// writer configured with a larger one. Not damage, and never read into memory.
    OverLimit(RecordHeader),
    /// Clean end of the segment's records.
    End,
    Bad(CorruptionReason),
}

struct Current {
    idx: usize,
    reader: BufReader<File>,
    len: u64,
    pos: u64,
    header: SegmentHeader,
}

pub struct Scanner {
    segs: Vec<SegmentEntry>,
    next_idx: usize,
    cur: Option<Current>,
    expected: Option<u64>,
    wal_id: Option<u64>,
    max_record: u64,
    payload: Vec<u8>,
    finished: bool,
    /// Segments with an index below this are sealed even when nothing follows them in
    /// `segs` (a later segment file existed and was removed as torn at open).
    sealed: usize,
}

impl Scanner {
    /// Scans `segs[start..]`. `expected` is the first sequence the scan must see (when known);
    /// `wal_id` the WAL id segments must carry (when known).
    pub fn new(
        segs: Vec<SegmentEntry>,
        start: usize,
        max_record: u64,
        expected: Option<u64>,
        wal_id: Option<u64>,
    ) -> Self {
        Self {
            segs,
            next_idx: start,
            cur: None,
            expected,
            wal_id,
            max_record,
            payload: Vec::new(),
            finished: false,
            sealed: 0,
        }
    }

    /// Declares `segs[..count]` sealed: damage in them is corruption even in the last one
    /// scanned. Recovery uses it after removing a torn newest segment: the segment before it
    /// was synced and trimmed by the rotation that created the torn one, so no crash can have
    /// torn it (FORMAT §8).
    pub fn sealed_before(mut self, count: usize) -> Self {
        self.sealed = count;
        self
    }

    pub fn segments(&self) -> &[SegmentEntry] {
        &self.segs
    }

    pub fn wal_id(&self) -> Option<u64> {
        self.wal_id
    }

    /// The payload of the record last returned.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    fn hard(&self, idx: usize, offset: u64, reason: CorruptionReason) -> CoreError {
        CoreError::WalCorruption {
            segment: seg_path(&self.segs, idx),
            offset,
            reason,
        }
    }

    fn is_last(&self, idx: usize) -> bool {
        idx + 1 >= self.segs.len()
    }

    /// Whether a crash can have left damage in segment `idx`: only in the last segment, and
    /// only when no later segment file ever followed it (rotation syncs and trims a segment
    /// before it creates the next one).
    fn may_be_torn(&self, idx: usize) -> bool {
        self.is_last(idx) && idx >= self.sealed
    }

    pub fn next_item(&mut self) -> Result<Item> {
        loop {
            if self.finished {
                return Err(CoreError::InvalidArgument("scan already finished".into()));
            }
            if self.cur.is_none() {
                let idx = self.next_idx;
                if idx >= self.segs.len() {
                    self.finished = true;
                    return Ok(Item::End(Tail {
                        seg: None,
                        offset: 0,
                        file_len: 0,
                        header: None,
                        next_seq: self.expected,
                        damage: None,
                    }));
                }
                self.next_idx += 1;
                if let Some(end) = self.open_segment(idx)? {
                    self.finished = true;
                    return Ok(Item::End(end));
                }
            }
            let Some(cur) = self.cur.as_ref() else {
                continue;
            };
            let (idx, offset, header) = (cur.idx, cur.pos, cur.header);
            match self.step()? {
                Step::Record(h) => return self.record(idx, offset, h),
                Step::OverLimit(h) => {
                    // Checksum-valid, so the sequence rules still apply: a record out of
                    // sequence is corruption whatever its size.
                    if let Some(expected) = self.expected {
                        if h.first_seq != expected {
                            self.cur = None;
                            return Err(self.hard(idx, offset, seq_reason(expected, h.first_seq)));
                        }
                    }
                    self.cur = None;
                    return Err(CoreError::RecordOverReadLimit {
                        segment: seg_path(&self.segs, idx),
                        offset,
                        sequence: h.first_seq,
                        size: u64::from(h.payload_len),
                        max: self.max_record,
                    });
                }
                Step::End => {
                    let len = self.cur_len();
                    self.cur = None;
                    if self.is_last(idx) {
                        self.finished = true;
                        return Ok(Item::End(Tail {
                            seg: Some(idx),
                            offset,
                            file_len: len,
                            header: Some(header),
                            next_seq: self.expected,
                            damage: None,
                        }));
                    }
                }
                Step::Bad(reason) => {
                    // Damage in an older segment: those were synced and trimmed before the
                    // next segment was created, so no crash explains it.
                    if !self.may_be_torn(idx) || !is_damage(&reason) {
                        self.cur = None;
                        return Err(self.hard(idx, offset, reason));
                    }
                    let len = self.cur_len();
                    let after = self.scan_after(idx, offset.saturating_add(1))?;
                    let expected = self.expected.unwrap_or(header.first_seq);
                    // A later record certifies the damaged spot was durable: not a crash.
                    if after.records > 0 && after.max_durable_through >= expected {
                        // Unless a live writer finished the record since we read it. The
                        // certifying record was written after the damaged one's write had
                        // returned (appends are serialized, and a sync covered it first), so
                        // a read of it now is authoritative.
                        self.refresh()?;
                        if let Step::Record(h) = self.step()? {
                            return self.record(idx, offset, h);
                        }
                        self.cur = None;
                        return Err(self.hard(idx, offset, reason));
                    }
                    // Crash tail: a torn write, or unsynced pages lost out of order. (Or, in a
                    // live log, the record being written right now: the reader stops before it.)
                    self.cur = None;
                    self.finished = true;
                    return Ok(Item::End(Tail {
                        seg: Some(idx),
                        offset,
                        file_len: len,
                        header: Some(header),
                        next_seq: self.expected,
                        damage: Some(Damage {
                            reason,
                            whole_segment: false,
                            after,
                        }),
                    }));
                }
            }
        }
    }

    fn record(&mut self, idx: usize, offset: u64, h: RecordHeader) -> Result<Item> {
        if let Some(expected) = self.expected {
            if h.first_seq != expected {
                return Err(self.hard(idx, offset, seq_reason(expected, h.first_seq)));
            }
        }
        self.expected = Some(h.next_seq());
        Ok(Item::Record {
            seg: idx,
            offset,
            header: h,
        })
    }

    fn cur_len(&self) -> u64 {
        self.cur.as_ref().map_or(0, |c| c.len)
    }

    /// One step in the current segment, read again from the file before a short read or
    /// damage is believed.
    ///
    /// A reader of a live log races its writer (FORMAT §6): the read buffer may hold zeros
    /// that the writer has since overwritten with records (a stale end-of-records marker,
    /// then records where zeros were expected), a record may be half written, the file may
    /// have grown past the length taken when the segment was opened, or shrunk below it when
    /// rotation trimmed its preallocated zeros (a short read). A re-read takes the length
    /// again and reads past the buffer. On a log nobody writes it reads the same bytes, so
    /// every verdict is unchanged.
    fn step(&mut self) -> Result<Step> {
        let Self {
            cur,
            payload,
            segs,
            max_record,
            ..
        } = self;
        let Some(cur) = cur.as_mut() else {
            return Ok(Step::End);
        };
        let mut rereads = 0;
        loop {
            let r = read_step(cur, payload, *max_record);
            let again = match &r {
                Ok(Step::Bad(reason)) => is_damage(reason) && rereads == 0,
                // The file shrank under the read: at most once per segment (rotation), so a
                // second short read is an error.
                Err(e) => e.kind() == io::ErrorKind::UnexpectedEof && rereads < 2,
                Ok(_) => false,
            };
            if !again {
                return r.map_err(|e| io_err(segs, cur.idx, e));
            }
            rereads += 1;
            refresh(cur).map_err(|e| io_err(segs, cur.idx, e))?;
        }
    }

    /// Takes the current segment's length again and drops the read buffer.
    fn refresh(&mut self) -> Result<()> {
        let Some(cur) = self.cur.as_mut() else {
            return Ok(());
        };
        refresh(cur).map_err(|e| io_err(&self.segs, cur.idx, e))
    }

    /// Opens segment `idx` and checks its header. Returns `Some(tail)` when the log ends here
    /// because the (last) segment's header is torn.
    fn open_segment(&mut self, idx: usize) -> Result<Option<Tail>> {
        let Some(entry) = self.segs.get(idx) else {
            return Ok(None);
        };
        let path = entry.path.clone();
        let name_seq = entry.first_seq;
        let file = File::open(&path).map_err(|e| CoreError::io("open", &path, e))?;
        let len = file
            .metadata()
            .map_err(|e| CoreError::io("stat", &path, e))?
            .len();
        let mut hdr = [0u8; SEGMENT_HEADER_LEN];
        let n = usize::try_from(len.min(SEGMENT_HEADER_LEN as u64)).unwrap_or(0);
        let head = hdr.get_mut(..n).unwrap_or_default();
        file.read_exact_at(head, 0)
            .map_err(|e| CoreError::io("read", &path, e))?;
        let header = match SegmentHeader::decode(hdr.get(..n).unwrap_or_default()) {
            Ok(h) => h,
            Err(reason) => {
                // Crash while creating the segment (only where a rename can reach the disk
                // before the data it names): a short file holding a prefix of a header. Any
                // other bad header — full length, foreign bytes — is corruption, never
                // guessed away (a user's file must not be deleted as "torn").
                let head = hdr.get(..n).unwrap_or_default();
                let torn = self.may_be_torn(idx)
                    && n < SEGMENT_HEADER_LEN
                    && (head.iter().all(|&b| b == 0)
                        || SEGMENT_MAGIC.starts_with(head.get(..n.min(8)).unwrap_or_default()));
                if !torn {
                    return Err(self.hard(idx, 0, reason));
                }
                return Ok(Some(Tail {
                    seg: Some(idx),
                    offset: 0,
                    file_len: len,
                    header: None,
                    next_seq: self.expected,
                    damage: Some(Damage {
                        reason,
                        whole_segment: true,
                        after: TailScan::default(),
                    }),
                }));
            }
        };
        match self.wal_id {
            Some(id) if id != header.wal_id => {
                return Err(self.hard(
                    idx,
                    0,
                    CorruptionReason::ForeignSegment {
                        expected: id,
                        found: header.wal_id,
                    },
                ))
            }
            _ => self.wal_id = Some(header.wal_id),
        }
        if header.first_seq != name_seq {
            return Err(self.hard(
                idx,
                0,
                CorruptionReason::Malformed(format!(
                    "segment named for sequence {name_seq} starts at {}",
                    header.first_seq
                )),
            ));
        }
        if let Some(expected) = self.expected {
            if header.first_seq != expected {
                return Err(self.hard(idx, 0, seq_reason(expected, header.first_seq)));
            }
        }
        self.expected = Some(header.first_seq);
        let mut reader = BufReader::with_capacity(READ_BUFFER, file);
        let mut skip = [0u8; SEGMENT_HEADER_LEN];
        reader
            .read_exact(&mut skip)
            .map_err(|e| CoreError::io("read", &path, e))?;
        self.cur = Some(Current {
            idx,
            reader,
            len,
            pos: SEGMENT_HEADER_LEN as u64,
            header,
        });
        Ok(None)
    }

    /// Valid records of segment `idx` from `from` to its current end. The length is taken
    /// afresh (a live writer may have appended since; rotation may have trimmed the file, in
    /// which case the scan starts again).
    fn scan_after(&self, idx: usize, from: u64) -> Result<TailScan> {
        let Some(entry) = self.segs.get(idx) else {
            return Ok(TailScan::default());
        };
        let path = &entry.path;
        let file = File::open(path).map_err(|e| CoreError::io("open", path, e))?;
        let mut attempts = 0;
        loop {
            let len = file
                .metadata()
                .map_err(|e| CoreError::io("stat", path, e))?
                .len();
            match scan_valid_records(&file, from, len) {
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && attempts < 2 => {
                    attempts += 1;
                }
                r => return r.map_err(|e| CoreError::io("read", path, e)),
            }
        }
    }
}

fn refresh(cur: &mut Current) -> io::Result<()> {
    cur.len = cur.reader.get_ref().metadata()?.len();
    cur.reader.seek(SeekFrom::Start(cur.pos))?;
    Ok(())
}

fn io_err(segs: &[SegmentEntry], idx: usize, e: io::Error) -> CoreError {
    CoreError::io("read", seg_path(segs, idx), e)
}

/// Segment `idx`'s path, for an error (empty if there is no such segment).
fn seg_path(segs: &[SegmentEntry], idx: usize) -> PathBuf {
    segs.get(idx).map(|s| s.path.clone()).unwrap_or_default()
}

fn seq_reason(expected: u64, found: u64) -> CorruptionReason {
    if found < expected {
        CorruptionReason::SequenceRegression {
            previous: expected.saturating_sub(1),
            found,
        }
    } else {
        CorruptionReason::SequenceGap { expected, found }
    }
}

/// Damage a crash can cause (as opposed to checksum-valid nonsense).
fn is_damage(reason: &CorruptionReason) -> bool {
    matches!(
        reason,
        CorruptionReason::IncompleteHeader
            | CorruptionReason::IncompletePayload
            | CorruptionReason::BadMagic
            | CorruptionReason::CrcMismatch { .. }
    )
}

fn read_step(cur: &mut Current, payload: &mut Vec<u8>, max_record: u64) -> io::Result<Step> {
    let remaining = cur.len.saturating_sub(cur.pos);
    if remaining == 0 {
        return Ok(Step::End);
    }
    let mut hdr = [0u8; RECORD_HEADER_LEN];
    let n = usize::try_from(remaining.min(RECORD_HEADER_LEN as u64)).unwrap_or(0);
    let head = hdr.get_mut(..n).unwrap_or_default();
    cur.reader.read_exact(head)?;
    if head.iter().take(4).all(|&b| b == 0) {
        // End-of-records marker: everything after must be preallocated zeros.
        if head.iter().all(|&b| b == 0) && rest_is_zero(&mut cur.reader, remaining - n as u64)? {
            return Ok(Step::End);
        }
        return Ok(Step::Bad(CorruptionReason::BadMagic));
    }
    if n < RECORD_HEADER_LEN {
        return Ok(Step::Bad(CorruptionReason::IncompleteHeader));
    }
    let h = match RecordHeader::decode(&hdr) {
        Ok(h) => h,
        Err(r) => return Ok(Step::Bad(r)),
    };
    if remaining < h.record_len() {
        return Ok(Step::Bad(CorruptionReason::IncompletePayload));
    }
    let len = u64::from(h.payload_len);
    if len > max_record {
        // A length over the limit is not evidence of damage: the header checksum vouches for
        // it, and a writer configured with a larger maximum writes such records. Stream the
        // payload through the checksum (fixed-size chunks, nothing allocated for it): intact,
        // it is reported as too large for this reader; otherwise it is damage like any
        // other (a torn write of a large record, bit rot), judged by the rules above.
        let computed = crc32c_stream(&mut cur.reader, len)?;
        if computed != h.payload_crc {
            return Ok(Step::Bad(CorruptionReason::CrcMismatch {
                stored: h.payload_crc,
                computed,
            }));
        }
        return Ok(Step::OverLimit(h));
    }
    payload.clear();
    payload.resize(usize::try_from(len).unwrap_or(0), 0);
    cur.reader.read_exact(payload)?;
    let computed = crc32c::crc32c(payload);
    if computed != h.payload_crc {
        return Ok(Step::Bad(CorruptionReason::CrcMismatch {
            stored: h.payload_crc,
            computed,
        }));
    }
    cur.pos += h.record_len();
    Ok(Step::Record(h))
}

/// Bytes read at a time when a payload is checksummed without being held in memory.
const CRC_CHUNK: usize = 16 * 1024;

/// CRC32C of the next `n` bytes of `r`, read in [`CRC_CHUNK`]-byte pieces.
fn crc32c_stream(r: &mut impl Read, mut n: u64) -> io::Result<u32> {
    let mut buf = [0u8; CRC_CHUNK];
    let mut crc = 0u32;
    while n > 0 {
        let k = usize::try_from(n.min(CRC_CHUNK as u64)).unwrap_or(0);
        let chunk = buf.get_mut(..k).unwrap_or_default();
        r.read_exact(chunk)?;
        crc = crc32c::crc32c_append(crc, chunk);
        n -= k as u64;
    }
    Ok(crc)
}

fn rest_is_zero(r: &mut impl Read, mut n: u64) -> io::Result<bool> {
    let mut buf = [0u8; 8192];
    while n > 0 {
        let k = usize::try_from(n.min(buf.len() as u64)).unwrap_or(0);
        let chunk = buf.get_mut(..k).unwrap_or_default();
        r.read_exact(chunk)?;
        if chunk.iter().any(|&b| b != 0) {
            return Ok(false);
        }
        n -= k as u64;
    }
    Ok(true)
}

/// Finds every valid record (magic, header checksum, payload checksum, within the file)
/// starting at or after `from`, by searching for the record magic. A record larger than the
/// reader's maximum counts too (it is intact: a writer with a larger maximum wrote it), so a
/// record after a bad spot is never dropped unseen, nor its `durable_through` ignored. Memory:
/// one chunk; payloads are checksummed in fixed-size pieces, whatever length a header claims.
pub fn scan_valid_records(file: &File, from: u64, len: u64) -> io::Result<TailScan> {
    const CHUNK: usize = 1 << 20;
    let mut scan = TailScan::default();
    let mut chunk = vec![0u8; CHUNK];
    let mut off = from;
    while off.saturating_add(RECORD_HEADER_LEN as u64) <= len {
        let n = usize::try_from((len - off).min(CHUNK as u64)).unwrap_or(0);
        let buf = chunk.get_mut(..n).unwrap_or_default();
        file.read_exact_at(buf, off)?;
        let mut resume = None;
        let mut i = 0usize;
        while let Some(rel) = find_magic(buf.get(i..).unwrap_or_default()) {
            let p = off + (i + rel) as u64;
            if let Some(h) = valid_record_at(file, p, len)? {
                scan.records += 1;
                scan.events += u64::from(h.event_count);
                scan.bytes += h.record_len();
                scan.max_durable_through = scan.max_durable_through.max(h.durable_through);
                resume = Some(p + h.record_len());
                break;
            }
            i += rel + 1;
        }
        off = match resume {
            Some(next) => next,
            // Keep 3 bytes of overlap so a magic split across chunks is still found.
            None if n > 3 => off + (n - 3) as u64,
            None => break,
        };
    }
    Ok(scan)
}

fn find_magic(hay: &[u8]) -> Option<usize> {
    hay.windows(RECORD_MAGIC.len())
        .position(|w| w == RECORD_MAGIC)
}

fn valid_record_at(file: &File, p: u64, len: u64) -> io::Result<Option<RecordHeader>> {
    if p.saturating_add(RECORD_HEADER_LEN as u64) > len {
        return Ok(None);
    }
    let mut hdr = [0u8; RECORD_HEADER_LEN];
    file.read_exact_at(&mut hdr, p)?;
    let Ok(h) = RecordHeader::decode(&hdr) else {
        return Ok(None);
    };
    if p.saturating_add(h.record_len()) > len {
        return Ok(None);
    }
    let mut buf = [0u8; CRC_CHUNK];
    let mut crc = 0u32;
    let mut at = p + RECORD_HEADER_LEN as u64;
    let end = p + h.record_len();
    while at < end {
        let k = usize::try_from((end - at).min(CRC_CHUNK as u64)).unwrap_or(0);
        let piece = buf.get_mut(..k).unwrap_or_default();
        file.read_exact_at(piece, at)?;
        crc = crc32c::crc32c_append(crc, piece);
        at += k as u64;
    }
    Ok((crc == h.payload_crc).then_some(h))
}

/// Reads and verifies just the header of a segment file.
pub fn read_segment_header(path: &Path) -> Result<SegmentHeader> {
    let file = File::open(path).map_err(|e| CoreError::io("open", path, e))?;
    let mut hdr = [0u8; SEGMENT_HEADER_LEN];
    let n = file
        .read_at(&mut hdr, 0)
        .map_err(|e| CoreError::io("read", path, e))?;
    SegmentHeader::decode(hdr.get(..n).unwrap_or_default()).map_err(|reason| {
        CoreError::WalCorruption {
            segment: path.to_path_buf(),
            offset: 0,
            reason,
        }
    })
}
