//! Read access to the projection: lookups, counts, and the engine's index queries.
//!
//! Ordered queries are lazy iterators over the state indexes: they cost O(log n) to start and
//! O(1) per item, so callers bound them with `.take(limit)`.

use std::borrow::Cow;
use std::collections::btree_set;
use std::ops::Bound;

use crate::model::{Id, Millis, PolicyKind, RunState};

use super::indexes::IxKey;
use super::types::{Run, Task};
use super::Projection;

/// Position in a state index, for paging with [`Projection::runs_in_state`].
pub type Cursor = IxKey;

/// Bytes in an encoded [`Cursor`]: `a`, `b` (i64), `seq` (u64), big-endian, then the id.
pub const CURSOR_LEN: usize = 40;

impl IxKey {
    /// The cursor as opaque bytes, for a caller that pages across calls (Python): a position
    /// in the index, which stays valid whatever happens to the run it was taken from.
    pub fn to_cursor_bytes(&self) -> [u8; CURSOR_LEN] {
        let mut out = [0u8; CURSOR_LEN];
        let parts = [
            self.a.to_be_bytes(),
            self.b.to_be_bytes(),
            self.seq.to_be_bytes(),
        ];
        for (chunk, part) in out.chunks_exact_mut(8).zip(parts) {
            chunk.copy_from_slice(&part);
        }
        if let Some(tail) = out.get_mut(24..) {
            tail.copy_from_slice(&self.id);
        }
        out
    }

    /// A cursor from [`to_cursor_bytes`](Self::to_cursor_bytes); `None` unless `b` has the
    /// exact length.
    pub fn from_cursor_bytes(b: &[u8]) -> Option<Self> {
        let b: &[u8; CURSOR_LEN] = b.try_into().ok()?;
        let word = |i: usize| -> Option<[u8; 8]> { b.get(i..i + 8)?.try_into().ok() };
        Some(Self {
            a: i64::from_be_bytes(word(0)?),
            b: i64::from_be_bytes(word(8)?),
            seq: u64::from_be_bytes(word(16)?),
            id: b.get(24..)?.try_into().ok()?,
        })
    }
}

impl Projection {
    /// A task, borrowed when hot, decoded when cold (`None` also for a cold record that does
    /// not decode, which a checksummed snapshot cannot produce).
    pub fn task(&self, id: &Id) -> Option<Cow<'_, Task>> {
        match self.tasks.get(id) {
            Some(t) => Some(Cow::Borrowed(t)),
            None => self.cold.task(id)?.ok().map(Cow::Owned),
        }
    }

    /// A run, borrowed when hot, decoded when cold.
    pub fn run(&self, id: &Id) -> Option<Cow<'_, Run>> {
        match self.runs.get(id) {
            Some(r) => Some(Cow::Borrowed(r)),
            None => self.cold.run(id)?.ok().map(Cow::Owned),
        }
    }

    pub fn task_count(&self) -> usize {
        self.tasks.len() + self.cold.task_count()
    }

    pub fn run_count(&self) -> usize {
        self.runs.len() + self.cold.run_count()
    }

    /// Every task, in no particular order (cold ones decoded).
    pub fn tasks(&self) -> impl Iterator<Item = Cow<'_, Task>> + '_ {
        let mut cold = Vec::with_capacity(self.cold.task_count());
        self.cold.walk(|t| cold.push(t.head.id), |_, _| {});
        self.tasks.values().map(|t| Cow::Borrowed(&**t)).chain(
            cold.into_iter()
                .filter_map(|id| self.cold.task(&id)?.ok().map(Cow::Owned)),
        )
    }

    /// Every run, in no particular order (cold ones decoded).
    pub fn all_runs(&self) -> impl Iterator<Item = Cow<'_, Run>> + '_ {
        let mut cold = Vec::with_capacity(self.cold.run_count());
        self.cold.walk(
            |_| {},
            |_, body| {
                if let Some(h) = super::cold::run_head(body) {
                    cold.push(h.id);
                }
            },
        );
        self.runs.values().map(|r| Cow::Borrowed(&**r)).chain(
            cold.into_iter()
                .filter_map(|id| self.cold.run(&id)?.ok().map(Cow::Owned)),
        )
    }

    /// The task's runs still held (pruned ones are gone), in ordinal order.
    pub fn runs_for_task(&self, task: &Id) -> Option<Cow<'_, [Id]>> {
        match self.tasks.get(task) {
            Some(t) => Some(Cow::Borrowed(t.runs.as_slice())),
            None => self.cold.task_runs(task).map(Cow::Owned),
        }
    }

    /// The task's non-terminal runs, in ordinal order, without decoding any run: a cold task's
    /// runs are all terminal, and a hot task's are looked up in the hot map only. O(the task's
    /// runs held).
    pub fn live_runs_of_task(&self, task: &Id) -> Vec<Id> {
        let Some(t) = self.tasks.get(task) else {
            return Vec::new();
        };
        t.runs
            .iter()
            .filter(|r| self.runs.get(r).is_some_and(|run| !run.state.is_terminal()))
            .copied()
            .collect()
    }

    /// Live cron tasks holding fewer non-terminal runs than their window while runs remain to
    /// derive (no `max_occurrences`, or fewer runs created), in creation order. The engine
    /// refills a window in the same record as the run leaving it, so this is empty unless it
    /// could not: the expression could not be evaluated where the queue ran (a time zone that
    /// machine's zone database lacked), or it has no occurrence left. O(live tasks): finished
    /// tasks (the cold ones among them) are never looked at.
    pub fn short_cron_windows(&self) -> Vec<Id> {
        let mut out: Vec<(u64, Id)> = self
            .tasks
            .values()
            .filter(|t| t.finished_at.is_none() && !t.is_canceled())
            .filter_map(|t| match &t.spec.shape.policy.kind {
                PolicyKind::Cron {
                    window,
                    max_occurrences,
                    ..
                } if t.nonterminal_runs < *window
                    && max_occurrences.is_none_or(|m| t.runs_created < m) =>
                {
                    Some((t.created_seq, t.id()))
                }
                _ => None,
            })
            .collect();
        out.sort_unstable();
        out.into_iter().map(|(_, id)| id).collect()
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
            inner: self.ix.candidates.iter(),
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

/// Which runs a filtered listing keeps: those of tasks carrying `tag` (when set) and routed
/// to `handler` (when set).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunFilter {
    pub tag: Option<String>,
    pub handler: Option<String>,
}

impl RunFilter {
    pub fn is_empty(&self) -> bool {
        self.tag.is_none() && self.handler.is_none()
    }

    fn keeps(&self, task: &Task) -> bool {
        let shape = &task.spec.shape;
        self.handler
            .as_deref()
            .is_none_or(|h| shape.handler.as_deref() == Some(h))
            && self
                .tag
                .as_ref()
                .is_none_or(|t| shape.metadata.tags.contains(t))
    }
}

/// One page of a filtered listing (see [`Projection::runs_matching`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilteredPage {
    /// The kept runs' positions, in index order.
    pub keys: Vec<Cursor>,
    /// Where the next page starts (the last position examined); `None` when the index was
    /// examined to its end.
    pub next: Option<Cursor>,
    /// Index entries examined.
    pub scanned: usize,
}

impl Projection {
    /// The task id of a run, without decoding a cold run.
    pub fn run_task_id(&self, id: &Id) -> Option<Id> {
        match self.runs.get(id) {
            Some(r) => Some(r.task_id),
            None => self.cold.run_task(id),
        }
    }

    /// Up to `limit` runs of `state` that `filter` keeps, in index order after `after`,
    /// examining at most `budget` index entries (at least 1): the filter is applied here, per
    /// index entry (each task looked up once per call), instead of on a run tuple built for
    /// every entry. A listing for a rare tag pages through the whole state either way, but
    /// each call holds the caller's lock for a bounded time. With `limit` 0 nothing is
    /// examined and `next` is `None`, as for an unfiltered page.
    pub fn runs_matching(
        &self,
        state: RunState,
        after: Option<Cursor>,
        filter: &RunFilter,
        limit: usize,
        budget: usize,
    ) -> FilteredPage {
        let mut verdicts: super::Map<Id, bool> = super::Map::default();
        let mut keys = Vec::new();
        let mut last = None;
        let mut scanned = 0;
        for k in self.runs_in_state(state, after) {
            if keys.len() >= limit || scanned >= budget.max(1) {
                return FilteredPage {
                    keys,
                    next: last,
                    scanned,
                };
            }
            scanned += 1;
            last = Some(k);
            let Some(task) = self.run_task_id(&k.id) else {
                continue;
            };
            let keep = *verdicts
                .entry(task)
                .or_insert_with(|| self.task(&task).is_some_and(|t| filter.keeps(&t)));
            if keep {
                keys.push(k);
            }
        }
        FilteredPage {
            keys,
            next: None,
            scanned,
        }
    }
}

impl Projection {
    /// The position run `id` would have in the index of `state`, computed from its current
    /// fields (so paging can resume after a run that has since moved to another state).
    pub fn cursor_for(&self, id: &Id, state: RunState) -> Option<Cursor> {
        let run = self.run(id)?;
        let (a, b) = match state {
            RunState::Scheduled => (run.scheduled_at, 0),
            RunState::Ready => (-i64::from(run.effective_priority), run.scheduled_at),
            RunState::Leased | RunState::Running => {
                (run.lease.as_ref().map_or(i64::MIN, |l| l.expires_at), 0)
            }
            RunState::RetryWait => (run.not_before.unwrap_or(i64::MIN), 0),
            RunState::Suspended | RunState::Completed | RunState::Failed | RunState::Canceled => {
                (run.last_state_change_at, 0)
            }
        };
        Some(IxKey {
            a,
            b,
            seq: run.created_seq,
            id: run.id,
        })
    }

    /// The Prune cutoff that keeps the `keep` most recently finished terminal runs: the last
    /// state change time of the `keep`-th newest (runs finished at that same millisecond are
    /// kept too, so slightly more than `keep` may remain). `None` when there are no more than
    /// `keep` terminal runs (nothing to prune). O(keep): a merge of the three terminal indexes
    /// walked from their newest end.
    pub fn prune_cutoff_keeping(&self, keep: usize) -> Option<Millis> {
        if self.terminal_count() <= keep {
            return None;
        }
        let mut its = [RunState::Completed, RunState::Failed, RunState::Canceled]
            .map(|s| self.ix.set(s).iter().rev().peekable());
        // Walk newest first to the keep-th newest (the newest itself when keep is 0).
        let mut nth = None;
        for _ in 0..keep.max(1) {
            let mut best: Option<(usize, IxKey)> = None;
            for (i, it) in its.iter_mut().enumerate() {
                if let Some(k) = it.peek() {
                    if best.is_none_or(|(_, b)| **k > b) {
                        best = Some((i, **k));
                    }
                }
            }
            let (i, k) = best?;
            if let Some(it) = its.get_mut(i) {
                it.next();
            }
            nth = Some(k.a);
        }
        // Prune removes `last change < before`: cutting at the keep-th newest's time keeps it
        // and everything at least as new; keeping none cuts just after the newest.
        nth.map(|t| if keep == 0 { t.saturating_add(1) } else { t })
    }
}

/// Lazy iterator over Ready runs in selection order; see [`Projection::ready`].
pub struct ReadyIter<'a> {
    inner: btree_set::Iter<'a, IxKey>,
}

impl Iterator for ReadyIter<'_> {
    type Item = Id;

    /// The dispatch candidates are one run per free key at most, so nothing is skipped here:
    /// O(1) per run yielded, however many runs wait behind held keys.
    fn next(&mut self) -> Option<Id> {
        self.inner.next().map(|k| k.id)
    }
}
