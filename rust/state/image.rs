//! The canonical image of a projection: what snapshots store and the digest hashes.
//!
//! An image is `(sequence, paused_at, tasks, runs)` with tasks ordered by their creation
//! sequence and runs by theirs (both unique), so it does not depend on hash-map order. Only
//! persisted fields are in it; indexes and other derived fields are rebuilt by
//! [`Projection::from_image`] in O(n log n), which also refuses an image that breaks an
//! invariant the reducer relies on (it never panics on a hostile one).

use serde::{Deserialize, Serialize};

use crate::model::{Millis, RunState};

use super::indexes::{placement, sync_task, IxKey};
use super::types::{fmt_id, Run, Task};
use super::Projection;

/// Owned image (what decoding yields).
#[derive(Debug, Deserialize)]
pub struct Image {
    pub sequence: u64,
    pub paused_at: Option<Millis>,
    pub tasks: Vec<Task>,
    pub runs: Vec<Run>,
}

/// Borrowed image (what encoding walks). Same field order and types as [`Image`], so both
/// have the same postcard encoding.
#[derive(Debug, Serialize)]
pub struct ImageRef<'a> {
    pub sequence: u64,
    pub paused_at: Option<Millis>,
    pub tasks: Vec<&'a Task>,
    pub runs: Vec<&'a Run>,
}

impl Projection {
    /// The canonical image of this projection (borrows; sorts ids by creation sequence).
    pub fn image(&self) -> ImageRef<'_> {
        let mut tasks: Vec<&Task> = self.tasks.values().collect();
        tasks.sort_unstable_by_key(|t| t.created_seq);
        let mut runs: Vec<&Run> = self.runs.values().collect();
        runs.sort_unstable_by_key(|r| r.created_seq);
        ImageRef {
            sequence: self.latest_sequence,
            paused_at: self.paused_at,
            tasks,
            runs,
        }
    }

    /// Rebuilds a projection (and all its indexes) from an image.
    pub fn from_image(img: Image) -> Result<Self, String> {
        let mut p = Projection {
            latest_sequence: img.sequence,
            paused_at: img.paused_at,
            ..Projection::default()
        };
        p.tasks.reserve(img.tasks.len());
        p.runs.reserve(img.runs.len());
        // Only the canonical image is accepted: tasks and runs strictly in creation order
        // (every creation has its own WAL sequence). Otherwise a checksummed but reordered
        // image would load, and the snapshot taken from it (re-encoded in canonical order)
        // could fail the ordinal check below and never load again.
        let mut prev_task = None;
        let mut prev_run = None;
        for mut t in img.tasks {
            let id = t.id();
            if prev_task.is_some_and(|s| s >= t.created_seq) {
                return Err(format!("task {} is out of creation order", fmt_id(&id)));
            }
            prev_task = Some(t.created_seq);
            t.runs = Vec::new();
            t.nonterminal_runs = 0;
            if t.created_seq > img.sequence {
                return Err(format!(
                    "task {} created after the image sequence",
                    fmt_id(&id)
                ));
            }
            if let Some(k) = t.spec.constraints.concurrency_key.as_deref() {
                p.ix.key_task_added(k);
            }
            if p.tasks.insert(id, t).is_some() {
                return Err(format!("task {} appears twice", fmt_id(&id)));
            }
        }
        // Index keys per state, bulk-built into the ordered sets below (O(n) once sorted).
        let mut buckets: [Vec<IxKey>; 9] = Default::default();
        for run in img.runs {
            let id = run.id;
            if prev_run.is_some_and(|s| s >= run.created_seq) {
                return Err(format!("run {} is out of creation order", fmt_id(&id)));
            }
            prev_run = Some(run.created_seq);
            let task = p
                .tasks
                .get_mut(&run.task_id)
                .ok_or_else(|| format!("run {} names a missing task", fmt_id(&id)))?;
            check_run(&run, task, img.sequence)?;
            let prev_ordinal = task
                .runs
                .last()
                .and_then(|r| p.runs.get(r))
                .map(|r| r.ordinal);
            if prev_ordinal.is_some_and(|o| o >= run.ordinal) {
                return Err(format!("run {} is out of ordinal order", fmt_id(&id)));
            }
            let pl = placement(&run, task);
            let key = task.spec.constraints.concurrency_key.as_deref();
            if pl.holds_key {
                if let Some(h) = key.and_then(|k| p.ix.key_holder(k)) {
                    return Err(format!(
                        "runs {} and {} both hold a concurrency key",
                        fmt_id(&h),
                        fmt_id(&id)
                    ));
                }
            }
            if pl.holds_key {
                if let Some(slot) = key.and_then(|k| p.ix.keys.get_mut(k)) {
                    slot.holder = Some(id);
                }
            }
            if let Some(bucket) = buckets.get_mut(pl.state as usize) {
                bucket.push(pl.key);
            }
            task.runs.push(id);
            if !run.state.is_terminal() {
                task.nonterminal_runs = task.nonterminal_runs.saturating_add(1);
            }
            if p.runs.insert(id, run).is_some() {
                return Err(format!("run {} appears twice", fmt_id(&id)));
            }
        }
        for (set, mut keys) in p.ix.by_state.iter_mut().zip(buckets) {
            keys.sort_unstable();
            *set = keys.into_iter().collect();
        }
        for task in p.tasks.values_mut() {
            let id = task.id();
            if task.is_finished() != task.finished_at.is_some() {
                return Err(format!(
                    "task {} has an inconsistent finished time",
                    fmt_id(&id)
                ));
            }
            if task.is_live() {
                if let Some(k) = task.spec.dedupe_key.as_deref() {
                    if p.ix.dedupe.insert(k.to_owned(), id).is_some() {
                        return Err(format!("dedupe key {k:?} is held by two live tasks"));
                    }
                }
            }
            let at = task.finished_at.unwrap_or(task.created_at);
            sync_task(task, &mut p.ix, at);
        }
        Ok(p)
    }
}

/// Formats an id only when a message is actually built.
struct Hex<'a>(&'a crate::model::Id);

impl std::fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&fmt_id(self.0))
    }
}

/// The per-run invariants the reducer's code relies on.
fn check_run(run: &Run, task: &Task, sequence: u64) -> Result<(), String> {
    let id = Hex(&run.id);
    if run.created_seq > sequence || run.created_seq < task.created_seq {
        return Err(format!("run {id} has an impossible creation sequence"));
    }
    if run.ordinal >= task.runs_created {
        return Err(format!(
            "run {id} has ordinal {} beyond its task's count",
            run.ordinal
        ));
    }
    let leased = matches!(run.state, RunState::Leased | RunState::Running);
    if run.lease.is_some() && !leased {
        return Err(format!("run {id} holds a lease while {}", run.state.name()));
    }
    if run.not_before.is_some() != (run.state == RunState::RetryWait) {
        return Err(format!(
            "run {id} has not_before inconsistent with {}",
            run.state.name()
        ));
    }
    if let Some(a) = run.current_attempt {
        let last_open = run
            .attempts
            .last()
            .is_some_and(|l| l.id == a && l.outcome.is_none());
        if run.state != RunState::Running || !last_open {
            return Err(format!("run {id} has an inconsistent open attempt"));
        }
    }
    if task.is_canceled() && !run.state.is_terminal() {
        return Err(format!(
            "run {id} of a canceled task is {}",
            run.state.name()
        ));
    }
    Ok(())
}
