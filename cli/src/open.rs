//! Opening a database or a store for a subcommand, never creating one by accident.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use folio::{Builder, Db, Store};

use crate::show::at;
use crate::{CliResult, Failure};

/// Set by `--no-verify`: read without verifying page checksums.
static NO_VERIFY: AtomicBool = AtomicBool::new(false);

/// Makes every open of this command verify page checksums (the default) or not (`--no-verify`).
pub fn set_verify(on: bool) {
    NO_VERIFY.store(!on, Ordering::Relaxed);
}

/// The options every subcommand opens with.
fn builder() -> Builder {
    Db::builder().verify_checksums(!NO_VERIFY.load(Ordering::Relaxed))
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

/// Opens the existing database at `path`. Takes its lock: a database another process has open
/// fails with "database is locked by another process".
pub fn db(path: &Path) -> CliResult<Db> {
    require_file(path)?;
    builder().open(path).map_err(at(path))
}

/// Opens the store at `path`. With `create`, a missing file becomes a new store, and so does an
/// existing database with no trees; otherwise the file must already hold a store.
pub fn store(path: &Path, create: bool) -> CliResult<Store> {
    if !create || path.exists() {
        require_file(path)?;
    } else if let Some(dir) = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && !d.is_dir())
    {
        return Err(Failure::new(format!(
            "{}: cannot create the store: no such directory {}",
            path.display(),
            dir.display()
        )));
    }
    let db = builder().open(path).map_err(at(path))?;
    if !db.holds_store().map_err(at(path))? {
        let trees = db
            .begin_read()
            .and_then(|tx| tx.tree_names())
            .map_err(at(path))?;
        if !(create && trees.is_empty()) {
            return Err(Failure::new(format!(
                "{}: not a folio store (a folio database without the store's trees mvcc.key and mvcc.meta)",
                path.display()
            )));
        }
    }
    Store::with_db(db).map_err(at(path))
}
