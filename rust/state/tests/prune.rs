//! Retention.

use super::*;
use crate::model::AttemptOutcome as O;
use crate::model::RunState as S;

#[test]
fn prune_drops_old_terminal_runs_and_finished_empty_tasks() {
    let mut p = P::new();
    // Task 1: Repeat(2), run 10 completes at 5, run 11 pending: the task stays.
    let t = id(1);
    p.ok(&[
        tc(repeat(spec(t), 2), 0),
        rc(id(10), t, 0, 0),
        rc(id(11), t, 1, 0),
    ]);
    p.ok1(tr(id(10), S::Scheduled, S::Ready, 1));
    p.ok(&dispatch(id(10), id(12), "w", 1, 100));
    p.ok(&[
        finish(id(10), id(12), O::Success, 5),
        tr(id(10), S::Running, S::Completed, 5),
    ]);
    // Task 2: canceled at 6 with no runs at all.
    p.ok1(tc(spec(id(2)), 0));
    p.ok1(cancel(id(2), 6));
    // Task 3: Once, its run failed at 20 (finished, but too recent).
    p.ok(&[tc(spec(id(3)), 0), rc(id(30), id(3), 0, 0)]);
    p.ok1(tr(id(30), S::Scheduled, S::Canceled, 20));
    // Task 4: unbounded cron, old canceled run: the task stays (live), and so does the run,
    // its newest: its next occurrences are derived after it.
    p.ok(&[tc(cron(spec(id(4)), None), 0), rc(id(40), id(4), 0, 0)]);
    p.ok1(tr(id(40), S::Scheduled, S::Canceled, 2));

    p.ok1(Event::Prune { before: 10, at: 30 });
    assert!(p.0.run(&id(10)).is_none());
    assert!(p.0.run(&id(40)).is_some());
    assert!(p.0.run(&id(11)).is_some() && p.0.run(&id(30)).is_some());
    assert!(p.0.task(&t).is_some());
    assert_eq!(&*p.0.runs_for_task(&t).unwrap(), &[id(11)]);
    assert!(p.0.task(&id(2)).is_none());
    assert!(p.0.task(&id(3)).is_some());
    assert!(p.0.task(&id(4)).is_some());
    // Accounting survives pruning: the cron task's next run is ordinal 1.
    rejected(&p.err1(rc(id(41), id(4), 0, 40)), "ordinal 0");
    p.ok1(rc(id(41), id(4), 1, 40));
    p.ok1(Event::Prune { before: 21, at: 40 });
    assert!(p.0.task(&id(3)).is_none() && p.0.run(&id(30)).is_none());
    assert!(p.0.run(&id(40)).is_none()); // no longer the newest: run 41 is
    assert_eq!(p.0.count(S::Canceled), 0);
    // A pruned task's id may be used again.
    p.ok1(tc(spec(id(3)), 50));
}

#[test]
fn prune_keeps_the_newest_run_of_a_live_cron_task_only() {
    let mut p = P::new();
    let prune = |p: &mut P, at: Millis| p.ok1(Event::Prune { before: at, at });
    // Cron task 1 (live): runs 10, 11, 12 by ordinal; the newest ends first, the others later.
    let t = id(1);
    p.ok(&[
        tc(cron(spec(t), None), 0),
        rc(id(10), t, 0, 0),
        rc(id(11), t, 1, 0),
        rc(id(12), t, 2, 0),
    ]);
    p.ok1(tr(id(12), S::Scheduled, S::Canceled, 1));
    p.ok1(tr(id(10), S::Scheduled, S::Canceled, 2));
    prune(&mut p, 10);
    assert!(p.0.run(&id(10)).is_none());
    // Run 12 stays: the schedule continues after it.
    assert_eq!(&*p.0.runs_for_task(&t).unwrap(), &[id(11), id(12)]);
    prune(&mut p, 20); // still the newest: still kept
    assert!(p.0.run(&id(12)).is_some());
    // Once the task is canceled (finished), the run goes with it.
    p.ok1(cancel(t, 30));
    prune(&mut p, 40);
    assert!(p.0.task(&t).is_none() && p.0.run(&id(12)).is_none());

    // Cron task 2 with max_occurrences = 1: finished once its only run is: pruned with it.
    let t2 = id(2);
    p.ok(&[tc(cron(spec(t2), Some(1)), 50), rc(id(20), t2, 0, 50)]);
    p.ok1(tr(id(20), S::Scheduled, S::Canceled, 60));
    prune(&mut p, 70);
    assert!(p.0.task(&t2).is_none() && p.0.run(&id(20)).is_none());

    // A Repeat task derives nothing later: its newest run is pruned like any other.
    let t3 = id(3);
    p.ok(&[
        tc(repeat(spec(t3), 2), 80),
        rc(id(30), t3, 0, 80),
        rc(id(31), t3, 1, 80),
    ]);
    p.ok1(tr(id(31), S::Scheduled, S::Canceled, 90));
    prune(&mut p, 100);
    assert!(p.0.run(&id(31)).is_none() && p.0.run(&id(30)).is_some());
    assert_eq!(p.0.count(S::Canceled), 0);
}
