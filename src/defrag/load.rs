//! The bulk loader: every tree of a snapshot, copied in key order into a new file.
//!
//! Invariants of the file it writes:
//! 1. Pages 0 and 1 are metas holding the same meta: the snapshot's txid, the new catalog root and
//!    count, no freelist, and a page count equal to the file's length in pages. No page is free.
//! 2. Pages are written in id order, in writes of [`DEFRAG_WRITE_LEN`]. Each tree comes out as a
//!    streaming bottom-up build emits it: an overflow run before the leaf that points to it, a
//!    branch after its last child, the catalog after every tree.
//! 3. Leaves and branches are packed to the fill factor, except the last two pages of each level,
//!    which are evened out so that the last is not underfull.
//! 4. The trees, keys, values and entry counts are the snapshot's. Keys out of order or a count
//!    that differs from the tree's descriptor are corruption of the source and stop the copy, as
//!    does any page whose checksum fails: every page read is verified.
//!
//! Reading: the walk is in key order, which in a fragmented file is random order on disk. So a
//! second thread reads the live pages ahead in file order (see `readahead`); or, when they would
//! not fit in memory, the walk asks the kernel for each branch's children before it descends and
//! for each leaf's overflow runs before it copies them (`madvise(WILLNEED)`): many reads in flight
//! instead of one page fault at a time.

use std::sync::atomic::{AtomicBool, Ordering};

use memmap2::{Advice, Mmap};

use crate::btree::node::{
    self, PageView, ValueRef, branch_entry_len, leaf_entry_len, overflow_pages,
};
use crate::btree::source::Pages;
use crate::defrag::options::{DefragOptions, DefragProgress};
use crate::defrag::readahead;
use crate::error::{PageId, Result, corrupted};
use crate::limits::{
    DEFRAG_WRITE_LEN, OVERFLOW_REF_LEN, TREE_DEPTH_MAX, key_len_max, merge_threshold, page_capacity,
};
use crate::page_file::meta::Meta;
use crate::page_file::page::{self, ZeroCrcs};
use crate::page_file::storage::Storage;
use crate::txn::catalog::Descriptor;
use crate::txn::db::Snapshot;

/// Source pages (tree pages and overflow runs) copied between progress reports.
const PROGRESS_EVERY: u64 = 2048;

/// Writes every tree of `source` into `out` (an empty file) and returns the new file's meta.
/// `pages_total` is the number of source pages the walk will visit, for progress reports.
/// `unused` lists the source's runs of free, pending and freelist pages, sorted, so that its live
/// pages can be read ahead in file order.
pub(crate) fn copy(
    source: &Snapshot,
    out: &dyn Storage,
    options: &DefragOptions,
    pages_total: u64,
    unused: &[(PageId, u64)],
) -> Result<Meta> {
    let ranges = readahead::live_ranges(source.meta.page_count, source.meta.page_size, unused);
    let ahead = readahead::fits_in_memory(ranges.iter().map(|r| r.1).sum());
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        if ahead {
            s.spawn(|| readahead::run(&source.map, &ranges, &stop));
        }
        let copied = copy_trees(source, out, options, pages_total, !ahead);
        stop.store(true, Ordering::Relaxed);
        copied
    })
}

fn copy_trees(
    source: &Snapshot,
    out: &dyn Storage,
    options: &DefragOptions,
    pages_total: u64,
    prefetch_children: bool,
) -> Result<Meta> {
    let meta = source.meta;
    let mut reader = Reader {
        prefetch_children,
        pages: source.pages(true),
        map: &source.map,
        visited: vec![0; meta.page_count.div_ceil(64) as usize],
        options,
        progress: DefragProgress {
            pages_done: 0,
            pages_total,
        },
        reported: 0,
    };
    let shape = Shape::new(meta.page_size, options.fill);
    let mut sink = Sink::new(out, meta.page_size);
    let mut zeros = ZeroCrcs::default();

    // The catalog first, read whole (it is small), then each tree in name order.
    let mut trees: Vec<(&[u8], Descriptor)> = Vec::with_capacity(meta.catalog_len as usize);
    if meta.catalog_root != 0 {
        reader.walk(meta.catalog_root, &mut |name, value| {
            let ValueRef::Inline(raw) = value else {
                return Err(corrupted(
                    meta.catalog_root,
                    "a tree descriptor in an overflow run",
                ));
            };
            trees.push((name, Descriptor::decode(raw, meta.catalog_root)?));
            Ok(())
        })?;
    }
    check_count(
        meta.catalog_root,
        trees.len() as u64,
        meta.catalog_len,
        "catalog",
    )?;
    let mut descriptors = Vec::with_capacity(trees.len());
    for (_, d) in &trees {
        let mut tree = TreeBuilder::new(shape);
        if d.root != 0 {
            let pages = reader.pages;
            reader.walk(d.root, &mut |key, value| {
                let value = match value {
                    ValueRef::Inline(_) => value,
                    ValueRef::Overflow { page, len } => {
                        // Validated and verified by `overflow`; copied whole, then renumbered.
                        pages.overflow(page, len)?;
                        let run = pages.run(page, overflow_pages(len as usize, meta.page_size))?;
                        let new = sink.append_run(run, &mut zeros)?;
                        ValueRef::Overflow { page: new, len }
                    }
                };
                tree.add(&mut sink, key, value)
            })?;
        }
        check_count(d.root, tree.len, d.len, "tree")?;
        let root = tree.finish(&mut sink)?.unwrap_or(0);
        descriptors.push(Descriptor { root, len: d.len }.encode());
    }
    let mut catalog = TreeBuilder::new(shape);
    for ((name, _), d) in trees.iter().zip(&descriptors) {
        catalog.add(&mut sink, name, ValueRef::Inline(d))?;
    }
    let catalog_root = catalog.finish(&mut sink)?.unwrap_or(0);
    sink.flush()?;
    reader.report();

    let new = Meta {
        page_size: meta.page_size,
        txid: meta.txid,
        catalog_root,
        catalog_len: trees.len() as u64,
        freelist: 0,
        page_count: sink.next_id(),
    };
    out.write_at(&[new.encode(0), new.encode(1)].concat(), 0)?;
    Ok(new)
}

fn check_count(page: PageId, counted: u64, recorded: u64, what: &str) -> Result<()> {
    if counted != recorded {
        return Err(corrupted(
            page,
            format!("{what} holds {counted} entries but records {recorded}"),
        ));
    }
    Ok(())
}

/// Reads the source: a walk in key order that verifies every page and reads ahead.
struct Reader<'a, 'o> {
    /// Whether to ask for each branch's children and each leaf's overflow runs before reading
    /// them (when the whole file is not being read ahead).
    prefetch_children: bool,
    pages: Pages<'a>,
    map: &'a Mmap,
    /// One bit per page: tree pages already visited. A page reached twice means a corrupt file
    /// (a cycle, or a subtree shared between parents), which would otherwise be copied twice.
    visited: Vec<u64>,
    options: &'o DefragOptions,
    progress: DefragProgress,
    reported: u64,
}

/// What the walk hands on: each entry of a tree, in key order.
type Visit<'f, 'a> = dyn FnMut(&'a [u8], ValueRef<'a>) -> Result<()> + 'f;

impl<'a> Reader<'a, '_> {
    /// Calls `visit` with every entry of the tree under `root`, in key order.
    fn walk(&mut self, root: PageId, visit: &mut Visit<'_, 'a>) -> Result<()> {
        let mut prev = None;
        self.node(root, 1, &mut prev, visit)
    }

    fn node(
        &mut self,
        id: PageId,
        depth: usize,
        prev: &mut Option<&'a [u8]>,
        visit: &mut Visit<'_, 'a>,
    ) -> Result<()> {
        if depth > TREE_DEPTH_MAX {
            return Err(corrupted(id, "tree deeper than the limit"));
        }
        let view = self.pages.node(id)?;
        let (word, bit) = ((id / 64) as usize, 1u64 << (id % 64));
        if self.visited[word] & bit != 0 {
            return Err(corrupted(id, "page reachable twice"));
        }
        self.visited[word] |= bit;
        match view {
            PageView::Branch(branch) => {
                let children = (0..branch.len())
                    .map(|i| branch.child(i))
                    .collect::<Result<Vec<_>>>()?;
                for &child in &children {
                    self.prefetch(child, 1);
                }
                self.visited(1);
                for child in children {
                    self.node(child, depth + 1, prev, visit)?;
                }
            }
            PageView::Leaf(leaf) => {
                let mut pages = 1;
                for i in 0..leaf.len() {
                    if let ValueRef::Overflow { page, len } = leaf.value(i)? {
                        let run = overflow_pages(len as usize, self.pages.page_size);
                        self.prefetch(page, run);
                        pages += run;
                    }
                }
                let key_len_max = key_len_max(self.pages.page_size);
                for i in 0..leaf.len() {
                    let key = leaf.key(i)?;
                    if key.len() > key_len_max {
                        return Err(corrupted(
                            id,
                            format!("leaf key {i} over the key length limit"),
                        ));
                    }
                    if prev.is_some_and(|p| p >= key) {
                        return Err(corrupted(
                            id,
                            format!("leaf keys out of order at entry {i}"),
                        ));
                    }
                    *prev = Some(key);
                    visit(key, leaf.value(i)?)?;
                }
                self.visited(pages);
            }
        }
        Ok(())
    }

    /// Asks the kernel to start reading a run of pages. A hint: if it fails, the walk faults the
    /// pages in as it reaches them.
    fn prefetch(&self, id: PageId, pages: u64) {
        if !self.prefetch_children {
            return;
        }
        let page_size = self.pages.page_size as usize;
        let start = id as usize * page_size;
        let len = pages as usize * page_size;
        if start
            .checked_add(len)
            .is_some_and(|end| end <= self.map.len())
        {
            let _ = self.map.advise_range(Advice::WillNeed, start, len);
        }
    }

    fn visited(&mut self, pages: u64) {
        self.progress.pages_done += pages;
        if self.progress.pages_done - self.reported >= PROGRESS_EVERY {
            self.report();
        }
    }

    fn report(&mut self) {
        self.reported = self.progress.pages_done;
        self.options.report(self.progress);
    }
}

/// Where pages go: a buffer of consecutive pages, written whole when it is large enough.
struct Sink<'s> {
    storage: &'s dyn Storage,
    page_size: usize,
    /// The id of the first page in `buf`.
    start: PageId,
    buf: Vec<u8>,
}

impl<'s> Sink<'s> {
    fn new(storage: &'s dyn Storage, page_size: u32) -> Sink<'s> {
        Sink {
            storage,
            page_size: page_size as usize,
            start: 2,
            buf: Vec::with_capacity(DEFRAG_WRITE_LEN + page_size as usize),
        }
    }

    /// The id the next page appended will have.
    fn next_id(&self) -> PageId {
        self.start + (self.buf.len() / self.page_size) as u64
    }

    /// Appends `pages` zeroed pages, lets `fill` encode them given their first id, and returns
    /// that id.
    fn append(&mut self, pages: u64, fill: impl FnOnce(&mut [u8], PageId)) -> Result<PageId> {
        let id = self.next_id();
        let at = self.buf.len();
        self.buf.resize(at + pages as usize * self.page_size, 0);
        fill(&mut self.buf[at..], id);
        if self.buf.len() >= DEFRAG_WRITE_LEN {
            self.flush()?;
        }
        Ok(id)
    }

    /// Appends a run of pages copied from the source, renumbered to start at the next id. Only
    /// the first page changes, so a run larger than a write goes straight from the source.
    fn append_run(&mut self, run: &[u8], zeros: &mut ZeroCrcs) -> Result<PageId> {
        let id = self.next_id();
        let at = self.buf.len();
        if run.len() <= DEFRAG_WRITE_LEN {
            self.buf.extend_from_slice(run);
            page::move_run(&mut self.buf[at..at + self.page_size], run.len(), id, zeros);
            if self.buf.len() >= DEFRAG_WRITE_LEN {
                self.flush()?;
            }
        } else {
            self.buf.extend_from_slice(&run[..self.page_size]);
            page::move_run(&mut self.buf[at..], run.len(), id, zeros);
            self.flush()?;
            let offset = self.start * self.page_size as u64;
            self.storage.write_at(&run[self.page_size..], offset)?;
            self.start += (run.len() / self.page_size - 1) as u64;
        }
        Ok(id)
    }

    fn flush(&mut self) -> Result<()> {
        if !self.buf.is_empty() {
            self.storage
                .write_at(&self.buf, self.start * self.page_size as u64)?;
            self.start = self.next_id();
            self.buf.clear();
        }
        Ok(())
    }
}

/// How full to make pages.
#[derive(Clone, Copy, Debug)]
struct Shape {
    page_size: u32,
    /// Bytes of entries (slots included) a page is filled to.
    limit: usize,
    /// A last page with fewer bytes than this takes entries from the one before it.
    underfull: usize,
}

impl Shape {
    fn new(page_size: u32, fill: f64) -> Shape {
        let capacity = page_capacity(page_size);
        Shape {
            page_size,
            limit: ((capacity as f64 * fill) as usize).clamp(capacity / 2, capacity),
            underfull: merge_threshold(page_size),
        }
    }
}

/// An entry of a page being built.
trait Entry: Copy {
    /// Bytes it takes in its page, slot included.
    fn bytes(&self) -> usize;
}

type LeafEntry<'a> = (&'a [u8], ValueRef<'a>);
type BranchEntry<'a> = (&'a [u8], PageId);

impl Entry for LeafEntry<'_> {
    fn bytes(&self) -> usize {
        let stored = match self.1 {
            ValueRef::Inline(v) => v.len(),
            ValueRef::Overflow { .. } => OVERFLOW_REF_LEN,
        };
        leaf_entry_len(self.0.len(), stored)
    }
}

impl Entry for BranchEntry<'_> {
    fn bytes(&self) -> usize {
        branch_entry_len(self.0.len())
    }
}

/// One level of a tree being built: the page being filled, and the full page before it, held
/// back so that the last two pages of the level can be evened out.
#[derive(Debug)]
struct Level<E> {
    held: Vec<E>,
    held_bytes: usize,
    filling: Vec<E>,
    filling_bytes: usize,
    /// Pages of this level written so far.
    written: u64,
}

impl<E> Default for Level<E> {
    fn default() -> Self {
        Level {
            held: Vec::new(),
            held_bytes: 0,
            filling: Vec::new(),
            filling_bytes: 0,
            written: 0,
        }
    }
}

impl<E: Entry> Level<E> {
    /// Adds an entry. Returns the entries of a page that no later entry can change: it is ready
    /// to be written.
    fn push(&mut self, entry: E, shape: Shape) -> Option<Vec<E>> {
        let mut ready = None;
        if !self.filling.is_empty() && self.filling_bytes + entry.bytes() > shape.limit {
            let full = std::mem::take(&mut self.filling);
            ready = Some(std::mem::replace(&mut self.held, full)).filter(|p| !p.is_empty());
            self.held_bytes = std::mem::take(&mut self.filling_bytes);
        }
        self.filling_bytes += entry.bytes();
        self.filling.push(entry);
        ready
    }

    /// The level's last pages: the held page and the one being filled, as one page if they fit
    /// together, else with entries moved from the first to the second until it is not underfull.
    fn finish(&mut self, shape: Shape) -> Vec<Vec<E>> {
        let mut held = std::mem::take(&mut self.held);
        let mut last = std::mem::take(&mut self.filling);
        let mut last_bytes = std::mem::take(&mut self.filling_bytes);
        if held.is_empty() {
            return if last.is_empty() { vec![] } else { vec![last] };
        }
        if std::mem::take(&mut self.held_bytes) + last_bytes <= shape.limit {
            held.extend(last);
            return vec![held];
        }
        let capacity = page_capacity(shape.page_size);
        let mut moved = 0;
        while last_bytes < shape.underfull && held.len() - moved > 1 {
            let bytes = held[held.len() - 1 - moved].bytes();
            if last_bytes + bytes > capacity {
                break;
            }
            last_bytes += bytes;
            moved += 1;
        }
        let tail = held.split_off(held.len() - moved);
        last.splice(0..0, tail);
        vec![held, last]
    }
}

/// A tree built bottom-up from entries in key order.
struct TreeBuilder<'a> {
    shape: Shape,
    leaves: Level<LeafEntry<'a>>,
    /// `branches[0]` is the level above the leaves.
    branches: Vec<Level<BranchEntry<'a>>>,
    len: u64,
}

impl<'a> TreeBuilder<'a> {
    fn new(shape: Shape) -> TreeBuilder<'a> {
        TreeBuilder {
            shape,
            leaves: Level::default(),
            branches: Vec::new(),
            len: 0,
        }
    }

    /// Adds the next entry; keys must come in order.
    fn add(&mut self, sink: &mut Sink<'_>, key: &'a [u8], value: ValueRef<'a>) -> Result<()> {
        self.len += 1;
        match self.leaves.push((key, value), self.shape) {
            Some(page) => self.write_leaf(sink, page),
            None => Ok(()),
        }
    }

    fn write_leaf(&mut self, sink: &mut Sink<'_>, entries: Vec<LeafEntry<'a>>) -> Result<()> {
        let id = sink.append(1, |buf, id| {
            node::encode_leaf_into(buf, id, entries.iter().copied())
        })?;
        self.leaves.written += 1;
        self.add_branch(sink, 0, (entries[0].0, id))
    }

    fn add_branch(
        &mut self,
        sink: &mut Sink<'_>,
        level: usize,
        entry: BranchEntry<'a>,
    ) -> Result<()> {
        if self.branches.len() == level {
            self.branches.push(Level::default());
        }
        match self.branches[level].push(entry, self.shape) {
            Some(page) => self.write_branch(sink, level, page),
            None => Ok(()),
        }
    }

    fn write_branch(
        &mut self,
        sink: &mut Sink<'_>,
        level: usize,
        entries: Vec<BranchEntry<'a>>,
    ) -> Result<()> {
        let id = sink.append(1, |buf, id| {
            node::encode_branch_into(buf, id, entries.iter().copied())
        })?;
        self.branches[level].written += 1;
        self.add_branch(sink, level + 1, (entries[0].0, id))
    }

    /// Writes the last pages of every level, bottom up, and returns the root (`None` for an
    /// empty tree). A level whose pages all fit one page is the root.
    fn finish(mut self, sink: &mut Sink<'_>) -> Result<Option<PageId>> {
        if self.len == 0 {
            return Ok(None);
        }
        for page in self.leaves.finish(self.shape) {
            self.write_leaf(sink, page)?;
        }
        let mut below = self.leaves.written;
        let mut level = 0;
        // Each page written at one level is one entry in the level above.
        while below > 1 {
            for page in self.branches[level].finish(self.shape) {
                self.write_branch(sink, level, page)?;
            }
            below = self.branches[level].written;
            level += 1;
        }
        Ok(Some(self.branches[level].filling[0].1))
    }
}
