//! One handler per event kind. Each checks every precondition first and only then changes the
//! projection (and, when asked, pushes the undo entry that reverses it), so a refused event
//! never leaves a partial change behind.

use crate::error::{CoreError, Result};
use crate::event::Event;
use crate::model::{AttemptOutcome, Id, Millis, RunState, TaskSpec, NIL_ID};

use super::batch::{RunSaved, Undo, UndoLog};
use super::indexes::{placement, sync_task, Indexes, Placement};
use super::spec_check;
use super::types::{fmt_id, Attempt, Run, StateChange, Task};
use super::Projection;

pub(super) fn rejected(msg: String) -> CoreError {
    CoreError::Rejected(msg)
}

pub(super) fn lease_err(msg: String) -> CoreError {
    CoreError::Lease(msg)
}

pub(super) fn run_not_found(id: &Id) -> CoreError {
    CoreError::NotFound {
        kind: "run",
        id: fmt_id(id),
    }
}

pub(super) fn task_not_found(id: &Id) -> CoreError {
    CoreError::NotFound {
        kind: "task",
        id: fmt_id(id),
    }
}

/// A run's task is always present (a task is pruned only once it has no runs); if that ever
/// failed to hold, refuse rather than panic.
pub(super) fn orphan(run: &Id) -> CoreError {
    rejected(format!(
        "projection inconsistency: the task of run {} is missing",
        fmt_id(run)
    ))
}

/// Re-files a changed run in the indexes and updates its task's derived status.
pub(crate) fn commit_change(
    run: &Run,
    task: &mut Task,
    ix: &mut Indexes,
    before: &Placement,
    at: Millis,
) {
    let after = placement(run, task);
    ix.update(
        before,
        &after,
        task.spec.shape.constraints.concurrency_key.as_deref(),
    );
    let was_terminal = before.state.is_terminal();
    let is_terminal = after.state.is_terminal();
    if was_terminal != is_terminal {
        if is_terminal {
            task.nonterminal_runs = task.nonterminal_runs.saturating_sub(1);
            if ix.finished.on {
                ix.finished.runs.push(run.id);
            }
        } else {
            task.nonterminal_runs = task.nonterminal_runs.saturating_add(1);
        }
        sync_task(task, ix, at);
    }
}

/// Moves a run to `to` once every precondition has been checked: closes an open attempt as
/// Canceled when canceling, drops the lease when leaving Leased/Running (except Leased ->
/// Running), records the effective priority entering Ready, appends the history entry.
#[allow(clippy::too_many_arguments)]
fn do_transition(
    run: &mut Run,
    task: &mut Task,
    ix: &mut Indexes,
    to: RunState,
    not_before: Option<Millis>,
    reason: Option<String>,
    at: Millis,
    undo: Option<&mut UndoLog>,
) {
    let mut saved = undo.is_some().then(|| RunSaved::of(run));
    let before = placement(run, task);
    let from = run.state;
    if to == RunState::Canceled && run.current_attempt.is_some() {
        if let Some(a) = run.attempts.last_mut() {
            a.finished_at = Some(at);
            a.outcome = Some(AttemptOutcome::Canceled);
        }
        run.current_attempt = None;
        if let Some(s) = saved.as_mut() {
            s.reopen_last = true;
        }
    }
    let keeps_lease = from == RunState::Leased && to == RunState::Running;
    if !keeps_lease && run.lease.is_some() {
        let old = run.lease.take();
        if let Some(s) = saved.as_mut() {
            s.lease = Some(old);
        }
    }
    if to == RunState::Ready {
        run.effective_priority = task.spec.shape.metadata.priority;
    }
    run.not_before = if to == RunState::RetryWait {
        not_before
    } else {
        None
    };
    run.history.push(StateChange {
        from,
        to,
        at,
        reason,
    });
    run.state = to;
    run.last_state_change_at = at;
    commit_change(run, task, ix, &before, at);
    if let (Some(u), Some(s)) = (undo, saved) {
        u.push(Undo::Run(s));
    }
}

impl Projection {
    /// [`step`](Self::step) taking the event by value: a TaskCreate's spec is moved into the
    /// projection instead of cloned (the other kinds keep only small values).
    pub(crate) fn step_owned(
        &mut self,
        seq: u64,
        ev: Event,
        record: bool,
        dry: bool,
    ) -> Result<()> {
        match ev {
            Event::TaskCreate { spec, origin, at } => {
                // What `thaw_for` does for a TaskCreate.
                if self.cold.task_count() > 0 {
                    self.thaw_task(&spec.id)?;
                }
                self.task_create_check(&spec)?;
                self.task_create_insert(seq, spec, origin, at, record);
                Ok(())
            }
            other => self.step(seq, &other, record, dry),
        }
    }

    /// Applies one event with sequence `seq`. `record`: push undo entries. `dry`: a dry run
    /// (only Prune looks at it: it is always last, so a dry Prune just succeeds unchanged).
    pub(crate) fn step(&mut self, seq: u64, ev: &Event, record: bool, dry: bool) -> Result<()> {
        // Representation only (cold record -> hot map): not undone on rollback.
        self.thaw_for(ev)?;
        match ev {
            Event::TaskCreate { spec, origin, at } => {
                self.task_create_check(spec)?;
                self.task_create_insert(seq, spec.clone(), *origin, *at, record);
                Ok(())
            }
            Event::RunCreate {
                run_id,
                task_id,
                ordinal,
                scheduled_at,
                at,
            } => self.run_create(seq, run_id, task_id, *ordinal, *scheduled_at, *at, record),
            Event::RunTransition {
                run_id,
                from,
                to,
                not_before,
                reason,
                at,
            } => self.run_transition(run_id, *from, *to, *not_before, reason, *at, record),
            Event::AttemptStart {
                run_id,
                attempt_id,
                at,
            } => self.attempt_start(run_id, attempt_id, *at, record),
            Event::AttemptFinish {
                run_id,
                attempt_id,
                outcome,
                error,
                output,
                at,
            } => self.attempt_finish(run_id, attempt_id, *outcome, error, output, *at, record),
            Event::LeaseAcquire {
                run_id,
                owner,
                expires_at,
                at,
            } => self.lease_acquire(run_id, owner, *expires_at, *at, record),
            Event::LeaseHeartbeat {
                run_id,
                owner,
                expires_at,
                at,
            } => self.lease_heartbeat(run_id, owner, *expires_at, *at, record),
            Event::LeaseExpire { run_id, owner, at } => {
                self.lease_remove(run_id, owner, *at, true, record)
            }
            Event::LeaseRelease { run_id, owner, at } => {
                self.lease_remove(run_id, owner, *at, false, record)
            }
            Event::TaskCancel {
                task_id,
                reason,
                at,
            } => self.task_cancel(task_id, reason, *at, record),
            Event::EnginePause { at } => {
                if let Some(since) = self.paused_at {
                    return Err(rejected(format!(
                        "the engine is already paused (since {since})"
                    )));
                }
                if record {
                    self.undo.push(Undo::Pause(None));
                }
                self.paused_at = Some(*at);
                Ok(())
            }
            Event::EngineResume { .. } => {
                let Some(since) = self.paused_at else {
                    return Err(rejected("the engine is not paused".into()));
                };
                if record {
                    self.undo.push(Undo::Pause(Some(since)));
                }
                self.paused_at = None;
                Ok(())
            }
            Event::Prune { before, .. } => {
                if !dry {
                    self.last_prune = self.prune(*before);
                }
                Ok(())
            }
        }
    }

    /// Every precondition of a TaskCreate (nothing changed).
    fn task_create_check(&self, spec: &TaskSpec) -> Result<()> {
        spec_check::validate(spec)?;
        if self.tasks.contains_key(&spec.id) {
            return Err(rejected(format!(
                "task {} already exists",
                fmt_id(&spec.id)
            )));
        }
        if let Some(k) = spec.dedupe_key.as_deref() {
            if let Some(other) = self.ix.dedupe.get(k) {
                return Err(rejected(format!(
                    "dedupe key {k:?} is held by live task {}",
                    fmt_id(other)
                )));
            }
        }
        Ok(())
    }

    /// Adds a task whose TaskCreate passed [`task_create_check`](Self::task_create_check).
    fn task_create_insert(
        &mut self,
        seq: u64,
        mut spec: Box<TaskSpec>,
        origin: Millis,
        at: Millis,
        record: bool,
    ) {
        self.shapes.share(&mut spec.shape);
        let id = spec.id;
        if let Some(k) = spec.shape.constraints.concurrency_key.as_deref() {
            self.ix.key_task_added(k);
        }
        if let Some(k) = spec.dedupe_key.as_deref() {
            self.ix.dedupe.insert(k.to_owned(), id);
        }
        self.tasks.insert(
            id,
            Box::new(Task {
                spec,
                origin,
                created_at: at,
                created_seq: seq,
                canceled_at: None,
                cancel_reason: None,
                runs_created: 0,
                finished_at: None,
                runs: Vec::new(),
                nonterminal_runs: 0,
            }),
        );
        if record {
            self.undo.push(Undo::TaskCreated(id));
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn run_create(
        &mut self,
        seq: u64,
        run_id: &Id,
        task_id: &Id,
        ordinal: u32,
        scheduled_at: Millis,
        at: Millis,
        record: bool,
    ) -> Result<()> {
        if *run_id == NIL_ID {
            return Err(rejected("the run id is nil".into()));
        }
        let task = self
            .tasks
            .get_mut(task_id)
            .ok_or_else(|| task_not_found(task_id))?;
        if task.is_canceled() {
            return Err(rejected(format!(
                "task {} is canceled; no runs may be created for it",
                fmt_id(task_id)
            )));
        }
        if self.runs.contains_key(run_id) {
            return Err(rejected(format!("run {} already exists", fmt_id(run_id))));
        }
        if ordinal != task.runs_created {
            return Err(rejected(format!(
                "run {} has ordinal {ordinal}, but task {} has {} runs so far",
                fmt_id(run_id),
                fmt_id(task_id),
                task.runs_created
            )));
        }
        if let Some(total) = task.spec.shape.policy.total_runs() {
            if u64::from(task.runs_created) >= total {
                return Err(rejected(format!(
                    "task {} already has all {total} runs its policy implies",
                    fmt_id(task_id)
                )));
            }
        }
        let Some(next) = task.runs_created.checked_add(1) else {
            return Err(rejected(format!(
                "task {} has too many runs",
                fmt_id(task_id)
            )));
        };
        let run = Run {
            id: *run_id,
            task_id: *task_id,
            state: RunState::Scheduled,
            ordinal,
            scheduled_at,
            created_at: at,
            created_seq: seq,
            attempt_count: 0,
            current_attempt: None,
            effective_priority: task.spec.shape.metadata.priority,
            last_state_change_at: at,
            not_before: None,
            lease: None,
            history: Vec::new(),
            attempts: Vec::new(),
        };
        let p = placement(&run, task);
        self.ix
            .insert(&p, task.spec.shape.constraints.concurrency_key.as_deref());
        task.runs.push(*run_id);
        task.runs_created = next;
        task.nonterminal_runs = task.nonterminal_runs.saturating_add(1);
        self.runs.insert(*run_id, Box::new(run));
        if record {
            self.undo.push(Undo::RunCreated(*run_id));
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn run_transition(
        &mut self,
        run_id: &Id,
        from: RunState,
        to: RunState,
        not_before: Option<Millis>,
        reason: &Option<String>,
        at: Millis,
        record: bool,
    ) -> Result<()> {
        let run = self
            .runs
            .get_mut(run_id)
            .ok_or_else(|| run_not_found(run_id))?;
        if run.state != from {
            return Err(rejected(format!(
                "run {} is {}, not {} as the transition to {} expects",
                fmt_id(run_id),
                run.state.name(),
                from.name(),
                to.name()
            )));
        }
        if !from.can_transition_to(to) {
            return Err(CoreError::InvalidTransition {
                run: fmt_id(run_id),
                from: from.name().into(),
                to: to.name().into(),
            });
        }
        let task = self
            .tasks
            .get_mut(&run.task_id)
            .ok_or_else(|| orphan(run_id))?;
        match (to, not_before) {
            (RunState::RetryWait, None) => {
                return Err(rejected(format!(
                    "entering RetryWait needs not_before (run {})",
                    fmt_id(run_id)
                )))
            }
            (RunState::RetryWait, Some(_)) | (_, None) => {}
            (_, Some(nb)) => {
                return Err(rejected(format!(
                    "not_before ({nb}) is only meaningful entering RetryWait, not {} (run {})",
                    to.name(),
                    fmt_id(run_id)
                )))
            }
        }
        if from == RunState::Running && to != RunState::Canceled {
            if let Some(a) = run.current_attempt {
                return Err(rejected(format!(
                    "run {} cannot leave Running for {} while attempt {} is open; finish it first",
                    fmt_id(run_id),
                    to.name(),
                    fmt_id(&a)
                )));
            }
        }
        if to == RunState::Running && run.live_lease(at).is_none() {
            return Err(lease_err(match &run.lease {
                None => format!(
                    "run {} has no lease; it cannot start Running",
                    fmt_id(run_id)
                ),
                Some(l) => format!(
                    "the lease of run {} expired at {} (now {at}); it cannot start Running",
                    fmt_id(run_id),
                    l.expires_at
                ),
            }));
        }
        if to == RunState::Leased {
            if let Some(since) = self.paused_at {
                return Err(rejected(format!(
                    "the engine is paused (since {since}); run {} cannot be leased",
                    fmt_id(run_id)
                )));
            }
            if let Some(k) = task.spec.shape.constraints.concurrency_key.as_deref() {
                if let Some(holder) = self.ix.key_holder(k) {
                    if holder != *run_id {
                        return Err(rejected(format!(
                            "concurrency key {k:?} is held by run {}; run {} cannot be leased",
                            fmt_id(&holder),
                            fmt_id(run_id)
                        )));
                    }
                }
            }
        }
        if from == RunState::Running && to == RunState::RetryWait {
            let max = task.spec.shape.constraints.max_attempts;
            if run.attempt_count >= max {
                return Err(rejected(format!(
                    "run {} has used {} of {max} attempts; it cannot retry (move it to Failed)",
                    fmt_id(run_id),
                    run.attempt_count
                )));
            }
        }
        let undo = record.then_some(&mut self.undo);
        do_transition(
            run,
            task,
            &mut self.ix,
            to,
            not_before,
            reason.clone(),
            at,
            undo,
        );
        Ok(())
    }

    fn attempt_start(
        &mut self,
        run_id: &Id,
        attempt_id: &Id,
        at: Millis,
        record: bool,
    ) -> Result<()> {
        let run = self
            .runs
            .get_mut(run_id)
            .ok_or_else(|| run_not_found(run_id))?;
        if *attempt_id == NIL_ID {
            return Err(rejected("the attempt id is nil".into()));
        }
        if run.state != RunState::Running {
            return Err(rejected(format!(
                "run {} is {}; attempts start only while Running",
                fmt_id(run_id),
                run.state.name()
            )));
        }
        if let Some(a) = run.current_attempt {
            return Err(rejected(format!(
                "run {} already has open attempt {}",
                fmt_id(run_id),
                fmt_id(&a)
            )));
        }
        if run.live_lease(at).is_none() {
            return Err(lease_err(format!(
                "run {} holds no live lease at {at}; no attempt may start",
                fmt_id(run_id)
            )));
        }
        let task = self.tasks.get(&run.task_id).ok_or_else(|| orphan(run_id))?;
        let max = task.spec.shape.constraints.max_attempts;
        if run.attempt_count >= max {
            return Err(rejected(format!(
                "run {} has used {} of {max} attempts; no attempt may start",
                fmt_id(run_id),
                run.attempt_count
            )));
        }
        if run.attempts.iter().any(|a| a.id == *attempt_id) {
            return Err(rejected(format!(
                "attempt {} already exists for run {}",
                fmt_id(attempt_id),
                fmt_id(run_id)
            )));
        }
        if record {
            self.undo.push(Undo::Run(RunSaved::of(run)));
        }
        run.attempts.push(Attempt {
            id: *attempt_id,
            started_at: at,
            finished_at: None,
            outcome: None,
            error: None,
            output: None,
        });
        run.current_attempt = Some(*attempt_id);
        run.attempt_count = run.attempt_count.saturating_add(1);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn attempt_finish(
        &mut self,
        run_id: &Id,
        attempt_id: &Id,
        outcome: AttemptOutcome,
        error: &Option<String>,
        output: &Option<Vec<u8>>,
        at: Millis,
        record: bool,
    ) -> Result<()> {
        let run = self
            .runs
            .get_mut(run_id)
            .ok_or_else(|| run_not_found(run_id))?;
        match run.current_attempt {
            None => {
                return Err(rejected(format!(
                    "run {} has no open attempt (it is {})",
                    fmt_id(run_id),
                    run.state.name()
                )))
            }
            Some(open) if open != *attempt_id => {
                return Err(rejected(format!(
                    "the open attempt of run {} is {}, not {}",
                    fmt_id(run_id),
                    fmt_id(&open),
                    fmt_id(attempt_id)
                )))
            }
            Some(_) => {}
        }
        if outcome == AttemptOutcome::Canceled {
            return Err(rejected(
                "outcome Canceled is recorded only by canceling the run".into(),
            ));
        }
        let mut saved = record.then(|| RunSaved::of(run));
        let Some(a) = run.attempts.last_mut().filter(|a| a.id == *attempt_id) else {
            return Err(rejected(format!(
                "projection inconsistency: open attempt {} of run {} is not its last",
                fmt_id(attempt_id),
                fmt_id(run_id)
            )));
        };
        a.finished_at = Some(at);
        a.outcome = Some(outcome);
        a.error.clone_from(error);
        a.output.clone_from(output);
        run.current_attempt = None;
        if !outcome.counts_toward_cap() {
            run.attempt_count = run.attempt_count.saturating_sub(1);
        }
        if let Some(mut s) = saved.take() {
            s.reopen_last = true;
            self.undo.push(Undo::Run(s));
        }
        Ok(())
    }

    fn task_cancel(
        &mut self,
        task_id: &Id,
        reason: &Option<String>,
        at: Millis,
        record: bool,
    ) -> Result<()> {
        let task = self
            .tasks
            .get_mut(task_id)
            .ok_or_else(|| task_not_found(task_id))?;
        if let Some(when) = task.canceled_at {
            return Err(rejected(format!(
                "task {} was already canceled at {when}",
                fmt_id(task_id)
            )));
        }
        let prev_reason = task.cancel_reason.take();
        task.cancel_reason.clone_from(reason);
        task.canceled_at = Some(at);
        if record {
            self.undo.push(Undo::TaskCanceled {
                id: *task_id,
                reason: prev_reason,
            });
        }
        let run_reason = reason.clone().unwrap_or_else(|| "task canceled".to_owned());
        let mut i = 0;
        while let Some(run_id) = task.runs.get(i).copied() {
            i += 1;
            let Some(run) = self.runs.get_mut(&run_id) else {
                continue;
            };
            if run.state.is_terminal() {
                continue;
            }
            let undo = record.then_some(&mut self.undo);
            do_transition(
                run,
                task,
                &mut self.ix,
                RunState::Canceled,
                None,
                Some(run_reason.clone()),
                at,
                undo,
            );
        }
        sync_task(task, &mut self.ix, at);
        Ok(())
    }
}
