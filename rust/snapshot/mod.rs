//! Snapshots: a compact, checksummed, versioned binary image of the whole projection at a
//! WAL sequence.
//!
//! ```text
//! offset  size  field
//! 0       8     magic  "AQSNAPSH"
//! 8       4     format version (u32 LE), currently 4 (3 and 2 are still read)
//! 12      4     flags (u32 LE), 0; a reader refuses unknown flags
//! 16      8     sequence of the last event the image includes (u64 LE)
//! 24      8     body length in bytes (u64 LE)
//! 32      4     CRC32C of the body (u32 LE)
//! 36      4     CRC32C of bytes 0..36 (u32 LE)
//! 40      n     body: log id (u64 LE, version 4) ++ postcard(hot image) ++ cold section
//!               (state/image.rs, state/cold.rs); the log id is the WAL's `wal_id`, 0 when
//!               the snapshot was written outside an authority (bound to no log)
//!               hot image = (sequence, paused_at, live tasks and non-cold runs by creation
//!               sequence, each hot task's run list); cold section = terminal runs and
//!               finished tasks as length-prefixed postcard records, then (version 3)
//!               their offsets and id lookup tables (state/cold_table.rs)
//! ```
//!
//! The body holds persisted fields (plus run lists); indexes are rebuilt on load. The cold
//! section is used in place as the loaded projection's cold store (a large file is mapped,
//! not read), so loading a million terminal runs is a CRC pass and a sequential head parse
//! per record (for the terminal indexes); records are found through the section's tables.
//! Writing it is a copy of the records already encoded plus the tables (outside the owner's
//! lock: [`Capture`]). The exact layout is in docs/FORMAT.md, "Snapshots". Decoding
//! never panics: every length is checked against the input and a configured maximum before
//! anything is allocated for it, and a decoded image that breaks a reducer invariant is
//! refused. Files are named `snapshot-<sequence, 20 digits>.aqs` and written atomically
//! ([`files::write_atomic`]).
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

pub mod files;
#[cfg(test)]
mod tests;

use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::sync::Arc;

use crate::error::{CoreError, CorruptionReason, Result};
use crate::state::cold::{Buf, ColdView, Seg};
use crate::state::image::HotImage;
use crate::state::Projection;

pub use files::{
    list, load_file, load_file_bound, load_newest, log_id_of, remove_older, set_aside,
    write_atomic, write_capture, LoadReport, SnapshotFile,
};

pub const MAGIC: [u8; 8] = *b"AQSNAPSH";
/// Version 4: the log id of the WAL it was taken from, then version 3's body (written).
/// Version 3 (hot image + cold section with lookup tables, bound to no log) is still read, and
/// version 2 (the same without the tables) through the slower path that builds maps at load;
/// version 1 (one postcard image) is refused: recovery then falls back to an older snapshot
/// or the log.
pub const VERSION: u32 = 4;
/// The first version whose body starts with the log id.
const LOG_ID_SINCE: u32 = 4;
/// Bytes of the log id at the start of a version-4 body.
pub(crate) const LOG_ID_LEN: usize = 8;
/// The oldest version still read.
pub const OLDEST_READ_VERSION: u32 = 2;
pub const HEADER_LEN: usize = 40;
/// Largest snapshot body read by default (8 GiB).
pub const DEFAULT_MAX_SNAPSHOT_SIZE: u64 = 8 << 30;

/// The fixed header of a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub version: u32,
    pub sequence: u64,
    pub body_len: u64,
    pub body_crc: u32,
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        a.copy_from_slice(s);
    }
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(at..at + 8) {
        a.copy_from_slice(s);
    }
    u64::from_le_bytes(a)
}

/// Everything a snapshot file needs, taken from the projection under the owner's lock:
/// the hot part already encoded (O(live records)) and a view of the cold store (shared
/// segments). Writing it ([`Capture::write_to`]) needs no access to the projection.
#[derive(Debug)]
pub struct Capture {
    sequence: u64,
    hot: Vec<u8>,
    cold: ColdView,
    /// The `wal_id` of the log the state was read from (0: none; see [`Capture::bound_to`]).
    log_id: u64,
}

impl Capture {
    /// Freezes what finished since the last capture into the cold store (see
    /// `state/cold.rs`), encodes the live rest and takes a view of the cold store.
    pub fn take(p: &mut Projection) -> Result<Self> {
        p.freeze()?;
        let hot = postcard::to_allocvec(&p.hot_image())
            .map_err(|e| CoreError::Decode(format!("snapshot encoding failed: {e}")))?;
        Ok(Self {
            sequence: p.latest_sequence(),
            hot,
            cold: p.cold_view(),
            log_id: 0,
        })
    }

    /// Marks the snapshot as the state of the log whose `wal_id` is `log_id`: recovery then
    /// never loads it on top of another log (a snapshot copied between data directories).
    #[must_use]
    pub fn bound_to(mut self, log_id: u64) -> Self {
        self.log_id = log_id;
        self
    }

    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// Writes header + body to `w`, which must be positioned at the start of an empty file:
    /// the header (which holds the body's length and CRC) is written last, at offset 0.
    pub fn write_to<W: Write + Seek>(&self, w: &mut W) -> std::io::Result<u64> {
        w.write_all(&[0u8; HEADER_LEN])?;
        let mut body = CrcWriter {
            inner: BufWriter::with_capacity(1 << 20, &mut *w),
            crc: 0,
            len: 0,
        };
        body.write_all(&self.log_id.to_le_bytes())?;
        body.write_all(&self.hot)?;
        self.cold
            .write_section(&mut body, crate::state::cold_seed(self.sequence))?;
        body.flush()?;
        let (crc, len) = (body.crc, body.len);
        drop(body);
        w.seek(SeekFrom::Start(0))?;
        w.write_all(&header(self.sequence, len, crc))?;
        Ok(HEADER_LEN as u64 + len)
    }
}

/// Passes bytes through, accumulating their CRC32C and count.
struct CrcWriter<W: Write> {
    inner: W,
    crc: u32,
    len: u64,
}

impl<W: Write> Write for CrcWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        let done = buf.get(..n).unwrap_or_default();
        self.crc = crc32c::crc32c_append(self.crc, done);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn header(sequence: u64, body_len: u64, body_crc: u32) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    let fields: [(usize, &[u8]); 5] = [
        (0, &MAGIC),
        (8, &VERSION.to_le_bytes()),
        (16, &sequence.to_le_bytes()),
        (24, &body_len.to_le_bytes()),
        (32, &body_crc.to_le_bytes()),
    ];
    for (at, v) in fields {
        if let Some(dst) = h.get_mut(at..at + v.len()) {
            dst.copy_from_slice(v);
        }
    }
    let header_crc = crc32c::crc32c(h.get(..36).unwrap_or_default());
    if let Some(dst) = h.get_mut(36..40) {
        dst.copy_from_slice(&header_crc.to_le_bytes());
    }
    h
}

/// Encodes the projection as a snapshot (header + body) in memory. Freezes like
/// [`Capture::take`].
pub fn encode(p: &mut Projection) -> Result<Vec<u8>> {
    let cap = Capture::take(p)?;
    let mut out = std::io::Cursor::new(Vec::new());
    cap.write_to(&mut out)
        .map_err(|e| CoreError::Decode(format!("snapshot encoding failed: {e}")))?;
    Ok(out.into_inner())
}

/// Reads and verifies the header (magic, header CRC, version, flags, body length limit).
pub fn read_header(bytes: &[u8], max_body: u64) -> Result<Header, CorruptionReason> {
    let h = bytes
        .get(..HEADER_LEN)
        .ok_or(CorruptionReason::IncompleteHeader)?;
    if h.get(..8) != Some(&MAGIC[..]) {
        return Err(CorruptionReason::BadMagic);
    }
    let stored = le_u32(h, 36);
    let computed = crc32c::crc32c(h.get(..36).unwrap_or_default());
    if stored != computed {
        return Err(CorruptionReason::CrcMismatch { stored, computed });
    }
    let version = le_u32(h, 8);
    if !(OLDEST_READ_VERSION..=VERSION).contains(&version) {
        return Err(CorruptionReason::UnsupportedVersion(version));
    }
    let flags = le_u32(h, 12);
    if flags != 0 {
        return Err(CorruptionReason::Decode(format!(
            "unknown flags {flags:#x}"
        )));
    }
    let body_len = le_u64(h, 24);
    if body_len > max_body {
        return Err(CorruptionReason::BadLength(body_len));
    }
    Ok(Header {
        version,
        sequence: le_u64(h, 16),
        body_len,
        body_crc: le_u32(h, 32),
    })
}

/// The log a snapshot's bytes say it belongs to: the `wal_id` of the WAL it was taken from, or
/// `None` when it names none (written before version 4, or outside an authority). Read from
/// the bytes as they are: decode them first to know they are intact.
pub fn log_id(bytes: &[u8]) -> Option<u64> {
    if le_u32(bytes, 8) < LOG_ID_SINCE {
        return None;
    }
    Some(le_u64(bytes, HEADER_LEN)).filter(|&id| id != 0)
}

/// Decodes a snapshot from borrowed bytes (copies them; see [`decode_owned`]).
pub fn decode(bytes: &[u8], max_body: u64) -> Result<Projection, CorruptionReason> {
    decode_owned(bytes.to_vec(), max_body)
}

/// Decodes a snapshot and rebuilds the projection with its indexes. Never panics. The
/// buffer is kept: it becomes the projection's cold segment (terminal history is used in
/// place, not copied).
pub fn decode_owned(bytes: Vec<u8>, max_body: u64) -> Result<Projection, CorruptionReason> {
    decode_buf(Buf::Owned(bytes), max_body)
}

/// [`decode_owned`] for a buffer that may be a mapped file.
pub(crate) fn decode_buf(bytes: Buf, max_body: u64) -> Result<Projection, CorruptionReason> {
    let h = read_header(&bytes, max_body)?;
    let body = bytes.get(HEADER_LEN..).unwrap_or_default();
    let have = body.len() as u64;
    if have < h.body_len {
        return Err(CorruptionReason::IncompletePayload);
    }
    if have > h.body_len {
        return Err(CorruptionReason::BadLength(have));
    }
    let computed = crc32c::crc32c(body);
    if computed != h.body_crc {
        return Err(CorruptionReason::CrcMismatch {
            stored: h.body_crc,
            computed,
        });
    }
    let image = if h.version >= LOG_ID_SINCE {
        body.get(LOG_ID_LEN..)
            .ok_or(CorruptionReason::IncompletePayload)?
    } else {
        body
    };
    let (img, rest): (HotImage, &[u8]) =
        postcard::take_from_bytes(image).map_err(|e| CorruptionReason::Decode(e.to_string()))?;
    if img.sequence != h.sequence {
        return Err(CorruptionReason::Decode(format!(
            "image sequence {} differs from header sequence {}",
            img.sequence, h.sequence
        )));
    }
    let cold_at = bytes.len() - rest.len();
    let seg = Seg::new(Arc::new(bytes), cold_at);
    Projection::from_parts(img, Some(seg), h.version >= 3).map_err(CorruptionReason::Decode)
}

/// The same snapshot in format 2 (the cold section without its tables), for tests of the
/// version-2 reader.
#[cfg(test)]
pub(crate) fn to_version2(bytes: &[u8]) -> Vec<u8> {
    let body = bytes.get(HEADER_LEN + LOG_ID_LEN..).unwrap_or_default();
    let Ok((_, rest)) = postcard::take_from_bytes::<HotImage>(body) else {
        return Vec::new();
    };
    let Ok(tab) = crate::state::cold_tables(rest) else {
        return Vec::new();
    };
    let hot_len = body.len() - rest.len();
    let v2_body = body.get(..hot_len + tab).unwrap_or_default();
    let mut out = header(
        le_u64(bytes, 16),
        v2_body.len() as u64,
        crc32c::crc32c(v2_body),
    )
    .to_vec();
    if let Some(v) = out.get_mut(8..12) {
        v.copy_from_slice(&2u32.to_le_bytes());
    }
    let crc = crc32c::crc32c(out.get(..36).unwrap_or_default());
    if let Some(v) = out.get_mut(36..40) {
        v.copy_from_slice(&crc.to_le_bytes());
    }
    out.extend_from_slice(v2_body);
    out
}
