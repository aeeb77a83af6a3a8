//! A record encoded ahead of its append: payload and checksum computed before any lock is
//! taken, header (sequence, `durable_through`) filled in by [`WalWriter::append_encoded`].
//!
//! The mutation authority encodes a submitted record first, outside its lock, so it can then
//! hand the events themselves (owned) to the reducer instead of cloning what the projection
//! keeps. The encoding buffer is a per-thread one, reused across records (returned on drop).
//!
//! [`WalWriter::append_encoded`]: super::WalWriter::append_encoded
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::cell::RefCell;

use super::format::RECORD_HEADER_LEN;
use crate::codec::encode_batch_into;
use crate::event::Event;
use crate::{check_record_size, CoreError, Result};

/// Buffers above this capacity are not kept for reuse (one huge batch must not pin memory).
const KEEP_CAPACITY: usize = 1 << 20;

thread_local! {
    static SPARE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// One record's bytes: `RECORD_HEADER_LEN` bytes of room for the header, then the payload.
pub struct EncodedRecord {
    pub(super) buf: Vec<u8>,
    pub(super) count: u32,
    pub(super) payload_len: u32,
    pub(super) payload_crc: u32,
}

impl EncodedRecord {
    /// Encodes `events` as one record's payload and checksums it. Refuses an empty batch and
    /// a payload larger than `max_record_size` ([`CoreError::RecordTooLarge`]).
    pub fn encode(events: &[Event], max_record_size: u64) -> Result<Self> {
        if events.is_empty() {
            return Err(CoreError::InvalidArgument(
                "append needs at least one event".into(),
            ));
        }
        let count = u32::try_from(events.len()).map_err(|_| {
            CoreError::InvalidArgument(format!("a batch of {} events is too large", events.len()))
        })?;
        let mut rec = Self {
            buf: SPARE.with(|s| std::mem::take(&mut *s.borrow_mut())),
            count,
            payload_len: 0,
            payload_crc: 0,
        };
        rec.buf.clear();
        rec.buf.resize(RECORD_HEADER_LEN, 0);
        encode_batch_into(events, &mut rec.buf)?;
        let payload = rec.buf.get(RECORD_HEADER_LEN..).unwrap_or_default();
        let len = payload.len() as u64;
        check_record_size(len, max_record_size)?;
        rec.payload_crc = crc32c::crc32c(payload);
        rec.payload_len = u32::try_from(len).map_err(|_| CoreError::RecordTooLarge {
            size: len,
            max: u64::from(u32::MAX),
        })?;
        Ok(rec)
    }

    /// Number of events in the record.
    pub fn event_count(&self) -> u32 {
        self.count
    }

    /// Bytes the record takes in the log (header included).
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

impl Drop for EncodedRecord {
    fn drop(&mut self) {
        if self.buf.capacity() <= KEEP_CAPACITY {
            let buf = std::mem::take(&mut self.buf);
            // `try_with`: a record dropped during thread teardown just frees its buffer.
            let _ = SPARE.try_with(|s| {
                if let Ok(mut s) = s.try_borrow_mut() {
                    if s.capacity() < buf.capacity() {
                        *s = buf;
                    }
                }
            });
        }
    }
}
