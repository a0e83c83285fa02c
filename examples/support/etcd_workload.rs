//! An etcd-like workload, shared by `examples/defrag.rs` and `benches/defrag.rs`: pods under
//! `/registry/pods/<namespace>/<name>` with values of 1 to 4 KiB, created, then updated and
//! deleted in rounds, then compacted, the way a Kubernetes cluster churns its etcd. And the
//! physical floor a defrag is measured against: a plain copy of the same number of bytes.

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use folio::{Db, Durability, KeyRange, Store};

/// The shape of the workload.
#[derive(Clone, Copy, Debug)]
pub struct Workload {
    /// Bytes of values live after the first round (pods × about 2.5 KiB).
    pub live_bytes: u64,
    /// Rounds of updates and deletes after the first.
    pub rounds: u32,
}

/// What building the store did.
#[derive(Clone, Copy, Debug)]
pub struct Built {
    pub pods: u64,
    pub revisions: i64,
    pub compacted: i64,
    pub build: Duration,
    pub compact: Duration,
}

const NAMESPACES: u64 = 50;
const VALUE_MIN: usize = 1024;
const VALUE_MAX: usize = 4096;

/// A small, fast, seeded generator (xorshift64*), so every run writes the same data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

pub fn pod_key(i: u64) -> Vec<u8> {
    format!(
        "/registry/pods/ns-{:02}/pod-{:08x}",
        i % NAMESPACES,
        i.wrapping_mul(0x9e37_79b9) >> 8
    )
    .into_bytes()
}

fn pod_value(rng: &mut Rng, buf: &mut Vec<u8>) {
    let len = VALUE_MIN + rng.below((VALUE_MAX - VALUE_MIN + 1) as u64) as usize;
    buf.clear();
    while buf.len() < len {
        buf.extend_from_slice(&rng.next().to_le_bytes());
    }
    buf.truncate(len);
}

/// Builds the store at `path` and compacts it one revision short of its last (so that the last
/// revision is above the floor, as in a live cluster). Writes skip the sync (a bulk load that can
/// be redone); everything is synced before this returns.
pub fn build(path: &Path, w: Workload) -> folio::Result<Built> {
    let started = Instant::now();
    let db = Db::builder().durability(Durability::None).open(path)?;
    let store = Store::with_db(db)?;
    let pods = w.live_bytes / ((VALUE_MIN + VALUE_MAX) / 2) as u64;
    let mut rng = Rng::new(0x5eed);
    let mut value = Vec::with_capacity(VALUE_MAX);
    let mut live = vec![true; pods as usize];
    for i in 0..pods {
        pod_value(&mut rng, &mut value);
        store.put(&pod_key(i), &value)?;
    }
    // Each round: a tenth of the pods are deleted, six tenths updated, and last round's deleted
    // pods come back.
    for _ in 0..w.rounds {
        for i in 0..pods {
            let key = pod_key(i);
            match (live[i as usize], rng.below(10)) {
                (true, 0) => {
                    store.delete_range(KeyRange::key(&key))?;
                    live[i as usize] = false;
                }
                (true, 1..=6) | (false, _) => {
                    pod_value(&mut rng, &mut value);
                    store.put(&key, &value)?;
                    live[i as usize] = true;
                }
                (true, _) => {}
            }
        }
    }
    store.db().sync()?;
    let build = started.elapsed();
    let started = Instant::now();
    let revisions = store.current_revision();
    store.compact(revisions - 1)?;
    store.db().sync()?;
    Ok(Built {
        pods,
        revisions,
        compacted: revisions - 1,
        build,
        compact: started.elapsed(),
    })
}

/// Copies `len` bytes of `from` into a new file `to` with plain reads and writes of 8 MiB, then
/// syncs it: what moving that many bytes costs on this disk. Returns the time taken.
pub fn plain_copy(from: &Path, to: &Path, len: u64) -> std::io::Result<Duration> {
    let started = Instant::now();
    let mut src = std::fs::File::open(from)?;
    let mut dst = std::fs::File::create(to)?;
    let mut buf = vec![0u8; 8 << 20];
    let mut left = len;
    while left > 0 {
        let n = (buf.len() as u64).min(left) as usize;
        src.read_exact(&mut buf[..n])?;
        dst.write_all(&buf[..n])?;
        left -= n as u64;
    }
    dst.sync_all()?;
    Ok(started.elapsed())
}

/// As [`plain_copy`], but the writes go around the page cache (`O_DIRECT`), as a defrag's do:
/// what writing that many bytes costs the disk itself, with no page-cache memory to fill. `None`
/// where the file system refuses `O_DIRECT` (tmpfs) or `len` is not a multiple of 4 KiB.
pub fn direct_copy(from: &Path, to: &Path, len: u64) -> std::io::Result<Option<Duration>> {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    const ALIGN: usize = 4096;
    if !len.is_multiple_of(ALIGN as u64) {
        return Ok(None);
    }
    let started = Instant::now();
    let mut src = std::fs::File::open(from)?;
    let dst = match std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(to)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut backing = vec![0u8; (8 << 20) + ALIGN];
    let at = backing.as_ptr().align_offset(ALIGN);
    let buf = &mut backing[at..at + (8 << 20)];
    let mut done = 0;
    while done < len {
        let n = (buf.len() as u64).min(len - done) as usize;
        src.read_exact(&mut buf[..n])?;
        dst.write_all_at(&buf[..n], done)?;
        done += n as u64;
    }
    dst.sync_all()?;
    Ok(Some(started.elapsed()))
}

/// Asks the kernel to drop its page cache, so the next reads come from the disk. Needs root;
/// returns whether it worked.
pub fn drop_caches() -> bool {
    let synced = std::process::Command::new("sync")
        .status()
        .is_ok_and(|s| s.success());
    synced && std::fs::write("/proc/sys/vm/drop_caches", b"1").is_ok()
}
