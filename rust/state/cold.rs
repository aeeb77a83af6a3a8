//! The cold store: finished tasks and terminal runs kept as their encoded bytes.
//!
//! Terminal runs never change again (only Prune removes them) and finished tasks almost never
//! do, yet on a long-lived queue they are nearly all of the state. Holding each as a decoded
//! `Run` / `Task` costs ~8 heap allocations per pair, which is what made loading and writing a
//! 1M-run snapshot take seconds. Here they are records in immutable, shared byte segments,
//! found through an id → location map and decoded only when queried:
//!
//! ```text
//! segment  = varint n_tasks, task record * n_tasks, varint n_runs, run record * n_runs
//! task rec = varint len, u64 LE created_seq, i64 LE finished_at, u32 LE n,
//!            postcard(Task) (len bytes), n * 16-byte run ids (the task's run list, ordinal order)
//! run rec  = varint len, postcard(Run) (len bytes)
//! ```
//!
//! `postcard(Task)` / `postcard(Run)` are exactly the bytes the canonical image (and so the
//! digest) holds for them, so the digest and the snapshot writer copy them without decoding.
//! A snapshot's cold section *is* one segment, and a loaded snapshot's file buffer is used in
//! place (loading terminal history is a CRC pass, a head parse per record and a map insert).
//!
//! Segments are made by [`Cold::freeze`] when a snapshot is captured (from the hot maps: O(what
//! finished since the previous snapshot)) and by loading a snapshot. A record leaves the cold
//! store when Prune removes it or when an event names it ([`Cold::take_run`], "thawing": it is
//! decoded back into the hot maps, then the reducer's ordinary code runs). A segment whose
//! records are all gone is dropped, and the next segment takes its slot: the slots are as many
//! as the segments live at once, not as the segments ever made.
//!
//! Invariants: every cold run is terminal; every cold task is finished. Cold tasks are not
//! counted in the concurrency-key slots (they never hold a key): thawing one counts it again.

use std::sync::Arc;

use crate::model::{Id, Millis, RunState};

use super::cold_table::{write_tables, Tables};
use super::idmap::IdMap;
use super::indexes::IxKey;
use super::types::{fmt_id, Run, Task};

/// Where a cold record is: segment, entry number (for the dead bitmap), offset of its first
/// byte (the length varint) in the segment's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Loc {
    seg: u32,
    ix: u32,
    off: u64,
}

/// The bytes segments live in: built in memory, or a snapshot file (read, or mapped).
#[derive(Debug)]
pub(crate) enum Buf {
    Owned(Vec<u8>),
    Mapped(memmap2::Mmap),
}

impl std::ops::Deref for Buf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Buf::Owned(v) => v,
            Buf::Mapped(m) => m,
        }
    }
}

/// An immutable run of records: `buf[start..end]` holds the segment encoding; a snapshot's
/// format-3 section continues with its lookup tables up to `sec_end` (`cold_table`).
#[derive(Debug)]
pub(crate) struct Seg {
    buf: Arc<Buf>,
    start: usize,
    end: usize,
    sec_end: usize,
}

#[derive(Debug, Clone)]
struct Slot {
    seg: Option<Arc<Seg>>,
    /// A loaded format-3 section: its records are found through its tables, not the maps.
    tab: Option<Tables>,
    n_tasks: u32,
    /// One bit per entry (tasks first, then runs): removed.
    dead: Vec<u64>,
    live: usize,
}

impl Slot {
    fn is_dead(&self, ix: u32) -> bool {
        let i = ix as usize;
        self.dead
            .get(i / 64)
            .is_some_and(|w| w & (1u64 << (i % 64)) != 0)
    }

    fn kill(&mut self, ix: u32) {
        let i = ix as usize;
        if let Some(w) = self.dead.get_mut(i / 64) {
            *w |= 1u64 << (i % 64);
        }
        self.live = self.live.saturating_sub(1);
        if self.live == 0 {
            // Everything in it was pruned or thawed: give the memory back.
            self.seg = None;
            self.dead = Vec::new();
        }
    }
}

/// The fixed-position fields of a run record (the leading fields of `Run`, in its serde order).
// Some fields are only read to skip over them (fields are found by position).
#[allow(dead_code)]
#[derive(Debug)]
pub(crate) struct RunHead {
    pub id: Id,
    pub task_id: Id,
    pub state: RunState,
    pub ordinal: u32,
    pub scheduled_at: Millis,
    pub created_at: Millis,
    pub created_seq: u64,
    pub attempt_count: u32,
    pub current_attempt: Option<Id>,
    pub effective_priority: i32,
    pub last_state_change_at: Millis,
}

impl RunHead {
    /// The run's key in the index of its (terminal) state.
    pub fn ix_key(&self) -> IxKey {
        IxKey {
            a: self.last_state_change_at,
            b: 0,
            seq: self.created_seq,
            id: self.id,
        }
    }
}

/// A task record's fixed prefix.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TaskHead {
    pub id: Id,
    pub created_seq: u64,
    pub finished_at: Millis,
    pub n_runs: u32,
}

/// Byte reader that never panics.
struct Rd<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Rd<'a> {
    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..70).step_by(7) {
            let byte = *self.b.get(self.at)?;
            self.at += 1;
            v |= u64::from(byte & 0x7f).checked_shl(shift)?;
            if byte & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }

    /// A zigzag varint (postcard's signed integers).
    fn zigzag(&mut self) -> Option<i64> {
        let n = self.varint()?;
        Some(((n >> 1) as i64) ^ -((n & 1) as i64))
    }

    fn u64(&mut self) -> Option<u64> {
        self.take(8)?.try_into().ok().map(u64::from_le_bytes)
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4)?.try_into().ok().map(u32::from_le_bytes)
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// One task record, parsed: head, its postcard bytes, its run-id list bytes; and the offset
/// just after it.
pub(crate) struct TaskRec<'a> {
    pub head: TaskHead,
    pub body: &'a [u8],
    pub runs: &'a [u8],
    pub next: usize,
}

pub(crate) struct RunRec<'a> {
    pub body: &'a [u8],
    pub next: usize,
}

fn task_rec(b: &[u8], at: usize) -> Option<TaskRec<'_>> {
    let mut r = Rd { b, at };
    let len = usize::try_from(r.varint()?).ok()?;
    let created_seq = r.u64()?;
    let finished_at = r.u64()? as i64;
    let n_runs = r.u32()?;
    let body = r.take(len)?;
    let runs = r.take((n_runs as usize).checked_mul(16)?)?;
    let id: Id = body.get(..16)?.try_into().ok()?;
    Some(TaskRec {
        head: TaskHead {
            id,
            created_seq,
            finished_at,
            n_runs,
        },
        body,
        runs,
        next: r.at,
    })
}

fn run_rec(b: &[u8], at: usize) -> Option<RunRec<'_>> {
    let mut r = Rd { b, at };
    let len = usize::try_from(r.varint()?).ok()?;
    let body = r.take(len)?;
    Some(RunRec { body, next: r.at })
}

/// Parses the leading fields of `postcard(Run)` (by hand: this runs once per cold run at
/// load). Agrees with postcard wherever postcard accepts the bytes; bytes it accepts and
/// postcard does not make a record that fails when decoded (it then reads as missing).
pub(crate) fn run_head(body: &[u8]) -> Option<RunHead> {
    let mut r = Rd { b: body, at: 0 };
    let id: Id = r.take(16)?.try_into().ok()?;
    let task_id: Id = r.take(16)?.try_into().ok()?;
    let state = *RunState::ALL.get(usize::try_from(r.varint()?).ok()?)?;
    let ordinal = u32::try_from(r.varint()?).ok()?;
    let scheduled_at = r.zigzag()?;
    let created_at = r.zigzag()?;
    let created_seq = r.varint()?;
    let attempt_count = u32::try_from(r.varint()?).ok()?;
    let current_attempt = match r.take(1)?.first()? {
        0 => None,
        1 => Some(r.take(16)?.try_into().ok()?),
        _ => return None,
    };
    let effective_priority = i32::try_from(r.zigzag()?).ok()?;
    let last_state_change_at = r.zigzag()?;
    Some(RunHead {
        id,
        task_id,
        state,
        ordinal,
        scheduled_at,
        created_at,
        created_seq,
        attempt_count,
        current_attempt,
        effective_priority,
        last_state_change_at,
    })
}

fn ids_of(runs: &[u8]) -> Vec<Id> {
    runs.chunks_exact(16)
        .filter_map(|c| c.try_into().ok())
        .collect()
}

/// Appends one task record (the task's `runs` list is its derived run list).
pub(crate) fn push_task(out: &mut Vec<u8>, t: &Task, scratch: &mut Vec<u8>) -> Result<(), String> {
    scratch.clear();
    let body = postcard::to_extend(t, std::mem::take(scratch)).map_err(|e| e.to_string())?;
    put_varint(out, body.len() as u64);
    out.extend_from_slice(&t.created_seq.to_le_bytes());
    out.extend_from_slice(&t.finished_at.unwrap_or(t.created_at).to_le_bytes());
    out.extend_from_slice(
        &u32::try_from(t.runs.len())
            .unwrap_or(u32::MAX)
            .to_le_bytes(),
    );
    out.extend_from_slice(&body);
    for r in &t.runs {
        out.extend_from_slice(r);
    }
    *scratch = body;
    Ok(())
}

pub(crate) fn push_run(out: &mut Vec<u8>, r: &Run, scratch: &mut Vec<u8>) -> Result<(), String> {
    scratch.clear();
    let body = postcard::to_extend(r, std::mem::take(scratch)).map_err(|e| e.to_string())?;
    put_varint(out, body.len() as u64);
    out.extend_from_slice(&body);
    *scratch = body;
    Ok(())
}

/// What a loaded segment contributes to the indexes.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    /// Index keys per state (`RunState as usize`; only terminal states are filled; unsorted).
    pub keys: [Vec<IxKey>; 9],
    /// Finished tasks with no runs: `(finished_at, id)`.
    pub empty: Vec<(Millis, Id)>,
    /// Cold runs whose task is not cold: `(task, ordinal, run)` (their run lists are hot).
    pub of_hot: Vec<(Id, u32, Id)>,
}

/// What [`Cold::add`] checks records against when loading a snapshot: the image sequence
/// and whether an id is a hot task.
pub(crate) type LoadCheck<'a> = (u64, &'a dyn Fn(&Id) -> bool);

mod load;

/// The cold store.
#[derive(Debug, Default)]
pub(crate) struct Cold {
    slots: Vec<Slot>,
    /// Slots whose records are all gone: the next segment takes one of them (see
    /// [`Cold::slot_for`]), so the slots are as many as the segments live at once, not one
    /// per segment ever made.
    free: Vec<u32>,
    /// Records of segments without tables (frozen here, or a format-2 snapshot's).
    runs: IdMap<Loc>,
    tasks: IdMap<Loc>,
    /// Slots with tables (a loaded format-3 snapshot's section), and their live records.
    tabled: Vec<u32>,
    tab_runs: usize,
    tab_tasks: usize,
}

/// The live records of a cold store at one moment, without its maps: cheap to take (shares
/// the segments, copies one bit per record), and all the snapshot writer needs.
#[derive(Debug, Clone, Default)]
pub struct ColdView {
    slots: Vec<Slot>,
    tasks: usize,
    runs: usize,
}

impl Cold {
    /// Slots in use or free (tests: they must not grow with every segment ever made).
    #[cfg(test)]
    pub(crate) fn slot_count(&self) -> usize {
        self.slots.len()
    }

    pub fn run_count(&self) -> usize {
        self.runs.len() + self.tab_runs
    }

    pub fn task_count(&self) -> usize {
        self.tasks.len() + self.tab_tasks
    }

    pub fn has_run(&self, id: &Id) -> bool {
        self.run_loc(id).is_some()
    }

    pub fn has_task(&self, id: &Id) -> bool {
        self.task_loc(id).is_some()
    }

    fn run_loc(&self, id: &Id) -> Option<Loc> {
        match self.runs.get(id) {
            Some(l) => Some(*l),
            None if self.tabled.is_empty() => None,
            None => self.find_tabled(id, true),
        }
    }

    fn task_loc(&self, id: &Id) -> Option<Loc> {
        match self.tasks.get(id) {
            Some(l) => Some(*l),
            None if self.tabled.is_empty() => None,
            None => self.find_tabled(id, false),
        }
    }

    /// Looks a live record up in the tables of the tabled slots.
    fn find_tabled(&self, id: &Id, run: bool) -> Option<Loc> {
        for &s in &self.tabled {
            let Some(slot) = self.slots.get(s as usize) else {
                continue;
            };
            let (Some(seg), Some(tab)) = (slot.seg.as_deref(), slot.tab.as_ref()) else {
                continue;
            };
            let Some(sec) = seg.buf.get(seg.start..seg.sec_end) else {
                continue;
            };
            let recs = sec.get(..tab.records_len).unwrap_or_default();
            let table = if run { &tab.runs } else { &tab.tasks };
            let off =
                |i: usize| Tables::offset(sec, table, i).and_then(|o| usize::try_from(o).ok());
            let id_at = |i: usize| -> Option<Id> {
                let at = off(i)?;
                if run {
                    run_rec(recs, at)?.body.get(..16)?.try_into().ok()
                } else {
                    task_rec(recs, at).map(|r| r.head.id)
                }
            };
            let Some(i) = tab.find(sec, table, id, |i| id_at(i) == Some(*id)) else {
                continue;
            };
            let ix = if run { slot.n_tasks as usize + i } else { i };
            let ix = u32::try_from(ix).ok()?;
            if slot.is_dead(ix) {
                return None;
            }
            return Some(Loc {
                seg: s,
                ix,
                off: off(i)? as u64,
            });
        }
        None
    }

    fn bytes(&self, loc: Loc) -> Option<&[u8]> {
        let seg = self.slots.get(loc.seg as usize)?.seg.as_deref()?;
        seg.buf.get(seg.start..seg.end)
    }

    fn run_body(&self, id: &Id) -> Option<&[u8]> {
        let loc = self.run_loc(id)?;
        run_rec(self.bytes(loc)?, usize::try_from(loc.off).ok()?).map(|r| r.body)
    }

    fn task_rec(&self, id: &Id) -> Option<TaskRec<'_>> {
        let loc = self.task_loc(id)?;
        task_rec(self.bytes(loc)?, usize::try_from(loc.off).ok()?)
    }

    /// Decodes a cold run. `Some(Err)` only for a record that does not decode (a snapshot
    /// with a valid checksum but inconsistent content).
    pub fn run(&self, id: &Id) -> Option<Result<Run, String>> {
        let body = self.run_body(id)?;
        Some(match postcard::from_bytes::<Run>(body) {
            Ok(r) if r.id == *id && r.state.is_terminal() => Ok(r),
            Ok(_) => Err(format!("cold run {} is inconsistent", fmt_id(id))),
            Err(e) => Err(format!("cold run {} does not decode: {e}", fmt_id(id))),
        })
    }

    /// The task id of a cold run.
    pub fn run_task(&self, id: &Id) -> Option<Id> {
        self.run_body(id).and_then(run_head).map(|h| h.task_id)
    }

    /// Decodes a cold task, with its run list (all terminal: `nonterminal_runs` is 0).
    pub fn task(&self, id: &Id) -> Option<Result<Task, String>> {
        let rec = self.task_rec(id)?;
        Some(match postcard::from_bytes::<Task>(rec.body) {
            Ok(mut t) if t.id() == *id && t.finished_at.is_some() => {
                t.runs = ids_of(rec.runs);
                t.nonterminal_runs = 0;
                Ok(t)
            }
            Ok(_) => Err(format!("cold task {} is inconsistent", fmt_id(id))),
            Err(e) => Err(format!("cold task {} does not decode: {e}", fmt_id(id))),
        })
    }

    pub fn task_runs(&self, id: &Id) -> Option<Vec<Id>> {
        self.task_rec(id).map(|r| ids_of(r.runs))
    }

    fn kill(&mut self, loc: Loc) {
        let Some(slot) = self.slots.get_mut(loc.seg as usize) else {
            return;
        };
        if slot.live == 0 {
            return;
        }
        slot.kill(loc.ix);
        if slot.live == 0 {
            self.release(loc.seg);
        }
    }

    /// Slot `seg` holds no live record any more (its memory is given back already, see
    /// [`Slot::kill`]): a later segment takes it. No lookup reaches it in between: the id maps
    /// hold no location in it, and a tabled one leaves `tabled`.
    fn release(&mut self, seg: u32) {
        self.tabled.retain(|&s| s != seg);
        self.free.push(seg);
    }

    /// The slot number of the next segment: a free slot, else a new one at the end. Its
    /// records' locations name it while the segment is parsed; [`Cold::install`] then puts
    /// the segment there.
    fn slot_for(&self) -> Result<u32, String> {
        match self.free.last() {
            Some(&s) => Ok(s),
            None => u32::try_from(self.slots.len()).map_err(|_| "too many segments".into()),
        }
    }

    /// Puts `slot` at `seg` (from [`Cold::slot_for`]); an empty one is free again at once.
    fn install(&mut self, seg: u32, slot: Slot) {
        let empty = slot.live == 0;
        match self.slots.get_mut(seg as usize) {
            Some(s) => {
                if self.free.last() == Some(&seg) {
                    self.free.pop();
                }
                *s = slot;
            }
            None => self.slots.push(slot),
        }
        if empty {
            self.release(seg);
        }
    }

    /// Removes a cold run; returns its task id.
    pub fn remove_run(&mut self, id: &Id) -> Option<Id> {
        let task = self.run_task(id);
        let loc = match self.runs.remove(id) {
            Some(loc) => loc,
            None => {
                let loc = self.find_tabled(id, true)?;
                self.tab_runs = self.tab_runs.saturating_sub(1);
                loc
            }
        };
        self.kill(loc);
        task
    }

    pub fn remove_task(&mut self, id: &Id) -> bool {
        let loc = match self.tasks.remove(id) {
            Some(loc) => loc,
            None => match self.find_tabled(id, false) {
                Some(loc) => {
                    self.tab_tasks = self.tab_tasks.saturating_sub(1);
                    loc
                }
                None => return false,
            },
        };
        self.kill(loc);
        true
    }

    /// Decodes and removes a cold run (the caller puts it in the hot map).
    pub fn take_run(&mut self, id: &Id) -> Option<Result<Run, String>> {
        let r = self.run(id)?;
        if r.is_ok() {
            self.remove_run(id);
        }
        Some(r)
    }

    pub fn take_task(&mut self, id: &Id) -> Option<Result<Task, String>> {
        let t = self.task(id)?;
        if t.is_ok() {
            self.remove_task(id);
        }
        Some(t)
    }

    pub fn walk<'a>(&'a self, task: impl FnMut(TaskRec<'a>), run: impl FnMut(u64, &'a [u8])) {
        walk(&self.slots, task, run);
    }

    pub fn view(&self) -> ColdView {
        ColdView {
            slots: self.slots.clone(),
            tasks: self.task_count(),
            runs: self.run_count(),
        }
    }
}

/// Every live record's bytes with its creation sequence, tasks then runs: what the digest
/// and the snapshot writer walk. Records that fail to parse are skipped (they cannot exist:
/// segments are parsed when added).
fn walk<'a>(
    slots: &'a [Slot],
    mut task: impl FnMut(TaskRec<'a>),
    mut run: impl FnMut(u64, &'a [u8]),
) {
    for slot in slots {
        let Some(seg) = slot.seg.as_deref() else {
            continue;
        };
        let Some(b) = seg.buf.get(seg.start..seg.end) else {
            continue;
        };
        let mut r = Rd { b, at: 0 };
        let Some(n_tasks) = r.varint() else { continue };
        let mut at = r.at;
        let mut ix = 0u32;
        for _ in 0..n_tasks {
            let Some(rec) = task_rec(b, at) else { break };
            at = rec.next;
            if !slot.is_dead(ix) {
                task(rec);
            }
            ix += 1;
        }
        let mut r = Rd { b, at };
        let Some(n_runs) = r.varint() else { continue };
        at = r.at;
        for _ in 0..n_runs {
            let Some(rec) = run_rec(b, at) else { break };
            at = rec.next;
            if !slot.is_dead(ix) {
                let seq = run_head(rec.body).map_or(0, |h| h.created_seq);
                run(seq, rec.body);
            }
            ix += 1;
        }
        debug_assert_eq!(slot.n_tasks as u64, n_tasks);
    }
}

impl ColdView {
    /// Writes all live records as one segment followed by its lookup tables (the snapshot's
    /// cold section, format 3: `cold_table`); `seed` seeds the tables' hash.
    pub fn write_section(&self, w: &mut dyn std::io::Write, seed: u64) -> std::io::Result<()> {
        let mut head = Vec::with_capacity(32);
        put_varint(&mut head, self.tasks as u64);
        w.write_all(&head)?;
        let mut pos = head.len() as u64;
        let mut err = Ok(());
        let mut runs = Vec::with_capacity(self.runs);
        let mut task_offs = Vec::with_capacity(self.tasks);
        let mut task_ids = Vec::with_capacity(self.tasks);
        walk(
            &self.slots,
            |t| {
                if err.is_ok() {
                    task_offs.push(pos);
                    task_ids.push(t.head.id);
                    head.clear();
                    put_varint(&mut head, t.body.len() as u64);
                    head.extend_from_slice(&t.head.created_seq.to_le_bytes());
                    head.extend_from_slice(&t.head.finished_at.to_le_bytes());
                    head.extend_from_slice(&t.head.n_runs.to_le_bytes());
                    pos += (head.len() + t.body.len() + t.runs.len()) as u64;
                    err = w
                        .write_all(&head)
                        .and_then(|()| w.write_all(t.body))
                        .and_then(|()| w.write_all(t.runs));
                }
            },
            |_, body| runs.push(body),
        );
        err?;
        if task_offs.len() != self.tasks {
            return Err(std::io::Error::other("cold store: task count changed"));
        }
        head.clear();
        put_varint(&mut head, runs.len() as u64);
        w.write_all(&head)?;
        pos += head.len() as u64;
        let mut run_offs = Vec::with_capacity(runs.len());
        let mut run_ids = Vec::with_capacity(runs.len());
        for body in runs {
            run_offs.push(pos);
            run_ids.push(
                body.get(..16)
                    .and_then(|b| Id::try_from(b).ok())
                    .unwrap_or_default(),
            );
            head.clear();
            put_varint(&mut head, body.len() as u64);
            w.write_all(&head)?;
            w.write_all(body)?;
            pos += (head.len() + body.len()) as u64;
        }
        write_tables(w, pos, &task_offs, &task_ids, &run_offs, &run_ids, seed)
    }
}

impl Seg {
    pub fn new(buf: Arc<Buf>, start: usize) -> Self {
        let end = buf.len();
        Self {
            buf,
            start,
            end,
            sec_end: end,
        }
    }
}

/// Builds a segment from decoded records (what [`Cold::freeze`]-style callers hand over).
pub(crate) fn build_seg(tasks: &[&Task], runs: &[&Run]) -> Result<Seg, String> {
    let mut out = Vec::new();
    let mut scratch = Vec::new();
    put_varint(&mut out, tasks.len() as u64);
    for t in tasks {
        push_task(&mut out, t, &mut scratch)?;
    }
    put_varint(&mut out, runs.len() as u64);
    for r in runs {
        push_run(&mut out, r, &mut scratch)?;
    }
    Ok(Seg::new(Arc::new(Buf::Owned(out)), 0))
}
