//! Retention: the Prune event forgets old terminal runs and finished tasks left empty.
//!
//! O(k) in what is removed: terminal runs are indexed by their last state change, and finished
//! tasks with no runs by the time they finished. Prune is always the last event of its record
//! (checked up front), so it never needs an undo log.
//!
//! One terminal run is kept however old: the newest run (by ordinal) of a cron task that is
//! not finished. The task's next occurrences are derived strictly after it (a task's
//! `last_scheduled_at` is that of its newest run still held), so forgetting it moved the
//! schedule back and the engine derived its occurrence again: a second run of an occurrence
//! that had already run. It happens when the newest run ends first while older ones are still
//! to run (a catch-up cap larger than the window keeps more missed runs than the window; they
//! run in parallel). It goes with the next prune once a newer run exists, or with its task.

use crate::model::{Id, Millis, PolicyKind, RunState};

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
            let due: Vec<_> = self
                .ix
                .set(state)
                .iter()
                .take_while(|k| k.a < before)
                .copied()
                .collect();
            for key in due {
                if self.schedules_after(&key.id) {
                    continue;
                }
                self.ix.set_mut(state).remove(&key);
                if let Some(run) = self.runs.remove(&key.id) {
                    touched.push(run.task_id);
                    stats.runs += 1;
                } else if let Some(task) = self.cold.remove_run(&key.id) {
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

    /// Whether terminal run `id` is the newest run of a cron task that is not finished: the
    /// run its next occurrences are derived after, which prune keeps (see the module docs).
    /// Such a task is hot (cold tasks are finished).
    fn schedules_after(&self, id: &Id) -> bool {
        let task_id = match self.runs.get(id) {
            Some(run) => run.task_id,
            None => match self.cold.run_task(id) {
                Some(t) => t,
                None => return false,
            },
        };
        self.tasks.get(&task_id).is_some_and(|t| {
            matches!(t.spec.shape.policy.kind, PolicyKind::Cron { .. })
                && !t.is_finished()
                && t.runs.last() == Some(id)
        })
    }
}
