//! The comparison benchmark's bulk load, folio alone, with what it costs per put: user and system
//! CPU, bytes written, write calls and syncs per commit (counted by a storage wrapped around the
//! file). For profiling the write path (`perf record -g target/release/examples/bulk_load`).
//!
//! `cargo run --release --example bulk_load -- [--keys N] [--value-bytes B] [--per-txn T]
//! [--dir D] [--no-sync] [--run-spare P] [--no-verify]`
//!
//! `--no-verify` opens the database with `Builder::verify_checksums(false)`: what verifying the
//! pages each commit touches costs (they were written by the commit before, so none is verified
//! yet).
//!
//! Defaults: 1,000,000 random keys of 16 to 32 bytes (the comparison's generator and seed),
//! 100-byte values, 10,000 puts per durable transaction, in a fresh file under `target/tmp`.

#[path = "support/counted.rs"]
mod counted;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use counted::{Counted, Counts};

use folio::storage::FileStorage;
use folio::{Db, Durability};

/// splitmix64, as `benches/compare/data.rs` has it, so the keys are the comparison's.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut x = self.0;
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }

    fn between(&mut self, lo: usize, hi: usize) -> usize {
        lo + ((self.next_u64() as u128 * (hi - lo + 1) as u128) >> 64) as usize
    }
}

fn keys(count: usize) -> Vec<Vec<u8>> {
    let mut rng = Rng(0x5eed_0001);
    (0..count)
        .map(|_| {
            let mut k = vec![0u8; rng.between(16, 32)];
            for chunk in k.chunks_mut(8) {
                let bytes = rng.next_u64().to_le_bytes();
                chunk.copy_from_slice(&bytes[..chunk.len()]);
            }
            k
        })
        .collect()
}

/// User and system CPU time of this process so far.
fn cpu() -> (Duration, Duration) {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given; RUSAGE_SELF is always valid.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let d = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    (d(usage.ru_utime), d(usage.ru_stime))
}

fn main() {
    let (mut n, mut value_len, mut per_txn, mut dir, mut sync) =
        (1_000_000usize, 100usize, 10_000usize, None::<PathBuf>, true);
    let mut run_spare = None::<u8>;
    let mut verify = true;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--keys" => n = value().parse().expect("--keys N"),
            "--value-bytes" => value_len = value().parse().expect("--value-bytes B"),
            "--per-txn" => per_txn = value().parse().expect("--per-txn T"),
            "--dir" => dir = Some(value().into()),
            "--no-sync" => sync = false,
            "--run-spare" => run_spare = Some(value().parse().expect("--run-spare P")),
            "--no-verify" => verify = false,
            other => panic!("unknown flag {other}"),
        }
    }
    let keys = keys(n);
    let mut values = vec![0u8; value_len + 64];
    let mut rng = Rng(0x5eed_0002);
    for b in values.iter_mut() {
        *b = rng.next_u64() as u8;
    }
    let dir = dir.unwrap_or_else(|| PathBuf::from("target/tmp"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("bulk-load-{}.folio", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let counts = Arc::new(Counts::default());
    let file = Counted {
        file: FileStorage::create_new(&path).unwrap(),
        counts: counts.clone(),
    };
    let durability = if sync {
        Durability::Immediate
    } else {
        Durability::None
    };
    let mut builder = Db::builder()
        .durability(durability)
        .verify_checksums(verify);
    if let Some(p) = run_spare {
        builder = builder.run_spare(p);
    }
    let db = builder.create_with(Box::new(file)).unwrap();
    let (u0, s0) = cpu();
    let start = Instant::now();
    let mut commits = 0u64;
    let mut in_commit = Duration::ZERO;
    for batch in keys.chunks(per_txn) {
        let mut tx = db.begin_write().unwrap();
        {
            let mut tree = tx.open_tree(b"bench").unwrap();
            for (j, k) in batch.iter().enumerate() {
                let at = j % 64;
                tree.put(k, &values[at..at + value_len]).unwrap();
            }
        }
        let commit = Instant::now();
        tx.commit().unwrap();
        in_commit += commit.elapsed();
        commits += 1;
    }
    let time = start.elapsed();
    let (u1, s1) = cpu();
    let stats = db.stats().unwrap();
    let per = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
    let c = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
    println!(
        "{n} keys, {value_len} B values, {per_txn} per txn ({}): {:.0} keys/s; per put {:.2} µs user + {:.2} µs sys; {:.0} bytes written per put; {:.1} writes and {:.1} syncs per commit; per commit {:.1} ms in commit, {:.1} of them in syncs; file {} MiB, {} MiB of it in pages ({} MiB of those free or pending)",
        if sync { "synced" } else { "no sync" },
        n as f64 / time.as_secs_f64(),
        per(u1 - u0),
        per(s1 - s0),
        c(&counts.bytes) / n as f64,
        c(&counts.writes) / commits as f64,
        c(&counts.syncs) / commits as f64,
        in_commit.as_secs_f64() * 1e3 / commits as f64,
        c(&counts.sync_nanos) / 1e6 / commits as f64,
        std::fs::metadata(&path).map(|m| m.len() >> 20).unwrap_or(0),
        (stats.page_count * stats.page_size as u64) >> 20,
        ((stats.free_pages + stats.pending_pages) * stats.page_size as u64) >> 20,
    );
    drop(db);
    let _ = std::fs::remove_file(&path);
}
