//! The records the projection holds: tasks, runs, leases, history entries, attempts.
//!
//! Fields without `#[serde(skip)]` are persisted in snapshots and covered by the state digest
//! (their serde order is the snapshot body order: append only, bump the snapshot version
//! otherwise). Skipped fields are derived and rebuilt on load.

use serde::{Deserialize, Serialize};

use crate::model::{AttemptOutcome, Id, Millis, RunState, TaskSpec};

/// A task as the reducer knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub spec: Box<TaskSpec>,
    /// Resolved schedule origin the runs derive from.
    pub origin: Millis,
    pub created_at: Millis,
    /// Sequence of the TaskCreate event.
    pub created_seq: u64,
    pub canceled_at: Option<Millis>,
    pub cancel_reason: Option<String>,
    /// Runs ever created for the task (pruned ones included): the next ordinal.
    pub runs_created: u32,
    /// When the task became finished (canceled, or all runs derived and terminal).
    pub finished_at: Option<Millis>,
    /// Ids of the task's runs still held, in ordinal order (derived).
    #[serde(skip)]
    pub runs: Vec<Id>,
    /// How many of `runs` are not terminal (derived).
    #[serde(skip)]
    pub nonterminal_runs: u32,
}

impl Task {
    pub fn id(&self) -> Id {
        self.spec.id
    }

    pub fn is_canceled(&self) -> bool {
        self.canceled_at.is_some()
    }

    /// Finished = canceled, or every run the policy implies is derived and terminal. An
    /// unbounded cron task is finished only when canceled.
    pub fn is_finished(&self) -> bool {
        self.is_canceled()
            || (self.spec.shape.policy.total_runs() == Some(u64::from(self.runs_created))
                && self.nonterminal_runs == 0)
    }

    /// Live tasks hold their dedupe key.
    pub fn is_live(&self) -> bool {
        !self.is_finished()
    }
}

/// A lease on a Leased or Running run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub owner: String,
    pub expires_at: Millis,
    pub acquired_at: Millis,
}

/// One state change in a run's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateChange {
    pub from: RunState,
    pub to: RunState,
    pub at: Millis,
    pub reason: Option<String>,
}

/// One attempt of a run. `outcome` is `None` while it is open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub id: Id,
    pub started_at: Millis,
    pub finished_at: Option<Millis>,
    pub outcome: Option<AttemptOutcome>,
    pub error: Option<String>,
    pub output: Option<Vec<u8>>,
}

/// A run (`RunInstance`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    pub id: Id,
    pub task_id: Id,
    pub state: RunState,
    pub ordinal: u32,
    pub scheduled_at: Millis,
    pub created_at: Millis,
    /// Sequence of the RunCreate event: the tie-breaker of every ordered index.
    pub created_seq: u64,
    /// Attempts counted toward `max_attempts` (Suspended attempts are given back).
    pub attempt_count: u32,
    /// The open attempt (only while Running).
    pub current_attempt: Option<Id>,
    /// The task's priority, taken when the run last became Ready.
    pub effective_priority: i32,
    pub last_state_change_at: Millis,
    /// When a RetryWait run may become Ready again (only while RetryWait).
    pub not_before: Option<Millis>,
    /// Only while Leased or Running (and possibly absent then: expired or released).
    pub lease: Option<Lease>,
    pub history: Vec<StateChange>,
    pub attempts: Vec<Attempt>,
}

impl Run {
    /// The lease if it is live at `at` (`at < expires_at`).
    pub fn live_lease(&self, at: Millis) -> Option<&Lease> {
        self.lease.as_ref().filter(|l| at < l.expires_at)
    }
}

/// Canonical text of an id (hyphenated lowercase UUID), for messages.
pub fn fmt_id(id: &Id) -> String {
    let mut s = String::with_capacity(36);
    for (i, b) in id.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push_str(&format!("{b:02x}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_print_as_uuids() {
        let mut id = [0u8; 16];
        id[0] = 0xab;
        id[15] = 1;
        assert_eq!(fmt_id(&id), "ab000000-0000-0000-0000-000000000001");
    }
}
