//! The streaming reader: events in log order with their sequence, segment and offset.
//!
//! Memory is one decoded record plus a read buffer, whatever the size of the log. `open_at`
//! starts at a sequence by binary search over segment names, then skips (checksummed but not
//! decoded) records before it inside that one segment. The reader never modifies the log: a
//! crash tail ends the iteration and is described by [`WalReader::tail`]; corruption is an
//! error (the rules are in `scan.rs`). It takes no lock, so it can read a log while its writer
//! appends: it reads the segments listed at open and sees a prefix of the log, never an error
//! caused by the writer (FORMAT §6: the scanner re-reads a spot from the file before it
//! believes damage or a short read there).
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};

use super::dir;
use super::format::{RecordHeader, RecordKind};
use super::scan::{Item, Scanner, Tail};
use crate::codec::decode_batch_into;
use crate::error::CorruptionReason;
use crate::event::Event;
use crate::{CoreError, Result};

/// One event read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadEvent {
    pub sequence: u64,
    /// Index into [`WalReader::segment_paths`].
    pub segment: usize,
    /// Offset of the record holding the event within its segment.
    pub offset: u64,
    pub event: Event,
}

/// One whole record read back: an atomic batch of events with consecutive sequences.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRecord {
    /// Sequence of `events[0]`.
    pub first_seq: u64,
    /// Index into [`WalReader::segment_paths`].
    pub segment: usize,
    /// Offset of the record within its segment.
    pub offset: u64,
    pub events: Vec<Event>,
}

pub struct WalReader {
    scanner: Scanner,
    from: u64,
    pending: std::vec::IntoIter<Event>,
    cur: (usize, u64, u64),
    tail: Option<Tail>,
    records: u64,
    errored: bool,
}

impl WalReader {
    /// Reads the whole log.
    pub fn open(dir: impl AsRef<Path>, max_record_size: u64) -> Result<Self> {
        Self::open_at(dir, max_record_size, 0)
    }

    /// Reads events with sequence `>= from`.
    pub fn open_at(dir: impl AsRef<Path>, max_record_size: u64, from: u64) -> Result<Self> {
        let dir = dir.as_ref();
        if !dir.is_dir() {
            return Err(CoreError::io(
                "open WAL directory",
                dir,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such directory"),
            ));
        }
        let listing = dir::list(dir)?;
        let start = listing.segment_for(from);
        Ok(Self {
            scanner: Scanner::new(listing.segments, start, max_record_size, None, None),
            from,
            pending: Vec::new().into_iter(),
            cur: (0, 0, 0),
            tail: None,
            records: 0,
            errored: false,
        })
    }

    pub fn segment_paths(&self) -> Vec<PathBuf> {
        self.scanner
            .segments()
            .iter()
            .map(|s| s.path.clone())
            .collect()
    }

    /// File name of segment `idx`.
    pub fn segment_name(&self, idx: usize) -> String {
        self.scanner
            .segments()
            .get(idx)
            .map(|s| s.name())
            .unwrap_or_default()
    }

    /// How the log ended, once the iteration is over (a crash tail is `tail.damage`).
    pub fn tail(&self) -> Option<&Tail> {
        self.tail.as_ref()
    }

    /// Records read so far (including skipped ones and sync marks).
    pub fn records_read(&self) -> u64 {
        self.records
    }

    /// The next event, `Ok(None)` at the end of the log. After an error, always `Ok(None)`.
    pub fn next_event(&mut self) -> Result<Option<ReadEvent>> {
        if self.errored {
            return Ok(None);
        }
        let r = self.step();
        self.errored = r.is_err();
        r
    }

    /// The next whole record (recovery replays records, not events, so atomic batches stay
    /// atomic), `Ok(None)` at the end of the log. Records that end before the start sequence
    /// are skipped; a record that straddles it is returned whole (its `first_seq` says so).
    /// Sync marks are skipped. Do not mix with [`next_event`](Self::next_event) mid-record:
    /// events already handed out by it are not returned again.
    pub fn next_record(&mut self) -> Result<Option<ReadRecord>> {
        if self.errored {
            return Ok(None);
        }
        let r = self.step_record();
        self.errored = r.is_err();
        r
    }

    fn step_record(&mut self) -> Result<Option<ReadRecord>> {
        let rest: Vec<Event> = self.pending.by_ref().collect();
        if !rest.is_empty() {
            let (segment, offset, first_seq) = self.cur;
            self.cur.2 += rest.len() as u64;
            return Ok(Some(ReadRecord {
                first_seq,
                segment,
                offset,
                events: rest,
            }));
        }
        if self.tail.is_some() {
            return Ok(None);
        }
        loop {
            match self.scanner.next_item()? {
                Item::End(t) => {
                    self.tail = Some(t);
                    return Ok(None);
                }
                Item::Record {
                    seg,
                    offset,
                    header,
                } => {
                    self.records += 1;
                    if header.kind == RecordKind::SyncMark || header.next_seq() <= self.from {
                        continue;
                    }
                    let events = self.decode(seg, offset, &header)?;
                    self.cur = (seg, offset, header.next_seq());
                    return Ok(Some(ReadRecord {
                        first_seq: header.first_seq,
                        segment: seg,
                        offset,
                        events,
                    }));
                }
            }
        }
    }

    /// Decodes the scanner's current payload; a checksum-valid record that does not decode is
    /// corruption (never a crash tail).
    fn decode(&self, seg: usize, offset: u64, header: &RecordHeader) -> Result<Vec<Event>> {
        let mut events = Vec::with_capacity(header.event_count.min(4096) as usize);
        decode_batch_into(self.scanner.payload(), header.event_count, &mut events).map_err(
            |e| CoreError::WalCorruption {
                segment: self
                    .scanner
                    .segments()
                    .get(seg)
                    .map(|s| s.path.clone())
                    .unwrap_or_default(),
                offset,
                reason: CorruptionReason::Decode(match e {
                    CoreError::Decode(s) => s,
                    other => other.to_string(),
                }),
            },
        )?;
        Ok(events)
    }

    fn step(&mut self) -> Result<Option<ReadEvent>> {
        loop {
            if let Some(event) = self.pending.next() {
                let (segment, offset, seq) = self.cur;
                self.cur.2 += 1;
                if seq < self.from {
                    continue;
                }
                return Ok(Some(ReadEvent {
                    sequence: seq,
                    segment,
                    offset,
                    event,
                }));
            }
            if self.tail.is_some() {
                return Ok(None);
            }
            match self.scanner.next_item()? {
                Item::End(t) => {
                    self.tail = Some(t);
                    return Ok(None);
                }
                Item::Record {
                    seg,
                    offset,
                    header,
                } => {
                    self.records += 1;
                    if header.kind == RecordKind::SyncMark || header.next_seq() <= self.from {
                        continue;
                    }
                    let events = self.decode(seg, offset, &header)?;
                    self.pending = events.into_iter();
                    self.cur = (seg, offset, header.first_seq);
                }
            }
        }
    }
}

impl Iterator for WalReader {
    type Item = Result<ReadEvent>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_event().transpose()
    }
}
