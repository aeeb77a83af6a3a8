//! Snapshot images: the hot part (live records, decoded) and the rebuild from hot + cold.
//!
//! A snapshot body is `postcard(HotImage)` followed by the cold section (one `cold` segment:
//! terminal runs and finished tasks as encoded records). The hot part lists its tasks and runs
//! by creation sequence, with each hot task's run list (which may name cold runs).
//! [`Projection::from_parts`] rebuilds every index from both in O(n log n) and refuses an
//! image that breaks an invariant the reducer relies on (it never panics on a hostile one).
//! Cold records are checked for their fixed fields at load and fully when decoded.

use serde::{Deserialize, Serialize};

use crate::model::{Id, Millis, RunState};

use super::cold::Seg;
use super::indexes::{placement, sync_task, IxKey};
use super::types::{fmt_id, Run, Task};
use super::{Map, Projection};

/// Owned hot image (what decoding yields).
#[derive(Debug, Deserialize)]
pub struct HotImage {
    pub sequence: u64,
    pub paused_at: Option<Millis>,
    pub tasks: Vec<Task>,
    pub runs: Vec<Run>,
    /// `task_runs[i]`: the run list of `tasks[i]`, ordinal order.
    pub task_runs: Vec<Vec<Id>>,
}

/// Borrowed hot image (what encoding walks). Same field order and types as [`HotImage`].
#[derive(Debug, Serialize)]
pub struct HotImageRef<'a> {
    pub sequence: u64,
    pub paused_at: Option<Millis>,
    pub tasks: Vec<&'a Task>,
    pub runs: Vec<&'a Run>,
    pub task_runs: Vec<&'a [Id]>,
}

impl Projection {
    /// The hot image (borrows; sorts by creation sequence).
    pub fn hot_image(&self) -> HotImageRef<'_> {
        let mut tasks: Vec<&Task> = self.tasks.values().map(|t| &**t).collect();
        tasks.sort_unstable_by_key(|t| t.created_seq);
        let mut runs: Vec<&Run> = self.runs.values().map(|r| &**r).collect();
        runs.sort_unstable_by_key(|r| r.created_seq);
        let task_runs = tasks.iter().map(|t| t.runs.as_slice()).collect();
        HotImageRef {
            sequence: self.latest_sequence,
            paused_at: self.paused_at,
            tasks,
            runs,
            task_runs,
        }
    }

    /// Rebuilds a projection (and all its indexes) from a hot image and a cold section
    /// (`tabled`: a format-3 section, with lookup tables, used in place).
    pub(crate) fn from_parts(
        img: HotImage,
        cold: Option<Seg>,
        tabled: bool,
    ) -> Result<Self, String> {
        let seq = img.sequence;
        let mut p = Projection {
            latest_sequence: seq,
            paused_at: img.paused_at,
            ..Projection::default()
        };
        if img.task_runs.len() != img.tasks.len() {
            return Err("hot image: one run list per task expected".into());
        }
        p.tasks.reserve(img.tasks.len());
        p.runs.reserve(img.runs.len());
        // Only the canonical image is accepted: tasks and runs strictly in creation order
        // (every creation has its own WAL sequence). Otherwise a checksummed but reordered
        // image would load, and the snapshot taken from it (re-encoded in canonical order)
        // could fail the ordinal check below and never load again.
        let mut prev_task = None;
        let mut prev_run = None;
        for (mut t, list) in img.tasks.into_iter().zip(img.task_runs) {
            let id = t.id();
            if prev_task.is_some_and(|s| s >= t.created_seq) {
                return Err(format!("task {} is out of creation order", fmt_id(&id)));
            }
            prev_task = Some(t.created_seq);
            t.runs = list;
            t.nonterminal_runs = 0;
            if t.created_seq > seq {
                return Err(format!(
                    "task {} created after the image sequence",
                    fmt_id(&id)
                ));
            }
            if let Some(k) = t.spec.shape.constraints.concurrency_key.as_deref() {
                p.ix.key_task_added(k);
            }
            p.shapes.share(&mut t.spec.shape);
            if p.tasks.insert(id, Box::new(t)).is_some() {
                return Err(format!("task {} appears twice", fmt_id(&id)));
            }
        }
        let loaded = match cold {
            Some(seg) => {
                let tasks = &p.tasks;
                let hot_task = |id: &Id| tasks.contains_key(id);
                if tabled {
                    p.cold.add_tabled(seg, (seq, &hot_task))?
                } else {
                    p.cold.add(seg, Some((seq, &hot_task)))?
                }
            }
            None => Default::default(),
        };
        for t in p.tasks.keys() {
            if p.cold.has_task(t) {
                return Err(format!("task {} is both hot and cold", fmt_id(t)));
            }
        }
        // Index keys per state, bulk-built into the ordered sets below (O(n) once sorted).
        let mut buckets: [Vec<IxKey>; 9] = loaded.keys;
        for run in img.runs {
            let id = run.id;
            if prev_run.is_some_and(|s| s >= run.created_seq) {
                return Err(format!("run {} is out of creation order", fmt_id(&id)));
            }
            prev_run = Some(run.created_seq);
            if p.cold.has_run(&id) {
                return Err(format!("run {} is both hot and cold", fmt_id(&id)));
            }
            let task = p
                .tasks
                .get_mut(&run.task_id)
                .ok_or_else(|| format!("run {} names a missing task", fmt_id(&id)))?;
            check_run(&run, task, seq)?;
            let pl = placement(&run, task);
            let key = task.spec.shape.constraints.concurrency_key.as_deref();
            if pl.holds_key {
                if let Some(h) = key.and_then(|k| p.ix.key_holder(k)) {
                    return Err(format!(
                        "runs {} and {} both hold a concurrency key",
                        fmt_id(&h),
                        fmt_id(&id)
                    ));
                }
                if let Some(slot) = key.and_then(|k| p.ix.keys.get_mut(k)) {
                    slot.holder = Some(id);
                }
            }
            if let Some(bucket) = buckets.get_mut(pl.state as usize) {
                bucket.push(pl.key);
            }
            if !run.state.is_terminal() {
                task.nonterminal_runs = task.nonterminal_runs.saturating_add(1);
            }
            if p.runs.insert(id, Box::new(run)).is_some() {
                return Err(format!("run {} appears twice", fmt_id(&id)));
            }
        }
        check_run_lists(&p, &loaded.of_hot)?;
        for (set, mut keys) in p.ix.by_state.iter_mut().zip(buckets) {
            keys.sort_unstable();
            *set = keys.into_iter().collect();
        }
        // Dispatch candidates are derived: rebuilt from the Ready set and the key holders.
        let ready: Vec<IxKey> = p.ix.set(RunState::Ready).iter().copied().collect();
        for k in ready {
            let (retry, key) = p
                .runs
                .get(&k.id)
                .and_then(|r| {
                    let t = p.tasks.get(&r.task_id)?;
                    Some((
                        placement(r, t).retry,
                        t.spec.shape.constraints.concurrency_key.clone(),
                    ))
                })
                .unwrap_or((false, None));
            p.ix.ready_added(k, key.as_deref(), retry);
        }
        p.ix.empty_finished = loaded.empty.into_iter().collect();
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

/// Each hot task's run list names exactly its runs (hot ones, and the cold ones whose task is
/// hot), in strictly increasing ordinal order.
fn check_run_lists(p: &Projection, cold_of_hot: &[(Id, u32, Id)]) -> Result<(), String> {
    let cold: Map<Id, (Id, u32)> = cold_of_hot.iter().map(|&(t, o, r)| (r, (t, o))).collect();
    let mut listed = 0usize;
    for (tid, task) in p.tasks.iter() {
        let mut prev: Option<u32> = None;
        for rid in &task.runs {
            let (owner, ordinal) = match p.runs.get(rid) {
                Some(r) => (r.task_id, r.ordinal),
                None => *cold
                    .get(rid)
                    .ok_or_else(|| format!("task {} lists an unknown run", fmt_id(tid)))?,
            };
            if owner != *tid || prev.is_some_and(|o| o >= ordinal) {
                return Err(format!("run {} is out of ordinal order", fmt_id(rid)));
            }
            if ordinal >= task.runs_created {
                return Err(format!(
                    "run {} has ordinal {ordinal} beyond its task's count",
                    fmt_id(rid)
                ));
            }
            prev = Some(ordinal);
            listed += 1;
        }
    }
    if listed != p.runs.len() + cold.len() {
        return Err("a run is missing from its task's run list".into());
    }
    Ok(())
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
