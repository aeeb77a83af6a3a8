//! Hostile lengths never make a decoder allocate beyond its limit.
//!
//! Each decoder is given input whose checksummed header (or length prefix) claims a huge size,
//! and the bytes the global allocator hands out while it runs are counted (a counting
//! allocator, which is why this is its own test binary: one test, nothing else allocating).
//! The WAL reader must refuse a record over its maximum before allocating for it; the event
//! codec and the snapshot decoder must not trust element counts or byte lengths beyond the
//! input they were given.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::alloc::System;
use std::path::Path;

use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

use _core::codec::decode_batch;
use _core::wal::dir::segment_name;
use _core::wal::format::{RecordHeader, RecordKind, SegmentHeader, RECORD_HEADER_LEN};
use _core::wal::{WalOptions, WalReader, WalWriter};
use _core::{snapshot, CoreError, FORMAT_VERSION};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const MIB: u64 = 1 << 20;

/// Bytes allocated (including growth by realloc) while `f` runs.
fn allocated<R>(f: impl FnOnce() -> R) -> (R, u64) {
    let region = Region::new(GLOBAL);
    let r = f();
    let s = region.change();
    (
        r,
        (s.bytes_allocated + s.bytes_reallocated.max(0) as usize) as u64,
    )
}

/// A one-segment WAL whose single record header (valid checksum) claims `claim` payload
/// bytes with payload checksum `payload_crc`; the file is sparse-extended to `file_len` so the
/// claim is not refused for running past the end of the file.
fn hostile_wal(dir: &Path, claim: u32, file_len: u64, payload_crc: u32) {
    let mut bytes = SegmentHeader {
        version: FORMAT_VERSION,
        wal_id: 9,
        first_seq: 1,
    }
    .encode()
    .to_vec();
    let mut h = vec![0u8; RECORD_HEADER_LEN];
    RecordHeader {
        kind: RecordKind::Events,
        payload_len: claim,
        event_count: 1,
        first_seq: 1,
        durable_through: 0,
        payload_crc,
    }
    .encode_into(&mut h);
    bytes.extend(h);
    let path = dir.join(segment_name(1));
    std::fs::write(&path, &bytes).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(file_len)
        .unwrap();
}

/// CRC32C of `n` zero bytes (what a sparse file reads as).
fn zeros_crc(n: u64) -> u32 {
    let zeros = vec![0u8; MIB as usize];
    (0..n / MIB).fold(0, |crc, _| crc32c::crc32c_append(crc, &zeros))
}

fn read_events(dir: &Path, max: u64) -> Result<usize, CoreError> {
    let mut n = 0;
    for e in WalReader::open(dir, max)? {
        e?;
        n += 1;
    }
    Ok(n)
}

#[test]
fn hostile_lengths_never_allocate_beyond_the_limits() {
    let t = tempfile::tempdir().unwrap();
    let max = 8 * MIB;

    // 1. A record claiming more than the maximum: its payload is checksummed in fixed-size
    //    pieces, never read into memory. Here the checksum does not match (a torn write, as
    //    far as anyone can tell): the log ends in a crash tail before it.
    let d = t.path().join("over");
    std::fs::create_dir(&d).unwrap();
    hostile_wal(&d, (64 * MIB) as u32, 65 * MIB, 0);
    let (r, bytes) = allocated(|| read_events(&d, max));
    assert_eq!(r.unwrap(), 0);
    println!("reader, claim 64 MiB over an 8 MiB limit, bad checksum: {bytes} bytes allocated");
    assert!(bytes < 2 * MIB, "{bytes}");
    let (r, bytes) = allocated(|| _core::wal::verify(&d, max));
    assert!(r.unwrap().torn_tail.is_some());
    println!("verify, same log: crash tail, {bytes} bytes allocated");
    assert!(bytes < 2 * MIB, "{bytes}");

    // 1b. The same claim with a matching checksum (an intact record written with a larger
    //     maximum; the sparse file reads as zeros): too large for this reader, still without
    //     allocating for it, and the writer's recovery refuses it the same way.
    let d = t.path().join("over-intact");
    std::fs::create_dir(&d).unwrap();
    hostile_wal(&d, (64 * MIB) as u32, 65 * MIB, zeros_crc(64 * MIB));
    let (r, bytes) = allocated(|| read_events(&d, max));
    let e = r.unwrap_err();
    assert!(
        matches!(e, CoreError::RecordOverReadLimit { size, .. } if size == 64 * MIB),
        "{e}"
    );
    println!("reader, intact 64 MiB record over an 8 MiB limit: refused, {bytes} bytes allocated");
    assert!(bytes < 2 * MIB, "{bytes}");
    let (r, bytes) = allocated(|| {
        WalWriter::open(
            &d,
            WalOptions {
                max_record_size: max,
                ..WalOptions::default()
            },
        )
        .map(drop)
    });
    assert!(matches!(r, Err(CoreError::RecordOverReadLimit { .. })));
    println!("writer open, same log: refused, {bytes} bytes allocated");
    assert!(bytes < 2 * MIB, "{bytes}");
    let (r, bytes) = allocated(|| _core::wal::repair(&d, max, true));
    assert!(matches!(r, Err(CoreError::RecordOverReadLimit { .. })));
    println!("repair, same log: refused, {bytes} bytes allocated");
    assert!(bytes < 2 * MIB, "{bytes}");

    // 2. A claim within the limit: at most one record's worth (plus read buffers).
    let d = t.path().join("under");
    std::fs::create_dir(&d).unwrap();
    hostile_wal(&d, (7 * MIB) as u32, 256 * MIB, 0);
    let (r, bytes) = allocated(|| read_events(&d, max));
    println!("reader, claim 7 MiB under an 8 MiB limit: {r:?}, {bytes} bytes allocated");
    assert!(bytes < max + 2 * MIB, "{bytes}");

    // 3. The event codec: byte strings and lists claiming 2^60 elements.
    let mut attempt_finish = vec![4u8];
    attempt_finish.extend([1u8; 32]);
    attempt_finish.extend([0, 0, 1]); // outcome, error None, output Some
    attempt_finish.extend([0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F]);
    attempt_finish.extend([7u8; 64]);
    let (r, bytes) = allocated(|| decode_batch(&attempt_finish, 1));
    assert!(r.is_err());
    println!("codec, bytes claiming 2^60: refused, {bytes} bytes allocated");
    assert!(bytes < 64 * 1024, "{bytes}");
    let (r, bytes) = allocated(|| decode_batch(&[10, 2], u32::MAX));
    assert!(r.is_err());
    println!("codec, event count 2^32-1 over 2 bytes: refused, {bytes} bytes allocated");
    assert!(bytes < 64 * 1024, "{bytes}");

    // 4. Snapshots: a header claiming a huge body, and a checksummed body whose task list
    //    claims 2^60 entries.
    let mut header = vec![0u8; snapshot::HEADER_LEN];
    header[..8].copy_from_slice(&snapshot::MAGIC);
    header[8..12].copy_from_slice(&snapshot::VERSION.to_le_bytes());
    header[24..32].copy_from_slice(&(1u64 << 40).to_le_bytes());
    let crc = crc32c::crc32c(&header[..36]);
    header[36..40].copy_from_slice(&crc.to_le_bytes());
    let (r, bytes) = allocated(|| snapshot::decode(&header, MIB).map(drop));
    assert!(r.is_err());
    assert!(bytes < 64 * 1024, "{bytes}");
    let path = t.path().join("snapshot-00000000000000000000.aqs");
    std::fs::write(&path, &header).unwrap();
    let (r, bytes) = allocated(|| snapshot::load_file(&path, MIB).map(drop));
    assert!(r.is_err());
    println!("snapshot, body claiming 1 TiB: refused, {bytes} bytes allocated");
    assert!(bytes < 64 * 1024, "{bytes}");
    let mut body = vec![0u8, 0u8]; // sequence 0, paused_at None
    body.extend([0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F]); // tasks: 2^60
    body.extend([0u8; 200]);
    let mut snap = header.clone();
    snap[24..32].copy_from_slice(&(body.len() as u64).to_le_bytes());
    snap[32..36].copy_from_slice(&crc32c::crc32c(&body).to_le_bytes());
    let crc = crc32c::crc32c(&snap[..36]);
    snap[36..40].copy_from_slice(&crc.to_le_bytes());
    snap.extend(&body);
    let (r, bytes) = allocated(|| snapshot::decode(&snap, MIB).map(drop));
    assert!(r.is_err());
    println!("snapshot, task list claiming 2^60 entries: refused, {bytes} bytes allocated");
    assert!(bytes < 2 * MIB, "{bytes}");
}
