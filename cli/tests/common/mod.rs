//! Helpers shared by the CLI tests: run the real `folio` binary, and build real database files
//! through the library. Each test file declares `mod common;` and uses what it needs.
//!
//! Tests run in parallel threads, and a child spawned by one thread holds a copy of every file
//! descriptor the process has open until it execs, the database locks included. So a file one
//! thread has just closed may still be locked for a moment; the helpers retry an open (in this
//! process or in the binary) that finds the file locked, for up to [`LOCK_WAIT`].
#![allow(dead_code)]

use std::ffi::OsStr;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use folio::{Db, Durability, KeyRange, Op, PageUse, Store};

/// What one run of the binary did.
#[derive(Debug)]
pub struct Run {
    /// The exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts the run succeeded and printed nothing to stderr; returns its stdout.
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, Some(0), "folio failed: {self:#?}");
        self.no_panic();
        &self.stdout
    }

    /// Asserts the run failed with exit code 1 and one `folio: ` line; returns that line.
    pub fn fails(&self) -> &str {
        assert_eq!(self.code, Some(1), "folio should fail: {self:#?}");
        self.one_line()
    }

    /// Asserts the run found nothing (exit code 3, not an error's 1) and printed one `folio: `
    /// line; returns that line.
    pub fn not_found(&self) -> &str {
        assert_eq!(self.code, Some(3), "folio should find nothing: {self:#?}");
        self.one_line()
    }

    /// Asserts no panic and exactly one `folio: ` line on stderr; returns that line.
    fn one_line(&self) -> &str {
        self.no_panic();
        let line = self.stderr.trim_end();
        assert!(
            line.starts_with("folio: ") && !line.contains('\n'),
            "one `folio: ` line expected on stderr: {self:#?}"
        );
        line
    }

    /// Asserts nothing looks like a panic or a stack trace.
    pub fn no_panic(&self) {
        for sign in [
            "panicked",
            "internal error",
            "RUST_BACKTRACE",
            "stack backtrace",
        ] {
            assert!(!self.stderr.contains(sign), "{sign:?} in stderr: {self:#?}");
        }
    }
}

/// How long a helper waits for a lock that a sibling test's child may hold for a moment.
pub const LOCK_WAIT: Duration = Duration::from_secs(10);

const LOCKED: &str = "database is locked by another process";

/// Runs `folio` with `args`, with no input and colours left to the binary's own choice.
pub fn folio<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    folio_with_input(args, b"")
}

/// Runs `folio command path rest...`: a command on one file, with options given as text.
pub fn folio_on(command: &str, path: &Path, rest: &[&str]) -> Run {
    let mut args = vec![OsStr::new(command), path.as_os_str()];
    args.extend(rest.iter().map(OsStr::new));
    folio(args)
}

/// Runs `folio` with `args`, writing `input` to its standard input; runs it again while it finds
/// the file locked, up to [`LOCK_WAIT`].
pub fn folio_with_input<I, S>(args: I, input: &[u8]) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<S> = args.into_iter().collect();
    let start = Instant::now();
    loop {
        let run = folio_once(&args, input);
        if !run.stderr.contains(LOCKED) || start.elapsed() > LOCK_WAIT {
            return run;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs `folio` once with `args`, writing `input` to its standard input.
pub fn folio_once<I, S>(args: I, input: &[u8]) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_folio"))
        .args(args)
        .env_remove("NO_COLOR")
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn folio");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait for folio");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(out.stderr).expect("utf-8 stderr"),
    }
}

/// A temporary directory and a database path in it.
pub fn temp_db(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(name);
    (dir, path)
}

/// The key of pod `i`, spread over 10 namespaces.
pub fn pod(i: u32) -> Vec<u8> {
    format!("/registry/pods/ns-{}/pod-{i:05}", i % 10).into_bytes()
}

/// A store with `keys` pods written in batches, then every other one updated and every third
/// deleted, and compacted at the current revision: the file is left with free pages between live
/// ones. Returns the current revision.
pub fn fragmented_store(path: &Path, keys: u32) -> i64 {
    let store = open_store(path);
    for batch in (0..keys).collect::<Vec<_>>().chunks(100) {
        let ops = batch.iter().map(|&i| Op::put(&pod(i), &[b'v'; 200]));
        store.txn().then(ops).commit().expect("load");
    }
    for i in (0..keys).step_by(2) {
        store.put(&pod(i), b"updated").expect("update");
    }
    for i in (0..keys).step_by(3) {
        store.delete_range(KeyRange::key(&pod(i))).expect("delete");
    }
    let rev = store.current_revision();
    store.compact(rev).expect("compact");
    let report = store.db().check().expect("check");
    assert!(report.is_clean(), "{report}");
    rev
}

/// The first line of `text` that starts with `prefix`; panics naming both if there is none.
pub fn line<'a>(text: &'a str, prefix: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?} in:\n{text}"))
}

/// Opens (or creates) the database at `path` in this process.
pub fn open_db(path: &Path) -> Db {
    open_with(path, Db::builder())
}

/// Opens (or creates) a store for building fixtures, without syncs.
pub fn open_store(path: &Path) -> Store {
    Store::with_db(open_with(path, Db::builder().durability(Durability::None))).expect("store")
}

fn open_with(path: &Path, builder: folio::Builder) -> Db {
    let start = Instant::now();
    loop {
        match builder.open(path) {
            Err(folio::Error::Locked) if start.elapsed() < LOCK_WAIT => {
                std::thread::sleep(Duration::from_millis(5));
            }
            result => return result.expect("open"),
        }
    }
}

/// The first page of the file with the use `page_use`.
pub fn first_page(path: &Path, page_use: PageUse) -> u64 {
    let map = open_db(path).page_map().expect("page_map");
    map.runs
        .iter()
        .find(|r| r.page_use == page_use)
        .unwrap_or_else(|| panic!("no {page_use} page in {map:?}"))
        .start
}

/// A fragmented store of `keys` pods in a temporary directory, with its first leaf damaged:
/// the directory, the path and that leaf's page.
pub fn store_with_damaged_leaf(keys: u32) -> (tempfile::TempDir, PathBuf, u64) {
    let (dir, path) = temp_db("kv.folio");
    fragmented_store(&path, keys);
    let leaf = first_page(&path, PageUse::Leaf);
    damage_page(&path, leaf);
    (dir, path, leaf)
}

/// Flips every bit of one byte in the middle of page `page`, as a bad sector would.
pub fn damage_page(path: &Path, page: u64) {
    let page_size = open_db(path).page_size() as u64;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open file");
    let at = page * page_size + page_size / 2;
    let mut b = [0u8; 1];
    file.read_exact_at(&mut b, at).expect("read");
    file.write_all_at(&[!b[0]], at).expect("write");
}

/// A pseudo-terminal: the master side, which a test writes to as a person types, and the path of
/// the terminal side, which a child opens as its standard input.
pub struct Terminal {
    pub master: std::fs::File,
    pub slave: PathBuf,
}

/// Opens a new pseudo-terminal (in canonical mode: a line is read once its newline is typed, and
/// Ctrl-D on a line of its own is the end of input).
pub fn terminal() -> Terminal {
    use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).expect("openpt");
    grantpt(&master).expect("grantpt");
    unlockpt(&master).expect("unlockpt");
    let name = ptsname(&master, Vec::new()).expect("ptsname");
    let slave = PathBuf::from(name.to_str().expect("a terminal's name is text"));
    Terminal {
        master: master.into(),
        slave,
    }
}
