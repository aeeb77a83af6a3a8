//! The single conversion from [`CoreError`] to a Python exception.
//!
//! The exception classes are defined once, in `actionqueue.errors`; this module looks the class
//! up by the name [`CoreError::python_class`] gives and raises it with the core's message. Rich
//! errors also get attributes (segment/offset/reason, path, expected/got) so callers need not
//! parse messages.

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyModule;

use crate::CoreError;

static ERRORS_MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

fn errors_module(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    ERRORS_MODULE
        .get_or_try_init(py, || {
            Ok::<_, PyErr>(py.import("actionqueue.errors")?.unbind())
        })
        .map(|m| m.bind(py))
}

/// Converts a core error into the matching `actionqueue.errors` exception.
pub fn to_py(err: CoreError) -> PyErr {
    Python::attach(|py| match build(py, &err) {
        Ok(e) => e,
        // The errors module itself failed to import: still surface the core message.
        Err(import_err) => PyRuntimeError::new_err(format!("{err} (and {import_err})")),
    })
}

fn build(py: Python<'_>, err: &CoreError) -> PyResult<PyErr> {
    let cls = errors_module(py)?.getattr(err.python_class())?;
    let exc = cls.call1((err.to_string(),))?;
    match err {
        CoreError::WalCorruption {
            segment,
            offset,
            reason,
        } => {
            exc.setattr("segment", segment.to_string_lossy().into_owned())?;
            exc.setattr("offset", *offset)?;
            exc.setattr("reason", reason.to_string())?;
        }
        CoreError::DataDirLocked { path, .. } | CoreError::UnexpectedFile { path, .. } => {
            exc.setattr("path", path.to_string_lossy().into_owned())?;
        }
        CoreError::ForkedProcess {
            path,
            owner_pid,
            pid,
            ..
        } => {
            exc.setattr("path", path.to_string_lossy().into_owned())?;
            exc.setattr("owner_pid", *owner_pid)?;
            exc.setattr("pid", *pid)?;
        }
        CoreError::Sequence { expected, got } => {
            exc.setattr("expected", *expected)?;
            exc.setattr("got", *got)?;
        }
        CoreError::RecordTooLarge { size, max } => {
            exc.setattr("size", *size)?;
            exc.setattr("max_size", *max)?;
        }
        CoreError::RecordOverReadLimit {
            segment,
            offset,
            sequence,
            size,
            max,
        } => {
            exc.setattr("size", *size)?;
            exc.setattr("max_size", *max)?;
            exc.setattr("segment", segment.to_string_lossy().into_owned())?;
            exc.setattr("offset", *offset)?;
            exc.setattr("sequence", *sequence)?;
        }
        CoreError::Io { source, .. } => {
            if let Some(code) = source.raw_os_error() {
                exc.setattr("errno", code)?;
            }
        }
        _ => {}
    }
    Ok(PyErr::from_value(exc))
}
