//! The concurrency-key gate, derived from durable state.

use super::*;
use crate::model::AttemptOutcome as O;
use crate::model::RunState as S;

fn keyed(n: u64, hold: HoldPolicy, max_attempts: u32) -> TaskSpec {
    let mut s = spec(id(n));
    s.shape_mut().constraints.concurrency_key = Some("k".into());
    s.shape_mut().constraints.hold = hold;
    s.shape_mut().constraints.max_attempts = max_attempts;
    s
}

#[test]
fn one_run_per_key_in_flight_and_released_on_completion() {
    let mut p = P::new();
    p.ready_task(keyed(1, HoldPolicy::HoldDuringRetry, 1), id(10), 0);
    p.ready_task(keyed(2, HoldPolicy::HoldDuringRetry, 1), id(20), 0);
    p.ready_task(spec(id(3)), id(30), 0);
    assert_eq!(p.0.ready().collect::<Vec<_>>(), [id(10), id(30)]);
    p.ok(&dispatch(id(10), id(11), "w", 1, 100));
    assert_eq!(p.0.key_holder("k"), Some(id(10)));
    // 20 is skipped, not dropped.
    assert_eq!(p.0.ready().collect::<Vec<_>>(), [id(30)]);
    assert_eq!(p.state(id(20)), S::Ready);
    rejected(
        &p.err(&dispatch(id(20), id(21), "w", 2, 100)),
        "held by run",
    );
    p.ok(&[
        finish(id(10), id(11), O::Success, 3),
        tr(id(10), S::Running, S::Completed, 3),
    ]);
    assert_eq!(p.0.key_holder("k"), None);
    assert_eq!(p.0.ready().collect::<Vec<_>>(), [id(20), id(30)]);
    p.ok(&dispatch(id(20), id(21), "w", 4, 100));
}

#[test]
fn hold_during_retry_keeps_the_key_and_retry_wait_to_failed_releases_it() {
    let mut p = P::new();
    p.ready_task(keyed(1, HoldPolicy::HoldDuringRetry, 2), id(10), 0);
    p.ready_task(keyed(2, HoldPolicy::HoldDuringRetry, 1), id(20), 0);
    p.ok(&dispatch(id(10), id(11), "w", 1, 100));
    p.ok(&[
        finish(id(10), id(11), O::RetryableFailure, 2),
        tr_retry(id(10), 10, 2),
    ]);
    assert_eq!(p.0.key_holder("k"), Some(id(10)));
    rejected(
        &p.err(&dispatch(id(20), id(21), "w", 3, 100)),
        "held by run",
    );
    p.ok1(tr(id(10), S::RetryWait, S::Failed, 4));
    assert_eq!(p.0.key_holder("k"), None);
    p.ok(&dispatch(id(20), id(21), "w", 5, 100));
}

#[test]
fn release_on_retry_frees_the_key_while_waiting() {
    let mut p = P::new();
    p.ready_task(keyed(1, HoldPolicy::ReleaseOnRetry, 2), id(10), 0);
    p.ready_task(keyed(2, HoldPolicy::ReleaseOnRetry, 1), id(20), 0);
    p.ok(&dispatch(id(10), id(11), "w", 1, 100));
    p.ok(&[
        finish(id(10), id(11), O::Timeout, 2),
        tr_retry(id(10), 10, 2),
    ]);
    assert_eq!(p.0.key_holder("k"), None);
    p.ok(&dispatch(id(20), id(21), "w", 3, 100));
    p.ok1(tr(id(10), S::RetryWait, S::Ready, 10));
    rejected(
        &p.err(&dispatch(id(10), id(12), "w", 11, 100)),
        "held by run",
    );
}

#[test]
fn suspended_follows_the_hold_policy_and_cancel_releases() {
    let mut p = P::new();
    p.ready_task(keyed(1, HoldPolicy::HoldDuringRetry, 1), id(10), 0);
    p.ok(&dispatch(id(10), id(11), "w", 1, 100));
    p.ok(&[
        finish(id(10), id(11), O::Suspended, 2),
        tr(id(10), S::Running, S::Suspended, 2),
    ]);
    assert_eq!(p.0.key_holder("k"), Some(id(10)));
    p.ok1(cancel(id(1), 3));
    assert_eq!(p.0.key_holder("k"), None);
}

#[test]
fn ready_iterator_yields_one_run_per_free_key() {
    let mut p = P::new();
    p.ready_task(keyed(1, HoldPolicy::HoldDuringRetry, 1), id(10), 0);
    p.ready_task(keyed(2, HoldPolicy::HoldDuringRetry, 1), id(20), 0);
    assert_eq!(p.0.ready().collect::<Vec<_>>(), [id(10)]);
    assert_eq!(p.0.count(S::Ready), 2);
}

#[test]
fn runs_waiting_behind_a_held_key_are_not_dispatch_candidates() {
    // Selection walks the candidates only: one head per free key, never the runs queued
    // behind a held one (that walk was O(blocked runs) per dispatch).
    let mut p = P::new();
    for n in 0..200 {
        p.ready_task(keyed(n, HoldPolicy::HoldDuringRetry, 1), id(1000 + n), 0);
    }
    p.ready_task(spec(id(5000)), id(6000), 0);
    assert_eq!(p.0.ix.candidates.len(), 2);
    p.ok(&dispatch(id(1000), id(9000), "w", 1, 100));
    assert_eq!(p.0.ix.candidates.len(), 1);
    assert_eq!(p.0.ready().collect::<Vec<_>>(), [id(6000)]);
    assert_eq!(p.0.debug_check_indexes(), Ok(()));
    p.ok(&[
        finish(id(1000), id(9000), O::Success, 3),
        tr(id(1000), S::Running, S::Completed, 3),
    ]);
    // The key is free again: its next Ready run is the one candidate for it.
    assert_eq!(p.0.ready().collect::<Vec<_>>(), [id(1001), id(6000)]);
    assert_eq!(p.0.debug_check_indexes(), Ok(()));
}
