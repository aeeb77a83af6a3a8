//! An id-keyed hash map split into shards that grow independently.
//!
//! One hash map holding a million entries rehashes all of them at once when it grows: ~0.1–0.2 s
//! here (much of it first-touch page faults on the new table), a stall for whoever caused the
//! insert. The cold store's maps grow with every finished run, under the authority's lock, so
//! they are split by id into [`SHARDS`] maps: a growth step then moves 1/64 of the entries, and
//! a lookup costs one shard pick more.

use super::Map;
use crate::model::Id;

/// Number of shards (a power of two).
pub(crate) const SHARDS: usize = 64;

#[derive(Debug)]
pub(crate) struct IdMap<V> {
    shards: Vec<Map<Id, V>>,
    len: usize,
}

impl<V> Default for IdMap<V> {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Map::default()).collect(),
            len: 0,
        }
    }
}

/// The shard of an id: a multiplicative mix of both halves (ids may vary in any bytes:
/// random UUIDs, time-ordered ones, sequential test ids).
fn shard(id: &Id) -> usize {
    let mut lo = [0u8; 8];
    let mut hi = [0u8; 8];
    lo.copy_from_slice(id.get(..8).unwrap_or(&[0; 8]));
    hi.copy_from_slice(id.get(8..).unwrap_or(&[0; 8]));
    let x = (u64::from_le_bytes(lo) ^ u64::from_le_bytes(hi).rotate_left(29))
        .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (x >> (64 - SHARDS.trailing_zeros())) as usize
}

impl<V> IdMap<V> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn get(&self, id: &Id) -> Option<&V> {
        self.shards.get(shard(id))?.get(id)
    }

    pub fn contains_key(&self, id: &Id) -> bool {
        self.get(id).is_some()
    }

    pub fn insert(&mut self, id: Id, v: V) -> Option<V> {
        let old = self.shards.get_mut(shard(&id))?.insert(id, v);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    pub fn remove(&mut self, id: &Id) -> Option<V> {
        let old = self.shards.get_mut(shard(id))?.remove(id);
        if old.is_some() {
            self.len -= 1;
        }
        old
    }

    /// Reserves room for about `n` more entries, spread evenly.
    pub fn reserve(&mut self, n: usize) {
        for s in &mut self.shards {
            s.reserve(n / SHARDS + 1);
        }
    }
}
