//! Lookup tables of a snapshot's cold section (snapshot format 3), used in place.
//!
//! A loaded snapshot's cold section is the projection's cold store as it is (see `cold`); with
//! these tables a record is found by id without building anything at load: no per-record map
//! insert, no memory beyond the (memory-mapped) file. After the records come:
//!
//! ```text
//! task offsets  n_tasks × u64 LE   offset of each task record from the section start
//! run offsets   n_runs  × u64 LE   same, per run record
//! task table    2^kt    × u32 LE   open addressing: 0 empty, else task number + 1
//! run table     2^kr    × u32 LE   same, run number + 1
//! trailer       40 bytes:  u64 records_len, u64 n_tasks, u64 n_runs, u64 seed,
//!                          u32 kt, u32 kr   (all LE)
//! ```
//!
//! Each table has `2^k` slots, the smallest power of two `>= max(1, 2n)`. An id's first slot is
//! the top `k` bits of `hash(id, seed)` (0 when `k = 0`); probing is linear, wrapping, and
//! stops at an empty slot. `hash(id, seed) = mix(lo ^ mix(hi ^ seed))`, where `lo`/`hi` are the
//! id's bytes 0..8 / 8..16 read as u64 LE and `mix` is the SplitMix64 finalizer. A lookup
//! compares the id of the record it lands on, so a table can never return a wrong record;
//! tables are not verified at load (a forged one can only hide records).

use crate::model::Id;

/// Size of the trailer that ends a format-3 cold section.
pub(crate) const TRAILER_LEN: usize = 40;

/// Largest `k` accepted (2^32 slots).
const MAX_LOG2: u32 = 32;

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn half(id: &Id, at: usize) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = id.get(at..at + 8) {
        a.copy_from_slice(s);
    }
    u64::from_le_bytes(a)
}

pub(crate) fn hash(id: &Id, seed: u64) -> u64 {
    mix(half(id, 0) ^ mix(half(id, 8) ^ seed))
}

fn first_slot(h: u64, log2: u32) -> usize {
    if log2 == 0 {
        0
    } else {
        (h >> (64 - log2)) as usize
    }
}

/// `k` of the table for `n` records.
pub(crate) fn table_log2(n: usize) -> u32 {
    n.saturating_mul(2)
        .max(1)
        .checked_next_power_of_two()
        .map_or(u32::MAX, usize::trailing_zeros)
}

/// Builds the table for `ids` (record `i` is `ids[i]`); slots as u32 (0: empty).
pub(crate) fn build(ids: &[Id], seed: u64) -> (u32, Vec<u32>) {
    let log2 = table_log2(ids.len());
    let size = 1usize << log2;
    let mask = size - 1;
    let mut slots = vec![0u32; size];
    for (i, id) in ids.iter().enumerate() {
        let mut at = first_slot(hash(id, seed), log2);
        // At most half full: an empty slot is always found.
        for _ in 0..size {
            match slots.get_mut(at) {
                Some(s) if *s == 0 => {
                    *s = u32::try_from(i + 1).unwrap_or(u32::MAX);
                    break;
                }
                _ => at = (at + 1) & mask,
            }
        }
    }
    (log2, slots)
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    b.get(at..at.checked_add(8)?)?
        .try_into()
        .ok()
        .map(u64::from_le_bytes)
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at.checked_add(4)?)?
        .try_into()
        .ok()
        .map(u32::from_le_bytes)
}

/// One table and its offsets array (positions relative to the section start).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Table {
    pub n: usize,
    offs: usize,
    slots: usize,
    log2: u32,
}

/// The parsed trailer of a format-3 cold section.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tables {
    pub records_len: usize,
    pub seed: u64,
    pub tasks: Table,
    pub runs: Table,
}

impl Tables {
    /// Parses and checks the trailer of `sec` (a whole cold section): every part must fit
    /// exactly, and each table must have the size its count implies.
    pub fn parse(sec: &[u8]) -> Result<Self, String> {
        let bad = |what: &str| format!("cold section tables: {what}");
        let t = sec
            .len()
            .checked_sub(TRAILER_LEN)
            .ok_or_else(|| bad("section shorter than its trailer"))?;
        let field = |i: usize| u64_at(sec, t + 8 * i).ok_or_else(|| bad("trailer"));
        let to_usize = |v: u64| usize::try_from(v).map_err(|_| bad("size out of range"));
        let records_len = to_usize(field(0)?)?;
        let n_tasks = to_usize(field(1)?)?;
        let n_runs = to_usize(field(2)?)?;
        let seed = field(3)?;
        let kt = u32_at(sec, t + 32).ok_or_else(|| bad("trailer"))?;
        let kr = u32_at(sec, t + 36).ok_or_else(|| bad("trailer"))?;
        if kt > MAX_LOG2 || kr > MAX_LOG2 || kt != table_log2(n_tasks) || kr != table_log2(n_runs) {
            return Err(bad("table size does not match the record count"));
        }
        let mut at = records_len;
        let mut part = |len: Option<usize>| -> Result<usize, String> {
            let start = at;
            at = len
                .and_then(|l| at.checked_add(l))
                .filter(|&e| e <= t)
                .ok_or_else(|| bad("parts exceed the section"))?;
            Ok(start)
        };
        let task_offs = part(n_tasks.checked_mul(8))?;
        let run_offs = part(n_runs.checked_mul(8))?;
        let task_slots = part(4usize.checked_shl(kt))?;
        let run_slots = part(4usize.checked_shl(kr))?;
        if at != t {
            return Err(bad("parts do not fill the section"));
        }
        Ok(Self {
            records_len,
            seed,
            tasks: Table {
                n: n_tasks,
                offs: task_offs,
                slots: task_slots,
                log2: kt,
            },
            runs: Table {
                n: n_runs,
                offs: run_offs,
                slots: run_slots,
                log2: kr,
            },
        })
    }

    /// Offset (from the section start) of record `i` of `table`.
    pub fn offset(sec: &[u8], table: &Table, i: usize) -> Option<u64> {
        if i >= table.n {
            return None;
        }
        u64_at(sec, table.offs.checked_add(i.checked_mul(8)?)?)
    }

    /// Finds `id` in `table`: yields each candidate record number in probe order until
    /// `is_it(number)` says yes (returns it) or an empty slot ends the chain (`None`). At
    /// most one pass over the table, whatever its content.
    pub fn find(
        &self,
        sec: &[u8],
        table: &Table,
        id: &Id,
        mut is_it: impl FnMut(usize) -> bool,
    ) -> Option<usize> {
        let size = 1usize.checked_shl(table.log2)?;
        let mask = size - 1;
        let mut at = first_slot(hash(id, self.seed), table.log2);
        for _ in 0..size {
            let e = u32_at(sec, table.slots.checked_add(at.checked_mul(4)?)?)?;
            if e == 0 {
                return None;
            }
            let i = e as usize - 1;
            if i < table.n && is_it(i) {
                return Some(i);
            }
            at = (at + 1) & mask;
        }
        None
    }
}

/// Writes the parts after the records (offsets, tables, trailer).
pub(crate) fn write_tables(
    w: &mut dyn std::io::Write,
    records_len: u64,
    task_offs: &[u64],
    task_ids: &[Id],
    run_offs: &[u64],
    run_ids: &[Id],
    seed: u64,
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1 << 16);
    let flush = |buf: &mut Vec<u8>, w: &mut dyn std::io::Write, force: bool| {
        if force || buf.len() >= (1 << 16) - 8 {
            let r = w.write_all(buf);
            buf.clear();
            r
        } else {
            Ok(())
        }
    };
    for off in task_offs.iter().chain(run_offs) {
        buf.extend_from_slice(&off.to_le_bytes());
        flush(&mut buf, w, false)?;
    }
    let (kt, tt) = build(task_ids, seed);
    let (kr, rt) = build(run_ids, seed);
    for e in tt.iter().chain(&rt) {
        buf.extend_from_slice(&e.to_le_bytes());
        flush(&mut buf, w, false)?;
    }
    for v in [
        records_len,
        task_offs.len() as u64,
        run_offs.len() as u64,
        seed,
    ] {
        buf.extend_from_slice(&v.to_le_bytes());
    }
    buf.extend_from_slice(&kt.to_le_bytes());
    buf.extend_from_slice(&kr.to_le_bytes());
    flush(&mut buf, w, true)
}

/// The seed a snapshot at `sequence` uses: a function of the sequence alone (the tables of two
/// snapshots at one sequence hash alike; their cold records may still be in another order,
/// FORMAT.md §9).
pub(crate) fn seed_for(sequence: u64) -> u64 {
    mix(sequence ^ 0x6171_5f63_6f6c_6473)
}
