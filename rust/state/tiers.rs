//! Moving records between the hot maps and the cold store (see `cold`).
//!
//! Freezing happens when a snapshot is captured; thawing when an event names a cold record
//! (before the event's handler runs, so the handlers only ever see hot records). Both only
//! change the representation: every query answers the same before and after, and the digest
//! does not change.

use crate::error::{CoreError, Result};
use crate::event::Event;
use crate::model::Id;

use super::cold::build_seg;
use super::Projection;

impl Projection {
    /// Moves every terminal run and finished task from the hot maps into a new cold segment.
    /// O(hot records): after the first call, what finished since the previous one plus what
    /// is live. Returns how many records moved.
    pub(crate) fn freeze(&mut self) -> Result<usize> {
        let mut runs: Vec<(u64, Id)> = self
            .runs
            .values()
            .filter(|r| r.state.is_terminal())
            .map(|r| (r.created_seq, r.id))
            .collect();
        let mut tasks: Vec<(u64, Id)> = self
            .tasks
            .values()
            .filter(|t| t.finished_at.is_some())
            .map(|t| (t.created_seq, t.id()))
            .collect();
        if runs.is_empty() && tasks.is_empty() {
            return Ok(0);
        }
        // Creation order inside a segment: the digest then sorts almost-sorted input.
        runs.sort_unstable();
        tasks.sort_unstable();
        let run_ids: Vec<Id> = runs.into_iter().map(|x| x.1).collect();
        let task_ids: Vec<Id> = tasks.into_iter().map(|x| x.1).collect();
        let seg = {
            let runs: Vec<_> = run_ids.iter().filter_map(|id| self.runs.get(id)).collect();
            let tasks: Vec<_> = task_ids
                .iter()
                .filter_map(|id| self.tasks.get(id))
                .collect();
            build_seg(&tasks, &runs).map_err(CoreError::Decode)?
        };
        self.cold.add(seg, None).map_err(CoreError::Decode)?;
        for id in &run_ids {
            self.runs.remove(id);
        }
        for id in &task_ids {
            if let Some(t) = self.tasks.remove(id) {
                if let Some(k) = t.spec.constraints.concurrency_key.as_deref() {
                    self.ix.key_task_removed(k);
                }
            }
        }
        Ok(run_ids.len() + task_ids.len())
    }

    /// Brings a cold task back into the hot map (no-op when it is not cold).
    pub(crate) fn thaw_task(&mut self, id: &Id) -> Result<()> {
        match self.cold.take_task(id) {
            None => Ok(()),
            Some(Err(e)) => Err(CoreError::Rejected(e)),
            Some(Ok(t)) => {
                if let Some(k) = t.spec.constraints.concurrency_key.as_deref() {
                    self.ix.key_task_added(k);
                }
                self.tasks.insert(*id, t);
                Ok(())
            }
        }
    }

    /// Brings a cold run (and its task, if cold) back into the hot maps.
    pub(crate) fn thaw_run(&mut self, id: &Id) -> Result<()> {
        match self.cold.take_run(id) {
            None => Ok(()),
            Some(Err(e)) => Err(CoreError::Rejected(e)),
            Some(Ok(r)) => {
                let task = r.task_id;
                self.runs.insert(*id, r);
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
