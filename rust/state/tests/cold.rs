//! The cold store (terminal runs and finished tasks kept encoded) must be invisible: a
//! projection that froze records (at snapshot capture) or was loaded from a snapshot answers
//! every query exactly like one built by replaying the same records with everything hot.

use proptest::prelude::*;

use super::gen::{replay, Driver};
use crate::model::RunState;
use crate::state::Projection;

/// Every query, compared over every id either projection knows.
fn same_answers(a: &Projection, b: &Projection) -> Result<(), TestCaseError> {
    prop_assert_eq!(a.state_digest(), b.state_digest());
    prop_assert_eq!(a.counts(), b.counts());
    prop_assert_eq!(a.task_count(), b.task_count());
    prop_assert_eq!(a.run_count(), b.run_count());
    prop_assert_eq!(a.next_due(), b.next_due());
    prop_assert_eq!(a.next_lease_expiry(), b.next_lease_expiry());
    prop_assert_eq!(a.is_paused(), b.is_paused());
    prop_assert_eq!(a.ready().collect::<Vec<_>>(), b.ready().collect::<Vec<_>>());
    for t in [i64::MIN, 0, 1_000, 50_000, i64::MAX] {
        prop_assert_eq!(
            a.due_scheduled(t).collect::<Vec<_>>(),
            b.due_scheduled(t).collect::<Vec<_>>()
        );
        prop_assert_eq!(
            a.due_retries(t).collect::<Vec<_>>(),
            b.due_retries(t).collect::<Vec<_>>()
        );
        prop_assert_eq!(
            a.expired_leases(t).collect::<Vec<_>>(),
            b.expired_leases(t).collect::<Vec<_>>()
        );
    }
    for keep in 0..4 {
        prop_assert_eq!(a.prune_cutoff_keeping(keep), b.prune_cutoff_keeping(keep));
    }
    let filters = [Some("h"), Some("other")].map(|h| crate::state::RunFilter {
        tag: None,
        handler: h.map(String::from),
    });
    for state in RunState::ALL {
        let la: Vec<_> = a.runs_in_state(state, None).collect();
        prop_assert_eq!(&la, &b.runs_in_state(state, None).collect::<Vec<_>>());
        for f in &filters {
            prop_assert_eq!(
                a.runs_matching(state, None, f, usize::MAX, 2),
                b.runs_matching(state, None, f, usize::MAX, 2)
            );
        }
        for k in &la {
            prop_assert_eq!(a.cursor_for(&k.id, state), b.cursor_for(&k.id, state));
        }
    }
    for t in a.tasks() {
        let id = t.id();
        let bt = b.task(&id);
        prop_assert_eq!(Some(&*t), bt.as_deref());
        prop_assert_eq!(a.runs_for_task(&id), b.runs_for_task(&id));
        for r in a.runs_for_task(&id).unwrap_or_default().iter() {
            prop_assert_eq!(a.run(r), b.run(r));
        }
        if let Some(k) = t.spec.shape.constraints.concurrency_key.as_deref() {
            prop_assert_eq!(a.key_holder(k), b.key_holder(k));
        }
        if let Some(k) = t.spec.dedupe_key.as_deref() {
            prop_assert_eq!(a.task_by_dedupe_key(k), b.task_by_dedupe_key(k));
        }
    }
    prop_assert!(a.all_runs().all(|r| b.run(&r.id).as_deref() == Some(&*r)));
    prop_assert!(
        b.debug_check_indexes().is_ok(),
        "{:?}",
        b.debug_check_indexes()
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Freeze in place at two points (as snapshot captures do) while replaying; load a
    /// snapshot at another: every query agrees with the all-hot replay, after every phase.
    #[test]
    fn frozen_and_loaded_projections_answer_like_replay(
        choices in prop::collection::vec(any::<(u8, u16, u16)>(), 1..200),
        cuts in any::<(prop::sample::Index, prop::sample::Index, prop::sample::Index)>(),
    ) {
        let mut d = Driver::new();
        for c in choices {
            d.step(c);
        }
        let n = d.records.len();
        let (i, j, k) = (cuts.0.index(n + 1), cuts.1.index(n + 1), cuts.2.index(n + 1));
        let hot = replay(&d.records);
        // In place: freeze at i and j while applying.
        let mut frozen = Projection::new();
        for (at, (seq, events)) in d.records.iter().enumerate() {
            if at == i || at == j {
                crate::snapshot::encode(&mut frozen).unwrap();
            }
            frozen.apply(*seq, events).unwrap();
        }
        same_answers(&hot, &frozen)?;
        // Frozen in small batches as records finish (the authority's projection), turned on
        // at i; snapshots at j.
        let mut auto = Projection::new();
        auto.set_freeze_batch(1 + i % 4);
        for (at, (seq, events)) in d.records.iter().enumerate() {
            if at == i {
                auto.set_auto_freeze(true).unwrap();
            }
            if at == j {
                crate::snapshot::encode(&mut auto).unwrap();
            }
            auto.apply(*seq, events).unwrap();
        }
        same_answers(&hot, &auto)?;
        // Loaded from a snapshot at k (itself taken from a projection frozen at i), then tail.
        let mut head = Projection::new();
        for (at, (seq, events)) in d.records[..k].iter().enumerate() {
            if at == i {
                crate::snapshot::encode(&mut head).unwrap();
            }
            head.apply(*seq, events).unwrap();
        }
        let bytes = crate::snapshot::encode(&mut head).unwrap();
        let mut loaded = crate::snapshot::decode(&bytes, u64::MAX).unwrap();
        same_answers(&head, &loaded)?;
        // The same snapshot in format 2 (no lookup tables) loads to the same answers.
        let v2 = crate::snapshot::decode(&crate::snapshot::to_version2(&bytes), u64::MAX).unwrap();
        same_answers(&head, &v2)?;
        if k % 2 == 0 {
            // Tail replayed as recovery does: freezing in batches on top of the tables.
            loaded.set_freeze_batch(1 + k % 3);
            loaded.set_auto_freeze(true).unwrap();
        }
        for (seq, events) in &d.records[k..] {
            loaded.apply(*seq, events).unwrap();
        }
        same_answers(&hot, &loaded)?;
        // And a snapshot of the loaded one (cold records copied from a loaded segment).
        let again = crate::snapshot::decode(&crate::snapshot::encode(&mut loaded).unwrap(), u64::MAX)
            .unwrap();
        same_answers(&hot, &again)?;
    }
}

/// A cold run named by an event is thawed and refused exactly like a hot terminal run; a
/// cold task can still be canceled; prune removes cold records.
#[test]
fn events_naming_cold_records() {
    use super::*;
    use crate::model::RunState as S;
    let mut p = P::new();
    let t = id(1);
    p.ok(&[tc(spec(t), 0), rc(id(10), t, 0, 0)]);
    p.ok1(tr(id(10), S::Scheduled, S::Canceled, 5));
    let mut hot = P::new();
    hot.ok(&[tc(spec(t), 0), rc(id(10), t, 0, 0)]);
    hot.ok1(tr(id(10), S::Scheduled, S::Canceled, 5));
    crate::snapshot::encode(&mut p.0).unwrap();
    assert_eq!(p.0.cold.run_count(), 1);
    assert_eq!(p.0.cold.task_count(), 1);
    let e1 = format!("{:?}", p.err1(tr(id(10), S::Canceled, S::Ready, 6)));
    let e2 = format!("{:?}", hot.err1(tr(id(10), S::Canceled, S::Ready, 6)));
    assert_eq!(e1, e2);
    let e1 = format!("{:?}", p.err1(tc(spec(t), 7)));
    let e2 = format!("{:?}", hot.err1(tc(spec(t), 7)));
    assert_eq!(e1, e2);
    p.ok1(cancel(t, 8));
    hot.ok1(cancel(t, 8));
    assert_eq!(p.0.state_digest(), hot.0.state_digest());
    crate::snapshot::encode(&mut p.0).unwrap();
    p.ok1(Event::Prune {
        before: 100,
        at: 100,
    });
    hot.ok1(Event::Prune {
        before: 100,
        at: 100,
    });
    assert_eq!(p.0.run_count(), 0);
    assert_eq!(p.0.task_count(), 0);
    assert_eq!(p.0.state_digest(), hot.0.state_digest());
    assert!(p.0.debug_check_indexes().is_ok());
}

/// A segment whose records are all gone (pruned, thawed) gives its slot back to the next
/// segment. The slots were never reused: a queue that freezes and prunes in cycles kept a slot
/// (~130 bytes) per segment it ever made, one per 1,024 finished records however little was
/// live, and every snapshot copied them all. Records still live in other slots (one cycle is
/// kept) answer like an all-hot replay throughout, and a snapshot (its loaded, tabled section
/// pruned in turn) too.
#[test]
fn pruned_segments_give_their_slots_back() {
    use super::*;
    use crate::model::RunState as S;
    let mut p = P::new();
    let mut hot = P::new();
    p.0.set_freeze_batch(4);
    p.0.set_auto_freeze(true).unwrap();
    let mut n = 0u64;
    let mut most = 0;
    let mut live: Vec<Id> = Vec::new();
    for cycle in 0..60i64 {
        let at = 1_000 + cycle * 100;
        if cycle == 30 {
            // Reload from a snapshot: its section becomes a tabled slot, pruned like the others.
            let bytes = crate::snapshot::encode(&mut p.0).unwrap();
            p.0 = crate::snapshot::decode(&bytes, u64::MAX).unwrap();
            p.0.set_freeze_batch(4);
            p.0.set_auto_freeze(true).unwrap();
        }
        let mut now = Vec::new();
        for _ in 0..6 {
            let (t, r) = (id(n), id(n + 1));
            n += 2;
            for q in [&mut p, &mut hot] {
                q.ok(&[tc(spec(t), at), rc(r, t, 0, at)]);
                q.ok1(tr(r, S::Scheduled, S::Canceled, at + 1));
            }
            now.push(r);
        }
        // Keep the previous cycle's records: older ones go.
        for q in [&mut p, &mut hot] {
            q.ok1(Event::Prune {
                before: at - 150,
                at: at + 2,
            });
        }
        for r in &live {
            assert_eq!(p.0.run(r), hot.0.run(r));
        }
        live = now;
        assert_eq!(p.0.state_digest(), hot.0.state_digest());
        most = most.max(p.0.cold.slot_count());
    }
    assert_eq!(p.0.run_count(), 12);
    assert!(most <= 24, "{most} cold slots for 2 cycles of live records");
    let again =
        crate::snapshot::decode(&crate::snapshot::encode(&mut p.0).unwrap(), u64::MAX).unwrap();
    assert_eq!(again.state_digest(), hot.0.state_digest());
}

/// The hand-written head parser reads the same fields postcard does, for every run shape the
/// generator makes (and refuses every truncation of the head).
#[test]
fn run_head_agrees_with_postcard() {
    let mut d = Driver::new();
    let mut x: u64 = 5;
    for _ in 0..400 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        d.step(((x >> 33) as u8, (x >> 41) as u16, (x >> 20) as u16));
    }
    let mut n = 0;
    for r in d.p.all_runs() {
        let body = postcard::to_allocvec(&*r).unwrap();
        let h = crate::state::cold::run_head(&body).unwrap();
        assert_eq!(
            (
                h.id,
                h.task_id,
                h.state,
                h.ordinal,
                h.scheduled_at,
                h.created_at
            ),
            (
                r.id,
                r.task_id,
                r.state,
                r.ordinal,
                r.scheduled_at,
                r.created_at
            )
        );
        assert_eq!(
            (h.created_seq, h.attempt_count, h.current_attempt),
            (r.created_seq, r.attempt_count, r.current_attempt)
        );
        assert_eq!(
            (h.effective_priority, h.last_state_change_at),
            (r.effective_priority, r.last_state_change_at)
        );
        for cut in 0..33 {
            assert!(crate::state::cold::run_head(&body[..cut]).is_none());
        }
        n += 1;
    }
    assert!(n > 20);
}
