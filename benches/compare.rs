//! folio against LMDB (through heed) and redb: the same workloads on fresh files, in one run.
//!
//! `cargo bench --features compare --bench compare`
//!
//! Each workload runs on every engine back to back, and the repetitions of the read workloads take
//! turns between the engines, so the noise of a shared machine falls on all of them alike. Every
//! engine commits durably (folio and redb `Durability::Immediate`, LMDB's default flags) and gets
//! the same keys: random, 16 to 32 bytes, from a seeded generator.
//!
//! 1. **Bulk load**: every key with a 100-byte value, then (fresh files) with a 1 KiB value,
//!    10,000 puts per transaction. Once per engine, with the CPU time it took per put (user and
//!    system, from `/proc/self/stat`).
//! 2. **Point reads** of existing keys in random order, from 1 and from 2 threads, in the 100-byte
//!    databases: one lookup per key in total (split between the threads), the median of the
//!    repetitions.
//! 3. **Range scans** of 1,000 entries from random existing keys: one scan per 100 keys, the
//!    median of the repetitions.
//! 4. **Defrag**: fragment a database (see `compare/fragment.rs`: about 256 MiB of live data in a
//!    file several times that), then each engine's own way to a compact file, started with the
//!    file out of the page cache. Right after, the plain copy of the engine's output (read it, write
//!    it to a new file, fsync), also cold, is the floor it is compared with: the median of three.
//!
//! Environment: `FOLIO_COMPARE_KEYS` (default 1000000), `FOLIO_COMPARE_LIVE_MB` (default 256) and
//! `FOLIO_COMPARE_REPS` (default 5) shrink or grow the run; a smoke run with
//! `FOLIO_COMPARE_KEYS=50000 FOLIO_COMPARE_LIVE_MB=16` takes well under a minute.
//! `FOLIO_COMPARE_ENGINES` (default `folio,lmdb,redb`) and `FOLIO_COMPARE_WORKLOADS` (default
//! `load,reads,defrag`) run a part of it: `FOLIO_COMPARE_ENGINES=folio,lmdb
//! FOLIO_COMPARE_WORKLOADS=load` runs only the bulk loads of folio and LMDB (`reads` runs the
//! bulk loads of 100-byte values too, which it reads).
//!
//! Prints a table as it goes and writes `target/compare/results.md` and
//! `target/compare/defrag.svg`. The databases live under `target/tmp/compare/`, on the same disk
//! as the build.

#[path = "compare/data.rs"]
mod data;
#[path = "compare/disk.rs"]
mod disk;
#[path = "compare/engines/mod.rs"]
mod engines;
#[path = "compare/fragment.rs"]
mod fragment;
#[path = "compare/machine.rs"]
mod machine;
#[path = "compare/report.rs"]
mod report;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use data::{Change, Keys, Rng, Values};
use engines::{Compact, Engine, FolioEngine, LmdbEngine, RedbEngine, Scanned};
use fragment::FragmentPlan;
use machine::Machine;
use report::{DefragRow, Results, Row};

pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const KEY_SEED: u64 = 0x5eed_0001;
const VALUE_SEED: u64 = 0x5eed_0002;
const LOOKUP_SEED: u64 = 0x5eed_0003;
const FRAGMENT_SEED: u64 = 0x5eed_0004;
/// Puts per transaction in the bulk loads.
const PER_TXN: usize = 10_000;
/// Value length in the databases the point reads and range scans run in.
const READ_VALUE_LEN: usize = 100;
/// Entries per range scan.
const SCAN_LEN: usize = 1_000;
/// Plain copies of each engine's output; the median is the floor. Syncs on this shared virtual
/// disk vary by 2-3x from one moment to the next, so one copy is not enough.
const PLAIN_COPIES: usize = 3;

/// The size of the run, from the environment.
struct Config {
    keys: usize,
    live_bytes: u64,
    reps: usize,
    engines: Vec<String>,
    workloads: Vec<String>,
}

impl Config {
    fn from_env() -> Result<Config> {
        fn var(name: &str, default: u64) -> Result<u64> {
            match std::env::var(name) {
                Ok(v) => Ok(v
                    .parse()
                    .map_err(|e| format!("{name}={v} is not a number: {e}"))?),
                Err(_) => Ok(default),
            }
        }
        fn list(name: &str, all: &[&str]) -> Result<Vec<String>> {
            let Ok(v) = std::env::var(name) else {
                return Ok(all.iter().map(|s| s.to_string()).collect());
            };
            let items: Vec<String> = v.split(',').map(|s| s.trim().to_lowercase()).collect();
            match items.iter().find(|i| !all.contains(&i.as_str())) {
                Some(bad) => Err(format!("{name}: {bad:?} is not one of {all:?}").into()),
                None => Ok(items),
            }
        }
        let config = Config {
            keys: var("FOLIO_COMPARE_KEYS", 1_000_000)? as usize,
            live_bytes: var("FOLIO_COMPARE_LIVE_MB", 256)? << 20,
            reps: var("FOLIO_COMPARE_REPS", 5)?.max(1) as usize,
            engines: list("FOLIO_COMPARE_ENGINES", &["folio", "lmdb", "redb"])?,
            workloads: list("FOLIO_COMPARE_WORKLOADS", &["load", "reads", "defrag"])?,
        };
        if config.keys < SCAN_LEN {
            return Err(format!("FOLIO_COMPARE_KEYS must be at least {SCAN_LEN}").into());
        }
        Ok(config)
    }

    fn engine(&self, name: &str) -> bool {
        self.engines.iter().any(|e| e == name)
    }

    fn workload(&self, name: &str) -> bool {
        self.workloads.iter().any(|w| w == name)
    }
}

/// What the load, read and scan workloads share.
struct Input {
    keys: Keys,
    values: Values,
    /// Indices of the keys to look up, in order.
    lookups: Vec<u32>,
    /// Indices of the keys to start scans at.
    starts: Vec<u32>,
    reps: usize,
    work_dir: PathBuf,
}

fn main() -> Result<()> {
    let config = Config::from_env()?;
    let target_tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let work_dir = target_tmp.join("compare");
    let out_dir = target_tmp.parent().unwrap_or(target_tmp).join("compare");
    std::fs::create_dir_all(&work_dir)?;
    std::fs::create_dir_all(&out_dir)?;

    let machine = Machine::describe(&work_dir);
    let load_at_start = machine::load_average();
    println!("folio vs LMDB vs redb: {machine}");
    println!(
        "{} keys, {} MiB live data to defragment, {} repetitions of each read workload; load average {load_at_start}",
        config.keys,
        config.live_bytes >> 20,
        config.reps
    );

    let keys = Keys::random(config.keys, KEY_SEED);
    let mut rng = Rng::new(LOOKUP_SEED);
    let input = Input {
        lookups: rng.indices(keys.len(), keys.len()),
        starts: rng.indices((keys.len() / 100).max(1), keys.len()),
        keys,
        values: Values::new(VALUE_SEED),
        reps: config.reps,
        work_dir,
    };
    let mut results = Results::default();

    if config.workload("load") || config.workload("reads") {
        println!("\nbulk load, {READ_VALUE_LEN}-byte values");
        let folio = load_if::<FolioEngine>(&config, &input, READ_VALUE_LEN, &mut results)?;
        let lmdb = load_if::<LmdbEngine>(&config, &input, READ_VALUE_LEN, &mut results)?;
        let redb = load_if::<RedbEngine>(&config, &input, READ_VALUE_LEN, &mut results)?;
        if config.workload("reads") {
            println!("\nrandom reads and range scans in those databases, the engines taking turns");
            let engines = Loaded {
                folio: folio.as_ref().map(|(e, _)| e),
                lmdb: lmdb.as_ref().map(|(e, _)| e),
                redb: redb.as_ref().map(|(e, _)| e),
            };
            reads_and_scans(&input, &engines, &mut results)?;
        }
        drop((folio, lmdb, redb));
    }

    if config.workload("load") {
        println!("\nbulk load, 1024-byte values");
        load_if::<FolioEngine>(&config, &input, 1024, &mut results)?;
        load_if::<LmdbEngine>(&config, &input, 1024, &mut results)?;
        load_if::<RedbEngine>(&config, &input, 1024, &mut results)?;
    }

    let plan = FragmentPlan::new(config.live_bytes, FRAGMENT_SEED);
    let defrag = config.workload("defrag");
    if defrag {
        println!(
            "\nfragment about {} MiB of live data, then compact",
            config.live_bytes >> 20
        );
        if config.engine("folio") {
            fragment_and_compact::<FolioEngine>(&input, &plan, &mut results)?;
        }
        if config.engine("lmdb") {
            fragment_and_compact::<LmdbEngine>(&input, &plan, &mut results)?;
        }
        if config.engine("redb") {
            fragment_and_compact::<RedbEngine>(&input, &plan, &mut results)?;
        }
    }

    let load_at_end = machine::load_average();
    let page = format!(
        "# folio compared with LMDB and redb\n\n\
         Machine: {machine}.\n\n\
         {} keys; {:.1} MiB of live data to defragment; reads and scans the median of {} \
         repetitions. Load average {load_at_start} at the start, {load_at_end} at the end.\n\n{}",
        config.keys,
        plan.live_bytes() as f64 / (1 << 20) as f64,
        config.reps,
        results.markdown()
    );
    std::fs::write(out_dir.join("results.md"), &page)?;
    let caption = format!(
        "{:.0} MiB of live data; cold page cache; {}",
        plan.live_bytes() as f64 / (1 << 20) as f64,
        machine.filesystem
    );
    if defrag {
        std::fs::write(out_dir.join("defrag.svg"), results.defrag_svg(&caption))?;
    }
    println!(
        "\nload average at the end: {load_at_end}\n\n{}",
        results.markdown()
    );
    println!("wrote {}", out_dir.join("results.md").display());
    Ok(())
}

/// A fresh directory for one engine's database, removed when dropped.
fn fresh_dir(input: &Input, engine: &str) -> Result<tempfile::TempDir> {
    Ok(tempfile::Builder::new()
        .prefix(&format!("{engine}-"))
        .tempdir_in(&input.work_dir)?)
}

/// [`bulk_load`] if the engine is one the run compares.
fn load_if<E: Engine>(
    config: &Config,
    input: &Input,
    value_len: usize,
    results: &mut Results,
) -> Result<Option<(E, tempfile::TempDir)>> {
    let name = E::NAME.to_lowercase();
    if !config.engine(&name) {
        return Ok(None);
    }
    bulk_load::<E>(input, value_len, results).map(Some)
}

/// The databases the read workloads run in: those of the engines the run compares.
struct Loaded<'a> {
    folio: Option<&'a FolioEngine>,
    lmdb: Option<&'a LmdbEngine>,
    redb: Option<&'a RedbEngine>,
}

/// Every key with a `value_len`-byte value into a fresh database, `PER_TXN` puts per durable
/// transaction. Returns the engine, still open, and its directory (removed when dropped).
fn bulk_load<E: Engine>(
    input: &Input,
    value_len: usize,
    results: &mut Results,
) -> Result<(E, tempfile::TempDir)> {
    let dir = fresh_dir(input, E::NAME)?;
    let mut engine = E::open(dir.path())?;
    let n = input.keys.len();
    let cpu_start = machine::cpu_time();
    let start = Instant::now();
    for first in (0..n).step_by(PER_TXN) {
        let batch: Vec<Change> = (first..(first + PER_TXN).min(n))
            .map(|i| Change::Put(input.keys.get(i), input.values.get(i, value_len)))
            .collect();
        engine.commit(&batch)?;
    }
    results.push(Row {
        engine: E::NAME,
        workload: format!("bulk load, {value_len} B values"),
        time: start.elapsed(),
        work: n as f64,
        unit: "keys/s",
        cpu: machine::cpu_time()
            .zip(cpu_start)
            .map(|(end, start)| end - start),
        disk: Some(disk::disk_used(dir.path())?),
    });
    Ok((engine, dir))
}

/// Point reads from 1 and from 2 threads, then range scans, in the databases loaded with
/// `READ_VALUE_LEN`-byte values. Each repetition runs every engine in turn, so that a busy moment
/// on the shared machine falls on all of them rather than on one; each engine's figure is the
/// median of its repetitions.
fn reads_and_scans(input: &Input, engines: &Loaded<'_>, results: &mut Results) -> Result<()> {
    let names = [FolioEngine::NAME, LmdbEngine::NAME, RedbEngine::NAME];
    for threads in [1, 2] {
        let mut times: [Vec<Duration>; 3] = Default::default();
        for _ in 0..input.reps {
            if let Some(e) = engines.folio {
                times[0].push(point_reads(e, input, threads)?);
            }
            if let Some(e) = engines.lmdb {
                times[1].push(point_reads(e, input, threads)?);
            }
            if let Some(e) = engines.redb {
                times[2].push(point_reads(e, input, threads)?);
            }
        }
        let workload = match threads {
            1 => "random reads, 1 thread".to_string(),
            n => format!("random reads, {n} threads"),
        };
        for (engine, times) in names.into_iter().zip(times) {
            if times.is_empty() {
                continue;
            }
            results.push(Row {
                engine,
                workload: workload.clone(),
                time: median(times),
                work: input.lookups.len() as f64,
                unit: "reads/s",
                cpu: None,
                disk: None,
            });
        }
    }

    let mut times: [Vec<Duration>; 3] = Default::default();
    let mut scanned: [Option<Scanned>; 3] = [None; 3];
    for _ in 0..input.reps {
        if let Some(e) = engines.folio {
            scanned[0] = Some(range_scans(e, input, &mut times[0])?);
        }
        if let Some(e) = engines.lmdb {
            scanned[1] = Some(range_scans(e, input, &mut times[1])?);
        }
        if let Some(e) = engines.redb {
            scanned[2] = Some(range_scans(e, input, &mut times[2])?);
        }
    }
    let mut seen = scanned.iter().flatten();
    if let Some(first) = seen.next()
        && seen.any(|s| s != first)
    {
        return Err(format!("the engines scanned different data: {names:?} {scanned:?}").into());
    }
    for (engine, times) in names.into_iter().zip(times) {
        if times.is_empty() {
            continue;
        }
        results.push(Row {
            engine,
            workload: format!("range scans of {SCAN_LEN} entries"),
            time: median(times),
            work: input.starts.len() as f64,
            unit: "scans/s",
            cpu: None,
            disk: None,
        });
    }
    Ok(())
}

/// One repetition of point reads: every key of `input.lookups`, split evenly over `threads`
/// threads, each with its own read transaction. Checks that every key was found.
fn point_reads<E: Engine>(engine: &E, input: &Input, threads: usize) -> Result<Duration> {
    let per_thread = input.lookups.len().div_ceil(threads);
    let start = Instant::now();
    let found = std::thread::scope(|s| {
        let workers: Vec<_> = input
            .lookups
            .chunks(per_thread)
            .map(|chunk| s.spawn(move || engine.get(input.keys.pick(chunk))))
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("a reader thread panicked"))
            .sum::<Result<u64>>()
    })?;
    let time = start.elapsed();
    let expected = (input.lookups.len() * READ_VALUE_LEN) as u64;
    if found != expected {
        return Err(format!(
            "{}: found {found} value bytes, expected {expected}",
            E::NAME
        )
        .into());
    }
    Ok(time)
}

/// One repetition of range scans: `SCAN_LEN` entries from each of `input.starts`, in one read
/// transaction. Adds its time to `times` and returns what it read.
fn range_scans<E: Engine>(engine: &E, input: &Input, times: &mut Vec<Duration>) -> Result<Scanned> {
    let start = Instant::now();
    let scanned = engine.scan(input.keys.pick(&input.starts), SCAN_LEN)?;
    times.push(start.elapsed());
    Ok(scanned)
}

/// Applies the fragmentation plan to a fresh database, then compacts it.
fn fragment_and_compact<E: Compact>(
    input: &Input,
    plan: &FragmentPlan,
    results: &mut Results,
) -> Result<()> {
    let dir = fresh_dir(input, E::NAME)?;
    let mut engine = E::open(dir.path())?;
    let start = Instant::now();
    for txn in &plan.txns {
        engine.commit(&plan.changes(txn, &input.values))?;
    }
    let size = disk::file_len(&E::file(dir.path()))?;
    println!(
        "  {:<6} fragmented in {:.1} s: {} file for {} of live data ({:.1}x)",
        E::NAME,
        start.elapsed().as_secs_f64(),
        report::mib(size),
        report::mib(plan.live_bytes()),
        size as f64 / plan.live_bytes() as f64
    );
    results.push_defrag(compact(dir.path(), engine, plan)?);
    Ok(())
}

/// The engine's own way to a compact file, started cold; then plain copies of its output, also
/// cold; then a check that the compact file holds exactly the live data.
fn compact<E: Compact>(dir: &Path, engine: E, plan: &FragmentPlan) -> Result<DefragRow> {
    let file = E::file(dir);
    let size_before = disk::file_len(&file)?;
    drop(engine);
    disk::evict(&file)?;
    let engine = E::open(dir)?;

    let start = Instant::now();
    let engine = engine.compact()?;
    let time = start.elapsed();
    drop(engine);
    let size_after = disk::file_len(&file)?;

    let mut copy_times = Vec::new();
    for _ in 0..PLAIN_COPIES {
        disk::evict(&file)?;
        copy_times.push(disk::plain_copy(&file, &dir.join("plain-copy"))?);
    }
    let copy_time = median(copy_times);

    let engine = E::open(dir)?;
    // Every key is at least 16 bytes long, so all of them sort after [0] (LMDB refuses an empty key).
    let left = engine.scan(std::iter::once(&[0u8][..]), usize::MAX)?;
    let expected = Scanned {
        entries: plan.live_count() as u64,
        bytes: plan.live_bytes(),
    };
    if left != expected {
        return Err(format!("{} compacted to {left:?}, expected {expected:?}", E::NAME).into());
    }
    Ok(DefragRow {
        engine: E::NAME,
        method: E::COMPACTION,
        live_bytes: plan.live_bytes(),
        size_before,
        size_after,
        time,
        copy_time,
    })
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}
