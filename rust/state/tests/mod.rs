//! Reducer tests: every rule, positive and negative, with "nothing changed" on rejection.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod atomic;
mod cold;
pub mod gen;
mod keys;
mod leases;
mod lifecycle;
mod perf;
mod props;
mod prune;
mod queries;
mod shapes;
mod times;

use crate::error::CoreError;
use crate::event::Event;
use crate::model::*;
use crate::state::Projection;

pub fn id(n: u64) -> Id {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&(n + 1).to_be_bytes());
    b[15] = 0x5a;
    b
}

pub fn spec(task: Id) -> TaskSpec {
    TaskSpec {
        id: task,
        payload: b"payload".to_vec(),
        content_type: None,
        dedupe_key: None,
        shape: std::sync::Arc::new(TaskShape {
            handler: Some("h".into()),
            policy: RunPolicy::default(),
            constraints: Constraints::default(),
            metadata: Metadata::default(),
        }),
    }
}

pub fn repeat(mut s: TaskSpec, count: u32) -> TaskSpec {
    s.shape_mut().policy.kind = PolicyKind::Repeat {
        count,
        interval_ms: 1000,
    };
    s
}

pub fn cron(mut s: TaskSpec, max: Option<u32>) -> TaskSpec {
    s.shape_mut().policy.kind = PolicyKind::Cron {
        expression: "* * * * *".into(),
        timezone: "UTC".into(),
        max_occurrences: max,
        window: 5,
    };
    s
}

pub fn tc(spec: TaskSpec, at: Millis) -> Event {
    Event::TaskCreate {
        spec: Box::new(spec),
        origin: at,
        at,
    }
}

pub fn rc(run: Id, task: Id, ordinal: u32, scheduled_at: Millis) -> Event {
    Event::RunCreate {
        run_id: run,
        task_id: task,
        ordinal,
        scheduled_at,
        at: scheduled_at,
    }
}

pub fn tr(run: Id, from: RunState, to: RunState, at: Millis) -> Event {
    Event::RunTransition {
        run_id: run,
        from,
        to,
        not_before: None,
        reason: None,
        at,
    }
}

pub fn tr_retry(run: Id, not_before: Millis, at: Millis) -> Event {
    Event::RunTransition {
        run_id: run,
        from: RunState::Running,
        to: RunState::RetryWait,
        not_before: Some(not_before),
        reason: None,
        at,
    }
}

pub fn start(run: Id, attempt: Id, at: Millis) -> Event {
    Event::AttemptStart {
        run_id: run,
        attempt_id: attempt,
        at,
    }
}

pub fn finish(run: Id, attempt: Id, outcome: AttemptOutcome, at: Millis) -> Event {
    Event::AttemptFinish {
        run_id: run,
        attempt_id: attempt,
        outcome,
        error: None,
        output: None,
        at,
    }
}

pub fn acquire(run: Id, owner: &str, expires_at: Millis, at: Millis) -> Event {
    Event::LeaseAcquire {
        run_id: run,
        owner: owner.into(),
        expires_at,
        at,
    }
}

pub fn heartbeat(run: Id, owner: &str, expires_at: Millis, at: Millis) -> Event {
    Event::LeaseHeartbeat {
        run_id: run,
        owner: owner.into(),
        expires_at,
        at,
    }
}

pub fn expire(run: Id, owner: &str, at: Millis) -> Event {
    Event::LeaseExpire {
        run_id: run,
        owner: owner.into(),
        at,
    }
}

pub fn release(run: Id, owner: &str, at: Millis) -> Event {
    Event::LeaseRelease {
        run_id: run,
        owner: owner.into(),
        at,
    }
}

pub fn cancel(task: Id, at: Millis) -> Event {
    Event::TaskCancel {
        task_id: task,
        reason: None,
        at,
    }
}

/// Ready -> Leased + lease + Leased -> Running + attempt: the dispatch batch.
pub fn dispatch(run: Id, attempt: Id, owner: &str, at: Millis, ttl: Millis) -> Vec<Event> {
    vec![
        tr(run, RunState::Ready, RunState::Leased, at),
        acquire(run, owner, at + ttl, at),
        tr(run, RunState::Leased, RunState::Running, at),
        start(run, attempt, at),
    ]
}

/// A projection under test: every call checks the indexes; rejections must change nothing.
pub struct P(pub Projection);

impl P {
    pub fn new() -> Self {
        P(Projection::new())
    }

    pub fn ok(&mut self, events: &[Event]) {
        let seq = self.0.next_sequence();
        let d = self.0.state_digest();
        self.0
            .check(seq, events)
            .unwrap_or_else(|e| panic!("check refused {events:?}: {e}"));
        assert_eq!(d, self.0.state_digest(), "check changed the state");
        self.0
            .apply(seq, events)
            .unwrap_or_else(|e| panic!("apply refused {events:?}: {e}"));
        self.0.debug_check_indexes().unwrap();
    }

    pub fn ok1(&mut self, e: Event) {
        self.ok(&[e]);
    }

    /// Applies and expects a refusal that leaves the projection exactly as it was.
    pub fn err(&mut self, events: &[Event]) -> CoreError {
        let seq = self.0.next_sequence();
        let d = self.0.state_digest();
        let checked = self.0.check(seq, events).expect_err("check accepted");
        assert_eq!(d, self.0.state_digest(), "check changed the state");
        let e = self.0.apply(seq, events).expect_err("apply accepted");
        assert_eq!(
            checked.to_string(),
            e.to_string(),
            "check and apply disagree"
        );
        assert_eq!(
            d,
            self.0.state_digest(),
            "a refused record changed the state"
        );
        assert_eq!(seq, self.0.next_sequence());
        self.0.debug_check_indexes().unwrap();
        e
    }

    pub fn err1(&mut self, e: Event) -> CoreError {
        self.err(&[e])
    }

    pub fn run(&self, r: Id) -> std::borrow::Cow<'_, crate::state::Run> {
        self.0.run(&r).unwrap()
    }

    pub fn state(&self, r: Id) -> RunState {
        self.run(r).state
    }

    /// Creates a task with one run and makes it Ready.
    pub fn ready_task(&mut self, s: TaskSpec, run: Id, at: Millis) {
        let t = s.id;
        self.ok(&[tc(s, at), rc(run, t, 0, at)]);
        self.ok1(tr(run, RunState::Scheduled, RunState::Ready, at));
    }
}

pub fn rejected(e: &CoreError, needle: &str) {
    match e {
        CoreError::Rejected(m) | CoreError::Lease(m) => {
            assert!(m.contains(needle), "{m:?} does not mention {needle:?}")
        }
        other => panic!("expected a rejection mentioning {needle:?}, got {other:?}"),
    }
}
