//! Sequences, task and run creation, transitions, attempts, the retry cap, pause/resume.

use super::*;
use crate::model::AttemptOutcome as O;
use crate::model::RunState as S;

#[test]
fn sequence_must_be_next_and_batches_take_consecutive_numbers() {
    let mut p = P::new();
    let t = id(1);
    let e = p.0.apply(2, &[tc(spec(t), 0)]).unwrap_err();
    assert!(matches!(
        e,
        CoreError::Sequence {
            expected: 1,
            got: 2
        }
    ));
    assert_eq!(e.python_class(), "SequenceError");
    p.ok(&[tc(spec(t), 0), rc(id(2), t, 0, 0)]);
    assert_eq!(p.0.latest_sequence(), 2);
    assert_eq!(p.0.task(&t).unwrap().created_seq, 1);
    assert_eq!(p.run(id(2)).created_seq, 2);
    let e = p.0.apply(2, &[cancel(t, 1)]).unwrap_err();
    assert!(matches!(
        e,
        CoreError::Sequence {
            expected: 3,
            got: 2
        }
    ));
    rejected(&p.err(&[]), "at least one event");
}

#[test]
fn task_create_rules() {
    let mut p = P::new();
    let t = id(1);
    p.ok1(tc(spec(t), 0));
    rejected(&p.err1(tc(spec(t), 1)), "already exists");
    let mut bad = spec(id(2));
    bad.shape_mut().constraints.max_attempts = 0;
    rejected(&p.err1(tc(bad, 1)), "max_attempts");
    let mut bad = spec(id(2));
    bad.shape_mut().constraints.concurrency_key = Some(String::new());
    rejected(&p.err1(tc(bad, 1)), "concurrency_key");
    rejected(&p.err1(tc(repeat(spec(id(2)), 0), 1)), "repeat");
    let mut bad = cron(spec(id(2)), None);
    if let PolicyKind::Cron { window, .. } = &mut bad.shape_mut().policy.kind {
        *window = 0;
    }
    rejected(&p.err1(tc(bad, 1)), "window");
    rejected(
        &p.err1(tc(cron(spec(id(2)), Some(0)), 1)),
        "max_occurrences",
    );
    let mut bad = spec(id(2));
    bad.shape_mut().constraints.timeout_ms = Some(0);
    rejected(&p.err1(tc(bad, 1)), "timeout");
    rejected(&p.err1(tc(spec(NIL_ID), 1)), "nil");
}

#[test]
fn dedupe_keys_are_held_by_live_tasks_only() {
    let mut p = P::new();
    let d = |n| {
        let mut s = spec(id(n));
        s.dedupe_key = Some("k".into());
        s
    };
    p.ok(&[tc(d(1), 0), rc(id(100), id(1), 0, 0)]);
    assert_eq!(p.0.task_by_dedupe_key("k"), Some(id(1)));
    rejected(&p.err1(tc(d(2), 1)), "held by live task");
    // Finishing the task (its only run completes) frees the key.
    p.ok1(tr(id(100), S::Scheduled, S::Ready, 1));
    p.ok(&dispatch(id(100), id(101), "w", 1, 10));
    p.ok(&[
        finish(id(100), id(101), O::Success, 2),
        tr(id(100), S::Running, S::Completed, 2),
    ]);
    assert!(p.0.task(&id(1)).unwrap().finished_at.is_some());
    assert_eq!(p.0.task_by_dedupe_key("k"), None);
    p.ok1(tc(d(2), 3));
    // Canceling frees it too.
    p.ok1(cancel(id(2), 4));
    p.ok1(tc(d(3), 5));
    // An unbounded cron task stays live whatever its runs do.
    let mut c = cron(spec(id(4)), None);
    c.dedupe_key = Some("c".into());
    p.ok(&[tc(c, 6), rc(id(40), id(4), 0, 6)]);
    p.ok1(tr(id(40), S::Scheduled, S::Canceled, 7));
    assert_eq!(p.0.task_by_dedupe_key("c"), Some(id(4)));
    assert!(p.0.task(&id(4)).unwrap().finished_at.is_none());
}

#[test]
fn run_create_rules() {
    let mut p = P::new();
    let t = id(1);
    let e = p.err1(rc(id(10), t, 0, 0));
    assert!(matches!(e, CoreError::NotFound { kind: "task", .. }));
    assert_eq!(e.python_class(), "NotFoundError");
    p.ok1(tc(repeat(spec(t), 2), 0));
    rejected(&p.err1(rc(id(10), t, 1, 0)), "ordinal 1");
    rejected(&p.err1(rc(NIL_ID, t, 0, 0)), "nil");
    p.ok1(rc(id(10), t, 0, 0));
    rejected(&p.err1(rc(id(10), t, 1, 0)), "already exists");
    p.ok1(rc(id(11), t, 1, 1000));
    rejected(&p.err1(rc(id(12), t, 2, 2000)), "all 2 runs");
    assert_eq!(&*p.0.runs_for_task(&t).unwrap(), &[id(10), id(11)]);
    let r = p.run(id(11));
    assert_eq!(
        (r.state, r.ordinal, r.scheduled_at),
        (S::Scheduled, 1, 1000)
    );
    // Canceled tasks get no runs.
    p.ok1(tc(cron(spec(id(2)), None), 0));
    p.ok1(cancel(id(2), 1));
    rejected(&p.err1(rc(id(20), id(2), 0, 0)), "canceled");
}

#[test]
fn transition_table_and_expected_state() {
    let mut p = P::new();
    p.ok(&[tc(spec(id(1)), 0), rc(id(10), id(1), 0, 0)]);
    let e = p.err1(tr(id(10), S::Scheduled, S::Running, 1));
    assert!(matches!(e, CoreError::InvalidTransition { .. }), "{e:?}");
    assert_eq!(e.python_class(), "InvalidTransitionError");
    let e = p.err1(tr(id(10), S::Scheduled, S::Scheduled, 1));
    assert!(matches!(e, CoreError::InvalidTransition { .. }));
    rejected(
        &p.err1(tr(id(10), S::Ready, S::Leased, 1)),
        "is Scheduled, not Ready",
    );
    let e = p.err1(tr(id(99), S::Scheduled, S::Ready, 1));
    assert!(matches!(e, CoreError::NotFound { kind: "run", .. }));
    let mut with_nb = tr(id(10), S::Scheduled, S::Ready, 1);
    if let Event::RunTransition { not_before, .. } = &mut with_nb {
        *not_before = Some(5);
    }
    rejected(&p.err1(with_nb), "not_before");
    p.ok1(tr(id(10), S::Scheduled, S::Canceled, 1));
    // Terminal states go nowhere.
    for to in RunState::ALL {
        let e = p.err1(tr(id(10), S::Canceled, to, 2));
        assert!(matches!(e, CoreError::InvalidTransition { .. }));
    }
    let h = &p.run(id(10)).history;
    assert_eq!(h.len(), 1);
    assert_eq!(
        (h[0].from, h[0].to, h[0].at),
        (S::Scheduled, S::Canceled, 1)
    );
}

#[test]
fn entering_ready_takes_the_task_priority() {
    let mut p = P::new();
    let mut s = spec(id(1));
    s.shape_mut().metadata.priority = 7;
    p.ready_task(s, id(10), 0);
    assert_eq!(p.run(id(10)).effective_priority, 7);
    assert_eq!(p.run(id(10)).last_state_change_at, 0);
}

#[test]
fn full_lifecycle_records_histories() {
    let mut p = P::new();
    p.ready_task(spec(id(1)), id(10), 0);
    p.ok(&dispatch(id(10), id(11), "w1", 5, 100));
    let r = p.run(id(10));
    assert_eq!(r.state, S::Running);
    assert_eq!(r.current_attempt, Some(id(11)));
    assert_eq!(r.attempt_count, 1);
    assert_eq!(r.lease.as_ref().unwrap().owner, "w1");
    assert_eq!(r.lease.as_ref().unwrap().acquired_at, 5);
    rejected(
        &p.err1(tr(id(10), S::Running, S::Completed, 6)),
        "finish it first",
    );
    p.ok1(Event::AttemptFinish {
        run_id: id(10),
        attempt_id: id(11),
        outcome: O::Success,
        error: None,
        output: Some(b"out".to_vec()),
        at: 7,
    });
    p.ok1(tr(id(10), S::Running, S::Completed, 8));
    let r = p.run(id(10));
    assert_eq!(r.state, S::Completed);
    assert!(r.lease.is_none() && r.current_attempt.is_none());
    let a = &r.attempts[0];
    assert_eq!(
        (a.started_at, a.finished_at, a.outcome),
        (5, Some(7), Some(O::Success))
    );
    assert_eq!(a.output.as_deref(), Some(&b"out"[..]));
    let states: Vec<_> = r.history.iter().map(|h| h.to).collect();
    assert_eq!(states, [S::Ready, S::Leased, S::Running, S::Completed]);
    assert!(p.0.task(&id(1)).unwrap().is_finished());
    assert_eq!(p.0.counts()[S::Completed as usize], 1);
}

#[test]
fn attempt_rules() {
    let mut p = P::new();
    let mut s = spec(id(1));
    s.shape_mut().constraints.max_attempts = 3;
    p.ready_task(s, id(10), 0);
    rejected(&p.err1(start(id(10), id(11), 1)), "only while Running");
    p.ok(&dispatch(id(10), id(11), "w", 1, 100));
    rejected(
        &p.err1(start(id(10), id(12), 2)),
        "already has open attempt",
    );
    rejected(&p.err1(finish(id(10), id(12), O::Success, 2)), "not ");
    rejected(
        &p.err1(finish(id(10), id(11), O::Canceled, 2)),
        "only by canceling",
    );
    // Suspended gives the count back.
    p.ok1(finish(id(10), id(11), O::Suspended, 2));
    assert_eq!(p.run(id(10)).attempt_count, 0);
    rejected(
        &p.err1(finish(id(10), id(11), O::Success, 2)),
        "no open attempt",
    );
    // A second attempt id must be new for the run.
    rejected(&p.err1(start(id(10), id(11), 3)), "already exists");
    rejected(&p.err1(start(id(10), NIL_ID, 3)), "nil");
    p.ok1(tr(id(10), S::Running, S::Suspended, 3));
    p.ok1(tr(id(10), S::Suspended, S::Ready, 4));
    p.ok(&dispatch(id(10), id(12), "w", 5, 100));
    assert_eq!(p.run(id(10)).attempt_count, 1);
    assert_eq!(p.run(id(10)).attempts.len(), 2);
}

#[test]
fn retry_cap_is_enforced_in_the_core() {
    let mut p = P::new();
    let mut s = spec(id(1));
    s.shape_mut().constraints.max_attempts = 2;
    p.ready_task(s, id(10), 0);
    p.ok(&dispatch(id(10), id(11), "w", 1, 100));
    p.ok(&[
        finish(id(10), id(11), O::RetryableFailure, 2),
        tr_retry(id(10), 50, 2),
    ]);
    assert_eq!(p.run(id(10)).not_before, Some(50));
    rejected(
        &p.err1(Event::RunTransition {
            run_id: id(10),
            from: S::Running,
            to: S::RetryWait,
            not_before: None,
            reason: None,
            at: 3,
        }),
        "is RetryWait",
    );
    assert_eq!(p.0.due_retries(49).count(), 0);
    assert_eq!(p.0.due_retries(50).collect::<Vec<_>>(), [id(10)]);
    p.ok1(tr(id(10), S::RetryWait, S::Ready, 50));
    assert_eq!(p.run(id(10)).not_before, None);
    p.ok(&dispatch(id(10), id(12), "w", 51, 100));
    p.ok1(finish(id(10), id(12), O::Timeout, 52));
    rejected(&p.err1(tr_retry(id(10), 60, 52)), "used 2 of 2 attempts");
    p.ok1(tr(id(10), S::Running, S::Failed, 52));
    // And no third attempt could ever start.
    let mut q = P::new();
    let mut s = spec(id(1));
    s.shape_mut().constraints.max_attempts = 1;
    q.ready_task(s, id(10), 0);
    q.ok(&dispatch(id(10), id(11), "w", 1, 100));
    q.ok1(finish(id(10), id(11), O::Lost, 2));
    rejected(&q.err1(start(id(10), id(12), 3)), "used 1 of 1");
    rejected(&q.err1(tr_retry(id(10), 60, 3)), "used 1 of 1");
}

#[test]
fn pause_and_resume() {
    let mut p = P::new();
    p.ready_task(spec(id(1)), id(10), 0);
    rejected(&p.err1(Event::EngineResume { at: 1 }), "not paused");
    p.ok1(Event::EnginePause { at: 1 });
    assert!(p.0.is_paused());
    rejected(&p.err1(Event::EnginePause { at: 2 }), "already paused");
    rejected(&p.err(&dispatch(id(10), id(11), "w", 2, 10)), "paused");
    p.ok1(Event::EngineResume { at: 3 });
    p.ok(&dispatch(id(10), id(11), "w", 4, 10));
}

#[test]
fn cancel_cascades_to_every_non_terminal_run() {
    let mut p = P::new();
    let t = id(1);
    let mut s = repeat(spec(t), 4);
    s.shape_mut().constraints.concurrency_key = Some("k".into());
    p.ok(&[
        tc(s, 0),
        rc(id(10), t, 0, 0),
        rc(id(11), t, 1, 0),
        rc(id(12), t, 2, 0),
        rc(id(13), t, 3, 0),
    ]);
    for r in [10, 11, 12] {
        p.ok1(tr(id(r), S::Scheduled, S::Ready, 1));
    }
    // 10 completes, 11 is Running with an open attempt and a lease, 12 Ready, 13 Scheduled.
    p.ok(&dispatch(id(10), id(20), "w", 2, 100));
    p.ok(&[
        finish(id(10), id(20), O::Success, 3),
        tr(id(10), S::Running, S::Completed, 3),
    ]);
    p.ok(&dispatch(id(11), id(21), "w", 4, 100));
    assert_eq!(p.0.key_holder("k"), Some(id(11)));
    p.ok1(Event::TaskCancel {
        task_id: t,
        reason: Some("user".into()),
        at: 5,
    });
    assert_eq!(p.state(id(10)), S::Completed);
    for r in [11, 12, 13] {
        let run = p.run(id(r));
        assert_eq!(run.state, S::Canceled);
        let last = run.history.last().unwrap();
        assert_eq!((last.to, last.at), (S::Canceled, 5));
        assert_eq!(last.reason.as_deref(), Some("user"));
    }
    let r11 = p.run(id(11));
    assert!(r11.lease.is_none() && r11.current_attempt.is_none());
    assert_eq!(r11.attempts[0].outcome, Some(O::Canceled));
    assert_eq!(r11.attempts[0].finished_at, Some(5));
    assert_eq!(p.0.key_holder("k"), None);
    let task = p.0.task(&t).unwrap();
    assert_eq!((task.canceled_at, task.finished_at), (Some(5), Some(5)));
    rejected(&p.err1(cancel(t, 6)), "already canceled");
    let e = p.err1(cancel(id(2), 6));
    assert!(matches!(e, CoreError::NotFound { kind: "task", .. }));
    assert_eq!(p.0.count(S::Canceled), 3);
}

#[test]
fn running_to_canceled_closes_the_open_attempt() {
    let mut p = P::new();
    p.ready_task(spec(id(1)), id(10), 0);
    p.ok(&dispatch(id(10), id(11), "w", 1, 100));
    p.ok1(tr(id(10), S::Running, S::Canceled, 2));
    let r = p.run(id(10));
    assert_eq!(r.attempts[0].outcome, Some(O::Canceled));
    assert!(r.lease.is_none());
}
