//! Index queries.

use super::*;
use crate::model::RunState as S;

#[test]
fn next_due_and_due_scheduled_in_time_then_creation_order() {
    let mut p = P::new();
    assert_eq!(p.0.next_due(), None);
    let t = id(1);
    p.ok(&[
        tc(repeat(spec(t), 4), 0),
        rc(id(10), t, 0, 300),
        rc(id(11), t, 1, 100),
        rc(id(12), t, 2, 100),
        rc(id(13), t, 3, 200),
    ]);
    assert_eq!(p.0.next_due(), Some(100));
    assert_eq!(p.0.due_scheduled(99).count(), 0);
    let due: Vec<_> = p.0.due_scheduled(200).collect();
    assert_eq!(due, [id(11), id(12), id(13)]);
    assert_eq!(p.0.due_scheduled(1000).take(2).count(), 2);
}

#[test]
fn ready_order_is_priority_then_schedule_then_creation() {
    let mut p = P::new();
    let mk = |n: u64, prio: i32| {
        let mut s = spec(id(n));
        s.shape_mut().metadata.priority = prio;
        s
    };
    p.ok(&[tc(mk(1, 0), 0), rc(id(10), id(1), 0, 50)]);
    p.ok(&[tc(mk(2, 5), 0), rc(id(20), id(2), 0, 90)]);
    p.ok(&[tc(mk(3, 0), 0), rc(id(30), id(3), 0, 10)]);
    p.ok(&[tc(mk(4, 0), 0), rc(id(40), id(4), 0, 50)]);
    for r in [10, 20, 30, 40] {
        p.ok1(tr(id(r), S::Scheduled, S::Ready, 100));
    }
    assert_eq!(
        p.0.ready().collect::<Vec<_>>(),
        [id(20), id(30), id(10), id(40)]
    );
    assert_eq!(p.0.ready().take(1).collect::<Vec<_>>(), [id(20)]);
}

/// Runs id(10)..=id(14) of one task, Scheduled at 0..=4.
fn five_scheduled() -> P {
    let mut p = P::new();
    let t = id(1);
    let mut batch = vec![tc(repeat(spec(t), 5), 0)];
    for k in 0..5u32 {
        batch.push(rc(id(10 + u64::from(k)), t, k, i64::from(k)));
    }
    p.ok(&batch);
    p
}

#[test]
fn runs_in_state_pages_with_a_cursor() {
    let p = five_scheduled();
    let first: Vec<_> = p.0.runs_in_state(S::Scheduled, None).take(2).collect();
    assert_eq!(
        first.iter().map(|k| k.id).collect::<Vec<_>>(),
        [id(10), id(11)]
    );
    let rest: Vec<_> =
        p.0.runs_in_state(S::Scheduled, first.last().copied())
            .map(|k| k.id)
            .collect();
    assert_eq!(rest, [id(12), id(13), id(14)]);
    assert_eq!(p.0.counts(), [5, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(p.0.terminal_count(), 0);
}

#[test]
fn a_cursor_round_trips_through_its_bytes_and_survives_its_run_leaving() {
    let mut p = five_scheduled();
    // Ready orders by negated priority: negative positions round-trip too.
    let odd = crate::state::Cursor {
        a: -5,
        b: i64::MIN,
        seq: u64::MAX,
        id: id(9),
    };
    assert_eq!(
        crate::state::Cursor::from_cursor_bytes(&odd.to_cursor_bytes()),
        Some(odd)
    );
    let first: Vec<_> = p.0.runs_in_state(S::Scheduled, None).take(2).collect();
    let bytes = first[1].to_cursor_bytes();
    let cursor = crate::state::Cursor::from_cursor_bytes(&bytes).unwrap();
    assert_eq!(cursor, first[1]);
    assert_eq!(crate::state::Cursor::from_cursor_bytes(&bytes[..39]), None);
    // The run the cursor was taken from leaves the state: the next page starts where the
    // first one ended all the same (a position, not a run).
    p.ok1(tr(id(11), S::Scheduled, S::Ready, 100));
    let rest: Vec<_> =
        p.0.runs_in_state(S::Scheduled, Some(cursor))
            .map(|k| k.id)
            .collect();
    assert_eq!(rest, [id(12), id(13), id(14)]);
}

#[test]
fn short_cron_windows_lists_live_cron_tasks_with_room_to_derive() {
    let mut p = P::new();
    // 1: a full window (5 runs); 2: one run short; 3: short but every run it may have exists;
    // 4: short but canceled; 5: a repeat (never listed); 6: short, created last.
    let full = id(1);
    let mut batch = vec![tc(cron(spec(full), None), 0)];
    for k in 0..5u32 {
        batch.push(rc(id(100 + u64::from(k)), full, k, 10));
    }
    p.ok(&batch);
    p.ok(&[tc(cron(spec(id(2)), None), 0), rc(id(200), id(2), 0, 10)]);
    p.ok(&[tc(cron(spec(id(3)), Some(1)), 0), rc(id(300), id(3), 0, 10)]);
    p.ok(&[tc(cron(spec(id(4)), None), 0), rc(id(400), id(4), 0, 10)]);
    p.ok1(cancel(id(4), 20));
    p.ok(&[tc(repeat(spec(id(5)), 2), 0), rc(id(500), id(5), 0, 10)]);
    p.ok(&[tc(cron(spec(id(6)), Some(3)), 0)]);
    assert_eq!(p.0.short_cron_windows(), [id(2), id(6)]);
    // A run leaving the full window makes it short (the engine refills in the same record).
    p.ok1(tr(id(100), S::Scheduled, S::Canceled, 30));
    assert_eq!(p.0.short_cron_windows(), [id(1), id(2), id(6)]);
}

/// Tasks 1..=6, one Scheduled run each (id(10 + n), due at n): even ones routed to "h" and
/// tagged "even", task 6 also tagged "six"; odd ones routed to "g".
fn tagged() -> P {
    let mut p = P::new();
    for n in 1..=6u64 {
        let mut s = spec(id(n));
        let shape = s.shape_mut();
        shape.handler = Some(if n % 2 == 0 { "h" } else { "g" }.into());
        if n % 2 == 0 {
            shape.metadata.tags.push("even".into());
        }
        if n == 6 {
            shape.metadata.tags.push("six".into());
        }
        p.ok(&[tc(s, 0), rc(id(10 + n), id(n), 0, n as i64)]);
    }
    p
}

fn filter(tag: Option<&str>, handler: Option<&str>) -> crate::state::RunFilter {
    crate::state::RunFilter {
        tag: tag.map(String::from),
        handler: handler.map(String::from),
    }
}

fn ids_of(keys: &[crate::state::Cursor]) -> Vec<Id> {
    keys.iter().map(|k| k.id).collect()
}

#[test]
fn runs_matching_keeps_the_runs_of_tasks_with_the_tag_and_handler() {
    let p = tagged();
    let all = |f| {
        p.0.runs_matching(S::Scheduled, None, &f, usize::MAX, usize::MAX)
    };
    let even = all(filter(Some("even"), None));
    assert_eq!(ids_of(&even.keys), [id(12), id(14), id(16)]);
    assert_eq!((even.next, even.scanned), (None, 6));
    assert_eq!(
        ids_of(&all(filter(None, Some("g"))).keys),
        [id(11), id(13), id(15)]
    );
    assert_eq!(ids_of(&all(filter(Some("six"), Some("h"))).keys), [id(16)]);
    assert!(all(filter(Some("six"), Some("g"))).keys.is_empty());
    assert!(all(filter(Some("nope"), None)).keys.is_empty());
    assert!(p
        .0
        .runs_matching(S::Ready, None, &filter(None, Some("h")), 9, 9)
        .keys
        .is_empty());
}

#[test]
fn runs_matching_stops_at_its_limit_or_scan_budget_and_goes_on_from_its_cursor() {
    let p = tagged();
    let f = filter(Some("even"), None);
    // The limit: two kept runs, the next page starts after the second.
    let a = p.0.runs_matching(S::Scheduled, None, &f, 2, usize::MAX);
    assert_eq!(ids_of(&a.keys), [id(12), id(14)]);
    assert_eq!(a.scanned, 4);
    assert_eq!(a.next.map(|k| k.id), Some(id(14)));
    let b = p.0.runs_matching(S::Scheduled, a.next, &f, 2, usize::MAX);
    assert_eq!(ids_of(&b.keys), [id(16)]);
    assert_eq!(b.next, None);
    // The budget: each page examines at most 1 entry; paging finds the same runs.
    let mut found = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = p.0.runs_matching(S::Scheduled, cursor, &f, 10, 1);
        assert!(page.scanned <= 1);
        found.extend(ids_of(&page.keys));
        pages += 1;
        match page.next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(found, [id(12), id(14), id(16)]);
    // One entry each; the last one finds the end.
    assert_eq!(pages, 6);
    // A zero limit examines nothing.
    let z = p.0.runs_matching(S::Scheduled, None, &f, 0, usize::MAX);
    assert_eq!((z.keys.len(), z.next, z.scanned), (0, None, 0));
}

#[test]
fn live_runs_of_task_lists_its_non_terminal_runs_in_ordinal_order() {
    let mut p = five_scheduled();
    p.ok1(tr(id(11), S::Scheduled, S::Canceled, 5));
    p.ok1(tr(id(13), S::Scheduled, S::Ready, 5));
    assert_eq!(
        p.0.live_runs_of_task(&id(1)),
        [id(10), id(12), id(13), id(14)]
    );
    assert!(p.0.live_runs_of_task(&id(99)).is_empty());
    p.ok1(cancel(id(1), 6));
    assert!(p.0.live_runs_of_task(&id(1)).is_empty());
}
