//! The defrag recipe: build the new file beside the database, then rename it into place.
//!
//! One step each (see [`Db::defrag`]):
//! 1. take the write lock: writers wait until the swap; readers go on;
//! 2. make every commit durable, so no sync round is left to run against the old file;
//! 3. create `<file>.defrag` beside the database;
//! 4. bulk-load the newest snapshot into it (`load::copy`), then sync it and map it;
//! 5. rename it over the database;
//! 6. sync the directory;
//! 7. swap: new readers and the next writer use the new file; readers that began earlier keep the
//!    old file's mapping, which lives until the last of them finishes;
//! 8. with writers free again, read the new file into the page cache: it was written around it.
//!
//! Until step 5 the database is untouched: a failure removes the new file and returns the error,
//! and a crash leaves the old database and at most a leftover `.defrag` file that the next open
//! removes. The rename is atomic: after a crash the path holds either file, each whole and synced.
//! If the directory sync fails after the rename, the path already names the new file, so the swap
//! goes ahead and the database is poisoned (as after a failed commit sync): a crash could still
//! bring back the old name, so nothing more may be committed until a reopen shows which file won.

use std::path::Path;
use std::time::Instant;

use crate::defrag::options::{DefragOptions, DefragReport};
use crate::defrag::{load, readahead};
use crate::error::Result;
use crate::txn::db::Db;
use crate::txn::swap::NewFile;

/// Defragments the database at `path`, which no process may have open: rewrites its live pages
/// into a fresh, contiguous file and renames that over it. Fails with [`crate::Error::Locked`]
/// if another process has it open, and with an I/O error (not found) if there is no file.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # let path = dir.path().join("data.folio");
/// # {
/// #     let db = folio::Db::open(&path)?;
/// #     let mut tx = db.begin_write()?;
/// #     tx.open_tree(b"t")?.put(b"k", b"v")?;
/// #     tx.commit()?;
/// # }
/// let report = folio::defrag(&path, &folio::DefragOptions::default())?;
/// assert_eq!(report.size_after, std::fs::metadata(&path)?.len());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn defrag(path: impl AsRef<Path>, options: &DefragOptions) -> Result<DefragReport> {
    Db::builder().open_existing(path)?.defrag(options)
}

impl Db {
    /// Rewrites the live pages into a fresh, contiguous, fully packed file and swaps it in
    /// atomically (see the module docs for each step and what a crash leaves).
    ///
    /// Writers wait while the copy runs (a write transaction open on this thread would deadlock:
    /// commit or drop it first). Readers do not: a snapshot taken before the swap keeps reading the
    /// old file to its end. The new file is written around the page cache; once writers are free
    /// again, this reads it into the cache before returning, unless [`DefragOptions::warm_cache`]
    /// says not to. On an error the database goes on as before, unless the error is
    /// [`crate::Error::Poisoned`]-worthy (the directory sync after the rename failed), in which
    /// case later commits fail until a reopen.
    pub fn defrag(&self, options: &DefragOptions) -> Result<DefragReport> {
        options.validate()?;
        let _one = self.one_defrag();
        let started = Instant::now();

        // 1. Writers wait.
        let mut held = self.hold_writers()?;
        let source = held.latest().clone();
        let size_before = self.inner.storage().len()?;
        let page_size = source.meta.page_size as u64;
        let usage = held.usage();
        let pages_total =
            (source.meta.page_count - 2).saturating_sub(usage.freelist_pages + usage.free_pages);

        // 2-4. The new file, beside the old one: copy, sync, open.
        let new = NewFile::create(self, |out| {
            load::copy(&source, out, options, pages_total, &usage.unused).map(|_| ())
        })?;

        // 5-7. Rename, sync the directory, swap.
        let swapped = held.swap(new)?;
        let meta = swapped.snapshot.meta;
        let size_after = meta.page_count * page_size;
        // The warm-up reads the new file as a registered reader, so that commits after the swap do
        // not reuse (and rewrite) pages while it reads them.
        let warm_reader = options.warm_cache.then(|| self.begin_read().ok()).flatten();
        drop(held);
        let duration = started.elapsed();
        // Unmapping the old file (if no reader holds it) waits for no one: writers are free now.
        drop((swapped.old_snapshot, swapped.old_storage, source));
        swapped.dir_synced?;

        // 8. Warm the cache, with readers and writers already going on.
        let started = Instant::now();
        let warmed = warm_reader.is_some_and(|r| readahead::warm(&r.snapshot().map));
        let warm = warmed.then(|| started.elapsed());
        Ok(DefragReport {
            size_before,
            size_after,
            live_bytes: (2 + usage.freelist_pages + pages_total) * page_size,
            pages_written: meta.page_count,
            duration,
            warm,
        })
    }
}
