//! Retention: the Prune event forgets old terminal runs and finished tasks left empty.
//!
//! O(k) in what is removed: terminal runs are indexed by their last state change, and finished
//! tasks with no runs by the time they finished. Prune is always the last event of its record
//! (checked up front), so it never needs an undo log.

use crate::model::{Millis, RunState};

use super::indexes::sync_task;
use super::Projection;

/// What one Prune removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneStats {
    pub runs: usize,
    pub tasks: usize,
}

impl Projection {
    /// Removes terminal runs whose last state change is `< before`, then finished tasks with no
    /// runs left that finished `< before`.
    pub(crate) fn prune(&mut self, before: Millis) -> PruneStats {
        let mut stats = PruneStats::default();
        let mut touched = Vec::new();
        for state in [RunState::Completed, RunState::Failed, RunState::Canceled] {
            let set = self.ix.set_mut(state);
            while let Some(first) = set.first().copied() {
                if first.a >= before {
                    break;
                }
                set.pop_first();
                if let Some(run) = self.runs.remove(&first.id) {
                    touched.push(run.task_id);
                    stats.runs += 1;
                } else if let Some(task) = self.cold.remove_run(&first.id) {
                    touched.push(task);
                    stats.runs += 1;
                }
            }
        }
        touched.sort_unstable();
        touched.dedup();
        for task_id in touched {
            // A cold task's run list changes: it becomes hot (a cold record that does not
            // decode keeps its stale list; only a forged snapshot could hold one).
            let _ = self.thaw_task(&task_id);
            if let Some(task) = self.tasks.get_mut(&task_id) {
                let (runs, cold) = (&self.runs, &self.cold);
                task.runs
                    .retain(|r| runs.contains_key(r) || cold.has_run(r));
                let at = task.finished_at.unwrap_or(before);
                sync_task(task, &mut self.ix, at);
            }
        }
        while let Some(&(finished_at, id)) = self.ix.empty_finished.first() {
            if finished_at >= before {
                break;
            }
            self.ix.empty_finished.pop_first();
            if self.cold.remove_task(&id) {
                stats.tasks += 1;
            } else if let Some(task) = self.tasks.remove(&id) {
                if let Some(k) = task.spec.dedupe_key.as_deref() {
                    if self.ix.dedupe.get(k) == Some(&id) {
                        self.ix.dedupe.remove(k);
                    }
                }
                if let Some(k) = task.spec.shape.constraints.concurrency_key.as_deref() {
                    self.ix.key_task_removed(k);
                }
                stats.tasks += 1;
            }
        }
        stats
    }
}
