//! The `Storage` trait: every byte folio reads or writes passes through it.
//!
//! Reads go through a read-only memory map; writes go through positioned writes and never through
//! the map. [`FileStorage`] is the real file. [`crate::SimStorage`] is the same file with a shadow of
//! what has been synced, so tests can fail any call or crash and see only what a real crash leaves.

use std::fmt::Debug;
use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::{Mmap, MmapOptions};
use parking_lot::{Mutex, RwLock};

use crate::error::{Error, Result};

/// The operations folio needs from a file.
///
/// Implementations must be safe to call from several threads: a group-commit leader may write the
/// meta page while the next writer writes its data pages.
pub trait Storage: Send + Sync + Debug {
    /// The file's length in bytes.
    fn len(&self) -> Result<u64>;
    /// Whether the file holds no bytes.
    fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Reads exactly `buf.len()` bytes at `offset`.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()>;
    /// Writes all of `data` at `offset`. Not durable until [`Storage::sync`].
    fn write_at(&self, data: &[u8], offset: u64) -> Result<()>;
    /// Sets the file's length. Not durable until [`Storage::sync`].
    fn set_len(&self, len: u64) -> Result<()>;
    /// Makes every earlier write and length change durable.
    fn sync(&self) -> Result<()>;
    /// Maps the whole file, as it is now, read-only. Later writes within the mapped range are
    /// visible through it (a shared mapping); growth past it needs a new map.
    fn map(&self) -> Result<Mmap>;

    // Directory operations, for defrag's swap: build a new file beside this one, then rename it
    // over this one.

    /// The file's path.
    fn path(&self) -> PathBuf;
    /// Creates an empty file at `path` (failing if one is there), of the same kind as this
    /// storage and locked the same way. Its name is durable after [`Storage::sync_dir`].
    fn create_sibling(&self, path: &Path) -> Result<Box<dyn Storage>>;
    /// Renames this file to `to`, atomically replacing any file there; this storage then names
    /// `to`. Durable after [`Storage::sync_dir`].
    fn rename(&self, to: &Path) -> Result<()>;
    /// Removes the file at `path`, if there is one. Durable after [`Storage::sync_dir`].
    fn remove_sibling(&self, path: &Path) -> Result<()>;
    /// Makes the names in this file's directory durable: creations, renames and removals.
    fn sync_dir(&self) -> Result<()>;
}

/// The storage a database uses now. A defrag replaces it whole with the file it built; everyone
/// else takes the current one for the length of one operation.
#[derive(Debug)]
pub(crate) struct CurrentStorage(RwLock<Arc<dyn Storage>>);

impl CurrentStorage {
    pub fn new(storage: Box<dyn Storage>) -> CurrentStorage {
        CurrentStorage(RwLock::new(Arc::from(storage)))
    }

    /// The storage in use.
    pub fn get(&self) -> Arc<dyn Storage> {
        self.0.read().clone()
    }

    /// Puts `storage` in use and returns the one it replaces.
    pub fn replace(&self, storage: Box<dyn Storage>) -> Arc<dyn Storage> {
        std::mem::replace(&mut *self.0.write(), Arc::from(storage))
    }

    /// The current file's length in bytes.
    pub fn len(&self) -> Result<u64> {
        self.0.read().len()
    }
}

/// A database file on disk, locked exclusively for as long as this value lives.
#[derive(Debug)]
pub struct FileStorage {
    file: File,
    /// Where the file is now (a rename moves it).
    path: Mutex<PathBuf>,
}

impl FileStorage {
    /// Opens an existing file and takes its exclusive lock.
    pub fn open(path: &Path) -> Result<FileStorage> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        lock(&file)?;
        Ok(FileStorage {
            file,
            path: Mutex::new(path.to_path_buf()),
        })
    }

    /// Creates a new file (failing if one exists) and takes its exclusive lock.
    pub fn create_new(path: &Path) -> Result<FileStorage> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)?;
        lock(&file)?;
        Ok(FileStorage {
            file,
            path: Mutex::new(path.to_path_buf()),
        })
    }

    /// Records that the file is also reachable at `path` (a hard link made by the caller), and
    /// names it by that path from now on.
    pub(crate) fn linked_at(&self, path: &Path) {
        *self.path.lock() = path.to_path_buf();
    }
}

fn lock(file: &File) -> Result<()> {
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(TryLockError::WouldBlock) => Err(Error::Locked),
        Err(TryLockError::Error(e)) => Err(Error::Io(e)),
    }
}

/// The suffix of the file a defrag builds beside the database before renaming it into place.
pub(crate) const DEFRAG_SUFFIX: &str = ".defrag";

/// `path` with `suffix` added to its file name: `data.folio` → `data.folio.defrag`.
pub(crate) fn sibling_path(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// Syncs the directory holding `path`, so that a create or rename there survives a crash.
pub(crate) fn sync_parent_dir(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()?;
    Ok(())
}

impl Storage for FileStorage {
    fn len(&self) -> Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        self.file.read_exact_at(buf, offset)?;
        Ok(())
    }

    fn write_at(&self, data: &[u8], offset: u64) -> Result<()> {
        self.file.write_all_at(data, offset)?;
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<()> {
        self.file.set_len(len)?;
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        self.file.sync_data()?;
        Ok(())
    }

    fn map(&self) -> Result<Mmap> {
        map_file(&self.file)
    }

    fn path(&self) -> PathBuf {
        self.path.lock().clone()
    }

    fn create_sibling(&self, path: &Path) -> Result<Box<dyn Storage>> {
        Ok(Box::new(FileStorage::create_new(path)?))
    }

    fn rename(&self, to: &Path) -> Result<()> {
        let mut path = self.path.lock();
        std::fs::rename(&*path, to)?;
        *path = to.to_path_buf();
        Ok(())
    }

    fn remove_sibling(&self, path: &Path) -> Result<()> {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::Io(e)),
            _ => Ok(()),
        }
    }

    fn sync_dir(&self) -> Result<()> {
        sync_parent_dir(&self.path.lock())
    }
}

/// Maps a whole file read-only and shared.
pub(crate) fn map_file(file: &File) -> Result<Mmap> {
    // SAFETY: folio holds an exclusive lock on the file, so no other process changes it, and this
    // process never shrinks a file below a length that a live mapping covers nor writes through a
    // mapping: pages a reader can see are never rewritten (copy-on-write), so the bytes under every
    // outstanding `&[u8]` stay fixed for as long as the mapping lives.
    let map = unsafe { MmapOptions::new().map(file)? };
    Ok(map)
}

/// Returns an `io::Error` with a message, for storage implementations that fail on purpose.
pub(crate) fn injected(what: &str) -> Error {
    Error::Io(io::Error::other(format!("injected failure: {what}")))
}
