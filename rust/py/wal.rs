//! Python classes over the WAL: `_core.WalWriter`, `_core.WalReader`, `wal_verify`,
//! `wal_repair`. The public API is `actionqueue.storage.wal` (thin Python wrappers).
//!
//! Arguments are converted to owned Rust values first; then the GIL is released
//! (`py.detach`) around everything that touches the disk — open + recovery, append + fsync
//! (so group commit works across Python threads), flush, close, reads, verify and repair.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use super::errors::to_py;
use super::wire::{event_to_wire, events_from_wire};
use crate::wal::writer::{DEFAULT_PREALLOCATE, DEFAULT_SEGMENT_SIZE};
use crate::wal::{
    repair, verify, Durability, ReadEvent, RecoveryReport, WalOptions, WalReader, WalWriter,
};
use crate::{CoreError, DEFAULT_MAX_RECORD_SIZE};

fn path_str(p: &std::path::Path) -> String {
    p.to_string_lossy().into_owned()
}

pub(crate) fn report_dict<'py>(
    py: Python<'py>,
    r: &RecoveryReport,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("truncated", r.truncated)?;
    d.set_item("segment", r.segment.as_deref().map(path_str))?;
    d.set_item("offset", r.offset)?;
    d.set_item("bytes_dropped", r.bytes_dropped)?;
    d.set_item("records_dropped", r.records_dropped)?;
    d.set_item("events_dropped", r.events_dropped)?;
    d.set_item("reason", r.reason.as_deref())?;
    d.set_item("last_sequence", r.last_sequence)?;
    let removed: Vec<String> = r.removed_files.iter().map(|p| path_str(p)).collect();
    d.set_item("removed_files", removed)?;
    Ok(d)
}

/// The single writer of a WAL directory.
#[pyclass(name = "WalWriter", module = "actionqueue._core", frozen)]
pub struct PyWalWriter {
    inner: Arc<WalWriter>,
    /// Set once a `_core.Authority` took the writer over: from then on only the authority
    /// writes (appends here would bypass validation and desynchronise its projection).
    handed_over: AtomicBool,
}

const HANDED_OVER: &str = "WalWriter (handed over to a mutation authority, which now owns it)";

impl PyWalWriter {
    /// Gives the writer to an authority; refused if already given.
    pub(crate) fn hand_over(&self) -> PyResult<Arc<WalWriter>> {
        if self.handed_over.swap(true, Ordering::AcqRel) {
            return Err(to_py(CoreError::Closed(HANDED_OVER)));
        }
        Ok(Arc::clone(&self.inner))
    }

    /// Gives the writer back after a failed hand-over.
    pub(crate) fn take_back(&self) {
        self.handed_over.store(false, Ordering::Release);
    }

    fn writable(&self) -> PyResult<&WalWriter> {
        if self.handed_over.load(Ordering::Acquire) {
            return Err(to_py(CoreError::Closed(HANDED_OVER)));
        }
        Ok(&self.inner)
    }
}

#[pymethods]
impl PyWalWriter {
    #[new]
    #[pyo3(signature = (path, *, segment_size = DEFAULT_SEGMENT_SIZE, max_record_size = DEFAULT_MAX_RECORD_SIZE, preallocate = DEFAULT_PREALLOCATE, sync_interval = None, start_sequence = 1))]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        segment_size: u64,
        max_record_size: u64,
        preallocate: u64,
        sync_interval: Option<f64>,
        start_sequence: u64,
    ) -> PyResult<Self> {
        let sync_interval = match sync_interval {
            None => None,
            Some(s) if s.is_finite() && s > 0.0 => Some(Duration::from_secs_f64(s)),
            Some(s) => {
                return Err(to_py(CoreError::InvalidArgument(format!(
                    "sync_interval must be a positive number of seconds or None, got {s}"
                ))))
            }
        };
        let opts = WalOptions {
            segment_size,
            max_record_size,
            preallocate,
            sync_interval,
            start_sequence,
        };
        let inner = py.detach(|| WalWriter::open(&path, opts)).map_err(to_py)?;
        Ok(Self {
            inner: Arc::new(inner),
            handed_over: AtomicBool::new(false),
        })
    }

    /// Appends `events` (wire tuples) as one atomic record; returns `(first_seq, last_seq)`.
    #[pyo3(signature = (events, immediate, expected_sequence = None))]
    fn append(
        &self,
        py: Python<'_>,
        events: &Bound<'_, PyAny>,
        immediate: bool,
        expected_sequence: Option<u64>,
    ) -> PyResult<(u64, u64)> {
        let events = events_from_wire(events)?;
        let durability = if immediate {
            Durability::Immediate
        } else {
            Durability::Deferred
        };
        let w = self.writable()?;
        let a = py
            .detach(|| w.append(&events, durability, expected_sequence))
            .map_err(to_py)?;
        Ok((a.first_seq, a.last_seq))
    }

    /// Appends each batch of `batches` as its own record (one crossing, one wait at the end
    /// when `immediate`); returns the last sequence written. Every batch is converted,
    /// validated and encoded before anything is written (see `WalWriter::append_many`).
    fn append_many(
        &self,
        py: Python<'_>,
        batches: &Bound<'_, PyList>,
        immediate: bool,
    ) -> PyResult<u64> {
        let batches: Vec<Vec<crate::event::Event>> = batches
            .iter()
            .map(|b| events_from_wire(&b))
            .collect::<PyResult<_>>()?;
        let w = self.writable()?;
        let durability = if immediate {
            Durability::Immediate
        } else {
            Durability::Deferred
        };
        py.detach(|| match w.append_many(&batches, durability)? {
            Some(a) => Ok(a.last_seq),
            None => {
                if immediate {
                    w.flush()?;
                }
                Ok(w.next_sequence().saturating_sub(1))
            }
        })
        .map_err(to_py)
    }

    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        let w = self.writable()?;
        py.detach(|| w.flush()).map_err(to_py)
    }

    /// Closes the writer; a no-op once an authority owns it (the authority closes it).
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        if self.handed_over.load(Ordering::Acquire) {
            return Ok(());
        }
        py.detach(|| self.inner.close()).map_err(to_py)
    }

    /// Whether a mutation authority now owns this writer.
    #[getter]
    fn handed_over(&self) -> bool {
        self.handed_over.load(Ordering::Acquire)
    }

    #[getter]
    fn next_sequence(&self) -> u64 {
        self.inner.next_sequence()
    }

    #[getter]
    fn synced_sequence(&self) -> u64 {
        self.inner.synced_sequence()
    }

    #[getter]
    fn path(&self) -> String {
        path_str(self.inner.dir())
    }

    #[getter]
    fn wal_id(&self) -> u64 {
        self.inner.wal_id()
    }

    /// Counters: appends (records), events, bytes, syncs (fdatasync calls).
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.inner.stats();
        let d = PyDict::new(py);
        d.set_item("appends", s.appends)?;
        d.set_item("events", s.events)?;
        d.set_item("bytes", s.bytes)?;
        d.set_item("syncs", s.syncs)?;
        Ok(d)
    }

    fn recovery_report<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        report_dict(py, self.inner.recovery_report())
    }
}

/// A streaming reader of a WAL directory.
#[pyclass(name = "WalReader", module = "actionqueue._core", frozen)]
pub struct PyWalReader {
    inner: Mutex<WalReader>,
    names: Mutex<Vec<Option<Py<PyString>>>>,
}

#[pymethods]
impl PyWalReader {
    #[new]
    #[pyo3(signature = (path, *, start = 0, max_record_size = DEFAULT_MAX_RECORD_SIZE))]
    fn new(py: Python<'_>, path: PathBuf, start: u64, max_record_size: u64) -> PyResult<Self> {
        let inner = py
            .detach(|| WalReader::open_at(&path, max_record_size, start))
            .map_err(to_py)?;
        Ok(Self {
            inner: Mutex::new(inner),
            names: Mutex::new(Vec::new()),
        })
    }

    /// Up to `max_events` entries `(sequence, segment_name, offset, event_tuple)`; an empty
    /// list at the end of the log.
    #[pyo3(signature = (max_events = 4096))]
    fn read_batch<'py>(&self, py: Python<'py>, max_events: usize) -> PyResult<Bound<'py, PyList>> {
        let (batch, segment_names) = py
            .detach(|| {
                let mut r = self.inner.lock().unwrap_or_else(|e| e.into_inner());
                let mut out: Vec<ReadEvent> = Vec::with_capacity(max_events.min(65_536));
                while out.len() < max_events {
                    match r.next_event()? {
                        Some(e) => out.push(e),
                        None => break,
                    }
                }
                let n = r.segment_paths().len();
                let names: Vec<String> = (0..n).map(|i| r.segment_name(i)).collect();
                Ok::<_, CoreError>((out, names))
            })
            .map_err(to_py)?;
        let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        if names.len() != segment_names.len() {
            *names = segment_names.iter().map(|_| None).collect();
        }
        let list = PyList::empty(py);
        for e in &batch {
            let name = match names.get_mut(e.segment) {
                Some(slot) => slot
                    .get_or_insert_with(|| {
                        PyString::new(py, segment_names.get(e.segment).map_or("", |s| s)).unbind()
                    })
                    .clone_ref(py)
                    .into_bound(py),
                None => PyString::new(py, ""),
            };
            let item = PyTuple::new(
                py,
                [
                    e.sequence.into_pyobject(py)?.into_any(),
                    name.into_any(),
                    e.offset.into_pyobject(py)?.into_any(),
                    event_to_wire(py, &e.event)?.into_any(),
                ],
            )?;
            list.append(item)?;
        }
        Ok(list)
    }

    /// After the end: `None` for a clean end, else a dict describing the crash tail (which
    /// the next writer open cuts off).
    fn torn_tail<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let r = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let Some(tail) = r.tail() else {
            return Ok(None);
        };
        let (Some(d), Some(seg)) = (&tail.damage, tail.seg) else {
            return Ok(None);
        };
        let out = PyDict::new(py);
        out.set_item("segment", r.segment_name(seg))?;
        out.set_item("offset", tail.offset)?;
        out.set_item("reason", d.reason.to_string())?;
        out.set_item("bytes", tail.file_len.saturating_sub(tail.offset))?;
        out.set_item("records_after", d.after.records)?;
        Ok(Some(out))
    }
}

/// Full read-only check of a WAL directory.
#[pyfunction]
#[pyo3(signature = (path, max_record_size = DEFAULT_MAX_RECORD_SIZE))]
pub fn wal_verify<'py>(
    py: Python<'py>,
    path: PathBuf,
    max_record_size: u64,
) -> PyResult<Bound<'py, PyDict>> {
    let r = py
        .detach(|| verify(&path, max_record_size))
        .map_err(to_py)?;
    let d = PyDict::new(py);
    d.set_item("segments", r.segments)?;
    d.set_item("records", r.records)?;
    d.set_item("events", r.events)?;
    d.set_item("bytes", r.bytes)?;
    d.set_item("first_sequence", r.first_sequence)?;
    d.set_item("last_sequence", r.last_sequence)?;
    d.set_item(
        "torn_tail",
        r.torn_tail.map(|(p, off, why)| (path_str(&p), off, why)),
    )?;
    Ok(d)
}

/// Finds the first bad spot of a WAL, reports what lies after it, and cuts there only when
/// `truncate` is true.
#[pyfunction]
#[pyo3(signature = (path, truncate, max_record_size = DEFAULT_MAX_RECORD_SIZE))]
pub fn wal_repair<'py>(
    py: Python<'py>,
    path: PathBuf,
    truncate: bool,
    max_record_size: u64,
) -> PyResult<Bound<'py, PyDict>> {
    let r = py
        .detach(|| repair(&path, max_record_size, truncate))
        .map_err(to_py)?;
    let d = PyDict::new(py);
    d.set_item("segment", r.segment.as_deref().map(path_str))?;
    d.set_item("offset", r.offset)?;
    d.set_item("reason", r.reason)?;
    d.set_item("crash_tail", r.crash_tail)?;
    d.set_item("last_good_sequence", r.last_good_sequence)?;
    d.set_item("records_after", r.records_after)?;
    d.set_item("events_after", r.events_after)?;
    d.set_item("valid_bytes_after", r.valid_bytes_after)?;
    d.set_item("bytes_after", r.bytes_after)?;
    let later: Vec<String> = r.later_segments.iter().map(|p| path_str(p)).collect();
    d.set_item("later_segments", later)?;
    d.set_item("truncated", r.truncated)?;
    Ok(d)
}

/// Encodes wire tuples as a record payload would hold them (postcard, back to back).
#[pyfunction]
pub fn encode_events<'py>(
    py: Python<'py>,
    events: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyBytes>> {
    let events = events_from_wire(events)?;
    let mut out = Vec::new();
    crate::codec::encode_batch_into(&events, &mut out).map_err(to_py)?;
    Ok(PyBytes::new(py, &out))
}

/// Decodes `count` events from a record payload into wire tuples.
#[pyfunction]
pub fn decode_events<'py>(
    py: Python<'py>,
    payload: &[u8],
    count: u32,
) -> PyResult<Bound<'py, PyList>> {
    let events = crate::codec::decode_batch(payload, count).map_err(to_py)?;
    let list = PyList::empty(py);
    for e in &events {
        list.append(event_to_wire(py, e)?)?;
    }
    Ok(list)
}

/// The WAL directory's writer lock (FORMAT §7), held without opening a writer: for tools that
/// change a data directory wholesale (`actionqueue demo` wiping its previous queue) and must
/// keep every queue out meanwhile. Taken at construction (`DataDirLockedError` at once if a
/// queue holds it); released by `release()` or when the object is dropped.
#[pyclass(name = "WalLock", module = "actionqueue._core")]
pub struct PyWalLock(Option<crate::wal::lock::DirLock>);

#[pymethods]
impl PyWalLock {
    #[new]
    fn new(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        py.detach(|| crate::wal::lock::DirLock::acquire(&path))
            .map(|l| Self(Some(l)))
            .map_err(to_py)
    }

    /// Releases the lock (idempotent).
    fn release(&mut self) {
        if let Some(l) = self.0.take() {
            l.release();
        }
    }

    /// Whether the lock is still held by this object.
    #[getter]
    fn held(&self) -> bool {
        self.0.is_some()
    }
}
