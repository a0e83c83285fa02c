//! How freeing a big file's blocks stalls another file's syncs: the question behind the pace of a
//! defrag's release of its old file (`DEFRAG_RELEASE_STEP`, `DEFRAG_RELEASE_PAUSE`).
//!
//! ```sh
//! cargo run --release --example release_stall -- [--gib G] [--step-mb S] [--pause-ms P] [--dir D]
//! cargo run --release --example release_stall -- --control-secs 30   # the same loop, nothing freed
//! ```
//!
//! It writes a file of `G` GiB (default 1) of random bytes, syncs it and unlinks it, as a defrag
//! leaves its old file; then one thread writes 4 KiB to a second file and `fdatasync`s it in a
//! loop while, from one second in, the first file is shrunk `S` MiB at a time (default: the
//! library's step) with `P` ms between steps (default: the library's pause), as the release thread
//! does. It prints the syncs' p50, p99 and longest before and during the shrinking, and the
//! slowest syncs and shrink steps with when they happened.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use folio::limits::{DEFRAG_RELEASE_PAUSE, DEFRAG_RELEASE_STEP};

struct Args {
    gib: u64,
    step: u64,
    pause: Duration,
    dir: PathBuf,
    control: Option<Duration>,
}

fn args() -> Args {
    let mut a = Args {
        gib: 1,
        step: DEFRAG_RELEASE_STEP,
        pause: DEFRAG_RELEASE_PAUSE,
        dir: PathBuf::from("target/tmp"),
        control: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--gib" => a.gib = value().parse().expect("--gib G"),
            "--step-mb" => a.step = value().parse::<u64>().expect("--step-mb S") << 20,
            "--pause-ms" => a.pause = Duration::from_millis(value().parse().expect("--pause-ms P")),
            "--dir" => a.dir = PathBuf::from(value()),
            "--control-secs" => {
                a.control = Some(Duration::from_secs(
                    value().parse().expect("--control-secs"),
                ))
            }
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

/// A splitmix64 stream of bytes: incompressible, as a database's pages are to the disk.
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn summary(mut v: Vec<Duration>) -> String {
    if v.is_empty() {
        return "none".into();
    }
    v.sort_unstable();
    let at = |q: f64| v[((v.len() - 1) as f64 * q) as usize];
    format!(
        "{} syncs, p50 {}, p99 {}, longest {}",
        v.len(),
        ms(at(0.5)),
        ms(at(0.99)),
        ms(v[v.len() - 1])
    )
}

fn main() -> std::io::Result<()> {
    let a = args();
    std::fs::create_dir_all(&a.dir)?;
    let big_path = a.dir.join("release-stall-big.bin");
    let mut big = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&big_path)?;
    if a.control.is_none() {
        let chunk = random_bytes(64 << 20, 7);
        for _ in 0..a.gib * 16 {
            big.write_all(&chunk)?;
        }
        big.sync_all()?;
    }
    std::fs::remove_file(&big_path)?;
    let _ = std::process::Command::new("sync").status();
    std::thread::sleep(Duration::from_secs(2));

    let probe = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(a.dir.join("release-stall-probe.bin"))?;
    let stop = AtomicBool::new(false);
    let t0 = Instant::now();
    let (syncs, steps, shrink) = std::thread::scope(|s| -> std::io::Result<_> {
        let prober = s.spawn(|| -> std::io::Result<Vec<(Duration, Duration)>> {
            let page = random_bytes(4096, 11);
            let mut out = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                probe.write_all_at(&page, 0)?;
                probe.sync_data()?;
                out.push((started - t0, started.elapsed()));
            }
            Ok(out)
        });
        std::thread::sleep(Duration::from_secs(1));
        let shrink_start = t0.elapsed();
        let mut steps: Vec<(Duration, Duration)> = Vec::new();
        match a.control {
            Some(secs) => std::thread::sleep(secs),
            None => {
                let mut len = a.gib << 30;
                while len > 0 {
                    len = len.saturating_sub(a.step);
                    let started = Instant::now();
                    big.set_len(len)?;
                    steps.push((started - t0 - shrink_start, started.elapsed()));
                    std::thread::sleep(a.pause);
                }
            }
        }
        let shrink_end = t0.elapsed();
        std::thread::sleep(Duration::from_secs(1));
        stop.store(true, Ordering::Relaxed);
        let syncs = prober.join().expect("the probe thread")?;
        Ok((syncs, steps, (shrink_start, shrink_end)))
    })?;
    drop::<File>(big);

    let (start, end) = shrink;
    match a.control {
        Some(secs) => println!(
            "control: the sync loop for {} s with nothing freed",
            secs.as_secs()
        ),
        None => println!(
            "shrank {} GiB in steps of {} MiB with {} pauses in {:.1} s",
            a.gib,
            a.step >> 20,
            ms(a.pause),
            (end - start).as_secs_f64()
        ),
    }
    let phase = |from: Duration, to: Duration| {
        syncs
            .iter()
            .filter(|(at, _)| *at >= from && *at < to)
            .map(|&(_, l)| l)
            .collect::<Vec<_>>()
    };
    println!(
        "  4 KiB write + fdatasync, before: {}",
        summary(phase(Duration::ZERO, start))
    );
    println!(
        "  4 KiB write + fdatasync, during: {}",
        summary(phase(start, end))
    );
    let mut slow: Vec<_> = syncs
        .iter()
        .filter(|(at, _)| *at >= start && *at < end)
        .collect();
    slow.sort_unstable_by_key(|(_, l)| std::cmp::Reverse(*l));
    for (at, l) in slow.iter().take(3) {
        println!(
            "  slow sync at +{:.2} s: {}",
            (*at - start).as_secs_f64(),
            ms(*l)
        );
    }
    let mut steps = steps;
    steps.sort_unstable_by_key(|(_, l)| std::cmp::Reverse(*l));
    for (at, l) in steps.iter().take(3) {
        println!(
            "  slow shrink step at +{:.2} s: {}",
            at.as_secs_f64(),
            ms(*l)
        );
    }
    Ok(())
}
