//! The `Storage` trait: every byte folio reads or writes passes through it.
//!
//! Reads go through a read-only memory map; writes go through positioned writes and never through
//! the map. [`FileStorage`] is the real file. [`crate::sim::SimStorage`] is the same file with a shadow of
//! what has been synced, so tests can fail any call or crash and see only what a real crash leaves.

use std::fmt::Debug;
use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use memmap2::{Mmap, MmapOptions};
use parking_lot::Mutex;

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
    /// Writes all of `data` at `offset`, as [`Storage::write_at`] does, for a bulk load that no one
    /// reads until it has been synced and mapped: an implementation may send it around the
    /// operating system's cache when `data`'s address and length and `offset` are multiples of
    /// [`BULK_ALIGN`], so that the copy costs a disk write and no page-cache memory. Not durable
    /// until [`Storage::sync`]. The default is [`Storage::write_at`].
    fn write_bulk(&self, data: &[u8], offset: u64) -> Result<()> {
        self.write_at(data, offset)
    }
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

    /// Whether this storage refuses every change (a file opened read-only): then every write,
    /// length change, sync, rename, creation and removal fails with [`Error::ReadOnly`], and the
    /// database above it opens without writing and refuses write transactions. The default is
    /// `false`.
    fn read_only(&self) -> bool {
        false
    }

    /// Whether a defrag's old file, its name now the new file's, should be shrunk in steps
    /// before it is closed: a real file system frees all of a file's blocks at its last close,
    /// at once, and the journal work that takes lands on the commits of the file that replaced
    /// it. Never while another name still points to the file (its data is that name's). The
    /// default is `false`: close it at once.
    fn shrink_in_steps(&self) -> bool {
        false
    }
}

/// A database file on disk, locked for as long as this value lives: exclusively when it is opened
/// for writing, shared when it is opened read-only (any number of read-only handles, in any
/// processes, or one read-write handle; a second handle in the same process counts as another).
#[derive(Debug)]
pub struct FileStorage {
    file: File,
    /// Opened read-only and locked shared: every change is refused (see [`Storage::read_only`]).
    read_only: bool,
    /// Where the file is now (a rename moves it).
    path: Mutex<PathBuf>,
    /// A second handle on the same file that writes around the page cache (`O_DIRECT`), for
    /// [`Storage::write_bulk`]; opened only for a file made by [`Storage::create_sibling`] (a
    /// defrag's new file), and only where the file system allows it.
    direct: Option<File>,
}

/// The alignment [`Storage::write_bulk`] needs of an address, a length and an offset to write
/// around the page cache: the largest logical block size of common disks.
pub const BULK_ALIGN: usize = 4096;

impl FileStorage {
    /// Opens an existing file for reading and writing and takes its exclusive lock, failing at once
    /// with [`Error::Locked`] if another handle holds it.
    pub fn open(path: &Path) -> Result<FileStorage> {
        FileStorage::open_mode(path, OpenMode::default())
    }

    /// Opens an existing file read-only and takes a shared lock, so that a user who may only read
    /// the file can use it and other read-only handles can too; fails at once with
    /// [`Error::Locked`] while a read-write handle holds it.
    pub fn open_read_only(path: &Path) -> Result<FileStorage> {
        FileStorage::open_mode(
            path,
            OpenMode {
                read_only: true,
                ..OpenMode::default()
            },
        )
    }

    /// Opens an existing file as `mode` says and takes its lock.
    ///
    /// The path is resolved (symbolic links and the current directory) once, here, so that a
    /// defrag renames its new file over the database itself. A defrag in another process may
    /// rename a new file over the path between this open and the lock: the lock is then on the
    /// old, unlinked file, so the open checks that the path still names the locked file, and
    /// tries again if not.
    pub(crate) fn open_mode(path: &Path, mode: OpenMode) -> Result<FileStorage> {
        const ATTEMPTS: usize = 8;
        for _ in 0..ATTEMPTS {
            let file = OpenOptions::new()
                .read(true)
                .write(!mode.read_only)
                .open(path)
                .map_err(io_at(path, "cannot open the database"))?;
            lock(&file, path, mode)?;
            let resolved =
                std::fs::canonicalize(path).map_err(io_at(path, "cannot resolve the path"))?;
            if same_file(&file, &resolved)? {
                return Ok(FileStorage {
                    file,
                    read_only: mode.read_only,
                    path: Mutex::new(resolved),
                    direct: None,
                });
            }
        }
        Err(io_at(path, "cannot open the database")(io::Error::other(
            format!("the file was replaced {ATTEMPTS} times while it was being opened"),
        )))
    }

    /// Creates a new file (failing if one exists) and takes its exclusive lock.
    pub fn create_new(path: &Path) -> Result<FileStorage> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(io_at(path, "cannot create the file"))?;
        lock(&file, path, OpenMode::default())?;
        Ok(FileStorage {
            file,
            read_only: false,
            path: Mutex::new(
                std::fs::canonicalize(path).map_err(io_at(path, "cannot resolve the path"))?,
            ),
            direct: None,
        })
    }

    /// A file the caller opened read-write and locked exclusively, named by `path`.
    pub(crate) fn from_locked(file: File, path: PathBuf) -> FileStorage {
        FileStorage {
            file,
            read_only: false,
            path: Mutex::new(path),
            direct: None,
        }
    }

    /// Opens the handle that [`Storage::write_bulk`] writes through, if the platform and the
    /// file system support writes around the page cache; without one, bulk writes are ordinary.
    fn open_direct(&mut self) -> Result<()> {
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::fs::OpenOptionsExt;
            let path = self.path.lock().clone();
            // Some file systems (tmpfs) refuse O_DIRECT: then there is simply no direct handle.
            if let Ok(direct) = OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_DIRECT)
                .open(&path)
                && same_file(&self.file, &path)?
            {
                self.direct = Some(direct);
            }
        }
        Ok(())
    }

    /// Records that the file is also reachable at `path` (a hard link made by the caller), and
    /// names it by that path from now on.
    pub(crate) fn linked_at(&self, path: &Path) -> Result<()> {
        *self.path.lock() = std::fs::canonicalize(path)?;
        Ok(())
    }

    /// Fails with [`Error::ReadOnly`] if this file was opened read-only.
    fn writable(&self) -> Result<()> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        Ok(())
    }
}

/// How a file is opened and locked.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct OpenMode {
    /// Open for reading only and take a shared lock (otherwise read-write and exclusive).
    pub read_only: bool,
    /// How long to wait for a lock another handle holds before failing with [`Error::Locked`]
    /// (zero: fail at once).
    pub lock_timeout: Duration,
}

/// Whether `path` names the open `file` (the same device and inode).
pub(crate) fn same_file(file: &File, path: &Path) -> Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let a = file.metadata()?;
    let b = std::fs::metadata(path).map_err(io_at(path, "cannot read the file's metadata"))?;
    Ok(a.dev() == b.dev() && a.ino() == b.ino())
}

/// Takes `file`'s lock as `mode` says (shared for a read-only open, else exclusive), trying again
/// until `mode.lock_timeout` has passed, as bbolt's `Timeout` option does.
pub(crate) fn lock(file: &File, path: &Path, mode: OpenMode) -> Result<()> {
    /// The longest pause between two tries: a released lock is seen within this.
    const PAUSE_MAX: Duration = Duration::from_millis(50);
    let deadline = Instant::now() + mode.lock_timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        let tried = if mode.read_only {
            file.try_lock_shared()
        } else {
            file.try_lock()
        };
        match tried {
            Ok(()) => return Ok(()),
            Err(TryLockError::WouldBlock) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(Error::Locked);
                }
                std::thread::sleep(pause.min(left));
                pause = (pause * 2).min(PAUSE_MAX);
            }
            Err(TryLockError::Error(e)) => return Err(io_at(path, "cannot lock the file")(e)),
        }
    }
}

/// An I/O error about the file at `path`, wrapped so that its message names the file and what was
/// being done. It keeps the error's kind, so callers still match `Error::Io(e)` on `e.kind()`;
/// the original error is its `source()`.
pub(crate) fn io_at<'a>(
    path: &'a Path,
    doing: &'static str,
) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| {
        Error::Io(io::Error::new(
            source.kind(),
            AtPath {
                path: path.to_path_buf(),
                doing,
                source,
            },
        ))
    }
}

/// An I/O error with the file it concerns and what was being done; see [`io_at`].
#[derive(Debug)]
struct AtPath {
    path: PathBuf,
    doing: &'static str,
    source: io::Error,
}

impl std::fmt::Display for AtPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {}: {}",
            self.path.display(),
            self.doing,
            self.source
        )
    }
}

impl std::error::Error for AtPath {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
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
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_at(dir, "cannot sync the directory"))?;
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
        self.writable()?;
        self.file.write_all_at(data, offset)?;
        Ok(())
    }

    fn write_bulk(&self, data: &[u8], offset: u64) -> Result<()> {
        let aligned = |n: usize| n.is_multiple_of(BULK_ALIGN);
        match &self.direct {
            Some(direct)
                if aligned(data.as_ptr() as usize)
                    && aligned(data.len())
                    && offset.is_multiple_of(BULK_ALIGN as u64) =>
            {
                match direct.write_all_at(data, offset) {
                    // A device with a larger block than BULK_ALIGN refuses the write untouched.
                    Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
                        self.write_at(data, offset)
                    }
                    r => Ok(r?),
                }
            }
            _ => self.write_at(data, offset),
        }
    }

    fn set_len(&self, len: u64) -> Result<()> {
        self.writable()?;
        self.file.set_len(len)?;
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        self.writable()?;
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
        self.writable()?;
        let mut sibling = FileStorage::create_new(path)?;
        sibling.open_direct()?;
        // The file that replaces this one keeps its permissions (a 0600 database stays 0600).
        sibling
            .file
            .set_permissions(self.file.metadata()?.permissions())?;
        Ok(Box::new(sibling))
    }

    fn rename(&self, to: &Path) -> Result<()> {
        self.writable()?;
        let mut path = self.path.lock();
        std::fs::rename(&*path, to)?;
        *path = to.to_path_buf();
        Ok(())
    }

    fn remove_sibling(&self, path: &Path) -> Result<()> {
        self.writable()?;
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::Io(e)),
            _ => Ok(()),
        }
    }

    fn sync_dir(&self) -> Result<()> {
        sync_parent_dir(&self.path.lock())
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn shrink_in_steps(&self) -> bool {
        // Only a file no name points to: the old file of a defrag keeps its data under any other
        // name it has (a hard link made as a backup), and shrinking it would destroy that copy.
        use std::os::unix::fs::MetadataExt;
        !self.read_only && self.file.metadata().is_ok_and(|m| m.nlink() == 0)
    }
}

/// Maps a whole file read-only and shared.
pub(crate) fn map_file(file: &File) -> Result<Mmap> {
    // SAFETY: folio holds a lock on the file (exclusive, or shared among read-only handles that
    // never write), so no other process changes it, and this
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A buffer of `len` bytes starting at a `BULK_ALIGN` boundary inside `backing`.
    fn aligned(backing: &mut Vec<u8>, len: usize, fill: u8) -> &mut [u8] {
        backing.resize(len + BULK_ALIGN, 0);
        let at = backing.as_ptr().align_offset(BULK_ALIGN);
        let buf = &mut backing[at..at + len];
        buf.fill(fill);
        buf
    }

    #[test]
    fn bulk_writes_aligned_or_not_read_back_through_reads_and_a_map() {
        let dir = tempfile::tempdir().unwrap();
        let db = FileStorage::create_new(&dir.path().join("db")).unwrap();
        let sibling = db.create_sibling(&dir.path().join("db.new")).unwrap();
        let mut backing = Vec::new();
        let page = aligned(&mut backing, 3 * BULK_ALIGN, 0xa5);
        // Aligned: around the page cache where the file system allows it.
        sibling.write_bulk(page, BULK_ALIGN as u64).unwrap();
        // Unaligned address, length or offset: through the cache.
        sibling.write_bulk(&page[1..101], 0).unwrap();
        sibling
            .write_bulk(&[7; 10], 4 * BULK_ALIGN as u64 + 3)
            .unwrap();
        // An ordinary write beside bulk ones, as a defrag's metas are.
        sibling.write_at(&[9; 8], 200).unwrap();
        sibling.sync().unwrap();

        let mut want = vec![0u8; 4 * BULK_ALIGN + 13];
        want[..100].fill(0xa5);
        want[200..208].fill(9);
        want[BULK_ALIGN..4 * BULK_ALIGN].fill(0xa5);
        want[4 * BULK_ALIGN + 3..].fill(7);
        assert_eq!(sibling.len().unwrap(), want.len() as u64);
        let mut got = vec![0; want.len()];
        sibling.read_at(&mut got, 0).unwrap();
        assert!(got == want, "read back differs");
        assert!(sibling.map().unwrap()[..] == want[..], "mapped differs");
    }
}
