//! Adding segments to the cold store: a segment frozen in memory or a format-2 snapshot's
//! section (every record registered in the id maps), and a format-3 snapshot's section (used
//! in place through its tables, `cold_table`).

use std::sync::Arc;

use crate::model::RunState;
use crate::state::cold_table::Tables;
use crate::state::types::fmt_id;

use super::{run_head, run_rec, task_rec, Cold, LoadCheck, Loaded, Loc, Rd, RunHead, Seg, Slot};

impl Cold {
    /// Adds a segment, registering every record. With `load`, also validates each record's
    /// fixed fields (`sequence` bounds creation sequences; `hot_tasks` are the other tasks a
    /// run may belong to) and returns what the indexes need. Refuses duplicates.
    pub fn add(&mut self, seg: Seg, load: Option<LoadCheck<'_>>) -> Result<Loaded, String> {
        let seg_no = self.slot_for()?;
        let mut out = Loaded::default();
        let b = seg
            .buf
            .get(seg.start..seg.end)
            .ok_or("segment out of range")?;
        let mut r = Rd { b, at: 0 };
        let bad = |what: &str| format!("cold section: {what}");
        let n_tasks = r.varint().ok_or_else(|| bad("task count"))?;
        // Each record takes at least 37 bytes: a count beyond that is corrupt (and would
        // make the reservations below huge).
        if n_tasks > (b.len() / 37) as u64 {
            return Err(bad("task count exceeds the section"));
        }
        self.tasks.reserve(n_tasks as usize);
        let mut at = r.at;
        let mut ix = 0u32;
        for _ in 0..n_tasks {
            let rec = task_rec(b, at).ok_or_else(|| bad("truncated task record"))?;
            let h = rec.head;
            if load.is_some_and(|(seq, _)| h.created_seq > seq) {
                return Err(format!(
                    "task {} created after the image sequence",
                    fmt_id(&h.id)
                ));
            }
            let loc = Loc {
                seg: seg_no,
                ix,
                off: at as u64,
            };
            if self.tasks.insert(h.id, loc).is_some() {
                return Err(format!("task {} appears twice", fmt_id(&h.id)));
            }
            if load.is_some() && h.n_runs == 0 {
                out.empty.push((h.finished_at, h.id));
            }
            at = rec.next;
            ix = ix.checked_add(1).ok_or_else(|| bad("too many records"))?;
        }
        let mut r = Rd { b, at };
        let n_runs = r.varint().ok_or_else(|| bad("run count"))?;
        if n_runs > (b.len() / 40) as u64 {
            return Err(bad("run count exceeds the section"));
        }
        self.runs.reserve(n_runs as usize);
        at = r.at;
        for _ in 0..n_runs {
            let rec = run_rec(b, at).ok_or_else(|| bad("truncated run record"))?;
            let h = run_head(rec.body).ok_or_else(|| bad("run record head"))?;
            let loc = Loc {
                seg: seg_no,
                ix,
                off: at as u64,
            };
            if let Some((seq, hot_task)) = load {
                check_head(&h, seq)?;
                if !self.tasks.contains_key(&h.task_id) {
                    if !hot_task(&h.task_id) {
                        return Err(format!("run {} names a missing task", fmt_id(&h.id)));
                    }
                    out.of_hot.push((h.task_id, h.ordinal, h.id));
                }
                if let Some(b) = out.keys.get_mut(h.state as usize) {
                    b.push(h.ix_key());
                }
            }
            if self.runs.insert(h.id, loc).is_some() {
                return Err(format!("run {} appears twice", fmt_id(&h.id)));
            }
            at = rec.next;
            ix = ix.checked_add(1).ok_or_else(|| bad("too many records"))?;
        }
        if at != b.len() {
            return Err(bad("trailing bytes"));
        }
        let n = ix as usize;
        self.install(
            seg_no,
            Slot {
                seg: (n > 0).then(|| Arc::new(seg)),
                tab: None,
                n_tasks: u32::try_from(n_tasks).unwrap_or(u32::MAX),
                dead: vec![0; n.div_ceil(64)],
                live: n,
            },
        );
        Ok(out)
    }

    /// Adds a loaded snapshot's format-3 cold section (`seg` spans the whole section), used in
    /// place through its tables: per record a sequential parse of its fixed fields (checked
    /// as in [`Cold::add`]) and of its offset, and no map insert. A cold run's task is looked
    /// up only when it is a hot one; that a cold task holds it is checked by count (a forged
    /// section can still pair them wrongly: records are validated lazily, see
    /// docs/DESIGN.md, "Cold store validation").
    pub fn add_tabled(&mut self, mut seg: Seg, load: LoadCheck<'_>) -> Result<Loaded, String> {
        let (seq, hot_task) = load;
        let seg_no = self.slot_for()?;
        let bad = |what: &str| format!("cold section: {what}");
        let sec = seg
            .buf
            .get(seg.start..seg.sec_end)
            .ok_or("segment out of range")?;
        let tab = Tables::parse(sec)?;
        let b = sec.get(..tab.records_len).ok_or_else(|| bad("records"))?;
        let mut out = Loaded::default();
        let mut r = Rd { b, at: 0 };
        let n_tasks = r.varint().ok_or_else(|| bad("task count"))?;
        if n_tasks != tab.tasks.n as u64 {
            return Err(bad("task count differs from its table"));
        }
        let mut at = r.at;
        let mut listed = 0u64;
        for i in 0..tab.tasks.n {
            if Tables::offset(sec, &tab.tasks, i) != Some(at as u64) {
                return Err(bad("task offset"));
            }
            let rec = task_rec(b, at).ok_or_else(|| bad("truncated task record"))?;
            let h = rec.head;
            if h.created_seq > seq {
                return Err(format!(
                    "task {} created after the image sequence",
                    fmt_id(&h.id)
                ));
            }
            if hot_task(&h.id) {
                return Err(format!("task {} is both hot and cold", fmt_id(&h.id)));
            }
            if h.n_runs == 0 {
                out.empty.push((h.finished_at, h.id));
            }
            listed += u64::from(h.n_runs);
            at = rec.next;
        }
        let mut r = Rd { b, at };
        let n_runs = r.varint().ok_or_else(|| bad("run count"))?;
        if n_runs != tab.runs.n as u64 {
            return Err(bad("run count differs from its table"));
        }
        at = r.at;
        let mut of_cold = 0u64;
        // Capacity only: pages a state never fills are never touched.
        for s in [RunState::Completed, RunState::Failed, RunState::Canceled] {
            if let Some(k) = out.keys.get_mut(s as usize) {
                k.reserve(tab.runs.n);
            }
        }
        for i in 0..tab.runs.n {
            if Tables::offset(sec, &tab.runs, i) != Some(at as u64) {
                return Err(bad("run offset"));
            }
            let rec = run_rec(b, at).ok_or_else(|| bad("truncated run record"))?;
            let h = run_head(rec.body).ok_or_else(|| bad("run record head"))?;
            check_head(&h, seq)?;
            if hot_task(&h.task_id) {
                out.of_hot.push((h.task_id, h.ordinal, h.id));
            } else {
                of_cold += 1;
            }
            if let Some(k) = out.keys.get_mut(h.state as usize) {
                k.push(h.ix_key());
            }
            at = rec.next;
        }
        if at != b.len() {
            return Err(bad("trailing bytes"));
        }
        if listed != of_cold {
            return Err(bad("cold tasks' run lists do not match the cold runs"));
        }
        seg.end = seg.start + tab.records_len;
        let n = tab.tasks.n + tab.runs.n;
        u32::try_from(n).map_err(|_| bad("too many records"))?;
        let n_tasks = u32::try_from(tab.tasks.n).map_err(|_| bad("too many records"))?;
        self.tabled.push(seg_no);
        self.install(
            seg_no,
            Slot {
                seg: (n > 0).then(|| Arc::new(seg)),
                tab: Some(tab),
                n_tasks,
                dead: vec![0; n.div_ceil(64)],
                live: n,
            },
        );
        self.tab_tasks += tab.tasks.n;
        self.tab_runs += tab.runs.n;
        Ok(out)
    }
}

/// The per-run invariants of a cold run that its fixed fields show.
fn check_head(h: &RunHead, sequence: u64) -> Result<(), String> {
    if !h.state.is_terminal() {
        return Err(format!(
            "cold run {} is {}, not terminal",
            fmt_id(&h.id),
            h.state.name()
        ));
    }
    if h.created_seq > sequence || h.current_attempt.is_some() {
        return Err(format!("cold run {} is inconsistent", fmt_id(&h.id)));
    }
    Ok(())
}
