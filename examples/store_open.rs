//! How long a large store takes to open (the key index is loaded from the index persisted in
//! the file, or rebuilt from every record) and how much memory its index holds.
//!
//! `cargo run --release --example store_open -- --dir D [--keys N] [--revisions R] [--value-bytes B]`
//!
//! The first run builds a store of N keys (default 1,000,000) × R revisions (default 5) of B-byte
//! values (default 100) into `D/store-N-R-B.folio`, one round of puts over every key per revision,
//! 1,000 puts per transaction, without syncs; later runs reuse it (a run that builds starts itself
//! again, so the build's heap is not counted). A store is closed with its index persisted; a file
//! without one (made by an older build) is opened once first, and the close persists it, and the
//! run starts itself again. Then it opens the store once and reports the
//! process's anonymous memory (`RssAnon` in `/proc/self/status`: heap, not mapped file pages)
//! before and after, per live key; then it opens it three more times and reports the median time,
//! wall clock and CPU (user + system, all threads: on a busy machine the wall clock also counts
//! waiting for a core). The file is read just before, so the opens are warm.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use folio::{Db, Durability, Op, Store};

struct Args {
    keys: u64,
    revisions: u64,
    value_bytes: usize,
    dir: PathBuf,
}

fn args() -> Args {
    let mut a = Args {
        keys: 1_000_000,
        revisions: 5,
        value_bytes: 100,
        dir: PathBuf::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--keys" => a.keys = value().parse().expect("--keys N"),
            "--revisions" => a.revisions = value().parse().expect("--revisions R"),
            "--value-bytes" => a.value_bytes = value().parse().expect("--value-bytes B"),
            "--dir" => a.dir = value().into(),
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(!a.dir.as_os_str().is_empty(), "--dir D is required");
    a
}

fn key(i: u64) -> Vec<u8> {
    format!("/registry/pods/ns-{:03}/pod-{:08}", i % 100, i).into_bytes()
}

/// The CPU time (user and system, every thread) this process has used so far, from
/// `/proc/self/stat` (in clock ticks of 10 ms, the kernel's `USER_HZ` on Linux).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // The fields after the command name (which is in parentheses and may hold spaces).
    let rest = &stat[stat.rfind(')').expect("(comm)") + 2..];
    let field = |n: usize| -> u64 {
        rest.split_whitespace()
            .nth(n)
            .and_then(|f| f.parse().ok())
            .expect("a number")
    };
    // utime and stime are fields 14 and 15 of the line: 11 and 12 counting from 0 after the name.
    Duration::from_millis((field(11) + field(12)) * 10)
}

/// The process's resident anonymous memory in bytes (`RssAnon` of `/proc/self/status`).
fn rss_anon() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("RssAnon:"))
        .expect("RssAnon in /proc/self/status");
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("RssAnon: N kB");
    kb * 1024
}

fn build(path: &std::path::Path, a: &Args) {
    let partial = path.with_extension("building");
    let _ = std::fs::remove_file(&partial);
    let builder = Db::builder().durability(Durability::None);
    let store = Store::open_with(&partial, &builder).unwrap();
    let value = vec![b'v'; a.value_bytes];
    let start = Instant::now();
    let all: Vec<u64> = (0..a.keys).collect();
    for _round in 0..a.revisions {
        for chunk in all.chunks(1000) {
            let ops: Vec<Op> = chunk.iter().map(|&i| Op::put(&key(i), &value)).collect();
            store.txn().then(ops).commit().unwrap();
        }
    }
    store.db().sync().unwrap();
    drop(store);
    std::fs::rename(&partial, path).unwrap();
    println!(
        "built {} keys x {} revisions in {:.1} s",
        a.keys,
        a.revisions,
        start.elapsed().as_secs_f64()
    );
}

fn main() {
    let a = args();
    std::fs::create_dir_all(&a.dir).unwrap();
    let path = a.dir.join(format!(
        "store-{}-{}-{}.folio",
        a.keys, a.revisions, a.value_bytes
    ));
    if !path.exists() {
        build(&path, &a);
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args(std::env::args().skip(1))
            .status()
            .unwrap();
        std::process::exit(status.code().unwrap_or(1));
    }
    let len = std::fs::metadata(&path).unwrap().len();
    // Warm the page cache: read the file once.
    std::io::copy(
        &mut std::fs::File::open(&path).unwrap(),
        &mut std::io::sink(),
    )
    .unwrap();

    let before = rss_anon();
    let t = Instant::now();
    let store = Store::open(&path).unwrap();
    let first = t.elapsed();
    let after = rss_anon();
    if let folio::IndexOrigin::Rebuilt { reason } = store.index_origin() {
        println!("the index was rebuilt ({reason}); persisting it and starting again");
        let t = Instant::now();
        drop(store);
        println!(
            "the close persisted the index in {:.3} s",
            t.elapsed().as_secs_f64()
        );
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args(std::env::args().skip(1))
            .status()
            .unwrap();
        std::process::exit(status.code().unwrap_or(1));
    }
    println!("index: {:?}", store.index_origin());
    let live = store
        .range(
            folio::KeyRange::prefix(b"/registry/"),
            folio::RangeOptions::current().count_only(),
        )
        .unwrap()
        .count;
    assert_eq!(live, a.keys, "every key is live");
    drop(store);

    let (mut times, mut cpu): (Vec<Duration>, Vec<Duration>) = (0..3)
        .map(|_| {
            let (t, c) = (Instant::now(), cpu_time());
            let store = Store::open(&path).unwrap();
            let e = (t.elapsed(), cpu_time() - c);
            drop(store);
            e
        })
        .unzip();
    times.sort();
    cpu.sort();
    println!(
        "store of {} keys x {} revisions, {}-byte values: {} MiB file",
        a.keys,
        a.revisions,
        a.value_bytes,
        len >> 20
    );
    println!(
        "open, warm: median of 3 {:.3} s (runs {:.3} / {:.3} / {:.3} s; the first open {:.3} s)",
        times[1].as_secs_f64(),
        times[0].as_secs_f64(),
        times[1].as_secs_f64(),
        times[2].as_secs_f64(),
        first.as_secs_f64()
    );
    println!(
        "open, CPU time (user + system): median of 3 {:.3} s",
        cpu[1].as_secs_f64()
    );
    println!(
        "RssAnon before the open {} MiB, after {} MiB: {:.0} bytes per live key",
        before >> 20,
        after >> 20,
        after.saturating_sub(before) as f64 / live as f64
    );
}
