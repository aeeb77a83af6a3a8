//! Atomic batches: a record failing anywhere changes nothing.

use super::*;
use crate::model::AttemptOutcome as O;
use crate::model::RunState as S;

#[test]
fn batch_failing_at_its_last_event_changes_nothing() {
    let mut p = P::new();
    let t = id(1);
    let mut s = repeat(spec(t), 2);
    s.dedupe_key = Some("d".into());
    s.shape_mut().constraints.concurrency_key = Some("k".into());
    // TaskCreate + 2 RunCreates + an over-the-total third: nothing at all is created.
    let e = p.err(&[
        tc(s.clone(), 0),
        rc(id(10), t, 0, 0),
        rc(id(11), t, 1, 0),
        rc(id(12), t, 2, 0),
    ]);
    rejected(&e, "all 2 runs");
    assert_eq!((p.0.task_count(), p.0.run_count()), (0, 0));
    assert_eq!(p.0.task_by_dedupe_key("d"), None);
    assert_eq!(p.0.latest_sequence(), 0);
    p.ok(&[tc(s, 0), rc(id(10), t, 0, 0), rc(id(11), t, 1, 0)]);
}

#[test]
fn dispatch_batch_failing_late_leaves_no_lease_or_key() {
    let mut p = P::new();
    let mut s = spec(id(1));
    s.shape_mut().constraints.concurrency_key = Some("k".into());
    p.ready_task(s, id(10), 0);
    let mut batch = dispatch(id(10), id(11), "w", 1, 100);
    batch.push(start(id(10), id(12), 1)); // a second open attempt: refused
    p.err(&batch);
    let r = p.run(id(10));
    assert_eq!(r.state, S::Ready);
    assert!(r.lease.is_none() && r.attempts.is_empty() && r.history.len() == 1);
    assert_eq!(p.0.key_holder("k"), None);
    assert_eq!(p.0.count(S::Leased) + p.0.count(S::Running), 0);
}

#[test]
fn cancel_followed_by_a_failing_event_is_undone() {
    let mut p = P::new();
    let t = id(1);
    let mut s = repeat(spec(t), 3);
    s.dedupe_key = Some("d".into());
    s.shape_mut().constraints.concurrency_key = Some("k".into());
    p.ok(&[tc(s, 0), rc(id(10), t, 0, 0), rc(id(11), t, 1, 0)]);
    p.ok1(tr(id(10), S::Scheduled, S::Ready, 0));
    p.ok(&dispatch(id(10), id(20), "w", 1, 100));
    let before = p.0.state_digest();
    p.err(&[cancel(t, 2), Event::EngineResume { at: 2 }]);
    assert_eq!(before, p.0.state_digest());
    assert_eq!(p.state(id(10)), S::Running);
    assert_eq!(p.run(id(10)).current_attempt, Some(id(20)));
    assert_eq!(p.run(id(10)).attempts[0].outcome, None);
    assert_eq!(p.0.key_holder("k"), Some(id(10)));
    assert_eq!(p.0.task_by_dedupe_key("d"), Some(t));
    assert!(p.0.task(&t).unwrap().canceled_at.is_none());
}

#[test]
fn finish_and_lease_changes_are_undone() {
    let mut p = P::new();
    let mut s = spec(id(1));
    s.shape_mut().constraints.max_attempts = 2;
    p.ready_task(s, id(10), 0);
    p.ok(&dispatch(id(10), id(11), "w", 1, 100));
    p.err(&[
        heartbeat(id(10), "w", 500, 2),
        finish(id(10), id(11), O::Suspended, 2),
        expire(id(10), "w", 600),
        tr(id(10), S::Running, S::Completed, 600),
        Event::EnginePause { at: 600 },
        Event::EngineResume { at: 600 },
        Event::EngineResume { at: 600 },
    ]);
    let r = p.run(id(10));
    assert_eq!(r.lease.as_ref().unwrap().expires_at, 101);
    assert_eq!(r.attempt_count, 1);
    assert_eq!(r.current_attempt, Some(id(11)));
    assert!(!p.0.is_paused());
}

#[test]
fn prune_must_be_last_and_a_dry_prune_changes_nothing() {
    let mut p = P::new();
    p.ok(&[tc(spec(id(1)), 0), rc(id(10), id(1), 0, 0)]);
    p.ok1(tr(id(10), S::Scheduled, S::Canceled, 1));
    rejected(
        &p.err(&[
            Event::Prune { before: 10, at: 10 },
            Event::EnginePause { at: 10 },
        ]),
        "last event",
    );
    let seq = p.0.next_sequence();
    let d = p.0.state_digest();
    p.0.check(seq, &[Event::Prune { before: 10, at: 10 }])
        .unwrap();
    assert_eq!(d, p.0.state_digest());
    p.ok1(Event::Prune { before: 10, at: 10 });
    assert_eq!((p.0.task_count(), p.0.run_count()), (0, 0));
}

/// Two TaskCreates around a RunCreate: the record the owned-apply tests move in.
fn three_events() -> Vec<Event> {
    vec![
        tc(spec(id(1)), 10),
        rc(id(101), id(1), 0, 10),
        tc(spec(id(2)), 10),
    ]
}

/// The state `apply` (by reference) builds from [`three_events`] at sequence 1.
fn applied_by_reference() -> Projection {
    let mut p = Projection::new();
    p.apply(1, &three_events()).unwrap();
    p
}

#[test]
fn owned_tentative_apply_matches_apply_and_aborts_cleanly() {
    // The authority's path: events moved in (a TaskCreate's spec is kept, not cloned), then
    // committed, or aborted through the undo log. Same state as `apply` by reference.
    let by_ref = applied_by_reference();

    let mut owned = Projection::new();
    let empty = owned.state_digest();
    owned.apply_tentative_owned(1, three_events()).unwrap();
    owned.abort_tentative();
    assert_eq!(owned.state_digest(), empty);
    assert_eq!(owned.task_count(), 0);
    assert_eq!(owned.next_sequence(), 1);

    // A refused event rolls the earlier (moved-in) ones back by itself.
    let mut bad = three_events();
    bad.push(rc(id(9), id(77), 0, 11));
    assert!(owned.apply_tentative_owned(1, bad).is_err());
    assert_eq!(owned.state_digest(), empty);

    owned.apply_tentative_owned(1, three_events()).unwrap();
    owned.commit_tentative_count(1, 3);
    assert_eq!(owned.latest_sequence(), 3);
    assert_eq!(owned.state_digest(), by_ref.state_digest());
    owned.debug_check_indexes().unwrap();
}

#[test]
fn owned_apply_matches_apply_and_is_all_or_nothing() {
    // Recovery's path: each decoded record moved in (no spec clone), same state as `apply`.
    let by_ref = applied_by_reference();

    let mut owned = Projection::new();
    let empty = owned.state_digest();
    let mut bad = three_events();
    bad.push(rc(id(9), id(77), 0, 11)); // unknown task: refused, the three before rolled back
    assert!(owned.apply_owned(1, bad).is_err());
    assert_eq!(owned.state_digest(), empty);
    assert_eq!(owned.next_sequence(), 1);
    assert!(owned.apply_owned(2, three_events()).is_err()); // wrong sequence: nothing applied
    assert_eq!(owned.state_digest(), empty);

    owned.apply_owned(1, three_events()).unwrap();
    assert_eq!(owned.latest_sequence(), 3);
    assert_eq!(owned.state_digest(), by_ref.state_digest());
    owned.debug_check_indexes().unwrap();
}
