//! Lease rules: acquire, heartbeat (owner only, never shortens), expiry boundary, release.

use super::*;
use crate::model::AttemptOutcome as O;
use crate::model::RunState as S;

fn leased(p: &mut P, run: Id, at: Millis) {
    p.ok1(tr(run, S::Ready, S::Leased, at));
}

#[test]
fn acquire_rules() {
    let mut p = P::new();
    p.ready_task(spec(id(1)), id(10), 0);
    let e = p.err1(acquire(id(10), "w", 10, 1));
    assert_eq!(e.python_class(), "LeaseError");
    rejected(&e, "only in Leased");
    leased(&mut p, id(10), 1);
    rejected(&p.err1(acquire(id(10), "w", 1, 1)), "must be after");
    rejected(&p.err1(acquire(id(10), "", 10, 1)), "empty");
    p.ok1(acquire(id(10), "w", 10, 1));
    rejected(
        &p.err1(acquire(id(10), "x", 20, 2)),
        "already leased by \"w\"",
    );
    // Running needs a live lease.
    p.ok1(release(id(10), "w", 2));
    rejected(&p.err1(tr(id(10), S::Leased, S::Running, 2)), "no lease");
    p.ok1(acquire(id(10), "w", 10, 2));
    rejected(
        &p.err1(tr(id(10), S::Leased, S::Running, 10)),
        "expired at 10",
    );
    p.ok1(tr(id(10), S::Leased, S::Running, 9));
}

#[test]
fn heartbeat_extends_never_shortens_owner_only_while_live() {
    let mut p = P::new();
    p.ready_task(spec(id(1)), id(10), 0);
    leased(&mut p, id(10), 1);
    p.ok1(acquire(id(10), "w", 100, 1));
    rejected(
        &p.err1(heartbeat(id(10), "x", 200, 2)),
        "held by \"w\", not \"x\"",
    );
    p.ok1(heartbeat(id(10), "w", 50, 2));
    assert_eq!(p.run(id(10)).lease.as_ref().unwrap().expires_at, 100);
    p.ok1(heartbeat(id(10), "w", 150, 99));
    assert_eq!(p.run(id(10)).lease.as_ref().unwrap().expires_at, 150);
    assert_eq!(p.0.next_lease_expiry(), Some(150));
    rejected(&p.err1(heartbeat(id(10), "w", 300, 150)), "expired at 150");
}

#[test]
fn expiry_boundary_is_at_expires_at() {
    let mut p = P::new();
    p.ready_task(spec(id(1)), id(10), 0);
    leased(&mut p, id(10), 1);
    p.ok1(acquire(id(10), "w", 100, 1));
    assert_eq!(p.0.expired_leases(99).count(), 0);
    assert_eq!(p.0.expired_leases(100).collect::<Vec<_>>(), [id(10)]);
    rejected(&p.err1(expire(id(10), "w", 99)), "not yet at 99");
    rejected(&p.err1(expire(id(10), "x", 100)), "not \"x\"");
    // Expire removes the lease only; the state moves by an explicit, recorded transition.
    p.ok(&[
        expire(id(10), "w", 100),
        Event::RunTransition {
            run_id: id(10),
            from: S::Leased,
            to: S::Ready,
            not_before: None,
            reason: Some("lease expired".into()),
            at: 100,
        },
    ]);
    let r = p.run(id(10));
    assert_eq!(r.state, S::Ready);
    assert!(r.lease.is_none());
    assert_eq!(
        r.history.last().unwrap().reason.as_deref(),
        Some("lease expired")
    );
    rejected(&p.err1(release(id(10), "w", 101)), "holds no lease");
}

#[test]
fn runs_without_a_lease_sort_first_in_the_expiry_index() {
    let mut p = P::new();
    p.ready_task(spec(id(1)), id(10), 0);
    p.ready_task(spec(id(2)), id(20), 0);
    p.ok(&dispatch(id(10), id(11), "w", 1, 100));
    p.ok(&dispatch(id(20), id(21), "w", 1, 500));
    p.ok1(expire(id(20), "w", 600));
    // 20 has no lease now: it is "expired" at any time and sorts before 10.
    assert_eq!(p.0.expired_leases(0).collect::<Vec<_>>(), [id(20)]);
    assert_eq!(p.0.expired_leases(100).collect::<Vec<_>>(), [id(20)]);
    assert_eq!(
        p.0.expired_leases(101).collect::<Vec<_>>(),
        [id(20), id(10)]
    );
    assert_eq!(p.0.next_lease_expiry(), Some(i64::MIN));
    // The sweep: open attempt finished as Lost, then the retry decision (cap 1: Failed).
    rejected(
        &p.err(&[
            finish(id(20), id(21), O::Lost, 601),
            start(id(20), id(22), 601),
        ]),
        "no live lease",
    );
    p.ok(&[
        finish(id(20), id(21), O::Lost, 601),
        tr(id(20), S::Running, S::Failed, 601),
    ]);
    assert_eq!(p.0.expired_leases(100).count(), 0);
    assert_eq!(p.0.next_lease_expiry(), Some(101));
}

#[test]
fn leaving_leased_or_running_drops_the_lease() {
    let mut p = P::new();
    p.ready_task(spec(id(1)), id(10), 0);
    leased(&mut p, id(10), 1);
    p.ok1(acquire(id(10), "w", 100, 1));
    p.ok1(tr(id(10), S::Leased, S::Ready, 2));
    assert!(p.run(id(10)).lease.is_none());
    assert_eq!(p.0.count(S::Leased), 0);
    p.ok(&dispatch(id(10), id(11), "w", 3, 100));
    p.ok(&[
        finish(id(10), id(11), O::Success, 4),
        tr(id(10), S::Running, S::Completed, 4),
    ]);
    assert!(p.run(id(10)).lease.is_none());
    assert_eq!(p.0.next_lease_expiry(), None);
}
