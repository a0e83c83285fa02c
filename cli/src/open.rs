//! Opening a database or a store for a subcommand, never creating one by accident.
//!
//! Reading commands open the file read-only with a shared lock, so they work on a file the user
//! may only read and beside each other; writing commands open it read-write. Every open waits for
//! a lock another process holds for up to `--lock-wait` seconds ([`LOCK_WAIT_DEFAULT`]), so two
//! short commands on one file do not fail at once.

use std::io;
use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use folio::{Builder, Db, Store};

use crate::show::at;
use crate::{CliResult, Failure};

/// How long an open waits for a lock another process holds, unless `--lock-wait` says otherwise.
pub const LOCK_WAIT_DEFAULT: Duration = Duration::from_secs(2);

static LOCK_WAIT: OnceLock<Duration> = OnceLock::new();

/// Set by `--no-verify`: read without verifying page checksums.
static NO_VERIFY: AtomicBool = AtomicBool::new(false);

/// Sets how long every open of this run waits for a lock (from `--lock-wait`).
pub fn set_lock_wait(wait: Duration) {
    let _ = LOCK_WAIT.set(wait);
}

/// Makes every open of this command verify page checksums (the default) or not (`--no-verify`).
pub fn set_verify(on: bool) {
    NO_VERIFY.store(!on, Ordering::Relaxed);
}

/// Options for every open of this run: the lock wait and checksum verification.
pub fn builder() -> Builder {
    Db::builder()
        .lock_timeout(*LOCK_WAIT.get().unwrap_or(&LOCK_WAIT_DEFAULT))
        .verify_checksums(!NO_VERIFY.load(Ordering::Relaxed))
}

/// What a subcommand does with a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Reads it: opened read-only.
    Read,
    /// Writes it: opened read-write; it must exist.
    Write,
    /// Writes it, making a new store if there is no file (`put --create`).
    Create,
}

/// Fails unless `path` is an existing file: `Db::open` would create a database there.
pub fn require_file(path: &Path) -> CliResult {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Err(Failure::new(format!(
            "{}: is a directory, not a folio database",
            path.display()
        ))),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Err(Failure::new(format!("{}: no such file", path.display())))
        }
        Err(e) => Err(at(path)(e.into())),
    }
}

/// Opens the existing database at `path` read-only, for a command that only reads it.
pub fn db(path: &Path) -> CliResult<Db> {
    require_file(path)?;
    builder()
        .read_only(true)
        .open_existing(path)
        .map_err(at(path))
}

/// Opens the store at `path` for `access`. With [`Access::Create`], a missing file becomes a new
/// store, and so does an existing database with no trees; otherwise the file must already hold a
/// store. A database with trees but not the store's is refused by the library
/// ([`folio::Error::NotAStore`]), whose rule this follows: a store is made only where there are no
/// trees.
pub fn store(path: &Path, access: Access) -> CliResult<Store> {
    let create = access == Access::Create;
    if create
        && path
            .parent()
            .is_some_and(|d| !d.as_os_str().is_empty() && !d.is_dir())
    {
        return Err(Failure::new(format!(
            "{}: cannot create the store: no such directory {}",
            path.display(),
            path.parent().expect("checked").display()
        )));
    }
    if !create || path.exists() {
        require_file(path)?;
    }
    let builder = builder();
    let db = match access {
        Access::Read => builder.read_only(true).open_existing(path),
        Access::Write => builder.open_existing(path),
        Access::Create => builder.open(path),
    }
    .map_err(at(path))?;
    if !db.holds_store().map_err(at(path))? {
        let trees = db
            .begin_read()
            .and_then(|tx| tx.tree_names())
            .map_err(at(path))?;
        if trees.is_empty() && !create {
            return Err(Failure::new(format!(
                "{}: not a folio store (a folio database with no trees; `folio put --create` makes a store in it)",
                path.display()
            )));
        }
    }
    Store::with_db(db).map_err(at(path))
}
