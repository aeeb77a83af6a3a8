//! Group commit from Rust threads alone (no Python, no GIL): Immediate appends to the WAL and
//! Immediate submits through the authority, from 1, 8 and 32 threads, interleaved in rounds so
//! every variant sees the same (drifting) disk. Prints records/s, syncs and the ratio to one
//! thread, plus the voluntary context switches of the process per record.
//!
//! ```text
//! cargo run --release --example group_commit -- [DIR] [ROUNDS] [OPS_PER_THREAD]
//! ```
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::Instant;

use _core::authority::Authority;
use _core::event::Event;
use _core::model::*;
use _core::recovery::{bootstrap, BootstrapOptions};
use _core::wal::{Durability, WalOptions, WalWriter};

fn spec(n: u64) -> TaskSpec {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&(n + 1).to_be_bytes());
    id[15] = 0x5a;
    TaskSpec {
        id,
        payload: vec![b'p'; 100],
        content_type: None,
        dedupe_key: None,
        shape: std::sync::Arc::new(TaskShape {
            handler: Some("bench".into()),
            policy: RunPolicy::default(),
            constraints: Constraints::default(),
            metadata: Metadata::default(),
        }),
    }
}

fn tc(n: u64) -> Event {
    Event::TaskCreate {
        spec: Box::new(spec(n)),
        origin: 1,
        at: 1,
    }
}

/// Voluntary and involuntary context switches of the calling thread.
fn ctx_switches() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/thread-self/status").unwrap_or_default();
    let get = |k: &str| {
        s.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (
        get("voluntary_ctxt_switches"),
        get("nonvoluntary_ctxt_switches"),
    )
}

/// CPU seconds (user + system) of the whole process so far.
fn cpu_seconds() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = s.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields after the command: state is index 0; utime is field 14 overall, index 11 here.
    (ticks(11) + ticks(12)) / 100.0
}

static SWITCHES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Runs `threads` threads each calling `op` `per` times; returns seconds.
fn run(threads: usize, per: u64, base: u64, op: Arc<dyn Fn(u64) + Send + Sync>) -> f64 {
    let barrier = Arc::new(Barrier::new(threads + 1));
    let hs: Vec<_> = (0..threads)
        .map(|t| {
            let b = Arc::clone(&barrier);
            let op = Arc::clone(&op);
            std::thread::spawn(move || {
                b.wait();
                let (v0, n0) = ctx_switches();
                for i in 0..per {
                    op(base + (t as u64) * per + i);
                }
                let (v1, n1) = ctx_switches();
                SWITCHES.fetch_add(v1 - v0 + n1 - n0, std::sync::atomic::Ordering::Relaxed);
            })
        })
        .collect();
    barrier.wait();
    let t0 = Instant::now();
    for h in hs {
        h.join().ok();
    }
    t0.elapsed().as_secs_f64()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = args.get(1).cloned().unwrap_or_else(|| "gc-bench".into());
    let rounds: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(3);
    let ops: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(400);
    let dir = Path::new(&dir);
    let _ = std::fs::remove_dir_all(dir);
    let wal = Arc::new(WalWriter::open(dir.join("wal"), WalOptions::default()).expect("wal"));
    let (auth, _) = bootstrap(&dir.join("data"), BootstrapOptions::default()).expect("auth");
    let auth: Arc<Authority> = Arc::new(auth);
    let threads = [1usize, 8, 32];
    let mut totals = vec![(0.0f64, 0u64, 0u64, 0u64, 0.0f64); threads.len() * 2];
    let mut next = 1_000_000u64;
    for _ in 0..rounds {
        for (k, &t) in threads.iter().enumerate() {
            for (j, what) in ["wal", "authority"].iter().enumerate() {
                let per = if t == 1 { ops } else { ops * 4 / t as u64 + 1 };
                let op: Arc<dyn Fn(u64) + Send + Sync> = if *what == "wal" {
                    let w = Arc::clone(&wal);
                    Arc::new(move |n| {
                        w.append(&[tc(n)], Durability::Immediate, None)
                            .expect("append");
                    })
                } else {
                    let a = Arc::clone(&auth);
                    Arc::new(move |n| {
                        a.submit(None, &[tc(n)], Durability::Immediate)
                            .expect("submit");
                    })
                };
                let syncs0 = if *what == "wal" {
                    wal.stats().syncs
                } else {
                    auth.wal().stats().syncs
                };
                let v0 = SWITCHES.load(std::sync::atomic::Ordering::Relaxed);
                let c0 = cpu_seconds();
                let secs = run(t, per, next, op);
                let cpu = cpu_seconds() - c0;
                let v1 = SWITCHES.load(std::sync::atomic::Ordering::Relaxed);
                next += per * t as u64;
                let syncs1 = if *what == "wal" {
                    wal.stats().syncs
                } else {
                    auth.wal().stats().syncs
                };
                let e = &mut totals[k * 2 + j];
                e.0 += secs;
                e.1 += per * t as u64;
                e.2 += syncs1 - syncs0;
                e.3 += v1 - v0;
                e.4 += cpu;
            }
        }
    }
    for (j, what) in ["wal", "authority"].iter().enumerate() {
        let one = totals[j].1 as f64 / totals[j].0;
        for (k, &t) in threads.iter().enumerate() {
            let e = totals[k * 2 + j];
            let rate = e.1 as f64 / e.0;
            println!(
                "{what:9} t{t:<2}  {rate:>9.0} rec/s  {:>5.2}x t1  records/sync {:>5.1}  ctxsw/record {:.2}  cpu µs/record {:.1}",
                rate / one,
                e.1 as f64 / e.2.max(1) as f64,
                e.3 as f64 / e.1 as f64,
                e.4 * 1e6 / e.1 as f64
            );
        }
    }
}
