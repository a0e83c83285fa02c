//! The write transaction and its commit.
//!
//! Commit is a recipe, one step each (see [`WriteTxn::commit`]):
//! spill → freelist → grow → write pages in order → meta with its proof → sync → publish (a commit
//! too large for a proof: → sync → meta → sync; see `sync.rs`, rule 2).
//! Until the meta is written nothing a reader or a reopen can see has changed, so any failure up to
//! there rolls back cleanly: the in-memory freelist undoes the changes it logged and the pages
//! written are garbage in free space. A failure while making the meta durable poisons the
//! database (see `sync.rs`).

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::{Arc, Weak};

use memmap2::Mmap;
use parking_lot::MutexGuard;

use crate::btree::dirty::Node;
use crate::btree::source::{NodeRef, Pages, Source};
use crate::btree::tree::{Tree, TreeMut, check_key_name};
use crate::btree::tree_mut::{self, Allocate, Dirty, PageWrites, TreeRoot};
use crate::error::{Error, PageId, Result};
use crate::limits::{GROWTH_STEP_MAX, INITIAL_PAGES_MIN, PAGE_SIZE_MAX};
use crate::page_file::freelist::FreeList;
use crate::page_file::freelist::chain::{self, Chain};
use crate::page_file::meta::{Meta, Proven};
use crate::page_file::verified::VerifiedPages;
use crate::txn::catalog::{self, Descriptor};
use crate::txn::db::{Inner, Snapshot, WriterHeld, Writing};
use crate::txn::sync::{Durability, Written};

/// A commit that is visible and may still be waiting for its sync (see
/// [`WriteTxn::commit_visible`]).
#[must_use = "a group commit is not durable until `wait` returns"]
pub(crate) struct Visible<'db> {
    db: &'db Inner,
    unsynced: Option<u64>,
}

impl<'db> Visible<'db> {
    /// The commit `unsynced` of `db` (`None`: durable already), for a writer that waits for a
    /// commit another thread made (the store's combined writes).
    pub(crate) fn of(db: &'db crate::Db, unsynced: Option<u64>) -> Visible<'db> {
        Visible {
            db: &db.inner,
            unsynced,
        }
    }

    /// The commit still to be made durable, if any; [`Visible::of`] waits for it.
    pub(crate) fn unsynced(&self) -> Option<u64> {
        self.unsynced
    }

    /// Waits until the commit is durable.
    pub fn wait(self) -> Result<()> {
        match self.unsynced {
            Some(txid) => {
                // A writer waiting for its group's sync is still at work (`Writing`).
                let _writing = Writing::enter(self.db);
                self.db.sync.wait_synced(txid)
            }
            None => Ok(()),
        }
    }
}

/// The runs a commit stopped using: (first page, pages).
type Freed = Vec<(PageId, u64)>;

/// State owned by whoever holds the write lock.
#[derive(Debug)]
pub(crate) struct Writer {
    pub(super) freelist: FreeList,
    /// Where the newest commit's freelist chain lies.
    pub(super) chain: Chain,
    /// The newest commit, as the next writer starts from it.
    pub(super) latest: Arc<Snapshot>,
    /// The file's length as this process last set or saw it.
    pub(super) file_len: u64,
    /// Every mapping of the file that may still be alive (readers hold them), so that a swap can
    /// tell when no one maps the old file any more.
    pub(super) maps: Vec<Weak<Mmap>>,
    /// Buffers one transaction hands on to the next.
    pub(super) reused: Reused,
}

/// The buffers a write transaction reuses from the one before: emptied dirty nodes, and the
/// buffer its commit encodes pages into.
#[derive(Debug, Default)]
pub(crate) struct Reused {
    nodes: Vec<Node>,
    pages: PageWrites,
}

#[derive(Debug)]
struct OpenTree {
    root: TreeRoot,
    /// As committed before this transaction; `None` for a tree this transaction created.
    original: Option<TreeRoot>,
}

/// The one write transaction. Changes are visible to it at once and to others after
/// [`WriteTxn::commit`]; dropping it without committing rolls everything back.
#[derive(Debug)]
pub struct WriteTxn<'db> {
    db: &'db Inner,
    writer: MutexGuard<'db, Writer>,
    /// Dropped after `writer` (fields drop in order).
    _held: WriterHeld,
    _writing: Writing<'db>,
    base: Arc<Snapshot>,
    dirty: Dirty,
    catalog: TreeRoot,
    trees: BTreeMap<Vec<u8>, OpenTree>,
    deleted: bool,
    durability: Durability,
    /// The id this transaction's commit will have: the base's plus one, unless
    /// [`WriteTxn::commit_as`] raised it.
    txid: u64,
    /// Commit even if nothing changed (to carry a raised txid).
    forced: bool,
}

/// Allocates from the freelist first, then from the end of the used pages.
struct Allocator<'a> {
    freelist: &'a mut FreeList,
    page_count: u64,
    page_count_max: u64,
    page_size: u32,
    /// Whether single pages come from runs (a large commit, until [`Allocator::end_runs`]).
    runs: bool,
    /// The run single pages come from now, in order, and whether it was new pages at the end of
    /// the file (rather than taken from the free list).
    run: Range<PageId>,
    run_grew: bool,
    /// Pages this commit frees (pending once it is written).
    freeing: u64,
    /// Unused pages of runs that could not be given back ([`Allocator::drop_run`]).
    stranded: Vec<(PageId, u64)>,
    /// A run may come from the end of the file only while free, pending and `freeing` pages are
    /// at most this share of the file, in percent (`Builder::run_spare`), so that runs do not
    /// grow the file far past its live data.
    run_spare: u64,
    /// Where the commit's pages go as they are encoded ([`Allocate::encoded`]).
    sink: Sink<'a>,
}

/// The file a commit writes its pages to, a batch at a time.
struct Sink<'a> {
    storage: &'a dyn crate::page_file::Storage,
    verified: &'a VerifiedPages,
    /// The writer's record of the file's length.
    file_len: &'a mut u64,
    max_size: Option<u64>,
}

/// Pages a commit holds before it writes them (256 KiB of 4 KiB pages; more only when one large
/// value's overflow run is longer): few enough for the CPU's cache to keep them between the
/// encoder's writes and the kernel's copy. A bulk load's commit encodes 35 MiB of pages (70 MiB
/// with 1 KiB values); held whole, they were out of the cache by the time the kernel read them,
/// and the buffer was that large.
const WRITE_BATCH_PAGES: usize = 64;

impl Sink<'_> {
    /// Grows the file to hold pages below `page_count`, if it does not.
    fn cover(&mut self, page_count: u64, page_size: u32) -> Result<()> {
        let needed = page_count * page_size as u64;
        if needed > *self.file_len {
            let len = grow_target(*self.file_len, needed, page_size, self.max_size);
            self.storage.set_len(len)?;
            *self.file_len = len;
        }
        Ok(())
    }

    /// Writes the runs `out` holds in page order, adjacent pages in one write, and empties it.
    /// Each page's verified bit is cleared first (`page_file::verified`, invariant 1).
    fn write(&mut self, out: &mut PageWrites, page_size: u32) -> Result<()> {
        out.sort();
        for (id, len, _) in out.raw_runs() {
            self.verified.forget(id, len);
        }
        write_coalesced(self.storage, out, page_size)?;
        out.mark_written();
        Ok(())
    }
}

/// Dirty nodes a commit must have for its pages to be taken in runs.
const RUN_PAGES_MIN: u64 = 16;
/// Pages a commit takes as one run at most.
const RUN_PAGES_MAX: u64 = 256;

impl Allocator<'_> {
    /// Takes the next run for single pages, as long as the free space allows: the smallest free
    /// extent of at least [`RUN_PAGES_MIN`] pages, else new pages at the end of the file while
    /// little of the file is spare, else shorter extents, down to two pages. `false` when there
    /// is none: pages then come one by one, best fit.
    fn next_run(&mut self) -> bool {
        self.run_grew = false;
        if let Some((start, n)) = self.freelist.allocate_run(RUN_PAGES_MIN, RUN_PAGES_MAX) {
            self.run = start..start + n;
            return true;
        }
        let spare =
            self.freelist.free_page_count() + self.freelist.pending_page_count() + self.freeing;
        let end = self.page_count + RUN_PAGES_MAX;
        if self.run_spare > 0
            && spare * 100 <= self.page_count * self.run_spare
            && end <= self.page_count_max
        {
            self.run = self.page_count..end;
            self.run_grew = true;
            self.page_count = end;
            return true;
        }
        let mut min = RUN_PAGES_MIN / 2;
        while min >= 2 {
            if let Some((start, n)) = self.freelist.allocate_run(min, RUN_PAGES_MAX) {
                self.run = start..start + n;
                return true;
            }
            min /= 2;
        }
        false
    }

    /// Stops taking runs, gives back the unused pages of the last one ([`Allocator::drop_run`])
    /// and returns the pages that could not be given back, for the commit to free.
    fn end_runs(&mut self) -> Vec<(PageId, u64)> {
        self.runs = false;
        self.drop_run();
        std::mem::take(&mut self.stranded)
    }

    /// Gives back the pages of the current run not used yet: to the free list if the run came
    /// from it, to the end of the file if the run grew it and nothing was taken past them; else
    /// they are kept in `stranded`, never written, for the commit to free.
    fn drop_run(&mut self) {
        let unused = std::mem::replace(&mut self.run, 0..0);
        let len = unused.end - unused.start;
        if len == 0 {
            return;
        }
        if self.run_grew && unused.end == self.page_count {
            self.page_count = unused.start;
        } else if self.run_grew || !self.freelist.untake(unused.start, len) {
            self.stranded.push((unused.start, len));
        }
    }
}

impl Allocate for Allocator<'_> {
    /// Writes the pages encoded so far once they fill a batch, growing the file first to the
    /// allocation frontier if they lie past its end. Every one of them was free in the last meta,
    /// and nothing reaches them before the commit's meta is written.
    fn encoded(&mut self, out: &mut PageWrites) -> Result<()> {
        if out.pending_bytes() < WRITE_BATCH_PAGES * self.page_size as usize {
            return Ok(());
        }
        self.sink.cover(self.page_count, self.page_size)?;
        self.sink.write(out, self.page_size)
    }

    /// Single pages come from runs in a large commit: pages that lie together are written by
    /// one request, where pages scattered over the file cost one each, and the disk's time goes
    /// by requests more than by bytes (a bulk load's commit of 8,000 pages spent 150 ms in its
    /// sync with the pages scattered).
    fn allocate(&mut self, n: u64) -> Result<PageId> {
        if n == 1 && self.runs && self.run.is_empty() {
            // Asked again for each page while none is found: single pages taken best fit
            // meanwhile lower the spare share until a run may come from the file's end.
            self.next_run();
        }
        if self.run.end - self.run.start >= n {
            let p = self.run.start;
            self.run.start += n;
            return Ok(p);
        }
        if let Some(p) = self.freelist.allocate(n) {
            return Ok(p);
        }
        if self.page_count + n > self.page_count_max && !self.run.is_empty() {
            // Near the size limit: the run's unused pages may hold the room this allocation
            // needs, beside free pages or at the file's end.
            self.drop_run();
            if let Some(p) = self.freelist.allocate(n) {
                return Ok(p);
            }
        }
        let start = self.page_count;
        if start + n > self.page_count_max {
            return Err(Error::DatabaseFull {
                needed: (start + n) * self.page_size as u64,
                max: self.page_count_max * self.page_size as u64,
            });
        }
        self.page_count += n;
        Ok(start)
    }
}

impl<'db> WriteTxn<'db> {
    pub(super) fn new(
        db: &'db Inner,
        mut writer: MutexGuard<'db, Writer>,
        held: WriterHeld,
        writing: Writing<'db>,
    ) -> Result<WriteTxn<'db>> {
        // Pages freed by commit T may be reused once no reader's snapshot is older than T and no
        // crash can fall back to a meta older than T.
        let bound = db.oldest_reader().unwrap_or(u64::MAX).min(db.sync.safe());
        writer.freelist.release(bound)?;
        let base = writer.latest.clone();
        let txid = base.meta.txid + 1;
        let dirty = Dirty::with_spare(std::mem::take(&mut writer.reused.nodes));
        let catalog = TreeRoot {
            root: (base.meta.catalog_root != 0).then_some(NodeRef::Page(base.meta.catalog_root)),
            len: base.meta.catalog_len,
        };
        Ok(WriteTxn {
            db,
            writer,
            _held: held,
            _writing: writing,
            base,
            dirty,
            catalog,
            trees: BTreeMap::new(),
            deleted: false,
            durability: db.options.durability,
            txid,
            forced: false,
        })
    }

    fn pages(&self) -> Pages<'_> {
        self.base.pages(self.db.options.verify_checksums)
    }

    /// Sets how this transaction's commit reaches the disk.
    pub fn set_durability(&mut self, durability: Durability) {
        self.durability = durability;
    }

    /// The id this transaction's commit will have.
    pub fn txid(&self) -> u64 {
        self.txid
    }

    /// Commits as [`WriteTxn::commit`] does, with the id `txid` (above the base's) rather than the
    /// next one, and even if nothing changed. A defrag's new file takes the txids of the database
    /// it catches up with this way (see `txn::swap`).
    pub(crate) fn commit_as(mut self, txid: u64) -> Result<()> {
        assert!(txid > self.base.meta.txid, "txids only go up");
        self.txid = txid;
        self.forced = true;
        self.commit()
    }

    fn lookup(&self, name: &[u8]) -> Result<Option<TreeRoot>> {
        let src = Source {
            pages: self.pages(),
            arena: &self.dirty.arena,
        };
        let catalog = Tree::new(src, self.catalog.root, 0);
        match catalog.get(name)? {
            Some(raw) => Ok(Some(
                Descriptor::decode(raw, self.base.meta.catalog_root)?.tree_root(),
            )),
            None => Ok(None),
        }
    }

    fn load(&mut self, name: &[u8], create: bool) -> Result<bool> {
        check_key_name(name, self.base.meta.page_size)?;
        if self.trees.contains_key(name) {
            return Ok(true);
        }
        let entry = match self.lookup(name)? {
            Some(root) => OpenTree {
                root,
                original: Some(root),
            },
            None if create => OpenTree {
                root: TreeRoot::default(),
                original: None,
            },
            None => return Ok(false),
        };
        self.trees.insert(name.to_vec(), entry);
        Ok(true)
    }

    /// Opens the tree named `name` for writing, creating it if it does not exist.
    pub fn open_tree(&mut self, name: &[u8]) -> Result<TreeMut<'_>> {
        self.load(name, true)?;
        let pages = self.base.pages(self.db.options.verify_checksums);
        let open = self.trees.get_mut(name).expect("loaded");
        Ok(TreeMut {
            dirty: &mut self.dirty,
            pages,
            root: &mut open.root,
        })
    }

    /// The tree named `name` for writing, or `None` if it does not exist.
    pub fn tree(&mut self, name: &[u8]) -> Result<Option<TreeMut<'_>>> {
        if !self.load(name, false)? {
            return Ok(None);
        }
        self.open_tree(name).map(Some)
    }

    /// Deletes the tree named `name` and frees its pages. Returns whether it existed.
    pub fn delete_tree(&mut self, name: &[u8]) -> Result<bool> {
        if !self.load(name, false)? {
            return Ok(false);
        }
        let open = self.trees.remove(name).expect("loaded");
        let pages = self.base.pages(self.db.options.verify_checksums);
        if let Some(root) = open.root.root {
            tree_mut::free_all(&mut self.dirty, pages, root)?;
        }
        if open.original.is_some() {
            tree_mut::remove(&mut self.dirty, pages, &mut self.catalog, name)?;
            self.deleted = true;
        }
        Ok(true)
    }

    /// The names of every tree, in order, as this transaction sees them.
    pub fn tree_names(&self) -> Result<Vec<Vec<u8>>> {
        let src = Source {
            pages: self.pages(),
            arena: &self.dirty.arena,
        };
        let mut names: Vec<Vec<u8>> = catalog::names(Tree::new(src, self.catalog.root, 0))?;
        names.extend(
            self.trees
                .iter()
                .filter(|(_, t)| t.original.is_none())
                .map(|(n, _)| n.clone()),
        );
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// Discards every change. (Dropping the transaction does the same.)
    pub fn abort(self) {}

    /// Hands the transaction's node buffers on to the next one.
    fn recycle(&mut self) {
        let nodes = std::mem::take(&mut self.dirty).into_spare();
        self.writer.reused.nodes = nodes;
    }

    /// Makes every change durable (as the transaction's [`Durability`] says) and visible to new
    /// readers. On error nothing has changed, unless the error is [`Error::Poisoned`] or an I/O
    /// error while writing the meta, after which the database must be reopened.
    pub fn commit(self) -> Result<()> {
        self.commit_visible()?.wait()
    }

    /// Commits and returns once the commit is visible to new readers and the write lock is free.
    /// With [`Durability::Group`] the commit is not durable until [`Visible::wait`] returns, so a
    /// caller can release its own locks first and let the next writer share the sync.
    pub(crate) fn commit_visible(mut self) -> Result<Visible<'db>> {
        let db = self.db;
        db.sync.check_poisoned()?;
        let (meta, chain, freed) = match self.write_pages() {
            Ok(Some(written)) => written,
            Ok(None) => return Ok(Visible { db, unsynced: None }),
            Err(e) => {
                self.writer.freelist.undo_changes();
                return Err(e);
            }
        };
        // Map the grown file before the meta is written: a failure here still rolls back.
        let map = if self.writer.file_len as usize > self.base.map.len() {
            match db.storage().map() {
                Ok(m) => {
                    let m = Arc::new(m);
                    self.writer.maps.retain(|w| w.strong_count() > 0);
                    self.writer.maps.push(Arc::downgrade(&m));
                    m
                }
                Err(e) => {
                    self.writer.freelist.undo_changes();
                    return Err(e);
                }
            }
        } else {
            self.base.map.clone()
        };
        let snapshot = Arc::new(self.base.successor(meta, map));
        // Strict mode checks the commit before its meta is written, so that a failed check leaves
        // nothing on disk or in view that a caller would have to unwind.
        if db.options.strict
            && let Err(e) = strict_check(&snapshot, self.writer.file_len)
        {
            self.writer.freelist.undo_changes();
            return Err(e);
        }
        // The meta is about to be written: the freelist's changes are this commit's for good.
        self.writer.freelist.keep_changes();
        self.writer.chain = chain;
        // What a proof of this commit names (`txn::sync`, rule 2); a commit that never syncs, or
        // writes more runs than a proof holds, is recorded as one no proof can cover.
        let proof_capacity = crate::page_file::meta::proof_capacity(meta.page_size);
        let runs: Option<Vec<Proven>> = (self.durability != Durability::None
            && self.writer.reused.pages.run_count() <= proof_capacity)
            .then(|| self.writer.reused.pages.proven().collect());
        let written = runs.as_deref().map(|runs| Written {
            runs,
            freed: &freed,
        });
        db.sync
            .set_committed(meta, written, self.durability == Durability::Group);
        let txid = meta.txid;
        let unsynced = match self.durability {
            Durability::Immediate => {
                // Readers see the commit only once it is durable.
                db.sync.wait_synced(txid)?;
                self.publish(snapshot);
                None
            }
            Durability::None => {
                db.sync.write_meta_unsynced()?;
                self.publish(snapshot);
                None
            }
            Durability::Group => {
                self.publish(snapshot);
                Some(txid)
            }
        };
        Ok(Visible { db, unsynced })
    }

    fn publish(&mut self, snapshot: Arc<Snapshot>) {
        self.writer.latest = snapshot.clone();
        self.db.publish(snapshot);
    }

    /// Steps 1 to 4 of the commit: everything up to the first sync. Returns the meta to write,
    /// the freelist chain it names and the runs the commit stopped using, or `None` when the
    /// transaction changed nothing. On an error the freelist's logged changes are the caller's to
    /// undo.
    fn write_pages(&mut self) -> Result<Option<(Meta, Chain, Freed)>> {
        let changed =
            self.forced || self.deleted || self.trees.values().any(|t| t.original != Some(t.root));
        if !changed {
            return Ok(None);
        }
        let page_size = self.base.meta.page_size;
        let txid = self.txid;
        let pages = self.base.pages(self.db.options.verify_checksums);
        let page_count_max = match self.db.options.max_size {
            Some(max) => max / page_size as u64,
            None => u64::MAX / page_size as u64,
        };
        let writer = &mut *self.writer;
        let mut out = std::mem::take(&mut writer.reused.pages);
        out.clear();
        let storage = self.db.storage();
        let mut alloc = Allocator {
            freelist: &mut writer.freelist,
            page_count: self.base.meta.page_count,
            page_count_max,
            page_size,
            runs: self.dirty.arena.len() as u64 >= RUN_PAGES_MIN,
            run: 0..0,
            run_grew: false,
            freeing: self.dirty.freed.iter().map(|r| r.1).sum(),
            stranded: Vec::new(),
            run_spare: self.db.options.run_spare.into(),
            sink: Sink {
                storage: &*storage,
                verified: &self.base.verified,
                file_len: &mut writer.file_len,
                max_size: self.db.options.max_size,
            },
        };

        // 1. Spill: write each changed tree's dirty nodes to new pages, then record its root in the
        //    catalog, then spill the catalog.
        for (name, open) in self.trees.iter_mut() {
            if open.original == Some(open.root) {
                continue;
            }
            tree_mut::commit_tree(&mut self.dirty, pages, &mut open.root, &mut alloc, &mut out)?;
            let descriptor = Descriptor::of(&open.root).encode();
            tree_mut::insert(&mut self.dirty, pages, &mut self.catalog, name, &descriptor)?;
        }
        tree_mut::commit_tree(
            &mut self.dirty,
            pages,
            &mut self.catalog,
            &mut alloc,
            &mut out,
        )?;
        let catalog_root = match self.catalog.root {
            None => 0,
            Some(NodeRef::Page(p)) => p,
            Some(NodeRef::Dirty(_)) => unreachable!("catalog spilled"),
        };

        // 2. Freelist: pages this commit stopped using wait under its txid. Then the commit
        //    writes the changes it made to the list as a delta on the chain, or, now and then,
        //    the whole list (free and pending alike) as a new chain, retiring the old chain's
        //    pages like any other page it stopped using (`freelist::chain`, invariant 4).
        let mut freed = std::mem::take(&mut self.dirty.freed);
        freed.extend(alloc.end_runs());
        let mut freed_runs = Vec::new();
        let delta_changes = alloc.freelist.changes().len() + freed.len() + 1;
        let delta_pages = chain::delta_pages(delta_changes, page_size);
        let mut chain = writer.chain.clone();
        let head = if chain.wants_full(delta_pages) {
            // Taking the run from the list can add one run to it: a free extent merged with
            // pending pages beside it is written as one run, and taking its front leaves a gap
            // in that run. So the run is sized for one more.
            freed.extend_from_slice(chain.runs());
            freed_runs.extend_from_slice(&freed);
            alloc.freelist.add_pending(txid, freed)?;
            let run_pages =
                FreeList::run_pages(alloc.freelist.persisted_runs().len() + 1, page_size);
            let first = alloc.allocate(run_pages)?;
            let runs = alloc.freelist.persisted_runs();
            FreeList::encode_into(
                &runs,
                first,
                out.add(first, run_pages, page_size),
                run_pages,
            );
            chain = Chain::full(first, run_pages);
            first
        } else {
            freed_runs.extend_from_slice(&freed);
            alloc.freelist.add_pending(txid, freed)?;
            let first = alloc.allocate(delta_pages)?;
            let changes = alloc.freelist.changes();
            debug_assert!(
                changes.len() <= delta_changes,
                "the delta was sized for its changes"
            );
            let previous = chain.head().expect("a chain that takes a delta has a head");
            chain::encode_delta(
                changes,
                previous,
                chain.depth() + 1,
                first,
                out.add(first, delta_pages, page_size),
                delta_pages,
            );
            chain.push_delta(first, delta_pages);
            first
        };
        let meta = Meta {
            page_size,
            txid,
            catalog_root,
            catalog_len: self.catalog.len,
            freelist: head,
            page_count: alloc.page_count,
        };

        // 3. Grow the file if the pages in use outrun it.
        alloc.sink.cover(meta.page_count, page_size)?;

        // 4. Write the pages not written yet (spill writes them a batch at a time as it goes).
        alloc.sink.write(&mut out, page_size)?;
        writer.reused.pages = out;
        Ok(Some((meta, chain, freed_runs)))
    }
}

impl Drop for WriteTxn<'_> {
    fn drop(&mut self) {
        self.recycle();
    }
}

/// Strict mode's check of a commit whose pages are written and whose meta is not: the checker's
/// full walk of the snapshot it would make.
fn strict_check(snapshot: &Snapshot, file_len: u64) -> Result<()> {
    let report = crate::check::walk(snapshot, file_len).report;
    if report.is_clean() {
        return Ok(());
    }
    Err(Error::CheckFailed {
        txid: snapshot.meta.txid,
        problems: report.to_string(),
    })
}

/// The file length to grow to: double up to [`GROWTH_STEP_MAX`], then steps of it; never past the
/// maximum size, never short of `needed`.
fn grow_target(current: u64, needed: u64, page_size: u32, max: Option<u64>) -> u64 {
    let mut len = current.max(INITIAL_PAGES_MIN * page_size as u64);
    while len < needed {
        len = if len < GROWTH_STEP_MAX {
            len * 2
        } else {
            len + GROWTH_STEP_MAX
        };
    }
    let len = match max {
        Some(max) => len.min(max / page_size as u64 * page_size as u64),
        None => len,
    };
    len.max(needed)
}

/// Bytes a commit writes in one call at most.
///
/// Small, because the size of a write into the page cache sets the size of the cache's folios
/// for the pages it creates (Linux 6.x, ext4 and others with large folios), and every later
/// write of one page into a folio walks all of the folio's blocks (`ext4_block_write_begin`,
/// `block_commit_write`, and writeback's `mpage_process_page_bufs`). A bulk load's first commits
/// write long runs at the end of the file and its later commits rewrite those pages one by one:
/// with 8 MiB writes (folios of up to 2 MiB) that walk was about 40% of a 1 KiB-value load's
/// system time (`examples/bulk_load.rs`: 21.8 µs of system CPU per put with 8 MiB writes, 12.6
/// with 64 KiB, 12.4 with 16 KiB). LMDB writes at most 64 pages per call.
const COMMIT_WRITE_MAX: usize = 64 << 10;

// Pieces of a long run hold whole pages of any page size.
const _: () = assert!(COMMIT_WRITE_MAX.is_multiple_of(PAGE_SIZE_MAX as usize));

/// Writes sorted page runs, joining adjacent runs into writes of up to [`COMMIT_WRITE_MAX`]
/// (a longer run is written in pieces of that size): straight from the commit's buffer where
/// the runs lie end to end there too, else through one copy.
fn write_coalesced(
    storage: &dyn crate::page_file::Storage,
    out: &PageWrites,
    page_size: u32,
) -> Result<()> {
    const WRITE_MAX: usize = COMMIT_WRITE_MAX;
    let page_bytes = page_size as usize;
    // The pending write: its first page, its pages, and where they lie in `out` if they lie end
    // to end there (else they are in `copy`).
    let (mut start, mut pages, mut at) = (0u64, 0u64, Some(0usize));
    let mut copy: Vec<u8> = Vec::new();
    let flush = |start: PageId, pages: u64, at: Option<usize>, copy: &mut Vec<u8>| {
        let bytes = match at {
            Some(off) => out.bytes(off, pages as usize * page_bytes),
            None => copy.as_slice(),
        };
        let mut offset = start * page_size as u64;
        let mut result = Ok(());
        for bytes in bytes.chunks(WRITE_MAX) {
            result = storage.write_at(bytes, offset);
            if result.is_err() {
                break;
            }
            offset += bytes.len() as u64;
        }
        copy.clear();
        result
    };
    for (id, len, off) in out.raw_runs() {
        let size = pages as usize * page_bytes;
        let bytes = len as usize * page_bytes;
        if pages > 0 && (id != start + pages || size + bytes > WRITE_MAX) {
            flush(start, pages, at, &mut copy)?;
            pages = 0;
        }
        if pages == 0 {
            (start, at) = (id, Some(off));
        } else {
            match at {
                Some(first) if first + size == off => {}
                Some(first) => {
                    copy.extend_from_slice(out.bytes(first, size));
                    copy.extend_from_slice(out.bytes(off, bytes));
                    at = None;
                }
                None => copy.extend_from_slice(out.bytes(off, bytes)),
            }
        }
        pages += len;
    }
    if pages > 0 {
        flush(start, pages, at, &mut copy)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use memmap2::Mmap;
    use parking_lot::Mutex;

    use super::{COMMIT_WRITE_MAX, PageWrites, write_coalesced};
    use crate::error::Result;
    use crate::page_file::Storage;

    /// A file in memory that records the length of every write.
    #[derive(Debug, Default)]
    pub(super) struct Recorded {
        bytes: Mutex<Vec<u8>>,
        writes: Mutex<Vec<usize>>,
    }

    impl Storage for Recorded {
        fn len(&self) -> Result<u64> {
            Ok(self.bytes.lock().len() as u64)
        }
        fn read_at(&self, _: &mut [u8], _: u64) -> Result<()> {
            unimplemented!("a commit's page writes never read")
        }
        fn write_at(&self, data: &[u8], offset: u64) -> Result<()> {
            self.writes.lock().push(data.len());
            let mut bytes = self.bytes.lock();
            let end = offset as usize + data.len();
            if bytes.len() < end {
                bytes.resize(end, 0);
            }
            bytes[offset as usize..end].copy_from_slice(data);
            Ok(())
        }
        fn set_len(&self, _: u64) -> Result<()> {
            unimplemented!()
        }
        fn sync(&self) -> Result<()> {
            unimplemented!()
        }
        fn map(&self) -> Result<Mmap> {
            unimplemented!()
        }
        fn path(&self) -> PathBuf {
            PathBuf::from("recorded")
        }
        fn create_sibling(&self, _: &Path) -> Result<Box<dyn Storage>> {
            unimplemented!()
        }
        fn rename(&self, _: &Path) -> Result<()> {
            unimplemented!()
        }
        fn remove_sibling(&self, _: &Path) -> Result<()> {
            unimplemented!()
        }
        fn sync_dir(&self) -> Result<()> {
            unimplemented!()
        }
    }

    /// A commit's writes set the size of the page cache's folios for the pages they create, and
    /// each later one-page write into a folio walks all of its blocks: with writes of up to 8 MiB,
    /// a bulk load's system time per put rose by ~70% (`COMMIT_WRITE_MAX`). So no write may pass
    /// `COMMIT_WRITE_MAX`, neither a join of adjacent runs nor one long run, and every page must
    /// still land where it goes.
    #[test]
    fn a_commit_writes_its_pages_in_place_in_calls_of_at_most_commit_write_max() {
        const PAGE: u32 = 4096;
        let page_bytes = PAGE as usize;
        let long = (3 * COMMIT_WRITE_MAX / page_bytes + 5) as u64;
        let mut out = PageWrites::default();
        // Added out of page order, as spill adds them: adjacent single pages far apart in the
        // buffer, a long run (an overflow value), and pages on either side of a gap.
        let runs = [(40, 1), (2, long), (41, 1), (2 + long, 1), (39, 1), (60, 3)];
        for (id, len) in runs {
            for (i, page) in out.add(id, len, PAGE).chunks_mut(page_bytes).enumerate() {
                page.fill((id + i as u64) as u8);
            }
        }
        out.sort();
        let file = Recorded::default();
        write_coalesced(&file, &out, PAGE).unwrap();

        let writes = file.writes.lock().clone();
        assert!(
            writes.iter().all(|&w| w > 0 && w <= COMMIT_WRITE_MAX),
            "writes of {writes:?} bytes"
        );
        let bytes = file.bytes.lock();
        for (id, len) in runs {
            for p in id..id + len {
                let page = &bytes[p as usize * page_bytes..(p as usize + 1) * page_bytes];
                assert!(page.iter().all(|&b| b == p as u8), "page {p}");
            }
        }
        let written: usize = writes.iter().sum();
        let pages: u64 = runs.iter().map(|r| r.1).sum();
        assert_eq!(
            written,
            pages as usize * page_bytes,
            "each page written once"
        );
    }
}

#[cfg(test)]
mod run_tests {
    use super::tests::Recorded;
    use super::{Allocator, RUN_PAGES_MAX, Sink};
    use crate::btree::tree_mut::Allocate;
    use crate::page_file::freelist::{Change, FreeList};

    fn allocator(freelist: &mut FreeList, page_count: u64, runs: bool) -> Allocator<'_> {
        // These tests encode no pages, so nothing reaches the sink; leaked to live as long as
        // the allocator.
        let sink = Sink {
            storage: Box::leak(Box::new(Recorded::default())),
            verified: Box::leak(Box::default()),
            file_len: Box::leak(Box::new(0)),
            max_size: None,
        };
        Allocator {
            freelist,
            page_count,
            page_count_max: u64::MAX / 4096,
            page_size: 4096,
            runs,
            run: 0..0,
            run_grew: false,
            freeing: 0,
            stranded: Vec::new(),
            run_spare: 33,
            sink,
        }
    }

    fn singles(a: &mut Allocator<'_>, n: usize) -> Vec<u64> {
        (0..n).map(|_| a.allocate(1).unwrap()).collect()
    }

    #[test]
    fn single_pages_come_from_the_smallest_extent_of_sixteen_or_more_and_the_rest_is_given_back() {
        let mut f = FreeList::default();
        for (start, len) in [(100, 1), (200, 3), (300, 20), (400, 40)] {
            f.free_now(start, len).unwrap();
        }
        let mut a = allocator(&mut f, 1000, true);
        let pages = singles(&mut a, 25);
        let expected: Vec<u64> = (300..320).chain(400..405).collect();
        assert_eq!(pages, expected);
        // A run of several pages comes from the run too while it holds them.
        assert_eq!(a.allocate(3).unwrap(), 405);
        // The rest goes back to the free list as if never taken.
        assert_eq!(a.end_runs(), vec![]);
        assert_eq!(
            a.freelist.extents().collect::<Vec<_>>(),
            vec![(100, 1), (200, 3), (408, 32)]
        );
        // After the runs end, single pages are best fit again.
        assert_eq!(a.allocate(1).unwrap(), 100);
        assert_eq!(a.page_count, 1000);
    }

    #[test]
    fn with_little_spare_a_run_comes_from_the_end_of_the_file_and_its_unused_tail_goes_back() {
        let mut f = FreeList::default();
        f.free_now(10, 4).unwrap();
        let mut a = allocator(&mut f, 1000, true);
        assert_eq!(singles(&mut a, 3), vec![1000, 1001, 1002]);
        assert_eq!(a.page_count, 1000 + RUN_PAGES_MAX);
        assert_eq!(a.end_runs(), vec![]);
        assert_eq!(a.page_count, 1003);
        // Pages taken from the end after the run keep the run's tail inside the file: it is
        // freed instead.
        let mut f = FreeList::default();
        let mut a = allocator(&mut f, 1000, true);
        a.allocate(1).unwrap();
        assert_eq!(a.allocate(2).unwrap(), 1001);
        assert_eq!(a.allocate(RUN_PAGES_MAX).unwrap(), 1000 + RUN_PAGES_MAX);
        assert_eq!(a.end_runs(), vec![(1003, RUN_PAGES_MAX - 3)]);
        assert_eq!(a.page_count, 1000 + 2 * RUN_PAGES_MAX);
        // With `run_spare` 0 no run comes from the end, even in a file with nothing free.
        let mut f = FreeList::default();
        let mut a = allocator(&mut f, 1000, true);
        a.run_spare = 0;
        assert_eq!(singles(&mut a, 2), vec![1000, 1001]);
        assert_eq!((a.end_runs(), a.page_count), (vec![], 1002));
    }

    #[test]
    fn with_much_spare_and_no_long_extent_shorter_extents_serve_before_single_pages() {
        let mut f = FreeList::default();
        f.free_now(300, 9).unwrap();
        f.free_now(200, 5).unwrap();
        // 700 single free pages: more than a third of a 2,000-page file is spare, so no run
        // comes from its end.
        for i in 0..700 {
            f.free_now(600 + 2 * i, 1).unwrap();
        }
        let mut a = allocator(&mut f, 2000, true);
        let pages = singles(&mut a, 16);
        let expected: Vec<u64> = (300..309).chain(200..205).chain([600, 602]).collect();
        assert_eq!(pages, expected);
        assert_eq!((a.end_runs(), a.page_count), (vec![], 2000));
    }

    /// The unused pages of a run taken from a free extent at the end of the pages in use go
    /// back to the list, not off the end of the file: the list logged them as taken.
    #[test]
    fn the_unused_tail_of_a_run_from_the_list_goes_back_to_it_even_at_the_end_of_the_file() {
        let mut f = FreeList::default();
        f.free_now(980, 20).unwrap();
        let mut a = allocator(&mut f, 1000, true);
        assert_eq!(singles(&mut a, 2), vec![980, 981]);
        assert_eq!(a.end_runs(), vec![]);
        assert_eq!(a.page_count, 1000);
        assert_eq!(a.freelist.extents().collect::<Vec<_>>(), vec![(982, 18)]);
        assert_eq!(a.freelist.changes(), &[Change::Took(980, 2)]);
    }

    /// Near the size limit, the unused pages of a run that grew the file make room for an
    /// allocation that would otherwise fail with `DatabaseFull`.
    #[test]
    fn near_the_size_limit_a_runs_unused_pages_make_room_before_the_database_is_full() {
        let mut f = FreeList::default();
        let mut a = allocator(&mut f, 1000, true);
        a.page_count_max = 1000 + RUN_PAGES_MAX + 10;
        assert_eq!(a.allocate(1).unwrap(), 1000);
        // More than the run holds, and more than the limit leaves past it: the run is given up
        // and its pages hold this run instead.
        assert_eq!(a.allocate(RUN_PAGES_MAX + 4).unwrap(), 1001);
        assert_eq!(a.page_count, 1001 + RUN_PAGES_MAX + 4);
        // No room for another run: single pages come from the end one by one.
        assert_eq!(a.allocate(1).unwrap(), 1005 + RUN_PAGES_MAX);
        assert_eq!(a.end_runs(), vec![]);
        assert!(a.allocate(10).is_err());
    }

    /// Near the size limit, the unused pages of a run from the free list go back to it when an
    /// allocation needs them with the free pages beside them.
    #[test]
    fn near_the_size_limit_a_run_from_the_list_gives_its_pages_back_for_a_longer_allocation() {
        let mut f = FreeList::default();
        f.free_now(700, 300).unwrap();
        let mut a = allocator(&mut f, 1000, true);
        a.page_count_max = 1000;
        let pages = singles(&mut a, 250);
        assert_eq!(pages, (700..950).collect::<Vec<_>>());
        // 6 pages left in the run and 44 free after it: 48 fit only together.
        assert_eq!(a.allocate(48).unwrap(), 950);
        assert_eq!(a.end_runs(), vec![]);
        assert_eq!(a.freelist.extents().collect::<Vec<_>>(), vec![(998, 2)]);
        assert!(a.allocate(3).is_err());
    }

    #[test]
    fn a_small_commit_takes_single_pages_best_fit() {
        let mut f = FreeList::default();
        for (start, len) in [(100, 1), (300, 20)] {
            f.free_now(start, len).unwrap();
        }
        let mut a = allocator(&mut f, 1000, false);
        assert_eq!(singles(&mut a, 2), vec![100, 300]);
        assert_eq!(a.end_runs(), vec![]);
    }
}
