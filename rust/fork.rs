//! Which process owns a handle: refusing an inherited WAL writer or authority in a forked child.
//!
//! `fork()` copies the parent's memory into the child: an open [`crate::wal::WalWriter`] (with
//! its write position, next sequence and file descriptors) and the authority's projection. The
//! directory lock does not stop the child: `flock` locks belong to the open file description,
//! which the child shares with the parent. A child appending through the copy writes at the
//! parent's offset and is told "durable"; the parent later writes its own records over those
//! bytes, and the child's acknowledged records are gone (or the log is two interleaved
//! histories). One process owns a data directory, so an inherited handle refuses every call
//! in the child with [`CoreError::ForkedProcess`], and closing or dropping it there only
//! forgets it: no write, sync, snapshot, checkpoint, truncate, unlink or unlock (`LOCK_UN` on
//! the shared description would release the parent's lock).
//!
//! Detection: a process-wide fork generation, bumped in the child by a `pthread_atfork` child
//! handler (registered once, when the first handle is opened). A handle remembers the
//! generation it was opened in ([`ProcessOwner`]); a different one means "forked since". The
//! check runs on every append, so it is one atomic load of a static, not `getpid()`: glibc
//! stopped caching the pid (2.25), so `std::process::id()` is a system call per check (~0.1 µs
//! with mitigations, several percent of a Deferred submit). Close and drop, which are rare,
//! also compare the pid, so a child made without the atfork handlers (a raw `clone`) still
//! only forgets its copies.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;

use crate::{CoreError, Result};

/// Forks seen by this process's ancestry since the handler was registered; [`UNTRACKED`]
/// when registration failed (then the pid is compared instead).
static GENERATION: AtomicU64 = AtomicU64::new(0);
static REGISTER: Once = Once::new();
const UNTRACKED: u64 = u64::MAX;

/// The atfork child handler: runs in the child, single-threaded, before `fork()` returns
/// there. An atomic add is async-signal-safe, as code run there must be.
extern "C" fn forked_child() {
    // Never reaches UNTRACKED (registration succeeded, so the counter starts at 0).
    GENERATION.fetch_add(1, Ordering::Relaxed);
}

#[allow(unsafe_code)]
fn register() {
    REGISTER.call_once(|| {
        // SAFETY: `pthread_atfork` only records the three function pointers; the one given is
        // an `extern "C" fn()` that lives for the whole program (a static function) and only
        // does an atomic add. No prepare or parent handler.
        let rc = unsafe { libc::pthread_atfork(None, None, Some(forked_child)) };
        if rc != 0 {
            // ENOMEM: fall back to comparing the pid on every check (slower, still correct).
            GENERATION.store(UNTRACKED, Ordering::Relaxed);
        }
    });
}

/// The process a handle was opened in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessOwner {
    generation: u64,
    pid: u32,
}

impl ProcessOwner {
    /// The current process (registers the fork handler on first use).
    pub fn current() -> Self {
        register();
        Self {
            generation: GENERATION.load(Ordering::Relaxed),
            pid: std::process::id(),
        }
    }

    /// The pid of the process that opened the handle.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether this is still the process that opened the handle: one Relaxed load on the hot
    /// path (the child handler ran in this very thread before `fork()` returned, so no
    /// ordering with other threads is needed).
    #[inline]
    pub fn is_current(&self) -> bool {
        let g = GENERATION.load(Ordering::Relaxed);
        g == self.generation && (g != UNTRACKED || self.pid == std::process::id())
    }

    /// [`is_current`](Self::is_current) and the same pid: for close and drop, which must
    /// never do I/O in a child, however it was made.
    pub fn is_current_strict(&self) -> bool {
        self.is_current() && self.pid == std::process::id()
    }

    /// Refuses use from a forked child with [`CoreError::ForkedProcess`] naming `what` (the
    /// handle) and `dir` (its data directory).
    #[inline]
    pub fn check(&self, what: &'static str, dir: &Path) -> Result<()> {
        if self.is_current() {
            return Ok(());
        }
        Err(CoreError::ForkedProcess {
            what,
            path: dir.to_path_buf(),
            owner_pid: self.pid,
            pid: std::process::id(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_opening_process_is_current() {
        let o = ProcessOwner::current();
        assert!(o.is_current());
        assert!(o.is_current_strict());
        assert_eq!(o.pid(), std::process::id());
        assert!(o.check("WAL writer", Path::new("d")).is_ok());
    }

    #[test]
    fn another_generation_is_refused_with_a_message_saying_what_to_do() {
        let o = ProcessOwner::current();
        // As seen from a child forked after `o` was taken (its generation moved on).
        let stale = ProcessOwner {
            generation: o.generation.wrapping_sub(1),
            pid: 1,
        };
        assert!(!stale.is_current());
        assert!(!stale.is_current_strict());
        let e = stale
            .check("WAL writer", Path::new("/data/q"))
            .err()
            .map(|e| (e.python_class(), e.to_string()));
        let (class, msg) = e.unwrap_or_default();
        assert_eq!(class, "ForkedProcessError");
        assert!(msg.contains("opened by process 1"), "{msg}");
        assert!(msg.contains("/data/q"), "{msg}");
        assert!(msg.contains("fork before opening"), "{msg}");
        // Another pid alone (no atfork handler ran) fails only the strict check.
        let other_pid = ProcessOwner { pid: 1, ..o };
        assert!(!other_pid.is_current_strict());
    }
}

#[cfg(test)]
#[path = "fork_tests.rs"]
mod fork_tests;
