//! Read access shared by `_core.Authority` and `_core.Projection`: the run and task tuples of
//! `docs/DESIGN.md` and the query methods, generated for both classes by [`pyclass_queries`].
//!
//! Every query copies what it needs out of the projection while holding the owner's lock and
//! builds Python objects only after releasing it, so no Python code (a GC finalizer, say) ever
//! runs while a Rust lock is held.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};
use pyo3::IntoPyObjectExt;

use super::errors::to_py;
use super::wire::spec_to_wire;
use crate::model::{Id, Millis, RunState, NIL_ID};
use crate::state::{Projection, Run, Task};
use crate::CoreError;

/// Something that owns a projection behind a lock.
pub(crate) trait Holder: Sync {
    /// Runs `f` on the projection (copying out what it needs); errors when the owner is
    /// failed or closed.
    fn with<R: Send>(&self, py: Python<'_>, f: impl FnOnce(&Projection) -> R + Send)
        -> PyResult<R>;
}

pub(crate) fn parse_id(b: &[u8], what: &str) -> PyResult<Id> {
    let id: Id = b.try_into().map_err(|_| {
        to_py(CoreError::InvalidArgument(format!(
            "{what}: an id is 16 bytes (uuid.UUID.bytes), got {}",
            b.len()
        )))
    })?;
    if id == NIL_ID {
        return Err(to_py(CoreError::InvalidArgument(format!(
            "{what}: the nil UUID is not a valid id"
        ))));
    }
    Ok(id)
}

pub(crate) fn parse_state(v: u8) -> PyResult<RunState> {
    RunState::from_u8(v).ok_or_else(|| {
        to_py(CoreError::InvalidArgument(format!(
            "state: a run state is 0..8, got {v}"
        )))
    })
}

fn opt_id(py: Python<'_>, id: Option<Id>) -> Option<Bound<'_, PyBytes>> {
    id.map(|i| PyBytes::new(py, &i))
}

/// The run tuple (15 items) of DESIGN.md, "Run tuple (Rust → Python)".
pub(crate) fn run_to_py<'py>(py: Python<'py>, r: &Run) -> PyResult<Bound<'py, PyTuple>> {
    // The first entry records the creation (RunCreate keeps no history entry of its own).
    let history = PyList::empty(py);
    history.append((py.None(), 0u8, r.created_at, py.None()))?;
    let mut became_ready = false;
    for h in &r.history {
        became_ready |= h.to == RunState::Ready;
        history.append((h.from as u8, h.to as u8, h.at, h.reason.as_deref()))?;
    }
    let attempts = PyList::empty(py);
    for a in &r.attempts {
        attempts.append((
            PyBytes::new(py, &a.id),
            a.started_at,
            a.finished_at,
            a.outcome.map(|o| o as u8),
            a.error.as_deref(),
            a.output.as_deref().map(|o| PyBytes::new(py, o)),
        ))?;
    }
    let lease = r.lease.as_ref().map(|l| (l.owner.as_str(), l.expires_at));
    PyTuple::new(
        py,
        [
            PyBytes::new(py, &r.id).into_any(),
            PyBytes::new(py, &r.task_id).into_any(),
            (r.state as u8).into_bound_py_any(py)?,
            r.ordinal.into_bound_py_any(py)?,
            r.scheduled_at.into_bound_py_any(py)?,
            r.created_at.into_bound_py_any(py)?,
            r.attempt_count.into_bound_py_any(py)?,
            opt_id(py, r.current_attempt).into_bound_py_any(py)?,
            became_ready
                .then_some(r.effective_priority)
                .into_bound_py_any(py)?,
            r.last_state_change_at.into_bound_py_any(py)?,
            r.not_before.into_bound_py_any(py)?,
            lease.into_bound_py_any(py)?,
            history.into_any(),
            attempts.into_any(),
            r.created_seq.into_bound_py_any(py)?,
        ],
    )
}

/// A task as copied out of the projection (plus the scheduled time of its newest held run).
pub(crate) struct TaskOut {
    task: Task,
    last_scheduled_at: Option<Millis>,
}

fn task_out(p: &Projection, id: &Id) -> Option<TaskOut> {
    let t = p.task(id)?;
    let last_scheduled_at = t.runs.last().and_then(|r| p.run(r)).map(|r| r.scheduled_at);
    Some(TaskOut {
        task: t.into_owned(),
        last_scheduled_at,
    })
}

/// `(spec_wire, origin, created_at, canceled_at, derived, non_terminal, last_scheduled_at)`.
pub(crate) fn task_to_py<'py>(py: Python<'py>, t: &TaskOut) -> PyResult<Bound<'py, PyTuple>> {
    let task = &t.task;
    PyTuple::new(
        py,
        [
            spec_to_wire(py, &task.spec)?.into_any(),
            task.origin.into_bound_py_any(py)?,
            task.created_at.into_bound_py_any(py)?,
            task.canceled_at.into_bound_py_any(py)?,
            task.runs_created.into_bound_py_any(py)?,
            task.nonterminal_runs.into_bound_py_any(py)?,
            t.last_scheduled_at.into_bound_py_any(py)?,
        ],
    )
}

fn runs_to_py<'py>(py: Python<'py>, runs: &[Run]) -> PyResult<Bound<'py, PyList>> {
    let out = PyList::empty(py);
    for r in runs {
        out.append(run_to_py(py, r)?)?;
    }
    Ok(out)
}

fn collect_runs(p: &Projection, ids: impl Iterator<Item = Id>, limit: usize) -> Vec<Run> {
    ids.take(limit)
        .filter_map(|id| p.run(&id).map(std::borrow::Cow::into_owned))
        .collect()
}

pub(crate) fn get_task<'py>(
    h: &impl Holder,
    py: Python<'py>,
    task_id: &[u8],
) -> PyResult<Option<Bound<'py, PyTuple>>> {
    let id = parse_id(task_id, "task_id")?;
    h.with(py, |p| task_out(p, &id))?
        .map(|t| task_to_py(py, &t))
        .transpose()
}

pub(crate) fn get_run<'py>(
    h: &impl Holder,
    py: Python<'py>,
    run_id: &[u8],
) -> PyResult<Option<Bound<'py, PyTuple>>> {
    let id = parse_id(run_id, "run_id")?;
    h.with(py, |p| p.run(&id).map(std::borrow::Cow::into_owned))?
        .map(|r| run_to_py(py, &r))
        .transpose()
}

pub(crate) fn runs_for_task<'py>(
    h: &impl Holder,
    py: Python<'py>,
    task_id: &[u8],
) -> PyResult<Bound<'py, PyList>> {
    let id = parse_id(task_id, "task_id")?;
    let runs = h.with(py, |p| {
        p.runs_for_task(&id)
            .map(|ids| collect_runs(p, ids.iter().copied(), usize::MAX))
            .unwrap_or_default()
    })?;
    runs_to_py(py, &runs)
}

pub(crate) fn due<'py>(
    h: &impl Holder,
    py: Python<'py>,
    which: u8,
    now: Millis,
    limit: usize,
) -> PyResult<Bound<'py, PyList>> {
    let runs = h.with(py, |p| match which {
        0 => collect_runs(p, p.due_scheduled(now), limit),
        1 => collect_runs(p, p.due_retries(now), limit),
        _ => collect_runs(p, p.expired_leases(now), limit),
    })?;
    runs_to_py(py, &runs)
}

/// One page of a state's runs in index order, from an opaque position (`cursor`, as returned
/// by the previous page) rather than from a run: paging goes on correctly whatever happens to
/// the runs already listed (moved to another state, pruned, retried). Returns the rows and the
/// cursor after the last one (`None` when the page is not full: the listing is over).
///
/// With a `filter` (a tag, a handler) only the runs of the tasks it keeps are returned, and a
/// page examines at most [`FILTER_SCAN`] index entries: it may hold fewer than `limit` rows
/// (none at all) and still have a next cursor; `None` means the state was examined to its end.
pub(crate) fn runs_page<'py>(
    h: &impl Holder,
    py: Python<'py>,
    state: u8,
    limit: usize,
    cursor: Option<&[u8]>,
    filter: crate::state::RunFilter,
) -> PyResult<(Bound<'py, PyList>, Option<Bound<'py, PyBytes>>)> {
    let state = parse_state(state)?;
    let cursor = cursor
        .map(|b| {
            crate::state::Cursor::from_cursor_bytes(b).ok_or_else(|| {
                to_py(CoreError::InvalidArgument(format!(
                    "cursor: a paging cursor is {} bytes (as returned by the previous page), \
                     got {}",
                    crate::state::CURSOR_LEN,
                    b.len()
                )))
            })
        })
        .transpose()?;
    let (runs, next) = h.with(py, move |p| {
        if !filter.is_empty() {
            let page = p.runs_matching(state, cursor, &filter, limit, FILTER_SCAN);
            let next = page
                .next
                .as_ref()
                .map(crate::state::Cursor::to_cursor_bytes);
            return (collect_runs(p, page.keys.iter().map(|k| k.id), limit), next);
        }
        let keys: Vec<_> = p.runs_in_state(state, cursor).take(limit).collect();
        let next = keys
            .last()
            .filter(|_| limit > 0 && keys.len() == limit)
            .map(crate::state::Cursor::to_cursor_bytes);
        (collect_runs(p, keys.iter().map(|k| k.id), limit), next)
    })?;
    Ok((runs_to_py(py, &runs)?, next.map(|c| PyBytes::new(py, &c))))
}

/// Index entries a filtered page examines at most (a few ms under the owner's lock).
pub(crate) const FILTER_SCAN: usize = 8192;

pub(crate) fn runs_in_state<'py>(
    h: &impl Holder,
    py: Python<'py>,
    state: u8,
    limit: usize,
    after: Option<&[u8]>,
) -> PyResult<Bound<'py, PyList>> {
    let state = parse_state(state)?;
    let after = after.map(|a| parse_id(a, "after")).transpose()?;
    let runs = h.with(py, |p| {
        let cursor = match after {
            Some(id) => match p.cursor_for(&id, state) {
                Some(c) => Some(c),
                None => return Err(id),
            },
            None => None,
        };
        Ok(collect_runs(
            p,
            p.runs_in_state(state, cursor).map(|k| k.id),
            limit,
        ))
    })?;
    match runs {
        Ok(runs) => runs_to_py(py, &runs),
        Err(id) => Err(to_py(CoreError::NotFound {
            kind: "run (paging cursor)",
            id: crate::state::fmt_id(&id),
        })),
    }
}

type Candidate = (Id, Id, i32, Millis, u64, Option<String>);

pub(crate) fn ready_candidates<'py>(
    h: &impl Holder,
    py: Python<'py>,
    limit: usize,
) -> PyResult<Bound<'py, PyList>> {
    let found: Vec<Candidate> = h.with(py, |p| {
        p.ready()
            .take(limit)
            .filter_map(|id| {
                let r = p.run(&id)?;
                let key = p
                    .task(&r.task_id)
                    .and_then(|t| t.spec.shape.constraints.concurrency_key.clone());
                Some((
                    r.id,
                    r.task_id,
                    r.effective_priority,
                    r.scheduled_at,
                    r.created_seq,
                    key,
                ))
            })
            .collect()
    })?;
    let out = PyList::empty(py);
    for (run, task, prio, at, seq, key) in &found {
        out.append((
            PyBytes::new(py, run),
            PyBytes::new(py, task),
            *prio,
            *at,
            *seq,
            key.as_deref(),
        ))?;
    }
    Ok(out)
}

/// The shared query methods, emitted into one `#[pymethods]` block together with the
/// class's own methods (`$($own)*`), since a class may have only one such block.
macro_rules! pyclass_queries {
    ($ty:ty, { $($own:tt)* }) => {
        #[pymethods]
        impl $ty {
            $($own)*

            /// The task tuple, or None when unknown.
            fn get_task<'py>(&self, py: Python<'py>, task_id: &[u8]) -> PyResult<Option<Bound<'py, PyTuple>>> {
                $crate::py::queries::get_task(self, py, task_id)
            }

            /// The run tuple, or None when unknown.
            fn get_run<'py>(&self, py: Python<'py>, run_id: &[u8]) -> PyResult<Option<Bound<'py, PyTuple>>> {
                $crate::py::queries::get_run(self, py, run_id)
            }

            /// Run tuples of the task's runs still held, in ordinal order ([] when unknown).
            fn runs_for_task<'py>(&self, py: Python<'py>, task_id: &[u8]) -> PyResult<Bound<'py, PyList>> {
                $crate::py::queries::runs_for_task(self, py, task_id)
            }

            /// Run counts indexed by RunState wire value.
            fn counts(&self, py: Python<'_>) -> PyResult<Vec<usize>> {
                $crate::py::queries::Holder::with(self, py, |p| p.counts().to_vec())
            }

            /// When the next Scheduled run or RetryWait retry is due, or None.
            fn next_due(&self, py: Python<'_>) -> PyResult<Option<i64>> {
                $crate::py::queries::Holder::with(self, py, |p| p.next_due())
            }

            /// The earliest lease expiry of Leased/Running runs (i64 min for a lease-less one).
            fn next_lease_expiry(&self, py: Python<'_>) -> PyResult<Option<i64>> {
                $crate::py::queries::Holder::with(self, py, |p| p.next_lease_expiry())
            }

            /// `(work_due, paused)` at `now` in one call (the dispatch hot path): whether a
            /// Scheduled run or retry is due or a lease has expired (`next_due() <= now` or
            /// `next_lease_expiry() <= now`), and whether the engine is paused.
            fn dispatch_state(&self, py: Python<'_>, now: i64) -> PyResult<(bool, bool)> {
                $crate::py::queries::Holder::with(self, py, move |p| {
                    let due = p.next_due().is_some_and(|t| t <= now)
                        || p.next_lease_expiry().is_some_and(|t| t <= now);
                    (due, p.is_paused())
                })
            }

            /// Scheduled runs due at `now`, earliest first.
            fn due_scheduled<'py>(&self, py: Python<'py>, now: i64, limit: usize) -> PyResult<Bound<'py, PyList>> {
                $crate::py::queries::due(self, py, 0, now, limit)
            }

            /// RetryWait runs whose backoff is over at `now`, earliest first.
            fn due_retries<'py>(&self, py: Python<'py>, now: i64, limit: usize) -> PyResult<Bound<'py, PyList>> {
                $crate::py::queries::due(self, py, 1, now, limit)
            }

            /// Leased then Running runs whose lease is expired at `now` (or missing).
            fn expired_leases<'py>(&self, py: Python<'py>, now: i64, limit: usize) -> PyResult<Bound<'py, PyList>> {
                $crate::py::queries::due(self, py, 2, now, limit)
            }

            /// Runs of one state in index order, after the run `after` (paging).
            #[pyo3(signature = (state, limit, after = None))]
            fn runs_in_state<'py>(&self, py: Python<'py>, state: u8, limit: usize, after: Option<&[u8]>) -> PyResult<Bound<'py, PyList>> {
                $crate::py::queries::runs_in_state(self, py, state, limit, after)
            }

            /// One page of a state's runs in index order from an opaque `cursor` (the one the
            /// previous page returned): `(rows, next_cursor)`, `next_cursor` None at the end.
            /// `tag` / `handler` keep only the runs of tasks carrying that tag / routed to that
            /// handler (a filtered page examines a bounded number of runs: it may be short, or
            /// empty, before the end).
            #[pyo3(signature = (state, limit, cursor = None, *, tag = None, handler = None))]
            fn runs_page<'py>(&self, py: Python<'py>, state: u8, limit: usize, cursor: Option<&[u8]>, tag: Option<String>, handler: Option<String>) -> PyResult<(Bound<'py, PyList>, Option<Bound<'py, PyBytes>>)> {
                let filter = $crate::state::RunFilter { tag, handler };
                $crate::py::queries::runs_page(self, py, state, limit, cursor, filter)
            }

            /// Ready runs in selection order, held keys skipped:
            /// (run_id, task_id, priority, scheduled_at, created_seq, concurrency_key).
            fn ready_candidates<'py>(&self, py: Python<'py>, limit: usize) -> PyResult<Bound<'py, PyList>> {
                $crate::py::queries::ready_candidates(self, py, limit)
            }

            /// The run holding a concurrency key, or None.
            fn key_holder<'py>(&self, py: Python<'py>, key: &str) -> PyResult<Option<Bound<'py, PyBytes>>> {
                let key = key.to_owned();
                let id = $crate::py::queries::Holder::with(self, py, move |p| p.key_holder(&key))?;
                Ok(id.map(|i| PyBytes::new(py, &i)))
            }

            /// Ids of the live cron tasks whose window is short (fewer non-terminal runs than
            /// the window while runs remain to derive), in creation order.
            fn short_cron_windows<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyBytes>>> {
                let ids = $crate::py::queries::Holder::with(self, py, |p| p.short_cron_windows())?;
                Ok(ids.iter().map(|i| PyBytes::new(py, i)).collect())
            }

            /// The live task holding a dedupe key, or None.
            fn task_by_dedupe_key<'py>(&self, py: Python<'py>, key: &str) -> PyResult<Option<Bound<'py, PyBytes>>> {
                let key = key.to_owned();
                let id = $crate::py::queries::Holder::with(self, py, move |p| p.task_by_dedupe_key(&key))?;
                Ok(id.map(|i| PyBytes::new(py, &i)))
            }

            /// The Prune cutoff keeping the `keep` newest terminal runs (None: nothing to prune).
            fn prune_cutoff(&self, py: Python<'_>, keep: usize) -> PyResult<Option<i64>> {
                $crate::py::queries::Holder::with(self, py, move |p| p.prune_cutoff_keeping(keep))
            }

            /// BLAKE3 digest of the canonical state image, as hex.
            fn state_digest(&self, py: Python<'_>) -> PyResult<String> {
                $crate::py::queries::Holder::with(self, py, |p| p.state_digest().to_hex())
            }

            #[getter]
            fn latest_sequence(&self, py: Python<'_>) -> PyResult<u64> {
                $crate::py::queries::Holder::with(self, py, |p| p.latest_sequence())
            }

            #[getter]
            fn next_sequence(&self, py: Python<'_>) -> PyResult<u64> {
                $crate::py::queries::Holder::with(self, py, |p| p.next_sequence())
            }

            #[getter]
            fn is_paused(&self, py: Python<'_>) -> PyResult<bool> {
                $crate::py::queries::Holder::with(self, py, |p| p.is_paused())
            }

            #[getter]
            fn task_count(&self, py: Python<'_>) -> PyResult<usize> {
                $crate::py::queries::Holder::with(self, py, |p| p.task_count())
            }

            #[getter]
            fn run_count(&self, py: Python<'_>) -> PyResult<usize> {
                $crate::py::queries::Holder::with(self, py, |p| p.run_count())
            }
        }
    };
}
pub(crate) use pyclass_queries;
