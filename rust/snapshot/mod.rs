//! Snapshots: a compact, checksummed, versioned binary image of the whole projection at a
//! WAL sequence.
//!
//! ```text
//! offset  size  field
//! 0       8     magic  "AQSNAPSH"
//! 8       4     format version (u32 LE), currently 1
//! 12      4     flags (u32 LE), 0; a reader refuses unknown flags
//! 16      8     sequence of the last event the image includes (u64 LE)
//! 24      8     body length in bytes (u64 LE)
//! 32      4     CRC32C of the body (u32 LE)
//! 36      4     CRC32C of bytes 0..36 (u32 LE)
//! 40      n     body: postcard encoding of the canonical image (state/image.rs):
//!               (sequence, paused_at, tasks by creation sequence, runs by creation sequence)
//! ```
//!
//! The body holds persisted fields only; indexes are rebuilt on load in O(n log n). Decoding
//! never panics: every length is checked against the input and a configured maximum before
//! anything is allocated for it, and a decoded image that breaks a reducer invariant is
//! refused. Files are named `snapshot-<sequence, 20 digits>.aqs` and written atomically
//! ([`files::write_atomic`]).
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

pub mod files;
#[cfg(test)]
mod tests;

use crate::error::{CoreError, CorruptionReason, Result};
use crate::state::image::Image;
use crate::state::Projection;

pub use files::{
    list, load_file, load_newest, remove_older, write_atomic, LoadReport, SnapshotFile,
};

pub const MAGIC: [u8; 8] = *b"AQSNAPSH";
pub const VERSION: u32 = 1;
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

/// Encodes the projection as a snapshot (header + body).
pub fn encode(p: &Projection) -> Result<Vec<u8>> {
    let mut out = vec![0u8; HEADER_LEN];
    out = postcard::to_extend(&p.image(), out)
        .map_err(|e| CoreError::Decode(format!("snapshot encoding failed: {e}")))?;
    let body = out.get(HEADER_LEN..).unwrap_or_default();
    let body_crc = crc32c::crc32c(body);
    let body_len = body.len() as u64;
    let mut header = [0u8; HEADER_LEN];
    header[..8].copy_from_slice(&MAGIC);
    header[8..12].copy_from_slice(&VERSION.to_le_bytes());
    header[16..24].copy_from_slice(&p.latest_sequence().to_le_bytes());
    header[24..32].copy_from_slice(&body_len.to_le_bytes());
    header[32..36].copy_from_slice(&body_crc.to_le_bytes());
    let header_crc = crc32c::crc32c(&header[..36]);
    header[36..40].copy_from_slice(&header_crc.to_le_bytes());
    if let Some(h) = out.get_mut(..HEADER_LEN) {
        h.copy_from_slice(&header);
    }
    Ok(out)
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
    if version != VERSION {
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

/// Decodes a snapshot and rebuilds the projection with its indexes. Never panics.
pub fn decode(bytes: &[u8], max_body: u64) -> Result<Projection, CorruptionReason> {
    let h = read_header(bytes, max_body)?;
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
    let (img, rest): (Image, &[u8]) =
        postcard::take_from_bytes(body).map_err(|e| CorruptionReason::Decode(e.to_string()))?;
    if !rest.is_empty() {
        return Err(CorruptionReason::Decode(format!(
            "{} trailing bytes after the image",
            rest.len()
        )));
    }
    if img.sequence != h.sequence {
        return Err(CorruptionReason::Decode(format!(
            "image sequence {} differs from header sequence {}",
            img.sequence, h.sequence
        )));
    }
    Projection::from_image(img).map_err(CorruptionReason::Decode)
}
