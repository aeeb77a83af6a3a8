#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use proptest::prelude::*;

use super::*;
use crate::error::CorruptionReason;
use crate::state::tests::gen::Driver;

fn sample() -> Projection {
    let mut d = Driver::new();
    let mut x: u64 = 7;
    for _ in 0..300 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        d.step(((x >> 33) as u8, (x >> 41) as u16, (x >> 20) as u16));
    }
    assert!(d.p.run_count() > 5);
    d.p
}

#[test]
fn round_trip_keeps_the_digest_and_rebuilds_indexes() {
    let mut p = sample();
    let bytes = encode(&mut p).unwrap();
    assert_eq!(&bytes[..8], b"AQSNAPSH");
    let mut q = decode(&bytes, DEFAULT_MAX_SNAPSHOT_SIZE).unwrap();
    assert_eq!(p.state_digest(), q.state_digest());
    assert_eq!(p.counts(), q.counts());
    assert_eq!(p.latest_sequence(), q.latest_sequence());
    q.debug_check_indexes().unwrap();
    // Encoding is deterministic.
    assert_eq!(bytes, encode(&mut q).unwrap());
    let mut empty = Projection::new();
    let e = decode(&encode(&mut empty).unwrap(), 1 << 20).unwrap();
    assert_eq!(e.state_digest(), empty.state_digest());
}

#[test]
fn every_truncation_is_detected() {
    let bytes = encode(&mut sample()).unwrap();
    for n in 0..bytes.len() {
        assert!(
            decode(&bytes[..n], u64::MAX).is_err(),
            "truncation at {n} accepted"
        );
    }
    assert!(matches!(
        decode(&bytes[..10], u64::MAX),
        Err(CorruptionReason::IncompleteHeader)
    ));
    assert!(matches!(
        decode(&bytes[..HEADER_LEN + 1], u64::MAX),
        Err(CorruptionReason::IncompletePayload)
    ));
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(decode(&longer, u64::MAX).is_err());
}

#[test]
fn every_bit_flip_is_detected() {
    let bytes = encode(&mut sample()).unwrap();
    let mut b = bytes.clone();
    for i in 0..b.len() {
        for bit in 0..8 {
            b[i] ^= 1 << bit;
            assert!(
                decode(&b, u64::MAX).is_err(),
                "flip of byte {i} bit {bit} accepted"
            );
            b[i] ^= 1 << bit;
        }
    }
}

#[test]
fn header_rules() {
    let bytes = encode(&mut sample()).unwrap();
    let body = (bytes.len() - HEADER_LEN) as u64;
    assert!(matches!(
        decode(&bytes, body - 1),
        Err(CorruptionReason::BadLength(_))
    ));
    // Other versions (the first layout, 1, and future ones) are refused with their number.
    for v in [1u8, 5] {
        let mut other = bytes.clone();
        other[8] = v;
        let crc = crc32c::crc32c(&other[..36]);
        other[36..40].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(
            decode(&other, u64::MAX),
            Err(CorruptionReason::UnsupportedVersion(x)) if x == u32::from(v)
        ));
    }
}

/// Version 2 (the cold section without lookup tables) is still read, to the same state.
#[test]
fn version_2_snapshots_still_load() {
    let mut p = sample();
    let bytes = encode(&mut p).unwrap();
    let v2 = super::to_version2(&bytes);
    assert_eq!(u32::from_le_bytes(v2[8..12].try_into().unwrap()), 2);
    assert!(v2.len() < bytes.len());
    let q = decode(&v2, u64::MAX).unwrap();
    assert_eq!(q.state_digest(), p.state_digest());
    assert!(q.debug_check_indexes().is_ok());
    // Re-encoded, it is a version-3 snapshot again, byte for byte.
    let mut q = q;
    assert_eq!(encode(&mut q).unwrap(), bytes);
}

/// A body with a valid checksum but hostile content: re-checksummed garbage.
fn with_body(body: &[u8], sequence: u64) -> Vec<u8> {
    let mut out = vec![0u8; HEADER_LEN];
    out[..8].copy_from_slice(&MAGIC);
    out[8..12].copy_from_slice(&VERSION.to_le_bytes());
    out[16..24].copy_from_slice(&sequence.to_le_bytes());
    out[24..32].copy_from_slice(&(body.len() as u64).to_le_bytes());
    out[32..36].copy_from_slice(&crc32c::crc32c(body).to_le_bytes());
    let crc = crc32c::crc32c(&out[..36]);
    out[36..40].copy_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(body);
    out
}

#[test]
fn checksummed_but_inconsistent_images_are_refused() {
    let mut p = sample();
    let bytes = encode(&mut p).unwrap();
    let body = &bytes[HEADER_LEN..];
    // Same body under another header sequence.
    assert!(decode(&with_body(body, p.latest_sequence() + 1), u64::MAX).is_err());
    // Mutated bodies, re-checksummed: refused or (rarely) a different but valid image,
    // never a panic.
    for i in (0..body.len()).step_by(3) {
        let mut b = body.to_vec();
        b[i] = b[i].wrapping_add(1);
        let _ = decode(&with_body(&b, p.latest_sequence()), u64::MAX);
    }
}

proptest! {
    #[test]
    fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..400), seq in any::<u64>()) {
        prop_assert!(decode(&bytes, 1 << 20).is_err());
        let _ = decode(&with_body(&bytes, seq), 1 << 20);
    }
}

mod files_tests {
    use super::*;

    #[test]
    fn write_list_load_newest_and_remove_older() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = Driver::new();
        let mut x: u64 = 99;
        let mut written = Vec::new();
        for round in 0..3 {
            for _ in 0..100 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                d.step(((x >> 33) as u8, (x >> 41) as u16, (x >> 20) as u16));
            }
            let f = write_atomic(dir.path(), &mut d.p).unwrap();
            assert_eq!(
                f.path.file_name().unwrap().to_str().unwrap(),
                files::file_name(d.p.latest_sequence())
            );
            assert!(f.path.to_str().unwrap().ends_with(".aqs"), "round {round}");
            written.push((f, d.p.state_digest()));
        }
        std::fs::write(dir.path().join("unrelated.txt"), b"x").unwrap();
        let listed = list(dir.path()).unwrap();
        assert_eq!(listed.len(), 3);
        assert!(listed[0].sequence > listed[1].sequence);
        let r = load_newest(dir.path(), None, DEFAULT_MAX_SNAPSHOT_SIZE, None).unwrap();
        let (f, p) = r.loaded.unwrap();
        assert_eq!(f, written[2].0);
        assert_eq!(p.state_digest(), written[2].1);
        assert!(r.skipped.is_empty());

        // Newest truncated, the middle one has a flipped byte: fall back to the oldest.
        let newest = &written[2].0.path;
        let len = std::fs::metadata(newest).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(newest)
            .unwrap()
            .set_len(len / 2)
            .unwrap();
        let mid = &written[1].0.path;
        let mut b = std::fs::read(mid).unwrap();
        let n = b.len();
        b[n - 3] ^= 0x40;
        std::fs::write(mid, b).unwrap();
        let r = load_newest(dir.path(), None, DEFAULT_MAX_SNAPSHOT_SIZE, None).unwrap();
        let (f, p) = r.loaded.unwrap();
        assert_eq!(f, written[0].0);
        assert_eq!(p.state_digest(), written[0].1);
        assert_eq!(r.skipped.len(), 2);
        assert!(
            r.skipped[0].1.contains("incomplete payload"),
            "{:?}",
            r.skipped
        );
        assert!(r.skipped[1].1.contains("crc mismatch"), "{:?}", r.skipped);

        // A snapshot newer than the log is skipped with a reason.
        let r = load_newest(dir.path(), Some(written[0].0.sequence - 1), u64::MAX, None).unwrap();
        assert!(r.loaded.is_none());
        assert_eq!(r.skipped.len(), 3);
        assert!(r.skipped[2].1.contains("newer than the log"));

        // Size limit.
        let e = load_file(&written[0].0.path, 10).unwrap_err();
        assert_eq!(e.python_class(), "SnapshotError");

        std::fs::write(
            dir.path().join("snapshot-00000000000000000001.aqs.tmp"),
            b"x",
        )
        .unwrap();
        let removed = remove_older(dir.path(), written[2].0.sequence).unwrap();
        assert_eq!(removed, 3);
        let left = list(dir.path()).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].sequence, written[2].0.sequence);
        assert!(dir.path().join("unrelated.txt").exists());
    }

    #[test]
    fn set_aside_renames_out_of_the_listing_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let name = "snapshot-00000000000000000007.aqs";
        let put = || {
            std::fs::write(dir.path().join(name), b"snapshot").unwrap();
            list(dir.path()).unwrap().remove(0)
        };
        let first = set_aside(&put()).unwrap();
        let second = set_aside(&put()).unwrap();
        assert_eq!(first, dir.path().join(format!("{name}.stale")));
        assert_eq!(second, dir.path().join(format!("{name}.stale.1")));
        assert!(list(dir.path()).unwrap().is_empty());
        assert_eq!(std::fs::read(first).unwrap(), b"snapshot");
    }

    /// A snapshot names the log it was taken from; one naming another log is skipped and
    /// listed as foreign, one naming none (older format, or written outside an authority) is
    /// trusted as before.
    #[test]
    fn a_snapshot_of_another_log_is_skipped_as_foreign() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = sample();
        let cap = Capture::take(&mut p).unwrap().bound_to(0xfeed);
        let (f, _) = write_capture(dir.path(), &cap).unwrap();
        assert_eq!(log_id_of(&f.path).unwrap(), Some(0xfeed));
        assert_eq!(load_file_bound(&f.path, u64::MAX).unwrap().1, Some(0xfeed));
        let ours = load_newest(dir.path(), None, u64::MAX, Some(0xfeed)).unwrap();
        assert_eq!(ours.loaded.unwrap().0, f);
        let theirs = load_newest(dir.path(), None, u64::MAX, Some(0xbeef)).unwrap();
        assert!(theirs.loaded.is_none());
        assert_eq!(theirs.foreign, vec![f.clone()]);
        assert!(
            theirs.skipped[0].1.contains("another log"),
            "{:?}",
            theirs.skipped
        );
        // Unbound: loaded whatever the log.
        let unbound = write_atomic(dir.path(), &mut p).unwrap();
        assert_eq!(unbound, f);
        assert_eq!(log_id_of(&f.path).unwrap(), None);
        let any = load_newest(dir.path(), None, u64::MAX, Some(0xbeef)).unwrap();
        assert!(any.loaded.is_some() && any.foreign.is_empty());
    }

    #[test]
    fn empty_or_missing_directory() {
        let dir = tempfile::tempdir().unwrap();
        let r = load_newest(dir.path(), None, u64::MAX, None).unwrap();
        assert!(r.loaded.is_none() && r.skipped.is_empty());
        let e = list(&dir.path().join("missing")).unwrap_err();
        assert_eq!(e.python_class(), "StorageIOError");
    }
}

/// A snapshot file of at least `MAP_AT_LEAST` bytes is mapped, not read: it loads to the
/// same state, and its cold records answer lookups from the mapping.
#[test]
fn large_snapshot_files_are_mapped_and_load_the_same() {
    use crate::model::RunState as S;
    use crate::state::tests::{id, rc, spec, tc, tr};
    let mut p = Projection::new();
    let mut seq = 1;
    for k in 0..1500u64 {
        let t = id(2 * k);
        let mut s = spec(t);
        s.payload = vec![k as u8; 1024];
        p.apply(seq, &[tc(s, 0), rc(id(2 * k + 1), t, 0, 0)])
            .unwrap();
        seq += 2;
        if k % 3 != 0 {
            p.apply(seq, &[tr(id(2 * k + 1), S::Scheduled, S::Canceled, 5)])
                .unwrap();
            seq += 1;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let f = write_atomic(dir.path(), &mut p).unwrap();
    assert!(std::fs::metadata(&f.path).unwrap().len() >= files::MAP_AT_LEAST);
    let q = load_file(&f.path, u64::MAX).unwrap();
    assert_eq!(q.state_digest(), p.state_digest());
    assert!(q.debug_check_indexes().is_ok());
    assert!(q.cold.run_count() >= 1000);
    for k in [1u64, 2, 1499] {
        assert_eq!(q.run(&id(2 * k + 1)), p.run(&id(2 * k + 1)));
        assert_eq!(q.task(&id(2 * k)), p.task(&id(2 * k)));
    }
}
