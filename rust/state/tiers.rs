//! Moving records between the hot maps and the cold store (see `cold`).
//!
//! Freezing happens in batches as records finish (when auto-freeze is on: the authority's
//! projection) and, for whatever finished since the last batch, when a snapshot is captured; thawing when an event names a cold record
//! (before the event's handler runs, so the handlers only ever see hot records). Both only
//! change the representation: every query answers the same before and after, and the digest
//! does not change.

use crate::error::{CoreError, Result};
use crate::event::Event;
use crate::model::Id;

use super::cold::build_seg;
use super::Projection;

/// How many queued records (runs that became terminal, tasks that finished) make the next
/// committed record freeze them (see [`Projection::set_auto_freeze`]): large enough that a
/// segment's fixed costs are amortised, small enough that one freeze is a short pause.
pub const FREEZE_BATCH: usize = 1024;

impl Projection {
    /// Moves every terminal run and finished task from the hot maps into a new cold segment.
    /// O(hot records): after the first call, what finished since the previous one plus what
    /// is live. Returns how many records moved.
    pub(crate) fn freeze(&mut self) -> Result<usize> {
        let runs: Vec<(u64, Id)> = self
            .runs
            .values()
            .filter(|r| r.state.is_terminal())
            .map(|r| (r.created_seq, r.id))
            .collect();
        let tasks: Vec<(u64, Id)> = self
            .tasks
            .values()
            .filter(|t| t.finished_at.is_some())
            .map(|t| (t.created_seq, t.id()))
            .collect();
        self.ix.finished.runs.clear();
        self.ix.finished.tasks.clear();
        self.freeze_these(runs, tasks)
    }

    /// Keeps the cold store current as records finish (the authority's projection): the
    /// reducer then queues every run that becomes terminal and every task that finishes, and
    /// once [`FREEZE_BATCH`] are queued the next committed record freezes them. A snapshot
    /// capture then only freezes what finished since the last batch, instead of everything
    /// that finished since the previous snapshot (a million runs: seconds under the owner's
    /// lock). Off by default (a replay tool or test sees the plain hot maps).
    /// Turning it on freezes whatever is already terminal / finished (so every hot terminal
    /// record is queued from then on).
    pub fn set_auto_freeze(&mut self, on: bool) -> Result<()> {
        if on && !self.ix.finished.on {
            self.freeze()?;
        }
        self.ix.finished.on = on;
        if !on {
            self.ix.finished.runs = Vec::new();
            self.ix.finished.tasks = Vec::new();
        }
        Ok(())
    }

    /// Sets the queue length that triggers a freeze (tests: small batches).
    #[cfg(test)]
    pub(crate) fn set_freeze_batch(&mut self, n: usize) {
        self.ix.finished.batch = n;
    }

    /// Called after a record is committed: freezes the queued records once there are enough.
    pub(crate) fn after_commit(&mut self) {
        let f = &self.ix.finished;
        let batch = if f.batch == 0 { FREEZE_BATCH } else { f.batch };
        if f.on && f.len() >= batch {
            // A freeze only changes the representation; if it fails (it cannot: encoding
            // into memory), the records simply stay hot.
            let _ = self.freeze_finished();
        }
    }

    /// Freezes the queued records that are still hot and still terminal / finished (the
    /// queue may name records rolled back, thawed, pruned or queued twice).
    pub(crate) fn freeze_finished(&mut self) -> Result<usize> {
        let queued_runs = std::mem::take(&mut self.ix.finished.runs);
        let queued_tasks = std::mem::take(&mut self.ix.finished.tasks);
        let mut runs: Vec<(u64, Id)> = queued_runs
            .iter()
            .filter_map(|id| self.runs.get(id))
            .filter(|r| r.state.is_terminal())
            .map(|r| (r.created_seq, r.id))
            .collect();
        let mut tasks: Vec<(u64, Id)> = queued_tasks
            .iter()
            .filter_map(|id| self.tasks.get(id).map(|t| &**t))
            .filter(|t| t.finished_at.is_some())
            .map(|t| (t.created_seq, t.id()))
            .collect();
        runs.sort_unstable();
        runs.dedup();
        tasks.sort_unstable();
        tasks.dedup();
        // Reuse the queues' allocations.
        self.ix.finished.runs = queued_runs;
        self.ix.finished.runs.clear();
        self.ix.finished.tasks = queued_tasks;
        self.ix.finished.tasks.clear();
        self.freeze_these(runs, tasks)
    }

    /// Moves the given hot records (terminal runs, finished tasks; `(created_seq, id)`) into
    /// a new cold segment, in creation order.
    fn freeze_these(
        &mut self,
        mut runs: Vec<(u64, Id)>,
        mut tasks: Vec<(u64, Id)>,
    ) -> Result<usize> {
        if runs.is_empty() && tasks.is_empty() {
            return Ok(0);
        }
        // Creation order inside a segment: the digest then sorts almost-sorted input.
        runs.sort_unstable();
        tasks.sort_unstable();
        let run_ids: Vec<Id> = runs.into_iter().map(|x| x.1).collect();
        let task_ids: Vec<Id> = tasks.into_iter().map(|x| x.1).collect();
        let seg = {
            let runs: Vec<_> = run_ids
                .iter()
                .filter_map(|id| self.runs.get(id).map(|r| &**r))
                .collect();
            let tasks: Vec<_> = task_ids
                .iter()
                .filter_map(|id| self.tasks.get(id).map(|t| &**t))
                .collect();
            build_seg(&tasks, &runs).map_err(CoreError::Decode)?
        };
        self.cold.add(seg, None).map_err(CoreError::Decode)?;
        for id in &run_ids {
            self.runs.remove(id);
        }
        for id in &task_ids {
            if let Some(t) = self.tasks.remove(id) {
                if let Some(k) = t.spec.shape.constraints.concurrency_key.as_deref() {
                    self.ix.key_task_removed(k);
                }
            }
        }
        Ok(run_ids.len() + task_ids.len())
    }

    /// Brings a cold task back into the hot map (no-op when it is not cold).
    pub(crate) fn thaw_task(&mut self, id: &Id) -> Result<()> {
        // A record is hot or cold, never both: the hot map answers most events at once (a
        // cold lookup in a loaded snapshot's tables costs a few cache misses).
        if self.tasks.contains_key(id) {
            return Ok(());
        }
        match self.cold.take_task(id) {
            None => Ok(()),
            Some(Err(e)) => Err(CoreError::Rejected(e)),
            Some(Ok(mut t)) => {
                if let Some(k) = t.spec.shape.constraints.concurrency_key.as_deref() {
                    self.ix.key_task_added(k);
                }
                self.shapes.share(&mut t.spec.shape);
                self.tasks.insert(*id, Box::new(t));
                if self.ix.finished.on {
                    // Still finished unless the event reopens it: queued to go back.
                    self.ix.finished.tasks.push(*id);
                }
                Ok(())
            }
        }
    }

    /// Brings a cold run (and its task, if cold) back into the hot maps.
    pub(crate) fn thaw_run(&mut self, id: &Id) -> Result<()> {
        if self.runs.contains_key(id) {
            return Ok(());
        }
        match self.cold.take_run(id) {
            None => Ok(()),
            Some(Err(e)) => Err(CoreError::Rejected(e)),
            Some(Ok(r)) => {
                let task = r.task_id;
                self.runs.insert(*id, Box::new(r));
                if self.ix.finished.on {
                    self.ix.finished.runs.push(*id);
                }
                self.thaw_task(&task)
            }
        }
    }

    /// Thaws whatever `ev` names, so its handler finds it in the hot maps.
    pub(crate) fn thaw_for(&mut self, ev: &Event) -> Result<()> {
        if self.cold.run_count() == 0 && self.cold.task_count() == 0 {
            return Ok(());
        }
        match ev {
            Event::TaskCreate { spec, .. } => self.thaw_task(&spec.id),
            Event::RunCreate {
                run_id, task_id, ..
            } => {
                self.thaw_run(run_id)?;
                self.thaw_task(task_id)
            }
            Event::RunTransition { run_id, .. }
            | Event::AttemptStart { run_id, .. }
            | Event::AttemptFinish { run_id, .. }
            | Event::LeaseAcquire { run_id, .. }
            | Event::LeaseHeartbeat { run_id, .. }
            | Event::LeaseExpire { run_id, .. }
            | Event::LeaseRelease { run_id, .. } => self.thaw_run(run_id),
            Event::TaskCancel { task_id, .. } => self.thaw_task(task_id),
            Event::EnginePause { .. } | Event::EngineResume { .. } | Event::Prune { .. } => Ok(()),
        }
    }
}
