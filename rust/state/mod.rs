//! The replay reducer: the in-memory projection of the WAL, with its indexes.
//!
//! [`Projection`] holds tasks, runs (with state and attempt histories, leases), the engine's
//! pause flag and the latest applied sequence. [`Projection::apply`] applies one WAL record (one
//! event or an atomic batch) and [`Projection::check`] dry-runs the very same code, so
//! validation can never be weaker than replay (SPEC §11.1). The rules are those of
//! `docs/DESIGN.md`, "Reducer rules".
//!
//! Module map:
//! - [`types`]: the records (Task, Run, Lease, StateChange, Attempt);
//! - `batch`: atomic batches (undo log, rollback), sequence rules;
//! - `reducer`: one handler per event kind, every precondition checked before any change
//!   (lease handlers in `leases`);
//! - `prune`: retention;
//! - `cold`, `cold_table`, `tiers`: terminal runs and finished tasks kept encoded (the cold
//!   store; a loaded snapshot's section used in place through its lookup tables), and moving
//!   records in (in batches as they finish, and at snapshot capture) and out (when an event
//!   names one);
//! - [`indexes`]: the incrementally maintained indexes;
//! - `queries`: read access (due runs, selection order, expired leases, listings, counts);
//! - [`image`]: the canonical image (snapshot body) and the rebuild from it;
//! - `digest`: the deterministic state digest;
//! - `debug`: index consistency check by full scan (tests only use it).
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod batch;
pub(crate) mod cold;
mod cold_table;
mod debug;
mod digest;
mod idmap;
pub mod image;
pub mod indexes;
mod leases;
pub mod prune;
mod queries;
mod reducer;
pub mod spec_check;
#[cfg(test)]
pub(crate) mod tests;
mod tiers;
mod time_check;
pub mod types;

use crate::model::{Millis, ShapeCache};

/// Hash map used for id- and key-indexed maps (foldhash: fast on 16-byte ids, well mixed,
/// randomly seeded per process; nothing depends on iteration order).
pub(crate) type Map<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

pub use digest::Digest;

/// Length of the records part of a format-3 cold section (tests: the format-2 section).
#[cfg(test)]
pub(crate) fn cold_tables(section: &[u8]) -> Result<usize, String> {
    cold_table::Tables::parse(section).map(|t| t.records_len)
}

/// The lookup-table seed of a snapshot at `sequence`.
pub(crate) fn cold_seed(sequence: u64) -> u64 {
    cold_table::seed_for(sequence)
}
pub use indexes::{holds_key, IxKey, KeySlot};
pub use queries::{Cursor, FilteredPage, ReadyIter, RunFilter, CURSOR_LEN};
pub use types::{fmt_id, Attempt, Lease, Run, StateChange, Task};

use batch::UndoLog;
use idmap::IdMap;
use indexes::Indexes;

/// The projection of the WAL: every task and run, indexed.
#[derive(Debug, Default)]
pub struct Projection {
    /// Live tasks and runs, split in shards that grow independently (no stall of a whole
    /// million-entry rehash under the authority's lock: see `idmap`).
    pub(crate) tasks: IdMap<Box<Task>>,
    pub(crate) runs: IdMap<Box<Run>>,
    /// Terminal runs and finished tasks as encoded records (see `cold`): every lookup falls
    /// back to it, and events naming a cold record thaw it first.
    pub(crate) cold: cold::Cold,
    pub(crate) ix: Indexes,
    /// `Some(at)` while the engine is paused.
    pub(crate) paused_at: Option<Millis>,
    pub(crate) latest_sequence: u64,
    /// Scratch undo log of the batch being applied (kept to reuse its allocation).
    undo: UndoLog,
    /// What the most recently applied Prune removed (derived, not persisted).
    pub(crate) last_prune: prune::PruneStats,
    /// The shape of the last task added: the next task with an equal one shares it (most of
    /// a live task's memory; FORMAT.md is unchanged: every TaskCreate still holds its shape).
    pub(crate) shapes: ShapeCache,
}

impl Projection {
    /// An empty projection: nothing applied, next sequence 1.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sequence of the last applied event (0 when nothing was applied).
    pub fn latest_sequence(&self) -> u64 {
        self.latest_sequence
    }

    /// Live (hot) tasks and runs: what a snapshot capture encodes.
    pub fn hot_len(&self) -> usize {
        self.tasks.len() + self.runs.len()
    }

    /// The sequence the next record must start with.
    pub fn next_sequence(&self) -> u64 {
        self.latest_sequence.saturating_add(1)
    }

    pub fn is_paused(&self) -> bool {
        self.paused_at.is_some()
    }

    pub fn paused_at(&self) -> Option<Millis> {
        self.paused_at
    }

    /// A view of the cold store for the snapshot writer (shares its segments).
    pub(crate) fn cold_view(&self) -> cold::ColdView {
        self.cold.view()
    }

    /// What the most recently applied Prune event removed (zeros before any).
    pub fn last_prune(&self) -> prune::PruneStats {
        self.last_prune
    }
}
