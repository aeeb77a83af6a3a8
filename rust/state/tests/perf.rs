//! Timing checks, ignored by default: `cargo test --release -- --ignored --nocapture perf`.

use std::time::Instant;

use super::*;
use crate::model::AttemptOutcome as O;
use crate::model::RunState as S;

/// Records of `runs` full lifecycles (9 events each, in 4 records per run, interleaved in
/// blocks so indexes hold many live runs at once).
fn lifecycles(runs: u64) -> Vec<(u64, Vec<Event>)> {
    let mut out = Vec::new();
    let mut seq = 1u64;
    let mut push = |events: Vec<Event>| {
        let n = events.len() as u64;
        out.push((seq, events));
        seq += n;
    };
    let block = 1000;
    let mut base = 0;
    while base < runs {
        let end = (base + block).min(runs);
        for k in base..end {
            let t = id(k * 4);
            let mut s = spec(t);
            if k % 3 == 0 {
                s.shape_mut().constraints.concurrency_key = Some(format!("key{}", k % 64));
            }
            s.shape_mut().metadata.priority = (k % 5) as i32;
            let at = k as i64;
            push(vec![tc(s, at), rc(id(k * 4 + 1), t, 0, at)]);
        }
        for k in base..end {
            push(vec![tr(id(k * 4 + 1), S::Scheduled, S::Ready, k as i64)]);
        }
        for k in base..end {
            let r = id(k * 4 + 1);
            let at = k as i64;
            push(dispatch(r, id(k * 4 + 2), "worker-1", at, 30_000));
            push(vec![
                finish(r, id(k * 4 + 2), O::Success, at + 1),
                tr(r, S::Running, S::Completed, at + 1),
            ]);
        }
        base = end;
    }
    out
}

#[test]
#[ignore = "timing; run in release"]
fn perf_replay_events_per_second() {
    let records = lifecycles(1_000_000 / 9 + 1);
    let events: usize = records.iter().map(|r| r.1.len()).sum();
    let t0 = Instant::now();
    let mut p = Projection::new();
    for (seq, evs) in &records {
        p.apply(*seq, evs).unwrap();
    }
    let dt = t0.elapsed();
    println!(
        "replay: {events} events in {:.3} s = {:.2} M events/s ({} records)",
        dt.as_secs_f64(),
        events as f64 / dt.as_secs_f64() / 1e6,
        records.len()
    );
    let t0 = Instant::now();
    let mut q = Projection::new();
    for (seq, evs) in &records {
        q.check(*seq, evs).unwrap();
        q.apply(*seq, evs).unwrap();
    }
    let dt = t0.elapsed();
    println!(
        "check+apply: {:.2} M events/s",
        events as f64 / dt.as_secs_f64() / 1e6
    );
    // As recovery and the authority apply: finished records frozen in batches.
    let t0 = Instant::now();
    let mut q = Projection::new();
    q.set_auto_freeze(true).unwrap();
    for (seq, evs) in &records {
        q.apply(*seq, evs).unwrap();
    }
    let dt = t0.elapsed();
    println!(
        "replay with auto-freeze: {:.2} M events/s",
        events as f64 / dt.as_secs_f64() / 1e6
    );
}

#[test]
#[ignore = "timing; run in release"]
fn perf_snapshot_with_a_million_finished_runs() {
    let records = lifecycles(1_000_000);
    let mut p = Projection::new();
    // The authority's projection freezes finished records in batches as they finish; its
    // longest single apply (a record that triggers a batch) is the writer stall that replaces
    // freezing everything at the first capture.
    let auto = std::env::var("AQ_PERF_NO_AUTO_FREEZE").is_err();
    if auto {
        p.set_auto_freeze(true).unwrap();
    }
    let t0 = Instant::now();
    let mut slow = Vec::new();
    for (seq, evs) in &records {
        let t = Instant::now();
        p.apply(*seq, evs).unwrap();
        let dt = t.elapsed();
        if dt.as_micros() >= 1000 {
            slow.push(dt.as_secs_f64() * 1e3);
        }
    }
    slow.sort_by(|a, b| b.total_cmp(a));
    println!(
        "apply 1M lifecycles (auto-freeze {auto}): {:.3} s; applies >= 1 ms: {}, >= 10 ms: {}, \
         longest (ms): {:.1?}",
        t0.elapsed().as_secs_f64(),
        slow.len(),
        slow.iter().filter(|&&x| x >= 10.0).count(),
        &slow[..slow.len().min(5)]
    );
    assert_eq!(p.count(S::Completed), 1_000_000);
    let before = p.state_digest();
    let dir = tempfile::tempdir().unwrap();
    // What holds the owner's lock: the capture (without auto-freeze: freezes all 1M runs).
    let t0 = Instant::now();
    let cap = crate::snapshot::Capture::take(&mut p).unwrap();
    let first_capture = t0.elapsed();
    let t0 = Instant::now();
    let (f, size) = crate::snapshot::write_capture(dir.path(), &cap).unwrap();
    let write = t0.elapsed();
    drop(cap);
    assert_eq!(p.state_digest(), before);
    // Steady state: 10k more lifecycles (90k events), then the next capture.
    let more = lifecycles(1_010_000);
    let mut n = 0;
    for (seq, evs) in more.iter().skip(records.len()) {
        p.apply(*seq, evs).unwrap();
        n += evs.len();
    }
    let t0 = Instant::now();
    let cap = crate::snapshot::Capture::take(&mut p).unwrap();
    let next_capture = t0.elapsed();
    drop(cap);
    let t0 = Instant::now();
    let r = crate::snapshot::load_newest(dir.path(), None, u64::MAX, None).unwrap();
    let load = t0.elapsed();
    let (_, q) = r.loaded.unwrap();
    let t0 = Instant::now();
    let d = q.state_digest();
    let digest = t0.elapsed();
    assert_eq!(d, before);
    assert_eq!(q.count(S::Completed), 1_000_000);
    println!(
        "1M finished runs: snapshot {:.1} MB ({:.0} B/run), capture under lock {:.3} s (first), \
         write outside {:.3} s, next capture after {n} events {:.4} s, \
         load+rebuild {:.3} s, digest {:.3} s",
        size as f64 / 1e6,
        size as f64 / 1e6,
        first_capture.as_secs_f64(),
        write.as_secs_f64(),
        next_capture.as_secs_f64(),
        load.as_secs_f64(),
        digest.as_secs_f64()
    );
    let _ = f;
}

#[test]
#[ignore = "timing; run in release"]
fn perf_phases() {
    let records = lifecycles(300_000);
    let mut p = Projection::new();
    for (seq, evs) in &records {
        p.apply(*seq, evs).unwrap();
    }
    let t0 = Instant::now();
    let bytes = crate::snapshot::encode(&mut p).unwrap();
    println!("encode (freezes all) {:.3}", t0.elapsed().as_secs_f64());
    let t0 = Instant::now();
    let bytes2 = crate::snapshot::encode(&mut p).unwrap();
    println!(
        "encode again (nothing to freeze) {:.3}",
        t0.elapsed().as_secs_f64()
    );
    assert_eq!(bytes, bytes2);
    let t0 = Instant::now();
    let q = crate::snapshot::decode_owned(bytes, u64::MAX).unwrap();
    println!("decode+rebuild {:.3}", t0.elapsed().as_secs_f64());
    let t0 = Instant::now();
    drop(q);
    println!("drop {:.3}", t0.elapsed().as_secs_f64());
}

/// Restart with a million finished runs (SPEC §10: under 1 s): files on disk (a snapshot
/// holding 1M completed lifecycles and a WAL holding only the tail after it, as a checkpoint
/// leaves them) to a usable authority, timed as `recovery::bootstrap` end to end (WAL open,
/// snapshot read + rebuild, tail replay), three rounds; each round also reads a cold run.
#[test]
#[ignore = "timing; run in release"]
fn perf_open_with_a_million_finished_runs() {
    use crate::recovery::{bootstrap, BootstrapOptions, SNAPSHOT_DIR, WAL_DIR};
    use crate::wal::{Durability, WalOptions, WalWriter};
    let records = lifecycles(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let (snap_seq, full) = {
        let mut p = Projection::new();
        for (seq, evs) in &records {
            p.apply(*seq, evs).unwrap();
        }
        std::fs::create_dir_all(dir.path().join(SNAPSHOT_DIR)).unwrap();
        crate::snapshot::write_atomic(&dir.path().join(SNAPSHOT_DIR), &mut p).unwrap();
        let snap_seq = p.latest_sequence();
        // The tail: 10k more lifecycles (90k events) in the log after the snapshot.
        let more = lifecycles(1_010_000);
        let wal = WalWriter::open(
            dir.path().join(WAL_DIR),
            WalOptions {
                start_sequence: snap_seq + 1,
                ..WalOptions::default()
            },
        )
        .unwrap();
        for (seq, evs) in more.iter().skip(records.len()) {
            p.apply(*seq, evs).unwrap();
            wal.append(evs, Durability::Deferred, Some(*seq)).unwrap();
        }
        wal.close().unwrap();
        (snap_seq, p.state_digest())
    };
    drop(records);
    let mut opts = BootstrapOptions::default();
    opts.authority.snapshot_every = 0;
    opts.authority.snapshot_on_close = false;
    let mut times = Vec::new();
    for round in 0..3 {
        let t0 = Instant::now();
        let (a, report) = bootstrap(dir.path(), opts.clone()).unwrap();
        let cold = a.read(|p| p.run(&id(4 * 17 + 1)).map(|r| r.state)).unwrap();
        let dt = t0.elapsed();
        assert_eq!(cold, Some(S::Completed));
        assert_eq!(report.snapshot.as_ref().map(|s| s.1), Some(snap_seq));
        assert_eq!(report.events_replayed, 90_000);
        if round == 0 {
            assert_eq!(a.read(|p| p.state_digest()).unwrap(), full);
        }
        println!(
            "open round {round}: {:.3} s (bootstrap {} ms: snapshot load {} ms, tail replay {} \
             ms)",
            dt.as_secs_f64(),
            report.duration_ms,
            report.snapshot_load_ms,
            report.replay_ms
        );
        times.push(dt.as_secs_f64());
        let t0 = Instant::now();
        a.close().unwrap();
        drop(a);
        println!("  close+drop {:.3} s", t0.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    println!(
        "open with 1M finished runs + 90k-event tail: median {:.3} s (min {:.3}, max {:.3})",
        times[1], times[0], times[2]
    );
}
