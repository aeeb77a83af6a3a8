//! Negative times: refused by the dry run, apply and tentative apply (naming the field), but
//! still replayed from a log written before the rule.

use proptest::prelude::*;

use super::*;
use crate::model::AttemptOutcome as O;
use crate::model::RunState as S;

fn invalid(e: &CoreError, needle: &str) {
    match e {
        CoreError::InvalidArgument(m) => {
            assert!(m.contains(needle), "{m:?} does not mention {needle:?}");
            assert!(m.contains("negative times are refused"), "{m:?}");
        }
        other => panic!("expected a ValidationError mentioning {needle:?}, got {other:?}"),
    }
}

/// `p` holds task 1 with run 10 Running (lease "w" until 1_000, attempt 20 open).
fn running() -> P {
    let mut p = P::new();
    p.ready_task(spec(id(1)), id(10), 0);
    p.ok(&dispatch(id(10), id(20), "w", 1, 1_000));
    p
}

/// Also refused by `apply_tentative` (which takes no Prune at all), and the projection is
/// unchanged.
fn refused(p: &mut P, events: &[Event], needle: &str) {
    invalid(&p.err(events), needle);
    if needle.starts_with("Prune.") {
        return;
    }
    let d = p.0.state_digest();
    let seq = p.0.next_sequence();
    invalid(&p.0.apply_tentative(seq, events).unwrap_err(), needle);
    assert_eq!(d, p.0.state_digest());
}

#[test]
fn every_time_field_of_every_event_is_checked() {
    let mut p = running();
    let mut s = spec(id(2));
    let cases: Vec<(Event, &str)> = vec![
        (tc(s.clone(), -1), "TaskCreate.origin"),
        (
            Event::TaskCreate {
                spec: Box::new(s.clone()),
                origin: 5,
                at: -5,
            },
            "TaskCreate.at",
        ),
        (rc(id(11), id(1), 1, -5), "RunCreate.scheduled_at"),
        (
            Event::RunCreate {
                run_id: id(11),
                task_id: id(1),
                ordinal: 1,
                scheduled_at: 5,
                at: i64::MIN,
            },
            "RunCreate.at",
        ),
        (tr(id(10), S::Running, S::Canceled, -1), "RunTransition.at"),
        (tr_retry(id(10), -8, 5), "RunTransition.not_before"),
        (start(id(10), id(21), -1), "AttemptStart.at"),
        (finish(id(10), id(20), O::Success, -1), "AttemptFinish.at"),
        (acquire(id(10), "w", -1, -2), "LeaseAcquire.expires_at"),
        (acquire(id(10), "w", 9, -2), "LeaseAcquire.at"),
        (heartbeat(id(10), "w", -1, 2), "LeaseHeartbeat.expires_at"),
        (heartbeat(id(10), "w", 9, -2), "LeaseHeartbeat.at"),
        (
            Event::LeaseExpire {
                run_id: id(10),
                owner: "w".into(),
                at: -1,
            },
            "LeaseExpire.at",
        ),
        (
            Event::LeaseRelease {
                run_id: id(10),
                owner: "w".into(),
                at: -1,
            },
            "LeaseRelease.at",
        ),
        (cancel(id(1), -1), "TaskCancel.at"),
        (Event::EnginePause { at: -1 }, "EnginePause.at"),
        (Event::EngineResume { at: -1 }, "EngineResume.at"),
        (
            Event::Prune {
                before: i64::MIN,
                at: i64::MIN,
            },
            "Prune.before",
        ),
        (Event::Prune { before: 0, at: -1 }, "Prune.at"),
    ];
    for (ev, needle) in cases {
        refused(&mut p, &[ev], needle);
    }
    // The message shows the value and the allowed range.
    let e = p.err(&[tr_retry(id(10), -5, 5)]);
    assert_eq!(
        e.to_string(),
        format!(
            "RunTransition.not_before must be milliseconds since the Unix epoch in 0..{}, \
             got -5 (negative times are refused)",
            i64::MAX
        )
    );
    // Zero is a valid time.
    s.id = id(3);
    p.ok(&[tc(s, 0), rc(id(30), id(3), 0, 0)]);
    p.ok1(Event::Prune { before: 0, at: 0 });
}

#[test]
fn a_batch_names_the_event_holding_the_negative_time() {
    let mut p = running();
    let e = p.err(&[
        Event::EnginePause { at: 5 },
        Event::EngineResume { at: 6 },
        Event::Prune { before: -1, at: 7 },
    ]);
    invalid(&e, "event 2 of 3: Prune.before");
    assert!(!p.0.is_paused());
}

#[test]
fn replay_still_accepts_negative_times_from_an_older_log() {
    // What an older version let through: recovery's replay (`apply_owned`) keeps opening it.
    let records = vec![
        (1, vec![tc(spec(id(1)), -5), rc(id(10), id(1), 0, -5)]),
        (3, vec![tr(id(10), S::Scheduled, S::Ready, -4)]),
        (
            4,
            vec![Event::Prune {
                before: i64::MIN,
                at: i64::MIN,
            }],
        ),
    ];
    let mut p = Projection::new();
    for (seq, evs) in records.clone() {
        p.apply_owned(seq, evs).unwrap();
    }
    assert_eq!(p.latest_sequence(), 4);
    assert_eq!(p.run_count(), 1);
    // The same records are refused as new ones.
    let mut q = Projection::new();
    let (seq, evs) = &records[0];
    invalid(&q.check(*seq, evs).unwrap_err(), "TaskCreate.origin");
    invalid(&q.apply(*seq, evs).unwrap_err(), "TaskCreate.origin");
    invalid(
        &q.apply_tentative_owned(*seq, evs.clone()).unwrap_err(),
        "TaskCreate.origin",
    );
    assert_eq!(q.latest_sequence(), 0);
}

#[test]
fn recovery_opens_a_log_holding_negative_times() {
    use crate::recovery::{bootstrap, BootstrapOptions, WAL_DIR};
    use crate::wal::{Durability, WalOptions, WalWriter};
    let t = tempfile::tempdir().unwrap();
    {
        // Written straight to the log, as an older version's authority would have.
        let w = WalWriter::open(t.path().join(WAL_DIR), WalOptions::default()).unwrap();
        w.append(
            &[tc(spec(id(1)), -5), rc(id(10), id(1), 0, -5)],
            Durability::Immediate,
            None,
        )
        .unwrap();
        w.close().unwrap();
    }
    let (a, _) = bootstrap(t.path(), BootstrapOptions::default()).unwrap();
    assert_eq!(a.read(|p| p.run_count()).unwrap(), 1);
    // New submits are held to the rule.
    let e = a
        .submit(
            None,
            &[Event::EnginePause { at: -1 }],
            Durability::Immediate,
        )
        .unwrap_err();
    invalid(&e, "EnginePause.at");
    a.close().unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// For any time value: refused (unchanged state) exactly when negative, by both the dry run
    /// and apply, whichever field holds it.
    #[test]
    fn negative_iff_refused(v in any::<i64>(), which in 0u8..3) {
        let mut p = P::new();
        p.ok1(tc(spec(id(1)), 0));
        let ev = match which {
            0 => rc(id(10), id(1), 0, v),
            1 => Event::Prune { before: v, at: 0 },
            _ => Event::EnginePause { at: v },
        };
        let seq = p.0.next_sequence();
        let d = p.0.state_digest();
        let checked = p.0.check(seq, std::slice::from_ref(&ev));
        prop_assert_eq!(d, p.0.state_digest());
        prop_assert_eq!(checked.is_err(), v < 0);
        let applied = p.0.apply(seq, std::slice::from_ref(&ev));
        prop_assert_eq!(applied.is_err(), v < 0);
        if v < 0 {
            prop_assert!(matches!(applied, Err(CoreError::InvalidArgument(_))));
            prop_assert_eq!(d, p.0.state_digest());
        }
    }
}
