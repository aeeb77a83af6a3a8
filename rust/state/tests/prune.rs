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
    // Task 4: unbounded cron, old canceled run: the run goes, the task stays (live).
    p.ok(&[tc(cron(spec(id(4)), None), 0), rc(id(40), id(4), 0, 0)]);
    p.ok1(tr(id(40), S::Scheduled, S::Canceled, 2));

    p.ok1(Event::Prune { before: 10, at: 30 });
    assert!(p.0.run(&id(10)).is_none());
    assert!(p.0.run(&id(40)).is_none());
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
    assert_eq!(p.0.count(S::Canceled), 0);
    // A pruned task's id may be used again.
    p.ok1(tc(spec(id(3)), 50));
}
