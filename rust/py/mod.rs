//! The PyO3 binding layer: the only place that knows about Python.
//!
//! Only plain values cross the boundary (ints, str, bytes, tuples/lists of them). Every
//! [`CoreError`] becomes the `actionqueue.errors` class it names, in [`errors::to_py`].

pub mod authority;
mod completer;
mod errors;
mod lifecycle;
pub mod projection;
pub mod queries;
pub mod wal;
pub mod wire;

use pyo3::prelude::*;

use crate::{DEFAULT_MAX_RECORD_SIZE, FORMAT_VERSION};

/// Raises `RecordTooLargeError` when `size` exceeds `max` (the WAL's admission check).
#[pyfunction]
#[pyo3(signature = (size, max = DEFAULT_MAX_RECORD_SIZE))]
fn check_record_size(size: u64, max: u64) -> PyResult<()> {
    crate::check_record_size(size, max).map_err(errors::to_py)
}

/// CRC32C (Castagnoli) of `data`, hardware accelerated where the CPU allows.
#[pyfunction(name = "crc32c")]
#[pyo3(signature = (data, initial = 0))]
fn crc32c_py(data: &[u8], initial: u32) -> u32 {
    ::crc32c::crc32c_append(initial, data)
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("FORMAT_VERSION", FORMAT_VERSION)?;
    m.add("DEFAULT_MAX_RECORD_SIZE", DEFAULT_MAX_RECORD_SIZE)?;
    m.add_function(wrap_pyfunction!(check_record_size, m)?)?;
    m.add_function(wrap_pyfunction!(crc32c_py, m)?)?;
    m.add_class::<wal::PyWalWriter>()?;
    m.add_class::<wal::PyWalReader>()?;
    m.add_class::<wal::PyWalLock>()?;
    m.add_class::<authority::PyAuthority>()?;
    m.add_class::<projection::PyProjection>()?;
    m.add_function(wrap_pyfunction!(authority::bootstrap, m)?)?;
    m.add_function(wrap_pyfunction!(authority::snapshot_list, m)?)?;
    m.add_function(wrap_pyfunction!(authority::snapshot_set_aside, m)?)?;
    m.add_function(wrap_pyfunction!(authority::snapshot_inspect, m)?)?;
    m.add_function(wrap_pyfunction!(wal::wal_verify, m)?)?;
    m.add_function(wrap_pyfunction!(wal::wal_repair, m)?)?;
    m.add_function(wrap_pyfunction!(wal::encode_events, m)?)?;
    m.add_function(wrap_pyfunction!(wal::decode_events, m)?)?;
    Ok(())
}
