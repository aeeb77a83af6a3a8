//! Awaitable Immediate submits: many commits in flight from one event-loop thread.
//!
//! ```text
//!  event loop thread                         completer thread (one per authority, lazy)
//!  -----------------                         -------------------------------------------
//!  submit_async: validate+append+apply       take every pending completion
//!  (Deferred write), queue (last, future)    wait_durable(max last)  ─ one group sync
//!  return; `await future`                    attach once: loop.call_soon_threadsafe(
//!                                              resolve, [(future, ok, value), ...])
//! ```
//!
//! With blocking calls, N concurrent Immediate submitters need N threads, and every commit
//! costs each of them a GIL hand-off on the way back (the convoy that caps thread group
//! commit). Here the loop thread never blocks: it keeps submitting while the completer syncs,
//! and the completer takes the GIL once per sync, whatever the group size. The completer
//! exits after a short idle period, so an idle authority holds no thread.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::PyList;

use super::errors::to_py;
use crate::authority::Authority;

/// How long an idle completer waits for more work before its thread exits.
const LINGER: Duration = Duration::from_millis(200);
/// Longest commit delay (waiting for re-submissions before a sync).
const MAX_DELAY: Duration = Duration::from_micros(500);

/// One awaited commit: resolved with `(first, last)` once `last` is durable.
pub struct Pending {
    pub first: u64,
    pub last: u64,
    pub future: Py<PyAny>,
    pub event_loop: Py<PyAny>,
    pub resolve: Py<PyAny>,
}

#[derive(Default)]
struct Queue {
    items: Vec<Pending>,
    running: bool,
    stop: bool,
    /// The queue length at which a push wakes the completer: 1 while it waits for work, the
    /// commit-delay target while it delays, `usize::MAX` while it syncs or delivers (it looks
    /// at the queue again by itself). Each needless wake-up costs a futex call on the loop
    /// thread and a context switch of the completer: with 32 commits in flight, a notify per
    /// push was 32 wake-ups per sync instead of one. (0, the default, wakes on every push.)
    wake_at: usize,
}

#[derive(Default)]
pub struct Completer {
    q: Mutex<Queue>,
    cv: Condvar,
    thread: Mutex<Option<JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Completer {
    /// Queues `p`, starting the completer thread if it is not running. Called with the GIL
    /// held; takes only the queue lock (never held while waiting for the GIL).
    pub fn push(self: &Arc<Self>, auth: &Arc<Authority>, p: Pending) -> PyResult<()> {
        let (spawn, wake) = {
            let mut q = lock(&self.q);
            if q.stop {
                return Err(to_py(crate::CoreError::Closed("mutation authority")));
            }
            q.items.push(p);
            let spawn = !q.running;
            q.running = true;
            (spawn, q.items.len() >= q.wake_at)
        };
        if spawn {
            let (me, auth) = (Arc::clone(self), Arc::clone(auth));
            let h = std::thread::Builder::new()
                .name("actionqueue-completer".into())
                .spawn(move || me.run(&auth))
                .map_err(|e| to_py(crate::CoreError::io("spawn completer", ".", e)))?;
            // The previous (exited) thread, if any, is joined here; it has nothing left to do.
            if let Some(old) = lock(&self.thread).replace(h) {
                let _ = old.join();
            }
        } else if wake {
            self.cv.notify_one();
        }
        Ok(())
    }

    fn run(&self, auth: &Authority) {
        // Commits in flight after the last round (delivered + queued meanwhile), and how long
        // its sync took: the commit delay below.
        let mut in_flight = 0usize;
        let mut last_sync = Duration::ZERO;
        loop {
            let batch = {
                let mut q = lock(&self.q);
                q.wake_at = 1;
                while q.items.is_empty() {
                    if q.stop {
                        q.running = false;
                        return;
                    }
                    let (g, timeout) = self
                        .cv
                        .wait_timeout(q, LINGER)
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    q = g;
                    if timeout.timed_out() && q.items.is_empty() {
                        q.running = false;
                        return;
                    }
                }
                // Commit delay: the submitters just resolved re-submit within moments; wait
                // (at most the last sync's duration, capped) until as many commits as were in
                // flight are queued, so one sync covers them all instead of the submitters
                // splitting into two cohorts that alternate, each syncing half.
                if in_flight > 1 {
                    q.wake_at = in_flight;
                    let deadline = std::time::Instant::now() + last_sync.min(MAX_DELAY);
                    while q.items.len() < in_flight && !q.stop {
                        let now = std::time::Instant::now();
                        if now >= deadline {
                            break;
                        }
                        q = self
                            .cv
                            .wait_timeout(q, deadline - now)
                            .map(|(g, _)| g)
                            .unwrap_or_else(|e| e.into_inner().0);
                    }
                }
                q.wake_at = usize::MAX;
                std::mem::take(&mut q.items)
            };
            let target = batch.iter().map(|p| p.last).max().unwrap_or(0);
            // Commits queued meanwhile wait for the next round: one sync each round.
            let started = std::time::Instant::now();
            let result = auth.wait_durable(target);
            last_sync = started.elapsed();
            let delivered = batch.len();
            Python::attach(|py| deliver(py, batch, result));
            in_flight = delivered + lock(&self.q).items.len();
        }
    }

    /// Stops the thread after it has resolved what is queued; later pushes are refused.
    /// Call without the GIL (the thread needs it to resolve).
    pub fn stop(&self) {
        lock(&self.q).stop = true;
        self.cv.notify_all();
        if let Some(h) = lock(&self.thread).take() {
            let _ = h.join();
        }
    }

    /// In a forked child: refuses later pushes and forgets the thread (it exists only in the
    /// parent; joining it would wait forever). Locks are only tried: one a parent thread held
    /// at the fork is never released in the child.
    pub fn forget(&self) {
        if let Ok(mut q) = self.q.try_lock() {
            q.stop = true;
        }
        if let Ok(mut t) = self.thread.try_lock() {
            std::mem::forget(t.take());
        }
    }
}

/// `(event loop, resolve callable, [(future, ok, value)])`.
type Group = (Py<PyAny>, Py<PyAny>, Vec<Py<PyAny>>);

/// Hands each event loop its resolved futures in one `call_soon_threadsafe` call.
fn deliver(py: Python<'_>, batch: Vec<Pending>, result: crate::Result<()>) {
    let err = result.err().map(to_py);
    let mut groups: Vec<Group> = Vec::new();
    for p in batch {
        let item: PyResult<Py<PyAny>> = (|| {
            let value: Py<PyAny> = match &err {
                None => (p.first, p.last).into_pyobject(py)?.into_any().unbind(),
                Some(e) => e.clone_ref(py).into_value(py).into_any(),
            };
            Ok((p.future, err.is_none(), value)
                .into_pyobject(py)?
                .into_any()
                .unbind())
        })();
        let Ok(item) = item else { continue };
        match groups
            .iter_mut()
            .find(|g| g.0.is(&p.event_loop) && g.1.is(&p.resolve))
        {
            Some(g) => g.2.push(item),
            None => groups.push((p.event_loop, p.resolve, vec![item])),
        }
    }
    for (event_loop, resolve, items) in groups {
        let Ok(list) = PyList::new(py, items) else {
            continue;
        };
        // A closed loop raises RuntimeError: nobody is left to await these futures.
        let _ = event_loop
            .bind(py)
            .call_method1("call_soon_threadsafe", (resolve, list));
    }
}
