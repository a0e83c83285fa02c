//! The database handle: opening and creating files, snapshots, and the reader registry.
//!
//! Lock order. A thread that holds one of these locks takes only locks further down the list:
//! 1. the store's compaction lock (`mvcc::store::Inner::compaction`), held for a whole compaction;
//! 2. the store's writer lock (`mvcc::store::Inner::writer`), held by one store write or one
//!    compaction batch; the store's state lock (`mvcc::store::Inner::state`) is taken under it, and
//!    a reader holds the state's read lock while it takes the database's `shared` lock (4);
//! 3. the database's defrag lock (`Inner::defrag`), held for a whole defrag, which holds no store
//!    lock; then the database's writer lock (`Inner::writer`), held by the write transaction, and
//!    by a defrag for its final pause and swap;
//! 4. the database's `shared` lock (`Inner::shared`): the newest snapshot and the reader registry,
//!    held only for a few instructions;
//! 5. the sync state's lock (`SyncState`), innermost; a round never holds it across I/O.
//!
//! Debug builds check the rule where it is cheap: a thread that already holds a database's writer
//! lock (an open write transaction, or a defrag's hold) and asks for it again would wait for
//! itself for ever, and panics instead ([`WriterHeld`]).
//!
//! A defrag's new file is a database of its own ([`crate::txn::swap::NewFile`]); its locks are
//! taken only by the defrag, after this database's and in the same order.
//!
//! Invariants:
//! 1. `Shared::current` is the newest snapshot a new reader may see. A reader takes it and registers
//!    its txid under the same lock, so the writer never frees a page a registering reader can see.
//! 2. Each snapshot holds an `Arc` of the mapping it began with. When the file grows the writer maps
//!    it again; older mappings die with their last reader. The writer never waits for readers.
//! 3. One write transaction at a time holds `Inner::writer`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use memmap2::Mmap;
use parking_lot::Mutex;

use crate::btree::source::{Pages, Verify};
use crate::error::{Error, Result};
use crate::limits::{
    FILE_MODE_DEFAULT, INITIAL_PAGES_MIN, PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX, PAGE_SIZE_MIN,
};
use crate::page_file::create;
use crate::page_file::freelist::FreeList;
use crate::page_file::freelist::chain::{self, Chain};
use crate::page_file::meta::{self, Meta};
use crate::page_file::storage::{
    DEFRAG_SUFFIX, FileStorage, OpenMode, Storage, io_at, sibling_path,
};
use crate::page_file::verified::VerifiedPages;
use crate::txn::read::ReadTxn;
use crate::txn::sync::{Durability, SyncState};
use crate::txn::write::{WriteTxn, Writer};

#[cfg(debug_assertions)]
thread_local! {
    /// The databases (by the address of their shared state) whose writer lock this thread holds.
    static WRITERS_HELD: std::cell::RefCell<Vec<usize>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A record, in debug builds, that this thread holds a database's writer lock (see the lock order
/// at the top of this module). Taken before the lock is waited for; dropped with the lock.
#[derive(Debug)]
pub(super) struct WriterHeld {
    #[cfg(debug_assertions)]
    inner: usize,
}

impl WriterHeld {
    /// Asserts that this thread does not hold `inner`'s writer lock already, and records it.
    pub(super) fn take(inner: &Inner) -> WriterHeld {
        #[cfg(debug_assertions)]
        {
            let at = inner as *const Inner as usize;
            WRITERS_HELD.with(|held| {
                let mut held = held.borrow_mut();
                assert!(
                    !held.contains(&at),
                    "this thread already holds the database's writer lock (an open write \
                     transaction or a defrag): waiting for it again would deadlock"
                );
                held.push(at);
            });
            WriterHeld { inner: at }
        }
        #[cfg(not(debug_assertions))]
        {
            let _ = inner;
            WriterHeld {}
        }
    }
}

impl Drop for WriterHeld {
    fn drop(&mut self) {
        #[cfg(debug_assertions)]
        WRITERS_HELD.with(|held| held.borrow_mut().retain(|&i| i != self.inner));
    }
}

/// One committed state of the database: its meta, a mapping that covers it, and the verified
/// pages of its file (shared by every snapshot of the file; see `page_file::verified`).
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub meta: Meta,
    pub map: Arc<Mmap>,
    pub verified: Arc<VerifiedPages>,
}

impl Snapshot {
    /// The first snapshot of a file just opened or built: none of its pages verified yet.
    pub fn new(meta: Meta, map: Arc<Mmap>) -> Snapshot {
        Snapshot {
            meta,
            map,
            verified: Arc::default(),
        }
    }

    /// A later snapshot of the same file (a commit), sharing its verified pages.
    pub fn successor(&self, meta: Meta, map: Arc<Mmap>) -> Snapshot {
        Snapshot {
            meta,
            map,
            verified: self.verified.clone(),
        }
    }

    /// The snapshot's pages for a registered reader or the writer: with `verify_checksums`, each
    /// page is verified the first time it is read after it was written.
    pub fn pages(&self, verify_checksums: bool) -> Pages<'_> {
        let verify = if verify_checksums {
            Verify::Once(&self.verified)
        } else {
            Verify::Off
        };
        self.pages_verified(verify)
    }

    /// The snapshot's pages, verified as `verify` says.
    pub fn pages_verified<'a>(&'a self, verify: Verify<'a>) -> Pages<'a> {
        Pages {
            data: &self.map[..],
            page_size: self.meta.page_size,
            page_count: self.meta.page_count,
            verify,
        }
    }
}

#[derive(Debug)]
pub(super) struct Shared {
    pub(super) current: Arc<Snapshot>,
    /// Open readers by snapshot txid.
    pub(super) readers: BTreeMap<u64, usize>,
}

/// [`Builder::run_spare`]'s default.
const RUN_SPARE_DEFAULT: u8 = 33;
/// [`Builder::run_spare`]'s largest value: past it a file could be mostly holes.
const RUN_SPARE_MAX: u8 = 90;

/// Options fixed when a database is opened.
#[derive(Clone, Debug)]
pub(crate) struct Options {
    pub(super) durability: Durability,
    pub(super) max_size: Option<u64>,
    pub(super) verify_checksums: bool,
    pub(super) strict: bool,
    /// [`Builder::run_spare`]: the share of the file, in percent, that may be free before a
    /// large commit stops taking runs of new pages at the file's end.
    pub(super) run_spare: u8,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(super) path: Option<PathBuf>,
    pub(super) options: Options,
    pub(super) page_size: u32,
    pub(super) shared: Mutex<Shared>,
    pub(super) writer: Mutex<Writer>,
    pub(super) sync: SyncState,
    /// Held by a defrag for its whole run, so that two never build a new file at once.
    pub(super) defrag: Mutex<()>,
    /// Write transactions open or waiting for the writer lock (see [`Writing`]).
    pub(super) writing: AtomicUsize,
}

/// Counts a write transaction from the moment it waits for the writer lock until it ends, and a
/// group commit while it waits for its sync, so that a defrag's pace can tell a writer that is
/// busy (reading cold tree pages, or waiting for a slow sync) from an idle database
/// (`defrag::pace`).
#[derive(Debug)]
pub(super) struct Writing<'db>(&'db AtomicUsize);

impl<'db> Writing<'db> {
    pub(super) fn enter(inner: &'db Inner) -> Writing<'db> {
        inner.writing.fetch_add(1, Ordering::Relaxed);
        Writing(&inner.writing)
    }
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Best effort: a failure leaves the last durable commit, as a crash would, or the proved
        // meta, which is whole (`sync`, rule 8). `Db::close` reports it.
        let _ = self.close();
    }
}

/// An open folio database. Cheap to clone; every clone is the same database.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # let path = dir.path().join("example.folio");
/// let db = folio::Db::open(&path)?;
/// let mut tx = db.begin_write()?;
/// tx.open_tree(b"users")?.put(b"alice", b"1")?;
/// tx.commit()?;
///
/// let tx = db.begin_read()?;
/// let users = tx.tree(b"users")?.expect("the tree exists");
/// assert_eq!(users.get(b"alice")?, Some(&b"1"[..]));
/// # Ok::<(), folio::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Db {
    pub(crate) inner: Arc<Inner>,
}

/// Options for opening or creating a database; see [`Db::builder`].
#[derive(Clone, Debug)]
pub struct Builder {
    /// `None` unless [`Builder::page_size`] was called: only a page size asked for is checked
    /// against an existing file's.
    page_size: Option<u32>,
    initial_size: u64,
    read_only: bool,
    lock_timeout: Duration,
    file_mode: u32,
    options: Options,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            page_size: None,
            initial_size: 0,
            read_only: false,
            lock_timeout: Duration::ZERO,
            file_mode: FILE_MODE_DEFAULT,
            options: Options {
                durability: Durability::Immediate,
                max_size: None,
                verify_checksums: true,
                strict: false,
                run_spare: RUN_SPARE_DEFAULT,
            },
        }
    }
}

impl Builder {
    /// The page size for a new database: a power of two from 512 to 32768 (4096 when not set).
    /// An existing database keeps the page size it was created with: opening one whose pages
    /// differ from a page size set here fails with [`Error::InvalidOption`] rather than ignore
    /// it (leave it unset to open a file of any page size).
    pub fn page_size(mut self, bytes: u32) -> Self {
        self.page_size = Some(bytes);
        self
    }

    /// The page size a new database gets.
    fn page_size_new(&self) -> u32 {
        self.page_size.unwrap_or(PAGE_SIZE_DEFAULT)
    }

    /// Fails when a page size was set and `db`'s (an existing file's) is another.
    fn check_page_size(&self, db: &Db, path: Option<&Path>) -> Result<()> {
        match self.page_size {
            Some(asked) if asked != db.page_size() => Err(Error::InvalidOption(format!(
                "page size {asked} was set, but the database{} has pages of {} bytes, fixed when it was made (leave the page size unset to open it)",
                path.map(|p| format!(" at {}", p.display()))
                    .unwrap_or_default(),
                db.page_size()
            ))),
            _ => Ok(()),
        }
    }

    /// The default durability of commits (each transaction may override it).
    pub fn durability(mut self, durability: Durability) -> Self {
        self.options.durability = durability;
        self
    }

    /// The size a new file starts at, in bytes (rounded up to whole pages).
    pub fn initial_size(mut self, bytes: u64) -> Self {
        self.initial_size = bytes;
        self
    }

    /// The largest the file may grow; a commit that needs more fails with [`Error::DatabaseFull`]
    /// and changes nothing.
    pub fn max_size(mut self, bytes: u64) -> Self {
        self.options.max_size = Some(bytes);
        self
    }

    /// Whether readers verify page checksums (on by default). With it on, a page's checksum is
    /// verified the first time a transaction reads the page after it was written, and remembered
    /// until the writer rewrites it, so a flipped byte on disk is [`Error::Corrupted`] rather than
    /// data, at a cost only on a page's first read. Off, reads trust the bytes (structural bounds
    /// are still checked); `check` and defrag verify every page either way, and meta pages and the
    /// freelist are verified on open.
    pub fn verify_checksums(mut self, on: bool) -> Self {
        self.options.verify_checksums = on;
        self
    }

    /// How much of the file, in percent, may be free before a large commit stops growing the file
    /// to keep its pages together (33 by default; at most 90).
    ///
    /// A commit that changes 16 pages or more takes its pages in runs, so that they are written
    /// together: one request to the disk for a run instead of one per page, which is most of a
    /// large commit's time when its pages would lie scattered over the file. A run comes from
    /// the smallest free extent of 16 pages or more; else, while at most this share of the file
    /// is free (or freed and pending), from new pages at the file's end; else from shorter free
    /// extents, down to two pages; else pages come one by one, best fit. So the higher the
    /// share, the faster a bulk load and the larger its file: loading 1,000,000 random keys
    /// with 100-byte values in commits of 10,000 (`examples/bulk_load.rs`, one run each) used
    /// 225 MiB of pages at 0 (39,100 keys/s), 280 MiB at 33 (47,500 keys/s) and 373 MiB at 50
    /// (55,700 keys/s). `0` never grows the file for a run. Small commits (most of an etcd-like
    /// load) take single pages best fit whatever this says; [`crate::Db::defrag`] packs the file
    /// again.
    pub fn run_spare(mut self, percent: u8) -> Self {
        self.options.run_spare = percent;
        self
    }

    /// Run the full checker after every commit and fail the commit's caller if it finds a problem.
    /// Slow; for tests and debugging.
    pub fn strict(mut self, on: bool) -> Self {
        self.options.strict = on;
        self
    }

    /// Open the file read-only with a shared lock: any number of read-only handles (in this
    /// process or others) may have it open at once, but no read-write one. Nothing is written: no
    /// sync on open, no cleanup of a defrag's leftover file; write transactions, compaction and
    /// defrag fail with [`Error::ReadOnly`]. A read-only open never creates a file. Off by
    /// default.
    pub fn read_only(mut self, on: bool) -> Self {
        self.read_only = on;
        self
    }

    /// How long an open waits for the file's lock while another handle holds it (a writer, or
    /// for a read-write open also readers), trying again until then, as bbolt's `Timeout` option
    /// does; then it fails with [`Error::Locked`]. The default is zero: fail at once.
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// The permission bits a new database file is created with, exactly (the umask does not
    /// narrow them): `0o600` when not set, as etcd's backend, because a store may hold secrets.
    /// An existing file keeps its mode, and a defrag's new file takes the old one's.
    pub fn file_mode(mut self, mode: u32) -> Self {
        self.file_mode = mode;
        self
    }

    fn open_mode(&self) -> OpenMode {
        OpenMode {
            read_only: self.read_only,
            lock_timeout: self.lock_timeout,
        }
    }

    fn validate(&self) -> Result<()> {
        let page_size = self.page_size_new();
        if !page_size.is_power_of_two() || !(PAGE_SIZE_MIN..=PAGE_SIZE_MAX).contains(&page_size) {
            return Err(Error::InvalidOption(format!(
                "page size {page_size} must be a power of two from {PAGE_SIZE_MIN} to {PAGE_SIZE_MAX}"
            )));
        }
        self.check_run_spare()
    }

    fn check_run_spare(&self) -> Result<()> {
        if self.options.run_spare > RUN_SPARE_MAX {
            return Err(Error::InvalidOption(format!(
                "run spare {}% must be at most {RUN_SPARE_MAX}%",
                self.options.run_spare
            )));
        }
        Ok(())
    }

    /// Opens the database at `path`, creating it if no file is there (unless
    /// [`Builder::read_only`]: then a missing file is an I/O error, not found).
    ///
    /// Any number of processes and threads may create the same new database at once: exactly
    /// one creates it, and every other opens that one (waiting for its lock as
    /// [`Builder::lock_timeout`] says, or failing with [`Error::Locked`]).
    pub fn open(&self, path: impl AsRef<Path>) -> Result<Db> {
        self.validate()?;
        let path = path.as_ref();
        let storage = if self.read_only {
            FileStorage::open_mode(path, self.open_mode())?
        } else {
            self.open_or_create(path)?
        };
        self.open_file(storage, path)
    }

    /// Opens the database at `path`, failing with an I/O error (not found) if there is no file
    /// there rather than creating one.
    pub fn open_existing(&self, path: impl AsRef<Path>) -> Result<Db> {
        self.validate()?;
        let path = path.as_ref();
        let storage = FileStorage::open_mode(path, self.open_mode())?;
        self.open_file(storage, path)
    }

    fn open_file(&self, storage: FileStorage, path: &Path) -> Result<Db> {
        if !self.read_only {
            // A creator that crashed may have left its temporary name; the lock holder removes it.
            create::remove_stale(path, true);
        }
        let db = Db::from_storage(
            Arc::new(storage),
            Some(path.to_path_buf()),
            self.options.clone(),
        )?;
        self.check_page_size(&db, Some(path))?;
        Ok(db)
    }

    /// Opens the file at `path`, or creates it (see `page_file::create` for the protocol that
    /// keeps racing creators safe) and, if another creator won, opens theirs.
    fn open_or_create(&self, path: &Path) -> Result<FileStorage> {
        // Each round ends with a file at the path, unless someone removes it again at once.
        const ATTEMPTS: usize = 8;
        for _ in 0..ATTEMPTS {
            match FileStorage::open_mode(path, self.open_mode()) {
                Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {}
                opened => return opened,
            }
            let made = create::create(path, self.file_mode, |s| {
                format(s, self.page_size_new(), self.initial_size)
            })?;
            if let Some(storage) = made {
                return Ok(storage);
            }
        }
        Err(io_at(path, "cannot open or create the database")(
            std::io::Error::other(format!(
                "a file appeared at the path and was removed again {ATTEMPTS} times"
            )),
        ))
    }

    /// Formats an empty storage as a new database and opens it.
    pub fn create_with(&self, storage: Box<dyn Storage>) -> Result<Db> {
        self.validate()?;
        if !storage.is_empty()? {
            return Err(Error::InvalidOption(
                "create_with needs an empty storage".into(),
            ));
        }
        format(&*storage, self.page_size_new(), self.initial_size)?;
        storage.sync()?;
        Db::from_storage(Arc::from(storage), None, self.options.clone())
    }

    /// Opens an existing database held by `storage`.
    pub fn open_with(&self, storage: Box<dyn Storage>) -> Result<Db> {
        self.check_run_spare()?;
        let db = Db::from_storage(Arc::from(storage), None, self.options.clone())?;
        self.check_page_size(&db, None)?;
        Ok(db)
    }
}

/// Writes the two meta pages of an empty database.
fn format(storage: &dyn Storage, page_size: u32, initial_size: u64) -> Result<()> {
    let pages = initial_size
        .div_ceil(page_size as u64)
        .max(INITIAL_PAGES_MIN);
    storage.set_len(pages * page_size as u64)?;
    let meta = Meta {
        page_size,
        txid: 0,
        catalog_root: 0,
        catalog_len: 0,
        freelist: 0,
        page_count: 2,
    };
    for slot in 0..2 {
        storage.write_at(&meta.encode(slot), slot * page_size as u64)?;
    }
    Ok(())
}

impl Db {
    /// Opens the database at `path` with default options, creating it if no file is there.
    pub fn open(path: impl AsRef<Path>) -> Result<Db> {
        Builder::default().open(path)
    }

    /// Options for opening or creating a database.
    pub fn builder() -> Builder {
        Builder::default()
    }

    pub(super) fn from_storage(
        storage: Arc<dyn Storage>,
        path: Option<PathBuf>,
        options: Options,
    ) -> Result<Db> {
        let (meta, slot, proved) = meta::read_newest(&*storage)?;
        let file_len = storage.len()?;
        let needed = meta.page_count * meta.page_size as u64;
        if file_len < needed {
            return Err(Error::Truncated {
                expected: needed,
                actual: file_len,
            });
        }
        // A read-only open writes nothing (and never commits), so it skips both steps below.
        // A defrag that did not finish leaves its file beside the database; the database itself
        // is whole (the swap is a rename). Only the holder of the lock may remove it.
        // Best effort: a leftover that cannot be removed is harmless, and the next defrag replaces it.
        // The newest meta may have been written and never synced (a process crash, or a failed
        // last sync, before this open). `SyncState` takes it as durable and lets the next commit
        // reuse the pages it freed, which the older meta still needs: make it durable first.
        if !storage.read_only() {
            let _ = storage.remove_sibling(&sibling_path(&storage.path(), DEFRAG_SUFFIX));
            storage.sync()?;
        }
        let map = Arc::new(storage.map()?);
        let snapshot = Arc::new(Snapshot::new(meta, map));
        let (freelist, chain) = if meta.freelist == 0 {
            (FreeList::default(), Chain::default())
        } else {
            chain::load(&snapshot.pages(true), meta.freelist)?
        };
        let writer = Writer {
            freelist,
            chain,
            maps: vec![Arc::downgrade(&snapshot.map)],
            latest: snapshot.clone(),
            file_len,
            reused: Default::default(),
        };
        let db = Db {
            inner: Arc::new(Inner {
                path,
                options,
                page_size: meta.page_size,
                shared: Mutex::new(Shared {
                    current: snapshot,
                    readers: BTreeMap::new(),
                }),
                writer: Mutex::new(writer),
                sync: SyncState::new(storage.clone(), meta, slot),
                defrag: Mutex::new(()),
                writing: AtomicUsize::new(0),
            }),
        };
        if proved && !storage.read_only() {
            // A crash left the newest meta with its proof: the close rewrites it without one
            // (`sync`, rule 8), even if nothing is committed meanwhile.
            db.inner.sync.opened_proved();
        }
        Ok(db)
    }

    /// Begins a read transaction: a snapshot of the last commit, unaffected by later ones. Never
    /// waits for the writer.
    pub fn begin_read(&self) -> Result<ReadTxn<'_>> {
        let snapshot = {
            let mut shared = self.inner.shared.lock();
            let s = shared.current.clone();
            *shared.readers.entry(s.meta.txid).or_default() += 1;
            s
        };
        Ok(ReadTxn::new(&self.inner, snapshot))
    }

    /// Begins the write transaction, waiting while another is open.
    pub fn begin_write(&self) -> Result<WriteTxn<'_>> {
        if self.is_read_only() {
            return Err(Error::ReadOnly);
        }
        self.inner.sync.check_poisoned()?;
        let writing = Writing::enter(&self.inner);
        let held = WriterHeld::take(&self.inner);
        let writer = self.inner.writer.lock();
        WriteTxn::new(&self.inner, writer, held, writing)
    }

    /// Makes every commit so far durable (useful after commits with [`Durability::None`]). A later
    /// commit with `Durability::None` gives up the guarantee again: its meta may reach the disk
    /// before its pages do.
    pub fn sync(&self) -> Result<()> {
        let txid = self.inner.sync.committed_txid();
        self.inner.sync.wait_synced(txid)
    }

    /// Closes this handle, reporting what dropping the last handle cannot: makes every commit
    /// durable and leaves the file as a clean close does (a crash-safe commit's meta carries a
    /// proof of its pages until the close rewrites it without one; see [`Durability`]). A
    /// failure is an error, and the file keeps the newest durable commit, as after a crash. It
    /// does so even while other handles (clones of this one, a [`crate::Store`] over it) keep the
    /// database open; their later commits are closed the same way when the last of them goes.
    pub fn close(self) -> Result<()> {
        self.inner.close()
    }

    /// Whether this database was opened read-only (see [`Builder::read_only`]): then every write
    /// fails with [`Error::ReadOnly`].
    pub fn is_read_only(&self) -> bool {
        self.inner.storage().read_only()
    }

    /// The page size of this database.
    pub fn page_size(&self) -> u32 {
        self.inner.page_size
    }

    /// The longest key this database accepts.
    pub fn key_len_max(&self) -> usize {
        crate::limits::key_len_max(self.inner.page_size)
    }

    /// Bytes up to the allocation frontier at the newest commit: every page in use or free,
    /// without the unused tail the file keeps ahead of its commits (a file grows by doubling, up
    /// to 1 GiB at a time, so its length can be twice this). What bbolt reports as a database's
    /// size, and so what etcd's space quota compares; [`Db::stats`] has the rest.
    pub fn allocated_bytes(&self) -> u64 {
        self.inner.shared.lock().current.meta.page_count * u64::from(self.inner.page_size)
    }

    /// The path the database was opened at, if it was opened from a path.
    pub fn path(&self) -> Option<&Path> {
        self.inner.path.as_deref()
    }
}

impl Inner {
    /// The storage commits go to now (a defrag's swap replaces it).
    pub fn storage(&self) -> Arc<dyn Storage> {
        self.sync.storage()
    }

    /// The newest commit's txid, and whether a write transaction is open or waiting for the
    /// writer lock: a defrag paces itself while either says writers are at work.
    pub fn write_activity(&self) -> (u64, bool) {
        (
            self.sync.committed_txid(),
            self.writing.load(Ordering::Relaxed) > 0,
        )
    }

    /// Runs a defrag's swap's finish (sync the new file, rename it over the database, sync the
    /// directory), unless a commit round already did (see `txn::swap`, invariant 4). A failure
    /// poisons the database.
    pub fn finish_swap(&self) -> Result<()> {
        self.sync.finish_swap()
    }

    /// Whether the database refuses every commit until a reopen.
    pub fn is_poisoned(&self) -> bool {
        self.sync.check_poisoned().is_err()
    }

    /// The meta slot the newest meta was written to.
    pub fn written_slot(&self) -> crate::error::PageId {
        self.sync.written().1
    }

    /// Makes every commit durable, then leaves the file as a clean close does (`sync`, rule 8).
    fn close(&self) -> Result<()> {
        if self.sync.unsynced() {
            self.sync.wait_synced(self.sync.committed_txid())?;
        }
        self.sync.settle()
    }

    /// Waits until no sync round is running; whether a round waits for this commit to join it
    /// (see [`SyncState::wait_for_round`]).
    pub fn wait_for_round(&self) -> bool {
        self.sync.wait_for_round()
    }

    /// How long the last sync round's sync took (zero before the first).
    pub fn last_sync(&self) -> std::time::Duration {
        self.sync.last_sync()
    }

    /// The oldest snapshot txid any reader holds.
    pub fn oldest_reader(&self) -> Option<u64> {
        self.shared.lock().readers.keys().next().copied()
    }

    /// Pages freed by commits and not yet reusable.
    pub fn pending_pages(&self) -> u64 {
        let _held = WriterHeld::take(self);
        self.writer.lock().freelist.pending_page_count()
    }

    pub(super) fn publish(&self, snapshot: Arc<Snapshot>) {
        self.shared.lock().current = snapshot;
    }

    pub(super) fn unregister_reader(&self, txid: u64) {
        let mut shared = self.shared.lock();
        if let Some(n) = shared.readers.get_mut(&txid) {
            *n -= 1;
            if *n == 0 {
                shared.readers.remove(&txid);
            }
        }
    }
}
