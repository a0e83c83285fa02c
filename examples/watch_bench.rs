//! Measures watch: the put throughput of 4 writer threads with no watcher and with 1,000 watchers
//! over overlapping prefixes (read by 2 consumer threads as the writes go), the events per second
//! delivered to those watchers, and the memory of an idle watcher (RSS and anonymous memory before
//! and after opening 100,000 of them).
//!
//! `cargo run --release --example watch_bench -- [--seconds S] [--watchers N] [--consumers C] [--idle N] [--dir D]`
//!
//! On a machine with few cores the consumer threads compete with the writers for CPU: the write
//! throughput with watchers then measures the whole machine's work per put (the writers' fan-out
//! and the consumers' copies of every event), not the writers' share alone.
//!
//! The watchers: one in ten watches everything under `/registry/`, the others one of 10 namespace
//! prefixes or one of 100 object-name prefixes, so each put matches about 150 watchers. Writers
//! put 100-byte values under `/registry/ns-X/obj-YYYY` with group commit.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use folio::{KeyRange, Store, WatchOptions, WatchResponse, Watcher};

struct Args {
    seconds: u64,
    watchers: usize,
    consumers: usize,
    idle: usize,
    dir: Option<std::path::PathBuf>,
}

fn args() -> Args {
    let mut a = Args {
        seconds: 5,
        watchers: 1000,
        consumers: 2,
        idle: 100_000,
        dir: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--seconds" => a.seconds = value().parse().expect("--seconds S"),
            "--watchers" => a.watchers = value().parse().expect("--watchers N"),
            "--consumers" => a.consumers = value().parse().expect("--consumers C"),
            "--idle" => a.idle = value().parse().expect("--idle N"),
            "--dir" => a.dir = Some(value().into()),
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

const WRITERS: u64 = 4;

/// Puts from 4 threads for `secs`; returns the puts made.
fn write_for(store: &Store, secs: u64) -> u64 {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..WRITERS)
        .map(|t| {
            let (store, stop, done) = (store.clone(), stop.clone(), done.clone());
            thread::spawn(move || {
                let mut i = t;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("/registry/ns-{}/obj-{:04}", i % 10, i % 10_000);
                    store.put(key.as_bytes(), &[b'v'; 100]).unwrap();
                    done.fetch_add(1, Ordering::Relaxed);
                    i += WRITERS;
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    done.load(Ordering::Relaxed)
}

fn prefix(i: usize) -> KeyRange {
    if i.is_multiple_of(10) {
        KeyRange::prefix(b"/registry/")
    } else if i.is_multiple_of(2) {
        KeyRange::prefix(format!("/registry/ns-{}/", i % 10).as_bytes())
    } else {
        KeyRange::prefix(format!("/registry/ns-{}/obj-{:02}", i % 10, i % 100).as_bytes())
    }
}

/// `(VmRSS, RssAnon)` of this process in KiB.
fn memory_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("RssAnon:"))
}

fn main() {
    let a = args();
    let tmp = tempfile::tempdir().unwrap();
    let dir = a.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    let store = Store::open(dir.join("watch_bench.folio")).unwrap();
    // Warm up: every key exists, so both runs write the same tree.
    write_for(&store, 1);

    let none = write_for(&store, a.seconds);
    let none_rate = none as f64 / a.seconds as f64;
    println!("puts/s, 4 writers, no watcher:        {none_rate:>10.0}");

    let watchers: Vec<Watcher> = (0..a.watchers)
        .map(|i| store.watch(prefix(i), WatchOptions::new()).unwrap())
        .collect();
    let watchers = Arc::new(watchers);
    let stop = Arc::new(AtomicBool::new(false));
    let delivered = Arc::new(AtomicU64::new(0));
    let n = a.consumers.max(1);
    let consumers: Vec<_> = (0..n)
        .map(|c| {
            let (watchers, stop, delivered) = (watchers.clone(), stop.clone(), delivered.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let mut got = 0;
                    for w in watchers.iter().skip(c).step_by(n) {
                        while let Some(r) = w.try_recv().unwrap() {
                            if let WatchResponse::Events { events, .. } = r {
                                got += events.len() as u64;
                            }
                        }
                    }
                    delivered.fetch_add(got, Ordering::Relaxed);
                    if got == 0 {
                        thread::sleep(Duration::from_millis(1));
                    }
                }
            })
        })
        .collect();
    let start = Instant::now();
    let with = write_for(&store, a.seconds);
    let events = delivered.load(Ordering::Relaxed);
    let secs = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for c in consumers {
        c.join().unwrap();
    }
    let with_rate = with as f64 / a.seconds as f64;
    println!(
        "puts/s, 4 writers, {} watchers, {} consumer threads: {with_rate:>10.0} ({:.0}% of none)",
        a.watchers,
        n,
        100.0 * with_rate / none_rate
    );
    println!(
        "events/s delivered to {} watchers: {:>10.0} ({:.0} per put)",
        a.watchers,
        events as f64 / secs,
        events as f64 / with.max(1) as f64
    );
    drop(watchers);

    let (rss0, anon0) = memory_kib();
    let idle: Vec<Watcher> = (0..a.idle)
        .map(|i| {
            store
                .watch(format!("/idle/{i:08}").as_bytes(), WatchOptions::new())
                .unwrap()
        })
        .collect();
    let (rss1, anon1) = memory_kib();
    println!(
        "idle watchers: {}; RSS +{} KiB, anonymous +{} KiB: {:.0} bytes (RSS) / {:.0} bytes (anon) per watcher",
        idle.len(),
        rss1.saturating_sub(rss0),
        anon1.saturating_sub(anon0),
        rss1.saturating_sub(rss0) as f64 * 1024.0 / a.idle as f64,
        anon1.saturating_sub(anon0) as f64 * 1024.0 / a.idle as f64
    );
}
