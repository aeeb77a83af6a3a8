//! An id-keyed hash map split into shards that grow independently.
//!
//! One hash map holding a million entries rehashes all of them at once when it grows: ~0.1–0.2 s
//! here (much of it first-touch page faults on the new table), a stall for whoever caused the
//! insert. The cold store's maps grow with every finished run, under the authority's lock, so
//! they are split by id into [`SHARDS`] maps: a growth step then moves 1/64 of the entries, and
//! a lookup costs one shard pick more. The projection's hot maps (live tasks and runs) are
//! split the same way: with a million live tasks, one map's growth step was a 0.1–0.24 s
//! stall of every submitter (measured: the 1000-task record that crossed 918k tasks).

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

    pub fn get_mut(&mut self, id: &Id) -> Option<&mut V> {
        self.shards.get_mut(shard(id))?.get_mut(id)
    }

    /// Entries in no particular order (shard by shard).
    pub fn iter(&self) -> impl Iterator<Item = (&Id, &V)> {
        self.shards.iter().flat_map(|s| s.iter())
    }

    pub fn keys(&self) -> impl Iterator<Item = &Id> {
        self.shards.iter().flat_map(|s| s.keys())
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.shards.iter().flat_map(|s| s.values())
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.shards.iter_mut().flat_map(|s| s.values_mut())
    }

    /// Reserves room for about `n` more entries, spread evenly.
    pub fn reserve(&mut self, n: usize) {
        for s in &mut self.shards {
            s.reserve(n / SHARDS + 1);
        }
    }
}

impl<V> IntoIterator for IdMap<V> {
    type Item = (Id, V);
    type IntoIter = std::iter::Flatten<std::vec::IntoIter<Map<Id, V>>>;

    fn into_iter(self) -> Self::IntoIter {
        self.shards.into_iter().flatten()
    }
}

impl<V> FromIterator<(Id, V)> for IdMap<V> {
    fn from_iter<I: IntoIterator<Item = (Id, V)>>(iter: I) -> Self {
        let mut m = Self::default();
        for (k, v) in iter {
            m.insert(k, v);
        }
        m
    }
}

impl<V> Extend<(Id, V)> for IdMap<V> {
    fn extend<I: IntoIterator<Item = (Id, V)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.insert(k, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u32) -> Id {
        let mut id = [0u8; 16];
        id[12..].copy_from_slice(&n.to_be_bytes());
        id
    }

    #[test]
    fn behaves_like_one_map() {
        let mut m: IdMap<u32> = (0..1000).map(|n| (id(n), n)).collect();
        assert_eq!(m.len(), 1000);
        assert_eq!(m.insert(id(7), 70), Some(7));
        assert_eq!(m.len(), 1000);
        *m.get_mut(&id(8)).unwrap_or(&mut 0) = 80;
        assert_eq!(m.get(&id(8)), Some(&80));
        assert_eq!(m.remove(&id(9)), Some(9));
        assert_eq!(m.remove(&id(9)), None);
        assert!(!m.contains_key(&id(9)));
        assert_eq!(m.len(), 999);
        let mut keys: Vec<_> = m.keys().copied().collect();
        keys.sort_unstable();
        assert_eq!(keys.len(), 999);
        assert_eq!(m.iter().count(), 999);
        m.values_mut().for_each(|v| *v += 1);
        assert_eq!(m.values().copied().max(), Some(1000));
        m.extend([(id(5000), 1)]);
        assert_eq!(m.len(), 1000);
        // Ids that differ only in one byte still spread over the shards.
        let used = m.shards.iter().filter(|s| !s.is_empty()).count();
        assert!(used > SHARDS / 2, "{used} shards used");
        let all: Vec<_> = m.into_iter().collect();
        assert_eq!(all.len(), 1000);
    }
}
