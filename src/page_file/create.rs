//! Creating a database file at a path that any number of processes may be creating at once.
//!
//! The recipe, one step each (see [`create`]):
//! 1. create a file under a name no other creator uses, `<db>.creating.<pid>-<time>-<n>`, and take
//!    its exclusive lock; check the name still names the locked file (a cleaner may have removed it
//!    in between: then start again under a new name);
//! 2. format it (the caller's `init`) and sync it;
//! 3. hard-link it to `<db>`. If a file is already there, another creator (or a user) won: remove
//!    our name and tell the caller to open theirs. Otherwise remove our temporary name and sync
//!    the directory.
//!
//! Invariants:
//! 1. Nothing is linked at `<db>` before it is a whole, synced database, so the path never names
//!    an empty or half-made file, whatever crashes.
//! 2. The link is the one atomic decision: exactly one creator's link succeeds, and it still holds
//!    the exclusive lock on the inode it linked, so its commits go to the file the path names.
//!    Every other creator finds `EEXIST`, drops its own file and opens the winner's.
//! 3. A temporary name is removed only by its creator, or by a cleaner that holds the exclusive
//!    lock of the file it names (so its creator is gone: a creator keeps that lock from step 1 until
//!    it has removed the name) or that already holds the lock of the database it is a link to.
//!    A creator that crashed leaves a name; the next creation or read-write open removes it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};
use crate::page_file::storage::{
    FileStorage, OpenMode, Storage, io_at, lock, same_file, sync_parent_dir,
};

/// The suffix of a creator's temporary name, before its unique part.
const CREATING_SUFFIX: &str = ".creating";

/// How many temporary names one creation tries before giving up (each collision or cleaner race
/// moves on to a new name; more than a few in a row means something else is wrong).
const ATTEMPTS: usize = 16;

/// Creates the database at `path`, formatted by `init`, unless a file appears there first.
///
/// Returns the new file, locked exclusively and linked at `path`; or `None` if another creator
/// (or anyone) put a file at `path` first: the caller then opens that one.
pub(crate) fn create(
    path: &Path,
    mode: u32,
    init: impl Fn(&FileStorage) -> Result<()>,
) -> Result<Option<FileStorage>> {
    remove_stale(path, false);
    for _ in 0..ATTEMPTS {
        let tmp = unique_name(path);
        // 1. A name of our own, locked, and still ours once locked.
        let mut options = OpenOptions::new();
        options.read(true).write(true).create_new(true);
        // Created with no bits for others at all, then given exactly `mode` (the umask would
        // otherwise decide what a caller asked for).
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode & 0o700);
        let file = match options.open(&tmp) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_at(path, "cannot create the database")(e)),
        };
        match lock(&file, &tmp, OpenMode::default()) {
            Ok(()) => {}
            // A cleaner locked it before we did, and removes it.
            Err(Error::Locked) => continue,
            Err(e) => return Err(e),
        }
        match same_file(&file, &tmp) {
            Ok(true) => {}
            // A cleaner removed the name between our create and our lock.
            Ok(false) | Err(_) => continue,
        }
        #[cfg(unix)]
        file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))
            .map_err(io_at(path, "cannot set the new database's permissions"))?;
        let storage = FileStorage::from_locked(file, tmp.clone());
        let linked = (|| -> Result<bool> {
            // 2. Whole and durable before any path names it.
            init(&storage)?;
            storage.sync()?;
            // 3. The decision.
            match std::fs::hard_link(&tmp, path) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
                Err(e) => Err(io_at(path, "cannot link the new database into place")(e)),
            }
        })();
        // The name is ours alone, so removing it is always safe; a failure leaves a stale name
        // that the next creation or open removes.
        let _ = std::fs::remove_file(&tmp);
        if !linked? {
            return Ok(None);
        }
        sync_parent_dir(path)?;
        storage.linked_at(path)?;
        return Ok(Some(storage));
    }
    Err(io_at(path, "cannot create the database")(io::Error::other(
        format!("no temporary name of {ATTEMPTS} tried could be used"),
    )))
}

/// Removes the temporary names that crashed creators of `path` left behind, as far as it safely
/// can (invariant 3). `held` says the caller holds the exclusive lock of the database at `path`:
/// then a name linked to that same file is stale too. Best effort: what cannot be read, locked
/// or removed is left for a later try.
pub(crate) fn remove_stale(path: &Path, held: bool) {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return;
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let prefix = format!("{name}{CREATING_SUFFIX}");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let stale = entry.file_name();
        let Some(stale) = stale.to_str() else {
            continue;
        };
        // `<db>.creating` itself is the name older versions used.
        if stale == prefix || stale.starts_with(&format!("{prefix}.")) {
            remove_if_unowned(&entry.path(), path, held);
        }
    }
}

/// Removes the temporary name `tmp` if no live creator owns it (see [`remove_stale`]).
fn remove_if_unowned(tmp: &Path, db: &Path, held: bool) {
    let Ok(file) = File::open(tmp) else {
        return;
    };
    let ours = held && same_file(&file, db).unwrap_or(false);
    if !ours {
        match file.try_lock() {
            Ok(()) => {}
            // A live creator, or a handle on the database it is linked to.
            Err(TryLockError::WouldBlock) | Err(TryLockError::Error(_)) => return,
        }
    }
    // Locked (or the database's own lock is ours): remove the name if it still names this file.
    if same_file(&file, tmp).unwrap_or(false) {
        let _ = std::fs::remove_file(tmp);
    }
}

/// A temporary name beside `path` that no other creator, in any process, uses.
fn unique_name(path: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(
        "{CREATING_SUFFIX}.{}-{nanos:x}-{n}",
        std::process::id()
    ));
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    /// A new database was created 0644 under the usual umask, world-readable although a store
    /// may hold secrets; it is now created 0600 unless the builder asks for another mode.
    #[cfg(unix)]
    #[test]
    fn a_new_database_file_has_the_builders_mode_0600_by_default() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let default = dir.path().join("default.folio");
        drop(crate::Db::open(&default).unwrap());
        assert_eq!(mode(&default), 0o600);
        let group = dir.path().join("group.folio");
        drop(crate::Db::builder().file_mode(0o640).open(&group).unwrap());
        assert_eq!(mode(&group), 0o640);
        // An existing file keeps its mode, whatever the builder says.
        drop(
            crate::Db::builder()
                .file_mode(0o644)
                .open(&default)
                .unwrap(),
        );
        assert_eq!(mode(&default), 0o600);
    }

    /// A crashed creator's temporary name (unlocked) is removed by the next creation; a live
    /// creator's (locked) is left alone.
    #[test]
    fn a_creation_removes_stale_temporaries_and_spares_a_live_creators() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.folio");
        let stale = dir.path().join("db.folio.creating.1-0-0");
        let old = dir.path().join("db.folio.creating");
        let live = dir.path().join("db.folio.creating.2-0-0");
        std::fs::write(&stale, b"half").unwrap();
        std::fs::write(&old, b"").unwrap();
        let live_file = FileStorage::create_new(&live).unwrap();
        let other = dir.path().join("other.folio.creating.1-0-0");
        std::fs::write(&other, b"").unwrap();

        let made = create(&path, 0o600, |s| s.set_len(4096)).unwrap();
        assert!(made.is_some());
        assert_eq!(
            names(dir.path()),
            [
                "db.folio",
                "db.folio.creating.2-0-0",
                "other.folio.creating.1-0-0"
            ]
        );
        drop(live_file);
        drop(made);
        // Now unowned, the live creator's name goes at the next read-write open's cleanup.
        remove_stale(&path, false);
        assert_eq!(
            names(dir.path()),
            ["db.folio", "other.folio.creating.1-0-0"]
        );
    }

    /// A creator that crashed after its link leaves a second name of the database; the holder of
    /// the database's lock removes that name, never the database.
    #[test]
    fn a_stale_temporary_linked_to_the_database_is_removed_by_its_lock_holder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.folio");
        let db = create(&path, 0o600, |s| s.set_len(4096)).unwrap().unwrap();
        let tmp = dir.path().join("db.folio.creating.9-0-0");
        std::fs::hard_link(&path, &tmp).unwrap();
        // Locked by `db`: someone without the lock leaves it.
        remove_stale(&path, false);
        assert!(tmp.exists());
        remove_stale(&path, true);
        assert!(!tmp.exists());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 4096);
        drop(db);
    }

    /// A creator that finds a file at the path after formatting its own gives way, and leaves no
    /// temporary name.
    #[test]
    fn a_creator_that_loses_the_link_returns_none_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.folio");
        let made = create(&path, 0o600, |_| {
            std::fs::write(&path, b"someone else's").unwrap();
            Ok(())
        })
        .unwrap();
        assert!(made.is_none());
        assert_eq!(names(dir.path()), ["db.folio"]);
        assert_eq!(std::fs::read(&path).unwrap(), b"someone else's");
    }
}
