//! `folio`: the command-line tool for folio databases and stores.
//!
//! Each subcommand lives in its own file; this one holds the command line (clap), the error type
//! every subcommand returns, and the translation of errors into a message and an exit code.

mod bench;
mod check;
mod compact;
mod defrag;
mod del;
mod dump;
mod get;
mod map;
mod open;
mod put;
mod range;
mod show;
mod stats;

use std::ffi::OsString;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// An error: the file is missing, locked, not a database or a store, damaged (`check` found
/// problems), or the operation failed.
const EXIT_ERROR: u8 = 1;
/// What was asked for is not there: `get` of a key with no value at the revision, `dump --tree`
/// of a tree the file does not have. (2 is clap's, for a usage error.)
const EXIT_NOT_FOUND: u8 = 3;

/// The exit codes, as `folio --help` ends.
const EXIT_CODES: &str = "\
Exit codes:
  0  done (for check: the database is sound)
  1  an error: no such file, locked, not a folio database or store, damaged (check found
     problems), or the operation failed
  2  a usage error: a missing or bad argument
  3  not found: get of a key with no value at that revision, dump --tree of a missing tree";

/// Operate folio databases: inspect, check, defragment and compact them, and read and write an
/// MVCC store from the shell.
///
/// Reading commands (stats, map, check, dump, get, range) open the file read-only, with a shared
/// lock: they work on a file you may only read, and beside each other. Writing commands (put, del,
/// compact, defrag) need it to themselves. Every command waits up to --lock-wait seconds (2 by
/// default) for a file another process has locked, then fails with "database is locked".
#[derive(Debug, Parser)]
#[command(name = "folio", version, propagate_version = true, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Seconds to wait for a file another process has locked before failing (0: fail at once).
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 2.0, value_parser = lock_wait)]
    lock_wait: f64,
    /// Read without verifying page checksums: a damaged page may then be shown as data. By
    /// default each page read is verified (once), and a damaged one is an error.
    #[arg(long, global = true)]
    no_verify: bool,
}

/// Parses `--lock-wait`: a number of seconds from 0 to a day.
fn lock_wait(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(w) if (0.0..=86_400.0).contains(&w) => Ok(w),
        _ => Err(format!("{s:?} is not a number of seconds from 0 to 86400")),
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Sizes, pages by kind, free space, what a defrag would reclaim, per-tree depth and fill,
    /// and for a store its revisions and key count.
    Stats(StatsArgs),
    /// Draw the file: one cell per run of pages, coloured by what the pages hold.
    Map(MapArgs),
    /// Run the checker; exit 0 when the database is sound, 1 with every problem listed.
    Check(DbArg),
    /// Rewrite the file without free pages, offline, and report sizes and speed.
    Defrag(DefragArgs),
    /// Compact a store's history: drop revisions below a revision, or keep only the last N.
    Compact(CompactArgs),
    /// Show a page or a tree, decoded, for debugging (without options: the metas and the trees).
    Dump(DumpArgs),
    /// Read one key of a store (exit code 3 when it has no value at that revision).
    Get(GetArgs),
    /// Write one key of a store (with --create, making the store if there is no file).
    Put(PutArgs),
    /// Delete a key, a range of keys or a prefix from a store.
    Del(DelArgs),
    /// Read a range of keys of a store.
    Range(RangeArgs),
    /// Run a built-in workload in a temporary directory and print throughput and defrag speed.
    Bench(BenchArgs),
}

/// Just the database.
#[derive(Debug, Args)]
struct DbArg {
    /// The database file.
    db: PathBuf,
}

#[derive(Debug, Args)]
struct StatsArgs {
    /// The database file.
    db: PathBuf,
    /// Print JSON instead of text, for scripts.
    #[arg(long)]
    json: bool,
}

/// When to colour the terminal output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ColorChoice {
    /// When standard output is a terminal and NO_COLOR is not set.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

#[derive(Debug, Args)]
struct MapArgs {
    /// The database file.
    db: PathBuf,
    /// Also write the picture as SVG to this file.
    #[arg(long, value_name = "FILE.svg")]
    out: Option<PathBuf>,
    /// Cells per row.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(8..=1024))]
    width: u64,
    /// The most rows; a larger file puts more pages in each cell.
    #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u64).range(1..=4096))]
    height: u64,
    /// Put this many pages in each cell instead (as many rows as that takes), so that two files
    /// are drawn at the same scale: before and after a defrag.
    #[arg(long, value_name = "N", conflicts_with = "height", value_parser = clap::value_parser!(u64).range(1..))]
    pages_per_cell: Option<u64>,
    /// When to use ANSI colours in the terminal.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto)]
    color: ColorChoice,
}

#[derive(Debug, Args)]
struct DefragArgs {
    /// The database file (closed: no process may have it open).
    db: PathBuf,
    /// How full to pack tree pages, from 0.5 to 1.0 (room left for later inserts).
    #[arg(long, default_value_t = 1.0, value_parser = fill_arg)]
    fill: f64,
}

/// `--fill`: a fraction the defrag accepts, so that a bad one is a usage error like any other.
fn fill_arg(s: &str) -> Result<f64, String> {
    let fill: f64 = s.parse().map_err(|e| format!("{e}"))?;
    let min = folio::limits::DEFRAG_FILL_MIN;
    if (min..=1.0).contains(&fill) {
        Ok(fill)
    } else {
        Err(format!("{fill} is not from {min} to 1.0"))
    }
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["rev", "keep"])))]
struct CompactArgs {
    /// The store's file.
    db: PathBuf,
    /// Compact at this revision: reads below it fail afterwards.
    #[arg(long, value_parser = clap::value_parser!(i64).range(1..))]
    rev: Option<i64>,
    /// Keep the last N revisions readable and compact everything older (N is at least 1: the
    /// current revision is always kept).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    keep: Option<u64>,
}

#[derive(Debug, Args)]
struct DumpArgs {
    /// The database file.
    db: PathBuf,
    /// Decode this page.
    #[arg(long, value_name = "N", conflicts_with = "tree")]
    page: Option<u64>,
    /// List this tree's entries in key order.
    #[arg(long, value_name = "NAME")]
    tree: Option<OsString>,
    /// Show at most this many bytes of each value.
    #[arg(long, default_value_t = 64, value_name = "BYTES")]
    value_bytes: usize,
}

#[derive(Debug, Args)]
struct GetArgs {
    /// The store's file.
    db: PathBuf,
    /// The key.
    key: OsString,
    /// Read at this revision instead of the current one.
    #[arg(long, value_parser = clap::value_parser!(i64).range(1..))]
    rev: Option<i64>,
    /// Write the value's bytes exactly as stored, with no escaping and no newline.
    #[arg(long)]
    raw: bool,
}

#[derive(Debug, Args)]
struct PutArgs {
    /// The store's file.
    db: PathBuf,
    /// The key.
    key: OsString,
    /// The value (read from standard input to its end when left out: at a terminal, end it
    /// with Ctrl-D).
    value: Option<OsString>,
    /// Make a new store if there is no file at DB (without it, a missing file is an error, so a
    /// mistyped argument order never makes a store named like a key).
    #[arg(long)]
    create: bool,
}

#[derive(Debug, Args)]
struct DelArgs {
    /// The store's file.
    db: PathBuf,
    /// The key, the start of a range, or a prefix with --prefix.
    key: OsString,
    /// Delete the range from KEY up to END (END excluded).
    #[arg(conflicts_with = "prefix")]
    end: Option<OsString>,
    /// Delete every key that starts with KEY.
    #[arg(long)]
    prefix: bool,
}

#[derive(Debug, Args)]
struct RangeArgs {
    /// The store's file.
    db: PathBuf,
    /// The first key (every key when left out).
    #[arg(conflicts_with = "prefix")]
    start: Option<OsString>,
    /// The key to stop before (no end when left out).
    #[arg(conflicts_with = "prefix")]
    end: Option<OsString>,
    /// Every key that starts with this prefix.
    #[arg(long, value_name = "PREFIX")]
    prefix: Option<OsString>,
    /// Read at this revision instead of the current one.
    #[arg(long, value_parser = clap::value_parser!(i64).range(1..))]
    rev: Option<i64>,
    /// Show at most this many keys (0: no limit).
    #[arg(long, default_value_t = 0)]
    limit: usize,
    /// Show keys without values.
    #[arg(long, conflicts_with = "count_only")]
    keys_only: bool,
    /// Show only how many keys the range holds.
    #[arg(long)]
    count_only: bool,
}

#[derive(Debug, Args)]
struct BenchArgs {
    /// Keys to write.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    keys: u64,
    /// Bytes per value.
    #[arg(long, default_value_t = 100)]
    value_bytes: usize,
    /// Operations per write transaction.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..))]
    batch: u64,
    /// Work in this directory instead of a new temporary one (the store is left there).
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// Why a subcommand failed.
#[derive(Debug)]
pub enum Failure {
    /// Something a person should read: printed as `folio: <message>`, exit code 1.
    Message(String),
    /// What was asked for is not there (a key, a tree) in a sound file: printed as
    /// `folio: <message>`, exit code [`EXIT_NOT_FOUND`], so a script can tell it from an error.
    NotFound(String),
    /// Standard output was closed (`folio dump … | head`): stop quietly.
    BrokenPipe,
}

impl Failure {
    /// A failure with `message`.
    pub fn new(message: impl Into<String>) -> Failure {
        Failure::Message(message.into())
    }

    /// A "not found" with `message`.
    pub fn not_found(message: impl Into<String>) -> Failure {
        Failure::NotFound(message.into())
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Failure {
        if e.kind() == io::ErrorKind::BrokenPipe {
            Failure::BrokenPipe
        } else {
            Failure::new(show::io_error(&e))
        }
    }
}

/// What every subcommand returns.
pub type CliResult<T = ()> = Result<T, Failure>;

fn run(command: Command, out: &mut dyn Write) -> CliResult {
    match command {
        Command::Stats(a) => stats::run(&a.db, a.json, out),
        Command::Map(a) => map::run(&a, out),
        Command::Check(a) => check::run(&a.db, out),
        Command::Defrag(a) => defrag::run(&a.db, a.fill, out),
        Command::Compact(a) => compact::run(&a, out),
        Command::Dump(a) => dump::run(&a, out),
        Command::Get(a) => get::run(&a, out),
        Command::Put(a) => put::run(&a, out),
        Command::Del(a) => del::run(&a, out),
        Command::Range(a) => range::run(&a, out),
        Command::Bench(a) => bench::run(&a, out),
    }
}

fn main() -> ExitCode {
    // A panic is a bug in folio; say so in one line rather than with a stack trace.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("folio: internal error: {info} (this is a bug in folio; please report it)");
    }));
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout with exit code 0; usage errors to stderr with 2.
            let _ = e.print();
            return ExitCode::from(e.exit_code() as u8);
        }
    };
    open::set_lock_wait(std::time::Duration::from_secs_f64(cli.lock_wait));
    open::set_verify(!cli.no_verify);
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let result = run(cli.command, &mut out).and_then(|()| Ok(out.flush()?));
    match result {
        Ok(()) | Err(Failure::BrokenPipe) => ExitCode::SUCCESS,
        Err(Failure::Message(message)) => {
            let _ = out.flush();
            eprintln!("folio: {message}");
            ExitCode::from(EXIT_ERROR)
        }
        Err(Failure::NotFound(message)) => {
            let _ = out.flush();
            eprintln!("folio: {message}");
            ExitCode::from(EXIT_NOT_FOUND)
        }
    }
}
