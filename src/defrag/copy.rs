//! A packed copy of one snapshot in a file of its own: the bulk loader of defrag, without the
//! catch-up and the swap. This is what a replica sends as a snapshot of the whole database.
//!
//! The copy is a whole database (the loader's invariants in `load`): opened with [`Db::open`] it
//! shows exactly the trees of the snapshot, at the snapshot's txid, with no free page.

use std::path::Path;

use crate::defrag::load;
use crate::defrag::options::DefragOptions;
use crate::error::Result;
use crate::page_file::storage::{FileStorage, Storage};
use crate::txn::ReadTxn;

impl ReadTxn<'_> {
    /// Writes a packed copy of this snapshot to a new file at `path` (failing if one exists)
    /// and syncs it; returns its length in bytes. Writers go on meanwhile: the copy reads only
    /// this snapshot, whose pages are not reused while it lives. On an error the file is
    /// removed. Open the copy as a database of its own, or rename it over a closed database.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let db = folio::Db::open(dir.path().join("a.folio"))?;
    /// let mut tx = db.begin_write()?;
    /// tx.open_tree(b"t")?.put(b"k", b"v")?;
    /// tx.commit()?;
    /// db.begin_read()?.copy_to(dir.path().join("copy.folio"))?;
    /// let copy = folio::Db::open(dir.path().join("copy.folio"))?;
    /// assert_eq!(copy.begin_read()?.tree(b"t")?.unwrap().get(b"k")?, Some(&b"v"[..]));
    /// # Ok::<(), folio::Error>(())
    /// ```
    pub fn copy_to(&self, path: impl AsRef<Path>) -> Result<u64> {
        let path = path.as_ref();
        let out = FileStorage::create_new(path)?;
        let source = self.snapshot();
        // Progress is not reported, so the total only bounds the walk's counters; with no list of
        // free runs the read-ahead reads the free pages too, which costs time, never correctness.
        let pages_total = source.meta.page_count.saturating_sub(2);
        // Unpaced: a snapshot copy has no commit counter to tell when writers are busy.
        let options = DefragOptions::default().pace(None);
        let written = load::copy(source, &out, &options, pages_total, &[], None)
            .and_then(|_| out.sync())
            .and_then(|()| out.len());
        if written.is_err() {
            drop(out);
            // Best effort: the error that stopped the copy is the one to report.
            let _ = std::fs::remove_file(path);
        }
        written
    }
}
