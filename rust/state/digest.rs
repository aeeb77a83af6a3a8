//! The deterministic state digest.
//!
//! `digest = BLAKE3(postcard(canonical image))`: the image lists tasks and runs by creation
//! sequence, so two projections built from the same events have the same digest
//! whatever their hash maps' iteration order; a projection decoded from a snapshot has the
//! same digest as the one encoded. Derived data (indexes, counters) is not hashed: it is a
//! function of what is.

use super::types::{Run, Task};
use super::Projection;

/// A 32-byte BLAKE3 digest of a projection's canonical image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Buffers small updates for the hasher.
struct Sink {
    hasher: blake3::Hasher,
    buf: Vec<u8>,
}

const BUF: usize = 64 * 1024;

impl Sink {
    fn put(&mut self, data: &[u8]) {
        if self.buf.len() + data.len() > BUF {
            self.hasher.update(&self.buf);
            self.buf.clear();
            if data.len() > BUF {
                self.hasher.update(data);
                return;
            }
        }
        self.buf.extend_from_slice(data);
    }

    fn varint(&mut self, mut v: u64) {
        let mut b = [0u8; 10];
        let mut n = 0;
        while v >= 0x80 {
            if let Some(x) = b.get_mut(n) {
                *x = (v as u8) | 0x80;
            }
            v >>= 7;
            n += 1;
        }
        if let Some(x) = b.get_mut(n) {
            *x = v as u8;
        }
        self.put(b.get(..=n).unwrap_or_default());
    }

    /// Appends `postcard(value)` (through `scratch`); serializing plain structs into a Vec
    /// cannot fail, and if it ever did the error text is hashed so the digest still differs
    /// from any real state's.
    fn encoded<T: serde::Serialize>(&mut self, value: &T, scratch: &mut Vec<u8>) {
        scratch.clear();
        match postcard::to_extend(value, std::mem::take(scratch)) {
            Ok(v) => {
                self.put(&v);
                *scratch = v;
            }
            Err(e) => self.put(e.to_string().as_bytes()),
        }
    }
}

/// A record in the digest: decoded (hot) or already encoded (cold).
enum Item<'a, T> {
    Hot(&'a T),
    Cold(&'a [u8]),
}

fn hash_items<T: serde::Serialize>(sink: &mut Sink, mut items: Vec<(u64, Item<'_, T>)>) {
    // Creation sequences are unique; cold segments are each in creation order, so this sorts
    // a few interleaved runs.
    items.sort_by_key(|i| i.0);
    sink.varint(items.len() as u64);
    let mut scratch = Vec::new();
    for (_, item) in items {
        match item {
            Item::Hot(v) => sink.encoded(v, &mut scratch),
            Item::Cold(b) => sink.put(b),
        }
    }
}

impl Projection {
    /// The deterministic digest of everything persisted in this projection, including the
    /// latest sequence and the pause flag: BLAKE3 of the postcard encoding of
    /// `(sequence, paused_at, tasks by creation sequence, runs by creation sequence)`, whether
    /// each record is held hot or cold (a cold record *is* its postcard bytes).
    pub fn state_digest(&self) -> Digest {
        let mut sink = Sink {
            hasher: blake3::Hasher::new(),
            buf: Vec::with_capacity(BUF),
        };
        let mut scratch = Vec::new();
        sink.encoded(&(self.latest_sequence, self.paused_at), &mut scratch);
        let mut tasks: Vec<(u64, Item<'_, Task>)> =
            Vec::with_capacity(self.tasks.len() + self.cold.task_count());
        tasks.extend(
            self.tasks
                .values()
                .map(|t| (t.created_seq, Item::Hot(&**t))),
        );
        let mut runs: Vec<(u64, Item<'_, Run>)> =
            Vec::with_capacity(self.runs.len() + self.cold.run_count());
        runs.extend(self.runs.values().map(|r| (r.created_seq, Item::Hot(&**r))));
        self.cold.walk(
            |t| tasks.push((t.head.created_seq, Item::Cold(t.body))),
            |seq, body| runs.push((seq, Item::Cold(body))),
        );
        hash_items(&mut sink, tasks);
        hash_items(&mut sink, runs);
        sink.hasher.update(&sink.buf);
        Digest(*sink.hasher.finalize().as_bytes())
    }
}
