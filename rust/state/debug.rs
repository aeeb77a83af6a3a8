//! Index consistency check: recomputes every derived structure by scanning and compares it
//! with the incrementally maintained one. O(n log n); for tests and debugging only.

use std::collections::BTreeSet;

use super::Map;

use crate::model::{Id, RunState};

use super::indexes::{placement, IxKey};
use super::types::fmt_id;
use super::Projection;

impl Projection {
    /// `Err(description)` at the first derived structure that disagrees with a full scan.
    pub fn debug_check_indexes(&self) -> Result<(), String> {
        let mut sets: [BTreeSet<IxKey>; 9] = Default::default();
        let mut holders: Map<&str, Id> = Map::default();
        let mut per_task: Map<Id, Vec<(u32, Id)>> = Map::default();
        let tasks: Map<Id, std::borrow::Cow<'_, crate::state::Task>> =
            self.tasks().map(|t| (t.id(), t)).collect();
        if tasks.len() != self.task_count() {
            return Err("a cold task does not decode".into());
        }
        let mut n_runs = 0;
        let mut states: Map<Id, RunState> = Map::default();
        for run in self.all_runs() {
            n_runs += 1;
            let id = &run.id;
            if self.runs.get(id).is_some_and(|r| r.id != *id) {
                return Err(format!("run stored under the wrong id {}", fmt_id(id)));
            }
            if self.cold.has_run(id) && !run.state.is_terminal() {
                return Err(format!("cold run {} is not terminal", fmt_id(id)));
            }
            states.insert(*id, run.state);
            let task = tasks
                .get(&run.task_id)
                .ok_or_else(|| format!("run {} has no task", fmt_id(id)))?;
            let p = placement(&run, task);
            if let Some(set) = sets.get_mut(p.state as usize) {
                set.insert(p.key);
            }
            if p.holds_key {
                if let Some(k) = task.spec.shape.constraints.concurrency_key.as_deref() {
                    if let Some(other) = holders.insert(k, *id) {
                        return Err(format!(
                            "key {k:?} held by two runs: {} and {}",
                            fmt_id(&other),
                            fmt_id(id)
                        ));
                    }
                }
            }
            per_task
                .entry(run.task_id)
                .or_default()
                .push((run.ordinal, *id));
        }
        for state in RunState::ALL {
            let want = sets.get(state as usize).cloned().unwrap_or_default();
            if self.ix.set(state) != &want {
                return Err(format!("index of {} differs from a scan", state.name()));
            }
        }
        let mut key_tasks: Map<&str, u32> = Map::default();
        let mut dedupe: Map<&str, Id> = Map::default();
        let mut empty_finished = BTreeSet::new();
        if n_runs != self.run_count() {
            return Err("a cold run does not decode".into());
        }
        // Cold tasks never hold a key and are not counted in the slots.
        for task in self.tasks.values() {
            if let Some(k) = task.spec.shape.constraints.concurrency_key.as_deref() {
                *key_tasks.entry(k).or_default() += 1;
            }
        }
        for (id, task) in &tasks {
            if self.cold.has_task(id) && task.finished_at.is_none() {
                return Err(format!("cold task {} is not finished", fmt_id(id)));
            }
            let mut runs = per_task.remove(id).unwrap_or_default();
            runs.sort_unstable();
            let ids: Vec<Id> = runs.iter().map(|r| r.1).collect();
            if ids != task.runs {
                return Err(format!(
                    "run list of task {} differs from a scan",
                    fmt_id(id)
                ));
            }
            let nonterminal = ids
                .iter()
                .filter(|r| states.get(*r).is_some_and(|s| !s.is_terminal()))
                .count();
            if u32::try_from(nonterminal).ok() != Some(task.nonterminal_runs) {
                return Err(format!(
                    "non-terminal count of task {} is wrong",
                    fmt_id(id)
                ));
            }
            if task.is_finished() != task.finished_at.is_some() {
                return Err(format!(
                    "finished_at of task {} is inconsistent",
                    fmt_id(id)
                ));
            }
            if task.is_live() {
                if let Some(k) = task.spec.dedupe_key.as_deref() {
                    if dedupe.insert(k, *id).is_some() {
                        return Err(format!("dedupe key {k:?} held by two live tasks"));
                    }
                }
            }
            if let Some(f) = task.finished_at {
                if task.runs.is_empty() {
                    empty_finished.insert((f, *id));
                }
            }
        }
        if !per_task.is_empty() {
            return Err("runs whose task is missing".into());
        }
        let got_dedupe: Map<&str, Id> = self
            .ix
            .dedupe
            .iter()
            .map(|(k, v)| (k.as_str(), *v))
            .collect();
        if got_dedupe != dedupe {
            return Err("dedupe index differs from a scan".into());
        }
        let got_keys: Map<&str, (Option<Id>, u32)> = self
            .ix
            .keys
            .iter()
            .map(|(k, s)| (k.as_str(), (s.holder, s.tasks)))
            .collect();
        let want_keys: Map<&str, (Option<Id>, u32)> = key_tasks
            .iter()
            .map(|(k, n)| (*k, (holders.get(k).copied(), *n)))
            .collect();
        if got_keys != want_keys {
            return Err("concurrency key slots differ from a scan".into());
        }
        if self.ix.empty_finished != empty_finished {
            return Err("prune candidates differ from a scan".into());
        }
        // Dispatch candidates: the Ready set in order, skipping runs of held keys; of a key,
        // only its head: its first Ready retry under the hold policy, else its first run.
        let mut want_candidates = BTreeSet::new();
        let mut heads: Map<&str, (bool, IxKey)> = Map::default();
        for k in self.ix.set(RunState::Ready) {
            let Some(run) = self.runs.get(&k.id) else {
                continue;
            };
            let Some(task) = tasks.get(&run.task_id) else {
                continue;
            };
            let retry = placement(run, task).retry;
            match task.spec.shape.constraints.concurrency_key.as_deref() {
                None => {
                    want_candidates.insert(*k);
                }
                Some(key) if !holders.contains_key(key) => {
                    let head = heads.entry(key).or_insert((retry, *k));
                    if retry && !head.0 {
                        *head = (true, *k);
                    }
                }
                Some(_) => {}
            }
        }
        want_candidates.extend(heads.values().map(|(_, k)| *k));
        if self.ix.candidates != want_candidates {
            return Err("dispatch candidates differ from a scan".into());
        }
        Ok(())
    }
}
