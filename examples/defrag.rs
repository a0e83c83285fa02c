//! folio's main example: an etcd-like store that churns, is compacted, and is then defragmented
//! while you watch, with the time beside what a plain copy of the same bytes takes on this disk.
//!
//! ```sh
//! cargo run --release --example defrag                    # ~100 MiB live, under a minute
//! cargo run --release --example defrag -- --live-mb 400   # a file of more than 1 GB
//! ```
//!
//! Flags: `--live-mb N` (live value bytes after the first round, default 100), `--rounds R`
//! (rounds of updates and deletes, default 3), `--dir D` (where to build; default a temporary
//! directory under the current one), `--path P` (build the store at P and keep it),
//! `--skip-defrag` (build and compact only, for looking at with `folio map`), `--cold` (close the
//! store, drop the page cache, and defrag offline; the copy is from a cold cache too; needs root).

#[path = "support/etcd_workload.rs"]
mod etcd_workload;

use std::path::PathBuf;

use etcd_workload::{Workload, build, direct_copy, drop_caches, plain_copy};
use folio::{Db, DefragOptions, Store};

struct Args {
    workload: Workload,
    dir: Option<PathBuf>,
    path: Option<PathBuf>,
    skip_defrag: bool,
    cold: bool,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        workload: Workload {
            live_bytes: 100 << 20,
            rounds: 3,
        },
        dir: None,
        path: None,
        skip_defrag: false,
        cold: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--live-mb" => {
                let mb: u64 = value()?.parse().map_err(|e| format!("--live-mb: {e}"))?;
                a.workload.live_bytes = mb << 20;
            }
            "--rounds" => {
                a.workload.rounds = value()?.parse().map_err(|e| format!("--rounds: {e}"))?
            }
            "--dir" => a.dir = Some(value()?.into()),
            "--path" => a.path = Some(value()?.into()),
            "--skip-defrag" => a.skip_defrag = true,
            "--cold" => a.cold = true,
            other => {
                return Err(format!(
                    "unknown flag {other} (see the top of examples/defrag.rs)"
                ));
            }
        }
    }
    Ok(a)
}

fn drop_caches_or_fail() -> Result<(), String> {
    if drop_caches() {
        Ok(())
    } else {
        Err("--cold needs root to write /proc/sys/vm/drop_caches".into())
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = args()?;
    let tmp = tempfile::Builder::new()
        .prefix("folio-defrag-")
        .tempdir_in(a.dir.clone().unwrap_or_else(|| ".".into()))?;
    let path = a
        .path
        .clone()
        .unwrap_or_else(|| tmp.path().join("etcd.folio"));
    if path.exists() {
        return Err(format!("{} exists; give a new --path", path.display()).into());
    }
    println!(
        "folio defrag example: pods of 1-4 KiB under /registry/pods/<ns>/<name>, {} live, {} rounds of updates and deletes",
        mib(a.workload.live_bytes),
        a.workload.rounds
    );

    // 1. Build an etcd-like store and compact it: the file keeps its size, full of holes.
    let built = build(&path, a.workload)?;
    println!(
        "built {} pods, {} revisions in {:.1} s; compacted at revision {} in {:.1} s",
        built.pods,
        built.revisions,
        built.build.as_secs_f64(),
        built.compacted,
        built.compact.as_secs_f64()
    );
    let store = Store::with_db(Db::open(&path)?)?;
    let before = store.db().stats()?;
    let hash = store.hash_by_rev(store.current_revision())?;
    println!(
        "before: file {}, live {}, reclaimable {} ({:.0}% of the file)",
        mib(before.file_bytes),
        mib(before.live_bytes()),
        mib(before.reclaimable_bytes()),
        100.0 * before.reclaimable_bytes() as f64 / before.file_bytes as f64
    );
    if a.skip_defrag {
        println!("--skip-defrag: the store is at {}", path.display());
        return Ok(());
    }

    // 2. Defrag it: online, the store open, its pages in the page cache (they were read to build
    //    the key index); or, with --cold, offline, closed, after the page cache is dropped.
    // 3. The same bytes, copied plainly (read, write, fsync): the floor the defrag is held to;
    //    and copied with the writes around the page cache, as the defrag writes: the disk itself.
    let copy_path = tmp.path().join("plain-copy");
    let direct_path = tmp.path().join("direct-copy");
    let (store, report, copy, direct) = if a.cold {
        drop(store);
        drop_caches_or_fail()?;
        let report = folio::defrag(&path, &DefragOptions::default())?;
        drop_caches_or_fail()?;
        let copy = plain_copy(&path, &copy_path, report.size_after)?;
        drop_caches_or_fail()?;
        let direct = direct_copy(&path, &direct_path, report.size_after)?;
        (Store::with_db(Db::open(&path)?)?, report, copy, direct)
    } else {
        let report = store.defrag(&DefragOptions::default())?;
        let copy = plain_copy(&path, &copy_path, report.size_after)?;
        let direct = direct_copy(&path, &direct_path, report.size_after)?;
        (store, report, copy, direct)
    };
    std::fs::remove_file(&copy_path)?;
    let _ = std::fs::remove_file(&direct_path);
    println!(
        "defrag: {} -> {} in {:.3} s ({:.2} s/GB written)",
        mib(report.size_before),
        mib(report.size_after),
        report.duration.as_secs_f64(),
        report.seconds_per_gb()
    );
    println!(
        "writers held {:.1} ms (the last of {} catch-up rounds and the swap)",
        report.pause.as_secs_f64() * 1e3,
        report.rounds.len()
    );
    if let Some(warm) = report.warm {
        println!(
            "the new file read into the page cache in {:.3} s, before the swap",
            warm.as_secs_f64()
        );
    }
    let gb = report.size_after as f64 / 1e9;
    println!(
        "plain copy of the same {} (read, write, fsync): {:.3} s ({:.2} s/GB)",
        mib(report.size_after),
        copy.as_secs_f64(),
        copy.as_secs_f64() / gb
    );
    if let Some(direct) = direct {
        println!(
            "direct copy of the same bytes (read, O_DIRECT write, fsync): {:.3} s ({:.2} s/GB)",
            direct.as_secs_f64(),
            direct.as_secs_f64() / gb
        );
    }
    println!(
        "defrag / plain copy: {:.2}x{}{}",
        report.duration.as_secs_f64() / copy.as_secs_f64(),
        direct.map_or(String::new(), |d| format!(
            "; defrag / direct copy: {:.2}x",
            report.duration.as_secs_f64() / d.as_secs_f64()
        )),
        if a.cold {
            " (cold cache, offline)"
        } else {
            " (warm cache, online)"
        }
    );

    // 4. Nothing lost: the checker, the hash of every key-value revision, and a reopen.
    let after = store.db().stats()?;
    let check = store.db().check()?;
    let same_hash = store.hash_by_rev(store.current_revision())?.hash == hash.hash;
    println!(
        "after: file {}, free pages {}, check {}, hash {}",
        mib(after.file_bytes),
        after.free_pages,
        if check.is_clean() { "clean" } else { "FAILED" },
        if same_hash { "unchanged" } else { "CHANGED" }
    );
    if !check.is_clean() || !same_hash {
        return Err(format!("the defragged store differs: {check}").into());
    }
    if a.path.is_some() {
        println!("the store is at {}", path.display());
    }
    Ok(())
}
