//! What a small durable commit costs on a file whose free space is fragmented: the case where
//! writing the whole freelist at every commit cost more than the commit itself.
//!
//! ```text
//! cargo run --release --example freelist_churn -- --dir /work/bench/fl
//! ```
//!
//! It builds a file with free space in many small extents (`--txns N` transactions, default
//! 50,000, each appending 30 keys of 100-byte values to each of two trees, so that the trees'
//! pages alternate in the file; then one tree is deleted), prints the free pages and the
//! freelist's pages, then times `--commits C` (default 300) durable commits of one put each and prints their latency (p50, p99, max), the bytes the
//! process wrote per commit (`wchar` from `/proc/self/io`: every `pwrite`, the freelist's
//! included), and the CPU time per commit (`getrusage`). It uses only the public `Db` API, so the
//! same program builds against an older folio to compare; `--build-only` and `--measure-only`
//! split the two halves, so that two builds can be measured on copies of one file.

use std::path::PathBuf;
use std::time::Instant;

use folio::{Db, Durability};

#[path = "support/etcd_workload.rs"]
#[allow(dead_code)]
mod etcd_workload;
use etcd_workload::Rng;

/// Bytes this process has passed to write calls so far.
fn wchar() -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
    io.lines()
        .find_map(|l| l.strip_prefix("wchar: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// User and system CPU time of this process so far, in microseconds.
fn cpu_us() -> u64 {
    // SAFETY: `getrusage` fills the zeroed struct it is given and reads nothing else.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    us(usage.ru_utime) + us(usage.ru_stime)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Writes two trees side by side, one leaf's worth each per transaction, so that their pages
/// alternate in the file; then deletes one whole, which frees every other run.
fn build_file(db: &Db, txns: u64) -> folio::Result<()> {
    let key = |i: u64| i.to_be_bytes();
    let value = [7u8; 100];
    let mut next = 0;
    for _ in 0..txns {
        let mut tx = db.begin_write()?;
        for name in [&b"a"[..], b"b"] {
            let mut t = tx.open_tree(name)?;
            for i in next..next + 30 {
                t.put(&key(i), &value)?;
            }
        }
        next += 30;
        tx.commit()?;
    }
    let mut tx = db.begin_write()?;
    tx.delete_tree(b"b")?;
    tx.commit()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (mut dir, mut txns, mut commits) = (None, 50_000u64, 300usize);
    let (mut build, mut measure) = (true, true);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--dir" => dir = Some(PathBuf::from(value()?)),
            "--txns" => txns = value()?.parse()?,
            "--commits" => commits = value()?.parse()?,
            "--build-only" => measure = false,
            "--measure-only" => build = false,
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    let dir = dir.ok_or("--dir D is needed: where to build the file")?;
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("churn.folio");
    if build {
        let _ = std::fs::remove_file(&path);
    }
    let db = Db::builder().durability(Durability::None).open(&path)?;
    let key = |i: u64| i.to_be_bytes();
    let started = Instant::now();
    if build {
        build_file(&db, txns)?;
    }
    db.sync()?;
    let keys = db.begin_read()?.tree(b"a")?.map_or(0, |t| t.len());
    let stats = db.stats()?;
    println!(
        "{} {keys} keys (a tree written beside another, since deleted) in {:.1} s: file {} MiB, {} free pages, freelist {} page(s)",
        if build { "built" } else { "opened a file of" },
        started.elapsed().as_secs_f64(),
        stats.file_bytes >> 20,
        stats.free_pages,
        stats.freelist_pages
    );
    if !measure {
        return Ok(());
    }
    let mut rng = Rng::new(42);
    let (w0, c0) = (wchar(), cpu_us());
    let mut latencies = Vec::with_capacity(commits);
    for n in 0..commits {
        let t0 = Instant::now();
        let mut tx = db.begin_write()?;
        tx.set_durability(Durability::Immediate);
        tx.open_tree(b"a")?
            .put(&key(rng.below(keys)), &(n as u64).to_le_bytes())?;
        tx.commit()?;
        latencies.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    let (w1, c1) = (wchar(), cpu_us());
    latencies.sort_by(f64::total_cmp);
    println!(
        "{commits} durable one-put commits: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; written per commit {:.1} KiB; CPU per commit {:.0} us",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies[latencies.len() - 1],
        (w1 - w0) as f64 / commits as f64 / 1024.0,
        (c1 - c0) as f64 / commits as f64,
    );
    let stats = db.stats()?;
    println!(
        "after: {} free pages, freelist {} page(s); check {}",
        stats.free_pages,
        stats.freelist_pages,
        if db.check()?.is_clean() {
            "clean"
        } else {
            "FAILED"
        }
    );
    Ok(())
}
