//! `_core.Projection`: a standalone replay reducer (the engine of
//! `actionqueue.storage.recovery.reducer.ReplayReducer`), with the same queries as the
//! authority. Handing it to an authority moves the projection out; the object is then closed.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};

use super::errors::to_py;
use super::queries::{pyclass_queries, Holder};
use super::wire::{events_from_wire, sequence_arg};
use crate::state::Projection;
use crate::{snapshot, CoreError, DEFAULT_MAX_RECORD_SIZE};

const MOVED: &str = "Projection (handed over to a mutation authority, which now owns it)";

#[pyclass(name = "Projection", module = "actionqueue._core", frozen)]
pub struct PyProjection {
    inner: Mutex<Option<Projection>>,
}

impl PyProjection {
    fn guard(&self) -> MutexGuard<'_, Option<Projection>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves the projection out (for an authority); the object is closed afterwards.
    pub(crate) fn take(&self) -> PyResult<Projection> {
        self.guard()
            .take()
            .ok_or_else(|| to_py(CoreError::Closed(MOVED)))
    }

    /// Puts a projection back after a failed hand-over.
    pub(crate) fn put_back(&self, p: Projection) {
        *self.guard() = Some(p);
    }

    /// Runs `f` on the projection with the GIL released (replay and big batches are long).
    fn detached<R: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut Projection) -> crate::Result<R> + Send,
    ) -> PyResult<R> {
        py.detach(|| {
            let mut g = self.guard();
            let p = g.as_mut().ok_or(CoreError::Closed(MOVED))?;
            f(p)
        })
        .map_err(to_py)
    }
}

impl Holder for PyProjection {
    fn with<R: Send>(
        &self,
        _py: Python<'_>,
        f: impl FnOnce(&Projection) -> R + Send,
    ) -> PyResult<R> {
        let g = self.guard();
        let p = g.as_ref().ok_or_else(|| to_py(CoreError::Closed(MOVED)))?;
        Ok(f(p))
    }
}

pyclass_queries!(PyProjection, {
    #[new]
    fn new() -> Self {
        Self {
            inner: Mutex::new(Some(Projection::new())),
        }
    }

    /// Applies one record (an atomic batch of wire tuples) at `first_sequence` (None: the
    /// next one); returns `(first, last)`. All or nothing.
    #[pyo3(signature = (events, first_sequence = None))]
    fn apply(
        &self,
        py: Python<'_>,
        events: &Bound<'_, PyAny>,
        first_sequence: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<(u64, u64)> {
        let first_sequence = sequence_arg(first_sequence, "first_sequence")?;
        let events = events_from_wire(events)?;
        self.detached(py, move |p| {
            let first = first_sequence.unwrap_or_else(|| p.next_sequence());
            p.apply(first, &events)?;
            Ok((first, p.latest_sequence()))
        })
    }

    /// Would `apply` accept this record? Never changes anything.
    #[pyo3(signature = (events, first_sequence = None))]
    fn check(
        &self,
        py: Python<'_>,
        events: &Bound<'_, PyAny>,
        first_sequence: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let first_sequence = sequence_arg(first_sequence, "first_sequence")?;
        let events = events_from_wire(events)?;
        self.detached(py, move |p| {
            let first = first_sequence.unwrap_or_else(|| p.next_sequence());
            p.check(first, &events)
        })
    }

    /// Replays the records of the WAL in `path` that follow the latest sequence, one atomic
    /// record at a time; returns `(records, events)`.
    #[pyo3(signature = (path, max_record_size = DEFAULT_MAX_RECORD_SIZE))]
    fn replay_wal(
        &self,
        py: Python<'_>,
        path: PathBuf,
        max_record_size: u64,
    ) -> PyResult<(u64, u64)> {
        self.detached(py, move |p| {
            crate::recovery::replay_into(p, &path, max_record_size, &None)
        })
    }

    /// A projection loaded from a snapshot file (indexes rebuilt).
    #[staticmethod]
    #[pyo3(signature = (path, max_size = snapshot::DEFAULT_MAX_SNAPSHOT_SIZE))]
    fn load_snapshot(py: Python<'_>, path: PathBuf, max_size: u64) -> PyResult<Self> {
        let p = py
            .detach(|| snapshot::load_file(&path, max_size))
            .map_err(to_py)?;
        Ok(Self {
            inner: Mutex::new(Some(p)),
        })
    }

    /// Writes a snapshot of this projection into `dir` (atomically); returns its path.
    fn write_snapshot(&self, py: Python<'_>, dir: PathBuf) -> PyResult<String> {
        self.detached(py, move |p| {
            snapshot::write_atomic(&dir, p).map(|f| f.path.to_string_lossy().into_owned())
        })
    }

    /// Whether the projection was handed to an authority.
    #[getter]
    fn handed_over(&self) -> bool {
        self.guard().is_none()
    }
});

/// Keeps the unused-import lint quiet for types only the macro's expansion names.
#[allow(dead_code)]
type _Uses<'py> = (Bound<'py, PyBytes>, Bound<'py, PyList>, Bound<'py, PyTuple>);
