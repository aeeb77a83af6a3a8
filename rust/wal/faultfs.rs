//! A crash-simulating, fault-injecting [`WalFs`] (tests only).
//!
//! [`FaultFs`] passes every operation through to the real files of one directory (so the
//! writer's own reads — recovery at open uses `std::fs` — see what the OS would show), and
//! records it in one global **op log**, in the order the operations happened:
//!
//! ```text
//! Write{file, offset, bytes} | SetLen{file, len} | Sync{file}          (file data)
//! Create{name, file} | Rename{from, to} | Remove{name} | SyncDir         (directory)
//! ```
//!
//! [`FaultFs::materialize`] replays a prefix of that log (a crash after op `k`) into a
//! *disk model* and writes "what the disk could hold" to a fresh directory:
//!
//! * **File data** is durable only once a `Sync` of that file followed it. Writes and
//!   truncations not yet synced are *pending*; a [`Crash`] mode decides which survive:
//!   none, all, an in-order prefix whose last write is torn at any byte (in-order writeback),
//!   or an arbitrary subset of 512-byte sectors (out-of-order writeback of pages, which
//!   also tears writes at sector boundaries).
//! * **Directory entries** (create, rename, remove) are durable only after a `SyncDir`. Of the
//!   pending ones a *prefix* survives: journaling file systems (ext4, XFS) commit metadata
//!   operations to their journal in order, so a later rename cannot survive an earlier
//!   create's loss. A file whose name did not survive is gone with its data, even if synced.
//!
//! Faults: [`FaultFs::inject`] makes the n-th future operation of a kind fail with an errno
//! (`ENOSPC`, `EIO`, ...), optionally writing a prefix of the bytes first (a short write), and
//! optionally failing every later operation of that kind too (a full disk stays full).
//! A failed `Sync` makes nothing durable: its file's pending writes stay pending.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::fs::{StdFs, WalFile, WalFs};

/// The kinds of operation a fault can target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpKind {
    Write,
    Sync,
    SetLen,
    Create,
    Rename,
    Remove,
    SyncDir,
}

#[derive(Debug, Clone)]
pub enum Op {
    Write {
        ino: u64,
        offset: u64,
        data: Vec<u8>,
    },
    SetLen {
        ino: u64,
        len: u64,
    },
    Sync {
        ino: u64,
    },
    Create {
        name: String,
        ino: u64,
    },
    Rename {
        from: String,
        to: String,
    },
    Remove {
        name: String,
    },
    SyncDir,
}

/// An injected failure: the `nth` (1-based, counted from injection) operation of `kind`
/// fails with `errno`; a failing write first writes `partial` bytes (capped at its length);
/// `sticky` fails every later operation of `kind` as well.
#[derive(Debug, Clone, Copy)]
pub struct Fault {
    pub kind: OpKind,
    pub nth: u64,
    pub errno: i32,
    pub partial: usize,
    pub sticky: bool,
}

/// Which pending (unsynced) file operations survive a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileCrash {
    /// Every unsynced write and truncation is lost.
    DropAll,
    /// Every one reached the disk.
    KeepAll,
    /// In-order writeback: the first `keep` pending operations (in global order) survive, and
    /// the next one, when it is a write, survives torn: its first `torn` bytes only.
    Prefix { keep: usize, torn: usize },
    /// Out-of-order writeback: each 512-byte sector of each pending write (and each pending
    /// truncation) survives or not, by a seeded coin with `keep_ppm` parts per million.
    Sectors { seed: u64, keep_ppm: u32 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crash {
    pub files: FileCrash,
    /// How many pending directory operations survive (a prefix; `usize::MAX`: all).
    pub dir_ops: usize,
}

/// What a crash after a prefix of the op log could leave, before a [`Crash`] choice.
#[derive(Debug, Clone, Copy, Default)]
pub struct Pending {
    pub file_ops: usize,
    pub dir_ops: usize,
}

const SECTOR: u64 = 512;

struct Model {
    ops: Vec<Op>,
    next_ino: u64,
    /// The live directory: name → inode (files we know of).
    names: BTreeMap<String, u64>,
    /// The directory and file contents when the FaultFs was created (all durable).
    initial_names: BTreeMap<String, u64>,
    initial_data: HashMap<u64, Vec<u8>>,
    faults: Vec<(Fault, u64)>,
    seen: HashMap<OpKind, u64>,
}

struct Shared {
    root: PathBuf,
    model: Mutex<Model>,
}

/// See the module documentation. Cloning shares the op log.
#[derive(Clone)]
pub struct FaultFs(Arc<Shared>);

impl fmt::Debug for FaultFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultFs({})", self.0.root.display())
    }
}

fn lock(m: &Mutex<Model>) -> MutexGuard<'_, Model> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn name_of(root: &Path, path: &Path) -> Option<String> {
    if path.parent()? != root {
        return None;
    }
    path.file_name()?.to_str().map(str::to_owned)
}

impl Model {
    /// Counts an operation of `kind` and returns the failure to inject, if any.
    fn check(&mut self, kind: OpKind) -> Option<Fault> {
        let n = self.seen.entry(kind).or_insert(0);
        *n += 1;
        let n = *n;
        self.faults
            .iter()
            .find(|(f, base)| {
                f.kind == kind && (n == base + f.nth || (f.sticky && n > base + f.nth))
            })
            .map(|(f, _)| *f)
    }
}

impl FaultFs {
    /// Wraps the directory `root` (created if missing). Files already in it are taken as
    /// durable, with their current names.
    pub fn new(root: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(root)?;
        let mut model = Model {
            ops: Vec::new(),
            next_ino: 1,
            names: BTreeMap::new(),
            initial_names: BTreeMap::new(),
            initial_data: HashMap::new(),
            faults: Vec::new(),
            seen: HashMap::new(),
        };
        for entry in std::fs::read_dir(root)? {
            let entry = entry?;
            if !entry.file_type()?.is_file() {
                continue;
            }
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let ino = model.next_ino;
            model.next_ino += 1;
            model.initial_data.insert(ino, std::fs::read(entry.path())?);
            model.initial_names.insert(name.clone(), ino);
            model.names.insert(name, ino);
        }
        Ok(Self(Arc::new(Shared {
            root: root.to_path_buf(),
            model: Mutex::new(model),
        })))
    }

    /// Arms a fault (counting operations of its kind from now on).
    pub fn inject(&self, fault: Fault) {
        let mut m = lock(&self.0.model);
        let base = m.seen.get(&fault.kind).copied().unwrap_or(0);
        m.faults.push((fault, base));
    }

    /// Number of operations recorded so far: a crash point (and an acknowledgement mark).
    pub fn op_count(&self) -> usize {
        lock(&self.0.model).ops.len()
    }

    pub fn ops(&self) -> Vec<Op> {
        lock(&self.0.model).ops.clone()
    }

    fn fail(errno: i32) -> io::Error {
        io::Error::from_raw_os_error(errno)
    }

    /// How many file and directory operations are pending (unsynced) after the first `at`
    /// operations: the range a [`Crash`] choice can pick from.
    pub fn pending(&self, at: usize) -> Pending {
        let m = lock(&self.0.model);
        let disk = replay(&m, at);
        Pending {
            file_ops: disk.pending.len(),
            dir_ops: disk.dir_pending.len(),
        }
    }

    /// Writes what the disk could hold after a crash following the first `at` operations,
    /// as chosen by `crash`, into the (existing, empty) directory `out`.
    pub fn materialize(&self, at: usize, crash: Crash, out: &Path) -> io::Result<()> {
        let m = lock(&self.0.model);
        let mut disk = replay(&m, at);
        drop(m);
        let pending = std::mem::take(&mut disk.pending);
        let keep_op = |i: usize| match crash.files {
            FileCrash::DropAll => Keep::No,
            FileCrash::KeepAll => Keep::All,
            FileCrash::Prefix { keep, torn } => {
                if i < keep {
                    Keep::All
                } else if i == keep {
                    Keep::Torn(torn)
                } else {
                    Keep::No
                }
            }
            FileCrash::Sectors { .. } => Keep::Sectors,
        };
        let mut rng = match crash.files {
            FileCrash::Sectors { seed, .. } => Rng(seed ^ 0x9E37_79B9_7F4A_7C15),
            _ => Rng(1),
        };
        let ppm = match crash.files {
            FileCrash::Sectors { keep_ppm, .. } => u64::from(keep_ppm),
            _ => 0,
        };
        for (i, (ino, op)) in pending.into_iter().enumerate() {
            let data = disk.files.entry(ino).or_default();
            match (keep_op(i), op) {
                (Keep::No, _) => {}
                (Keep::All, p) => p.apply(data),
                (
                    Keep::Torn(n),
                    PendingOp::Write {
                        offset,
                        data: bytes,
                    },
                ) => {
                    let n = n.min(bytes.len());
                    PendingOp::Write {
                        offset,
                        data: bytes[..n].to_vec(),
                    }
                    .apply(data);
                }
                (Keep::Torn(_), PendingOp::SetLen(_)) => {}
                (Keep::Sectors, PendingOp::SetLen(len)) => {
                    if rng.below(1_000_000) < ppm {
                        PendingOp::SetLen(len).apply(data);
                    }
                }
                (
                    Keep::Sectors,
                    PendingOp::Write {
                        offset,
                        data: bytes,
                    },
                ) => {
                    let mut at = 0usize;
                    while at < bytes.len() {
                        let abs = offset + at as u64;
                        let step = (SECTOR - abs % SECTOR) as usize;
                        let end = (at + step).min(bytes.len());
                        if rng.below(1_000_000) < ppm {
                            PendingOp::Write {
                                offset: abs,
                                data: bytes[at..end].to_vec(),
                            }
                            .apply(data);
                        }
                        at = end;
                    }
                }
            }
        }
        let mut names = disk.dir;
        for op in disk.dir_pending.iter().take(crash.dir_ops) {
            op.apply(&mut names);
        }
        std::fs::create_dir_all(out)?;
        for (name, ino) in names {
            let data = disk.files.get(&ino).map(Vec::as_slice).unwrap_or_default();
            std::fs::write(out.join(name), data)?;
        }
        Ok(())
    }

    fn record(&self, m: &mut Model, op: Op) {
        m.ops.push(op);
    }
}

enum Keep {
    No,
    All,
    Torn(usize),
    Sectors,
}

/// SplitMix64: a tiny deterministic generator for crash choices.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

#[derive(Debug, Clone)]
enum PendingOp {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

impl PendingOp {
    fn apply(self, file: &mut Vec<u8>) {
        match self {
            Self::Write { offset, data } => {
                let off = offset as usize;
                let end = off + data.len();
                if file.len() < end {
                    file.resize(end, 0);
                }
                file[off..end].copy_from_slice(&data);
            }
            Self::SetLen(len) => file.resize(len as usize, 0),
        }
    }
}

#[derive(Debug, Clone)]
enum DirOp {
    Create(String, u64),
    Rename(String, String),
    Remove(String),
}

impl DirOp {
    fn apply(&self, names: &mut BTreeMap<String, u64>) {
        match self {
            Self::Create(name, ino) => {
                names.insert(name.clone(), *ino);
            }
            Self::Rename(from, to) => {
                if let Some(ino) = names.remove(from) {
                    names.insert(to.clone(), ino);
                }
            }
            Self::Remove(name) => {
                names.remove(name);
            }
        }
    }
}

/// The disk after replaying a prefix of the op log: durable contents plus what is pending.
struct Disk {
    files: HashMap<u64, Vec<u8>>,
    /// Unsynced file operations, in global order.
    pending: Vec<(u64, PendingOp)>,
    dir: BTreeMap<String, u64>,
    dir_pending: Vec<DirOp>,
}

fn replay(m: &Model, at: usize) -> Disk {
    let mut disk = Disk {
        files: m.initial_data.clone(),
        pending: Vec::new(),
        dir: m.initial_names.clone(),
        dir_pending: Vec::new(),
    };
    for op in m.ops.iter().take(at) {
        match op {
            Op::Write { ino, offset, data } => disk.pending.push((
                *ino,
                PendingOp::Write {
                    offset: *offset,
                    data: data.clone(),
                },
            )),
            Op::SetLen { ino, len } => disk.pending.push((*ino, PendingOp::SetLen(*len))),
            Op::Sync { ino } => {
                let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut disk.pending)
                    .into_iter()
                    .partition(|(i, _)| i == ino);
                disk.pending = rest;
                let data = disk.files.entry(*ino).or_default();
                for (_, p) in mine {
                    p.apply(data);
                }
            }
            Op::Create { name, ino } => {
                disk.files.entry(*ino).or_default();
                disk.dir_pending.push(DirOp::Create(name.clone(), *ino));
            }
            Op::Rename { from, to } => disk
                .dir_pending
                .push(DirOp::Rename(from.clone(), to.clone())),
            Op::Remove { name } => disk.dir_pending.push(DirOp::Remove(name.clone())),
            Op::SyncDir => {
                for d in std::mem::take(&mut disk.dir_pending) {
                    d.apply(&mut disk.dir);
                }
            }
        }
    }
    disk
}

#[derive(Debug)]
struct FaultFile {
    fs: Arc<Shared>,
    ino: u64,
    inner: Arc<dyn WalFile>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultFs({})", self.root.display())
    }
}

impl WalFile for FaultFile {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut m = lock(&self.fs.model);
        if let Some(f) = m.check(OpKind::Write) {
            let n = f.partial.min(buf.len());
            if n > 0 {
                self.inner.write_all_at(&buf[..n], offset)?;
                m.ops.push(Op::Write {
                    ino: self.ino,
                    offset,
                    data: buf[..n].to_vec(),
                });
            }
            return Err(FaultFs::fail(f.errno));
        }
        self.inner.write_all_at(buf, offset)?;
        m.ops.push(Op::Write {
            ino: self.ino,
            offset,
            data: buf.to_vec(),
        });
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut m = lock(&self.fs.model);
        if let Some(f) = m.check(OpKind::Sync) {
            return Err(FaultFs::fail(f.errno));
        }
        self.inner.sync_data()?;
        m.ops.push(Op::Sync { ino: self.ino });
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut m = lock(&self.fs.model);
        if let Some(f) = m.check(OpKind::SetLen) {
            return Err(FaultFs::fail(f.errno));
        }
        self.inner.set_len(len)?;
        m.ops.push(Op::SetLen { ino: self.ino, len });
        Ok(())
    }
}

impl WalFs for FaultFs {
    fn open_rw(&self, path: &Path) -> io::Result<Arc<dyn WalFile>> {
        let inner = StdFs.open_rw(path)?;
        let mut m = lock(&self.0.model);
        let name = name_of(&self.0.root, path).ok_or_else(|| {
            io::Error::other(format!("FaultFs: {} is outside its root", path.display()))
        })?;
        let ino = match m.names.get(&name) {
            Some(&ino) => ino,
            None => {
                // A file the model never saw (should not happen): take it as durable.
                let ino = m.next_ino;
                m.next_ino += 1;
                m.initial_data.insert(ino, std::fs::read(path)?);
                m.initial_names.insert(name.clone(), ino);
                m.names.insert(name, ino);
                ino
            }
        };
        Ok(Arc::new(FaultFile {
            fs: Arc::clone(&self.0),
            ino,
            inner,
        }))
    }

    fn create_new(&self, path: &Path) -> io::Result<Arc<dyn WalFile>> {
        let mut m = lock(&self.0.model);
        if let Some(f) = m.check(OpKind::Create) {
            return Err(FaultFs::fail(f.errno));
        }
        let name = name_of(&self.0.root, path).ok_or_else(|| {
            io::Error::other(format!("FaultFs: {} is outside its root", path.display()))
        })?;
        let inner = StdFs.create_new(path)?;
        let ino = m.next_ino;
        m.next_ino += 1;
        m.names.insert(name.clone(), ino);
        self.record(&mut m, Op::Create { name, ino });
        Ok(Arc::new(FaultFile {
            fs: Arc::clone(&self.0),
            ino,
            inner,
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut m = lock(&self.0.model);
        if let Some(f) = m.check(OpKind::Rename) {
            return Err(FaultFs::fail(f.errno));
        }
        StdFs.rename(from, to)?;
        if let (Some(a), Some(b)) = (name_of(&self.0.root, from), name_of(&self.0.root, to)) {
            if let Some(ino) = m.names.remove(&a) {
                m.names.insert(b.clone(), ino);
            }
            self.record(&mut m, Op::Rename { from: a, to: b });
        }
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut m = lock(&self.0.model);
        if let Some(f) = m.check(OpKind::Remove) {
            return Err(FaultFs::fail(f.errno));
        }
        StdFs.remove_file(path)?;
        if let Some(name) = name_of(&self.0.root, path) {
            m.names.remove(&name);
            self.record(&mut m, Op::Remove { name });
        }
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut m = lock(&self.0.model);
        if dir != self.0.root {
            return StdFs.sync_dir(dir);
        }
        if let Some(f) = m.check(OpKind::SyncDir) {
            return Err(FaultFs::fail(f.errno));
        }
        StdFs.sync_dir(dir)?;
        self.record(&mut m, Op::SyncDir);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_disk_model_keeps_only_what_was_synced() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("d");
        let fs = FaultFs::new(&root).unwrap();
        let f = fs.create_new(&root.join("a.tmp")).unwrap();
        f.write_all_at(b"hello", 0).unwrap();
        f.sync_data().unwrap();
        fs.rename(&root.join("a.tmp"), &root.join("a")).unwrap();
        fs.sync_dir(&root).unwrap();
        f.write_all_at(b" world", 5).unwrap();
        let n = fs.op_count();
        let mat = |crash: Crash| {
            let out = t.path().join(format!("out{}", rand_suffix()));
            fs.materialize(n, crash, &out).unwrap();
            out
        };
        let all = |files| Crash {
            files,
            dir_ops: usize::MAX,
        };
        let o = mat(all(FileCrash::DropAll));
        assert_eq!(std::fs::read(o.join("a")).unwrap(), b"hello");
        let o = mat(all(FileCrash::KeepAll));
        assert_eq!(std::fs::read(o.join("a")).unwrap(), b"hello world");
        let o = mat(all(FileCrash::Prefix { keep: 0, torn: 3 }));
        assert_eq!(std::fs::read(o.join("a")).unwrap(), b"hello wo");
        // Before the directory sync, the rename may be lost (the file keeps its tmp name),
        // and before the create is durable, the file may be gone altogether.
        let o = t.path().join("early");
        fs.materialize(
            3,
            Crash {
                files: FileCrash::KeepAll,
                dir_ops: 1,
            },
            &o,
        )
        .unwrap();
        assert_eq!(std::fs::read(o.join("a.tmp")).unwrap(), b"hello");
        assert!(!o.join("a").exists());
        let o = t.path().join("none");
        fs.materialize(
            3,
            Crash {
                files: FileCrash::KeepAll,
                dir_ops: 0,
            },
            &o,
        )
        .unwrap();
        assert_eq!(std::fs::read_dir(&o).unwrap().count(), 0);
        // Faults: the 2nd write fails after writing 2 bytes; sticky faults keep failing.
        fs.inject(Fault {
            kind: OpKind::Write,
            nth: 2,
            errno: libc::ENOSPC,
            partial: 2,
            sticky: true,
        });
        f.write_all_at(b"x", 11).unwrap();
        let e = f.write_all_at(b"yz!", 12).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
        assert!(f.write_all_at(b"q", 20).is_err());
        assert_eq!(
            &std::fs::read(root.join("a")).unwrap()[..14],
            b"hello worldxyz"
        );
    }

    fn rand_suffix() -> u64 {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        N.fetch_add(1, Ordering::Relaxed)
    }
}
