//! `_core.Authority` and `_core.bootstrap`: the mutation authority and recovery, seen from
//! Python. `actionqueue.storage.mutation.StorageMutationAuthority` wraps them with typed
//! objects.
//!
//! Arguments become owned Rust values first; the GIL is released around submit (validate,
//! append and, for Immediate, the group-commit wait), bootstrap, snapshots, flush and close.
//! Queries take the lock without releasing the GIL when it is free (the common case: a
//! query costs far less than a GIL round trip) and release the GIL before blocking on it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};

use super::completer::{Completer, Pending};
use super::errors::to_py;
use super::projection::PyProjection;
use super::queries::{pyclass_queries, Holder};
use super::wal::PyWalWriter;
use super::wire::{events_from_wire, sequence_arg};
use crate::authority::{
    Authority, AuthorityOptions, AuthorityStats, SnapshotInfo, DEFAULT_KEEP_SNAPSHOTS,
    DEFAULT_SNAPSHOT_EVENTS,
};
use crate::event::Event;
use crate::recovery::{bootstrap as core_bootstrap, BootstrapOptions, RecoveryReport};
use crate::state::Projection;
use crate::wal::writer::{DEFAULT_PREALLOCATE, DEFAULT_SEGMENT_SIZE};
use crate::wal::{Durability, WalOptions};
use crate::{snapshot, CoreError, DEFAULT_MAX_RECORD_SIZE};

fn durability(immediate: bool) -> Durability {
    if immediate {
        Durability::Immediate
    } else {
        Durability::Deferred
    }
}

fn path_str(p: &std::path::Path) -> String {
    p.to_string_lossy().into_owned()
}

fn snapshot_dict<'py>(py: Python<'py>, s: &SnapshotInfo) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("path", path_str(&s.path))?;
    d.set_item("sequence", s.sequence)?;
    d.set_item("bytes", s.bytes)?;
    d.set_item("millis", s.millis)?;
    d.set_item("segments_removed", s.segments_removed)?;
    d.set_item("snapshots_removed", s.snapshots_removed)?;
    d.set_item("locked_micros", s.locked_micros)?;
    Ok(d)
}

fn parse_interval(s: Option<f64>) -> PyResult<Option<Duration>> {
    match s {
        None => Ok(None),
        Some(s) if s.is_finite() && s > 0.0 => Ok(Some(Duration::from_secs_f64(s))),
        Some(s) => Err(to_py(CoreError::InvalidArgument(format!(
            "sync_interval must be a positive number of seconds or None, got {s}"
        )))),
    }
}

/// `(first, last, runs_removed, tasks_removed, before)` of a count-based prune.
type PruneOut = (u64, u64, usize, usize, i64);

/// The storage-owned mutation authority.
#[pyclass(name = "Authority", module = "actionqueue._core", frozen)]
pub struct PyAuthority {
    inner: Arc<Authority>,
    completer: Arc<Completer>,
}

impl PyAuthority {
    fn wrap(a: Authority) -> Self {
        Self {
            inner: Arc::new(a),
            completer: Arc::default(),
        }
    }

    /// Submits converted events as one record: Immediate without the GIL (group commit),
    /// Deferred keeping it when the authority's lock is free.
    fn submit_events(
        &self,
        py: Python<'_>,
        events: Vec<crate::event::Event>,
        immediate: bool,
        expected_first: Option<u64>,
    ) -> PyResult<(u64, u64)> {
        let a = if immediate {
            py.detach(|| {
                self.inner
                    .submit_owned(expected_first, events, Durability::Immediate)
            })
        } else {
            super::lifecycle::submit_deferred(py, &self.inner, expected_first, events)
        }
        .map_err(to_py)?;
        Ok((a.first_seq, a.last_seq))
    }
}

impl Holder for PyAuthority {
    fn with<R: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&Projection) -> R + Send,
    ) -> PyResult<R> {
        // Two closures cannot both own `f`: park it so whichever path runs takes it.
        let mut f = Some(f);
        let fast = self.inner.try_read(|p| f.take().map(|f| f(p)));
        let r = match fast {
            Some(r) => r,
            None => py.detach(|| self.inner.read(|p| f.take().map(|f| f(p)))),
        };
        match r {
            Ok(Some(v)) => Ok(v),
            Ok(None) => Err(to_py(CoreError::InvalidArgument(
                "internal error: query closure already used".into(),
            ))),
            Err(e) => Err(to_py(e)),
        }
    }
}

fn stats_dict<'py>(
    py: Python<'py>,
    a: &Authority,
    s: &AuthorityStats,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("submits", s.submits)?;
    d.set_item("events", s.events)?;
    d.set_item("rejected", s.rejected)?;
    d.set_item("snapshots", s.snapshots)?;
    d.set_item("events_since_snapshot", s.events_since_snapshot)?;
    d.set_item(
        "last_snapshot",
        s.last_snapshot
            .as_ref()
            .map(|x| snapshot_dict(py, x))
            .transpose()?,
    )?;
    d.set_item("last_snapshot_error", s.last_snapshot_error.as_deref())?;
    let w = a.wal().stats();
    d.set_item("wal_appends", w.appends)?;
    d.set_item("wal_events", w.events)?;
    d.set_item("wal_bytes", w.bytes)?;
    d.set_item("wal_syncs", w.syncs)?;
    d.set_item("synced_sequence", a.wal().synced_sequence())?;
    Ok(d)
}

pyclass_queries!(PyAuthority, {
    /// An authority over a WAL writer and the projection of exactly that log (the seed's
    /// construction). Both are taken over: the writer refuses direct appends afterwards and
    /// the projection object is closed. Refused (nothing taken) when the projection's
    /// latest sequence is not the log's last one.
    #[staticmethod]
    #[pyo3(signature = (wal, projection, *, snapshot_dir = None, snapshot_every = DEFAULT_SNAPSHOT_EVENTS, keep_snapshots = DEFAULT_KEEP_SNAPSHOTS, snapshot_on_close = true))]
    fn from_parts(
        py: Python<'_>,
        wal: &PyWalWriter,
        projection: &PyProjection,
        snapshot_dir: Option<PathBuf>,
        snapshot_every: u64,
        keep_snapshots: usize,
        snapshot_on_close: bool,
    ) -> PyResult<Self> {
        let writer = wal.hand_over()?;
        let p = match projection.take() {
            Ok(p) => p,
            Err(e) => {
                wal.take_back();
                return Err(e);
            }
        };
        let opts = AuthorityOptions {
            snapshot_every,
            keep_snapshots,
            snapshot_on_close,
            ..AuthorityOptions::default()
        };
        if let Some(dir) = &snapshot_dir {
            std::fs::create_dir_all(dir).map_err(|e| to_py(CoreError::io("mkdir", dir, e)))?;
        }
        // `Authority::new` consumes the projection; on refusal rebuild nothing: check first.
        let wal_last = writer.next_sequence().saturating_sub(1);
        if p.latest_sequence() != wal_last {
            let latest = p.latest_sequence();
            projection.put_back(p);
            wal.take_back();
            return Err(to_py(CoreError::InvalidArgument(format!(
                "the projection is at sequence {latest} but the WAL in {} ends at \
                 {wal_last}: they describe different histories; open the data directory with \
                 actionqueue.storage.recovery.bootstrap(), which rebuilds the state from \
                 snapshot + log (or replay the log into the reducer first)",
                writer.dir().display()
            ))));
        }
        let inner = py
            .detach(|| Authority::new(writer, p, snapshot_dir, opts))
            .map_err(|e| {
                wal.take_back();
                to_py(e)
            })?;
        Ok(Self::wrap(inner))
    }

    /// Validates (the reducer's dry run), appends and applies `events` (wire tuples) as one
    /// atomic record; returns `(first, last)` once durable per `immediate`.
    #[pyo3(signature = (events, immediate, expected_first = None))]
    fn submit(
        &self,
        py: Python<'_>,
        events: &Bound<'_, PyAny>,
        immediate: bool,
        expected_first: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<(u64, u64)> {
        let expected_first = sequence_arg(expected_first, "expected_first")?;
        let events = events_from_wire(events)?;
        self.submit_events(py, events, immediate, expected_first)
    }

    /// `Engine.submit_uniform`'s record in one call: per `(data, content_type)` of
    /// `payloads`, a TaskCreate of `template` (a TaskSpec wire tuple; its id and payload are
    /// replaced) with the next 16 bytes of `ids` as task id, then a RunCreate per
    /// `(ordinal, scheduled_at)` of `runs` with the next ids; submitted as **one** record like
    /// `submit`. `ids` holds `16 * len(payloads) * (1 + len(runs))` bytes, task by task.
    /// The first `ready` runs of each task are also promoted (Scheduled → Ready at `at`, no
    /// reason) in the same record: the caller's statement that they are due and on time,
    /// which saves the scheduler a promotion record per batch. With `nonblocking` (Deferred
    /// only), nothing is done and `None` returned when the submit would wait — the
    /// authority's lock is held or an automatic snapshot is due — so that an event-loop
    /// caller can hand it to a thread instead of blocking its loop.
    #[pyo3(signature = (
        template, payloads, runs, origin, at, ids, immediate, ready = 0, nonblocking = false
    ))]
    #[allow(clippy::too_many_arguments)]
    fn submit_uniform(
        &self,
        py: Python<'_>,
        template: &Bound<'_, PyAny>,
        payloads: &Bound<'_, PyAny>,
        runs: Vec<(u32, i64)>,
        origin: i64,
        at: i64,
        ids: &[u8],
        immediate: bool,
        ready: usize,
        nonblocking: bool,
    ) -> PyResult<Option<(u64, u64)>> {
        let events = super::wire::uniform_events_from_wire(
            template, payloads, &runs, ready, origin, at, ids,
        )?;
        if !nonblocking {
            return self.submit_events(py, events, immediate, None).map(Some);
        }
        if immediate {
            return Err(to_py(crate::CoreError::InvalidArgument(
                "nonblocking submits are Deferred (they must not wait for a sync)".into(),
            )));
        }
        match self
            .inner
            .try_submit(None, self.inner.prepare(events), Durability::Deferred)
        {
            Ok(r) => r.map(|a| Some((a.first_seq, a.last_seq))).map_err(to_py),
            Err(_busy) => Ok(None),
        }
    }

    /// `submit` for an event loop: validates, appends and applies now (raising at once on
    /// refusal), then resolves `future` with `(first, last)` — on `event_loop`, through
    /// `resolve([(future, ok, value), ...])` called with `call_soon_threadsafe` — once the
    /// record is durable (at once when `immediate` is false). The durability wait runs on a
    /// completer thread that syncs for every commit queued meanwhile (one group per sync).
    #[pyo3(signature = (events, immediate, expected_first, event_loop, future, resolve))]
    #[allow(clippy::too_many_arguments)]
    fn submit_async(
        &self,
        py: Python<'_>,
        events: &Bound<'_, PyAny>,
        immediate: bool,
        expected_first: Option<&Bound<'_, PyAny>>,
        event_loop: Py<PyAny>,
        future: Py<PyAny>,
        resolve: Py<PyAny>,
    ) -> PyResult<Option<(u64, u64)>> {
        let expected_first = sequence_arg(expected_first, "expected_first")?;
        let events = events_from_wire(events)?;
        // The loop thread keeps the GIL for an uncontended submit (validate, apply, and the
        // record written — or, Immediate, held for the completer's group sync, which writes
        // it): releasing it would hand it to the completer mid-submit, a GIL round trip per
        // commit. A held lock or a due snapshot goes through `detach` as usual.
        let a = super::lifecycle::submit_unsynced(
            py,
            &self.inner,
            expected_first,
            events,
            durability(immediate),
        )
        .map_err(to_py)?;
        if !immediate || self.inner.wal().synced_sequence() >= a.last_seq {
            return Ok(Some((a.first_seq, a.last_seq)));
        }
        self.completer.push(
            &self.inner,
            Pending {
                first: a.first_seq,
                last: a.last_seq,
                future,
                event_loop,
                resolve,
            },
        )?;
        Ok(None)
    }

    /// `wait_durable` for an event loop: returns `True` when every event `<= seq` (default:
    /// the last one the WAL holds) is durable already; otherwise queues `future` on the
    /// completer (like `submit_async`'s Immediate wait, sharing its group syncs), which
    /// resolves it with `(seq, seq)` — or the sync's error — through `resolve` on
    /// `event_loop`, and returns `False`. Reads only the WAL's counters, never the
    /// authority's lock: an event-loop caller must not wait behind a snapshot capture.
    #[pyo3(signature = (seq, event_loop, future, resolve))]
    fn wait_async(
        &self,
        seq: Option<u64>,
        event_loop: Py<PyAny>,
        future: Py<PyAny>,
        resolve: Py<PyAny>,
    ) -> PyResult<bool> {
        // Else a forked child would queue the future for a completer that is not there.
        self.inner.wal().check_process().map_err(to_py)?;
        let last = self.inner.wal().next_sequence().saturating_sub(1);
        let seq = seq.unwrap_or(last);
        if seq > last {
            return Err(to_py(crate::CoreError::InvalidArgument(format!(
                "cannot wait for sequence {seq}: the last submitted event is {last}"
            ))));
        }
        if self.inner.wal().synced_sequence() >= seq {
            return Ok(true);
        }
        self.completer.push(
            &self.inner,
            Pending {
                first: seq,
                last: seq,
                future,
                event_loop,
                resolve,
            },
        )?;
        Ok(false)
    }

    /// Submits each batch as its own atomic record, crossing into Rust once (one durability
    /// wait at the end when `immediate`). Stops at the first refused batch and raises; the
    /// batches before it stay applied. Returns `(first, last)` of everything submitted.
    fn submit_many(
        &self,
        py: Python<'_>,
        batches: &Bound<'_, PyList>,
        immediate: bool,
    ) -> PyResult<(u64, u64)> {
        let batches: Vec<Vec<Event>> = batches
            .iter()
            .map(|b| events_from_wire(&b))
            .collect::<PyResult<_>>()?;
        py.detach(|| {
            let mut range: Option<(u64, u64)> = None;
            for b in batches {
                let a = self.inner.submit_owned(None, b, Durability::Deferred)?;
                range = Some((range.map_or(a.first_seq, |r| r.0), a.last_seq));
            }
            let Some(range) = range else {
                return Err(CoreError::InvalidArgument(
                    "submit_many needs at least one batch".into(),
                ));
            };
            if immediate {
                self.inner.flush()?;
            }
            Ok(range)
        })
        .map_err(to_py)
    }

    /// Prunes terminal runs whose last change is before `before` (and finished tasks left
    /// empty); returns `(first, last, runs_removed, tasks_removed)`.
    fn prune(
        &self,
        py: Python<'_>,
        before: i64,
        at: i64,
        immediate: bool,
    ) -> PyResult<(u64, u64, usize, usize)> {
        let (a, s) = py
            .detach(|| self.inner.prune(before, at, durability(immediate)))
            .map_err(to_py)?;
        Ok((a.first_seq, a.last_seq, s.runs, s.tasks))
    }

    /// Prunes all but the `keep` newest terminal runs; returns
    /// `(first, last, runs_removed, tasks_removed, before)` or None when nothing to prune.
    fn prune_keeping(
        &self,
        py: Python<'_>,
        keep: usize,
        at: i64,
        immediate: bool,
    ) -> PyResult<Option<PruneOut>> {
        let r = py
            .detach(|| self.inner.prune_keeping(keep, at, durability(immediate)))
            .map_err(to_py)?;
        Ok(r.map(|(a, s, before)| (a.first_seq, a.last_seq, s.runs, s.tasks, before)))
    }

    /// Makes every submitted record durable.
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.inner.flush()).map_err(to_py)
    }

    /// Takes a snapshot now and checkpoints; a dict describing it, or None without a
    /// snapshot directory.
    fn snapshot<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let s = py.detach(|| self.inner.snapshot()).map_err(to_py)?;
        s.map(|s| snapshot_dict(py, &s)).transpose()
    }

    /// Flushes, snapshots when configured, closes the WAL and releases the lock. Idempotent.
    /// In a forked child: only forgets the inherited handles (writes nothing).
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        if !self.inner.wal().in_owner_process() {
            // The completer thread lives only in the parent: stopping it would join a thread
            // that is not there (forever).
            self.completer.forget();
            return self.inner.close().map_err(to_py);
        }
        py.detach(|| {
            self.completer.stop();
            self.inner.close()
        })
        .map_err(to_py)
    }

    /// Counters of the authority and its WAL.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.inner.stats();
        stats_dict(py, &self.inner, &s)
    }

    /// The first failure cause, or None while healthy. Never raises.
    #[getter]
    fn failed(&self) -> Option<String> {
        self.inner.failure()
    }

    #[getter]
    fn closed(&self) -> bool {
        self.inner.is_closed()
    }

    #[getter]
    fn wal_path(&self) -> String {
        path_str(self.inner.wal().dir())
    }

    #[getter]
    fn snapshot_dir(&self) -> Option<String> {
        self.inner.snapshot_dir().map(path_str)
    }

    /// `submit(events, False, None)` that keeps the GIL when the authority's lock is free
    /// (the run-lifecycle hot path: a Deferred write is a short in-memory step).
    fn submit_deferred(&self, py: Python<'_>, events: &Bound<'_, PyAny>) -> PyResult<(u64, u64)> {
        let events = events_from_wire(events)?;
        let a = super::lifecycle::submit_deferred(py, &self.inner, None, events).map_err(to_py)?;
        Ok((a.first_seq, a.last_seq))
    }

    /// One dispatch step in one call (see `rust/py/lifecycle.rs`): `None` when work is due
    /// (and `check_due`): promote / sweep first, then call again with `check_due=False`.
    /// Else leases and starts up to `limit` Ready runs in selection order (one Deferred
    /// record; `[]` when paused or nothing is Ready) and returns `(run_id, task_id,
    /// scheduled_at, attempt, attempt_id, lease_expires_at)` per run. `random`: 16 random
    /// bytes per run for the attempt ids. `busy_keys`: concurrency keys to treat as held
    /// besides those the log holds (a handler still running after its outcome was recorded):
    /// the runs of those keys are skipped, not dropped.
    #[pyo3(signature = (
        now, owner, limit, default_lease_ms, random, check_due = true, busy_keys = Vec::new()
    ))]
    #[allow(clippy::too_many_arguments)]
    fn dispatch_ready<'py>(
        &self,
        py: Python<'py>,
        now: i64,
        owner: &str,
        limit: usize,
        default_lease_ms: i64,
        random: &[u8],
        check_due: bool,
        busy_keys: Vec<String>,
    ) -> PyResult<Option<Bound<'py, PyList>>> {
        super::lifecycle::dispatch_ready(
            self,
            &self.inner,
            py,
            super::lifecycle::DispatchAsk {
                now,
                owner,
                limit,
                default_lease_ms,
                random,
                check_due,
                busy_keys,
            },
        )
    }

    /// `(run_id, task_id, scheduled_at)` of up to `limit` Scheduled runs due at `now`,
    /// earliest first (`due_scheduled` without the whole run tuples).
    fn due_scheduled_ids<'py>(
        &self,
        py: Python<'py>,
        now: i64,
        limit: usize,
    ) -> PyResult<Bound<'py, PyList>> {
        super::lifecycle::due_scheduled_ids(self, py, now, limit)
    }

    /// `(run_id, not_before)` of up to `limit` RetryWait runs due at `now`, earliest first
    /// (`due_retries` without the whole run tuples).
    fn due_retry_ids<'py>(
        &self,
        py: Python<'py>,
        now: i64,
        limit: usize,
    ) -> PyResult<Bound<'py, PyList>> {
        super::lifecycle::due_retry_ids(self, py, now, limit)
    }

    /// The ids of the task's non-terminal runs, in ordinal order (`runs_for_task` without
    /// the run tuples of every run it ever had).
    fn live_run_ids<'py>(&self, py: Python<'py>, task_id: &[u8]) -> PyResult<Bound<'py, PyList>> {
        super::lifecycle::live_run_ids(self, py, task_id)
    }
});

fn report_dict<'py>(py: Python<'py>, r: &RecoveryReport) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("data_dir", path_str(&r.data_dir))?;
    d.set_item(
        "snapshot",
        r.snapshot.as_ref().map(|(p, s)| (path_str(p), *s)),
    )?;
    let skipped: Vec<(String, String)> = r
        .snapshots_skipped
        .iter()
        .map(|(p, why)| (path_str(p), why.clone()))
        .collect();
    d.set_item("snapshots_skipped", skipped)?;
    d.set_item("records_replayed", r.records_replayed)?;
    d.set_item("events_replayed", r.events_replayed)?;
    d.set_item("wal", super::wal::report_dict(py, &r.wal)?)?;
    d.set_item("snapshot_load_ms", r.snapshot_load_ms)?;
    d.set_item("replay_ms", r.replay_ms)?;
    d.set_item("duration_ms", r.duration_ms)?;
    d.set_item("final_sequence", r.final_sequence)?;
    d.set_item("digest", r.digest.map(|x| x.to_hex()))?;
    Ok(d)
}

/// Opens (creating if needed) a data directory: WAL open + tail repair, newest valid
/// snapshot, replay of the tail. Returns `(Authority, report dict)`.
#[pyfunction]
#[pyo3(signature = (data_dir, *, segment_size = DEFAULT_SEGMENT_SIZE, max_record_size = DEFAULT_MAX_RECORD_SIZE, preallocate = DEFAULT_PREALLOCATE, sync_interval = None, snapshot_every = DEFAULT_SNAPSHOT_EVENTS, keep_snapshots = DEFAULT_KEEP_SNAPSHOTS, snapshot_on_close = true, max_snapshot_size = snapshot::DEFAULT_MAX_SNAPSHOT_SIZE, digest = false))]
#[allow(clippy::too_many_arguments)]
pub fn bootstrap<'py>(
    py: Python<'py>,
    data_dir: PathBuf,
    segment_size: u64,
    max_record_size: u64,
    preallocate: u64,
    sync_interval: Option<f64>,
    snapshot_every: u64,
    keep_snapshots: usize,
    snapshot_on_close: bool,
    max_snapshot_size: u64,
    digest: bool,
) -> PyResult<(PyAuthority, Bound<'py, PyDict>)> {
    let opts = BootstrapOptions {
        wal: WalOptions {
            segment_size,
            max_record_size,
            preallocate,
            sync_interval: parse_interval(sync_interval)?,
            start_sequence: 1,
        },
        authority: AuthorityOptions {
            snapshot_every,
            keep_snapshots,
            snapshot_on_close,
            max_snapshot_size,
        },
        max_snapshot_size,
        digest,
    };
    let (a, report) = py
        .detach(|| core_bootstrap(&data_dir, opts))
        .map_err(to_py)?;
    Ok((PyAuthority::wrap(a), report_dict(py, &report)?))
}

/// Snapshot files in `dir`, newest first: `[(path, sequence)]`.
#[pyfunction]
pub fn snapshot_list(py: Python<'_>, dir: PathBuf) -> PyResult<Vec<(String, u64)>> {
    let files = py.detach(|| snapshot::list(&dir)).map_err(to_py)?;
    Ok(files
        .into_iter()
        .map(|f| (path_str(&f.path), f.sequence))
        .collect())
}

/// Renames a snapshot that must never be loaded again to `<name>.stale` (`.stale.1`, ... if
/// taken), fsyncing the directory; returns the new path (see `snapshot::set_aside`).
#[pyfunction]
pub fn snapshot_set_aside(py: Python<'_>, path: PathBuf, sequence: u64) -> PyResult<String> {
    let file = snapshot::SnapshotFile { path, sequence };
    let to = py.detach(|| snapshot::set_aside(&file)).map_err(to_py)?;
    Ok(path_str(&to))
}

/// Checks one snapshot file without keeping its state: a dict with `path`, `file_size`,
/// `sequence` (from the header, None if unreadable), `body_len`, `version`, `log_id` (the
/// `wal_id` of the log it was taken from; None: bound to none), `valid`, `error`, `tasks`,
/// `runs`.
#[pyfunction]
#[pyo3(signature = (path, max_size = snapshot::DEFAULT_MAX_SNAPSHOT_SIZE))]
pub fn snapshot_inspect<'py>(
    py: Python<'py>,
    path: PathBuf,
    max_size: u64,
) -> PyResult<Bound<'py, PyDict>> {
    type Found = (
        u64,
        Option<snapshot::Header>,
        Option<u64>,
        Result<(usize, usize), String>,
    );
    let (size, header, log_id, loaded): Found = py
        .detach(|| {
            let bytes = std::fs::read(&path).map_err(|e| CoreError::io("read", &path, e))?;
            let header = snapshot::read_header(&bytes, max_size).ok();
            let log_id = header.and_then(|_| snapshot::log_id(&bytes));
            let loaded = snapshot::decode(&bytes, max_size)
                .map(|p| (p.task_count(), p.run_count()))
                .map_err(|r| r.to_string());
            Ok::<_, CoreError>((bytes.len() as u64, header, log_id, loaded))
        })
        .map_err(to_py)?;
    let d = PyDict::new(py);
    d.set_item("path", path_str(&path))?;
    d.set_item("file_size", size)?;
    d.set_item("sequence", header.map(|h| h.sequence))?;
    d.set_item("body_len", header.map(|h| h.body_len))?;
    d.set_item("version", header.map(|h| h.version))?;
    d.set_item("log_id", log_id)?;
    d.set_item("valid", loaded.is_ok())?;
    d.set_item("error", loaded.as_ref().err())?;
    d.set_item("tasks", loaded.as_ref().ok().map(|x| x.0))?;
    d.set_item("runs", loaded.as_ref().ok().map(|x| x.1))?;
    Ok(d)
}

/// Keeps the unused-import lint quiet for types only the macro's expansion names.
#[allow(dead_code)]
type _Uses<'py> = (Bound<'py, PyBytes>, Bound<'py, PyTuple>);
