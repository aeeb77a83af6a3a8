//! Lease handlers: acquire, heartbeat, expire, release. Like every handler, each checks all its
//! preconditions before changing anything.

use crate::error::Result;
use crate::model::{Id, Millis, RunState};

use super::batch::{RunSaved, Undo};
use super::indexes::placement;
use super::reducer::{commit_change, lease_err, orphan, run_not_found};
use super::types::{fmt_id, Lease, Run};
use super::Projection;

impl Projection {
    pub(super) fn lease_acquire(
        &mut self,
        run_id: &Id,
        owner: &str,
        expires_at: Millis,
        at: Millis,
        record: bool,
    ) -> Result<()> {
        let run = self
            .runs
            .get_mut(run_id)
            .ok_or_else(|| run_not_found(run_id))?;
        if run.state != RunState::Leased {
            return Err(lease_err(format!(
                "run {} is {}; a lease is acquired only in Leased",
                fmt_id(run_id),
                run.state.name()
            )));
        }
        if let Some(l) = &run.lease {
            return Err(lease_err(format!(
                "run {} is already leased by {:?} until {}",
                fmt_id(run_id),
                l.owner,
                l.expires_at
            )));
        }
        if owner.is_empty() {
            return Err(lease_err("a lease owner must not be empty".into()));
        }
        if expires_at <= at {
            return Err(lease_err(format!(
                "lease expiry {expires_at} must be after its acquisition time {at} (run {})",
                fmt_id(run_id)
            )));
        }
        let task = self
            .tasks
            .get_mut(&run.task_id)
            .ok_or_else(|| orphan(run_id))?;
        let before = placement(run, task);
        if record {
            let mut s = RunSaved::of(run);
            s.lease = Some(None);
            self.undo.push(Undo::Run(s));
        }
        run.lease = Some(Lease {
            owner: owner.to_owned(),
            expires_at,
            acquired_at: at,
        });
        commit_change(run, task, &mut self.ix, &before, at);
        Ok(())
    }

    /// The lease of `run_id` if `owner` holds it.
    fn owned_lease<'a>(run: &'a Run, run_id: &Id, owner: &str) -> Result<&'a Lease> {
        match &run.lease {
            None => Err(lease_err(format!(
                "run {} holds no lease ({:?} asked)",
                fmt_id(run_id),
                owner
            ))),
            Some(l) if l.owner != owner => Err(lease_err(format!(
                "the lease of run {} is held by {:?}, not {:?}",
                fmt_id(run_id),
                l.owner,
                owner
            ))),
            Some(l) => Ok(l),
        }
    }

    pub(super) fn lease_heartbeat(
        &mut self,
        run_id: &Id,
        owner: &str,
        expires_at: Millis,
        at: Millis,
        record: bool,
    ) -> Result<()> {
        let run = self
            .runs
            .get_mut(run_id)
            .ok_or_else(|| run_not_found(run_id))?;
        let lease = Self::owned_lease(run, run_id, owner)?;
        if at >= lease.expires_at {
            return Err(lease_err(format!(
                "the lease of run {} expired at {} (heartbeat at {at})",
                fmt_id(run_id),
                lease.expires_at
            )));
        }
        let new_expiry = lease.expires_at.max(expires_at);
        let task = self
            .tasks
            .get_mut(&run.task_id)
            .ok_or_else(|| orphan(run_id))?;
        let before = placement(run, task);
        if record {
            let mut s = RunSaved::of(run);
            s.lease = Some(run.lease.clone());
            self.undo.push(Undo::Run(s));
        }
        if let Some(l) = run.lease.as_mut() {
            l.expires_at = new_expiry;
        }
        commit_change(run, task, &mut self.ix, &before, at);
        Ok(())
    }

    /// LeaseExpire (`expire`: only once `at >= expires_at`) and LeaseRelease: remove the lease
    /// only; the run's state is moved by its own transition event.
    pub(super) fn lease_remove(
        &mut self,
        run_id: &Id,
        owner: &str,
        at: Millis,
        expire: bool,
        record: bool,
    ) -> Result<()> {
        let run = self
            .runs
            .get_mut(run_id)
            .ok_or_else(|| run_not_found(run_id))?;
        let lease = Self::owned_lease(run, run_id, owner)?;
        if expire && at < lease.expires_at {
            return Err(lease_err(format!(
                "the lease of run {} expires at {}, not yet at {at}",
                fmt_id(run_id),
                lease.expires_at
            )));
        }
        let task = self
            .tasks
            .get_mut(&run.task_id)
            .ok_or_else(|| orphan(run_id))?;
        let before = placement(run, task);
        let mut saved = record.then(|| RunSaved::of(run));
        let old = run.lease.take();
        if let Some(mut s) = saved.take() {
            s.lease = Some(old);
            self.undo.push(Undo::Run(s));
        }
        commit_change(run, task, &mut self.ix, &before, at);
        Ok(())
    }
}
