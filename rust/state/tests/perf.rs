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
                s.constraints.concurrency_key = Some(format!("key{}", k % 64));
            }
            s.metadata.priority = (k % 5) as i32;
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
}

#[test]
#[ignore = "timing; run in release"]
fn perf_snapshot_with_a_million_finished_runs() {
    let records = lifecycles(1_000_000);
    let mut p = Projection::new();
    for (seq, evs) in &records {
        p.apply(*seq, evs).unwrap();
    }
    assert_eq!(p.count(S::Completed), 1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    let f = crate::snapshot::write_atomic(dir.path(), &mut p).unwrap();
    let write = t0.elapsed();
    let size = std::fs::metadata(&f.path).unwrap().len();
    let t0 = Instant::now();
    let r = crate::snapshot::load_newest(dir.path(), None, u64::MAX).unwrap();
    let load = t0.elapsed();
    let (_, q) = r.loaded.unwrap();
    drop(p);
    let p = q;
    let bytes = std::fs::read(&f.path).unwrap();
    let t0 = Instant::now();
    let (img, _): (crate::state::image::HotImage, _) =
        postcard::take_from_bytes(&bytes[crate::snapshot::HEADER_LEN..]).unwrap();
    let dec = t0.elapsed();
    let t0 = Instant::now();
    let q = Projection::from_parts(img, None).unwrap();
    println!(
        "  phases: postcard decode {:.3} s, rebuild {:.3} s",
        dec.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
    let t0 = Instant::now();
    let d = q.state_digest();
    let digest = t0.elapsed();
    assert_eq!(d, p.state_digest());
    println!(
        "1M finished runs: snapshot {:.1} MB, write {:.3} s, load+rebuild {:.3} s, digest {:.3} s",
        size as f64 / 1e6,
        write.as_secs_f64(),
        load.as_secs_f64(),
        digest.as_secs_f64()
    );
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
    println!("encode {:.3}", t0.elapsed().as_secs_f64());
    let t0 = Instant::now();
    let (img, _): (crate::state::image::HotImage, _) =
        postcard::take_from_bytes(&bytes[crate::snapshot::HEADER_LEN..]).unwrap();
    println!("postcard decode {:.3}", t0.elapsed().as_secs_f64());
    let t0 = Instant::now();
    let q = Projection::from_parts(img, None).unwrap();
    println!("from_image {:.3}", t0.elapsed().as_secs_f64());
    let t0 = Instant::now();
    drop(q);
    println!("drop {:.3}", t0.elapsed().as_secs_f64());
}
