//! A generator of random, mostly valid histories: interprets proptest-chosen numbers against
//! the current projection (so most commands make sense) with a share of deliberately wrong
//! ones. Every record is checked (dry run == apply), rejections must change nothing, and the
//! indexes are compared with a full scan after every step.

use super::*;
use crate::model::AttemptOutcome as O;
use crate::model::RunState as S;

pub type Choice = (u8, u16, u16);

pub struct Driver {
    pub p: Projection,
    pub now: Millis,
    /// Accepted records: (first sequence, events).
    pub records: Vec<(u64, Vec<Event>)>,
    pub rejected: usize,
    next: u64,
}

impl Default for Driver {
    fn default() -> Self {
        Self::new()
    }
}

impl Driver {
    pub fn new() -> Self {
        Driver {
            p: Projection::new(),
            now: 1_000,
            records: Vec::new(),
            rejected: 0,
            next: 1_000,
        }
    }

    fn fresh(&mut self) -> Id {
        self.next += 1;
        id(self.next)
    }

    fn pick(&self, s: S, a: u16) -> Option<Id> {
        let n = self.p.count(s);
        if n == 0 {
            return None;
        }
        self.p
            .runs_in_state(s, None)
            .nth(usize::from(a) % n)
            .map(|k| k.id)
    }

    fn task_ids(&self) -> Vec<Id> {
        let mut v: Vec<_> = self.p.tasks().map(|t| (t.created_seq, t.id())).collect();
        v.sort_unstable();
        v.into_iter().map(|x| x.1).collect()
    }

    fn all_runs(&self) -> Vec<Id> {
        RunState::ALL
            .iter()
            .flat_map(|s| self.p.runs_in_state(*s, None).map(|k| k.id))
            .collect()
    }

    pub fn step(&mut self, c: Choice) {
        self.now += i64::from(c.2 % 50);
        let batch = self.make(c);
        if batch.is_empty() {
            return;
        }
        let seq = self.p.next_sequence();
        let before = self.p.state_digest();
        let checked = self.p.check(seq, &batch);
        assert_eq!(before, self.p.state_digest(), "check changed the state");
        let applied = self.p.apply(seq, &batch);
        assert_eq!(
            checked.as_ref().map_err(ToString::to_string),
            applied.as_ref().map_err(ToString::to_string),
            "check and apply disagree on {batch:?}"
        );
        match applied {
            Ok(()) => self.records.push((seq, batch)),
            Err(_) => {
                assert_eq!(
                    before,
                    self.p.state_digest(),
                    "refused {batch:?} changed state"
                );
                self.rejected += 1;
            }
        }
        if let Err(e) = self.p.debug_check_indexes() {
            panic!("indexes inconsistent after {:?}: {e}", self.records.last());
        }
    }

    fn make(&mut self, (op, a, b): Choice) -> Vec<Event> {
        let now = self.now;
        match op % 16 {
            0 | 1 => {
                let t = self.fresh();
                let mut s = spec(t);
                s = match a % 4 {
                    0 => s,
                    1 => repeat(s, 1 + u32::from(b % 3)),
                    2 => cron(s, None),
                    _ => cron(s, Some(2)),
                };
                s.shape_mut().constraints.concurrency_key =
                    [None, Some("k0"), Some("k1")][usize::from(a / 4 % 3)].map(String::from);
                s.shape_mut().constraints.hold = if b % 2 == 0 {
                    HoldPolicy::HoldDuringRetry
                } else {
                    HoldPolicy::ReleaseOnRetry
                };
                s.shape_mut().constraints.max_attempts = 1 + u32::from(a / 12 % 3);
                s.dedupe_key = (b % 5 == 0).then(|| "d0".to_string());
                s.shape_mut().metadata.priority = i32::from(b % 3) - 1;
                let n = match s.shape.policy.total_runs() {
                    Some(n) => n.min(3) as u32,
                    None => 1,
                };
                let mut v = vec![tc(s, now)];
                for k in 0..n {
                    let r = self.fresh();
                    v.push(rc(r, t, k, now + i64::from(k) * 10));
                }
                v
            }
            2 => {
                let ids = self.task_ids();
                let Some(t) = ids.get(usize::from(a) % ids.len().max(1)).copied() else {
                    return vec![];
                };
                let ord = self.p.task(&t).map_or(0, |t| t.runs_created);
                let r = self.fresh();
                vec![rc(r, t, ord, now + i64::from(b % 20))]
            }
            3 => {
                let mut due: Vec<Id> = self
                    .p
                    .due_scheduled(now)
                    .take(1 + usize::from(a % 3))
                    .collect();
                if due.is_empty() {
                    due.extend(self.pick(S::Scheduled, a));
                }
                due.into_iter()
                    .map(|r| tr(r, S::Scheduled, S::Ready, now))
                    .collect()
            }
            4 | 5 => {
                let mut runs: Vec<Id> = self.p.ready().take(1 + usize::from(a % 2)).collect();
                if b % 7 == 0 {
                    runs = self.pick(S::Ready, a).into_iter().collect();
                }
                let mut v = Vec::new();
                for r in runs {
                    let att = self.fresh();
                    v.extend(dispatch(r, att, "w", now, 1 + i64::from(b % 100)));
                }
                v
            }
            6 | 7 => {
                let Some(r) = self.pick(S::Running, a) else {
                    return vec![];
                };
                let run = self.p.run(&r).map(|r| r.into_owned());
                let Some(run) = run else { return vec![] };
                let Some(att) = run.current_attempt else {
                    return vec![];
                };
                let max = self
                    .p
                    .task(&run.task_id)
                    .map_or(1, |t| t.spec.shape.constraints.max_attempts);
                let outcome = [
                    O::Success,
                    O::RetryableFailure,
                    O::TerminalFailure,
                    O::Timeout,
                    O::Suspended,
                    O::Lost,
                ][usize::from(a % 6)];
                let count = if outcome.counts_toward_cap() {
                    run.attempt_count
                } else {
                    run.attempt_count - 1
                };
                let mut v = vec![finish(r, att, outcome, now)];
                v.push(match outcome {
                    O::Success => tr(r, S::Running, S::Completed, now),
                    O::TerminalFailure => tr(r, S::Running, S::Failed, now),
                    O::Suspended => tr(r, S::Running, S::Suspended, now),
                    _ if count < max || b % 11 == 0 => tr_retry(r, now + i64::from(b % 30), now),
                    _ => tr(r, S::Running, S::Failed, now),
                });
                v
            }
            8 => {
                let expired: Vec<Id> = self.p.expired_leases(now).take(2).collect();
                let mut v = Vec::new();
                for r in expired {
                    let Some(run) = self.p.run(&r).map(|r| r.into_owned()) else {
                        continue;
                    };
                    if let Some(l) = &run.lease {
                        v.push(expire(r, &l.owner, now));
                    }
                    if run.state == S::Leased {
                        v.push(tr(r, S::Leased, S::Ready, now));
                        continue;
                    }
                    let mut count = run.attempt_count;
                    if let Some(att) = run.current_attempt {
                        v.push(finish(r, att, O::Lost, now));
                    } else {
                        count = count.max(1);
                    }
                    let max = self
                        .p
                        .task(&run.task_id)
                        .map_or(1, |t| t.spec.shape.constraints.max_attempts);
                    v.push(if count < max {
                        tr_retry(r, now + 5, now)
                    } else {
                        tr(r, S::Running, S::Failed, now)
                    });
                }
                v
            }
            9 => {
                let mut due: Vec<Id> = self.p.due_retries(now).take(2).collect();
                let mut v: Vec<Event> = due
                    .drain(..)
                    .map(|r| tr(r, S::RetryWait, S::Ready, now))
                    .collect();
                if let Some(r) = self.pick(S::Suspended, a) {
                    v.push(tr(r, S::Suspended, S::Ready, now));
                }
                v
            }
            10 => {
                let ids = self.task_ids();
                ids.get(usize::from(a) % ids.len().max(1))
                    .map(|t| cancel(*t, now))
                    .into_iter()
                    .collect()
            }
            11 => {
                let pause = self.p.is_paused() == (b % 3 == 0);
                vec![if pause {
                    Event::EnginePause { at: now }
                } else {
                    Event::EngineResume { at: now }
                }]
            }
            12 => {
                let r = self.pick(S::Running, a).or_else(|| self.pick(S::Leased, a));
                let Some(r) = r else { return vec![] };
                let owner = if b % 5 == 0 { "other" } else { "w" };
                vec![heartbeat(r, owner, now + i64::from(b % 100), now)]
            }
            13 => vec![Event::Prune {
                before: now - i64::from(b % 200),
                at: now,
            }],
            _ => {
                let runs = self.all_runs();
                let Some(r) = runs.get(usize::from(a) % runs.len().max(1)).copied() else {
                    return vec![];
                };
                let from = RunState::ALL[usize::from(a % 9)];
                let to = RunState::ALL[usize::from(b % 9)];
                let nb = (to == S::RetryWait).then_some(now + 1);
                let att = self.fresh();
                match b % 5 {
                    0 => vec![start(r, att, now)],
                    1 => vec![acquire(r, "w", now + 10, now)],
                    2 => vec![release(r, "w", now)],
                    3 => {
                        let cur = self.p.run(&r).map_or(S::Scheduled, |r| r.state);
                        vec![tr(r, cur, S::Canceled, now)]
                    }
                    _ => vec![Event::RunTransition {
                        run_id: r,
                        from,
                        to,
                        not_before: nb,
                        reason: Some("fuzz".into()),
                        at: now,
                    }],
                }
            }
        }
    }
}

/// Replays records into a fresh projection.
pub fn replay(records: &[(u64, Vec<Event>)]) -> Projection {
    let mut p = Projection::new();
    for (seq, events) in records {
        p.apply(*seq, events)
            .unwrap_or_else(|e| panic!("replay refused record {seq}: {e}"));
    }
    p
}
