//! `folio bench`: a built-in workload on a new store, like `bbolt bench`: write, update, delete,
//! compact, read and defrag, each phase timed, then the checker.
//!
//! Keys are `/bench/key-NNNNNNNN`, written in order; updates visit every key once in a scattered
//! order and deletes remove every other key, so compaction leaves free pages all over the file for
//! the defrag to close.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use folio::{Db, DefragOptions, Durability, KeyRange, Op, RangeOptions, Store};

use crate::show::{at, count, counted, size};
use crate::{BenchArgs, CliResult, Failure};

fn key(i: u64) -> Vec<u8> {
    format!("/bench/key-{i:08}").into_bytes()
}

/// `len` bytes that do not compress, different for each `seed`.
fn value(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The order updates visit the keys: a stride coprime with `n` visits each once, far apart.
fn scattered(n: u64) -> impl Iterator<Item = u64> {
    let mut stride = (n / 2 + 1) | 1;
    while gcd(stride, n) != 1 {
        stride += 2;
    }
    (0..n).map(move |i| (i * stride) % n.max(1))
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// One timed phase: `ops` operations in `secs` seconds.
fn phase(out: &mut dyn Write, name: &str, ops: u64, unit: &str, secs: f64) -> CliResult {
    let rate = if secs > 0.0 { ops as f64 / secs } else { 0.0 };
    writeln!(
        out,
        "{name:<8} {:>12} {unit:<9} {secs:>8.3} s {:>12} {unit}/s",
        count(ops),
        count(rate as u64)
    )?;
    out.flush()?;
    Ok(())
}

/// Runs `ops` as write transactions of `batch` operations each.
fn in_batches(
    store: &Store,
    path: &Path,
    batch: u64,
    ops: impl Iterator<Item = Op>,
) -> CliResult<u64> {
    let mut done = 0;
    let mut pending = Vec::with_capacity(batch as usize);
    for op in ops {
        pending.push(op);
        if pending.len() as u64 == batch {
            done += pending.len() as u64;
            store
                .txn()
                .then(pending.drain(..))
                .commit()
                .map_err(at(path))?;
        }
    }
    if !pending.is_empty() {
        done += pending.len() as u64;
        store.txn().then(pending).commit().map_err(at(path))?;
    }
    Ok(done)
}

pub fn run(args: &BenchArgs, out: &mut dyn Write) -> CliResult {
    let temp;
    let dir: PathBuf = match &args.dir {
        Some(dir) if dir.is_dir() => dir.clone(),
        Some(dir) if dir.exists() => {
            return Err(Failure::new(format!(
                "{}: not a directory; --dir names the directory bench makes its store in",
                dir.display()
            )));
        }
        Some(dir) => {
            return Err(Failure::new(format!(
                "{}: no such directory",
                dir.display()
            )));
        }
        None => {
            temp = tempfile::tempdir().map_err(|e| {
                Failure::new(format!(
                    "cannot make a temporary directory: {}",
                    crate::show::io_error(&e)
                ))
            })?;
            temp.path().to_path_buf()
        }
    };
    let path = dir.join("bench.folio");
    if path.exists() {
        return Err(Failure::new(format!(
            "{}: already exists; bench needs a new file",
            path.display()
        )));
    }
    let n = args.keys;
    writeln!(
        out,
        "folio bench: {}, {}-byte values, {} per transaction, durable commits, in {}",
        counted(n, "key", "keys"),
        args.value_bytes,
        counted(args.batch, "operation", "operations"),
        path.display()
    )?;
    writeln!(
        out,
        "{:<8} {:>12} {:<9} {:>10} {:>12}",
        "phase", "operations", "", "time", "rate"
    )?;
    let db = Db::builder()
        .durability(Durability::Immediate)
        .open(&path)
        .map_err(at(&path))?;
    let store = Store::with_db(db).map_err(at(&path))?;

    let start = Instant::now();
    let ops = (0..n).map(|i| Op::put(&key(i), &value(i, args.value_bytes)));
    let done = in_batches(&store, &path, args.batch, ops)?;
    phase(out, "write", done, "puts", start.elapsed().as_secs_f64())?;

    let start = Instant::now();
    let ops = scattered(n).map(|i| Op::put(&key(i), &value(i + n, args.value_bytes)));
    let done = in_batches(&store, &path, args.batch, ops)?;
    phase(out, "update", done, "puts", start.elapsed().as_secs_f64())?;

    let start = Instant::now();
    let ops = (0..n)
        .step_by(2)
        .map(|i| Op::delete_range(KeyRange::key(&key(i))));
    let done = in_batches(&store, &path, args.batch, ops)?;
    phase(
        out,
        "delete",
        done,
        "deletes",
        start.elapsed().as_secs_f64(),
    )?;

    let stored = |store: &Store| -> CliResult<u64> {
        let tx = store.db().begin_read().map_err(at(&path))?;
        Ok(tx
            .tree(b"mvcc.key")
            .map_err(at(&path))?
            .map_or(0, |t| t.len()))
    };
    let before = stored(&store)?;
    let start = Instant::now();
    store.compact(store.current_revision()).map_err(at(&path))?;
    let removed = before.saturating_sub(stored(&store)?);
    phase(
        out,
        "compact",
        removed,
        "revisions",
        start.elapsed().as_secs_f64(),
    )?;

    let reads = n.div_ceil(2);
    let start = Instant::now();
    for i in scattered(n).take(reads as usize) {
        let r = store
            .range(KeyRange::key(&key(i)), RangeOptions::current())
            .map_err(at(&path))?;
        if r.kvs.len() as u64 != i % 2 {
            return Err(Failure::new(format!(
                "{}: key {i} read back {} times after the deletes (a bug in folio)",
                path.display(),
                r.kvs.len()
            )));
        }
    }
    phase(out, "get", reads, "gets", start.elapsed().as_secs_f64())?;

    let stats = store.db().stats().map_err(at(&path))?;
    writeln!(out)?;
    writeln!(
        out,
        "before defrag: {} file, {} live, {} reclaimable",
        size(stats.file_bytes),
        size(stats.live_bytes()),
        size(stats.reclaimable_bytes())
    )?;
    let report = store.defrag(&DefragOptions::default()).map_err(at(&path))?;
    crate::defrag::print_report(&path, &report, out)?;

    let check = store.db().check().map_err(at(&path))?;
    if !check.is_clean() {
        return Err(Failure::new(format!(
            "{}: after the bench, {check}",
            path.display()
        )));
    }
    writeln!(
        out,
        "check   ok: {} checked",
        counted(check.pages_checked, "page", "pages")
    )?;
    // The close persists the key index in the file (for a fast open), after the defrag's report:
    // say what the file holds then.
    store.close().map_err(at(&path))?;
    let closed = std::fs::metadata(&path)
        .map_err(|e| Failure::new(format!("{}: {}", path.display(), crate::show::io_error(&e))))?;
    writeln!(
        out,
        "closed: file {} with the key index persisted in it",
        size(closed.len())
    )?;
    Ok(())
}
