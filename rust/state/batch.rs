//! Atomic batches: sequence rules, the undo log and rollback.
//!
//! Each event handler checks every precondition before it changes anything, so an event that
//! fails leaves no trace of itself. Events earlier in the same batch did change the projection;
//! they pushed [`Undo`] entries, which are replayed in reverse when a later event fails. The
//! last event of an applied batch needs no undo entry (nothing after it can fail), so a
//! single-event record pays nothing for atomicity. A dry run ([`Projection::check`]) records
//! undo for every event and always rolls back: it is the same code as replay.

use crate::error::{CoreError, Result};
use crate::event::Event;
use crate::model::{Id, Millis, RunState};

use super::indexes::{placement, sync_task};
use super::time_check;
use super::types::{Lease, Run};
use super::Projection;

/// How to put back what one event changed.
#[derive(Debug)]
pub(crate) enum Undo {
    TaskCreated(Id),
    /// The task was not canceled before; its previous cancel reason.
    TaskCanceled {
        id: Id,
        reason: Option<String>,
    },
    RunCreated(Id),
    Run(RunSaved),
    Pause(Option<Millis>),
}

/// One entry of an [`UndoLog`] as stored: the small variants inline, a saved run or a cancel
/// reason in the log's side vectors (so an entry is 24 bytes, not the 128 of [`Undo`]: a
/// 1000-task record pushes 1000 of them, and writing 128 KB of undo log cost as much as
/// inserting the tasks).
#[derive(Debug)]
enum Slot {
    TaskCreated(Id),
    TaskCanceled(Id),
    RunCreated(Id),
    Run,
    Pause(Option<Millis>),
}

/// The undo log of the batch being applied: [`Undo`] entries, popped newest first.
#[derive(Debug, Default)]
pub(crate) struct UndoLog {
    slots: Vec<Slot>,
    runs: Vec<RunSaved>,
    reasons: Vec<Option<String>>,
}

impl UndoLog {
    pub fn push(&mut self, u: Undo) {
        let slot = match u {
            Undo::TaskCreated(id) => Slot::TaskCreated(id),
            Undo::TaskCanceled { id, reason } => {
                self.reasons.push(reason);
                Slot::TaskCanceled(id)
            }
            Undo::RunCreated(id) => Slot::RunCreated(id),
            Undo::Run(saved) => {
                self.runs.push(saved);
                Slot::Run
            }
            Undo::Pause(p) => Slot::Pause(p),
        };
        self.slots.push(slot);
    }

    pub fn pop(&mut self) -> Option<Undo> {
        Some(match self.slots.pop()? {
            Slot::TaskCreated(id) => Undo::TaskCreated(id),
            Slot::TaskCanceled(id) => Undo::TaskCanceled {
                id,
                reason: self.reasons.pop().flatten(),
            },
            Slot::RunCreated(id) => Undo::RunCreated(id),
            // Pushed together, popped in reverse order together: never missing.
            Slot::Run => Undo::Run(self.runs.pop()?),
            Slot::Pause(p) => Undo::Pause(p),
        })
    }

    pub fn clear(&mut self) {
        self.slots.clear();
        self.runs.clear();
        self.reasons.clear();
    }
}

/// The mutable scalars of a run before an event, plus the lengths of its histories.
#[derive(Debug)]
pub(crate) struct RunSaved {
    pub id: Id,
    pub state: RunState,
    pub effective_priority: i32,
    pub last_state_change_at: Millis,
    pub not_before: Option<Millis>,
    pub attempt_count: u32,
    pub current_attempt: Option<Id>,
    pub history_len: usize,
    pub attempts_len: usize,
    /// `Some(previous)` when the event changed the lease (the old value is moved here).
    pub lease: Option<Option<Lease>>,
    /// The event closed the last attempt: reopen it.
    pub reopen_last: bool,
}

impl RunSaved {
    pub fn of(run: &Run) -> Self {
        Self {
            id: run.id,
            state: run.state,
            effective_priority: run.effective_priority,
            last_state_change_at: run.last_state_change_at,
            not_before: run.not_before,
            attempt_count: run.attempt_count,
            current_attempt: run.current_attempt,
            history_len: run.history.len(),
            attempts_len: run.attempts.len(),
            lease: None,
            reopen_last: false,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Apply,
    Check,
    /// Apply, keeping the undo entries of every event until `commit` or `abort`.
    Tentative,
}

impl Projection {
    /// Applies one record: `events[i]` gets sequence `first_sequence + i`. All or nothing: if
    /// any event is refused, the projection is exactly as before and the error names why.
    pub fn apply(&mut self, first_sequence: u64, events: &[Event]) -> Result<()> {
        self.run_batch(first_sequence, events, Mode::Apply)
    }

    /// [`apply`](Self::apply) taking the events by value: what the projection keeps (a
    /// TaskCreate's spec) is moved in rather than cloned. Recovery's replay, which owns each
    /// decoded record and drops it right after.
    ///
    /// Unlike every other entry point it does not refuse negative times
    /// ([`time_check`](super::time_check)): a log written before that rule must still replay.
    pub fn apply_owned(&mut self, first_sequence: u64, events: Vec<Event>) -> Result<()> {
        let last_seq = self.batch_prelude(first_sequence, &events)?;
        let n = events.len();
        self.undo.clear();
        for (i, ev) in events.into_iter().enumerate() {
            // As in `run_batch`: the last event needs no undo entries (a refusal changes
            // nothing by itself; only the events before it are rolled back).
            let record = i + 1 < n;
            let seq = first_sequence.wrapping_add(i as u64);
            if let Err(e) = self.step_owned(seq, ev, record, false) {
                self.rollback();
                return Err(e);
            }
        }
        self.undo.clear();
        self.latest_sequence = last_seq;
        self.after_commit();
        Ok(())
    }

    /// Would [`apply`](Self::apply) accept this record? Runs the same code and rolls back, so
    /// the projection is unchanged either way.
    pub fn check(&mut self, first_sequence: u64, events: &[Event]) -> Result<()> {
        self.run_batch(first_sequence, events, Mode::Check)
    }

    /// [`check`](Self::check) and [`apply`](Self::apply) in one pass, for a writer that must
    /// validate before it logs: applies the record (same code, same refusals, rolled back on
    /// refusal) but keeps the undo entries of every event, so the caller can still take it back
    /// with [`abort_tentative`](Self::abort_tentative) (the log refused the record) or keep it
    /// with [`commit_tentative`](Self::commit_tentative). Nothing else may touch the projection
    /// in between. A record holding a Prune is refused (a prune cannot be undone): use check +
    /// apply for it.
    pub fn apply_tentative(&mut self, first_sequence: u64, events: &[Event]) -> Result<()> {
        if events.iter().any(|e| matches!(e, Event::Prune { .. })) {
            return Err(CoreError::InvalidArgument(
                "a record holding a Prune cannot be applied tentatively".into(),
            ));
        }
        self.run_batch(first_sequence, events, Mode::Tentative)
    }

    /// [`apply_tentative`](Self::apply_tentative) taking the events by value: what the
    /// projection keeps (a TaskCreate's spec) is moved in rather than cloned. For a writer
    /// that has already encoded the record (the mutation authority); commit with
    /// [`commit_tentative_count`](Self::commit_tentative_count).
    pub fn apply_tentative_owned(&mut self, first_sequence: u64, events: Vec<Event>) -> Result<()> {
        if events.iter().any(|e| matches!(e, Event::Prune { .. })) {
            return Err(CoreError::InvalidArgument(
                "a record holding a Prune cannot be applied tentatively".into(),
            ));
        }
        self.batch_prelude(first_sequence, &events)?;
        time_check::check_all(&events)?;
        self.undo.clear();
        for (i, ev) in events.into_iter().enumerate() {
            let seq = first_sequence.wrapping_add(i as u64);
            if let Err(e) = self.step_owned(seq, ev, true, false) {
                self.rollback();
                return Err(e);
            }
        }
        Ok(())
    }

    /// Keeps the record applied by [`apply_tentative`](Self::apply_tentative).
    pub fn commit_tentative(&mut self, first_sequence: u64, events: &[Event]) {
        self.commit_tentative_count(first_sequence, events.len());
    }

    /// Keeps the record of `count` events applied by
    /// [`apply_tentative_owned`](Self::apply_tentative_owned) (or `apply_tentative`).
    pub fn commit_tentative_count(&mut self, first_sequence: u64, count: usize) {
        self.undo.clear();
        self.latest_sequence = first_sequence
            .saturating_add(count as u64)
            .saturating_sub(1);
        self.after_commit();
    }

    /// Takes back the record applied by [`apply_tentative`](Self::apply_tentative): the
    /// projection is exactly as before it.
    pub fn abort_tentative(&mut self) {
        self.rollback();
    }

    fn run_batch(&mut self, first: u64, events: &[Event], mode: Mode) -> Result<()> {
        let last_seq = self.batch_prelude(first, events)?;
        time_check::check_all(events)?;
        let n = events.len();
        self.undo.clear();
        for (i, ev) in events.iter().enumerate() {
            let record = mode != Mode::Apply || i + 1 < n;
            let seq = first.wrapping_add(i as u64);
            if let Err(e) = self.step(seq, ev, record, mode == Mode::Check) {
                self.rollback();
                return Err(e);
            }
        }
        match mode {
            Mode::Check => self.rollback(),
            Mode::Tentative => {}
            Mode::Apply => {
                self.undo.clear();
                self.latest_sequence = last_seq;
                self.after_commit();
            }
        }
        Ok(())
    }

    /// The record-level rules (sequence, non-empty, Prune last); the record's last sequence.
    fn batch_prelude(&self, first: u64, events: &[Event]) -> Result<u64> {
        let expected = self.next_sequence();
        if first != expected {
            return Err(CoreError::Sequence {
                expected,
                got: first,
            });
        }
        let n = events.len();
        if n == 0 {
            return Err(CoreError::Rejected(
                "a record must hold at least one event".into(),
            ));
        }
        let last_seq = u64::try_from(n - 1)
            .ok()
            .and_then(|k| first.checked_add(k))
            .ok_or_else(|| CoreError::Rejected(format!("sequence overflow after {first}")))?;
        if let Some(i) = events
            .iter()
            .take(n - 1)
            .position(|e| matches!(e, Event::Prune { .. }))
        {
            return Err(CoreError::Rejected(format!(
                "Prune must be the last event of its record (found at position {i} of {n})"
            )));
        }
        Ok(last_seq)
    }

    /// Undoes the current undo log, newest first.
    fn rollback(&mut self) {
        while let Some(u) = self.undo.pop() {
            self.undo_one(u);
        }
    }

    fn undo_one(&mut self, u: Undo) {
        match u {
            Undo::Pause(prev) => self.paused_at = prev,
            Undo::TaskCreated(id) => {
                if let Some(task) = self.tasks.remove(&id) {
                    if let Some(k) = task.spec.dedupe_key.as_deref() {
                        if self.ix.dedupe.get(k) == Some(&id) {
                            self.ix.dedupe.remove(k);
                        }
                    }
                    if let Some(k) = task.spec.shape.constraints.concurrency_key.as_deref() {
                        self.ix.key_task_removed(k);
                    }
                }
            }
            Undo::TaskCanceled { id, reason } => {
                if let Some(task) = self.tasks.get_mut(&id) {
                    task.canceled_at = None;
                    task.cancel_reason = reason;
                    let at = task.created_at;
                    sync_task(task, &mut self.ix, at);
                }
            }
            Undo::RunCreated(id) => {
                let Some(run) = self.runs.remove(&id) else {
                    return;
                };
                let Some(task) = self.tasks.get_mut(&run.task_id) else {
                    return;
                };
                let p = placement(&run, task);
                self.ix
                    .remove(&p, task.spec.shape.constraints.concurrency_key.as_deref());
                if task.runs.last() == Some(&id) {
                    task.runs.pop();
                }
                task.runs_created = task.runs_created.saturating_sub(1);
                if !run.state.is_terminal() {
                    task.nonterminal_runs = task.nonterminal_runs.saturating_sub(1);
                }
                sync_task(task, &mut self.ix, run.created_at);
            }
            Undo::Run(s) => {
                let Some(run) = self.runs.get_mut(&s.id) else {
                    return;
                };
                let Some(task) = self.tasks.get_mut(&run.task_id) else {
                    return;
                };
                let before = placement(run, task);
                run.state = s.state;
                run.effective_priority = s.effective_priority;
                run.last_state_change_at = s.last_state_change_at;
                run.not_before = s.not_before;
                run.attempt_count = s.attempt_count;
                run.current_attempt = s.current_attempt;
                run.history.truncate(s.history_len);
                run.attempts.truncate(s.attempts_len);
                if let Some(lease) = s.lease {
                    run.lease = lease;
                }
                if s.reopen_last {
                    if let Some(a) = run.attempts.last_mut() {
                        a.finished_at = None;
                        a.outcome = None;
                        a.error = None;
                        a.output = None;
                    }
                }
                let at = run.last_state_change_at;
                super::reducer::commit_change(run, task, &mut self.ix, &before, at);
            }
        }
    }
}
