//! The run-lifecycle hot path of `_core.Authority`: one call per dispatch step and a Deferred
//! submit that keeps the GIL when it can.
//!
//! `dispatch_ready` does in one crossing what the engine's dispatch otherwise needs three for
//! (the due/paused peek, the Ready candidates, the lease + start batch): it picks Ready runs in
//! selection order (concurrency keys honoured by [`Projection::ready`]), builds Ready → Leased,
//! `LeaseAcquire`, Leased → Running and `AttemptStart` for each, and submits them as **one**
//! record through the same validation as every other submit (a pick made stale by a writer in
//! between is refused whole, nothing written). Only plain values cross: the caller passes
//! random bytes for the attempt ids and gets one tuple per leased run.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use super::errors::to_py;
use super::queries::Holder;
use crate::authority::Authority;
use crate::event::Event;
use crate::model::{Id, Millis, RunState};
use crate::wal::{Appended, Durability};
use crate::CoreError;

/// Added to a task's timeout for its lease (`actionqueue.engine.lease.LEASE_TIMEOUT_MARGIN_MS`):
/// a timed-out attempt is recorded as Timeout before its lease could expire as Lost.
pub const LEASE_TIMEOUT_MARGIN_MS: Millis = 5_000;

/// `(run_id, task_id, scheduled_at, attempt_count, lease_expires_at)` of a picked run.
type Pick = (Id, Id, Millis, u32, Millis);

/// What the projection says at `now`: work is due first (promotion or the expiry sweep must
/// run before selection), or these picks (empty when paused or nothing is Ready).
enum Step {
    Due,
    Picks(Vec<Pick>),
}

/// The lease granted to a task: `default_ms`, or its timeout plus the margin if longer.
pub fn lease_ms(timeout_ms: Option<Millis>, default_ms: Millis) -> Millis {
    match timeout_ms {
        None => default_ms,
        Some(t) => default_ms.max(t.saturating_add(LEASE_TIMEOUT_MARGIN_MS)),
    }
}

/// A version-4 UUID from 16 random bytes (never nil: the version bits are set).
fn v4(raw: &[u8]) -> Option<Id> {
    let mut id: Id = raw.try_into().ok()?;
    id[6] = (id[6] & 0x0f) | 0x40;
    id[8] = (id[8] & 0x3f) | 0x80;
    Some(id)
}

/// Submits Deferred, keeping the GIL when the authority's lock is free (validation, apply and
/// one `pwrite` into the page cache: a few µs; releasing the GIL would hand it to another
/// thread and wait to get it back — with 32 submitting threads that hand-off, not the work,
/// set the rate) and releasing it for anything that may block (a held lock, a due snapshot).
pub(crate) fn submit_deferred(
    py: Python<'_>,
    a: &Authority,
    expected_first: Option<u64>,
    events: Vec<Event>,
) -> Result<Appended, CoreError> {
    submit_unsynced(py, a, expected_first, events, Durability::Deferred)
}

/// [`submit_deferred`] for a caller that will wait for the sync itself (an event loop's
/// Immediate submit, whose completer waits): with Immediate, the record is held for the next
/// group sync instead of written now (see `WalWriter::append_encoded`).
pub(crate) fn submit_unsynced(
    py: Python<'_>,
    a: &Authority,
    expected_first: Option<u64>,
    events: Vec<Event>,
    durability: Durability,
) -> Result<Appended, CoreError> {
    match a.try_submit(expected_first, a.prepare(events), durability) {
        Ok(r) => r,
        Err(record) => py.detach(|| a.append_prepared(expected_first, record, durability)),
    }
}

/// The arguments of `_core.Authority.dispatch_ready` (see the method's docstring).
pub(crate) struct DispatchAsk<'a> {
    pub now: Millis,
    pub owner: &'a str,
    pub limit: usize,
    pub default_lease_ms: Millis,
    pub random: &'a [u8],
    pub check_due: bool,
    /// Concurrency keys held outside the log (handlers still running after their outcome was
    /// recorded): their runs are skipped like those of a key the log holds.
    pub busy_keys: Vec<String>,
}

/// `_core.Authority.dispatch_ready`; see the method's docstring.
pub(crate) fn dispatch_ready<'py>(
    h: &impl Holder,
    a: &Authority,
    py: Python<'py>,
    ask: DispatchAsk<'_>,
) -> PyResult<Option<Bound<'py, PyList>>> {
    let DispatchAsk {
        now,
        owner,
        limit,
        default_lease_ms,
        random,
        check_due,
        busy_keys,
    } = ask;
    if owner.is_empty() || default_lease_ms <= 0 || random.len() < limit.saturating_mul(16) {
        return Err(to_py(CoreError::InvalidArgument(format!(
            "dispatch_ready needs a non-empty owner, default_lease_ms > 0 and 16 random bytes \
             per run (limit {limit}, got {} bytes, default_lease_ms {default_lease_ms})",
            random.len()
        ))));
    }
    let step = h.with(py, move |p| {
        if check_due
            && (p.next_due().is_some_and(|t| t <= now)
                || p.next_lease_expiry().is_some_and(|t| t <= now))
        {
            return Step::Due;
        }
        if limit == 0 || p.is_paused() {
            return Step::Picks(Vec::new());
        }
        // The candidates hold one run per key at most, so a busy key costs one skipped
        // candidate: at most `limit + busy_keys.len()` are looked at.
        let picks = p
            .ready()
            .take(limit.saturating_add(busy_keys.len()))
            .filter_map(|id| {
                let r = p.run(&id)?;
                let c = &p.task(&r.task_id)?.spec.shape.constraints;
                if let Some(k) = &c.concurrency_key {
                    if busy_keys.iter().any(|b| b == k) {
                        return None;
                    }
                }
                let exp = now.saturating_add(lease_ms(c.timeout_ms, default_lease_ms));
                Some((r.id, r.task_id, r.scheduled_at, r.attempt_count, exp))
            })
            .take(limit)
            .collect();
        Step::Picks(picks)
    })?;
    let picks = match step {
        Step::Due => return Ok(None),
        Step::Picks(p) => p,
    };
    let mut events = Vec::with_capacity(picks.len() * 4);
    let mut attempts = Vec::with_capacity(picks.len());
    for (i, (run_id, _, _, _, exp)) in picks.iter().enumerate() {
        let attempt_id = random
            .get(i * 16..i * 16 + 16)
            .and_then(v4)
            .ok_or_else(|| to_py(CoreError::InvalidArgument("short random bytes".into())))?;
        attempts.push(attempt_id);
        events.extend([
            Event::RunTransition {
                run_id: *run_id,
                from: RunState::Ready,
                to: RunState::Leased,
                not_before: None,
                reason: None,
                at: now,
            },
            Event::LeaseAcquire {
                run_id: *run_id,
                owner: owner.to_owned(),
                expires_at: *exp,
                at: now,
            },
            Event::RunTransition {
                run_id: *run_id,
                from: RunState::Leased,
                to: RunState::Running,
                not_before: None,
                reason: None,
                at: now,
            },
            Event::AttemptStart {
                run_id: *run_id,
                attempt_id,
                at: now,
            },
        ]);
    }
    let out = PyList::empty(py);
    if events.is_empty() {
        return Ok(Some(out));
    }
    submit_deferred(py, a, None, events).map_err(to_py)?;
    for ((run_id, task_id, at, count, exp), attempt_id) in picks.iter().zip(&attempts) {
        out.append((
            PyBytes::new(py, run_id),
            PyBytes::new(py, task_id),
            *at,
            count.saturating_add(1),
            PyBytes::new(py, attempt_id),
            *exp,
        ))?;
    }
    Ok(Some(out))
}

/// `_core.Authority.due_scheduled_ids`: `(run_id, task_id, scheduled_at)` of up to `limit`
/// Scheduled runs due at `now`, earliest first — what promotion needs, without building whole
/// run tuples (histories included) for runs about to be promoted.
pub(crate) fn due_scheduled_ids<'py>(
    h: &impl Holder,
    py: Python<'py>,
    now: Millis,
    limit: usize,
) -> PyResult<Bound<'py, PyList>> {
    let due: Vec<(Id, Id, Millis)> = h.with(py, move |p| {
        p.due_scheduled(now)
            .take(limit)
            .filter_map(|id| {
                let r = p.run(&id)?;
                Some((r.id, r.task_id, r.scheduled_at))
            })
            .collect()
    })?;
    let out = PyList::empty(py);
    for (run_id, task_id, at) in &due {
        out.append((PyBytes::new(py, run_id), PyBytes::new(py, task_id), *at))?;
    }
    Ok(out)
}

/// `_core.Authority.due_retry_ids`: `(run_id, not_before)` of up to `limit` RetryWait runs
/// due at `now`, earliest first (`not_before` is `None` for a run that has none) — what a
/// retry promotion needs. The whole run tuples `due_retries` returns hold every attempt and
/// state change of the run: a run retried n times cost O(n) per retry, O(n²) in all.
pub(crate) fn due_retry_ids<'py>(
    h: &impl Holder,
    py: Python<'py>,
    now: Millis,
    limit: usize,
) -> PyResult<Bound<'py, PyList>> {
    let due: Vec<(Id, Option<Millis>)> = h.with(py, move |p| {
        p.due_retries(now)
            .take(limit)
            .filter_map(|id| p.run(&id).map(|r| (r.id, r.not_before)))
            .collect()
    })?;
    let out = PyList::empty(py);
    for (run_id, not_before) in &due {
        out.append((PyBytes::new(py, run_id), *not_before))?;
    }
    Ok(out)
}

/// `_core.Authority.live_run_ids`: the ids of a task's non-terminal runs, in ordinal order
/// (none for an unknown task) — what a cancel needs to forget its hints about them, without
/// the run tuples `runs_for_task` builds for every run the task ever had.
pub(crate) fn live_run_ids<'py>(
    h: &impl Holder,
    py: Python<'py>,
    task_id: &[u8],
) -> PyResult<Bound<'py, PyList>> {
    let id = super::queries::parse_id(task_id, "task_id")?;
    let ids = h.with(py, move |p| p.live_runs_of_task(&id))?;
    let out = PyList::empty(py);
    for run_id in &ids {
        out.append(PyBytes::new(py, run_id))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_covers_the_timeout() {
        assert_eq!(lease_ms(None, 30_000), 30_000);
        assert_eq!(lease_ms(Some(60_000), 30_000), 65_000);
        assert_eq!(lease_ms(Some(1_000), 30_000), 30_000);
        assert_eq!(lease_ms(Some(Millis::MAX), 30_000), Millis::MAX);
    }

    #[test]
    fn attempt_ids_are_v4() {
        let id = v4(&[0u8; 16]).unwrap_or_default();
        assert_eq!(id[6] >> 4, 4);
        assert_eq!(id[8] >> 6, 2);
        assert!(v4(&[0u8; 15]).is_none());
    }
}
