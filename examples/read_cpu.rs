//! The CPU time of a point read and of a range scan, counted on the reading thread's own clock, so
//! that two builds can be compared on a shared machine: time spent waiting for a core, which
//! swings wall-clock benchmarks here by half, does not count.
//!
//! `cargo run --release --example read_cpu -- [--rounds R]`
//!
//! It loads the btree benchmark's tree (`benches/btree.rs`: 1,000,000 keys of 16 bytes, 100-byte
//! values, 10,000 per transaction) into a file under `target/tmp`, reads it once end to end (so
//! that every page is in the page cache and verified), then, `R` times (default 3): 20,000 scans
//! of 1,000 entries from spread-out keys, and 1,000,000 gets.

#[path = "../benches/support/keys.rs"]
mod keys;

use std::hint::black_box;
use std::time::Duration;

use folio::{Db, Durability};
use keys::key;

const KEYS: u64 = 1_000_000;
const PER_TXN: u64 = 10_000;
const SCANS: u64 = 20_000;
const SCAN_LEN: usize = 1000;

/// The calling thread's CPU time so far.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes only the timespec it is given, which lives across the call.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn main() {
    let mut rounds = 3;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--rounds" => {
                rounds = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--rounds R")
            }
            other => panic!("unknown flag {other}"),
        }
    }
    std::fs::create_dir_all("target/tmp").unwrap();
    let dir = tempfile::tempdir_in("target/tmp").unwrap();
    let db = Db::builder()
        .durability(Durability::None)
        .open(dir.path().join("read-cpu.folio"))
        .unwrap();
    let value = [7u8; 100];
    for batch in 0..KEYS / PER_TXN {
        let mut tx = db.begin_write().unwrap();
        let mut tree = tx.open_tree(b"bench").unwrap();
        for i in batch * PER_TXN..(batch + 1) * PER_TXN {
            tree.put(&key(i), &value).unwrap();
        }
        tx.commit().unwrap();
    }
    db.sync().unwrap();
    let tx = db.begin_read().unwrap();
    let tree = tx.tree(b"bench").unwrap().unwrap();
    let mut bytes = 0;
    for entry in tree.range(&[][..]..).unwrap() {
        let (k, v) = entry.unwrap();
        bytes += k.len() + v.len();
    }
    black_box(bytes);
    for round in 1..=rounds {
        let start = thread_cpu();
        let mut j = 0;
        for _ in 0..SCANS {
            j = (j + 104_729) % KEYS;
            let mut n = 0;
            for entry in tree.range(key(j).as_slice()..).unwrap().take(SCAN_LEN) {
                let (k, v) = entry.unwrap();
                n += k.len() + v.len();
            }
            black_box(n);
        }
        let scanned = thread_cpu();
        let mut i = 0;
        for _ in 0..KEYS {
            i = (i + 7919) % KEYS;
            black_box(tree.get(&key(i)).unwrap().unwrap());
        }
        let got = thread_cpu();
        println!(
            "round {round}: a scan of {SCAN_LEN} entries {:.1} µs of CPU, a get {:.3} µs",
            (scanned - start).as_secs_f64() * 1e6 / SCANS as f64,
            (got - scanned).as_secs_f64() * 1e6 / KEYS as f64
        );
    }
}
