//! Read access to the projection: lookups, counts, and the engine's index queries.
//!
//! Ordered queries are lazy iterators over the state indexes: they cost O(log n) to start and
//! O(1) per item, so callers bound them with `.take(limit)`.

use std::collections::btree_set;
use std::ops::Bound;

use crate::model::{Id, Millis, RunState};

use super::indexes::IxKey;
use super::types::{Run, Task};
use super::Projection;

/// Position in a state index, for paging with [`Projection::runs_in_state`].
pub type Cursor = IxKey;

impl Projection {
    pub fn task(&self, id: &Id) -> Option<&Task> {
        self.tasks.get(id)
    }

    pub fn run(&self, id: &Id) -> Option<&Run> {
        self.runs.get(id)
    }

    pub fn task_count(&self) -> usize {
        self.tasks.len()
    }

    pub fn run_count(&self) -> usize {
        self.runs.len()
    }

    /// Every task, in no particular order.
    pub fn tasks(&self) -> impl Iterator<Item = &Task> + '_ {
        self.tasks.values()
    }

    /// The task's runs still held (pruned ones are gone), in ordinal order.
    pub fn runs_for_task(&self, task: &Id) -> Option<&[Id]> {
        self.tasks.get(task).map(|t| t.runs.as_slice())
    }

    /// The live task holding a dedupe key.
    pub fn task_by_dedupe_key(&self, key: &str) -> Option<Id> {
        self.ix.dedupe.get(key).copied()
    }

    /// The run holding a concurrency key.
    pub fn key_holder(&self, key: &str) -> Option<Id> {
        self.ix.key_holder(key)
    }

    pub fn count(&self, state: RunState) -> usize {
        self.ix.count(state)
    }

    /// Run counts indexed by the `RunState` wire value.
    pub fn counts(&self) -> [usize; 9] {
        RunState::ALL.map(|s| self.ix.count(s))
    }

    pub fn terminal_count(&self) -> usize {
        self.count(RunState::Completed)
            + self.count(RunState::Failed)
            + self.count(RunState::Canceled)
    }

    /// When the next Scheduled run falls due or the next RetryWait run may retry (whichever is
    /// first), or `None` when neither set has runs.
    pub fn next_due(&self) -> Option<Millis> {
        let s = self.ix.set(RunState::Scheduled).first().map(|k| k.a);
        let r = self.ix.set(RunState::RetryWait).first().map(|k| k.a);
        match (s, r) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The earliest lease expiry among Leased/Running runs; `i64::MIN` when one of them has no
    /// lease at all (it is due for the sweep now).
    pub fn next_lease_expiry(&self) -> Option<Millis> {
        let l = self.ix.set(RunState::Leased).first().map(|k| k.a);
        let r = self.ix.set(RunState::Running).first().map(|k| k.a);
        match (l, r) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Scheduled runs with `scheduled_at <= t`, earliest first (ties: creation order).
    pub fn due_scheduled(&self, t: Millis) -> impl Iterator<Item = Id> + '_ {
        self.ix
            .set(RunState::Scheduled)
            .iter()
            .take_while(move |k| k.a <= t)
            .map(|k| k.id)
    }

    /// RetryWait runs with `not_before <= t`, earliest first.
    pub fn due_retries(&self, t: Millis) -> impl Iterator<Item = Id> + '_ {
        self.ix
            .set(RunState::RetryWait)
            .iter()
            .take_while(move |k| k.a <= t)
            .map(|k| k.id)
    }

    /// Leased then Running runs whose lease is expired at `t` (`t >= expires_at`) or missing.
    /// O(k) in the runs returned.
    pub fn expired_leases(&self, t: Millis) -> impl Iterator<Item = Id> + '_ {
        let leased = self.ix.set(RunState::Leased).iter();
        let running = self.ix.set(RunState::Running).iter();
        leased
            .take_while(move |k| k.a <= t)
            .chain(running.take_while(move |k| k.a <= t))
            .map(|k| k.id)
    }

    /// Ready runs in selection order (effective priority desc, scheduled_at asc, creation
    /// order), skipping — not dropping — runs whose concurrency key is held, or already taken
    /// by a run this iterator yielded before (so a caller may lease everything it yields in one
    /// batch).
    pub fn ready(&self) -> ReadyIter<'_> {
        ReadyIter {
            p: self,
            inner: self.ix.set(RunState::Ready).iter(),
            claimed: Vec::new(),
        }
    }

    /// The runs of one state in its index order, starting after `after` (a cursor returned by a
    /// previous page). See `indexes` for each state's order.
    pub fn runs_in_state(
        &self,
        state: RunState,
        after: Option<Cursor>,
    ) -> impl Iterator<Item = Cursor> + '_ {
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.ix.set(state).range((lower, Bound::Unbounded)).copied()
    }
}

/// Lazy iterator over Ready runs in selection order; see [`Projection::ready`].
pub struct ReadyIter<'a> {
    p: &'a Projection,
    inner: btree_set::Iter<'a, IxKey>,
    claimed: Vec<&'a str>,
}

impl Iterator for ReadyIter<'_> {
    type Item = Id;

    fn next(&mut self) -> Option<Id> {
        for k in self.inner.by_ref() {
            let key = self
                .p
                .runs
                .get(&k.id)
                .and_then(|r| self.p.tasks.get(&r.task_id))
                .and_then(|t| t.spec.constraints.concurrency_key.as_deref());
            let Some(key) = key else {
                return Some(k.id);
            };
            if self.p.ix.key_holder(key).is_some() || self.claimed.contains(&key) {
                continue;
            }
            self.claimed.push(key);
            return Some(k.id);
        }
        None
    }
}
