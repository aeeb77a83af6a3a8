//! State indexes, maintained incrementally by the reducer (never rebuilt by scanning).
//!
//! Every run sits in exactly one ordered set: the one of its state. The sort key depends on
//! the state, so each set is already in the order its consumers need:
//!
//! | state | key `(a, b, created_seq, id)` | used for |
//! |---|---|---|
//! | Scheduled | `(scheduled_at, 0)` | due promotion, next due time |
//! | Ready | `(-priority, scheduled_at)` | selection order |
//! | Leased, Running | `(lease expiry or i64::MIN, 0)` | expiry sweep (lease-less runs first) |
//! | RetryWait | `(not_before, 0)` | retry promotion, next due time |
//! | Suspended and terminal | `(last_state_change_at, 0)` | listing, pruning by age |
//!
//! Counts per state are the sets' lengths. Besides the sets: the concurrency-key slots (key →
//! holder run, plus how many tasks use the key), dedupe keys of live tasks, and finished tasks
//! with no runs left (pruning candidates). Per-task run lists live on the task itself.
//!
//! Dispatch candidates: the Ready runs selection may pick now, in selection order — every Ready
//! run without a concurrency key, and for each key nobody holds, its first Ready run. Keyed
//! Ready runs are also filed per key, so a key's next head is found in O(log n) when its
//! holder lets go. (Scanning the Ready set and skipping runs of held keys cost O(blocked
//! runs) per dispatch: 8,000 runs waiting behind one key made a drain quadratic.)

use std::collections::BTreeSet;

use super::Map;

use crate::model::{HoldPolicy, Id, Millis, RunState};

use super::types::{Run, Task};

/// A run's position in the index of its state. Ordered field by field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IxKey {
    pub a: i64,
    pub b: i64,
    pub seq: u64,
    pub id: Id,
}

/// Everything about a run that its index entries depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Placement {
    pub state: RunState,
    pub key: IxKey,
    pub holds_key: bool,
    /// A Ready retry under `HoldDuringRetry` (see [`retries_first`]).
    pub retry: bool,
}

/// Whether a run in `state` holds its task's concurrency key (if the task has one).
pub fn holds_key(state: RunState, hold: HoldPolicy) -> bool {
    match state {
        RunState::Leased | RunState::Running => true,
        RunState::RetryWait | RunState::Suspended => hold == HoldPolicy::HoldDuringRetry,
        _ => false,
    }
}

/// Whether a Ready run goes before the other Ready runs of its key: a retry (it has made an
/// attempt: back from RetryWait or Suspended, or given back at a shutdown) of a task whose
/// hold policy is `HoldDuringRetry`. The key was held for it while it waited; without this a
/// run with a higher priority (or an earlier schedule) took the key as soon as the retry was
/// due, so "a failing migration is retried before the next one starts" did not hold. Only
/// the dispatch order changes: the lease rule (holders: Leased, Running, and under the hold
/// policy RetryWait / Suspended) is the same, so logs written before replay unchanged.
pub fn retries_first(run: &Run, hold: HoldPolicy) -> bool {
    run.state == RunState::Ready && hold == HoldPolicy::HoldDuringRetry && !run.attempts.is_empty()
}

pub(crate) fn placement(run: &Run, task: &Task) -> Placement {
    let (a, b) = match run.state {
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
    let c = &task.spec.shape.constraints;
    Placement {
        state: run.state,
        key: IxKey {
            a,
            b,
            seq: run.created_seq,
            id: run.id,
        },
        holds_key: c.concurrency_key.is_some() && holds_key(run.state, c.hold),
        retry: c.concurrency_key.is_some() && retries_first(run, c.hold),
    }
}

/// A concurrency key: who holds it, and how many tasks name it (the slot lives while > 0).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySlot {
    pub holder: Option<Id>,
    pub tasks: u32,
}

#[derive(Debug, Default)]
pub struct Indexes {
    pub(crate) by_state: [BTreeSet<IxKey>; 9],
    pub(crate) keys: Map<String, KeySlot>,
    pub(crate) dedupe: Map<String, Id>,
    /// Finished tasks with no runs left, by (finished_at, id): what Prune may drop.
    pub(crate) empty_finished: BTreeSet<(Millis, Id)>,
    /// Runs that became terminal and tasks that finished since the last freeze (see
    /// `tiers.rs`), collected only while `finished.on`.
    pub(crate) finished: Finished,
    /// Ready runs of keyed tasks, per key, in selection order.
    pub(crate) ready_by_key: Map<String, BTreeSet<IxKey>>,
    /// The Ready retries among them (see [`retries_first`]): a key's head comes from here
    /// first.
    pub(crate) retries_by_key: Map<String, BTreeSet<IxKey>>,
    /// Dispatch candidates in selection order (see the module doc).
    pub(crate) candidates: BTreeSet<IxKey>,
    /// The candidate of each key that has one (its first Ready run, while nobody holds it).
    pub(crate) key_head: Map<String, IxKey>,
}

/// Records that became freezable (terminal runs, finished tasks), in the order they did. May
/// hold ids that were rolled back, thawed or pruned since: the freeze re-checks each one.
#[derive(Debug, Default)]
pub(crate) struct Finished {
    pub on: bool,
    /// Queue length that triggers a freeze (0: `tiers::FREEZE_BATCH`; tests set it lower).
    pub batch: usize,
    pub runs: Vec<Id>,
    pub tasks: Vec<Id>,
}

impl Finished {
    pub fn len(&self) -> usize {
        self.runs.len() + self.tasks.len()
    }
}

impl Indexes {
    // `RunState` has exactly 9 variants and `by_state` 9 sets: the index is always in range.
    #[allow(clippy::indexing_slicing)]
    pub(crate) fn set(&self, state: RunState) -> &BTreeSet<IxKey> {
        &self.by_state[state as usize]
    }

    #[allow(clippy::indexing_slicing)]
    pub(crate) fn set_mut(&mut self, state: RunState) -> &mut BTreeSet<IxKey> {
        &mut self.by_state[state as usize]
    }

    pub(crate) fn insert(&mut self, p: &Placement, key: Option<&str>) {
        self.set_mut(p.state).insert(p.key);
        if p.holds_key {
            if let Some(slot) = key.and_then(|k| self.keys.get_mut(k)) {
                slot.holder = Some(p.key.id);
            }
        }
        if p.state == RunState::Ready {
            self.ready_added(p.key, key, p.retry);
        } else if p.holds_key {
            self.refresh_key(key);
        }
    }

    pub(crate) fn remove(&mut self, p: &Placement, key: Option<&str>) {
        self.set_mut(p.state).remove(&p.key);
        if p.holds_key {
            if let Some(slot) = key.and_then(|k| self.keys.get_mut(k)) {
                if slot.holder == Some(p.key.id) {
                    slot.holder = None;
                }
            }
        }
        if p.state == RunState::Ready {
            self.ready_removed(&p.key, key, p.retry);
        } else if p.holds_key {
            self.refresh_key(key);
        }
    }

    /// Moves a run's entries from `before` to `after` (no-op when nothing changed).
    pub(crate) fn update(&mut self, before: &Placement, after: &Placement, key: Option<&str>) {
        if before == after {
            return;
        }
        if before.state != after.state || before.key != after.key || before.retry != after.retry {
            self.set_mut(before.state).remove(&before.key);
            self.set_mut(after.state).insert(after.key);
            if before.state == RunState::Ready {
                self.ready_removed(&before.key, key, before.retry);
            }
            if after.state == RunState::Ready {
                self.ready_added(after.key, key, after.retry);
            }
        }
        if before.holds_key != after.holds_key {
            if let Some(slot) = key.and_then(|k| self.keys.get_mut(k)) {
                if after.holds_key {
                    slot.holder = Some(after.key.id);
                } else if slot.holder == Some(after.key.id) {
                    slot.holder = None;
                }
            }
            self.refresh_key(key);
        }
    }

    /// A run entered Ready: a candidate at once without a key, else filed under its key (and
    /// among its key's retries when `retry`).
    pub(crate) fn ready_added(&mut self, k: IxKey, key: Option<&str>, retry: bool) {
        let Some(key) = key else {
            self.candidates.insert(k);
            return;
        };
        if retry {
            self.retries_by_key
                .entry(key.to_owned())
                .or_default()
                .insert(k);
        }
        match self.ready_by_key.get_mut(key) {
            Some(set) => {
                set.insert(k);
            }
            None => {
                self.ready_by_key
                    .insert(key.to_owned(), BTreeSet::from([k]));
            }
        }
        self.refresh_key(Some(key));
    }

    fn ready_removed(&mut self, k: &IxKey, key: Option<&str>, retry: bool) {
        let Some(key) = key else {
            self.candidates.remove(k);
            return;
        };
        if retry {
            if let Some(set) = self.retries_by_key.get_mut(key) {
                set.remove(k);
                if set.is_empty() {
                    self.retries_by_key.remove(key);
                }
            }
        }
        if let Some(set) = self.ready_by_key.get_mut(key) {
            set.remove(k);
            if set.is_empty() {
                self.ready_by_key.remove(key);
            }
        }
        self.refresh_key(Some(key));
    }

    /// Makes `key`'s candidate its first Ready retry, else its first Ready run, if nobody
    /// holds the key; else none.
    fn refresh_key(&mut self, key: Option<&str>) {
        let Some(key) = key else { return };
        let want = if self.key_holder(key).is_none() {
            self.retries_by_key
                .get(key)
                .and_then(|s| s.first().copied())
                .or_else(|| self.ready_by_key.get(key).and_then(|s| s.first().copied()))
        } else {
            None
        };
        let have = self.key_head.get(key).copied();
        if want == have {
            return;
        }
        if let Some(h) = have {
            self.candidates.remove(&h);
            self.key_head.remove(key);
        }
        if let Some(w) = want {
            self.candidates.insert(w);
            self.key_head.insert(key.to_owned(), w);
        }
    }

    /// A task naming `key` was added.
    pub(crate) fn key_task_added(&mut self, key: &str) {
        if let Some(slot) = self.keys.get_mut(key) {
            slot.tasks += 1;
        } else {
            self.keys.insert(
                key.to_owned(),
                KeySlot {
                    holder: None,
                    tasks: 1,
                },
            );
        }
    }

    /// A task naming `key` went away.
    pub(crate) fn key_task_removed(&mut self, key: &str) {
        if let Some(slot) = self.keys.get_mut(key) {
            slot.tasks = slot.tasks.saturating_sub(1);
            if slot.tasks == 0 {
                self.keys.remove(key);
            }
        }
    }

    pub fn key_holder(&self, key: &str) -> Option<Id> {
        self.keys.get(key).and_then(|s| s.holder)
    }

    pub fn count(&self, state: RunState) -> usize {
        self.set(state).len()
    }
}

/// Keeps a task's derived status (finished_at, dedupe registration, pruning candidacy) in step
/// with its canceled flag and run counts. Finishing is monotone in forward application; the
/// reverse direction only happens while rolling a batch back.
pub(crate) fn sync_task(task: &mut Task, ix: &mut Indexes, at: Millis) {
    let id = task.id();
    let old = task.finished_at;
    let finished = task.is_finished();
    match (finished, old) {
        (true, None) => {
            task.finished_at = Some(at);
            if ix.finished.on {
                ix.finished.tasks.push(id);
            }
            if let Some(k) = task.spec.dedupe_key.as_deref() {
                if ix.dedupe.get(k) == Some(&id) {
                    ix.dedupe.remove(k);
                }
            }
        }
        (false, Some(_)) => {
            task.finished_at = None;
            if let Some(k) = task.spec.dedupe_key.as_deref() {
                ix.dedupe.insert(k.to_owned(), id);
            }
        }
        _ => {}
    }
    if let Some(f) = old {
        if task.finished_at != old || !task.runs.is_empty() {
            ix.empty_finished.remove(&(f, id));
        }
    }
    if let Some(f) = task.finished_at {
        if task.runs.is_empty() {
            ix.empty_finished.insert((f, id));
        }
    }
}
